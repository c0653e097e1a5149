# Worldloom plugin harness: runs inside the sandboxed interpreter (one
# `turn` in `__main__`, before the base snapshot). It loads a plugin
# (`_wl_load`) and calls its hooks (`_wl_call`), talking to the host only
# through `_host.call` in the frame layout of plugin-abi's frame.rs.
#
# Nothing here is a security boundary: the plugin can reach and change all
# of it. The host re-validates every byte it receives and restores the whole
# interpreter after every call. These checks exist to give plugin authors
# good error messages.

import sys
import io
import gc
import json
import math
import types
import random
import struct
import keyword
import difflib
import inspect
import linecache
import traceback
import itertools
import functools
import collections
import dataclasses
import statistics
import re
import heapq
import bisect

import numpy as np
# numpy imports these lazily; importing them here puts them in the base
# snapshot instead of re-importing them (tens of ms) in every call.
import numpy.random
import numpy.linalg
import numpy.fft
import _host

_WL_HOOKS = ("terrain", "biome", "features")
_WL_PARAM_KEYS = ("default", "min", "max", "doc")
_WL_MAX_PARAMS = 64
_WL_MAX_DOC = 1000
_WL_MAX_STR_PARAM = 1024
_WL_MAX_MESSAGE = 4000


def _wl_stream(fd):
    # Unbuffered text streams: output reaches the host log even if the call
    # is stopped (fuel, deadline), and nothing is left in a buffer that the
    # reset would throw away.
    return io.TextIOWrapper(
        io.FileIO(fd, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )


sys.stdout = _WL_STDOUT = _wl_stream(1)
sys.stderr = _WL_STDERR = _wl_stream(2)

_wl_hooks = {}
# Whether calls seed the global `random` and `np.random` generators from the
# call's seed first: only for a plugin whose source says "random" anywhere
# (which every plugin that uses them does: `import random`, `np.random`,
# `from numpy import random`). For the others seeding could only be seen by
# reaching a generator under a name spelled out at run time; such a plugin
# still gets the same numbers on every node (the generators' state is the
# snapshot's), just not different ones per chunk. Seeding both costs about
# 100,000 fuel (6-10 us) of every call.
_wl_seeds_globals = True
# Bound once, so a plugin that monkey-patches json in a call cannot change
# how the harness encodes (the host validates the bytes either way).
_wl_dumps = json.dumps
_wl_loads = json.loads


class _WlFail(Exception):
    """A failure the harness reports with a specific kind."""

    def __init__(self, kind, message, line=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.line = line


_WL_OUT = (b"out" + b"WLO1" + bytes((0,)), b"out" + b"WLO1" + bytes((1,)))


def _wl_send(status, body):
    # One concatenation: `body` may be any bytes-like object.
    _host.call(b"".join((_WL_OUT[status], body)))


def _wl_send_error(kind, message, line=None, exc_type=None):
    if len(message) > _WL_MAX_MESSAGE:
        message = message[:_WL_MAX_MESSAGE] + " [...]"
    doc = {"kind": kind, "message": message, "line": line}
    if exc_type is not None:
        doc["exc_type"] = exc_type
    _wl_send(1, _wl_dumps(doc).encode("utf-8"))


def _wl_safe_str(e):
    try:
        return "".join(traceback.format_exception_only(type(e), e)).strip()
    except BaseException:
        return type(e).__name__


def _wl_exit_code(e):
    code = getattr(e, "code", None)
    if code is None:
        return "0"
    if isinstance(code, int):
        return str(code)
    try:
        return repr(code)[:200]
    except BaseException:
        return "?"


def _wl_report_exception(e):
    """Reports an exception raised by plugin code: type, message, the line in
    plugin.py and a short traceback limited to plugin frames."""
    if isinstance(e, _WlFail):
        _wl_send_error(e.kind, e.message, e.line)
        return
    if isinstance(e, SystemExit):
        _wl_send_error("trap", "plugin called exit(%s)" % _wl_exit_code(e))
        return
    try:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "plugin.py"]
    except BaseException:
        frames = []
    line = frames[-1].lineno if frames else None
    msg = _wl_safe_str(e)
    if frames:
        out = ["Traceback (plugin.py, most recent call last):"]
        for f in frames[-8:]:
            out.append("  line %s, in %s" % (f.lineno, f.name))
            if f.line:
                out.append("    " + f.line.strip())
        msg = "\n".join(out) + "\n" + msg
    kind = "memory_limit" if isinstance(e, MemoryError) else "exception"
    _wl_send_error(kind, msg, line, type(e).__name__)


def _wl_flush():
    # The harness's own streams write through (nothing is ever left in
    # them); a stream the plugin put in their place may buffer.
    for s in (sys.stdout, sys.stderr):
        if s is _WL_STDOUT or s is _WL_STDERR:
            continue
        try:
            s.flush()
        except BaseException:
            pass


# ---------------------------------------------------------------- loading


def _wl_check_params(ns):
    decls = ns.get("PARAMS", None)
    if decls is None:
        return {}
    if not isinstance(decls, dict):
        raise _WlFail(
            "invalid_output",
            "PARAMS must be a dict like {'name': {'default': 1.0, 'min': 0, 'max': 2, 'doc': '...'}}, not %s"
            % type(decls).__name__,
        )
    if len(decls) > _WL_MAX_PARAMS:
        raise _WlFail("invalid_output", "PARAMS declares %d parameters; at most %d are allowed" % (len(decls), _WL_MAX_PARAMS))
    out = {}
    for name, decl in decls.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise _WlFail("invalid_output", "PARAMS key %r is not a valid identifier" % (name,))
        where = "PARAMS[%r]" % name
        if not isinstance(decl, dict):
            raise _WlFail("invalid_output", "%s must be a dict with 'default' (and optionally 'min', 'max', 'doc'), not %s" % (where, type(decl).__name__))
        for k in decl:
            if k not in _WL_PARAM_KEYS:
                raise _WlFail("invalid_output", "%s has unknown key %r; allowed keys are default, min, max, doc" % (where, k))
        if "default" not in decl:
            raise _WlFail("invalid_output", "%s has no 'default'" % where)
        d = decl["default"]
        numeric = False
        if isinstance(d, bool):
            pass
        elif isinstance(d, int):
            if not -(2 ** 63) <= d < 2 ** 63:
                raise _WlFail("invalid_output", "%s default %d does not fit in 64 bits" % (where, d))
            numeric = True
        elif isinstance(d, float):
            if not math.isfinite(d):
                raise _WlFail("invalid_output", "%s default must be finite, not %r" % (where, d))
            numeric = True
        elif isinstance(d, str):
            if len(d) > _WL_MAX_STR_PARAM:
                raise _WlFail("invalid_output", "%s default is longer than %d characters" % (where, _WL_MAX_STR_PARAM))
        else:
            raise _WlFail("invalid_output", "%s default must be a bool, int, float or str, not %s" % (where, type(d).__name__))
        bounds = {}
        for b in ("min", "max"):
            if b not in decl or decl[b] is None:
                continue
            v = decl[b]
            if not numeric:
                raise _WlFail("invalid_output", "%s has %r but its default is a %s; min and max are only for numbers" % (where, b, type(d).__name__))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise _WlFail("invalid_output", "%s %s must be a finite number, not %r" % (where, b, v))
            bounds[b] = float(v)
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise _WlFail("invalid_output", "%s min %r is greater than max %r" % (where, decl["min"], decl["max"]))
        if "min" in bounds and d < bounds["min"] or "max" in bounds and d > bounds["max"]:
            raise _WlFail(
                "invalid_output",
                "%s default %r is outside [%s, %s]" % (where, d, decl.get("min", "-inf"), decl.get("max", "inf")),
            )
        doc = decl.get("doc", "")
        if not isinstance(doc, str):
            raise _WlFail("invalid_output", "%s doc must be a string, not %s" % (where, type(doc).__name__))
        if len(doc) > _WL_MAX_DOC:
            raise _WlFail("invalid_output", "%s doc is longer than %d characters" % (where, _WL_MAX_DOC))
        entry = {"default": d, "doc": doc}
        entry.update(bounds)
        out[name] = entry
    return out


def _wl_check_hooks(ns):
    hooks = {}
    for h in _WL_HOOKS:
        if h not in ns:
            continue
        fn = ns[h]
        if not callable(fn):
            raise _WlFail("invalid_output", "%s is defined but is not a function (it is a %s)" % (h, type(fn).__name__))
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            try:
                sig.bind(None, None)
            except TypeError:
                raise _WlFail("invalid_output", "%s must take two arguments (ctx, chunk), but its signature is %s%s" % (h, h, sig))
        hooks[h] = fn
    return hooks


def _wl_warnings(ns, hooks):
    warnings = []
    for name, value in ns.items():
        if name.startswith("_") or name in _WL_HOOKS:
            continue
        if isinstance(value, types.FunctionType) and value.__code__.co_filename == "plugin.py":
            close = difflib.get_close_matches(name.lower(), _WL_HOOKS, n=1, cutoff=0.75)
            if close and close[0] not in hooks:
                warnings.append("function %r is not a hook; did you mean %s?" % (name, close[0]))
        if name != "PARAMS" and name.upper() == "PARAMS":
            warnings.append("%r is ignored; did you mean PARAMS?" % name)
    return warnings[:16]


def _wl_load():
    global _wl_seeds_globals
    try:
        src = _host.call(b"src").decode("utf-8")
        _wl_seeds_globals = "random" in src
        try:
            code = compile(src, "plugin.py", "exec", dont_inherit=True)
        except SyntaxError as e:
            msg = "%s: %s" % (type(e).__name__, e.msg)
            if e.text:
                msg += "\n    " + e.text.rstrip("\n").strip()
            _wl_send_error("syntax", msg, e.lineno)
            return
        except ValueError as e:
            _wl_send_error("syntax", "the source cannot be compiled: %s" % e)
            return
        linecache.cache["plugin.py"] = (len(src), None, src.splitlines(True), "plugin.py")
        mod = types.ModuleType("plugin")
        mod.__file__ = "plugin.py"
        sys.modules["plugin"] = mod
        exec(code, mod.__dict__)
        ns = mod.__dict__
        hooks = _wl_check_hooks(ns)
        params = _wl_check_params(ns)
        warnings = _wl_warnings(ns, hooks)
        if not hooks:
            hint = ""
            for w in warnings:
                if "did you mean" in w and "PARAMS" not in w:
                    hint = " (" + w + ")"
                    break
            raise _WlFail("missing_hook", "the plugin defines none of the hooks terrain, biome, features" + hint)
        _wl_hooks.clear()
        _wl_hooks.update(hooks)
        doc = {"hooks": [h for h in _WL_HOOKS if h in hooks], "params": params, "warnings": warnings}
        _wl_send(0, _wl_dumps(doc, allow_nan=False).encode("utf-8"))
    except BaseException as e:
        _wl_report_exception(e)
    finally:
        _wl_flush()
        gc.collect()
        gc.freeze()


# ---------------------------------------------------------------- calling


class Ctx:
    """What a hook knows about the call: seed, cx, cz, size, sea_level,
    params, random."""

    def __init__(self, hook, seed, cx, cz, size, params, random_seed, sea_level):
        self.hook = hook
        self.seed = seed
        self.cx = cx
        self.cz = cz
        self.size = size
        self.sea_level = sea_level
        self.params = params
        self._random_seed = random_seed
        self._random = None

    @property
    def random(self):
        """A random.Random seeded for this plugin and chunk."""
        if self._random is None:
            self._random = random.Random(self._random_seed)
        return self._random

    def __repr__(self):
        return "Ctx(hook=%r, seed=%r, cx=%r, cz=%r, size=%r)" % (self.hook, self.seed, self.cx, self.cz, self.size)


_WL_F4 = np.dtype("<f4")
_WL_U2 = np.dtype("<u2")


class _WlLayer:
    """A layer of the input frame, built on first use: a fresh, writable
    copy stored in the chunk's __dict__, where later reads find it directly
    (this is a non-data descriptor). A hook that reads only `height` pays
    for one array, not four."""

    def __init__(self, name, index, dtype):
        self.name = name
        self.index = index
        self.dtype = dtype

    def __get__(self, chunk, owner=None):
        if chunk is None:
            return self
        n = chunk._wl_size
        # Layers are n*n values of 4 bytes each, biome (2 bytes) last.
        a = np.ndarray((n, n), self.dtype, chunk._wl_raw, chunk._wl_off + self.index * 4 * n * n).copy()
        chunk.__dict__[self.name] = a
        return a


class Chunk:
    """The chunk's layers as numpy arrays of shape (size, size), indexed [x][z];
    each a fresh copy, made when the hook first uses it."""

    height = _WlLayer("height", 0, _WL_F4)
    temperature = _WlLayer("temperature", 1, _WL_F4)
    moisture = _WlLayer("moisture", 2, _WL_F4)
    biome = _WlLayer("biome", 3, _WL_U2)

    def __init__(self, size, raw, off):
        self.size = size
        self._wl_size = size
        self._wl_raw = raw
        self._wl_off = off

    def __repr__(self):
        return "Chunk(size=%d)" % self.size


def _wl_untouched(result, name):
    """The input bytes of layer `name` if `result` is the call's own chunk and
    the hook never read, set or deleted that layer (so it is the input
    unchanged); else None. The host validates the bytes either way."""
    if type(result) is not Chunk or name in result.__dict__ or type(Chunk.__dict__.get(name)) is not _WlLayer:
        return None
    layer = Chunk.__dict__[name]
    n = result._wl_size * result._wl_size
    off = result._wl_off + layer.index * 4 * n
    width = 4 if layer.dtype is _WL_F4 else 2
    return memoryview(result._wl_raw)[off : off + n * width]


def _wl_first_bad(mask):
    x, z = np.argwhere(mask)[0]
    return int(x), int(z)


def _wl_layer_of(result, hook, attr, size):
    if result is None:
        raise _WlFail("invalid_output", "%s() returned None; return the chunk (or an object with a .%s array)" % (hook, attr))
    if isinstance(result, (np.ndarray, list, tuple)):
        val = result
    else:
        val = getattr(result, attr, None)
        if val is None:
            raise _WlFail("invalid_output", "%s() returned a %s, which has no .%s; return the chunk" % (hook, type(result).__name__, attr))
    try:
        arr = np.asarray(val)
    except Exception as e:
        raise _WlFail("invalid_output", "%s cannot be turned into an array: %s" % (attr, _wl_safe_str(e)))
    if arr.shape != (size, size):
        raise _WlFail("invalid_output", "%s has shape %s, expected (%d, %d)" % (attr, tuple(arr.shape), size, size))
    if arr.dtype.kind not in "biuf":
        raise _WlFail("invalid_output", "%s has dtype %s, expected numbers" % (attr, arr.dtype))
    return arr


def _wl_height_bytes(result, size):
    raw = _wl_untouched(result, "height")
    if raw is not None:
        return raw
    arr = _wl_layer_of(result, "terrain", "height", size)
    with np.errstate(over="ignore", invalid="ignore"):
        a32 = arr.astype("<f4")
    if np.isfinite(a32).all():
        return a32.tobytes()
    # Slow path, only to say exactly which cell is wrong.
    a64 = arr.astype(np.float64)
    bad = ~np.isfinite(a64)
    if bad.any():
        x, z = _wl_first_bad(bad)
        v = a64[x, z]
        raise _WlFail("invalid_output", "height[%d][%d] is %s" % (x, z, "NaN" if math.isnan(v) else repr(float(v))))
    x, z = _wl_first_bad(~np.isfinite(a32))
    raise _WlFail("invalid_output", "height[%d][%d] is %r, too large for a 32-bit float" % (x, z, float(a64[x, z])))


def _wl_biome_bytes(result, size, biome_count):
    raw = _wl_untouched(result, "biome")
    if raw is not None:
        return raw
    arr = _wl_layer_of(result, "biome", "biome", size)
    if arr.dtype.kind in "iu" and (arr.size == 0 or (int(arr.min()) >= 0 and int(arr.max()) < biome_count)):
        return arr.astype("<u2").tobytes()
    # Slow path, only to say exactly which cell is wrong.
    a64 = arr.astype(np.float64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(a64) | (a64 != np.floor(a64))
        if bad.any():
            x, z = _wl_first_bad(bad)
            raise _WlFail("invalid_output", "biome[%d][%d] is %r; biome ids are whole numbers" % (x, z, float(a64[x, z])))
    bad = (a64 < 0) | (a64 >= biome_count)
    if bad.any():
        x, z = _wl_first_bad(bad)
        raise _WlFail(
            "invalid_output",
            "biome[%d][%d] is %s, but biome ids are 0..%d" % (x, z, int(a64[x, z]), biome_count - 1),
        )
    return arr.astype("<u2").tobytes()


def _wl_scalar(v):
    if isinstance(v, np.generic):
        v = v.item()
    return v


_WL_KIND_RE = re.compile(r"[a-z0-9_]+\Z")


def _wl_features_bytes(result, size, limits):
    if result is None:
        raise _WlFail("invalid_output", "features() returned None; return a list of dicts like {'x': 0, 'z': 0, 'kind': 'tree'}")
    if not isinstance(result, (list, tuple)):
        raise _WlFail("invalid_output", "features() returned a %s; return a list of dicts" % type(result).__name__)
    max_features, max_props, max_str = limits
    if len(result) > max_features:
        raise _WlFail("invalid_output", "features() returned %d features; at most %d are allowed" % (len(result), max_features))
    out = []
    for i, f in enumerate(result):
        where = "feature %d" % i
        if not isinstance(f, dict):
            raise _WlFail("invalid_output", "%s is a %s, not a dict" % (where, type(f).__name__))
        clean = {}
        for coord in ("x", "z"):
            if coord not in f:
                raise _WlFail("invalid_output", "%s has no %r" % (where, coord))
            v = _wl_scalar(f[coord])
            if isinstance(v, bool) or not isinstance(v, int):
                raise _WlFail("invalid_output", "%s %s must be an integer, not %r" % (where, coord, v))
            if not 0 <= v < size:
                raise _WlFail("invalid_output", "%s %s=%d is outside the chunk (0..%d)" % (where, coord, v, size - 1))
            clean[coord] = v
        kind = f.get("kind")
        if not isinstance(kind, str) or not _WL_KIND_RE.match(kind) or len(kind) > max_str:
            raise _WlFail("invalid_output", "%s kind must be a non-empty string of a-z, 0-9, _ (at most %d), not %r" % (where, max_str, kind))
        clean["kind"] = kind
        props = [k for k in f if k not in ("x", "z", "kind")]
        if len(props) > max_props:
            raise _WlFail("invalid_output", "%s has %d properties; at most %d are allowed" % (where, len(props), max_props))
        for k in props:
            if not isinstance(k, str) or not k.isidentifier() or len(k) > max_str:
                raise _WlFail("invalid_output", "%s property name %r is not an identifier (at most %d characters)" % (where, k, max_str))
            v = _wl_scalar(f[k])
            if isinstance(v, float) and not math.isfinite(v):
                raise _WlFail("invalid_output", "%s property %r is %r; numbers must be finite" % (where, k, v))
            if isinstance(v, str) and len(v.encode("utf-8")) > max_str:
                raise _WlFail("invalid_output", "%s property %r is longer than %d bytes" % (where, k, max_str))
            if isinstance(v, int) and not isinstance(v, bool) and not -(2 ** 63) <= v < 2 ** 63:
                raise _WlFail("invalid_output", "%s property %r does not fit in 64 bits" % (where, k))
            if not isinstance(v, (bool, int, float, str)):
                raise _WlFail("invalid_output", "%s property %r is a %s; use bool, int, float or str" % (where, k, type(v).__name__))
            clean[k] = v
        out.append(clean)
    return _wl_dumps(out, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# The input frame's fixed header (plugin-abi frame.rs): magic, hook, pad,
# biome_count, size, seed, cx, cz, random_seed, sea_level, the three feature
# limits and the length of the parameters' JSON that follows it.
_WL_HEAD = struct.Struct("<4sBBHIQiiQdIIII")
_WL_HOOK_OF = dict(enumerate(_WL_HOOKS))


def _wl_header(raw):
    """(hook, size, seed, cx, cz, random_seed, sea_level, biome_count, limits,
    params, offset of the layers) of an input frame."""
    magic, hook, _, biome_count, size, seed, cx, cz, random_seed, sea, max_f, max_p, max_s, plen = _WL_HEAD.unpack_from(raw)
    hook = _WL_HOOK_OF.get(hook)
    if magic != b"WLI3" or hook is None:
        raise RuntimeError("bad input frame")
    off = _WL_HEAD.size
    params = _wl_loads(raw[off : off + plen]) if plen else {}
    return hook, size, seed, cx, cz, random_seed, sea, biome_count, (max_f, max_p, max_s), params, off + plen


def _wl_run(raw):
    """Builds ctx and chunk from an input frame, calls the hook and returns
    the result body."""
    hook, size, seed, cx, cz, random_seed, sea, biome_count, limits, params, off = _wl_header(raw)
    if _wl_seeds_globals:
        random.seed(random_seed)
        np.random.seed(random_seed % (2 ** 32))
    ctx = Ctx(hook, seed, cx, cz, size, params, random_seed, sea)
    chunk = Chunk(size, raw, off)
    fn = _wl_hooks.get(hook)
    if fn is None:
        raise _WlFail("missing_hook", "the plugin does not define %s(ctx, chunk)" % hook)
    result = fn(ctx, chunk)
    if hook == "terrain":
        return _wl_height_bytes(result, size)
    if hook == "biome":
        return _wl_biome_bytes(result, size, biome_count)
    return _wl_features_bytes(result, size, limits)


def _wl_call():
    try:
        body = _wl_run(_host.call(b"in"))
        _wl_send(0, body)
    except BaseException as e:
        _wl_report_exception(e)
    finally:
        _wl_flush()


class _WlEagerChunk:
    """The chunk of `_wl_call_eager`."""

    def __init__(self, size, height, biome, temperature, moisture):
        self.size = size
        self.height = height
        self.biome = biome
        self.temperature = temperature
        self.moisture = moisture

    def __repr__(self):
        return "Chunk(size=%d)" % self.size


def _wl_call_eager():
    # The call path before issue 10 (every layer copied up front, the result
    # always converted), kept only so the benchmark can measure both in one
    # run (`Sandbox::use_eager_harness`).
    try:
        raw = _host.call(b"in")
        hook, size, seed, cx, cz, random_seed, sea, biome_count, limits, params, off = _wl_header(raw)
        n = size * size

        def layer(dtype, width):
            nonlocal off
            a = np.frombuffer(raw, dtype=dtype, count=n, offset=off).reshape(size, size).copy()
            off += n * width
            return a

        height = layer("<f4", 4)
        temperature = layer("<f4", 4)
        moisture = layer("<f4", 4)
        biome = layer("<u2", 2)
        random.seed(random_seed)
        np.random.seed(random_seed % (2 ** 32))
        ctx = Ctx(hook, seed, cx, cz, size, params, random_seed, sea)
        chunk = _WlEagerChunk(size, height, biome, temperature, moisture)
        fn = _wl_hooks.get(hook)
        if fn is None:
            raise _WlFail("missing_hook", "the plugin does not define %s(ctx, chunk)" % hook)
        result = fn(ctx, chunk)
        if hook == "terrain":
            body = _wl_height_bytes(result, size)
        elif hook == "biome":
            body = _wl_biome_bytes(result, size, biome_count)
        else:
            body = _wl_features_bytes(result, size, limits)
        _host.call(b"out" + b"WLO1" + bytes((0,)) + body)
    except BaseException as e:
        _wl_report_exception(e)
    finally:
        _wl_flush()


def _wl_warm_up():
    # Exercise common paths once so their lazy set-up (caches, imports) is in
    # the base snapshot rather than redone in every call.
    np.random.seed(0)
    np.random.default_rng(0).random(4)
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    repr(a)
    str(a)
    np.argwhere(~np.isfinite(a.astype(np.float64)))
    a.astype("<f4").tobytes()
    random.Random(0).random()
    _wl_dumps([{"x": 1, "z": 2, "kind": "a", "v": 1.5}], allow_nan=False, separators=(",", ":"))
    inspect.signature(_wl_warm_up).bind()
    traceback.extract_tb(None)
    # The call path itself, a few times with stand-in hooks, so what the
    # interpreter specialises and caches on the way is in the snapshot
    # instead of being redone (and its pages dirtied) in every call.
    layers = bytes(4 * 4 * 4 * 3) + bytes(4 * 4 * 2)
    frames = [_WL_HEAD.pack(b"WLI3", h, 0, 2, 4, 1, 0, 0, 7, 0.0, 4, 2, 16, len(p)) + p + layers
              for h in range(3) for p in (b"", b'{"a":1.5}')]

    def terrain(ctx, chunk):
        chunk.height[0][0] = chunk.temperature[0][0] + chunk.moisture[0][0]
        return chunk

    for hooks in (
        {"terrain": lambda ctx, chunk: chunk, "biome": lambda ctx, chunk: chunk, "features": lambda ctx, chunk: []},
        {"terrain": terrain, "biome": lambda ctx, chunk: chunk.biome, "features": lambda ctx, chunk: [{"x": 1, "z": 2, "kind": "a"}]},
    ):
        _wl_hooks.update(hooks)
        for _ in range(3):
            for f in frames:
                b"".join((_WL_OUT[0], _wl_run(f)))
    _wl_hooks.clear()


_wl_warm_up()
gc.collect()
gc.freeze()
