"""volcano: scattered volcanoes with craters, ash slopes and fumaroles.

Placement: the world is divided into square region cells `spacing` columns
wide. A hash of (world seed, cell) decides whether the cell has a volcano
(probability `chance`) and where its centre is: somewhere in the cell, far
enough from the cell's edges that the whole cone fits inside it. So each
column belongs to at most one volcano, found from its own coordinates.

- terrain: adds a cone `height` metres tall and `radius` columns wide to the
  terrain (concave slopes, steepening towards the top), with a crater at the
  summit. On the sea floor a tall enough cone becomes a volcanic island.
- biome: the upper slopes are bare rock (the `mountains` biome).
- features: the chunk holding a volcano's centre gets one `volcano` feature
  there (height_m, radius, crater_depth_m, active); an active volcano's
  crater gets a few `fumarole` features, scattered with ctx.random.

Determinism and seams: placement and shape depend only on the world seed
and world coordinates, so a cone spread over many chunks lines up exactly
across their borders; the fumaroles use ctx.random, which is seeded per
world, plugin and chunk.

Try it:
    worldloom plugin run examples/plugins/volcano.py --hook features --seed 42 --chunk 12,12 \
        --params '{"chance": 1, "jitter": 0}'
"""

import numpy as np

PARAMS = {
    "spacing": {"default": 768.0, "min": 64.0, "max": 100000.0, "doc": "size of the region cells, columns; at most one volcano per cell"},
    "chance": {"default": 0.5, "min": 0.0, "max": 1.0, "doc": "probability that a cell has a volcano"},
    "jitter": {"default": 1.0, "min": 0.0, "max": 1.0, "doc": "how far a volcano strays from its cell's centre (0: exactly at the centre)"},
    "radius": {"default": 120.0, "min": 4.0, "max": 10000.0, "doc": "radius of the cone's foot, columns (at most spacing / 2)"},
    "height": {"default": 900.0, "min": 0.0, "max": 8000.0, "doc": "height the cone adds at its rim, metres"},
    "crater": {"default": 0.2, "min": 0.0, "max": 0.9, "doc": "crater radius as a share of radius"},
    "crater_depth": {"default": 120.0, "min": 0.0, "max": 4000.0, "doc": "depth of the crater below its rim, metres"},
}

ROCK = 11  # biome id of `mountains` (GET /v1/biomes)

_M32 = 0xFFFFFFFF


def _hash(ix, iz, seed):
    """A 32-bit hash of integer coordinates (int64 arrays or ints; no overflow)."""
    h = ((ix & _M32) * 0x2545F491 + (iz & _M32) * 0x1B873593 + seed) & _M32
    h = ((h ^ (h >> 16)) * 0x045D9F3B) & _M32
    h = ((h ^ (h >> 16)) * 0x045D9F3B) & _M32
    return h ^ (h >> 16)


def _unit(ix, iz, seed, salt):
    """A number in [0, 1) for a cell, one independent stream per salt."""
    return _hash(ix, iz, (seed ^ salt) & _M32) / 2.0**32


def _radius(p):
    # The cone must fit inside its cell (see the module docstring).
    return min(float(p["radius"]), 0.5 * float(p["spacing"]))


def volcano_of(ctx, cell_x, cell_z):
    """The volcano of region cells (cell_x, cell_z) (int64 arrays): whether
    there is one, and its centre in world columns."""
    p = ctx.params
    seed = (ctx.seed ^ (ctx.seed >> 32)) & _M32
    spacing = float(p["spacing"])
    room = spacing - 2.0 * _radius(p)  # where a centre may go
    exists = _unit(cell_x, cell_z, seed, 0xC0FFEE) < p["chance"]
    off_x = (_unit(cell_x, cell_z, seed, 0x1111) - 0.5) * room * p["jitter"]
    off_z = (_unit(cell_x, cell_z, seed, 0x2222) - 0.5) * room * p["jitter"]
    centre_x = np.floor((cell_x + 0.5) * spacing + off_x)
    centre_z = np.floor((cell_z + 0.5) * spacing + off_z)
    return exists, centre_x, centre_z


def shape(ctx):
    """(added height, share of the radius from the centre) for every column
    of the chunk; the share is >= 1 where there is no volcano."""
    p = ctx.params
    size = ctx.size
    wx = (ctx.cx * size + np.arange(size, dtype=np.float64))[:, None] + np.zeros((1, size))
    wz = (ctx.cz * size + np.arange(size, dtype=np.float64))[None, :] + np.zeros((size, 1))
    spacing = float(p["spacing"])
    cell_x = np.floor(wx / spacing).astype(np.int64)
    cell_z = np.floor(wz / spacing).astype(np.int64)
    exists, centre_x, centre_z = volcano_of(ctx, cell_x, cell_z)
    radius = _radius(p)
    s = np.sqrt((wx - centre_x) ** 2 + (wz - centre_z) ** 2) / radius
    s = np.where(exists, s, 2.0)
    t = np.clip(1.0 - s, 0.0, 1.0)          # 1 at the centre, 0 at the foot
    crater = float(p["crater"])
    # Concave slopes, steepest near the top, reaching `height` at the rim.
    cone = p["height"] * np.minimum(t / (1.0 - crater), 1.0) ** 2
    rim = p["height"]
    if crater > 0.0:
        inside = s < crater
        bowl = rim - p["crater_depth"] * (1.0 - (s / crater) ** 2)
        cone = np.where(inside, bowl, cone)
    return cone, s


def terrain(ctx, chunk):
    cone, _ = shape(ctx)
    chunk.height = (chunk.height + cone).astype(np.float32)
    return chunk


def biome(ctx, chunk):
    _, s = shape(ctx)
    # Bare rock from halfway up the cone to the crater (snowy peaks stay).
    rock = (s < 0.55) & (chunk.biome != 12) & (chunk.height > 0.0)
    chunk.biome = np.where(rock, ROCK, chunk.biome)
    return chunk


def features(ctx, chunk):
    p = ctx.params
    size = ctx.size
    spacing = float(p["spacing"])
    # The cells this chunk overlaps (usually one).
    x0, z0 = ctx.cx * size, ctx.cz * size
    cells_x = range(int(np.floor(x0 / spacing)), int(np.floor((x0 + size - 1) / spacing)) + 1)
    cells_z = range(int(np.floor(z0 / spacing)), int(np.floor((z0 + size - 1) / spacing)) + 1)
    seed = (ctx.seed ^ (ctx.seed >> 32)) & _M32
    out = []
    for i in cells_x:
        for j in cells_z:
            exists, cx, cz = volcano_of(ctx, np.int64(i), np.int64(j))
            x, z = int(cx) - x0, int(cz) - z0
            if not exists or not (0 <= x < size and 0 <= z < size):
                continue
            active = bool(_unit(np.int64(i), np.int64(j), seed, 0xAC71) < 0.5)
            out.append({
                "x": x,
                "z": z,
                "kind": "volcano",
                "height_m": round(float(p["height"]), 1),
                "radius": round(_radius(p), 1),
                "crater_depth_m": round(float(p["crater_depth"]), 1),
                "active": active,
            })
            if active:
                # Fumaroles in the crater, where it lies inside this chunk.
                reach = _radius(p) * p["crater"]
                for _ in range(4):
                    r = reach * ctx.random.random() ** 0.5  # uniform over the crater's disc
                    a = 2.0 * np.pi * ctx.random.random()
                    fx = x + int(round(r * np.cos(a)))
                    fz = z + int(round(r * np.sin(a)))
                    if 0 <= fx < size and 0 <= fz < size:
                        out.append({"x": fx, "z": fz, "kind": "fumarole", "temperature_c": ctx.random.randint(90, 400)})
    return out
