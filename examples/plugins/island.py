"""island: the world becomes one island around the world origin.

terrain: a radial mask around column (0, 0) decides land and sea.

- Inside the island the core's relief is kept but folded above the sea: a
  column's new height is `shore` metres plus |core height| (smoothed where
  the core crosses sea level, so former coastlines become gentle valleys)
  plus a dome that lifts the centre by `lift` metres. Every column well
  inside the island is land.
- Over the coast, `coast` columns wide, the land blends smoothly into a sea
  floor `depth` metres below sea level.
- Outside, every column is sea floor, with a little of the core's relief.

The coastline is not a perfect circle: its radius wobbles by up to
`wobble` (a share of `radius`) with low-frequency noise of the world
coordinates, so bays and capes appear.

Determinism and seams: the mask depends only on world coordinates and the
world seed, and each column's height only on its own core height, so the
island is the same on every node and has no chunk seams.

Try it:
    worldloom plugin run examples/plugins/island.py --hook terrain --seed 42 --chunk 0,0
"""

import numpy as np

PARAMS = {
    "radius": {"default": 3000.0, "min": 64.0, "max": 1000000.0, "doc": "distance from the origin to the coast, columns"},
    "coast": {"default": 600.0, "min": 1.0, "max": 100000.0, "doc": "width of the band where land slopes into the sea, columns"},
    "wobble": {"default": 0.2, "min": 0.0, "max": 0.5, "doc": "how far the coast strays from a circle, as a share of radius"},
    "lift": {"default": 250.0, "min": 0.0, "max": 5000.0, "doc": "extra height at the island's centre, metres"},
    "shore": {"default": 6.0, "min": 0.5, "max": 500.0, "doc": "height of the island's lowest land, metres"},
    "depth": {"default": 300.0, "min": 1.0, "max": 5000.0, "doc": "depth of the sea floor around the island, metres"},
}

_M32 = 0xFFFFFFFF


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


def land_share(ctx):
    """1 on the island, 0 out at sea, smooth over the coast; shape (size, size)."""
    p = ctx.params
    size = ctx.size
    wx = (ctx.cx * size + np.arange(size, dtype=np.float64))[:, None]
    wz = (ctx.cz * size + np.arange(size, dtype=np.float64))[None, :]
    r = np.sqrt(wx * wx + wz * wz)
    # Two octaves of noise a few times coarser than the island bend the coast.
    seed = (ctx.seed ^ (ctx.seed >> 32) ^ 0x15A1) & _M32
    f = 3.0 / p["radius"]
    wobble = _noise(wx * f, wz * f, seed) + 0.5 * _noise(wx * f * 2.7, wz * f * 2.7, seed ^ 0x9E37)
    coast = p["radius"] * (1.0 + p["wobble"] * wobble)
    # t = 0 at the outer edge of the coastal band, 1 at its inner edge.
    t = np.clip((coast - r) / p["coast"] + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def terrain(ctx, chunk):
    p = ctx.params
    size = ctx.size
    sea = ctx.sea_level
    h = chunk.height.astype(np.float64) - sea
    share = land_share(ctx)

    # Land: the core's relief folded above the sea (a smooth |h|), a dome.
    wx = (ctx.cx * size + np.arange(size, dtype=np.float64))[:, None]
    wz = (ctx.cz * size + np.arange(size, dtype=np.float64))[None, :]
    r = np.sqrt(wx * wx + wz * wz)
    dome = np.clip(1.0 - (r / p["radius"]) ** 2, 0.0, 1.0)
    soft = 20.0  # metres over which the fold is rounded
    land = p["shore"] + np.sqrt(h * h + soft * soft) - soft + p["lift"] * dome

    # Sea: a flat-ish floor with a tenth of the core's relief.
    floor = -p["depth"] + 0.1 * np.clip(h, -p["depth"], p["depth"])

    chunk.height = (share * land + (1.0 - share) * floor + sea).astype(np.float32)
    return chunk
