"""The trtexec command that rebuilds (and runs) an engine the course builds from a BuildConfig.

Every lab that builds an engine prints this command, also where TensorRT is missing, so that a
reader can reproduce the engine with NVIDIA's own tool. It is pure string generation: nothing here
imports TensorRT. The options are those of trtexec 11 (``samples/common/sampleOptions.cpp`` of the
newest TensorRT 11 sources published, release/11.1); the tests check every option this module can
emit against the list vendored from that file (``tests/data/trtexec-options-11.json``) and keep the
tables below in step with it.

Where the course's build and trtexec's defaults differ, the command sets the course's value: the
builder API averages one timing run per tactic (``IBuilderConfig`` default 1) where trtexec's
``--avgTiming`` defaults to 8, so an unset ``avg_timing_iterations`` prints ``--avgTiming=1``.
"""

from __future__ import annotations

import os
import shlex
from typing import Iterable, Mapping, Sequence

from .config import TACTIC_SOURCES, TILING_LEVELS, BuildConfig, Profile, Shape, _shape

#: Every option trtexec 11 parses, by name (the vendored list; a test keeps the two equal).
TRTEXEC_OPTIONS = frozenset("""
--accuracyAlgorithm --accuracyThreshold --adjustForDLA --allocationStrategy --allowGPUFallback
--allowWeightStreaming --asyncFileReader --atol --avgRuns --avgTiming --buildDLAStandalone
--builderOptimizationLevel --consistency --continue --cpuOnly --decomposableAttentions --device
--directIO --distributiveIndependence --dryRun --dumpKernelText --dumpLayerInfo
--dumpOptimizationProfile --dumpOutput --dumpProfile --dumpRawBindingsToFile --dumpRefit --duration
--dynamicPlugins --enablePluginOverride --errorOnTimingCacheMiss --excludeLeanRuntime
--exportLayerInfo --exportOutput --exportProfile --exportTimes --exposeDMA --getPlanVersionOnly
--hardwareCompatibilityLevel --help --helpBuildRoute --idleTime --ignoreParsedPluginLibs
--includeDataTransfers --infStreams --inputIOFormats --iterations --l2LimitForTiling
--layerDeviceTypes --leanDLLPath --loadEngine --loadInputs --loadRefOutputs --markDebug
--markUnfusedTensorsAsDebugTensors --maxAuxStreams --maxShapes --maxTactics --memPoolSize --minShapes
--monitorMemory --noBuilderCache --noCompilationCache --noCudaGraph --noDataTransfers --noSpinWait
--noTF32 --onnx --optShapes --outputIOFormats --percentile --persistentCacheRatio --pi
--pluginInstanceNorm --plugins --preview --profile --profilingVerbosity --refit --refitFromOnnx
--refPair --remoteAutoTuningConfig --reportCapabilityDLA --rtol --runtimePlatform --safe
--safetyPlugins --saveAllDebugTensors --saveAllEngines --saveDebugTensors --saveEngine
--separateProfileRun --setBuildRoute --setPluginsToSerialize --shapes --skipInference --sleepTime
--sparsity --staticPlugins --streams --stripAllWeights --stripWeights --stronglyTyped --tacticSources
--tempdir --tempfileControls --threads --tilingOptimizationLevel --timeDeserialize --timeRefit
--timingCacheFile --tuneBuildRouteFile --tuneBuildRoutes --tuningCacheFile --tuningResultFile
--tuningSearch --tuningTimeOut --uint8AsymmetricQuantizationDLA --useCudaGraph --useDLACore
--useManagedMemory --useProfile --useRuntime --useSpinWait --vc --verbose --versionCompatible
--warmUp --weightStreamingBudget
""".split())

_STRONG_TYPING = (
    "TensorRT 11 builds strongly typed networks only, so the precision comes from the ONNX: make an "
    "FP16/BF16 model with ModelOpt AutoCast (python -m modelopt.onnx.autocast) or an INT8/FP8 one "
    "with Q/DQ nodes (python -m modelopt.onnx.quantization, or modelopt.torch.quantization before "
    "export); see lab 08"
)
_CALIBRATION = ("INT8 calibration went with weak typing: calibrate while quantizing with ModelOpt, "
                "which writes the scales into the ONNX as Q/DQ nodes; see lab 08")
_PER_LAYER = ("per-layer types come from the strongly typed ONNX (its Cast and Q/DQ nodes; ModelOpt "
              "AutoCast keeps chosen layers in FP32)")
#: Options trtexec 11 removed, each with what replaced it.
REMOVED_OPTIONS: Mapping[str, str] = {
    "--fp16": _STRONG_TYPING, "--bf16": _STRONG_TYPING, "--int8": _STRONG_TYPING,
    "--fp8": _STRONG_TYPING, "--int4": _STRONG_TYPING, "--best": _STRONG_TYPING,
    "--calib": _CALIBRATION, "--calibProfile": _CALIBRATION, "--minShapesCalib": _CALIBRATION,
    "--optShapesCalib": _CALIBRATION, "--maxShapesCalib": _CALIBRATION,
    "--precisionConstraints": _PER_LAYER, "--layerPrecisions": _PER_LAYER, "--layerOutputTypes": _PER_LAYER,
    "--restricted": "safety-scope checking (BuilderFlag.SAFETY_SCOPE) is ignored in TensorRT 11; "
                    "a safety build is --safe",
    "--weightless": "use --stripWeights (BuildConfig extra_flags={'STRIP_PLAN'})",
}
#: Options trtexec 11 still parses but deprecates (most are no-ops), each with what to use instead.
DEPRECATED_OPTIONS: Mapping[str, str] = {
    "--useCudaGraph": "trtexec 11 replays a CUDA graph by default; cuda_graph=False prints --noCudaGraph",
    "--stronglyTyped": "every TensorRT 11 network is strongly typed; leave it out",
    "--directIO": "deprecated with BuilderFlag.DIRECT_IO; leave it out",
    "--noDataTransfers": "trtexec 11 leaves host-device copies out by default (--includeDataTransfers "
                         "puts them in)",
    "--useSpinWait": "trtexec 11 spin-waits by default (--noSpinWait turns it off)",
    "--separateProfileRun": "trtexec 11 always profiles layers in a run of its own",
    "--plugins": "use --staticPlugins",
    "--streams": "use --infStreams (infer_streams=)",
}
#: Values of options that trtexec 11 deprecates, each with what to use instead.
DEPRECATED_VALUES: Mapping[str, Mapping[str, str]] = {
    "--sparsity": {"force": "prune the weights to 2:4 first (polygraphy surgeon prune, or "
                            "modelopt.torch.sparsity; lab 09) and build with --sparsity=enable"},
    "--profilingVerbosity": {"default": "use layer_names_only", "verbose": "use detailed"},
}

#: BuilderFlag names (BuildConfig.extra_flags) and the trtexec option that sets each.
BUILDER_FLAG_OPTIONS: Mapping[str, str] = {
    "GPU_FALLBACK": "--allowGPUFallback", "REFIT": "--refit", "DISABLE_TIMING_CACHE": "--noBuilderCache",
    "VERSION_COMPATIBLE": "--versionCompatible", "EXCLUDE_LEAN_RUNTIME": "--excludeLeanRuntime",
    "ERROR_ON_TIMING_CACHE_MISS": "--errorOnTimingCacheMiss",
    "DISABLE_COMPILATION_CACHE": "--noCompilationCache", "STRIP_PLAN": "--stripWeights",
    "WEIGHT_STREAMING": "--allowWeightStreaming", "MONITOR_MEMORY": "--monitorMemory",
    "DISTRIBUTIVE_INDEPENDENCE": "--distributiveIndependence",
}
#: BuilderFlag names that no trtexec option sets.
BUILDER_FLAGS_WITHOUT_OPTION = frozenset({
    "DEBUG", "EDITABLE_TIMING_CACHE", "REFIT_IDENTICAL", "REFIT_INDIVIDUAL", "STRICT_NANS",
})

#: --allocationStrategy values, by trtexec name or by trt.ExecutionContextAllocationStrategy member:
#: trtexec's "profile" and "runtime" both create the context USER_MANAGED and give it memory sized
#: for the profile (as ON_PROFILE_CHANGE would) or for the current shapes.
ALLOCATION_STRATEGIES: Mapping[str, str] = {
    "static": "static", "profile": "profile", "runtime": "runtime",
    "STATIC": "static", "ON_PROFILE_CHANGE": "profile", "USER_MANAGED": "runtime",
}

#: The options this module prints from BuildConfig fields and keyword arguments, and where each is set.
OPTIONS_SET_BY_ARGUMENTS: Mapping[str, str] = {
    "--onnx": "onnx_path", "--minShapes": "BuildConfig.profiles", "--optShapes": "BuildConfig.profiles",
    "--maxShapes": "BuildConfig.profiles", "--profile": "BuildConfig.profiles",
    "--builderOptimizationLevel": "BuildConfig.builder_optimization_level",
    "--maxAuxStreams": "BuildConfig.max_aux_streams", "--sparsity": "BuildConfig.sparse_weights",
    "--noTF32": "BuildConfig.tf32", "--timingCacheFile": "BuildConfig.timing_cache_path",
    "--tacticSources": "BuildConfig.tactic_sources", "--profilingVerbosity": "BuildConfig.profiling_verbosity",
    "--memPoolSize": "BuildConfig.workspace_bytes", "--avgTiming": "BuildConfig.avg_timing_iterations",
    "--maxTactics": "BuildConfig.max_num_tactics",
    "--tilingOptimizationLevel": "BuildConfig.tiling_optimization_level",
    **{option: f"BuildConfig.extra_flags {{{flag!r}}}" for flag, option in BUILDER_FLAG_OPTIONS.items()},
    "--shapes": "shapes=", "--useProfile": "use_profile=", "--infStreams": "infer_streams=",
    "--noCudaGraph": "cuda_graph=", "--allocationStrategy": "allocation_strategy=",
    "--saveEngine": "save_engine=",
}

_UNITS = (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _tensor(name: str) -> str:
    # trtexec splits a shape list on commas and treats quotes as its own quoting: neither can be passed.
    if "," in name or "'" in name:
        raise ValueError(f"input {name!r}: trtexec cannot name a tensor with a comma or a quote in "
                         "its shape options; rename it in the ONNX")
    return name


def _shape_list(shapes: Mapping[str, Shape]) -> str:
    return ",".join(f"{_tensor(name)}:{_dims(shape)}" for name, shape in shapes.items())


def _option(name: str, value: object | None = None) -> str:
    return name if value is None else f"{name}={shlex.quote(str(value))}"


def _profile_options(profiles: Sequence[Profile]) -> list[str]:
    out: list[str] = []
    for index, profile in enumerate(profiles):
        if len(profiles) > 1:
            out.append(_option("--profile", index))   # the shapes that follow belong to this profile
        for k, option in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
            out.append(_option(option, _shape_list({n: r[k] for n, r in profile.shapes.items()})))
    return out


def _memory(num_bytes: int) -> str:
    """A --memPoolSize amount: the largest base-2 unit that holds it exactly (a bare number means MiB)."""
    for suffix, size in _UNITS:
        if num_bytes % size == 0:
            return f"{num_bytes // size}{suffix}"
    return f"{num_bytes}B"


def _build_options(config: BuildConfig, unsupported: list[str]) -> list[str]:
    out = _profile_options(config.profiles)
    if config.builder_optimization_level is not None:
        out.append(_option("--builderOptimizationLevel", config.builder_optimization_level))
    if config.max_aux_streams is not None:
        out.append(_option("--maxAuxStreams", config.max_aux_streams))
    if config.sparse_weights:
        out.append(_option("--sparsity", "enable"))
    if not config.tf32:
        out.append("--noTF32")
    if config.timing_cache_path is not None:
        out.append(_option("--timingCacheFile", config.timing_cache_path))
    if config.tactic_sources is not None:
        # trtexec changes TensorRT's default set; say each source so the result is exactly the config's.
        signs = [("+" if s in config.tactic_sources else "-") + s for s in sorted(TACTIC_SOURCES)]
        out.append(_option("--tacticSources", ",".join(signs)))
    if config.profiling_verbosity is not None:
        out.append(_option("--profilingVerbosity", config.profiling_verbosity))
    if config.workspace_bytes is not None:
        out.append(_option("--memPoolSize", f"workspace:{_memory(config.workspace_bytes)}"))
    out.append(_option("--avgTiming", 1 if config.avg_timing_iterations is None else config.avg_timing_iterations))
    if config.max_num_tactics is not None:
        out.append(_option("--maxTactics", config.max_num_tactics))
    if config.tiling_optimization_level is not None:
        out.append(_option("--tilingOptimizationLevel", TILING_LEVELS.index(config.tiling_optimization_level)))
    for flag in sorted(config.extra_flags):
        if flag in BUILDER_FLAG_OPTIONS:
            out.append(BUILDER_FLAG_OPTIONS[flag])
        elif not (flag == "REFIT_IDENTICAL" and "STRIP_PLAN" in config.extra_flags):  # --stripWeights implies it
            unsupported.append(f"BuilderFlag.{flag}")
    if config.python_plugins is not None:
        unsupported.append(f"Python plugins ({config.python_plugins.upper()} tensorrt.plugin ops are "
                           "registered by the Python process that builds)")
    return out


def _check_extra(argument: str) -> str:
    if not isinstance(argument, str) or not argument.startswith("--"):
        raise ValueError(f"extra takes trtexec options such as '--dumpProfile' or '--exportProfile=p.json', "
                         f"got {argument!r}")
    name, sep, value = argument.partition("=")
    if name in REMOVED_OPTIONS:
        raise ValueError(f"trtexec 11 removed {name}: {REMOVED_OPTIONS[name]}")
    if name in DEPRECATED_OPTIONS:
        raise ValueError(f"trtexec 11 deprecates {name}: {DEPRECATED_OPTIONS[name]}")
    if name in OPTIONS_SET_BY_ARGUMENTS:
        raise ValueError(f"{name} comes from {OPTIONS_SET_BY_ARGUMENTS[name]}: set it there, not in extra")
    if name not in TRTEXEC_OPTIONS:
        raise ValueError(f"trtexec 11 has no option {name}")
    return _option(name, value) if sep else name


def _run_shapes(shapes: Mapping[str, Iterable[int]], config: BuildConfig, profile_index: int) -> dict[str, Shape]:
    """`shapes` as tuples, each checked against the profile it will run in (trtexec would refuse it)."""
    if not isinstance(shapes, Mapping):
        raise TypeError(f"shapes takes a mapping {{input name: shape}}, got {type(shapes).__name__}")
    profile = config.profiles[profile_index].shapes if config.profiles else {}
    out: dict[str, Shape] = {}
    for name, shape in shapes.items():
        dims = _shape(shape, f"shapes[{name!r}]")
        if name in profile:
            lo, _, hi = profile[name]
            if len(dims) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, dims, hi)):
                raise ValueError(f"shape {dims} for input {name!r} lies outside profile {profile_index} "
                                 f"(min {lo}, max {hi})")
        out[name] = dims
    return out


def trtexec_command(onnx_path: str | os.PathLike[str], config: BuildConfig = BuildConfig(), *,
                    shapes: Mapping[str, Iterable[int]] | None = None, use_profile: int | None = None,
                    infer_streams: int | None = None, cuda_graph: bool = True,
                    allocation_strategy: str | None = None, save_engine: str | os.PathLike[str] | None = None,
                    extra: Iterable[str] = (), strict: bool = True, executable: str = "trtexec") -> str:
    """The trtexec command line that builds the engine `config` describes from `onnx_path`, and runs it.

    Introduced in lab 01 (batching); every lab that builds an engine prints it. Build options come
    from `config` (one ``--minShapes/--optShapes/--maxShapes`` triple per profile, each after its
    ``--profile=N`` when there are several); run options from the keywords: ``shapes`` (``--shapes``,
    within profile ``use_profile``), ``infer_streams`` (``--infStreams``), ``cuda_graph=False``
    (``--noCudaGraph``: trtexec 11 replays a CUDA graph by default), ``allocation_strategy``
    (``--allocationStrategy``: static/profile/runtime, or STATIC/ON_PROFILE_CHANGE/USER_MANAGED),
    ``save_engine`` (``--saveEngine``). ``extra`` adds other trtexec options (``"--dumpProfile"``,
    ``"--exportLayerInfo=layers.json"``). Values are quoted for a POSIX shell.

    Raises ValueError for an option trtexec 11 removed or deprecates (saying what replaced it), one
    it does not have, or one that a field or keyword already sets. Settings no trtexec option
    expresses (some BuilderFlags, Python plugins) raise ValueError too; with ``strict=False`` the
    command is returned with a shell comment that lists them.
    """
    if not isinstance(config, BuildConfig):
        raise TypeError(f"config must be a BuildConfig, got {type(config).__name__}")
    unsupported: list[str] = []
    words = [executable, _option("--onnx", os.fspath(onnx_path)), *_build_options(config, unsupported)]
    if save_engine is not None:
        words.append(_option("--saveEngine", os.fspath(save_engine)))
    if use_profile is not None:
        if isinstance(use_profile, bool) or not isinstance(use_profile, int):
            raise TypeError(f"use_profile must be an int, got {use_profile!r}")
        if not 0 <= use_profile < max(len(config.profiles), 1):
            raise ValueError(f"use_profile={use_profile}, but the config has {len(config.profiles)} profile(s)")
        words.append(_option("--useProfile", use_profile))
    if shapes is not None:
        words.append(_option("--shapes", _shape_list(_run_shapes(shapes, config, use_profile or 0))))
    if infer_streams is not None:
        if isinstance(infer_streams, bool) or not isinstance(infer_streams, int) or infer_streams < 1:
            raise ValueError(f"infer_streams must be an int >= 1, got {infer_streams!r}")
        words.append(_option("--infStreams", infer_streams))
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be True or False, got {cuda_graph!r}")
    if not cuda_graph:
        words.append("--noCudaGraph")
    if allocation_strategy is not None:
        if allocation_strategy not in ALLOCATION_STRATEGIES:
            raise ValueError(f"allocation_strategy must be one of {sorted(ALLOCATION_STRATEGIES)}, "
                             f"got {allocation_strategy!r}")
        words.append(_option("--allocationStrategy", ALLOCATION_STRATEGIES[allocation_strategy]))
    if isinstance(extra, str):  # a lone string would otherwise be taken letter by letter
        raise TypeError(f"extra takes a list of options, e.g. [{extra!r}], not a string")
    words.extend(_check_extra(argument) for argument in extra)
    command = " ".join(words)
    if unsupported:
        if strict:
            raise ValueError(f"trtexec has no option for {', '.join(unsupported)}: the command would build "
                             "another engine (pass strict=False to print it with these listed)")
        command += f"  # not expressible in trtexec: {'; '.join(unsupported)}"
    return command
