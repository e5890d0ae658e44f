"""Lab 03 (CUDA graphs): where graphs stop paying, and the per-layer overhead the timings show.

A width sweep (:func:`width_sweep`) runs the same depth from narrow to wide; on a GPU eager minus
graph is what launching adds per layer (:func:`graph_overhead_rows`), on a CPU a two-point model of
time against FLOPs separates the framework's overhead from compute (:func:`cpu_overhead_model`).
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from common import bench, checks

from .capture import capture_torch_graph
from .experiments import DEPTH, EAGER, TORCH_GRAPH, Timed, backend_label, build_mlp, example_input, tolerance


def width_sweep(widths: Sequence[int], batch: int, *, device: str, dtype: torch.dtype, with_graph: bool,
                depth: int = DEPTH, passes: int = bench.PASSES, warmup_ms: float = 12.0, measure_ms: float = 48.0,
                progress: bool = True) -> list[dict]:
    """Per width: latency and time per layer of eager PyTorch and, on a GPU, of its CUDA graph.

    Each graph's output is checked against eager before anything is timed. Every point is
    measured in `passes` passes over the whole sweep; rows carry the run-to-run spread. The GPU's
    own time (kernel time, busy share, regime) comes from the first pass alone: the sweep has many
    points, and one CUPTI pass per point says which regime each was measured in.
    """
    eager_label = backend_label(EAGER, device, dtype)
    graph_label = backend_label(TORCH_GRAPH, device, dtype)
    configs: dict[tuple[int, str], Timed] = {}
    flops: dict[int, int] = {}
    for width in widths:
        model = build_mlp(width, depth, device=device, dtype=dtype)
        x = example_input(batch, width, device=device, dtype=dtype)
        flops[width] = model.flops_per_layer(batch)
        stream = torch.cuda.Stream() if device == "cuda" else None
        configs[(width, eager_label)] = Timed(functools.partial(model, x), stream)
        if with_graph:
            graph = capture_torch_graph(model, x, torch.cuda.Stream())
            configs[(width, graph_label)] = Timed(graph.replay, graph.stream)
            checks.verify(configs[(width, graph_label)].run_once(), configs[(width, eager_label)].run_once(),
                          f"width {width}: the graph's output against eager", tol=tolerance(dtype))
    results: dict[tuple[int, str], list[bench.Measurement]] = {key: [] for key in configs}
    steps = [(p, key) for p in range(passes) for key in configs]
    for p, key in tqdm(steps, desc="width sweep", disable=not progress, leave=False, mininterval=2.0):
        config = configs[key]
        results[key].append(bench.measure(config.fn, name=f"width {key[0]}", backend=key[1], batch_size=batch,
                                          device=device, stream=config.stream, warmup_ms=warmup_ms,
                                          measure_ms=measure_ms, kernel_time=bench.kernel_time_in(p)))
    rows = []   # kernel fields from the first pass, the one under CUPTI
    for (width, label), runs in results.items():
        medians = [m.latency_ms.median for m in runs]
        median_ms = statistics.median(medians)
        rows.append({"width": width, "backend": label, "batch": batch, "latency_ms": median_ms,
                     "per_layer_us": median_ms * 1e3 / depth, "gflop_per_layer": flops[width] / 1e9,
                     "spread_pct": bench.spread_pct(medians) if len(medians) > 1 else float("nan"),
                     "pass_medians_ms": [round(m, 5) for m in medians], **bench.kernel_fields(runs)})
    return rows


def graph_overhead_rows(rows: Sequence[dict], eager: str, graph: str) -> list[dict]:
    """GPU: per width, what eager launching adds per layer (eager - graph) and its share of eager."""
    by_width = {(r["width"], r["backend"]): r for r in rows}
    out = []
    for width in sorted({r["width"] for r in rows}):
        e, g = by_width[(width, eager)]["per_layer_us"], by_width[(width, graph)]["per_layer_us"]
        out.append({"width": width, "eager_us_per_layer": e, "graph_us_per_layer": g,
                    "overhead_us_per_layer": e - g, "overhead_share_pct": (e - g) / e * 100})
    return out


@dataclass
class CpuOverheadModel:
    """Per-layer time on a CPU as t = overhead + FLOPs / rate, solved from the smallest and the
    largest width of a sweep; the widths between are predictions to compare with measurements."""

    overhead_us_per_layer: float
    gflops: float
    rows: list[dict]


def cpu_overhead_model(rows: Sequence[dict], backend: str) -> CpuOverheadModel:
    """Fit t = overhead + flops / rate through the smallest and largest width of `backend`'s rows."""
    points = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["width"])
    if len(points) < 2:
        raise ValueError(f"need at least two widths of {backend!r} to separate overhead from compute")
    small, large = points[0], points[-1]
    f_small, f_large = small["gflop_per_layer"] * 1e3, large["gflop_per_layer"] * 1e3   # MFLOP
    t_small, t_large = small["per_layer_us"], large["per_layer_us"]
    if t_large <= t_small:
        raise ValueError(f"the widest layer ({large['width']}) is no slower than the narrowest "
                         f"({small['width']}): add wider points so compute shows")
    mflop_per_us = (f_large - f_small) / (t_large - t_small)
    overhead_us = t_small - f_small / mflop_per_us
    table = []
    for r in points:
        compute_us = r["gflop_per_layer"] * 1e3 / mflop_per_us
        table.append({"width": r["width"], "measured_us_per_layer": r["per_layer_us"],
                      "model_us_per_layer": overhead_us + compute_us, "compute_us": compute_us,
                      "overhead_share_pct": overhead_us / r["per_layer_us"] * 100,
                      "spread_pct": r["spread_pct"]})
    return CpuOverheadModel(overhead_us, mflop_per_us * 1e3, table)   # MFLOP/us = 1e3 GFLOP/s
