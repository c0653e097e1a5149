"""terraces: the land as stepped terraces, like rice paddies or mesas.

terrain: height is quantised into steps of `step` metres. Within each step a
column stays on the flat tread below it for the lower `sharpness` part of
the step, then rises along a smooth riser to the next tread:

    sharpness 1.0   pure steps: every height is a multiple of `step`
    sharpness 0.8   wide flat treads, short steep risers (the default)
    sharpness 0.0   no flat treads, only a gentle ripple

The mapping never moves a column across the world's sea level (`ctx.sea_level`):
land stays land and sea stays sea, so coastlines are exactly the core's.
Each column depends only on its own height, so there are no seams.

Try it:
    worldloom plugin run examples/plugins/terraces.py --hook terrain --seed 42 --chunk 0,0 \
        --params '{"step": 50, "sharpness": 1}'
"""

import numpy as np

PARAMS = {
    "step": {"default": 40.0, "min": 1.0, "max": 2000.0, "doc": "height of one terrace, metres"},
    "sharpness": {"default": 0.8, "min": 0.0, "max": 1.0, "doc": "share of each step that is flat tread (1: pure steps)"},
}


def terrain(ctx, chunk):
    step = float(ctx.params["step"])
    sharp = float(ctx.params["sharpness"])
    sea = ctx.sea_level  # terraces are counted from the world's sea level
    h = chunk.height.astype(np.float64) - sea
    tread = np.floor(h / step)          # which terrace each column is on
    t = h / step - tread                # 0..1: how far up its step
    if sharp >= 1.0:
        rise = np.zeros_like(t)
    else:
        # Flat for t < sharpness, then a smoothstep riser up to the next tread.
        # rise < 1 whenever t < 1, so a column never climbs past the next
        # tread: negative heights stay negative, positive stay positive.
        u = np.clip((t - sharp) / (1.0 - sharp), 0.0, 1.0)
        rise = u * u * (3.0 - 2.0 * u)
    chunk.height = ((tread + rise) * step + sea).astype(np.float32)
    return chunk
