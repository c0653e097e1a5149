"""Types and documentation for Worldloom plugins, for editors and unit tests.

A Worldloom plugin is one Python file that defines any of three hooks, each
called with a ``ctx`` and a ``chunk``::

    def terrain(ctx, chunk):   # may change chunk.height; returns the chunk
    def biome(ctx, chunk):     # may change chunk.biome; returns the chunk
    def features(ctx, chunk):  # returns a list of feature dicts to add

and optionally a ``PARAMS`` dict declaring the parameters a world may set.
The server runs the file in a WebAssembly sandbox (CPython with numpy, scipy
and pandas). This package is **not** that sandbox: it describes what the
sandbox hands your hooks (:class:`Ctx`, :class:`Chunk`, the ``PARAMS``
format :class:`ParamDecl`, :data:`Feature`) and, in :mod:`worldloom.testing`, a
local fake so hooks can be unit-tested with plain CPython and numpy. The
real check is ``worldloom plugin check`` / ``worldloom plugin run``.

The sandbox has no ``worldloom`` package, so import it only for type
checking::

    from __future__ import annotations
    from typing import TYPE_CHECKING
    if TYPE_CHECKING:
        from worldloom import Chunk, Ctx, Feature

    def terrain(ctx: Ctx, chunk: Chunk) -> Chunk:
        ...

Pipeline order for one chunk: core terrain, then every plugin's ``terrain``
(in the world's order), then core climate and biomes (recomputed from the
final height), then every ``biome``, then core features, then every
``features``.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Any, Dict, Final, List, Literal, Mapping, Optional, Protocol, Tuple, TypedDict, Union

import numpy as np

try:
    from numpy.typing import NDArray
except ImportError:  # pragma: no cover - numpy < 1.21
    NDArray = Any  # type: ignore[misc,assignment]

__all__ = [
    "SIZE",
    "HOOKS",
    "HookName",
    "ERROR_KINDS",
    "ErrorKind",
    "ParamValue",
    "ParamDecl",
    "Params",
    "Feature",
    "FeatureValue",
    "Ctx",
    "Chunk",
    "TerrainHook",
    "BiomeHook",
    "FeaturesHook",
    "Limits",
    "BIOMES",
    "BIOME_COUNT",
    "biome_id",
    "MAX_PARAMS",
    "MAX_PARAM_DOC",
    "MAX_STR_PARAM",
]

#: Columns along each side of a chunk; every layer has shape ``(SIZE, SIZE)``.
SIZE: Final = 32

#: The hooks a plugin may define, in pipeline order.
HOOKS: Final = ("terrain", "biome", "features")
HookName = Literal["terrain", "biome", "features"]

#: Why a load or a call failed, as ``plugin check``/``plugin run`` and a
#: chunk's ``plugin_failures`` report it.
#:
#: - ``exception``: your code raised (the message has the traceback and line);
#: - ``timeout``: the call passed its wall-clock deadline;
#: - ``fuel_exhausted``: the call used up its instruction budget;
#: - ``memory_limit``: more linear memory than the cap (or a ``MemoryError``);
#: - ``output_limit``: too much ``print()`` output or too large a result;
#: - ``invalid_output``: a result (or ``PARAMS``) of the wrong type, shape or range;
#: - ``trap``: the interpreter trapped (stack overflow, abort, ``exit()``);
#: - ``missing_hook``: the hook called is not defined (or no hook is);
#: - ``syntax``: the file does not compile.
ERROR_KINDS: Final = (
    "exception",
    "timeout",
    "fuel_exhausted",
    "memory_limit",
    "output_limit",
    "invalid_output",
    "trap",
    "missing_hook",
    "syntax",
)
ErrorKind = Literal[
    "exception",
    "timeout",
    "fuel_exhausted",
    "memory_limit",
    "output_limit",
    "invalid_output",
    "trap",
    "missing_hook",
    "syntax",
]

#: A plugin parameter's value: what ``PARAMS`` defaults and ``ctx.params`` hold.
ParamValue = Union[bool, int, float, str]

#: Most entries ``PARAMS`` may declare.
MAX_PARAMS: Final = 64
#: Longest ``doc`` of a ``PARAMS`` entry, characters.
MAX_PARAM_DOC: Final = 1000
#: Longest string default of a ``PARAMS`` entry, characters.
MAX_STR_PARAM: Final = 1024


class _ParamDeclRequired(TypedDict):
    default: ParamValue


class ParamDecl(_ParamDeclRequired, total=False):
    """One entry of ``PARAMS``::

        PARAMS = {
            "depth": {"default": 40.0, "min": 0.0, "max": 500.0, "doc": "valley depth, metres"},
            "style": {"default": "round", "doc": "round or sharp"},
        }

    - keys are Python identifiers (not keywords), at most :data:`MAX_PARAMS`;
    - ``default`` (required) is a bool, int (64-bit), finite float or str (at
      most :data:`MAX_STR_PARAM` characters); a world's value must have the
      same type (an int is accepted where the default is a float);
    - ``min``/``max`` (optional, numbers only) bound the default and every
      world's value;
    - ``doc`` (optional) is shown in the workshop, at most
      :data:`MAX_PARAM_DOC` characters;
    - no other keys are allowed.
    """

    min: float
    max: float
    doc: str


#: The ``PARAMS`` module global: parameter name -> declaration.
Params = Dict[str, ParamDecl]

#: A feature property's value (``x``, ``z`` and ``kind`` aside).
FeatureValue = Union[bool, int, float, str]

#: A feature a ``features`` hook returns: a dict with
#:
#: - ``"x"``, ``"z"``: ints in ``0..SIZE-1``, the column inside this chunk;
#: - ``"kind"``: a non-empty string of ``a-z``, ``0-9`` and ``_``, at most
#:   ``Limits.max_feature_string`` (64) bytes;
#: - any other keys: properties, at most ``Limits.max_feature_properties``
#:   (16); names are identifiers of at most 64 characters; values are bool,
#:   int (64-bit), finite float or str (at most 64 bytes UTF-8).
#:
#: At most ``Limits.max_features`` (4096) per call. numpy scalars are accepted.
Feature = Dict[str, FeatureValue]


class Ctx:
    """What a hook knows about its call (the sandbox's ``ctx``).

    Attributes:
        hook: the hook being called: ``"terrain"``, ``"biome"`` or ``"features"``.
        seed: the world seed, an int from 0 to 2**64-1.
        cx, cz: the chunk's coordinates; its columns are world
            ``x = cx * size + i`` and ``z = cz * size + j`` for ``i, j`` in
            ``range(size)``.
        size: columns along each side of the chunk (:data:`SIZE`, 32).
        sea_level: the world's sea level in metres (its ``sea_level``
            parameter, 0 by default): columns whose height is below it are
            sea.
        params: the world's values for your ``PARAMS``, every default filled
            in (a fresh dict each call; changing it changes nothing else).
        random: a :class:`random.Random` seeded from (world seed, plugin,
            chunk): the same chunk of the same world always gets the same
            numbers, and neighbouring chunks get different ones.

    For a plugin whose source mentions ``random`` at all, the sandbox also
    seeds the global ``random`` module and ``numpy.random`` from the same
    seed before every call (others would never read them, so they do not
    pay for it), but ``ctx.random`` (or
    ``numpy.random.default_rng(ctx.random.getrandbits(64))``) says what you
    mean.
    """

    hook: HookName
    seed: int
    cx: int
    cz: int
    size: int
    sea_level: float
    params: Dict[str, ParamValue]

    def __init__(
        self,
        hook: HookName,
        seed: int,
        cx: int,
        cz: int,
        size: int,
        params: Dict[str, ParamValue],
        random_seed: int,
        sea_level: float = 0.0,
    ) -> None:
        self.hook = hook
        self.seed = seed
        self.cx = cx
        self.cz = cz
        self.size = size
        self.sea_level = float(sea_level)
        self.params = params
        self._random_seed = random_seed
        self._random: Optional[_random.Random] = None

    @property
    def random(self) -> _random.Random:
        """A ``random.Random`` seeded for this plugin and chunk."""
        if self._random is None:
            self._random = _random.Random(self._random_seed)
        return self._random

    @property
    def random_seed(self) -> int:
        """The seed of :attr:`random` (on the server, derived from the world
        seed, the plugin's name and hash, and the chunk)."""
        return self._random_seed

    def __repr__(self) -> str:
        return "Ctx(hook=%r, seed=%r, cx=%r, cz=%r, size=%r)" % (self.hook, self.seed, self.cx, self.cz, self.size)


class Chunk:
    """The chunk's layers (the sandbox's ``chunk``): numpy arrays of shape
    ``(size, size)`` indexed ``[x][z]`` (``x`` along axis 0), fresh copies in
    every call.

    Attributes:
        size: columns along each side (32).
        height: terrain height in metres, ``float32``. Sea level is a world
            parameter (default 0); below it is ocean.
        temperature: mean temperature in degrees Celsius, ``float32``.
        moisture: from 0 (arid) to 1 (saturated), ``float32``.
        biome: biome ids (:data:`BIOMES`), ``uint16``.

    Every layer is readable in every hook. What the host takes back:
    ``terrain`` -> ``height``, ``biome`` -> ``biome``; changes to other layers
    are ignored. In a ``terrain`` hook, temperature, moisture and biome are
    those of the core terrain (they are recomputed from the height you leave);
    a ``features`` hook sees the final layers. You may assign a new array
    (any numeric dtype, converted: height to float32, which must stay finite;
    biome to uint16, which must be whole numbers in ``0..BIOME_COUNT-1``) or
    change the array in place.
    """

    size: int
    height: NDArray[np.float32]
    temperature: NDArray[np.float32]
    moisture: NDArray[np.float32]
    biome: NDArray[np.uint16]

    def __init__(
        self,
        size: int,
        height: NDArray[np.float32],
        biome: NDArray[np.uint16],
        temperature: NDArray[np.float32],
        moisture: NDArray[np.float32],
    ) -> None:
        self.size = size
        self.height = height
        self.biome = biome
        self.temperature = temperature
        self.moisture = moisture

    def copy(self) -> "Chunk":
        """A deep copy (the fake hands every call its own arrays, as the host does)."""
        return Chunk(
            self.size,
            np.array(self.height, copy=True),
            np.array(self.biome, copy=True),
            np.array(self.temperature, copy=True),
            np.array(self.moisture, copy=True),
        )

    def __repr__(self) -> str:
        return "Chunk(size=%d)" % self.size


#: What a ``terrain`` or ``biome`` hook may return: the chunk (or any object
#: with a ``.height`` / ``.biome`` array), or the layer itself as an array,
#: list or tuple of shape ``(size, size)``.
LayerResult = Union[Chunk, Any]


class TerrainHook(Protocol):
    """``def terrain(ctx, chunk)``: may change ``chunk.height``; return the chunk."""

    def __call__(self, ctx: Ctx, chunk: Chunk) -> LayerResult: ...


class BiomeHook(Protocol):
    """``def biome(ctx, chunk)``: may change ``chunk.biome``; return the chunk."""

    def __call__(self, ctx: Ctx, chunk: Chunk) -> LayerResult: ...


class FeaturesHook(Protocol):
    """``def features(ctx, chunk)``: return a list (or tuple) of :data:`Feature` dicts."""

    def __call__(self, ctx: Ctx, chunk: Chunk) -> List[Feature]: ...


@dataclass(frozen=True)
class Limits:
    """The per-call limits the host enforces, with the server's defaults
    (operators change them in the ``[limits]`` configuration section).

    Breaking one fails the call with the :data:`ErrorKind` in brackets.
    """

    #: Instructions per hook call (deterministic) [fuel_exhausted].
    fuel: int = 2_000_000_000
    #: Instructions for loading the plugin: its module-level code and imports [fuel_exhausted].
    load_fuel: int = 20_000_000_000
    #: Wall-clock deadline per hook call, milliseconds [timeout].
    deadline_ms: int = 2_000
    #: Wall-clock deadline for loading, milliseconds [timeout].
    load_deadline_ms: int = 10_000
    #: Linear memory cap, bytes (256 MiB) [memory_limit].
    memory_bytes: int = 256 << 20
    #: Captured ``print()`` output per call, bytes (16 KiB) [output_limit].
    log_bytes: int = 16 << 10
    #: Encoded result per call, bytes (1 MiB) [output_limit].
    output_bytes: int = 1 << 20
    #: Features one ``features`` call may add [invalid_output].
    max_features: int = 4_096
    #: Properties one feature may carry [invalid_output].
    max_feature_properties: int = 16
    #: Longest feature kind, property name or string property, bytes [invalid_output].
    max_feature_string: int = 64
    #: Memory kept after loading (the warm snapshot), bytes (128 MiB) [memory_limit].
    snapshot_bytes: int = 128 << 20


#: The biome table (``GET /v1/biomes``): ``(id, name)``; ids are stable.
BIOMES: Final[Tuple[Tuple[int, str], ...]] = (
    (0, "deep_ocean"),
    (1, "ocean"),
    (2, "beach"),
    (3, "plains"),
    (4, "forest"),
    (5, "rainforest"),
    (6, "desert"),
    (7, "savanna"),
    (8, "taiga"),
    (9, "tundra"),
    (10, "swamp"),
    (11, "mountains"),
    (12, "snowy_peaks"),
)
#: Number of biomes; valid ids are ``0..BIOME_COUNT-1``.
BIOME_COUNT: Final = len(BIOMES)

_BIOME_IDS: Mapping[str, int] = {name: i for i, name in BIOMES}

DEEP_OCEAN: Final = 0
OCEAN: Final = 1
BEACH: Final = 2
PLAINS: Final = 3
FOREST: Final = 4
RAINFOREST: Final = 5
DESERT: Final = 6
SAVANNA: Final = 7
TAIGA: Final = 8
TUNDRA: Final = 9
SWAMP: Final = 10
MOUNTAINS: Final = 11
SNOWY_PEAKS: Final = 12


def biome_id(name: str) -> int:
    """The id of a biome by name, e.g. ``biome_id("forest") == 4``."""
    try:
        return _BIOME_IDS[name]
    except KeyError:
        raise KeyError("unknown biome %r; known: %s" % (name, ", ".join(n for _, n in BIOMES))) from None
