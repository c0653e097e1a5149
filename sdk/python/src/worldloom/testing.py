"""A local fake of the Worldloom plugin host, for unit tests with plain
CPython and numpy.

It loads a plugin the way the sandbox does (compile, run the module, check
the hooks and ``PARAMS``), builds ``ctx`` and ``chunk`` objects with the same
attributes, types, shapes and dtypes, calls a hook and validates its result
the way the host does (shapes, dtypes, finite heights, biome ids, feature
fields and limits). It is **not** a sandbox: no fuel, deadline or memory
limits, and the chunk layers from :func:`make_chunk` are plausible but not
the real core's. Check the real thing with ``worldloom plugin check`` and
``worldloom plugin run``.

Example (a ``unittest`` test next to ``valleys.py``)::

    import unittest
    from worldloom.testing import load_plugin, make_chunk, make_ctx, run_hook

    class ValleysTest(unittest.TestCase):
        def test_terrain_only_lowers(self):
            plugin = load_plugin("valleys.py")
            ctx = make_ctx(plugin=plugin, seed=42, cx=-3, cz=4, params={"depth": 100})
            chunk = make_chunk(seed=42, cx=-3, cz=4)
            out = run_hook(plugin, "terrain", ctx, chunk)
            self.assertTrue((out.height <= chunk.height).all())
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import keyword
import math
import os
import random
import re
import traceback
import types
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import (
    BIOME_COUNT,
    HOOKS,
    MAX_PARAM_DOC,
    MAX_PARAMS,
    MAX_STR_PARAM,
    SIZE,
    Chunk,
    Ctx,
    Feature,
    Limits,
    ParamValue,
)

__all__ = [
    "PluginError",
    "ParamError",
    "Plugin",
    "load_plugin",
    "load_source",
    "resolve_params",
    "make_ctx",
    "make_chunk",
    "run_hook",
]

PathLike = Union[str, "os.PathLike[str]"]


class PluginError(Exception):
    """A failed load or call, as the host would report it.

    Attributes:
        kind: one of :data:`worldloom.ERROR_KINDS` (the fake reports
            ``syntax``, ``exception``, ``memory_limit``, ``invalid_output``,
            ``output_limit``, ``missing_hook`` and ``trap``; it has no fuel,
            deadline or memory limits).
        message: what went wrong (for exceptions, with a traceback limited
            to the plugin's frames).
        line: the 1-based line in the plugin, when there is one.
    """

    def __init__(self, kind: str, message: str, line: Optional[int] = None) -> None:
        super().__init__("%s%s: %s" % (kind, "" if line is None else " (line %d)" % line, message))
        self.kind = kind
        self.message = message
        self.line = line


class ParamError(ValueError):
    """A world's value for a plugin parameter that the plugin does not accept
    (the server answers ``422 invalid_plugin_params``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__("%s: %s" % (name, message))
        self.name = name
        self.message = message


# ------------------------------------------------------------------ loading


def _check_params(ns: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Validates ``PARAMS`` exactly as the sandbox's harness does."""
    decls = ns.get("PARAMS", None)
    if decls is None:
        return {}
    fail = lambda msg: PluginError("invalid_output", msg)  # noqa: E731
    if not isinstance(decls, dict):
        raise fail(
            "PARAMS must be a dict like {'name': {'default': 1.0, 'min': 0, 'max': 2, 'doc': '...'}}, not %s"
            % type(decls).__name__
        )
    if len(decls) > MAX_PARAMS:
        raise fail("PARAMS declares %d parameters; at most %d are allowed" % (len(decls), MAX_PARAMS))
    out: Dict[str, Dict[str, Any]] = {}
    for name, decl in decls.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise fail("PARAMS key %r is not a valid identifier" % (name,))
        where = "PARAMS[%r]" % name
        if not isinstance(decl, dict):
            raise fail(
                "%s must be a dict with 'default' (and optionally 'min', 'max', 'doc'), not %s"
                % (where, type(decl).__name__)
            )
        for k in decl:
            if k not in ("default", "min", "max", "doc"):
                raise fail("%s has unknown key %r; allowed keys are default, min, max, doc" % (where, k))
        if "default" not in decl:
            raise fail("%s has no 'default'" % where)
        d = decl["default"]
        numeric = False
        if isinstance(d, bool):
            pass
        elif isinstance(d, int):
            if not -(2**63) <= d < 2**63:
                raise fail("%s default %d does not fit in 64 bits" % (where, d))
            numeric = True
        elif isinstance(d, float):
            if not math.isfinite(d):
                raise fail("%s default must be finite, not %r" % (where, d))
            numeric = True
        elif isinstance(d, str):
            if len(d) > MAX_STR_PARAM:
                raise fail("%s default is longer than %d characters" % (where, MAX_STR_PARAM))
        else:
            raise fail("%s default must be a bool, int, float or str, not %s" % (where, type(d).__name__))
        bounds: Dict[str, float] = {}
        for b in ("min", "max"):
            if b not in decl or decl[b] is None:
                continue
            v = decl[b]
            if not numeric:
                raise fail(
                    "%s has %r but its default is a %s; min and max are only for numbers" % (where, b, type(d).__name__)
                )
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise fail("%s %s must be a finite number, not %r" % (where, b, v))
            bounds[b] = float(v)
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise fail("%s min %r is greater than max %r" % (where, decl["min"], decl["max"]))
        if ("min" in bounds and d < bounds["min"]) or ("max" in bounds and d > bounds["max"]):
            raise fail("%s default %r is outside [%s, %s]" % (where, d, decl.get("min", "-inf"), decl.get("max", "inf")))
        doc = decl.get("doc", "")
        if not isinstance(doc, str):
            raise fail("%s doc must be a string, not %s" % (where, type(doc).__name__))
        if len(doc) > MAX_PARAM_DOC:
            raise fail("%s doc is longer than %d characters" % (where, MAX_PARAM_DOC))
        entry: Dict[str, Any] = {"default": d, "doc": doc}
        entry.update(bounds)
        out[name] = entry
    return out


def _check_hooks(ns: Mapping[str, Any]) -> Dict[str, Any]:
    hooks = {}
    for h in HOOKS:
        if h not in ns:
            continue
        fn = ns[h]
        if not callable(fn):
            raise PluginError("invalid_output", "%s is defined but is not a function (it is a %s)" % (h, type(fn).__name__))
        try:
            sig: Optional[inspect.Signature] = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            try:
                sig.bind(None, None)
            except TypeError:
                raise PluginError(
                    "invalid_output", "%s must take two arguments (ctx, chunk), but its signature is %s%s" % (h, h, sig)
                ) from None
        hooks[h] = fn
    return hooks


def _warnings(ns: Mapping[str, Any], hooks: Mapping[str, Any], filename: str) -> List[str]:
    out = []
    for name, value in ns.items():
        if name.startswith("_") or name in HOOKS:
            continue
        if isinstance(value, types.FunctionType) and value.__code__.co_filename == filename:
            close = difflib.get_close_matches(name.lower(), HOOKS, n=1, cutoff=0.75)
            if close and close[0] not in hooks:
                out.append("function %r is not a hook; did you mean %s?" % (name, close[0]))
        if name != "PARAMS" and name.upper() == "PARAMS":
            out.append("%r is ignored; did you mean PARAMS?" % name)
    return out[:16]


def _exception_error(e: BaseException, filename: str) -> PluginError:
    """An exception raised by plugin code, reported as the harness does:
    type, message, the line in the plugin and its frames."""
    if isinstance(e, PluginError):
        return e
    if isinstance(e, SystemExit):
        return PluginError("trap", "plugin called exit(%s)" % ("0" if e.code is None else e.code))
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == filename]
    line = frames[-1].lineno if frames else None
    msg = "".join(traceback.format_exception_only(type(e), e)).strip()
    if frames:
        lines = ["Traceback (%s, most recent call last):" % os.path.basename(filename)]
        for f in frames[-8:]:
            lines.append("  line %s, in %s" % (f.lineno, f.name))
            if f.line:
                lines.append("    " + f.line.strip())
        msg = "\n".join(lines) + "\n" + msg
    kind = "memory_limit" if isinstance(e, MemoryError) else "exception"
    return PluginError(kind, msg, line)


class Plugin:
    """A loaded plugin: its source, hooks, validated ``PARAMS`` and warnings.

    Attributes:
        source: the plugin's text.
        filename: the name its code was compiled under (used for line numbers).
        module: the module from the load (its globals).
        hooks: the names of the hooks it defines, in pipeline order.
        params: its ``PARAMS`` as the host records them (``default``, ``doc``
            and, when given, ``min``/``max`` as floats).
        warnings: what ``plugin check`` would warn about (e.g. a function
            named ``terain``).
    """

    def __init__(self, source: str, filename: str) -> None:
        self.source = source
        self.filename = filename
        self._code = _compile(source, filename)
        self.module = self._execute()
        ns = self.module.__dict__
        fns = _check_hooks(ns)
        self.params: Dict[str, Dict[str, Any]] = _check_params(ns)
        self.warnings = _warnings(ns, fns, filename)
        if not fns:
            hint = next((" (%s)" % w for w in self.warnings if "did you mean" in w and "PARAMS" not in w), "")
            raise PluginError("missing_hook", "the plugin defines none of the hooks terrain, biome, features" + hint)
        self.hooks = [h for h in HOOKS if h in fns]

    def _execute(self) -> types.ModuleType:
        mod = types.ModuleType("plugin")
        mod.__file__ = self.filename
        try:
            exec(self._code, mod.__dict__)
        except BaseException as e:  # noqa: B902 - reported like the harness
            if isinstance(e, KeyboardInterrupt):
                raise
            raise _exception_error(e, self.filename) from e
        return mod

    def fresh(self) -> types.ModuleType:
        """The module as it is right after loading, in a new namespace: what
        every call on the server starts from (globals a previous call changed
        are gone)."""
        return self._execute()

    def defaults(self) -> Dict[str, ParamValue]:
        """The default value of every parameter."""
        return {k: v["default"] for k, v in self.params.items()}

    def __repr__(self) -> str:
        return "Plugin(%r, hooks=%r)" % (self.filename, self.hooks)


def _compile(source: str, filename: str) -> types.CodeType:
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        msg = "%s: %s" % (type(e).__name__, e.msg)
        if e.text:
            msg += "\n    " + e.text.rstrip("\n").strip()
        raise PluginError("syntax", msg, e.lineno) from e
    except ValueError as e:
        raise PluginError("syntax", "the source cannot be compiled: %s" % e) from e


def load_source(source: str, filename: str = "plugin.py") -> Plugin:
    """Loads a plugin from its text, as the sandbox does: compiles it, runs
    the module, checks its hooks and ``PARAMS``. Raises :class:`PluginError`
    (kinds ``syntax``, ``exception``, ``invalid_output``, ``missing_hook``)."""
    return Plugin(source, filename)


def load_plugin(plugin: Union[PathLike, Plugin, types.ModuleType]) -> Plugin:
    """Loads a plugin from a file path (or returns a :class:`Plugin` as is).

    A module object already imported by a test is accepted too; it is
    loaded again from its ``__file__`` so every call can start fresh.
    """
    if isinstance(plugin, Plugin):
        return plugin
    if isinstance(plugin, types.ModuleType):
        path = getattr(plugin, "__file__", None)
        if not path:
            raise ValueError("module %r has no __file__; pass the plugin's path instead" % plugin.__name__)
        plugin = path
    path = os.fspath(plugin)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return Plugin(source, os.path.abspath(path))


# --------------------------------------------------------------- parameters


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a %s" % type(v).__name__


def resolve_params(decls: Mapping[str, Mapping[str, Any]], given: Optional[Mapping[str, Any]] = None) -> Dict[str, ParamValue]:
    """A world's values for a plugin's parameters, as the server resolves
    them when the plugin is attached: defaults filled in; every given value
    a declared name, of the default's type (an int where a float is
    declared becomes a float), finite and within ``min``/``max``. Raises
    :class:`ParamError` naming the parameter."""
    given = dict(given or {})
    for name in given:
        if name not in decls:
            known = ", ".join(sorted(decls)) or "none"
            raise ParamError(name, "the plugin declares no parameter %r (it declares: %s)" % (name, known))
    out: Dict[str, ParamValue] = {}
    for name in sorted(decls):
        decl = decls[name]
        d = decl["default"]
        if name not in given:
            out[name] = d
            continue
        v = given[name]
        if isinstance(d, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(d, float):
            same = isinstance(v, float)
        elif isinstance(d, bool):
            same = isinstance(v, bool)
        elif isinstance(d, int):
            same = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(d, str):
            same = isinstance(v, str)
        else:
            same = False
        if not same:
            raise ParamError(name, "must be %s, got %s" % (_type_name(d), _type_name(v)))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            x = float(v)
            if not math.isfinite(x):
                raise ParamError(name, "must be finite, got %r" % v)
            lo, hi = decl.get("min"), decl.get("max")
            if (lo is not None and x < lo) or (hi is not None and x > hi):
                raise ParamError(
                    name,
                    "must be between %s and %s, got %r"
                    % ("-inf" if lo is None else lo, "inf" if hi is None else hi, v),
                )
        out[name] = v
    return out


# --------------------------------------------------------------- ctx, chunk


def _fake_random_seed(seed: int, cx: int, cz: int) -> int:
    digest = hashlib.sha256(b"worldloom-fake|%d|%d|%d" % (seed, cx, cz)).digest()
    return int.from_bytes(digest[:8], "little")


def make_ctx(
    *,
    seed: int = 0,
    cx: int = 0,
    cz: int = 0,
    params: Optional[Mapping[str, Any]] = None,
    plugin: Optional[Union[PathLike, Plugin, types.ModuleType]] = None,
    hook: str = "terrain",
    random_seed: Optional[int] = None,
    size: int = SIZE,
    sea_level: float = 0.0,
) -> Ctx:
    """A ``ctx`` like the one the host passes.

    With ``plugin``, ``params`` are the world's values, resolved against the
    plugin's ``PARAMS`` as the server does (defaults filled in,
    :class:`ParamError` for a bad value); without it, ``params`` is used as
    given. ``random_seed`` seeds ``ctx.random``; by default it is derived
    from (seed, cx, cz), so it is deterministic, but not the number the
    server derives (which also depends on the plugin's name and hash).
    ``sea_level`` is the world's (``ctx.sea_level``); the terrain
    :func:`make_chunk` makes up has its coasts at the default sea level 0,
    so give it your own ``height`` to test a world with another.
    :func:`run_hook` sets ``ctx.hook`` to the hook it calls.
    """
    if not 0 <= seed < 2**64:
        raise ValueError("seed must be from 0 to 2**64-1, got %r" % (seed,))
    if hook not in HOOKS:
        raise ValueError("hook must be one of %s, got %r" % (", ".join(HOOKS), hook))
    if plugin is not None:
        resolved = resolve_params(load_plugin(plugin).params, params)
    else:
        resolved = dict(params or {})
    if random_seed is None:
        random_seed = _fake_random_seed(seed, cx, cz)
    if not math.isfinite(sea_level):
        raise ValueError("sea_level must be finite, got %r" % (sea_level,))
    return Ctx(hook, seed, cx, cz, size, resolved, random_seed, sea_level)  # type: ignore[arg-type]


def _wave_field(rng: np.random.Generator, wx: np.ndarray, wz: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """A smooth field of world coordinates: summed plane waves with seeded
    directions and phases, about -1..1."""
    total = np.zeros(np.broadcast(wx, wz).shape, dtype=np.float64)
    weight = 0.0
    for i, scale in enumerate(scales):
        angle = rng.uniform(0.0, 2.0 * np.pi)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        amp = 0.5**i
        k = 2.0 * np.pi / scale
        total += amp * np.sin(k * (np.cos(angle) * wx + np.sin(angle) * wz) + phase)
        weight += amp
    return total / weight


def _classify(height: np.ndarray, t: np.ndarray, m: np.ndarray, sea_level: float = 0.0, height_scale: float = 600.0) -> np.ndarray:
    """The core's biome rules with default parameters, vectorised."""
    depth = sea_level - height
    above = -depth
    rel = above / height_scale
    out = np.full(height.shape, 3, dtype=np.uint16)  # plains
    lowland = [
        (t < -5.0, 9),
        ((t < 5.0) & (m > 0.4), 8),
        (t < 5.0, 9),
        ((t < 22.0) & (m > 0.72) & (rel < 0.04), 10),
        ((t < 22.0) & (m > 0.45), 4),
        (t < 22.0, 3),
        (m < 0.3, 6),
        (m < 0.55, 7),
        (np.ones_like(t, dtype=bool), 5),
    ]
    conds = [
        depth > height_scale / 3.0,
        depth > 0.0,
        (rel > 0.95) | ((rel > 0.6) & (t < -4.0)),
        rel > 0.6,
        (above < max(0.006 * height_scale, 1.5)) & (t > 2.0),
    ] + [c for c, _ in lowland]
    ids = [0, 1, 12, 11, 2] + [i for _, i in lowland]
    return np.select(conds, ids, default=3).astype(np.uint16)


def _layer(name: str, value: Any, size: int, dtype: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full((size, size), arr, dtype=dtype)
    if arr.shape != (size, size):
        raise ValueError("%s has shape %s, expected (%d, %d)" % (name, tuple(arr.shape), size, size))
    return np.array(arr, dtype=dtype, copy=True)


def make_chunk(
    *,
    seed: int = 0,
    cx: int = 0,
    cz: int = 0,
    height: Any = None,
    temperature: Any = None,
    moisture: Any = None,
    biome: Any = None,
    size: int = SIZE,
) -> Chunk:
    """A ``chunk`` with the sandbox's shapes and dtypes: ``height``,
    ``temperature`` and ``moisture`` ``float32``, ``biome`` ``uint16``, each
    ``(size, size)`` indexed ``[x][z]``.

    A layer given as an array (or list) of that shape is copied and
    converted; a scalar fills the layer. A layer left out is made up: smooth
    deterministic terrain from (seed, world column) with oceans and
    mountains (heights about -800..1000 m), a temperature (about -15..40 °C,
    colder higher up), a moisture (0..1), and the biome the core's rules give
    for those values with default world parameters. The made-up values are
    continuous across chunk borders but are **not** the server's core
    terrain; ``worldloom plugin run`` shows real chunks.
    """
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, 0x5EED])
    wx = (cx * size + np.arange(size, dtype=np.float64))[:, None]
    wz = (cz * size + np.arange(size, dtype=np.float64))[None, :]
    shape_field = _wave_field(rng, wx, wz, (900.0, 410.0, 170.0, 70.0, 29.0))
    temp_field = _wave_field(rng, wx, wz, (2400.0, 900.0))
    moist_field = _wave_field(rng, wx, wz, (1700.0, 600.0))
    if height is None:
        h = shape_field * 900.0 + 100.0
    else:
        h = _layer("height", height, size, "<f4").astype(np.float64)
    if temperature is None:
        t = 14.0 + 26.0 * temp_field - 0.0065 * np.maximum(h, 0.0)
    else:
        t = _layer("temperature", temperature, size, "<f4").astype(np.float64)
    if moisture is None:
        m = np.clip(0.5 + 0.6 * moist_field, 0.0, 1.0)
    else:
        m = _layer("moisture", moisture, size, "<f4").astype(np.float64)
    if biome is None:
        b = _classify(h, t, m)
    else:
        b = _layer("biome", biome, size, "<u2")
        if int(b.max()) >= BIOME_COUNT:
            raise ValueError("biome ids are 0..%d, got %d" % (BIOME_COUNT - 1, int(b.max())))
    return Chunk(
        size,
        np.ascontiguousarray(h, dtype="<f4"),
        np.ascontiguousarray(b, dtype="<u2"),
        np.ascontiguousarray(t, dtype="<f4"),
        np.ascontiguousarray(m, dtype="<f4"),
    )


# ------------------------------------------------------------ result checks


def _first_bad(mask: np.ndarray) -> "tuple[int, int]":
    x, z = np.argwhere(mask)[0]
    return int(x), int(z)


def _layer_of(result: Any, hook: str, attr: str, size: int) -> np.ndarray:
    fail = lambda msg: PluginError("invalid_output", msg)  # noqa: E731
    if result is None:
        raise fail("%s() returned None; return the chunk (or an object with a .%s array)" % (hook, attr))
    if isinstance(result, (np.ndarray, list, tuple)):
        val = result
    else:
        val = getattr(result, attr, None)
        if val is None:
            raise fail("%s() returned a %s, which has no .%s; return the chunk" % (hook, type(result).__name__, attr))
    try:
        arr = np.asarray(val)
    except Exception as e:
        raise fail("%s cannot be turned into an array: %s" % (attr, e)) from e
    if arr.shape != (size, size):
        raise fail("%s has shape %s, expected (%d, %d)" % (attr, tuple(arr.shape), size, size))
    if arr.dtype.kind not in "biuf":
        raise fail("%s has dtype %s, expected numbers" % (attr, arr.dtype))
    return arr


def _height_of(result: Any, size: int) -> np.ndarray:
    arr = _layer_of(result, "terrain", "height", size)
    with np.errstate(over="ignore", invalid="ignore"):
        a32 = arr.astype("<f4")
    if np.isfinite(a32).all():
        return a32
    a64 = arr.astype(np.float64)
    bad = ~np.isfinite(a64)
    if bad.any():
        x, z = _first_bad(bad)
        v = a64[x, z]
        raise PluginError("invalid_output", "height[%d][%d] is %s" % (x, z, "NaN" if math.isnan(v) else repr(float(v))))
    x, z = _first_bad(~np.isfinite(a32))
    raise PluginError("invalid_output", "height[%d][%d] is %r, too large for a 32-bit float" % (x, z, float(a64[x, z])))


def _biome_of(result: Any, size: int) -> np.ndarray:
    arr = _layer_of(result, "biome", "biome", size)
    if arr.dtype.kind in "iu" and (arr.size == 0 or (int(arr.min()) >= 0 and int(arr.max()) < BIOME_COUNT)):
        return arr.astype("<u2")
    a64 = arr.astype(np.float64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(a64) | (a64 != np.floor(a64))
        if bad.any():
            x, z = _first_bad(bad)
            raise PluginError("invalid_output", "biome[%d][%d] is %r; biome ids are whole numbers" % (x, z, float(a64[x, z])))
    bad = (a64 < 0) | (a64 >= BIOME_COUNT)
    if bad.any():
        x, z = _first_bad(bad)
        raise PluginError(
            "invalid_output", "biome[%d][%d] is %s, but biome ids are 0..%d" % (x, z, int(a64[x, z]), BIOME_COUNT - 1)
        )
    return arr.astype("<u2")


_KIND_RE = re.compile(r"[a-z0-9_]+\Z")


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _features_of(result: Any, size: int, limits: Limits) -> List[Feature]:
    fail = lambda msg: PluginError("invalid_output", msg)  # noqa: E731
    if result is None:
        raise fail("features() returned None; return a list of dicts like {'x': 0, 'z': 0, 'kind': 'tree'}")
    if not isinstance(result, (list, tuple)):
        raise fail("features() returned a %s; return a list of dicts" % type(result).__name__)
    max_str = limits.max_feature_string
    if len(result) > limits.max_features:
        raise fail("features() returned %d features; at most %d are allowed" % (len(result), limits.max_features))
    out: List[Feature] = []
    for i, f in enumerate(result):
        where = "feature %d" % i
        if not isinstance(f, dict):
            raise fail("%s is a %s, not a dict" % (where, type(f).__name__))
        clean: Feature = {}
        for coord in ("x", "z"):
            if coord not in f:
                raise fail("%s has no %r" % (where, coord))
            v = _scalar(f[coord])
            if isinstance(v, bool) or not isinstance(v, int):
                raise fail("%s %s must be an integer, not %r" % (where, coord, v))
            if not 0 <= v < size:
                raise fail("%s %s=%d is outside the chunk (0..%d)" % (where, coord, v, size - 1))
            clean[coord] = v
        kind = f.get("kind")
        if not isinstance(kind, str) or not _KIND_RE.match(kind) or len(kind) > max_str:
            raise fail("%s kind must be a non-empty string of a-z, 0-9, _ (at most %d), not %r" % (where, max_str, kind))
        clean["kind"] = kind
        props = [k for k in f if k not in ("x", "z", "kind")]
        if len(props) > limits.max_feature_properties:
            raise fail("%s has %d properties; at most %d are allowed" % (where, len(props), limits.max_feature_properties))
        for k in props:
            if not isinstance(k, str) or not k.isidentifier() or len(k) > max_str:
                raise fail("%s property name %r is not an identifier (at most %d characters)" % (where, k, max_str))
            v = _scalar(f[k])
            if isinstance(v, float) and not math.isfinite(v):
                raise fail("%s property %r is %r; numbers must be finite" % (where, k, v))
            if isinstance(v, str) and len(v.encode("utf-8")) > max_str:
                raise fail("%s property %r is longer than %d bytes" % (where, k, max_str))
            if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
                raise fail("%s property %r does not fit in 64 bits" % (where, k))
            if not isinstance(v, (bool, int, float, str)):
                raise fail("%s property %r is a %s; use bool, int, float or str" % (where, k, type(v).__name__))
            clean[k] = v
        out.append(clean)
    encoded = json.dumps(out, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(encoded) > limits.output_bytes:
        raise PluginError(
            "output_limit", "the result is %d bytes; at most %d are allowed" % (len(encoded), limits.output_bytes)
        )
    return out


# ------------------------------------------------------------------ calling


def run_hook(
    plugin: Union[PathLike, Plugin, types.ModuleType],
    hook: str,
    ctx: Ctx,
    chunk: Chunk,
    *,
    limits: Optional[Limits] = None,
    fresh: bool = True,
) -> Any:
    """Calls one hook as the host does and validates what it returns.

    The hook gets ``ctx`` (with ``ctx.hook`` set to ``hook``, and the global
    ``random`` and ``numpy.random`` seeded from ``ctx.random_seed`` as the
    sandbox seeds them; both are restored afterwards) and a copy of
    ``chunk``. With ``fresh`` (the default), the plugin's module is run
    again first, so nothing a previous call changed carries over: the
    server's rule.

    Returns, for ``terrain`` and ``biome``, a new :class:`Chunk`: ``chunk``
    with the layer the host takes back (``height`` as float32, ``biome`` as
    uint16) replaced; for ``features``, the list of validated features
    (dicts of plain Python values). Raises :class:`PluginError` with the
    kind the host would report: ``missing_hook``, ``exception`` (with the
    plugin's line), ``invalid_output``, ``output_limit``, ``trap`` (exit()).
    """
    limits = limits or Limits()
    if hook not in HOOKS:
        raise ValueError("hook must be one of %s, got %r" % (", ".join(HOOKS), hook))
    loaded = load_plugin(plugin)
    if hook not in loaded.hooks:
        raise PluginError("missing_hook", "the plugin does not define %s(ctx, chunk)" % hook)
    module = loaded.fresh() if fresh else loaded.module
    fn = module.__dict__[hook]
    call_ctx = Ctx(hook, ctx.seed, ctx.cx, ctx.cz, ctx.size, dict(ctx.params), ctx.random_seed)  # type: ignore[arg-type]
    given = chunk.copy()
    py_state = random.getstate()
    np_state = np.random.get_state()
    random.seed(ctx.random_seed)
    np.random.seed(ctx.random_seed % (2**32))
    try:
        result = fn(call_ctx, given)
    except BaseException as e:  # noqa: B902 - reported like the harness
        if isinstance(e, KeyboardInterrupt):
            raise
        raise _exception_error(e, loaded.filename) from e
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    out = chunk.copy()
    if hook == "terrain":
        out.height = _height_of(result, chunk.size)
        return out
    if hook == "biome":
        out.biome = _biome_of(result, chunk.size)
        return out
    return _features_of(result, chunk.size, limits)

