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
from tqdm import tqdm

from common import bench, checks, compiler

from .models import DTYPE, LabModel, convnet, mlp
from .tradeoff import SHORT_MODE, break_even_inferences, verdict

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
    with compiler.fresh_inductor_cache(), torch.inference_mode():
        for _ in range(2 if warm else 1):
            compiler.reset_compiler_state()
            call = _compiled_call(torch.compile(module, mode=mode), mode)
            before = compiler.cache_counters()
            seconds, y = _first_calls(call, x, calls, stream)
            attempts.append((seconds, _since(before)))
            errors.append(checks.verify(y, reference, f"torch.compile ({mode}) of {lab.name}", precision=precision))
        name = f"torch.compile ({mode})"
        runs = [bench.measure(lambda: call(x), name=name, backend=f"{name}, {device} {precision}", batch_size=lab.batch,
                              device=device, stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)
                for _ in range(passes)]
    compiler.reset_compiler_state()   # nothing compiled may outlive its (deleted) cache folder
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

    def compare(self, mode_a: str, mode_b: str) -> bench.Comparison:
        """`mode_b` against `mode_a` ("eager" names the eager runs)."""
        runs = {"eager": self.eager, **{r.mode: r.runs for r in self.modes}}
        return bench.compare(runs[mode_a], runs[mode_b])


def compile_study(lab: LabModel, modes: Sequence[str], *, device: str, precision: str, warm_modes: Sequence[str] = (),
                  passes: int = 2, warmup_ms: float = 50.0, measure_ms: float = 200.0,
                  progress: bool = True) -> CompileStudy:
    """Eager, then every mode in `modes` (cold compile; also warm for those in `warm_modes`), then eager again."""
    stream = torch.cuda.Stream() if device == "cuda" else None
    module = lab.on(device, precision)
    x = lab.example(device, DTYPE[precision])
    reference = lab.reference(x)
    with torch.inference_mode(), _stream_context(stream):
        eager_out = module(x)
    if stream is not None:
        stream.synchronize()
    eager_error = checks.verify(eager_out, reference, f"eager {lab.name}", precision=precision)
    eager = [measure_eager(lab, module, x, precision=precision, stream=stream, warmup_ms=warmup_ms,
                           measure_ms=measure_ms)]
    runs = [compile_and_measure(lab, module, x, reference, mode, precision=precision, stream=stream,
                                warm=mode in warm_modes, passes=passes, warmup_ms=warmup_ms, measure_ms=measure_ms)
            for mode in tqdm(modes, desc=f"torch.compile {lab.name}", disable=not progress, mininterval=2.0)]
    eager.append(measure_eager(lab, module, x, precision=precision, stream=stream, warmup_ms=warmup_ms,
                               measure_ms=measure_ms))
    return CompileStudy(lab.name, precision, eager_error, eager, runs)


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
