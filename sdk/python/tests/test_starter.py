"""The starter plugin `worldloom plugin new` writes, through the fake.

Uses the file named by WORLDLOOM_STARTER_PLUGIN (the end-to-end test writes
it with the real `worldloom plugin new`); without it, renders the template
from the checkout (cli/src/plugin_template.py) the same way."""

import os
import tempfile
import unittest

import _path  # noqa: F401  (puts ../src on sys.path)
import numpy as np

from worldloom.testing import load_plugin, make_chunk, make_ctx, run_hook

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "..", "..", "cli", "src", "plugin_template.py")


def starter_path(tmp):
    given = os.environ.get("WORLDLOOM_STARTER_PLUGIN")
    if given:
        return given
    with open(TEMPLATE, encoding="utf-8") as f:
        source = f.read().replace("{{name}}", "starter")
    path = os.path.join(tmp, "starter.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    return path


class StarterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.plugin = load_plugin(starter_path(self.tmp.name))

    def tearDown(self):
        self.tmp.cleanup()

    def test_it_declares_terrain_and_features_and_its_params(self):
        self.assertEqual(self.plugin.hooks, ["terrain", "features"])
        self.assertEqual(sorted(self.plugin.params), ["cairns", "ridge_height", "ridge_spacing"])
        self.assertEqual(self.plugin.warnings, [])
        for decl in self.plugin.params.values():
            self.assertTrue(decl["doc"])

    def test_terrain_raises_land_by_at_most_ridge_height_and_leaves_the_sea(self):
        for cx, cz in [(0, 0), (5, -3), (-12, 7), (30, 30)]:
            ctx = make_ctx(plugin=self.plugin, seed=42, cx=cx, cz=cz, params={"ridge_height": 300})
            chunk = make_chunk(seed=42, cx=cx, cz=cz)
            out = run_hook(self.plugin, "terrain", ctx, chunk)
            lift = out.height.astype(np.float64) - chunk.height
            land = chunk.height > 0
            self.assertTrue((lift[~land] == 0).all())
            self.assertTrue((lift >= 0).all() and (lift <= 300.001).all())
            if land.any():
                self.assertGreater(float(lift[land].max()), 0.0)

    def test_zero_ridge_height_changes_nothing(self):
        ctx = make_ctx(plugin=self.plugin, seed=1, params={"ridge_height": 0})
        chunk = make_chunk(seed=1, height=50.0)
        np.testing.assert_array_equal(run_hook(self.plugin, "terrain", ctx, chunk).height, chunk.height)

    def test_features_put_the_requested_cairns_on_high_land_deterministically(self):
        height = np.tile(np.arange(32, dtype=np.float32)[:, None], (1, 32)) * 10.0 - 5.0
        chunk = make_chunk(height=height)
        ctx = make_ctx(plugin=self.plugin, seed=42, cx=2, cz=3, params={"cairns": 5})
        got = run_hook(self.plugin, "features", ctx, chunk)
        self.assertEqual(len(got), 5)
        for f in got:
            self.assertEqual(f["kind"], "cairn")
            self.assertGreaterEqual(f["x"], 28, "only the highest tenth of the chunk")
            self.assertAlmostEqual(f["height_m"], float(height[f["x"], f["z"]]), places=1)
        self.assertEqual(got, run_hook(self.plugin, "features", ctx, chunk))
        other = make_ctx(plugin=self.plugin, seed=42, cx=3, cz=3, params={"cairns": 5})
        self.assertNotEqual(got, run_hook(self.plugin, "features", other, chunk))

    def test_an_all_ocean_chunk_gets_no_cairns(self):
        ctx = make_ctx(plugin=self.plugin)
        self.assertEqual(run_hook(self.plugin, "features", ctx, make_chunk(height=-100.0)), [])


if __name__ == "__main__":
    unittest.main()
