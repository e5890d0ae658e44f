"""Lab 10, TensorRT's build effort measured: optimization levels, the timing cache (cold, warm, reused by a
related model), tactic knobs, and the editable timing cache that replaced the algorithm selector.

Every build here bypasses the engine cache (``build_engine(..., cache=False)``), so its
``build_seconds`` is a real build. Each engine's output is checked against the FP32 PyTorch model
before it is timed, and the run time of all engines of a sweep is measured in interleaved passes,
apart from their build time. The timing-cache file, its entries, the autotuning log and the forcing
of a tactic are :mod:`common.trt.tactics`.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from common import bench, checks, env
from common.trt import (BuildConfig, BuildLog, EngineRunner, Profile, batch_profile, build_engine, cache_key,
                        inspect_engine, trtexec_command)
from common.trt.tactics import force_tactic, parse_autotuning_log, timing_cache_entries

from .models import lab_model, sizes
from .torch_compile import device_comparison

if TYPE_CHECKING:
    import torch

#: TensorRT's defaults for the knobs the lab sweeps (reference §7), so a table can mark them.
DEFAULTS = {"builder_optimization_level": 3, "avg_timing_iterations": 1, "max_num_tactics": -1,
            "tiling_optimization_level": "NONE",
            "tactic_sources": frozenset({"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"})}
#: The knob values swept on the CNN, one knob at a time from TensorRT's defaults.
KNOB_VALUES: dict[str, list[Any]] = {
    "avg_timing_iterations": [1, 8], "max_num_tactics": [1, 4, -1],
    "tiling_optimization_level": ["NONE", "FAST", "MODERATE", "FULL"],
    "tactic_sources": [DEFAULTS["tactic_sources"], frozenset({"JIT_CONVOLUTIONS"}),
                       frozenset({"EDGE_MASK_CONVOLUTIONS"}), frozenset()]}


# -- build, check, measure ---------------------------------------------------------------------------

#: Per interleaved pass of the engines: warm-up and measuring budgets (bench.PASSES passes).
WARMUP_MS, MEASURE_MS = 20.0, 60.0


def static_profile(x: "torch.Tensor | Sequence[int]", input_name: str = "input") -> Profile:
    """A profile whose min = opt = max is `x`'s shape (a tensor or the shape itself): each engine is
    tuned for exactly this batch."""
    shape = tuple(int(d) for d in (x.shape if hasattr(x, "shape") else x))
    return batch_profile(input_name, shape[1:], shape[0], shape[0], shape[0])


def static_config(x: "torch.Tensor | Sequence[int]", input_name: str = "input") -> BuildConfig:
    """TensorRT's default build settings with :func:`static_profile` for `x`."""
    return BuildConfig(profiles=(static_profile(x, input_name),))


@dataclass
class EngineResult:
    """One engine: how long it took to build, what it is, how accurate and how fast it runs."""

    model: str
    label: str
    config: BuildConfig
    build_s: float
    plan_bytes: int
    relative_error: float
    kernels: list[str] = field(default_factory=list)     # each layer's TacticName, from the inspector
    runs: list[bench.Measurement] = field(default_factory=list)
    log: BuildLog = field(default_factory=BuildLog, repr=False)

    @property
    def latency_ms(self) -> float:
        return bench.median_latency_ms(self.runs)

    def row(self) -> dict[str, Any]:
        medians = [m.latency_ms.median for m in self.runs]
        return {"model": self.model, "configuration": self.label, "build_s": self.build_s,
                "latency_ms": self.latency_ms, "spread_pct": bench.spread_pct(medians) if len(medians) > 1 else 0.0,
                "plan_mib": self.plan_bytes / 2**20, "relative_error": self.relative_error}


def build_checked(onnx_path: str | Path, config: BuildConfig, x: "torch.Tensor", reference: "torch.Tensor", *,
                  model: str, label: str, input_name: str = "input", precision: str = "fp16",
                  verbose: bool = False) -> tuple[EngineResult, EngineRunner]:
    """Build (no engine cache), run once on `x` and check against the FP32 `reference` (the whole-model
    tolerance of `precision`, the ONNX's); read each layer's kernel from the inspector. Returns the
    result (not yet timed) and its open runner."""
    env.require("tensorrt")
    build = build_engine(onnx_path, config, cache=False, verbose=verbose)
    runner = EngineRunner(build.engine)
    try:
        output = next(iter(runner.run({input_name: x}).values()))
        error = checks.verify(output, reference, f"TensorRT engine {label!r} of {model}", precision=precision)
        kernels = [layer.tactic for layer in inspect_engine(build.engine, runner.context(0)).layers if layer.tactic]
    except BaseException:
        runner.close()
        raise
    result = EngineResult(model, label, build.config, build.build_seconds, build.plan_size_bytes, error, kernels,
                          log=build.log)
    return result, runner


def measure_engines(engines: Sequence[tuple[EngineResult, EngineRunner]], *, batch_size: int,
                    passes: int = bench.PASSES, warmup_ms: float = WARMUP_MS, measure_ms: float = MEASURE_MS) -> None:
    """Time every engine in `passes` interleaved passes (fills each result's `runs`), then close the runners."""
    try:
        timing = {result.label: {"fn": runner.enqueue, "name": f"{result.model} {result.label}",
                                 "stream": runner.stream(0)} for result, runner in engines}
        runs = bench.measure_interleaved(timing, passes=passes, backend=f"TensorRT {env.detect().tensorrt}",
                                         device="cuda", batch_size=batch_size, warmup_ms=warmup_ms,
                                         measure_ms=measure_ms)
        for result, _ in engines:
            result.runs = runs[result.label]
    finally:
        for _, runner in engines:
            runner.close()


def build_and_measure(onnx_path: str | Path, configs: dict[str, BuildConfig], x: "torch.Tensor",
                      reference: "torch.Tensor", *, model: str, passes: int = bench.PASSES,
                      warmup_ms: float = WARMUP_MS, measure_ms: float = MEASURE_MS, progress: bool = True,
                      **build_kwargs: Any) -> list[EngineResult]:
    """One checked engine per labelled config, then all of them timed in interleaved passes; in the
    order of `configs`. `build_kwargs` go to :func:`build_checked` (input_name, precision, verbose)."""
    from tqdm.auto import tqdm

    engines: list[tuple[EngineResult, EngineRunner]] = []
    try:
        for label, config in tqdm(configs.items(), desc=f"TensorRT builds, {model}", disable=not progress,
                                  leave=False):
            engines.append(build_checked(onnx_path, config, x, reference, model=model, label=label, **build_kwargs))
    except BaseException:
        for _, runner in engines:
            runner.close()
        raise
    measure_engines(engines, batch_size=int(x.shape[0]), passes=passes, warmup_ms=warmup_ms, measure_ms=measure_ms)
    return [result for result, _ in engines]


def knob_configs(base: BuildConfig, knob: str, values: Sequence[Any]) -> dict[str, BuildConfig]:
    """One config per value of the BuildConfig field `knob`, labelled "knob=value" ("(default)" marked)."""
    configs = {}
    for value in values:
        shown = ("+".join(sorted(value)) or "none") if isinstance(value, (set, frozenset)) else value
        default = " (default)" if DEFAULTS.get(knob) == value else ""
        configs[f"{knob}={shown}{default}"] = dataclasses.replace(base, **{knob: value})
    return configs


# -- the timing cache --------------------------------------------------------------------------------

def timing_cache_study(onnx_path: str | Path, base: BuildConfig, cache_file: str | Path, x: "torch.Tensor",
                       reference: "torch.Tensor", *, model: str, passes: int = bench.PASSES,
                       **build_kwargs: Any) -> dict[str, Any]:
    """A cold build (the cache file removed first), then a warm one from the file the cold build
    wrote; both engines timed together. Also how many entries the cold build recorded."""
    cache_file = Path(cache_file)
    cache_file.unlink(missing_ok=True)
    config = dataclasses.replace(base, timing_cache_path=str(cache_file))
    engines = [build_checked(onnx_path, config, x, reference, model=model, label="cold timing cache", **build_kwargs)]
    try:
        entries = timing_cache_entries(cache_file)
        engines.append(build_checked(onnx_path, config, x, reference, model=model, label="warm timing cache",
                                     **build_kwargs))
    except BaseException:
        engines[0][1].close()
        raise
    measure_engines(engines, batch_size=int(x.shape[0]), passes=passes)
    return {"cold": engines[0][0], "warm": engines[1][0], "entries": entries}


def reuse_study(related_onnx: str | Path, base: BuildConfig, donor_cache: str | Path, scratch: str | Path,
                x: "torch.Tensor", reference: "torch.Tensor", *, model: str, **kwargs: Any) -> dict[str, Any]:
    """Build a related model with an empty timing cache and with a copy of another model's cache."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    empty, reused = scratch / "empty.timing-cache", scratch / "reused.timing-cache"
    empty.unlink(missing_ok=True)
    shutil.copyfile(donor_cache, reused)   # a copy: the donor's own file must not grow
    donor_entries = timing_cache_entries(reused)
    results = build_and_measure(related_onnx, {
        "empty timing cache": dataclasses.replace(base, timing_cache_path=str(empty)),
        "another model's timing cache": dataclasses.replace(base, timing_cache_path=str(reused))},
        x, reference, model=model, progress=False, **kwargs)
    return {"empty": results[0], "reused": results[1], "donor_entries": donor_entries,
            "entries_after": timing_cache_entries(reused), "own_entries": timing_cache_entries(empty)}


#: Example versions and GPUs for the cache-key demonstration (no GPU needed to compute a key).
H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"


def cache_key_checks(onnx_paths: Mapping[str, str | Path], sample_shape: Sequence[int],
                     trt_version: str = "11.4.0.106") -> list[tuple[str, bool]]:
    """What makes the engine-cache key change: (statement, whether it holds) for the MLP's key against
    the same inputs, another TensorRT, another GPU, another model and two other settings."""
    config = BuildConfig(profiles=(batch_profile("input", tuple(sample_shape), 64, 64, 64),))

    def key_of(model: str = "mlp", cfg: BuildConfig = config, version: str = trt_version, gpu: str = H100) -> str:
        return cache_key(onnx_paths[model], cfg, version, gpu)

    key = key_of()
    statements = [("same model, settings, TensorRT and GPU -> same key", key == key_of()),
               ("another TensorRT version -> another key", key != key_of(version="11.5.0.20")),
               ("another GPU -> another key", key != key_of(gpu=A100)),
               ("another model -> another key", key != key_of(model="convnet"))]
    others = {"builder_optimization_level": dataclasses.replace(config, builder_optimization_level=5),
              "timing_cache_path": dataclasses.replace(config, timing_cache_path="elsewhere.timing-cache")}
    for name, other in others.items():
        statements.append((f"another {name} -> another key", key != key_of(cfg=other)))
    return statements


# -- the editable timing cache ------------------------------------------------------------------------

def editable_cache_study(onnx_path: str | Path, base: BuildConfig, cache_file: str | Path, x: "torch.Tensor",
                         reference: "torch.Tensor", *, model: str, passes: int = bench.PASSES,
                         **build_kwargs: Any) -> dict[str, Any]:
    """Build with EDITABLE_TIMING_CACHE and a VERBOSE log, read what each op chose, force the fastest
    other tactic on the first op that has one, rebuild, and check that the engine now runs it.

    Returns the records, the forced op and tactic, both engines (checked, timed together) and whether
    the forced kernel is among the rebuilt engine's kernels (from the inspector).
    """
    cache_file = Path(cache_file)
    cache_file.unlink(missing_ok=True)
    config = dataclasses.replace(base, timing_cache_path=str(cache_file),
                                 extra_flags=base.extra_flags | {"EDITABLE_TIMING_CACHE"})
    engines = [build_checked(onnx_path, config, x, reference, model=model, label="builder's choice", verbose=True,
                             **build_kwargs)]
    original = engines[0][0]
    records = parse_autotuning_log(text for _, text in original.log.records)
    candidates = [r for r in records if r.alternative() is not None and r.selected_tactic is not None]
    study: dict[str, Any] = {"records": records, "original": original, "forced": None, "record": None,
                             "tactic": None, "forced_kernel_in_engine": False, "comparison": None}
    try:
        if candidates:
            record = candidates[0]
            tactic = record.alternative()
            assert tactic is not None
            force_tactic(cache_file, record.key, tactic.hash)
            engines.append(build_checked(onnx_path, config, x, reference, model=model, label="forced tactic",
                                         **build_kwargs))
            forced = engines[1][0]
            study.update(forced=forced, record=record, tactic=tactic,
                         forced_kernel_in_engine=tactic.kernel in forced.kernels)
    except BaseException:
        for _, runner in engines:
            runner.close()
        raise
    measure_engines(engines, batch_size=int(x.shape[0]), passes=passes)
    if study["forced"] is not None:
        study["comparison"] = device_comparison(original.runs, study["forced"].runs)
    return study


@dataclass
class TensorRTResults:
    """What the lab's TensorRT sections measured, for :func:`~.claims.tensorrt_claims`."""

    levels: dict[str, list[EngineResult]]        # per model, levels 0-5 in order
    cache: dict[str, dict[str, Any]]             # per model, :func:`timing_cache_study`
    reuse: dict[str, Any]                        # :func:`reuse_study` on the deeper MLP
    editable: dict[str, Any]                     # :func:`editable_cache_study`
    knobs: dict[str, list[EngineResult]]         # per knob of :data:`KNOB_VALUES`, on the CNN


# -- the trtexec commands -------------------------------------------------------------------------------

def _portable(config: BuildConfig) -> BuildConfig:
    """`config` with its timing cache named by file name only: a command that runs in the folder
    holding the ONNX and the cache, on any machine."""
    if config.timing_cache_path is None:
        return config
    return dataclasses.replace(config, timing_cache_path=Path(config.timing_cache_path).name)


def trtexec_lines(onnx_path: str | Path, labelled: Iterable[tuple[str, BuildConfig]]) -> list[str]:
    """"label: trtexec ..." for each (label, BuildConfig) built from `onnx_path`: the command that builds
    the same engine and times it (settings trtexec has no option for are listed after a #)."""
    onnx_name = Path(onnx_path).name
    return [f"{label}: {trtexec_command(onnx_name, _portable(config), strict=False)}" for label, config in labelled]


def engine_trtexec(onnx_path: str | Path, results: Iterable[EngineResult]) -> list[str]:
    """:func:`trtexec_lines` for engines the study built (each with the config it was built with)."""
    return trtexec_lines(onnx_path, ((r.label, r.config) for r in results))


def planned_trtexec(scale: str) -> dict[str, list[str]]:
    """Every engine the TensorRT branch builds, as trtexec commands, by section: what this lab would
    build with TensorRT here (the ONNX files are the FP16 exports the branch writes, named as it names
    them; timing caches by file name). Needs no TensorRT."""
    shapes = {name: (m.batch, *m.sample_shape) for name in ("mlp", "convnet") for m in [lab_model(name, scale)]}
    onnx = {name: f"{name}_{scale}_fp16.onnx" for name in shapes}
    base = {name: static_config(shape) for name, shape in shapes.items()}

    def cached(name: str, file: str, flags: frozenset[str] = frozenset()) -> BuildConfig:
        return dataclasses.replace(base[name], timing_cache_path=file, extra_flags=base[name].extra_flags | flags)

    deep = lab_model("mlp", scale, depth=2 * sizes("mlp", scale)["depth"])
    deep_config = static_config((deep.batch, *deep.sample_shape))
    sections = {
        "builder_optimization_level 0-5": [line for name in shapes for line in trtexec_lines(
            onnx[name], ((f"{name} {label}", c) for label, c in
                         knob_configs(base[name], "builder_optimization_level", range(6)).items()))],
        "timing cache, cold then warm (run each command twice)": [line for name in shapes for line in trtexec_lines(
            onnx[name], [(name, cached(name, f"{name}.timing-cache"))])],
        "another model's timing cache (a copy of the MLP's)": trtexec_lines(
            f"mlp_deep_{scale}_fp16.onnx", [("empty timing cache", dataclasses.replace(
                deep_config, timing_cache_path="empty.timing-cache")), ("another model's timing cache",
                dataclasses.replace(deep_config, timing_cache_path="reused.timing-cache"))]),
        "editable timing cache": trtexec_lines(onnx["mlp"], [("builder's choice", cached(
            "mlp", "mlp.editable.timing-cache", frozenset({"EDITABLE_TIMING_CACHE"})))]),
        "tactic knobs (convnet)": [line for knob, values in KNOB_VALUES.items() for line in trtexec_lines(
            onnx["convnet"], knob_configs(base["convnet"], knob, values).items())],
    }
    return sections


def built_trtexec(results: TensorRTResults, onnx_paths: Mapping[str, str | Path],
                  deep_onnx: str | Path) -> dict[str, list[str]]:
    """The trtexec command of every engine the TensorRT branch built, in :func:`planned_trtexec`'s sections."""
    editable = [results.editable["original"]] + ([results.editable["forced"]] if results.editable["forced"] else [])
    return {
        "builder_optimization_level 0-5": [line for name, rs in results.levels.items()
                                           for line in engine_trtexec(onnx_paths[name], rs)],
        "timing cache, cold then warm (run each command twice)": [
            line for name, study in results.cache.items()
            for line in engine_trtexec(onnx_paths[name], [study["cold"], study["warm"]])],
        "another model's timing cache (a copy of the MLP's)": engine_trtexec(
            deep_onnx, [results.reuse["empty"], results.reuse["reused"]]),
        "editable timing cache": engine_trtexec(onnx_paths["mlp"], editable),
        "tactic knobs (convnet)": [line for rs in results.knobs.values()
                                   for line in engine_trtexec(onnx_paths["convnet"], rs)],
    }
