"""{{name}}: a Worldloom plugin.

Written by `worldloom plugin new {{name}}`. It lifts long diagonal ridges out
of the terrain and puts cairns on high ground. Change it, then:

    worldloom plugin check {{name}}.py
    worldloom plugin run {{name}}.py --hook terrain --seed 42 --chunk 0,0
    worldloom plugin push {{name}}.py --name {{name}} --version 0.1.0

The guide is docs/plugins.md; the `worldloom` Python package in sdk/python
gives your editor types for `ctx` and `chunk` and lets you unit-test this
file with plain CPython and numpy (`worldloom.testing`).

Rules of the sandbox, in short: no files, network, clock or threads; every
call starts from the state right after this module loaded (globals you change
in a hook are gone by the next call); use `ctx.random` for randomness so the
same world always gets the same chunks.
"""

import numpy as np

# The parameters a world sets when it attaches this plugin. Each has a
# default (bool, int, float or str), optional min/max (numbers only) and a
# doc string; the server checks a world's values against them, and your hooks
# read them from ctx.params with the defaults filled in.
PARAMS = {
    "ridge_height": {"default": 120.0, "min": 0.0, "max": 2000.0, "doc": "height the ridges add, metres"},
    "ridge_spacing": {"default": 256.0, "min": 16.0, "max": 8192.0, "doc": "distance between ridges, columns"},
    "cairns": {"default": 2, "min": 0, "max": 64, "doc": "cairns placed on high ground per chunk"},
}


def terrain(ctx, chunk):
    """Runs after the core terrain: may change chunk.height (metres)."""
    size = ctx.size  # columns along each side of the chunk (32)
    # World coordinates of the chunk's columns. Layers are indexed [x][z]:
    # x runs along axis 0, z along axis 1, so these broadcast to (size, size).
    x = (ctx.cx * size + np.arange(size))[:, None]
    z = (ctx.cz * size + np.arange(size))[None, :]
    phase = (x + z) * (2.0 * np.pi / ctx.params["ridge_spacing"])
    ridge = (0.5 + 0.5 * np.cos(phase)) ** 4  # 0..1, sharp crests
    # Only land rises; the sea floor stays as it is.
    land = chunk.height > ctx.sea_level
    chunk.height = np.where(land, chunk.height + ctx.params["ridge_height"] * ridge, chunk.height)
    return chunk  # the host takes chunk.height: finite numbers, shape (size, size)


def features(ctx, chunk):
    """Runs after the core features: returns a list of features to add."""
    # The highest land in this chunk; chunk.height already includes every
    # plugin's terrain hook.
    high = np.argwhere(chunk.height > np.percentile(chunk.height, 90))
    high = [(int(x), int(z)) for x, z in high if chunk.height[x, z] > 0.0]
    count = min(ctx.params["cairns"], len(high))
    out = []
    # ctx.random is a random.Random seeded from (world seed, plugin, chunk):
    # the same chunk always gets the same cairns.
    for x, z in ctx.random.sample(high, count):
        out.append({
            "x": x,                 # 0..size-1, inside this chunk
            "z": z,
            "kind": "cairn",        # a-z, 0-9 and _
            "height_m": round(float(chunk.height[x, z]), 1),  # extra properties: bool, int, float or str
        })
    return out


# A biome hook would look like this (biome ids: GET /v1/biomes):
#
# def biome(ctx, chunk):
#     chunk.biome = np.where(chunk.height > 900.0, 12, chunk.biome)  # snowy_peaks
#     return chunk
