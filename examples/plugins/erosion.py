"""erosion: thermal erosion, numpy only: steep slopes crumble into scree.

terrain: a few passes of thermal erosion over the chunk's height. In every
pass, wherever the slope between a column and one of its 8 neighbours is
steeper than the talus slope (`talus` metres of drop per column), some of
the excess slides from the higher column to the lower one. Material is only
moved, never created: peaks and ridges lose height, the feet of slopes gain
it, and steep ground relaxes towards the talus angle into scree slopes.

Seams: a hook sees only its own chunk, not its neighbours, so a pass here
cannot know what the column across a border would do. To keep chunks
seamless the border ring of every chunk is held at the core's height, and
the effect is faded in over `fade` columns from the border. Erosion is
therefore weaker in a thin band along chunk borders, and the world never
has a step at a seam. Each call depends only on the chunk's heights and
PARAMS, so it is deterministic.

Try it:
    worldloom plugin run examples/plugins/erosion.py --hook terrain --seed 42 --chunk 3,-2
"""

import numpy as np

PARAMS = {
    "passes": {"default": 32, "min": 0, "max": 200, "doc": "erosion passes per chunk"},
    "talus": {"default": 3.0, "min": 0.0, "max": 500.0, "doc": "steepest stable slope, metres of drop per column"},
    "rate": {"default": 1.0, "min": 0.0, "max": 1.0, "doc": "how fast slopes steeper than talus wear down in a pass (1: as fast as stays stable)"},
    "fade": {"default": 4, "min": 1, "max": 15, "doc": "columns from a chunk border over which erosion fades in"},
}

# Each pair of neighbouring columns once: (dx, dz, distance in columns).
# Together with their mirror images these are all 8 neighbours.
PAIRS = [(1, 0, 1.0), (0, 1, 1.0), (1, 1, 2.0**0.5), (1, -1, 2.0**0.5)]


def _pair_slices(n, dx, dz):
    """Slices of an (n, n) array selecting every column that has a neighbour
    at (dx, dz), and those neighbours."""
    xa, xb = slice(0, n - dx), slice(dx, n)
    if dz >= 0:
        za, zb = slice(0, n - dz), slice(dz, n)
    else:
        za, zb = slice(-dz, n), slice(0, n + dz)
    return (xa, za), (xb, zb)


def erode_once(h, talus, rate):
    """One thermal erosion pass over an (n, n) float64 array; returns a new array.

    Between every pair of neighbours, material moves downhill in proportion
    to how much steeper than `talus` their slope is. Moving at most 1/8 of
    that excess per pair keeps each column's new height a weighted average
    of its old neighbourhood: the pass is stable, creates no new peaks or
    pits, and moves material without creating or destroying any.
    """
    n = h.shape[0]
    k = rate / 8.0
    flow = np.zeros_like(h)
    for dx, dz, dist in PAIRS:
        a, b = _pair_slices(n, dx, dz)
        drop = h[a] - h[b]
        move = k * np.sign(drop) * np.maximum(np.abs(drop) - talus * dist, 0.0)
        flow[a] -= move
        flow[b] += move
    return h + flow


def terrain(ctx, chunk):
    p = ctx.params
    n = ctx.size
    core = chunk.height.astype(np.float64)
    h = core.copy()
    for _ in range(int(p["passes"])):
        h = erode_once(h, float(p["talus"]), float(p["rate"]))
        # Hold the border ring at the core's height (see "Seams" above).
        h[0, :], h[-1, :], h[:, 0], h[:, -1] = core[0, :], core[-1, :], core[:, 0], core[:, -1]
    # Distance of every column from the chunk's border ring, in columns.
    i = np.arange(n)
    edge = np.minimum(i, n - 1 - i)
    ring = np.minimum(edge[:, None], edge[None, :])
    weight = np.clip(ring / float(p["fade"]), 0.0, 1.0)
    chunk.height = (core + weight * (h - core)).astype(np.float32)
    return chunk
