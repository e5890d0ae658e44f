"""Lab 04 (shape changes): `torch.compile`'s recompilation per new shape, static against dynamic.

:func:`compile_study` compiles a model afresh and calls it at each batch size in order, counting
the graphs TorchDynamo compiled for each first call and timing it; then it times the steady state.
:func:`compile_steady_rows` sets static, dynamic and eager (:func:`eager_steady`) side by side, with
kernel time and the regime of each; :func:`compile_notes` explains where static is slower than eager,
and :func:`geometric_speedup` sums up static against dynamic over the batch sizes.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from common import bench, checks, compiler

from .switching import torch_targets


def graphs_compiled() -> int:
    """How many graphs TorchDynamo has compiled in this process (a private counter of torch._dynamo)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class CompileStudy:
    """One `torch.compile` configuration: the first call at each shape and the steady state after."""

    dynamic: bool
    rows: list[dict]                               # per batch, in the order first used
    steady: dict[int, list[bench.Measurement]]     # per batch, one Measurement per pass

    @property
    def label(self) -> str:
        return f"torch.compile (dynamic={self.dynamic})"

    @property
    def graphs(self) -> list[int]:
        return [r["new_graphs"] for r in self.rows]

    @property
    def first_call_s(self) -> list[float]:
        return [r["first_call_s"] for r in self.rows]

    def steady_median_ms(self, batch: int) -> float:
        return bench.median_latency_ms(self.steady[batch])


def compile_study(model: torch.nn.Module, inputs: Mapping[int, torch.Tensor], reference: Mapping[int, torch.Tensor],
                  *, dynamic: bool, tolerance: float, stream: "torch.cuda.Stream | None" = None,
                  backend: str = "inductor", passes: int = bench.PASSES, warmup_ms: float = 10.0,
                  measure_ms: float = 40.0) -> CompileStudy:
    """Compile `model` afresh, call it at each batch of `inputs` in order, then time the steady state.

    The first call at each batch is timed in seconds on the host (through synchronisation: a
    compile is host work) with the number of graphs Dynamo compiled for it. Each output is checked
    against `reference` (relative error within `tolerance`) before any steady-state timing; each
    batch's steady state is measured `passes` times, interleaved over the batches.
    """
    torch._dynamo.reset()   # compiled code is cached per Python function: start from none
    compiled = torch.compile(model, dynamic=dynamic, backend=backend)
    ctx = (lambda: torch.cuda.stream(stream)) if stream is not None else contextlib.nullcontext
    label = f"torch.compile (dynamic={dynamic})"

    @torch.inference_mode()
    def call(x: torch.Tensor) -> torch.Tensor:
        with ctx():
            return compiled(x)

    rows = []
    for batch, x in inputs.items():
        graphs_before, hits_before = graphs_compiled(), compiler.cache_counters()["fx_hits"]
        with bench.wall_timer() as t:
            y = call(x)
            if stream is not None:
                stream.synchronize()
        error = checks.verify(y.float().cpu(), reference[batch], f"{label} at batch {batch}", tol=tolerance)
        rows.append({"batch": batch, "first_call_s": t.seconds, "new_graphs": graphs_compiled() - graphs_before,
                     "cache_hits": compiler.cache_counters()["fx_hits"] - hits_before, "relative_error": error})
    configs = {b: {"fn": functools.partial(call, x), "batch_size": b} for b, x in inputs.items()}
    steady = bench.measure_interleaved(configs, passes=passes, name=label, backend=label,
                                       device="cpu" if stream is None else "cuda", stream=stream,
                                       warmup_ms=warmup_ms, measure_ms=measure_ms)
    return CompileStudy(dynamic, rows, steady)


def eager_steady(model: torch.nn.Module, inputs: Mapping[int, torch.Tensor], stream: "torch.cuda.Stream | None", *,
                 passes: int = bench.PASSES, warmup_ms: float = 10.0,
                 measure_ms: float = 40.0) -> dict[int, list[bench.Measurement]]:
    """PyTorch eager's steady state at each batch of `inputs`, the compile comparison's baseline:
    `passes` measurements each, interleaved over the batches (backend e.g. "PyTorch eager (cuda, fp16)")."""
    device = "cpu" if stream is None else "cuda"
    backend = f"PyTorch eager ({device}, {checks.precision_of(next(model.parameters()).dtype)})"
    configs = {b: {"fn": target.run, "batch_size": b} for b, target in torch_targets(model, inputs, stream).items()}
    return bench.measure_interleaved(configs, passes=passes, name="PyTorch eager", backend=backend, device=device,
                                     stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)


def compile_steady_rows(static: CompileStudy, dynamic: CompileStudy,
                        eager: Mapping[int, Sequence[bench.Measurement]]) -> list[dict]:
    """Per batch: eager, static and dynamic steady-state medians on event time, each one's kernel time
    and busy share, and two comparisons with their 95% intervals over passes: static against eager
    (event time, what a caller waits for) and dynamic against static (``static_speedup``; on kernel
    time where it was measured, the device effect of shape-generic kernels, else on event time)."""
    rows = []
    for batch in static.steady:
        runs = {"eager": eager[batch], "static": static.steady[batch], "dynamic": dynamic.steady[batch]}
        row: dict = {"batch": batch}
        for label, ms in runs.items():
            fields = bench.kernel_fields(ms)
            row.update({f"{label}_ms": bench.median_latency_ms(ms), f"{label}_kernel_ms": fields["kernel_ms"],
                        f"{label}_busy": fields["gpu_busy"], f"{label}_regime": fields["regime"]})
        vs_eager = bench.compare(runs["eager"], runs["static"])
        on = "kernel" if not any(math.isnan(m.kernel_ms) for m in (*runs["static"], *runs["dynamic"])) else "event"
        vs_static = bench.compare(runs["dynamic"], runs["static"], on=on)
        row.update({"static_vs_eager": vs_eager.speedup, "static_vs_eager_interval": _interval(vs_eager),
                    "static_vs_eager_significant": vs_eager.significant,
                    "static_speedup": vs_static.speedup, "static_speedup_interval": _interval(vs_static),
                    "compared_on": on, "noise_pct": vs_static.noise_pct, "significant": vs_static.significant,
                    "verdict": vs_static.verdict()})
        rows.append(row)
    return rows


def _interval(cmp: bench.Comparison) -> str:
    lo, hi = cmp.interval
    return "-" if math.isnan(lo) else f"{lo:.2f}-{hi:.2f}"


def compile_notes(rows: Sequence[dict]) -> list[str]:
    """One line per batch where the static compile is slower than eager on event time: where its
    interval reaches 1, that the noise hides it; where the interval lies below 1, whether the host set the pace there (the compiled code's busy share under 50%: its
    launches, not its kernels) and what kernel time says of the kernels themselves."""
    lines = []
    for r in rows:
        if r["static_vs_eager"] >= 1:
            continue
        head = (f"batch {r['batch']}: static compile at {r['static_vs_eager']:.2f}x eager on event time "
                f"(interval {r['static_vs_eager_interval']})")
        if not r["static_vs_eager_significant"]:   # slower at the point, but the interval reaches 1
            lines.append(f"{head}: inside the run-to-run noise, no slowdown shown")
            continue
        if math.isnan(r["static_kernel_ms"]):
            lines.append(f"{head}; no kernel time here to say whether host or device")
            continue
        kernels = r["static_kernel_ms"] / r["eager_kernel_ms"]
        busy = f"static {r['static_busy']:.0%} busy, eager {r['eager_busy']:.0%}"
        if r["static_regime"] == bench.HOST_BOUND:
            why = (f"host-bound ({busy}): the event time is the host's, the compiled code's Python wrapper "
                   f"launching its kernels one by one; its kernels take {kernels:.2f}x eager's kernel time")
        elif kernels > 1:
            why = f"{busy}: the compiled kernels themselves take longer ({kernels:.2f}x eager's kernel time)"
        else:
            why = (f"{busy}; its kernels take {kernels:.2f}x eager's kernel time: the difference lies between "
                   "the kernels")
        lines.append(f"{head}: {why}")
    return lines


def geometric_speedup(slow: Mapping[int, Sequence[bench.Measurement]], fast: Mapping[int, Sequence[bench.Measurement]],
                      *, on: str = "kernel") -> tuple[float, tuple[float, float]]:
    """The speedup of `fast` over `slow` as a geometric mean over batch sizes, with its 95% interval
    over passes: per pass, the geometric mean over batches of each side's figure (`on`: "kernel" or
    "event"), then :func:`common.bench.ratio_interval` over those per-pass means."""
    pick = bench.COMPARED_ON[on]

    def per_pass(runs: Mapping[int, Sequence[bench.Measurement]]) -> list[float]:
        passes = min(len(ms) for ms in runs.values())
        return [statistics.geometric_mean(pick(runs[b][p]) for b in runs) for p in range(passes)]

    a, b = per_pass(slow), per_pass(fast)
    return statistics.median(a) / statistics.median(b), bench.ratio_interval(a, b)
