"""Lab 10, torch.compile's side of the trade: its modes, compile seconds cold and warm, and run time.

Inductor's cache, cold and warm, in one process: :func:`common.compiler.fresh_inductor_cache` points
``TORCHINDUCTOR_CACHE_DIR`` and ``TRITON_CACHE_DIR`` at a new temporary folder and clears Inductor's
registered in-memory caches on the way in and out (``torch._inductor.utils.fresh_cache``, the helper
PyTorch's own tests use). Inductor hands both variables to its compile workers with every job, so the
workers started before the switch follow it too. A *cold* compile runs in a fresh folder; the *warm*
one follows ``torch._dynamo.reset()`` and a clearing of the in-memory caches, so that what it finds
warm is the folder on disk, as a new process pointed at the same folder would.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from common import bench, checks, compiler

from .kernels_chosen import KernelProfile, profile_kernels, quiet_autotuning, skipped_candidates
from .models import DTYPE, LabModel, convnet, mlp
from .effort import SHORT_MODE, break_even_inferences, verdict

#: Per pass: the warm-up and measuring budgets (five interleaved passes of eager and each mode).
WARMUP_MS, MEASURE_MS = 15.0, 60.0

#: torch.compile modes in order of build effort. max-autotune-no-cudagraphs is max-autotune's kernel
#: search without CUDA graphs, so that its gain is the kernels' alone; reduce-overhead is default's
#: kernels replayed as CUDA graphs (GPU only).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def compile_modes(has_gpu: bool) -> dict[str, list[str]]:
    """The modes the lab compiles, per model. max-autotune's search costs tens of seconds per model on
    a GPU: there it runs on the MLP only (and reduce-overhead, which needs a GPU, too)."""
    if has_gpu:
        return {"mlp": ["default", "reduce-overhead", "max-autotune-no-cudagraphs"], "convnet": ["default"]}
    return {name: ["default", "max-autotune-no-cudagraphs"] for name in ("mlp", "convnet")}


def _stream_context(stream: "torch.cuda.Stream | None"):
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def warm_up_compiler(device: str, precision: str) -> float:
    """Compile tiny versions of both lab models once, in a throwaway cache, and return the seconds.

    The compiler's one-off start-up in a process (imports, Triton and its worker processes, the
    first lowering of Linear/GELU/convolution/BatchNorm) is then charged to no model and no mode.
    """
    dtype = DTYPE[precision]
    tiny = [(mlp(64, depth=1), torch.ones(8, 64, dtype=dtype)), (convnet(4), torch.ones(2, 3, 8, 8, dtype=dtype))]
    return compiler.warm_up_compiler(device, tiny, fresh_cache=True)


def _since(before: dict[str, int]) -> dict[str, int]:
    now = compiler.cache_counters()
    return {k: now[k] - before[k] for k in now}


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
    eager_runs: list[bench.Measurement] = field(default_factory=list)   # eager, interleaved with `runs`
    kernels: KernelProfile | None = None     # what the compiled function runs, slowest first
    skipped: int = 0                          # autotuning candidates that could not run and were skipped

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
                        precision: str, stream: "torch.cuda.Stream | None", warm: bool = True,
                        passes: int = bench.PASSES, warmup_ms: float = WARMUP_MS,
                        measure_ms: float = MEASURE_MS) -> CompileRun:
    """Compile `module` in `mode` with a cold Inductor cache, then (if `warm`) again from the warm cache
    after a Dynamo reset; check each output; then time the compiled function and the eager `module` in
    `passes` interleaved passes, and list the compiled function's kernels.

    Inductor's autotuning output is kept out of the notebook (:func:`~.kernels_chosen.quiet_autotuning`);
    the candidates it skipped are counted. A compiled function does not outlive its cache folder (the
    next mode's reset would drop it), so modes are timed one after another, each interleaved with eager.
    """
    if mode == "reduce-overhead" and stream is None:
        raise ValueError("reduce-overhead replays CUDA graphs: it needs a GPU (pass a torch.cuda.Stream)")
    device = "cuda" if stream is not None else "cpu"
    calls = 3 if mode == "reduce-overhead" else 1   # compile; then warm-up, and recording of the graph
    attempts: list[tuple[float, dict[str, int]]] = []
    errors = []
    name = f"torch.compile ({mode})"
    with compiler.fresh_inductor_cache(), torch.inference_mode(), quiet_autotuning() as messages:
        for _ in range(2 if warm else 1):
            compiler.reset_compiler_state()
            call = _compiled_call(torch.compile(module, mode=mode), mode)
            before = compiler.cache_counters()
            seconds, y = _first_calls(call, x, calls, stream)
            attempts.append((seconds, _since(before)))
            errors.append(checks.verify(y, reference, f"{name} of {lab.name}", precision=precision))
        configs = {"eager": {"fn": lambda: module(x), "name": "PyTorch eager"},
                   mode: {"fn": lambda: call(x), "name": name}}
        runs = bench.measure_interleaved(configs, passes=passes, backend=f"{device} {precision}", batch_size=lab.batch,
                                         device=device, stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)
        kernels = profile_kernels(lambda: call(x), label=f"{lab.name}: {name}", device=device, stream=stream)
    compiler.reset_compiler_state()   # nothing compiled may outlive its (deleted) cache folder
    (cold_s, cold_cache), warm_attempt = attempts[0], (attempts[1] if warm else None)
    return CompileRun(lab.name, mode, cold_s, cold_cache, warm_attempt[0] if warm_attempt else None,
                      warm_attempt[1] if warm_attempt else None, max(errors), runs[mode], runs["eager"], kernels,
                      skipped_candidates(messages))


@dataclass
class CompileStudy:
    """Each mode with the eager passes interleaved with it, and the eager module's kernels."""

    model: str
    precision: str
    eager_error: float
    eager: list[bench.Measurement]          # every eager pass of the study (the baseline row)
    modes: list[CompileRun]
    eager_kernels: KernelProfile | None = None

    def _eager_of(self, run: CompileRun) -> list[bench.Measurement]:
        return run.eager_runs or self.eager

    def rows(self) -> list[dict[str, Any]]:
        """Per configuration: compile seconds, run time (event) with kernel time, busy share and regime,
        the speed-up over the eager passes interleaved with it (event time, with its 95% interval; and
        on kernel time where measured), and the inferences that pay the cold compile back."""
        eager_ms = bench.median_latency_ms(self.eager)
        rows: list[dict[str, Any]] = [{
            "model": self.model, "configuration": "PyTorch eager", "cold_s": 0.0, "warm_s": 0.0,
            "latency_ms": eager_ms, **bench.kernel_fields(self.eager), "speedup": 1.0, "interval": "",
            "kernel_speedup": 1.0, "verdict": "baseline", "break_even": 0.0, "relative_error": self.eager_error}]
        for run in self.modes:
            eager = self._eager_of(run)
            cmp = bench.compare(eager, run.runs)
            on_kernel = kernel_comparison(eager, run.runs)
            lo, hi = cmp.interval
            rows.append({
                "model": self.model, "configuration": run.label, "cold_s": run.cold_s,
                "warm_s": float("nan") if run.warm_s is None else run.warm_s, "latency_ms": run.latency_ms,
                **bench.kernel_fields(run.runs), "speedup": cmp.speedup,
                "interval": "" if math.isnan(lo) else f"{lo:.2f}-{hi:.2f}",
                "kernel_speedup": on_kernel.speedup if on_kernel is not None else float("nan"),
                "verdict": verdict(cmp),
                "break_even": break_even_inferences(run.cold_s, bench.median_latency_ms(eager), run.latency_ms)
                if cmp.significant else math.inf, "relative_error": run.relative_error})
        return rows

    def run(self, mode: str) -> CompileRun:
        for r in self.modes:
            if r.mode == mode:
                return r
        raise KeyError(f"{self.model}: no torch.compile ({mode}) in this study; modes: {[r.mode for r in self.modes]}")

    def runs_of(self, mode: str) -> list[bench.Measurement]:
        """The runs of `mode` ("eager" names every eager pass)."""
        return self.eager if mode == "eager" else self.run(mode).runs

    def compare(self, mode_a: str, mode_b: str, on: str = "event") -> bench.Comparison:
        """`mode_b` against `mode_a` ("eager" names the eager runs interleaved with `mode_b`, or all of
        them), on event, kernel or host time."""
        runs_a = self._eager_of(self.run(mode_b)) if mode_a == "eager" else self.runs_of(mode_a)
        return bench.compare(runs_a, self.runs_of(mode_b), on=on)

    def on_device(self, mode_a: str, mode_b: str) -> bench.Comparison:
        """`mode_b` against `mode_a` on kernel time where measured (a device effect), else on event time."""
        runs_a = self._eager_of(self.run(mode_b)) if mode_a == "eager" else self.runs_of(mode_a)
        return device_comparison(runs_a, self.runs_of(mode_b))

    def kernel_profiles(self) -> list[KernelProfile]:
        """Eager's kernels, then each mode's, where profiled."""
        profiles = [self.eager_kernels] + [r.kernels for r in self.modes]
        return [p for p in profiles if p is not None]


def kernel_comparison(runs_a: list[bench.Measurement], runs_b: list[bench.Measurement]) -> bench.Comparison | None:
    """B against A on kernel time where both carry it (a GPU with CUPTI), else None."""
    if all(not math.isnan(m.kernel_ms) for m in (*runs_a, *runs_b)) and runs_a and runs_b:
        return bench.compare(runs_a, runs_b, on="kernel")
    return None


def device_comparison(runs_a: list[bench.Measurement], runs_b: list[bench.Measurement]) -> bench.Comparison:
    """B against A on kernel time where both carry it, else on event time (a CPU; CUPTI unavailable):
    the comparison says which (its ``on``)."""
    return kernel_comparison(runs_a, runs_b) or bench.compare(runs_a, runs_b)


def compile_study(lab: LabModel, modes: Sequence[str], *, device: str, precision: str, warm_modes: Sequence[str] = (),
                  passes: int = bench.PASSES, warmup_ms: float = WARMUP_MS, measure_ms: float = MEASURE_MS,
                  progress: bool = True) -> CompileStudy:
    """Every mode in `modes` (cold compile; also warm for those in `warm_modes`), each timed in
    interleaved passes with eager; and the eager module's kernels."""
    stream = torch.cuda.Stream() if device == "cuda" else None
    module = lab.on(device, precision)
    x = lab.example(device, DTYPE[precision])
    reference = lab.reference(x)
    with torch.inference_mode(), _stream_context(stream):
        eager_out = module(x)
    if stream is not None:
        stream.synchronize()
    eager_error = checks.verify(eager_out, reference, f"eager {lab.name}", precision=precision)
    eager_kernels = profile_kernels(lambda: module(x), label=f"{lab.name}: PyTorch eager", device=device,
                                    stream=stream)
    runs = [compile_and_measure(lab, module, x, reference, mode, precision=precision, stream=stream,
                                warm=mode in warm_modes, passes=passes, warmup_ms=warmup_ms, measure_ms=measure_ms)
            for mode in tqdm(modes, desc=f"torch.compile {lab.name}", disable=not progress, leave=False)]
    eager = [m for r in runs for m in r.eager_runs]
    return CompileStudy(lab.name, precision, eager_error, eager, runs, eager_kernels)


def cache_rows(studies: Mapping[str, CompileStudy]) -> list[dict[str, Any]]:
    """Per warm-compiled mode: cold and warm compile seconds, and what Inductor's caches served."""
    return [{"model": st.model, "mode": r.mode, "cold_s": r.cold_s, "warm_s": r.warm_s, "cold/warm": r.warm_speedup,
             "cold: fx hits/misses": f"{r.cold_cache['fx_hits']}/{r.cold_cache['fx_misses']}",
             "warm: fx hits/misses": f"{r.warm_cache['fx_hits']}/{r.warm_cache['fx_misses']}",
             "warm: aot hits": r.warm_cache["aot_hits"]}
            for st in studies.values() for r in st.modes if r.warm_s is not None and r.warm_cache is not None]


def cold_warm_rows(studies: Mapping[str, CompileStudy]) -> list[dict[str, Any]]:
    """Bars of the figure: each warm-compiled mode's cold and warm first-call seconds."""
    return [{"compile": f"{st.model} {SHORT_MODE[r.mode]}\n{kind}", "seconds": seconds}
            for st in studies.values() for r in st.modes if r.warm_s is not None
            for kind, seconds in (("cold", r.cold_s), ("warm", r.warm_s))]
