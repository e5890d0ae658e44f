"""Lab 05 (fusion), the GPU counterpart of the planted transpose pairs: the conv network with and
without its NHWC round trips, in eager PyTorch and under ``torch.compile``, each checked against FP32
first, then timed in interleaved passes with CUPTI's kernel count and kernel time per iteration
(:func:`compile_study`; the counts are :attr:`common.bench.KernelTime.activities_per_iter`, the same
pass that gives ``kernel_ms``).
"""

from __future__ import annotations

import statistics
from typing import Mapping

import torch

from ... import bench, checks
from .graphs import ConvResidualNet, seeded

PLANTED, REWRITTEN = "with transpose pairs", "rewritten"
EAGER_MODE, COMPILE_MODE = "PyTorch eager", "torch.compile"
GRAPHS, MODES = (PLANTED, REWRITTEN), (EAGER_MODE, COMPILE_MODE)


def kernels_per_iteration(runs: list[bench.Measurement]) -> float:
    """Median over passes of the device activities (kernels, copies, memsets) CUPTI saw per iteration."""
    counts = [m.kernel.activities_per_iter for m in runs if m.kernel is not None]
    return statistics.median(counts) if counts else float("nan")


def compile_candidates(channels: int, depth: int, x: torch.Tensor) -> dict[tuple[str, str], torch.nn.Module]:
    """The planted and the rewritten network (the same seeded weights), eager and compiled, on x's
    device and dtype; ``torch.compile`` with static shapes, as an engine is built for one shape."""
    nets = {graph: seeded(ConvResidualNet(channels, depth, transpose_pairs=graph == PLANTED)).to(x.device, x.dtype)
            for graph in GRAPHS}
    return {(graph, mode): net if mode == EAGER_MODE else torch.compile(net, dynamic=False)
            for graph, net in nets.items() for mode in MODES}


def verify_candidates(candidates: Mapping[tuple[str, str], torch.nn.Module], x: torch.Tensor,
                      reference: torch.Tensor) -> dict[str, float]:
    """Each candidate's relative error against the FP32 eager output; raises (do not time it) when one
    is outside the model tolerance of x's precision."""
    precision = checks.precision_of(x.dtype)
    errors = {}
    with torch.inference_mode():
        for (graph, mode), net in candidates.items():
            what = f"{graph}, {mode}"
            errors[what] = checks.verify(net(x), reference, what, precision=precision, scope="model")
    return errors


def compile_study(candidates: Mapping[tuple[str, str], torch.nn.Module], x: torch.Tensor, *,
                  passes: int = bench.PASSES, warmup_ms: float = 30.0, measure_ms: float = 80.0
                  ) -> tuple[list[dict], dict[tuple[str, str], list[bench.Measurement]]]:
    """Time every candidate `passes` times, interleaved, on a created stream; one row per candidate:
    event time, kernel time, kernels per iteration, busy share and regime."""
    stream = torch.cuda.Stream()

    def call(net):
        def run():
            with torch.inference_mode():
                return net(x)
        return run

    configs = {key: {"fn": call(net), "name": f"{key[0]}, {key[1]}", "backend": key[1], "stream": stream}
               for key, net in candidates.items()}
    runs = bench.measure_interleaved(configs, passes=passes, device="cuda", batch_size=x.shape[0],
                                     warmup_ms=warmup_ms, measure_ms=measure_ms)
    rows = [{"graph": graph, "mode": mode, "event_ms": bench.median_latency_ms(ms),
             "kernels_per_iter": kernels_per_iteration(ms), **bench.kernel_fields(ms)}
            for (graph, mode), ms in runs.items()]
    return rows, runs


def rewrite_verdicts(runs: Mapping[tuple[str, str], list[bench.Measurement]]) -> dict[str, bench.Comparison]:
    """Per mode: the rewritten network against the planted one, on kernel time (a device effect)."""
    return {mode: bench.compare(runs[PLANTED, mode], runs[REWRITTEN, mode], on="kernel") for mode in MODES}
