"""ONNX -> TensorRT engine, with every parser error reported and engines cached on disk.

Introduced in lab 01 (batching); lab 10 (builder) times builds with it, lab 09 (sparsity) searches
its log. The network is strongly typed (TensorRT 11 has no other kind; on 10.x the flag is set, see
``compat``), so precision comes from the ONNX itself. A failed parse raises :class:`OnnxParseError` with all of
the parser's errors and never goes on to build.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import env
from common.files import write_atomic

from . import compat
from .cache import EngineCache, EngineCacheWarning, cache_key
from .config import BuildConfig
from .logger import BuildLog, make_logger

if TYPE_CHECKING:
    import tensorrt as trt


class OnnxParseError(RuntimeError):
    """TensorRT's ONNX parser rejected the model; `errors` holds one dict per parser error."""

    def __init__(self, path: str, errors: list[dict[str, Any]], log_errors: list[str] | None = None) -> None:
        self.path = path
        self.errors = errors
        lines = [f"node {e['node']} ({e['node_name'] or '?'}, op {e['node_operator'] or '?'}): "
                 f"{e['desc']} [{e['code']}]" for e in errors]
        if not lines:  # parse() returned False without recording an error: show the log instead
            lines = log_errors or ["(the parser recorded no error; rerun with verbose=True)"]
        super().__init__(f"TensorRT's ONNX parser rejected {path} ({len(errors)} error(s)):\n" + "\n".join(lines))

    @classmethod
    def from_parser(cls, parser: "trt.OnnxParser", path: str, log_errors: list[str] | None = None) -> "OnnxParseError":
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            code = e.code()
            errors.append({"node": e.node(), "node_name": e.node_name(), "node_operator": e.node_operator(),
                           "desc": e.desc(), "code": getattr(code, "name", str(code))})
        return cls(path, errors, log_errors)


class EngineBuildError(RuntimeError):
    """TensorRT could not build or deserialize the engine; the message carries its error log."""


@dataclass
class BuildResult:
    """A built (or cached) engine. `build_seconds` is the builder's time (for a cached engine, that
    of the build that made it); `load_seconds` is deserialization."""

    engine: "trt.ICudaEngine"
    plan: bytes = field(repr=False)
    build_seconds: float
    load_seconds: float
    from_cache: bool
    cache_key: str | None
    config: BuildConfig
    log: BuildLog = field(default_factory=BuildLog, repr=False)

    @property
    def plan_size_bytes(self) -> int:
        return len(self.plan)

    @property
    def log_lines(self) -> list[str]:
        return self.log.lines()


_RUNTIME: list[Any] = []  # [runtime, logger, log]: one per process, kept alive as long as its engines


def _runtime() -> tuple["trt.Runtime", BuildLog]:
    import tensorrt as trt

    if not _RUNTIME:
        log = BuildLog()
        logger = make_logger(log)
        _RUNTIME.extend([trt.Runtime(logger), logger, log])
    return _RUNTIME[0], _RUNTIME[2]


def load_engine(plan: bytes) -> "trt.ICudaEngine":
    """Deserialize a plan (lab 01). Raises :class:`EngineBuildError` with TensorRT's errors."""
    env.require("tensorrt")
    runtime, log = _runtime()
    log.records.clear()
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError("TensorRT could not deserialize the plan (built by another TensorRT "
                               "version or for another GPU?):\n" + "\n".join(log.errors() or log.lines()))
    return engine


def _host_bytes(host_memory: Any) -> bytes:
    """Copy an IHostMemory (or any buffer) into bytes: IHostMemory has the buffer protocol (reference §2)."""
    return bytes(memoryview(host_memory))


def build_plan(builder: "trt.Builder", network: "trt.INetworkDefinition", trt_config: "trt.IBuilderConfig",
               log: BuildLog, what: str) -> tuple[bytes, float]:
    """Build `network` into a serialized plan: (plan bytes, builder seconds). Raises
    :class:`EngineBuildError` with TensorRT's errors (or its last log lines) naming `what` on failure."""
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, trt_config)
    build_seconds = time.perf_counter() - t0
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {what}:\n" + "\n".join(log.errors() or log.lines()[-20:]))
    return _host_bytes(serialized), build_seconds


def _dynamic_inputs(network: "trt.INetworkDefinition") -> dict[str, tuple[int, ...]]:
    found = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tensor.shape
        dims = tuple(int(shape[d]) for d in range(len(shape)))
        if any(d < 0 for d in dims):
            found[tensor.name] = dims
    return found


def _check_profiles(dynamic: dict[str, tuple[int, ...]], config: BuildConfig, network_inputs: list[str]) -> None:
    listed = ", ".join(f"{n} {s}" for n, s in dynamic.items())
    if dynamic and not config.profiles:
        raise ValueError(f"the network has dynamic inputs ({listed}; -1 = dynamic) and the BuildConfig "
                         "has no optimization profile: pass profiles=(Profile(...),), e.g. batch_profile()")
    for i, profile in enumerate(config.profiles):
        unknown = set(profile.shapes) - set(network_inputs)
        if unknown:
            raise ValueError(f"profile {i} names {sorted(unknown)}, which the network lacks; its inputs "
                             f"are {network_inputs}")
        missing = set(dynamic) - set(profile.shapes)
        if missing:
            raise ValueError(f"profile {i} gives no shapes for dynamic inputs {sorted(missing)} ({listed})")


def _enum(enum_cls: Any, name: str, what: str) -> Any:
    try:
        return getattr(enum_cls, name)
    except AttributeError:
        raise EngineBuildError(f"this TensorRT has no {what}.{name}: that option needs a newer TensorRT") from None


def _apply(builder: "trt.Builder", trt_config: "trt.IBuilderConfig", config: BuildConfig) -> None:
    """Translate a BuildConfig into IBuilderConfig calls (reference §2, §7)."""
    import tensorrt as trt

    if config.workspace_bytes is not None:
        trt_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    for i, profile in enumerate(config.profiles):
        trt_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile.shapes.items():
            trt_profile.set_shape(name, trt.Dims(lo), trt.Dims(opt), trt.Dims(hi))
        if trt_config.add_optimization_profile(trt_profile) < 0:
            raise EngineBuildError(f"TensorRT rejected optimization profile {i}: {profile.to_dict()}")
    # TF32 is on by default; set or clear it explicitly so the config means the same on any version.
    if config.tf32:
        trt_config.set_flag(trt.BuilderFlag.TF32)
    else:
        trt_config.clear_flag(trt.BuilderFlag.TF32)
    if config.sparse_weights:
        trt_config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    for flag in sorted(config.extra_flags):
        trt_config.set_flag(_enum(trt.BuilderFlag, flag, "BuilderFlag"))
    if config.builder_optimization_level is not None:
        trt_config.builder_optimization_level = config.builder_optimization_level
    if config.max_aux_streams is not None:
        trt_config.max_aux_streams = config.max_aux_streams
    if config.avg_timing_iterations is not None:
        trt_config.avg_timing_iterations = config.avg_timing_iterations
    if config.max_num_tactics is not None:
        trt_config.max_num_tactics = config.max_num_tactics
    if config.tiling_optimization_level is not None:
        trt_config.tiling_optimization_level = _enum(
            trt.TilingOptimizationLevel, config.tiling_optimization_level, "TilingOptimizationLevel")
    if config.tactic_sources is not None:
        mask = 0
        for source in sorted(config.tactic_sources):  # enum values changed in 11: never a literal
            mask |= 1 << int(_enum(trt.TacticSource, source, "TacticSource"))
        if not trt_config.set_tactic_sources(mask):
            raise EngineBuildError(f"TensorRT rejected tactic sources {sorted(config.tactic_sources)}")
    if config.profiling_verbosity is not None:   # None keeps TensorRT's default
        trt_config.profiling_verbosity = {
            "detailed": trt.ProfilingVerbosity.DETAILED,
            "layer_names_only": trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
            "none": trt.ProfilingVerbosity.NONE,
        }[config.profiling_verbosity]


def _set_timing_cache(trt_config: "trt.IBuilderConfig", path: Path) -> "trt.ITimingCache":
    """Load the timing cache at `path` into the config; start an empty one (with a warning) when the
    file is unreadable or was written by another TensorRT or GPU. Returns the cache, which must stay
    referenced until the build ends: the config holds only a pointer to it."""
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        warnings.warn(f"timing cache {path} cannot be read ({exc}); starting an empty one", stacklevel=3)
        data = b""
    # create_timing_cache returns None for bytes it cannot read at all (Polygraphy falls back the same way).
    timing_cache = trt_config.create_timing_cache(data)
    if timing_cache is None or not trt_config.set_timing_cache(timing_cache, False):
        why = "is unreadable" if timing_cache is None else "does not match this TensorRT/GPU"
        warnings.warn(f"timing cache {path} {why}; starting an empty one", stacklevel=3)
        timing_cache = trt_config.create_timing_cache(b"")
        if timing_cache is None or not trt_config.set_timing_cache(timing_cache, False):
            raise EngineBuildError("TensorRT could not create an empty timing cache")
    return timing_cache


def build_engine(onnx_path: str | Path, config: BuildConfig = BuildConfig(), *, cache: bool = True,
                 cache_dir: str | Path | None = None, verbose: bool = False) -> BuildResult:
    """Build (or load from the engine cache) a TensorRT engine for the ONNX model at `onnx_path`.

    Introduced in lab 01 (batching). Raises :class:`common.env.RequirementError` where TensorRT or
    a GPU is missing, :class:`OnnxParseError` on a parse failure, ``ValueError`` when dynamic inputs
    lack profiles, and :class:`EngineBuildError` when TensorRT cannot build or load the engine.
    """
    machine = env.require("tensorrt")
    import tensorrt as trt

    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    key = store = None
    if cache:
        key = cache_key(path, config, machine.tensorrt, machine.gpu_name)
        folder = Path(cache_dir) if cache_dir is not None else env.cache_dir() / "engines"
        try:
            store = EngineCache(folder)
        except OSError as exc:
            warnings.warn(f"the engine cache {folder} cannot be used ({exc}); building without it",
                          EngineCacheWarning, stacklevel=2)
        entry = store.get_entry(key, trt_version=machine.tensorrt, gpu_name=machine.gpu_name) if store else None
        if entry is not None and store is not None:
            plan, meta = entry
            t0 = time.perf_counter()
            try:
                engine = load_engine(plan)
            except EngineBuildError as exc:
                warnings.warn(f"cached engine {key[:12]}… did not deserialize ({exc}); rebuilding", stacklevel=2)
                store.remove(key)
            else:
                return BuildResult(engine, plan, float(meta.get("build_seconds", float("nan"))),
                                   time.perf_counter() - t0, True, key, config)

    log = BuildLog()
    logger = make_logger(log, verbose=verbose)
    builder = trt.Builder(logger)
    flags = compat.network_flags(trt)  # strongly typed, on 10.x as on 11.x
    # A tensorrt.plugin with JIT and AOT implementations: pick one (10.8 plugins are JIT only).
    try:
        flags |= compat.python_plugin_flags(trt, config.python_plugins)
    except RuntimeError as exc:
        raise EngineBuildError(str(exc)) from None
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):  # from the file, so external weights are found beside it
        raise OnnxParseError.from_parser(parser, str(path), log.errors())
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    _check_profiles(_dynamic_inputs(network), config, inputs)

    trt_config = builder.create_builder_config()
    _apply(builder, trt_config, config)
    timing_cache_path = Path(config.timing_cache_path) if config.timing_cache_path else None
    # Referenced until the build ends: the config holds only a pointer to the timing cache.
    timing_cache = _set_timing_cache(trt_config, timing_cache_path) if timing_cache_path is not None else None

    plan, build_seconds = build_plan(builder, network, trt_config, log, str(path))
    if timing_cache_path is not None:
        timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(timing_cache_path, _host_bytes(trt_config.get_timing_cache().serialize()))

    t0 = time.perf_counter()
    engine = load_engine(plan)
    load_seconds = time.perf_counter() - t0
    if store is not None and key is not None:
        try:
            store.put(key, plan, {"trt_version": machine.tensorrt, "gpu_name": machine.gpu_name,
                                  "config": config.to_dict(), "build_seconds": build_seconds,
                                  "onnx_path": str(path)})
        except OSError as exc:   # a full or read-only cache: the engine just built is still good
            warnings.warn(f"the engine was built but could not be cached in {store.directory} ({exc}); "
                          "the next run builds it again", EngineCacheWarning, stacklevel=2)
    return BuildResult(engine, plan, build_seconds, load_seconds, False, key, config, log)
