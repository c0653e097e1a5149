"""rivers: winding rivers carved into the land.

Where the rivers run comes from a "flow field": smooth gradient noise of the
world coordinates, bent by a second noise (so channels meander). Its zero
contour lines are the river centrelines: a column's distance to the nearest
centreline is |n| / |grad n|, in columns, computed exactly from the field.

- terrain: lowers a valley around every centreline (gentle slopes `valley`
  columns wide, a steeper channel `width` columns wide, `depth` metres at the
  centre). The cut fades out towards the coast, so a river meets the sea at
  sea level and never digs into the sea floor or below sea level.
- biome: the channel becomes water (the `ocean` biome, id 1: the biome table
  has no separate river biome).

Determinism and seams: everything depends only on the world seed, the world
coordinates of a column and that column's own height, never on where a
chunk starts, so rivers continue across chunk borders without a seam, and
the same world always gets the same rivers.

Try it:
    worldloom plugin run examples/plugins/rivers.py --hook terrain --seed 42 --chunk 0,0
"""

import numpy as np

PARAMS = {
    "spacing": {"default": 640.0, "min": 64.0, "max": 20000.0, "doc": "typical distance between rivers, columns"},
    "width": {"default": 6.0, "min": 1.0, "max": 64.0, "doc": "width of the water, columns"},
    "valley": {"default": 48.0, "min": 2.0, "max": 512.0, "doc": "how far the valley slopes reach from the river, columns"},
    "depth": {"default": 30.0, "min": 0.0, "max": 500.0, "doc": "depth of the cut at the river's centre, metres"},
    "meander": {"default": 0.35, "min": 0.0, "max": 2.0, "doc": "how strongly rivers wind (domain warp, in units of spacing)"},
}

WATER = 1  # biome id of `ocean` (GET /v1/biomes): the colour of water on the map

_M32 = 0xFFFFFFFF


def _seed32(seed, salt):
    """A 32-bit seed from the 64-bit world seed and a per-field salt."""
    return (seed ^ (seed >> 32) ^ salt) & _M32


def _hash(ix, iz, seed):
    """A 32-bit hash of integer lattice points (int64 arrays; no overflow)."""
    h = ((ix & _M32) * 0x2545F491 + (iz & _M32) * 0x1B873593 + seed) & _M32
    h = ((h ^ (h >> 16)) * 0x045D9F3B) & _M32
    h = ((h ^ (h >> 16)) * 0x045D9F3B) & _M32
    return h ^ (h >> 16)


def _noise(x, z, seed):
    """2-D gradient (Perlin) noise, roughly in [-1, 1]; one lattice cell per unit."""
    x0 = np.floor(x)
    z0 = np.floor(z)
    fx = x - x0
    fz = z - z0
    ix = x0.astype(np.int64)
    iz = z0.astype(np.int64)

    def corner(dx, dz):
        angle = _hash(ix + dx, iz + dz, seed) * (2.0 * np.pi / 2.0**32)
        return np.cos(angle) * (fx - dx) + np.sin(angle) * (fz - dz)

    u = fx * fx * fx * (fx * (fx * 6.0 - 15.0) + 10.0)
    v = fz * fz * fz * (fz * (fz * 6.0 - 15.0) + 10.0)
    c00, c10, c01, c11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    near = c00 + u * (c10 - c00)
    far = c01 + u * (c11 - c01)
    return (near + v * (far - near)) * 1.41


def _smoothstep(lo, hi, t):
    t = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def distance_to_river(ctx):
    """Distance in columns from every column of the chunk to the nearest
    river centreline, shape (size, size), indexed [x][z]."""
    p = ctx.params
    size = ctx.size
    # World coordinates of the chunk plus a one-column ring around it: the
    # ring is only used for the field's gradient (central differences).
    wx = (ctx.cx * size + np.arange(-1, size + 1, dtype=np.float64))[:, None]
    wz = (ctx.cz * size + np.arange(-1, size + 1, dtype=np.float64))[None, :]
    x = wx / p["spacing"]
    z = wz / p["spacing"]
    # Bend the field with a coarser noise so rivers wind instead of looping
    # around noise cells.
    bend = p["meander"]
    wx2 = x + bend * _noise(x * 0.5 + 17.3, z * 0.5, _seed32(ctx.seed, 0x51A7))
    wz2 = z + bend * _noise(x * 0.5, z * 0.5 - 9.1, _seed32(ctx.seed, 0x2E11))
    field = _noise(wx2, wz2, _seed32(ctx.seed, 0x0F10)) + 0.3 * _noise(wx2 * 2.3, wz2 * 2.3, _seed32(ctx.seed, 0x7A3D))
    centre = field[1:-1, 1:-1]
    gx = (field[2:, 1:-1] - field[:-2, 1:-1]) * 0.5
    gz = (field[1:-1, 2:] - field[1:-1, :-2]) * 0.5
    slope = np.sqrt(gx * gx + gz * gz)
    return np.abs(centre) / np.maximum(slope, 1e-9)


def terrain(ctx, chunk):
    p = ctx.params
    d = distance_to_river(ctx)
    h = chunk.height.astype(np.float64)
    # Valley profile, 1 at the centreline: half gentle valley, half channel.
    valley = np.clip(1.0 - d / p["valley"], 0.0, 1.0) ** 2
    channel = 1.0 - _smoothstep(0.5 * p["width"], p["width"], d)
    cut = p["depth"] * (0.5 * valley + 0.5 * channel)
    # Fade the cut out on low land: a column `depth` metres above the sea
    # gets the full cut, the coast none, the sea floor none. This also keeps
    # every river bed at or above sea level.
    if p["depth"] > 0:
        fade = np.clip((h - ctx.sea_level) / p["depth"], 0.0, 1.0)
    else:
        fade = 0.0
    chunk.height = (h - cut * fade).astype(np.float32)
    return chunk


def biome(ctx, chunk):
    p = ctx.params
    d = distance_to_river(ctx)
    # The water: the channel's inner half, on land (the sea is water already).
    water = (d < 0.5 * p["width"]) & (chunk.height >= ctx.sea_level)
    chunk.biome = np.where(water, WATER, chunk.biome)
    return chunk
