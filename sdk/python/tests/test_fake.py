"""The local fake: ctx and chunk shapes and dtypes, parameter resolution,
loading diagnostics, and result validation as the host does it."""

import os
import random
import tempfile
import textwrap
import unittest

import _path  # noqa: F401  (puts ../src on sys.path)
import numpy as np

import worldloom
from worldloom.testing import ParamError, PluginError, load_plugin, load_source, make_chunk, make_ctx, resolve_params, run_hook


def plugin(text):
    return load_source(textwrap.dedent(text))


LIFT = """
import numpy as np
PARAMS = {"amount": {"default": 10.0, "min": 0.0, "max": 100.0, "doc": "metres"},
          "count": {"default": 3, "min": 1, "max": 8},
          "style": {"default": "round"}}
CALLS = 0

def terrain(ctx, chunk):
    global CALLS
    CALLS += 1
    chunk.height = chunk.height + ctx.params["amount"] + (CALLS - 1) * 1e6
    return chunk

def features(ctx, chunk):
    return [{"x": ctx.random.randrange(ctx.size), "z": np.int64(3), "kind": "stone", "w": np.float32(0.5)}
            for _ in range(ctx.params["count"])]
"""


class ChunkTest(unittest.TestCase):
    def test_layers_have_the_sandbox_shapes_and_dtypes(self):
        c = make_chunk(seed=42, cx=-3, cz=4)
        self.assertEqual(c.size, worldloom.SIZE)
        for name, dtype in (("height", np.float32), ("temperature", np.float32), ("moisture", np.float32), ("biome", np.uint16)):
            layer = getattr(c, name)
            self.assertEqual(layer.shape, (32, 32), name)
            self.assertEqual(layer.dtype, dtype, name)
        self.assertTrue(np.isfinite(c.height).all())
        self.assertTrue(((c.moisture >= 0) & (c.moisture <= 1)).all())
        self.assertLess(int(c.biome.max()), worldloom.BIOME_COUNT)

    def test_made_up_layers_are_deterministic_and_depend_on_seed_and_position(self):
        a, b = make_chunk(seed=7, cx=1, cz=2), make_chunk(seed=7, cx=1, cz=2)
        np.testing.assert_array_equal(a.height, b.height)
        np.testing.assert_array_equal(a.biome, b.biome)
        self.assertFalse(np.array_equal(a.height, make_chunk(seed=8, cx=1, cz=2).height))
        self.assertFalse(np.array_equal(a.height, make_chunk(seed=7, cx=2, cz=2).height))

    def test_many_chunks_show_oceans_land_and_several_biomes(self):
        biomes, heights = set(), []
        for cx in range(-40, 40, 8):
            for cz in range(-40, 40, 8):
                c = make_chunk(seed=3, cx=cx, cz=cz)
                biomes |= set(int(b) for b in np.unique(c.biome))
                heights.append(c.height)
        h = np.concatenate([x.ravel() for x in heights])
        self.assertTrue((h < 0).any() and (h > 0).any())
        self.assertGreaterEqual(len(biomes), 4, biomes)

    def test_given_layers_are_converted_or_refused(self):
        c = make_chunk(height=5, biome=np.full((32, 32), worldloom.FOREST, dtype=np.int64), moisture=[[0.25] * 32] * 32)
        self.assertEqual(c.height.dtype, np.float32)
        self.assertTrue((c.height == 5).all())
        self.assertEqual(c.biome.dtype, np.uint16)
        self.assertTrue((c.biome == 4).all())
        self.assertTrue((c.moisture == np.float32(0.25)).all())
        with self.assertRaisesRegex(ValueError, r"height has shape \(4, 4\), expected \(32, 32\)"):
            make_chunk(height=np.zeros((4, 4)))
        with self.assertRaisesRegex(ValueError, "biome ids are 0..12"):
            make_chunk(biome=13)


class CtxTest(unittest.TestCase):
    def test_ctx_has_the_sandbox_attributes(self):
        ctx = make_ctx(seed=42, cx=-3, cz=4, params={"a": 1})
        self.assertEqual((ctx.hook, ctx.seed, ctx.cx, ctx.cz, ctx.size, ctx.params), ("terrain", 42, -3, 4, 32, {"a": 1}))
        self.assertIsInstance(ctx.random, random.Random)
        same = make_ctx(seed=42, cx=-3, cz=4)
        self.assertEqual(ctx.random.random(), same.random.random())
        self.assertNotEqual(make_ctx(seed=42, cx=-2, cz=4).random.random(), make_ctx(seed=42, cx=-3, cz=4).random.random())
        self.assertEqual(make_ctx(random_seed=5).random.random(), random.Random(5).random())
        with self.assertRaises(ValueError):
            make_ctx(seed=-1)
        self.assertEqual(ctx.sea_level, 0.0)
        self.assertEqual(make_ctx(sea_level=-35.5).sea_level, -35.5)
        with self.assertRaises(ValueError):
            make_ctx(sea_level=float("nan"))

    def test_params_resolve_against_the_plugin_like_the_server(self):
        p = plugin(LIFT)
        ctx = make_ctx(plugin=p, params={"amount": 50})
        self.assertEqual(ctx.params, {"amount": 50.0, "count": 3, "style": "round"})
        self.assertIsInstance(ctx.params["amount"], float)
        with self.assertRaisesRegex(ParamError, r"declares no parameter 'depth' \(it declares: amount, count, style\)"):
            make_ctx(plugin=p, params={"depth": 1})
        with self.assertRaisesRegex(ParamError, "amount: must be between 0.0 and 100.0, got 500"):
            make_ctx(plugin=p, params={"amount": 500})
        with self.assertRaisesRegex(ParamError, "count: must be an integer, got a number"):
            resolve_params(p.params, {"count": 2.5})
        with self.assertRaisesRegex(ParamError, "style: must be a string, got a boolean"):
            resolve_params(p.params, {"style": True})
        with self.assertRaisesRegex(ParamError, "must be finite"):
            resolve_params(p.params, {"amount": float("nan")})


class LoadTest(unittest.TestCase):
    def test_a_plugin_reports_hooks_params_and_warnings(self):
        p = plugin(LIFT + "\ndef biom(ctx, chunk):\n    return chunk\n")
        self.assertEqual(p.hooks, ["terrain", "features"])
        self.assertEqual(p.params["amount"], {"default": 10.0, "doc": "metres", "min": 0.0, "max": 100.0})
        self.assertEqual(p.params["count"]["min"], 1.0)
        self.assertEqual(p.defaults(), {"amount": 10.0, "count": 3, "style": "round"})
        self.assertIn("function 'biom' is not a hook; did you mean biome?", p.warnings)

    def test_load_failures_have_the_host_kinds_and_lines(self):
        cases = [
            ("def terrain(ctx, chunk):\n    return chunk\n\ndef biome(ctx, chunk)\n    return chunk\n", "syntax", 4, "SyntaxError"),
            ("import numpy\nx = 1 / 0\ndef terrain(ctx, chunk):\n    return chunk\n", "exception", 2, "ZeroDivisionError"),
            ("def helper():\n    return 1\n", "missing_hook", None, "defines none of the hooks"),
            ("def terrain(chunk):\n    return chunk\n", "invalid_output", None, "must take two arguments"),
            ("terrain = 3\n", "invalid_output", None, "is not a function"),
            ("PARAMS = {'d': {'default': 5.0, 'max': 1.0}}\ndef terrain(c, k):\n    return k\n", "invalid_output", None, "outside"),
            ("PARAMS = {'d': {'value': 5.0}}\ndef terrain(c, k):\n    return k\n", "invalid_output", None, "unknown key 'value'"),
            ("PARAMS = {'d': {'default': 's', 'min': 0}}\ndef terrain(c, k):\n    return k\n", "invalid_output", None, "only for numbers"),
            ("PARAMS = [1]\ndef terrain(c, k):\n    return k\n", "invalid_output", None, "PARAMS must be a dict"),
            ("import sys\nsys.exit(3)\n", "trap", None, "exit(3)"),
        ]
        for source, kind, line, text in cases:
            with self.subTest(source=source):
                with self.assertRaises(PluginError) as e:
                    load_source(source)
                self.assertEqual(e.exception.kind, kind, e.exception)
                self.assertEqual(e.exception.line, line, e.exception)
                self.assertIn(text, e.exception.message)

    def test_a_file_loads_by_path_with_its_own_name_in_tracebacks(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "boom.py")
            with open(path, "w") as f:
                f.write("def terrain(ctx, chunk):\n    x = 1\n    raise RuntimeError('boom')\n")
            p = load_plugin(path)
            with self.assertRaises(PluginError) as e:
                run_hook(path, "terrain", make_ctx(), make_chunk())
            self.assertEqual((e.exception.kind, e.exception.line), ("exception", 3))
            self.assertIn("RuntimeError: boom", e.exception.message)
            self.assertIn("line 3, in terrain", e.exception.message)
            self.assertIsInstance(e.exception.__cause__, RuntimeError)
            self.assertEqual(p.filename, os.path.abspath(path))


class RunHookTest(unittest.TestCase):
    def test_terrain_applies_height_as_float32_and_starts_fresh_each_call(self):
        p = plugin(LIFT)
        ctx = make_ctx(plugin=p, params={"amount": 25})
        chunk = make_chunk(seed=1)
        for _ in range(3):
            out = run_hook(p, "terrain", ctx, chunk)
            self.assertEqual(out.height.dtype, np.float32)
            np.testing.assert_array_equal(out.height, chunk.height + np.float32(25))
        np.testing.assert_array_equal(out.biome, chunk.biome)
        # The caller's chunk is untouched.
        np.testing.assert_array_equal(chunk.height, make_chunk(seed=1).height)
        # Without a fresh module, the global counter carries over (which the server never allows).
        run_hook(p, "terrain", ctx, chunk, fresh=False)
        stale = run_hook(p, "terrain", ctx, chunk, fresh=False)
        self.assertGreater(float((stale.height - chunk.height).min()), 1e5)

    def test_features_are_validated_and_plain_python(self):
        p = plugin(LIFT)
        ctx = make_ctx(plugin=p, seed=9, cx=1, cz=1)
        got = run_hook(p, "features", ctx, make_chunk())
        self.assertEqual(len(got), 3)
        for f in got:
            self.assertEqual(set(f), {"x", "z", "kind", "w"})
            self.assertIs(type(f["z"]), int)
            self.assertIs(type(f["w"]), float)
            self.assertTrue(0 <= f["x"] < 32)
        self.assertEqual(got, run_hook(p, "features", ctx, make_chunk()), "same ctx, same features")

    def test_the_global_random_is_seeded_per_call_and_restored(self):
        p = plugin("import random\nimport numpy as np\ndef features(ctx, chunk):\n"
                   "    return [{'x': 0, 'z': 0, 'kind': 'r', 'a': random.random(), 'b': float(np.random.random())}]\n")
        random.seed(123)
        expected_next = random.Random(123).random()
        a = run_hook(p, "features", make_ctx(random_seed=77), make_chunk())
        b = run_hook(p, "features", make_ctx(random_seed=77), make_chunk())
        self.assertEqual(a, b)
        self.assertEqual(a[0]["a"], random.Random(77).random())
        self.assertEqual(random.random(), expected_next, "the test's own random state is restored")

    def test_invalid_outputs_are_refused_with_the_host_messages(self):
        cases = [
            ("terrain", "chunk.height[1, 2] = np.nan\n    return chunk", "height[1][2] is NaN"),
            ("terrain", "h = chunk.height.astype(np.float64)\n    h[0, 5] = 1e39\n    return h", "height[0][5] is 1e+39, too large for a 32-bit float"),
            ("terrain", "return None", "terrain() returned None"),
            ("terrain", "return np.zeros((16, 16))", "height has shape (16, 16), expected (32, 32)"),
            ("terrain", "return {'height': 1}", "terrain() returned a dict, which has no .height"),
            ("terrain", "chunk.height = np.full((32, 32), 'a')\n    return chunk", "expected numbers"),
            ("biome", "chunk.biome[3, 4] = 13\n    return chunk", "biome[3][4] is 13, but biome ids are 0..12"),
            ("biome", "return chunk.biome.astype(float) + 0.5", "biome[0][0] is"),
            ("biome", "chunk.biome = chunk.biome.astype(np.int64) - 1 - chunk.biome\n    return chunk", "biome[0][0] is -1"),
            ("features", "return None", "features() returned None"),
            ("features", "return {'x': 1}", "features() returned a dict"),
            ("features", "return [{'x': 32, 'z': 0, 'kind': 'a'}]", "feature 0 x=32 is outside the chunk (0..31)"),
            ("features", "return [{'x': 1, 'z': 0.5, 'kind': 'a'}]", "feature 0 z must be an integer"),
            ("features", "return [{'x': 1, 'kind': 'a'}]", "feature 0 has no 'z'"),
            ("features", "return [{'x': 1, 'z': 1, 'kind': 'Big Tree'}]", "kind must be a non-empty string"),
            ("features", "return [{'x': 1, 'z': 1, 'kind': 'a', 'v': float('inf')}]", "numbers must be finite"),
            ("features", "return [{'x': 1, 'z': 1, 'kind': 'a', 'v': [1]}]", "is a list; use bool, int, float or str"),
            ("features", "return [{'x': 1, 'z': 1, 'kind': 'a', 'v': 'x' * 65}]", "longer than 64 bytes"),
            ("features", "return [dict({'x': 1, 'z': 1, 'kind': 'a'}, **{'p%d' % i: i for i in range(17)})]", "17 properties; at most 16"),
            ("features", "return [{'x': 0, 'z': 0, 'kind': 'a'}] * 4097", "4097 features; at most 4096"),
        ]
        for hook, body, text in cases:
            with self.subTest(hook=hook, body=body):
                p = plugin("import numpy as np\ndef %s(ctx, chunk):\n    %s\n" % (hook, body))
                with self.assertRaises(PluginError) as e:
                    run_hook(p, hook, make_ctx(), make_chunk())
                self.assertEqual(e.exception.kind, "invalid_output", e.exception)
                self.assertIn(text, e.exception.message)

    def test_a_layer_may_be_returned_directly_and_limits_can_be_tightened(self):
        p = plugin("import numpy as np\ndef terrain(ctx, chunk):\n    return (chunk.height * 2).tolist()\n"
                   "def features(ctx, chunk):\n    return [{'x': 0, 'z': 0, 'kind': 'a'}] * 3\n")
        chunk = make_chunk(seed=4)
        np.testing.assert_array_equal(run_hook(p, "terrain", make_ctx(), chunk).height, chunk.height * 2)
        with self.assertRaises(PluginError) as e:
            run_hook(p, "features", make_ctx(), chunk, limits=worldloom.Limits(max_features=2))
        self.assertIn("at most 2", e.exception.message)
        with self.assertRaises(PluginError) as e:
            run_hook(p, "features", make_ctx(), chunk, limits=worldloom.Limits(output_bytes=10))
        self.assertEqual(e.exception.kind, "output_limit")

    def test_a_hook_the_plugin_lacks_is_missing(self):
        with self.assertRaises(PluginError) as e:
            run_hook(plugin(LIFT), "biome", make_ctx(), make_chunk())
        self.assertEqual(e.exception.kind, "missing_hook")
        self.assertIn("does not define biome(ctx, chunk)", e.exception.message)


class TypesTest(unittest.TestCase):
    def test_the_tables_match_the_host(self):
        self.assertEqual(worldloom.HOOKS, ("terrain", "biome", "features"))
        self.assertEqual(len(worldloom.ERROR_KINDS), 9)
        self.assertEqual(worldloom.biome_id("snowy_peaks"), 12)
        self.assertEqual(worldloom.BIOMES[worldloom.SWAMP], (10, "swamp"))
        with self.assertRaisesRegex(KeyError, "unknown biome 'lava'"):
            worldloom.biome_id("lava")
        limits = worldloom.Limits()
        self.assertEqual((limits.fuel, limits.deadline_ms, limits.memory_bytes), (2_000_000_000, 2000, 268435456))
        self.assertEqual((limits.max_features, limits.max_feature_properties, limits.max_feature_string), (4096, 16, 64))


if __name__ == "__main__":
    unittest.main()
