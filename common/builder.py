"""Build effort against run speed outside TensorRT: `torch.compile` modes, Inductor's caches cold and
warm, and ONNX Runtime's graph optimization levels.

Introduced in lab 10 (builder optimization). Every compiler trades time spent before the first
inference for time saved on every inference after it. This module measures both sides of that trade
on the lab's two models (an MLP and a small CNN): the compile or session build in seconds on the host,
kept apart from the steady-state run time measured with :mod:`common.bench`. Every compiled output is
checked against the FP32 model before it is timed. TensorRT's side (optimization levels, the timing
cache, tactic knobs) is :mod:`common.trt.builder_study`.

Inductor's cache, cold and warm, in one process: :func:`fresh_inductor_cache` points
``TORCHINDUCTOR_CACHE_DIR`` and ``TRITON_CACHE_DIR`` at a new temporary folder and clears Inductor's
registered in-memory caches on the way in and out (``torch._inductor.utils.fresh_cache``, the helper
PyTorch's own tests use). Inductor hands both variables to its compile workers with every job, so the
workers started before the switch follow it too. A *cold* compile runs in a fresh folder; the *warm*
one follows ``torch._dynamo.reset()`` and a clearing of the in-memory caches, so that what it finds
warm is the folder on disk, as a new process pointed at the same folder would.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import bench, plots
from .matmul_alignment import tf32_mode
from .models import DigitsCNN
from .onnx import max_relative_error

#: Largest relative error ‖out − ref‖/‖ref‖ accepted against the FP32 model, per precision.
TOLERANCE = {"fp16": 2e-2, "fp32": 1e-4}
_DTYPE = {"fp16": torch.float16, "fp32": torch.float32}

#: torch.compile modes in order of build effort. max-autotune-no-cudagraphs is max-autotune's kernel
#: search without CUDA graphs, so that its gain is the kernels' alone; reduce-overhead is default's
#: kernels replayed as CUDA graphs (GPU only).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
#: ONNX Runtime's levels in order of effort (newer releases also have ORT_ENABLE_LAYOUT, between
#: EXTENDED and ALL: its layout transformations are part of ALL either way).
ORT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
ORT_SHORT = {"ORT_DISABLE_ALL": "disable all", "ORT_ENABLE_BASIC": "basic", "ORT_ENABLE_EXTENDED": "extended",
             "ORT_ENABLE_ALL": "all"}

#: The lab's models per scale: full on a GPU (large enough that kernels, not launches, set the run
#: time), small on a CPU (and for ONNX Runtime, which runs on the CPU everywhere).
SIZES = {
    "full": {"mlp": {"width": 2048, "depth": 4, "batch": 2048}, "convnet": {"width": 64, "hw": 64, "batch": 64}},
    "small": {"mlp": {"width": 256, "depth": 4, "batch": 64}, "convnet": {"width": 16, "hw": 32, "batch": 16}},
}


# -- the models --------------------------------------------------------------------------------------

def mlp(width: int, depth: int = 4, seed: int = 0) -> nn.Sequential:
    """`depth` x (Linear(width, width) + GELU), seeded, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.GELU()]
        return nn.Sequential(*layers).eval()


def convnet(width: int, seed: int = 0) -> DigitsCNN:
    """Lab 08's CNN (three 3x3 convolutions with BatchNorm and ReLU, a pool, a classifier) on RGB
    input, seeded, with the non-trivial BatchNorm statistics a trained model has."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN(width, in_channels=3)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@dataclass
class LabModel:
    """One of the lab's models: the FP32 module on the CPU (what exports and references come from),
    its batch and one sample's shape."""

    name: str
    module: nn.Module
    batch: int
    sample_shape: tuple[int, ...]
    description: str

    def example(self, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
        """A seeded input batch (the same values on every machine, before the cast)."""
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((self.batch, *self.sample_shape), generator=gen).to(device=device, dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last(device) else x

    def channels_last(self, device: str) -> bool:
        """Convolutions on a GPU run in channels-last (NHWC), the layout tensor-core kernels use."""
        return device == "cuda" and len(self.sample_shape) == 3

    def on(self, device: str, precision: str) -> nn.Module:
        """A copy of the module on `device` in `precision` (channels-last for the CNN on a GPU)."""
        module = copy.deepcopy(self.module).to(device=device, dtype=_DTYPE[precision]).eval()
        return module.to(memory_format=torch.channels_last) if self.channels_last(device) else module

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The FP32 output for `x`'s values (after its rounding to x's precision), TF32 off, on the CPU."""
        module = self.on(x.device.type, "fp32")
        with torch.inference_mode(), tf32_mode(False):
            return module(x.float()).float().cpu()


def lab_model(name: str, scale: str, **overrides: int) -> LabModel:
    """The lab's "mlp" or "convnet" at `scale` ("full" or "small"); see :data:`SIZES`. `overrides`
    replace sizes (``depth=8`` gives a deeper MLP of the same layers: a related model)."""
    if name not in SIZES[scale]:
        raise KeyError(f"unknown lab model {name!r}; the lab has {sorted(SIZES[scale])}")
    size = {**SIZES[scale][name], **overrides}
    if name == "mlp":
        return LabModel(name, mlp(size["width"], size["depth"]), size["batch"], (size["width"],),
                        f"{size['depth']} x (Linear {size['width']} + GELU), batch {size['batch']}")
    hw = size["hw"]
    return LabModel(name, convnet(size["width"]), size["batch"], (3, hw, hw),
                    f"3 conv3x3 + BN + ReLU (width {size['width']}), {hw}x{hw} RGB, batch {size['batch']}")


def checked_error(out: torch.Tensor | np.ndarray, reference: torch.Tensor, tolerance: float, what: str) -> float:
    """Relative error of `out` against the FP32 reference; raises when it exceeds `tolerance`."""
    out_cpu = torch.as_tensor(np.asarray(out)) if isinstance(out, np.ndarray) else out.detach().float().cpu()
    error = max_relative_error(out_cpu, reference)
    if not error <= tolerance:
        raise AssertionError(f"{what}: relative error {error:.3g} against the FP32 model exceeds {tolerance:g}; "
                             "its timings would mean nothing")
    return error


# -- the trade-off's arithmetic ----------------------------------------------------------------------

def break_even_inferences(build_s: float, baseline_ms: float, optimized_ms: float) -> float:
    """How many inferences pay back `build_s` seconds of build: build time over the time saved per
    inference. ``math.inf`` when the optimized run is not faster (the build never pays back)."""
    saved_ms = baseline_ms - optimized_ms
    if saved_ms <= 0:
        return math.inf
    return build_s * 1e3 / saved_ms


#: One figure per configuration over its repeated runs (lab 10's notebook reads it from here).
median_latency_ms = bench.median_latency_ms


def verdict(comparison: bench.Comparison) -> str:
    """"faster", "slower" or "noise" (a difference inside the run-to-run spread)."""
    if not comparison.significant:
        return "noise"
    return "faster" if comparison.speedup > 1 else "slower"


# -- torch.compile and Inductor's cache ----------------------------------------------------------------

@contextlib.contextmanager
def fresh_inductor_cache() -> Iterator[None]:
    """An empty temporary Inductor/Triton cache folder for the block, deleted afterwards (see module doc)."""
    from torch._inductor import utils as inductor_utils

    fresh = getattr(inductor_utils, "fresh_cache", None) or getattr(inductor_utils, "fresh_inductor_cache", None)
    if fresh is None:
        raise RuntimeError(f"this PyTorch ({torch.__version__}) has neither torch._inductor.utils.fresh_cache nor "
                           "fresh_inductor_cache: measure a cold compile in a new process with its own "
                           "TORCHINDUCTOR_CACHE_DIR instead")
    with fresh():
        yield


def reset_compiler_state() -> None:
    """Forget every compiled graph (Dynamo) and Inductor's in-memory caches; the disk cache stays."""
    from torch._inductor import utils as inductor_utils

    torch._dynamo.reset()
    clear = getattr(inductor_utils, "clear_caches", None) or getattr(inductor_utils, "clear_inductor_caches", None)
    if clear is not None:
        clear()


def cache_counters() -> dict[str, int]:
    """Inductor's FX-graph cache and AOTAutograd's cache, hits and misses so far in this process."""
    from torch._dynamo.utils import counters

    return {"fx_hits": int(counters["inductor"]["fxgraph_cache_hit"]),
            "fx_misses": int(counters["inductor"]["fxgraph_cache_miss"]),
            "aot_hits": int(counters["aot_autograd"]["autograd_cache_hit"])}


def _since(before: dict[str, int]) -> dict[str, int]:
    now = cache_counters()
    return {k: now[k] - before[k] for k in now}


def _stream_context(stream: "torch.cuda.Stream | None"):
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def warm_up_compiler(device: str, precision: str) -> float:
    """Compile tiny versions of both lab models once, in a throwaway cache, and return the seconds.

    The compiler's one-off start-up in a process (imports, Triton and its worker processes, the
    first lowering of Linear/GELU/convolution/BatchNorm) is then charged to no model and no mode.
    """
    dtype = _DTYPE[precision]
    tiny = [(mlp(64, depth=1), torch.ones(8, 64)), (convnet(4), torch.ones(2, 3, 8, 8))]
    with bench.wall_timer() as t, fresh_inductor_cache(), torch.inference_mode():
        for module, x in tiny:
            reset_compiler_state()
            torch.compile(module.to(device=device, dtype=dtype))(x.to(device=device, dtype=dtype))
        if device == "cuda":
            torch.cuda.synchronize()
    reset_compiler_state()
    return t.seconds


@dataclass
class CompileRun:
    """One model compiled in one mode: cold and warm compile seconds, cache counters, run time."""

    model: str
    mode: str
    cold_s: float
    cold_cache: dict[str, int]
    warm_s: float | None
    warm_cache: dict[str, int] | None
    relative_error: float
    runs: list[bench.Measurement] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"torch.compile ({self.mode})"

    @property
    def latency_ms(self) -> float:
        return bench.median_latency_ms(self.runs)

    @property
    def warm_speedup(self) -> float:
        """Cold compile seconds over warm ones (NaN where no warm compile was made)."""
        return self.cold_s / self.warm_s if self.warm_s else float("nan")


TensorFn = Callable[[torch.Tensor], torch.Tensor]   # one inference: input batch -> output


def _compiled_call(compiled: TensorFn, mode: str) -> TensorFn:
    if mode != "reduce-overhead":
        return compiled

    def call(x: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()   # each call is a new inference: outputs may be reused
        return compiled(x)

    return call


def _first_calls(call: TensorFn, x: torch.Tensor, calls: int,
                 stream: "torch.cuda.Stream | None") -> tuple[float, torch.Tensor]:
    """Seconds for the first `calls` calls (compile, and for CUDA graphs warm-up and recording), synchronised."""
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream())
    t0 = time.perf_counter()
    with _stream_context(stream):
        for _ in range(calls):
            y = call(x)
        y = y.clone()   # a CUDA-graph output is overwritten by the next replay
    if stream is not None:
        stream.synchronize()
    return time.perf_counter() - t0, y


def compile_and_measure(lab: LabModel, module: nn.Module, x: torch.Tensor, reference: torch.Tensor, mode: str, *,
                        precision: str, stream: "torch.cuda.Stream | None", warm: bool = True, passes: int = 2,
                        warmup_ms: float = 50.0, measure_ms: float = 200.0) -> CompileRun:
    """Compile `module` in `mode` with a cold Inductor cache, then (if `warm`) again from the warm cache
    after a Dynamo reset; check each output, then time the last compiled function `passes` times."""
    if mode == "reduce-overhead" and stream is None:
        raise ValueError("reduce-overhead replays CUDA graphs: it needs a GPU (pass a torch.cuda.Stream)")
    device = "cuda" if stream is not None else "cpu"
    calls = 3 if mode == "reduce-overhead" else 1   # compile; then warm-up, and recording of the graph
    attempts: list[tuple[float, dict[str, int]]] = []
    errors = []
    with fresh_inductor_cache(), torch.inference_mode():
        for _ in range(2 if warm else 1):
            reset_compiler_state()
            call = _compiled_call(torch.compile(module, mode=mode), mode)
            before = cache_counters()
            seconds, y = _first_calls(call, x, calls, stream)
            attempts.append((seconds, _since(before)))
            errors.append(checked_error(y, reference, TOLERANCE[precision], f"torch.compile ({mode}) of {lab.name}"))
        name = f"torch.compile ({mode})"
        runs = [bench.measure(lambda: call(x), name=name, backend=f"{name}, {device} {precision}", batch_size=lab.batch,
                              device=device, stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)
                for _ in range(passes)]
    reset_compiler_state()   # nothing compiled may outlive its (deleted) cache folder
    (cold_s, cold_cache), warm_attempt = attempts[0], (attempts[1] if warm else None)
    return CompileRun(lab.name, mode, cold_s, cold_cache, warm_attempt[0] if warm_attempt else None,
                      warm_attempt[1] if warm_attempt else None, max(errors), runs)


def measure_eager(lab: LabModel, module: nn.Module, x: torch.Tensor, *, precision: str,
                  stream: "torch.cuda.Stream | None", warmup_ms: float = 50.0,
                  measure_ms: float = 200.0) -> bench.Measurement:
    """One pass of the eager module (the no-build baseline)."""
    device = "cuda" if stream is not None else "cpu"
    with torch.inference_mode():
        return bench.measure(lambda: module(x), name="PyTorch eager", backend=f"PyTorch eager, {device} {precision}",
                             batch_size=lab.batch, device=device, stream=stream, warmup_ms=warmup_ms,
                             measure_ms=measure_ms)


@dataclass
class CompileStudy:
    """Eager (one pass before and one after the compiles, so drift shows as its spread) and each mode."""

    model: str
    precision: str
    eager_error: float
    eager: list[bench.Measurement]
    modes: list[CompileRun]

    def rows(self) -> list[dict[str, Any]]:
        """Per configuration: compile seconds cold and warm, run time, speed-up over eager against
        the run-to-run spread, and the inferences that pay the cold compile back."""
        eager_ms = bench.median_latency_ms(self.eager)
        rows: list[dict[str, Any]] = [{
            "model": self.model, "configuration": "PyTorch eager", "cold_s": 0.0, "warm_s": 0.0,
            "latency_ms": eager_ms, "speedup": 1.0,
            "spread_pct": bench.spread_pct(m.latency_ms.median for m in self.eager),
            "verdict": "baseline", "break_even": 0.0, "relative_error": self.eager_error}]
        for run in self.modes:
            cmp = bench.compare(self.eager, run.runs)
            rows.append({
                "model": self.model, "configuration": run.label, "cold_s": run.cold_s,
                "warm_s": float("nan") if run.warm_s is None else run.warm_s, "latency_ms": run.latency_ms,
                "speedup": cmp.speedup, "spread_pct": cmp.noise_pct, "verdict": verdict(cmp),
                "break_even": break_even_inferences(run.cold_s, eager_ms, run.latency_ms) if cmp.significant
                else math.inf, "relative_error": run.relative_error})
        return rows

    def run(self, mode: str) -> CompileRun:
        for r in self.modes:
            if r.mode == mode:
                return r
        raise KeyError(f"{self.model}: no torch.compile ({mode}) in this study; modes: {[r.mode for r in self.modes]}")


def compile_study(lab: LabModel, modes: Sequence[str], *, device: str, precision: str, warm_modes: Sequence[str] = (),
                  passes: int = 2, warmup_ms: float = 50.0, measure_ms: float = 200.0,
                  progress: bool = True) -> CompileStudy:
    """Eager, then every mode in `modes` (cold compile; also warm for those in `warm_modes`), then eager again."""
    stream = torch.cuda.Stream() if device == "cuda" else None
    module = lab.on(device, precision)
    x = lab.example(device, _DTYPE[precision])
    reference = lab.reference(x)
    with torch.inference_mode(), _stream_context(stream):
        eager_out = module(x)
    if stream is not None:
        stream.synchronize()
    eager_error = checked_error(eager_out, reference, TOLERANCE[precision], f"eager {lab.name}")
    eager = [measure_eager(lab, module, x, precision=precision, stream=stream, warmup_ms=warmup_ms,
                           measure_ms=measure_ms)]
    runs = [compile_and_measure(lab, module, x, reference, mode, precision=precision, stream=stream,
                                warm=mode in warm_modes, passes=passes, warmup_ms=warmup_ms, measure_ms=measure_ms)
            for mode in tqdm(modes, desc=f"torch.compile {lab.name}", disable=not progress, mininterval=2.0)]
    eager.append(measure_eager(lab, module, x, precision=precision, stream=stream, warmup_ms=warmup_ms,
                               measure_ms=measure_ms))
    return CompileStudy(lab.name, precision, eager_error, eager, runs)


# -- ONNX Runtime's graph optimization levels ------------------------------------------------------------

def ort_options(level: str, *, optimized_path: str | Path | None = None, threads: int | None = None):
    """SessionOptions at `level` (a name in :data:`ORT_LEVELS`)."""
    import onnxruntime as ort

    if level not in ORT_LEVELS:
        raise ValueError(f"level must be one of {ORT_LEVELS}, got {level!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3   # the layout optimizer's "hardware-specific model" warning is expected
    if threads:
        options.intra_op_num_threads = threads
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return options


def ort_session(path: str | Path, level: str, *, threads: int | None = None):
    """A CPU session of the ONNX model at `path`, optimized at `level`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=ort_options(level, threads=threads),
                                providers=["CPUExecutionProvider"])


def optimized_node_counts(path: str | Path, level: str, out_dir: str | Path) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime runs at `level` (it writes the optimized model; not timed)."""
    import onnx
    import onnxruntime as ort

    out = Path(out_dir) / f"{Path(path).stem}.{level}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    ort.InferenceSession(str(path), sess_options=ort_options(level, optimized_path=out),
                         providers=["CPUExecutionProvider"])
    counts: dict[str, int] = {}
    for node in onnx.load(str(out)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class OrtLevelRun:
    """One model at one level: session build seconds (repeated), the ops it runs, and its run time."""

    model: str
    level: str
    build_s: list[float]
    nodes: dict[str, int]
    relative_error: float
    runs: list[bench.Measurement] = field(default_factory=list)

    @property
    def build_median_s(self) -> float:
        return statistics.median(self.build_s)

    @property
    def latency_ms(self) -> float:
        return bench.median_latency_ms(self.runs)


def ort_level_study(onnx_path: str | Path, lab: LabModel, *, levels: Sequence[str] = ORT_LEVELS,
                    build_repeats: int = 7, passes: int = 2, warmup_ms: float = 50.0, measure_ms: float = 200.0,
                    out_dir: str | Path, threads: int | None = None) -> list[OrtLevelRun]:
    """Session build time (`build_repeats` builds per level, interleaved, after one untimed build that
    pays ONNX Runtime's one-off start-up) and run time (`passes` interleaved passes) at each level,
    every level's output checked against the FP32 PyTorch model first."""
    x = lab.example()
    reference = lab.reference(x)
    feed = {"input": x.numpy()}
    ort_session(onnx_path, levels[0], threads=threads)
    build_s: dict[str, list[float]] = {level: [] for level in levels}
    sessions = {}
    for _ in range(build_repeats):
        for level in levels:
            t0 = time.perf_counter()
            sessions[level] = ort_session(onnx_path, level, threads=threads)
            build_s[level].append(time.perf_counter() - t0)
    results = {}
    for level in levels:
        out = sessions[level].run(None, feed)[0]
        error = checked_error(out, reference, TOLERANCE["fp32"], f"ONNX Runtime {level} on {lab.name}")
        results[level] = OrtLevelRun(lab.name, level, build_s[level], optimized_node_counts(onnx_path, level, out_dir),
                                     error)
    configs = {level: {"fn": (lambda s=sessions[level]: s.run(None, feed)), "name": f"ONNX Runtime {ORT_SHORT[level]}"}
               for level in levels}
    runs = bench.measure_interleaved(configs, passes=passes, backend="ONNX Runtime CPU", device="cpu",
                                     batch_size=lab.batch, warmup_ms=warmup_ms, measure_ms=measure_ms)
    for level in levels:
        results[level].runs = runs[level]
    return [results[level] for level in levels]


def ort_rows(study: Sequence[OrtLevelRun]) -> list[dict[str, Any]]:
    """Per level: build ms (median of the repeats), run ms, speed-up over the first level against the
    run-to-run spread, and the inferences that pay the extra build time back."""
    base = study[0]
    rows = []
    for run in study:
        cmp = bench.compare(base.runs, run.runs)
        extra_s = max(run.build_median_s - base.build_median_s, 0.0)
        if run is base:
            break_even = 0.0
        elif cmp.significant:
            break_even = break_even_inferences(extra_s, base.latency_ms, run.latency_ms)
        else:
            break_even = math.inf
        rows.append({"model": run.model, "level": run.level, "build_ms": run.build_median_s * 1e3,
                     "latency_ms": run.latency_ms, "speedup": cmp.speedup, "spread_pct": cmp.noise_pct,
                     "verdict": "baseline" if run is base else verdict(cmp), "nodes": sum(run.nodes.values()),
                     "break_even": break_even, "relative_error": run.relative_error})
    return rows


# -- the trade-off in one picture ----------------------------------------------------------------------

def tradeoff_rows(series: str, points: Sequence[tuple[str, float, float]], baseline_ms: float) -> list[dict[str, Any]]:
    """Rows for :func:`tradeoff_plot`: each (label, build seconds, run ms) with its run time relative
    to `baseline_ms`, the least-effort configuration of the series (eager, level 0, no optimization)."""
    return [{"series": series, "config": label, "build_s": build_s, "latency_ms": latency_ms,
             "relative_run_time": latency_ms / baseline_ms} for label, build_s, latency_ms in points]


def tradeoff_plot(rows: Sequence[dict[str, Any]], *, title: str, path: str | Path, show: bool = True) -> Path:
    """Run time (relative to each series' least-effort configuration) against build seconds, log x,
    one line per series in order of effort, each point labelled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    for name in dict.fromkeys(r["series"] for r in rows):
        pts = [r for r in rows if r["series"] == name and r["build_s"] > 0]
        if not pts:
            continue
        line, = ax.plot([p["build_s"] for p in pts], [p["relative_run_time"] for p in pts], marker="o", label=name)
        for p in pts:
            ax.annotate(p["config"], (p["build_s"], p["relative_run_time"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=line.get_color())
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set(title=title, xlabel="build (compile, session build) seconds, log scale",
           ylabel="run time / least-effort configuration's")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return plots.finish_figure(fig, rows, path, show)


def level_plot(rows: Sequence[dict[str, Any]], *, x: str, title: str, path: str | Path, show: bool = True) -> Path:
    """Build seconds (left) and run ms (right) against a builder setting `x`, one line pair per model."""
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    right = left.twinx()
    for name in dict.fromkeys(r["model"] for r in rows):
        pts = [r for r in rows if r["model"] == name]
        left.plot([p[x] for p in pts], [p["build_s"] for p in pts], marker="o", label=f"{name}: build s")
        right.plot([p[x] for p in pts], [p["latency_ms"] for p in pts], marker="s", linestyle="--",
                   label=f"{name}: run ms")
    left.set(title=title, xlabel=x, ylabel="build seconds (solid)")
    right.set_ylabel("median run ms (dashed)")
    left.grid(True, alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [str(h.get_label()) for h in handles], fontsize=7, loc="upper left")
    return plots.finish_figure(fig, rows, path, show)
