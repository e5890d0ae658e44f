"""What to build: optimization profiles and builder settings, as plain, validated Python values.

Introduced in lab 01 (batching), which builds one engine per batch range with :func:`batch_profile`;
lab 10 (builder) sweeps the other fields. A :class:`BuildConfig` names TensorRT options by their enum
member names (``"JIT_CONVOLUTIONS"``, ``"FULL"``) so that it can be built, compared, hashed into an
engine-cache key and written to JSON without TensorRT installed; ``common.trt.build`` maps the
names onto ``tensorrt`` enums.

There is no precision field: TensorRT 11 builds strongly typed networks only, so FP16/BF16 come from
ModelOpt AutoCast and INT8/FP8 from Q/DQ nodes in the ONNX (lab 08), never from builder flags.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]

#: Precision flags and options TensorRT 11 removed; naming one is an error that says what replaced it.
REMOVED_PRECISION_FLAGS = frozenset({
    "FP16", "BF16", "INT8", "FP8", "INT4", "FP4",
    "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
})
#: Other BuilderFlag names TensorRT 11 removed (with the algorithm selector and weightless builds).
REMOVED_FLAGS = frozenset({"REJECT_EMPTY_ALGORITHMS", "WEIGHTLESS"})
#: Deprecated flags TensorRT ignores: accepting them would only hide a mistake.
DEPRECATED_FLAGS = frozenset({"SAFETY_SCOPE", "DIRECT_IO"})
#: Flags that have their own field in BuildConfig, so there is one way to say each thing.
FLAGS_WITH_FIELDS = {"TF32": "tf32", "SPARSE_WEIGHTS": "sparse_weights"}
#: trt.BuilderFlag members of TensorRT 11.4 that ``extra_flags`` may name.
BUILDER_FLAGS = frozenset({
    "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "EDITABLE_TIMING_CACHE",
    "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS",
    "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING",
    "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "DISTRIBUTIVE_INDEPENDENCE",
})
#: trt.TacticSource members of TensorRT 11.4; cuBLAS/cuDNN sources were removed in 11.
TACTIC_SOURCES = frozenset({"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"})
REMOVED_TACTIC_SOURCES = frozenset({"CUBLAS", "CUBLAS_LT", "CUDNN"})
PROFILING_VERBOSITIES = ("layer_names_only", "detailed", "none")
TILING_LEVELS = ("NONE", "FAST", "MODERATE", "FULL")

_PRECISION_HINT = (
    "TensorRT 11 has no precision builder flags: networks are strongly typed and take their "
    "precision from the ONNX. Make an FP16/BF16 model with ModelOpt AutoCast "
    "(python -m modelopt.onnx.autocast) or an INT8/FP8 one with Q/DQ nodes "
    "(modelopt.onnx.quantization or modelopt.torch.quantization); see lab 08."
)


def _int(value: Any, what: str) -> int:
    """`value` as an int; a float, bool or string is an error (never truncated or coerced)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _shape(value: Iterable[int], what: str) -> Shape:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{what} must be a tuple or list of ints, got {value!r} ({type(value).__name__})")
    dims = tuple(_int(d, f"{what}, dimension {i}") for i, d in enumerate(value))
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} {dims} has a negative dimension: profile shapes must be concrete")
    return dims


@dataclass(frozen=True)
class Profile:
    """One optimization profile: for each dynamic input, its (min, opt, max) shapes.

    Introduced in lab 01 (batching); lab 04 (shape changes) builds several and switches between them.
    """

    shapes: Mapping[str, ShapeRange]

    def __post_init__(self) -> None:
        if not isinstance(self.shapes, Mapping):
            raise TypeError(f"a Profile takes a mapping {{input name: (min, opt, max)}}, got "
                            f"{type(self.shapes).__name__}")
        if not self.shapes:
            raise ValueError("a Profile needs at least one input: {name: (min, opt, max)}")
        clean: dict[str, ShapeRange] = {}
        for name, triple in self.shapes.items():
            if not isinstance(name, str):
                raise TypeError(f"profile input names must be strings, got {name!r}")
            if not isinstance(triple, (tuple, list)) or len(triple) != 3:
                raise ValueError(f"profile for input {name!r} must be (min, opt, max), got {triple!r}")
            lo, opt, hi = (_shape(s, f"{name!r} {k} shape") for s, k in zip(triple, ("min", "opt", "max")))
            if not len(lo) == len(opt) == len(hi):
                raise ValueError(f"profile for input {name!r}: min {lo}, opt {opt} and max {hi} differ in rank")
            for axis, (a, b, c) in enumerate(zip(lo, opt, hi)):
                if not a <= b <= c:
                    raise ValueError(f"profile for input {name!r}, axis {axis}: need min <= opt <= max, "
                                     f"got {a}, {b}, {c} (min {lo}, opt {opt}, max {hi})")
            clean[str(name)] = (lo, opt, hi)
        # Sorted so that two profiles listing the same inputs in another order are equal.
        object.__setattr__(self, "shapes", dict(sorted(clean.items())))

    def __hash__(self) -> int:
        return hash(tuple(self.shapes.items()))

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        return {name: {"min": list(lo), "opt": list(opt), "max": list(hi)}
                for name, (lo, opt, hi) in self.shapes.items()}


def batch_profile(input_name: str, sample_shape_without_batch: Iterable[int],
                  min_batch: int, opt_batch: int, max_batch: int) -> Profile:
    """A profile whose only dynamic axis is the leading batch axis (lab 01, batching)."""
    rest = tuple(sample_shape_without_batch)
    return Profile({input_name: ((min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))})


def _names(value: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # a lone string would otherwise become a set of its letters
        raise TypeError(f"{what} takes a set of names, e.g. {{{value!r}}}, not a string")
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} takes a set of names, got {value!r} ({type(value).__name__})")
    names = list(value)
    for v in names:
        if not isinstance(v, str):
            raise TypeError(f"{what} takes names (strings), got {v!r} ({type(v).__name__})")
    return frozenset(v.upper() for v in names)


#: A tensorrt.plugin with both a JIT and an AOT implementation needs the network to say which to use.
PYTHON_PLUGIN_CHOICES = ("jit", "aot")


@dataclass(frozen=True)
class BuildConfig:
    """Builder settings, by TensorRT names; ``None`` leaves TensorRT's default in place.

    Introduced in lab 01 (batching); lab 10 (builder) explains each knob. Units: ``workspace_bytes``
    in bytes. ``builder_optimization_level`` 0..5 (TensorRT's default is 3); ``max_num_tactics`` -1
    lets TensorRT choose; ``tiling_optimization_level`` is NONE/FAST/MODERATE/FULL. ``profiles`` is
    a :class:`Profile` or a tuple of them; ``tf32`` and ``sparse_weights`` are True or False. Every
    value is type-checked: a wrong one is an error that says what was expected.
    """

    profiles: tuple[Profile, ...] = ()
    builder_optimization_level: int | None = None
    max_aux_streams: int | None = None
    sparse_weights: bool = False
    tf32: bool = True
    timing_cache_path: str | None = None
    tactic_sources: frozenset[str] | None = None
    profiling_verbosity: str | None = "detailed"
    workspace_bytes: int | None = None
    avg_timing_iterations: int | None = None
    max_num_tactics: int | None = None
    tiling_optimization_level: str | None = None
    extra_flags: frozenset[str] = field(default_factory=frozenset)
    python_plugins: str | None = None   # "jit" or "aot": which implementation of a tensorrt.plugin to use

    def __post_init__(self) -> None:
        def set_(name: str, value: Any) -> None:  # normalise fields of a frozen dataclass
            object.__setattr__(self, name, value)

        if isinstance(self.profiles, Profile):
            set_("profiles", (self.profiles,))
        if not isinstance(self.profiles, (tuple, list)):
            hint = {dict: ": wrap the shapes as Profile({name: (min, opt, max)})",
                    type(None): ": pass () for no profiles"}.get(type(self.profiles), "")
            raise TypeError(f"profiles must be a Profile or a tuple of Profile objects, got "
                            f"{type(self.profiles).__name__}{hint}")
        set_("profiles", tuple(self.profiles))
        for i, p in enumerate(self.profiles):
            if not isinstance(p, Profile):
                raise TypeError(f"profiles[{i}] must be a Profile, got {type(p).__name__} {p!r}: "
                                "write Profile({name: (min, opt, max)}) or batch_profile(...)")
        for name in ("tf32", "sparse_weights"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
        if self.profiles:
            first = set(self.profiles[0].shapes)
            for i, p in enumerate(self.profiles[1:], start=1):
                if set(p.shapes) != first:
                    raise ValueError(f"every profile must cover the same inputs: profile 0 has "
                                     f"{sorted(first)}, profile {i} has {sorted(p.shapes)}")
        self._check_int("builder_optimization_level", 0, 5)
        self._check_int("max_aux_streams", 0, None)
        self._check_int("workspace_bytes", 1, None)
        self._check_int("avg_timing_iterations", 1, None)
        self._check_int("max_num_tactics", -1, None)
        if self.max_num_tactics == 0:
            raise ValueError("max_num_tactics must be -1 (TensorRT chooses) or at least 1, got 0")

        self._check_choice("profiling_verbosity", PROFILING_VERBOSITIES, str.lower,
                           hint=" (or None for TensorRT's default)")
        self._check_choice("tiling_optimization_level", TILING_LEVELS, str.upper)
        self._check_choice("python_plugins", PYTHON_PLUGIN_CHOICES, str.lower,
                           hint=" (or None when no plugin has both implementations)")

        sources = _names(self.tactic_sources, "tactic_sources")
        if sources is not None:
            removed = sources & REMOVED_TACTIC_SOURCES
            if removed:
                raise ValueError(f"tactic sources {sorted(removed)} were removed in TensorRT 11; "
                                 f"the sources left are {sorted(TACTIC_SOURCES)}")
            unknown = sources - TACTIC_SOURCES
            if unknown:
                raise ValueError(f"unknown tactic sources {sorted(unknown)}; known: {sorted(TACTIC_SOURCES)}")
        set_("tactic_sources", sources)

        flags = _names(self.extra_flags, "extra_flags") or frozenset()
        precision = flags & REMOVED_PRECISION_FLAGS
        if precision:
            raise ValueError(f"extra_flags {sorted(precision)}: {_PRECISION_HINT}")
        for name in sorted(flags):
            if name in REMOVED_FLAGS:
                raise ValueError(f"BuilderFlag.{name} was removed in TensorRT 11")
            if name in DEPRECATED_FLAGS:
                raise ValueError(f"BuilderFlag.{name} is deprecated and ignored by TensorRT; leave it out")
            if name in FLAGS_WITH_FIELDS:
                raise ValueError(f"set BuildConfig.{FLAGS_WITH_FIELDS[name]} instead of extra_flags {name!r}")
            if name not in BUILDER_FLAGS:
                raise ValueError(f"unknown BuilderFlag {name!r}; known: {sorted(BUILDER_FLAGS)}")
        set_("extra_flags", flags)
        if self.timing_cache_path is not None:
            if not isinstance(self.timing_cache_path, (str, os.PathLike)):
                raise TypeError(f"timing_cache_path must be a path (str or pathlib.Path) or None, got "
                                f"{self.timing_cache_path!r} ({type(self.timing_cache_path).__name__})")
            set_("timing_cache_path", os.fsdecode(self.timing_cache_path))

    def _check_choice(self, name: str, choices: tuple[str, ...], normalise: Callable[[str], str],
                      hint: str = "") -> None:
        """Normalise field `name` (case) and check it is one of `choices`; None stays None."""
        value = getattr(self, name)
        if value is None:
            return
        if not isinstance(value, str):
            raise TypeError(f"{name} must be one of {choices}{hint}, got {value!r} ({type(value).__name__})")
        choice = normalise(value)
        if choice not in choices:
            raise ValueError(f"{name} must be one of {choices}{hint}, got {value!r}")
        object.__setattr__(self, name, choice)

    def _check_int(self, name: str, lo: int, hi: int | None) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int or None, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"{name} must be {bound}, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Canonical, JSON-serialisable form: sets as sorted lists, profiles in order."""
        return {
            "python_plugins": self.python_plugins,
            "profiles": [p.to_dict() for p in self.profiles],
            "builder_optimization_level": self.builder_optimization_level,
            "max_aux_streams": self.max_aux_streams,
            "sparse_weights": self.sparse_weights,
            "tf32": self.tf32,
            "timing_cache_path": self.timing_cache_path,
            "tactic_sources": None if self.tactic_sources is None else sorted(self.tactic_sources),
            "profiling_verbosity": self.profiling_verbosity,
            "workspace_bytes": self.workspace_bytes,
            "avg_timing_iterations": self.avg_timing_iterations,
            "max_num_tactics": self.max_num_tactics,
            "tiling_optimization_level": self.tiling_optimization_level,
            "extra_flags": sorted(self.extra_flags),
        }

    def canonical_json(self) -> str:
        """One string per distinct configuration (sorted keys, no whitespace): what cache keys hash."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
