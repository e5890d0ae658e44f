"""TensorRT's build effort, measured: optimization levels, the timing cache (cold, warm, reused by a
related model), tactic knobs, and the editable timing cache that replaced the algorithm selector.

Introduced in lab 10 (builder optimization). Every build here bypasses the engine cache
(``build_engine(..., cache=False)``), so its ``build_seconds`` is a real build. Each engine's output is
checked against the FP32 PyTorch model before it is timed, and the run time of all engines of a sweep
is measured in interleaved passes, apart from their build time.

The editable timing cache (``BuilderFlag.EDITABLE_TIMING_CACHE``) works from the build log: with the
flag and a VERBOSE logger, TensorRT prints for each op it autotunes its timing-cache key, the table of
tactics it timed and the one it selected (format of NVIDIA's ``sampleEditableTimingCache``):

    Autotuning op matMul1(key: 0x1814870c44ff0f8574df6e3dda04cbd7):
    Sorted table of all evaluated tactics:
    tactic_id, cost(in ms), cost/fastest_cost, prediction_correlation, kernel_name, tactic_hash, tunable_parameter
       3, 0.0112640, 1.00000, 0.50673, <kernel name>, 0x665ded9abbf88,
    The selected tactic is (tactic hash, cost(in ms)):0x665ded9abbf88,  0.011264

:func:`parse_autotuning_log` reads that (pure Python, tested without TensorRT); :func:`force_tactic`
writes another tactic for a key into the cache with ``ITimingCache.update``; the next build with the
same flags takes it from the cache instead of timing the op.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from common import bench, env

from .build import build_engine
from .config import BuildConfig, Profile, batch_profile
from .inspect import inspect_engine
from .logger import BuildLog, make_logger
from .run import EngineRunner

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

#: TensorRT's defaults for the knobs the lab sweeps (reference §7), so a table can mark them.
DEFAULTS = {"builder_optimization_level": 3, "avg_timing_iterations": 1, "max_num_tactics": -1,
            "tiling_optimization_level": "NONE",
            "tactic_sources": frozenset({"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"})}
FP16_TOLERANCE = 2e-2


# -- build, check, measure ---------------------------------------------------------------------------

def static_profile(x: "torch.Tensor", input_name: str = "input") -> Profile:
    """A profile whose min = opt = max is `x`'s shape: each engine is tuned for exactly this batch."""
    batch = int(x.shape[0])
    return batch_profile(input_name, tuple(int(d) for d in x.shape[1:]), batch, batch, batch)


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
                  model: str, label: str, input_name: str = "input", tolerance: float = FP16_TOLERANCE,
                  verbose: bool = False) -> tuple[EngineResult, EngineRunner]:
    """Build (no engine cache), run once on `x` and check against the FP32 `reference`; read each
    layer's kernel from the inspector. Returns the result (not yet timed) and its open runner."""
    from common.onnx import max_relative_error

    env.require("tensorrt")
    build = build_engine(onnx_path, config, cache=False, verbose=verbose)
    runner = EngineRunner(build.engine)
    try:
        output = next(iter(runner.run({input_name: x}).values()))
        error = max_relative_error(output.float().cpu(), reference)
        if not error <= tolerance:
            raise AssertionError(f"TensorRT engine {label!r} of {model}: relative error {error:.3g} against the "
                                 f"FP32 model exceeds {tolerance:g}; its timings would mean nothing")
        kernels = [layer.tactic for layer in inspect_engine(build.engine, runner.context(0)).layers if layer.tactic]
    except BaseException:
        runner.close()
        raise
    result = EngineResult(model, label, build.config, build.build_seconds, build.plan_size_bytes, error, kernels,
                          log=build.log)
    return result, runner


def measure_engines(engines: Sequence[tuple[EngineResult, EngineRunner]], *, batch_size: int, passes: int = 2,
                    warmup_ms: float = 50.0, measure_ms: float = 150.0) -> None:
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
                      reference: "torch.Tensor", *, model: str, passes: int = 2, warmup_ms: float = 50.0,
                      measure_ms: float = 150.0, progress: bool = True, **build_kwargs: Any) -> list[EngineResult]:
    """One checked engine per labelled config, then all of them timed in interleaved passes; in the
    order of `configs`. `build_kwargs` go to :func:`build_checked` (input_name, tolerance, verbose)."""
    from tqdm import tqdm

    engines: list[tuple[EngineResult, EngineRunner]] = []
    try:
        for label, config in tqdm(configs.items(), desc=f"TensorRT builds, {model}", disable=not progress,
                                  mininterval=2.0):
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

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def timing_cache_file(directory: str | Path, name: str, trt_version: str, gpu_name: str) -> Path:
    """Where the timing cache `name` lives for this TensorRT and GPU.

    TensorRT refuses a timing cache written by another TensorRT version or device (``set_timing_cache``
    returns False, and ``common.trt.build`` then starts an empty one with a warning); naming the file
    after both keeps one valid cache per combination instead of throwing one away at every switch.
    """
    return Path(directory) / f"{_slug(name)}.trt-{_slug(trt_version)}.{_slug(gpu_name)}.timing-cache"


def _timing_cache(data: bytes) -> tuple["trt.IBuilderConfig", "trt.ITimingCache", Any]:
    """An ITimingCache holding `data`, with the builder config that owns it (keep both referenced)."""
    import tensorrt as trt

    logger = make_logger(BuildLog())
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    cache = config.create_timing_cache(data)
    if cache is None:
        raise RuntimeError("TensorRT could not read the timing cache (written by another TensorRT version?)")
    return config, cache, (builder, logger)


def timing_cache_entries(path: str | Path) -> int:
    """How many entries (keys) the timing cache file at `path` holds; 0 when there is no file."""
    env.require("tensorrt")
    path = Path(path)
    if not path.is_file():
        return 0
    _config, cache, _keep = _timing_cache(path.read_bytes())
    return len(cache.queryKeys())


def force_tactic(path: str | Path, key: str, tactic_hash: str, timing_ms: float = 1.0) -> None:
    """Write `tactic_hash` as the choice for the timing-cache `key` (both as printed in the build log,
    "0x..."); the next build that loads the file with the same flags uses it without timing."""
    import tensorrt as trt

    env.require("tensorrt")
    path = Path(path)
    _config, cache, _keep = _timing_cache(path.read_bytes())
    value = trt.TimingCacheValue(int(tactic_hash, 16), timing_ms)
    if not cache.update(trt.TimingCacheKey.parse(key), value):
        raise RuntimeError(f"TensorRT refused to update timing-cache key {key}; was the cache built with "
                           "EDITABLE_TIMING_CACHE?")
    path.write_bytes(bytes(memoryview(cache.serialize())))


def timing_cache_study(onnx_path: str | Path, base: BuildConfig, cache_file: str | Path, x: "torch.Tensor",
                       reference: "torch.Tensor", *, model: str, passes: int = 2,
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


# -- the editable timing cache ------------------------------------------------------------------------

@dataclass(frozen=True)
class Tactic:
    hash: str          # "0x...", as the log prints it
    kernel: str
    cost_ms: float


@dataclass
class AutotuneRecord:
    """One op the builder autotuned: its timing-cache key, the tactics it timed, the one it chose."""

    op: str
    key: str
    tactics: list[Tactic] = field(default_factory=list)
    selected: str = ""

    @property
    def selected_tactic(self) -> Tactic | None:
        return next((t for t in self.tactics if t.hash == self.selected), None)

    def alternative(self) -> Tactic | None:
        """The fastest timed tactic that is not the selected one (None when there is no other)."""
        others = [t for t in self.tactics if t.hash != self.selected]
        return min(others, key=lambda t: t.cost_ms) if others else None


#: A made-up excerpt in the format TensorRT prints with EDITABLE_TIMING_CACHE and a VERBOSE logger
#: (one message may hold several lines). In the second op the selected tactic is not the first row.
EXAMPLE_AUTOTUNING_LOG = (
    "Autotuning op gemm_0(key: 0x00112233445566778899aabbccddeeff):",
    "Sorted table of all evaluated tactics:",
    "tactic_id, cost(in ms), cost/fastest_cost, prediction_correlation, kernel_name, tactic_hash, tunable_parameter",
    "   2, 0.0100, 1.000, 0.5, kernel_alpha, 0x1a2b,",
    "   7, 0.0125, 1.250, 0.5, kernel_beta, 0x3c4d,",
    "The selected tactic is (tactic hash, cost(in ms)):0x1a2b,  0.0100",
    "Writing the best tactic (0x1a2b) to cache",
    "Autotuning op gemm_1(key: 0xffeeddccbbaa99887766554433221100):\nSorted table of all evaluated tactics:\n"
    "tactic_id, cost(in ms), cost/fastest_cost, prediction_correlation, kernel_name, tactic_hash, tunable_parameter\n"
    "   4, 0.0200, 1.000, 0.5, kernel_gamma, 0x5e6f,\n   9, 0.0210, 1.050, 0.5, kernel_delta, 0x7a8b,",
    "The selected tactic is (tactic hash, cost(in ms)):0x7a8b,  0.0210",
)

_OP_KEY = re.compile(r"Autotuning op (?P<op>[^(]+)\(key: (?P<key>0x[0-9a-fA-F]+)\)")
_HEADER = "tactic_id, cost(in ms), cost/fastest_cost"
_SELECTED = re.compile(r"\(tactic hash, cost\(in ms\)\):\s*(?P<hash>0x[0-9a-fA-F]+)")


def _tactic_row(line: str) -> Tactic | None:
    """`id, cost, ratio, correlation, kernel, hash, ...` -> Tactic, or None when the line is not one."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) < 6 or not fields[0].isdigit() or not fields[5].startswith("0x"):
        return None
    try:
        cost_ms = float(fields[1])
    except ValueError:
        return None
    return Tactic(fields[5], fields[4], cost_ms)


def parse_autotuning_log(lines: Iterable[str]) -> list[AutotuneRecord]:
    """The autotuning records of a VERBOSE build log (messages may hold several lines each).

    A small state machine, as in NVIDIA's sample: a key line opens a record, the header starts its
    table, table rows follow, and the "selected tactic" line closes it.
    """
    records: list[AutotuneRecord] = []
    current: AutotuneRecord | None = None
    in_table = False
    for message in lines:
        for line in str(message).splitlines():
            opened = _OP_KEY.search(line)
            if opened:
                current, in_table = AutotuneRecord(opened["op"].strip(), opened["key"]), False
                continue
            if current is None:
                continue
            if _HEADER in line:
                in_table = True
                continue
            chosen = _SELECTED.search(line)
            if chosen:
                current.selected = chosen["hash"]
                records.append(current)
                current, in_table = None, False
                continue
            if in_table:
                tactic = _tactic_row(line)
                if tactic is not None:
                    current.tactics.append(tactic)
                else:
                    in_table = False
    return records


def editable_cache_study(onnx_path: str | Path, base: BuildConfig, cache_file: str | Path, x: "torch.Tensor",
                         reference: "torch.Tensor", *, model: str, passes: int = 2,
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
        study["comparison"] = bench.compare(original.runs, study["forced"].runs)
    return study
