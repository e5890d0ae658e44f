"""Lab 04 (shape changes): `torch.compile`'s recompilation per new shape, static against dynamic.

:func:`compile_study` compiles a model afresh and calls it at each batch size in order, counting
the graphs TorchDynamo compiled for each first call and timing it; then it times the steady state.
:func:`compile_steady_rows` sets static, dynamic and eager (:func:`eager_steady`) side by side.
"""

from __future__ import annotations

import contextlib
import functools
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
                  backend: str = "inductor", passes: int = 2, warmup_ms: float = 100.0,
                  measure_ms: float = 300.0) -> CompileStudy:
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
                 passes: int = 2, warmup_ms: float = 100.0, measure_ms: float = 300.0) -> dict[int, list[bench.Measurement]]:
    """PyTorch eager's steady state at each batch of `inputs`, the compile comparison's baseline:
    `passes` measurements each, interleaved over the batches (backend e.g. "PyTorch eager (cuda, fp16)")."""
    device = "cpu" if stream is None else "cuda"
    backend = f"PyTorch eager ({device}, {checks.precision_of(next(model.parameters()).dtype)})"
    configs = {b: {"fn": target.run, "batch_size": b} for b, target in torch_targets(model, inputs, stream).items()}
    return bench.measure_interleaved(configs, passes=passes, name="PyTorch eager", backend=backend, device=device,
                                     stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)


def compile_steady_rows(static: CompileStudy, dynamic: CompileStudy,
                        eager: Mapping[int, Sequence[bench.Measurement]]) -> list[dict]:
    """Per batch: eager, static and dynamic steady-state medians, and dynamic against static
    judged against the run-to-run spread (:func:`common.bench.compare`)."""
    rows = []
    for batch in static.steady:
        cmp = bench.compare(static.steady[batch], dynamic.steady[batch])
        rows.append({"batch": batch, "eager_ms": bench.median_latency_ms(eager[batch]),
                     "static_ms": cmp.median_a_ms, "dynamic_ms": cmp.median_b_ms,
                     "static_speedup": cmp.median_b_ms / cmp.median_a_ms, "noise_pct": cmp.noise_pct,
                     "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows
