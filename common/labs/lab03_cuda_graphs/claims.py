"""Lab 03 (CUDA graphs): the lab's claims as functions of what it measured.

:func:`claims` judges the PyTorch experiments (graphs against eager, the regimes they run in, the
host's cost per launch, the capture rules, one graph per shape, and the CPU counterpart);
:func:`tensorrt_claims` the TensorRT study. Each adds to the lab's :class:`common.report.LabReport`.
Ratios are decided from their 95% interval over passes (noise gives "inconclusive"): speedups on
event time (what a caller waits for), the regimes on kernel time against event time, the cost of a
launch on host time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from common import bench, report

from . import launches
from .experiments import (COMPILE, CUDA_PYTHON_GRAPH, DEPTH, EAGER, STATIC_EAGER, TORCH_GRAPH, backend_label,
                          launch_overhead_us)
from .overhead import CpuOverheadModel

LAB = "03_cuda_graphs"

TRT_SPEEDUP_CLAIM = "TensorRT: CUDA graph replay is faster than execute_async_v3 on the launch-bound MLP"
TRT_INVALIDATION_CLAIM = ("EngineRunner: a shape or profile change drops the context's CUDA graph and the next "
                          "enqueue_graph recaptures it (TensorRT keeps no graph: a stale one would replay)")
#: The least speedup a graph must show on the launch-bound model, and the most it may show on the compute-bound one.
MIN_SPEEDUP, MAX_COMPUTE_BOUND_GAIN = 3.0, 1.10
#: How much slower than torch.cuda.CUDAGraph replay the cuda-python replay may be (same kernels, one launch each).
SAME_GRAPH_SLACK = 1.10
#: Where each bare-launch method's measurements are in `Results.launch_runs`, by claim key.
BARE_LAUNCH = {"bare_triton": launches.TRITON, "bare_driver": launches.DRIVER}


@dataclass
class Results:
    """What lab 03 measured, for its claims; the GPU-only parts stay None on a CPU.

    `runs` are the launch-bound model's measurements by backend label; `big_runs` the
    compute-bound model's (eager, then its graph); `launch_runs` the launch-cost study's by method
    (:mod:`.launches`; `launch_methods` says why a method did not run); `shape_cache` the
    :class:`ShapeGraphs` cache that served `requests`; `stale`, `frozen` and `warmup_rows` what the
    capture-rule demonstrations returned (None without cuda-python); `cpu_model` the CPU
    counterpart's fit (None on a GPU).
    """

    device: str
    dtype: torch.dtype
    has_cuda_python: bool
    runs: Mapping[str, Sequence[bench.Measurement]]
    width: int
    batch: int
    big_width: int
    big_batch: int
    depth: int = DEPTH
    kernels: int = 0                        # GPU operations per forward
    compile_seconds: float = math.nan
    big_runs: Mapping[str, Sequence[bench.Measurement]] | None = None
    big_eager_tflop_per_s: float = math.nan
    launch_runs: Mapping[str, Sequence[bench.Measurement]] | None = None
    launch_methods: Mapping[str, str] | None = None
    requests: Sequence[int] = ()
    shape_cache: Any = None                 # a common.trt.graphs.GraphCache
    stale: Mapping[str, bool] | None = None
    frozen: Mapping[str, Any] | None = None
    warmup_rows: Sequence[dict] | None = None
    cpu_model: CpuOverheadModel | None = None

    def label(self, kind: str) -> str:
        return backend_label(kind, self.device, self.dtype)


def claim_texts(results: Results) -> dict[str, str]:
    """The claims of :func:`claims`, by key, worded for the sizes the lab ran."""
    r = results
    return {
        "speedup": (f"launch-bound ({r.depth} x {r.width}, batch {r.batch}): CUDA graph replay is at least "
                    f"{MIN_SPEEDUP:.0f}x faster than eager launches"),
        "per_kernel": ("PyTorch eager: dispatching and launching cost at least 2 us per GPU operation over graph "
                       "replay (PyTorch's cost per operator, not CUDA's per launch)"),
        "eager_host_bound": (f"PyTorch eager on the launch-bound model is host-bound: the GPU is busy under "
                             f"{bench.HOST_BOUND_BUSY:.0%} of the event time"),
        "graph_device_bound": (f"its CUDA graph replay is device-bound: the GPU is busy at least "
                               f"{bench.DEVICE_BOUND_BUSY:.0%} of the event time"),
        "bare_triton": "Triton: a bare kernel launch costs the host less than PyTorch eager costs per operation",
        "bare_driver": ("cuLaunchKernel (cuda-python): a bare kernel launch costs the host less than PyTorch eager "
                        "costs per operation"),
        "compile": "torch.compile(reduce-overhead) is faster than eager on the launch-bound model",
        "compute_bound": (f"compute-bound ({r.depth} x {r.big_width}, batch {r.big_batch}): a graph gains under "
                          f"{(MAX_COMPUTE_BOUND_GAIN - 1) * 100:.0f}%"),
        "per_shape": "one graph per shape: one capture per distinct shape, every other request replays",
        "capture_cost": "capturing a graph costs more than 10 replays of it",
        "cuda_python": ("cuda-python capture (the TensorRT mechanism) replays the same kernels at least 2x faster "
                        "than enqueueing them"),
        "same_graph": (f"cuda-python graph replay is at most {(SAME_GRAPH_SLACK - 1) * 100:.0f}% slower than "
                       "torch.cuda.CUDAGraph replay (the same kernels)"),
        "address": "after the input is reallocated, a replay still computes the old buffer",
        "shape": f"a graph captured at batch {r.batch} computes only its {r.batch} rows of a {2 * r.batch}-row buffer",
        "warmup": "a lazy cudaMalloc breaks a capture without warm-up; with the warm-up the capture succeeds",
        "cpu_small": "CPU: framework overhead is at least half of a layer's time at the narrowest width",
        "cpu_large": "CPU: framework overhead is under 25% of a layer's time at the widest width",
    }


#: Why a GPU claim is not applicable on a CPU, where it is not the CUDA-graph reason.
CPU_REASONS = {"eager_host_bound": "kernel time needs a GPU (CUPTI); on a CPU the host does all the work",
               "graph_device_bound": "kernel time needs a GPU (CUPTI); on a CPU the host does all the work",
               "bare_triton": "needs an NVIDIA GPU: nothing is launched on a CPU",
               "bare_driver": "needs an NVIDIA GPU: nothing is launched on a CPU"}


def claims(results: Results, lab_report: report.LabReport | None = None) -> report.LabReport:
    """Judge every claim of the PyTorch experiments on `results`; returns the report it added to."""
    lab_report = lab_report if lab_report is not None else report.LabReport(LAB)
    texts = claim_texts(results)
    if results.device == "cuda":
        _gpu_claims(results, texts, lab_report)
        for key in ("cpu_small", "cpu_large"):
            lab_report.not_applicable(texts[key], "the CPU counterpart runs without a GPU; here the graph measures the overhead")
    else:
        for key in texts:
            if not key.startswith("cpu"):
                lab_report.not_applicable(texts[key], CPU_REASONS.get(key, "CUDA graphs need an NVIDIA GPU"))
        _cpu_claims(results, texts, lab_report)
    return lab_report


def busy_interval(runs: Sequence[bench.Measurement]) -> tuple[float, tuple[float, float]]:
    """The GPU's busy share (kernel time / event time) of repeated runs and its 95% interval over passes."""
    busy = bench.kernel_fields(runs)["gpu_busy"]
    return busy, bench.ratio_interval([m.kernel_ms for m in runs], [m.event_ms for m in runs])


def _regime_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    for key, kind, threshold, above in (("eager_host_bound", EAGER, bench.HOST_BOUND_BUSY, False),
                                        ("graph_device_bound", TORCH_GRAPH, bench.DEVICE_BOUND_BUSY, True)):
        runs = r.runs[r.label(kind)]
        if any(math.isnan(m.kernel_ms) for m in runs):
            lab_report.not_applicable(texts[key], f"kernel time not measured: {runs[0].kernel_note or 'no CUPTI'}")
            continue
        busy, interval = busy_interval(runs)
        lab_report.check_ratio(texts[key], busy, interval, threshold=threshold, above=above, fmt="{:.0%}",
                               why=f"kernel time / event time over {len(runs)} passes")


def _bare_launch_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    methods = r.launch_methods or {}
    for key, method in BARE_LAUNCH.items():
        if r.launch_runs is None or method not in r.launch_runs:
            lab_report.not_applicable(texts[key], methods.get(method) or "the launch-cost study did not run")
            continue
        cmp = bench.compare(r.launch_runs[launches.EAGER_FORWARD], r.launch_runs[method], on="host")
        count = launches.kernels_per_call(r.launch_runs[method])
        lab_report.check_comparison(texts[key], cmp, threshold=1.0,
                                    why=f"{count} launches against one forward of {count} operations")


def _gpu_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    runs, eager = r.runs, r.label(EAGER)
    graph = bench.compare(runs[eager], runs[r.label(TORCH_GRAPH)])
    lab_report.check_comparison(texts["speedup"], graph, threshold=MIN_SPEEDUP,
                                why="event time: eager's host launches every kernel")
    overhead_per_kernel_us = launch_overhead_us(graph.median_a_ms, graph.median_b_ms, r.kernels)
    lab_report.check(texts["per_kernel"], overhead_per_kernel_us, overhead_per_kernel_us >= 2, fmt="{:.2f} us/op",
                     why=f"(eager - graph) event time / {r.kernels} operations per forward")
    _regime_claims(r, texts, lab_report)
    _bare_launch_claims(r, texts, lab_report)
    lab_report.check_comparison(texts["compile"], bench.compare(runs[eager], runs[r.label(COMPILE)]), threshold=1.0,
                                why=f"compile {r.compile_seconds:.1f} s, kept apart")
    assert r.big_runs is not None, "the compute-bound runs are measured on every GPU"
    big_cmp = bench.compare(r.big_runs[eager], r.big_runs[r.label(TORCH_GRAPH)])
    lab_report.check_comparison(texts["compute_bound"], big_cmp, threshold=MAX_COMPUTE_BOUND_GAIN, above=False,
                                fmt="{:.3f}x", why=f"eager at {r.big_eager_tflop_per_s:.0f} TFLOP/s")
    cache, distinct = r.shape_cache, len(set(r.requests))
    captures = sum(cache.captures.values())
    lab_report.check(texts["per_shape"], captures, captures == distinct and cache.hits == len(r.requests) - distinct,
                     fmt="{:.0f} captures", why=f"{len(r.requests)} requests, {distinct} shapes")
    replays_per_capture = cache.capture_seconds[(r.batch, r.width)] * 1e3 / graph.median_b_ms
    lab_report.check(texts["capture_cost"], replays_per_capture, replays_per_capture > 10, fmt="{:.0f} replays",
                     why=f"batch {r.batch}: capture (with warm-up) / median replay")
    if r.has_cuda_python:
        _cuda_python_claims(r, texts, lab_report)
    else:
        for key in ("cuda_python", "same_graph", "address", "shape", "warmup"):
            lab_report.not_applicable(texts[key], "needs cuda-python (pip install cuda-bindings)")


def _cuda_python_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    assert r.stale is not None and r.frozen is not None and r.warmup_rows is not None
    lab_report.check_comparison(texts["cuda_python"],
                                bench.compare(r.runs[r.label(STATIC_EAGER)], r.runs[r.label(CUDA_PYTHON_GRAPH)]),
                                threshold=2.0)
    lab_report.check_comparison(texts["same_graph"],
                                bench.compare(r.runs[r.label(TORCH_GRAPH)], r.runs[r.label(CUDA_PYTHON_GRAPH)]),
                                threshold=1 / SAME_GRAPH_SLACK, why="speedup of cuda-python's replay over PyTorch's")
    stale_ok = r.stale["replay after reallocating the input computes the OLD input"] and all(
        v for k, v in r.stale.items() if k.startswith("fix"))
    lab_report.check(texts["address"], float(stale_ok), stale_ok, fmt="{:.0f}", why="fixed by copying in or recapturing")
    rows_done = r.frozen[f"rows the batch-{r.batch} graph computes"]
    rows_double = r.frozen[f"rows the batch-{2 * r.batch} graph computes"]
    lab_report.check(texts["shape"], rows_done, rows_done == r.batch and r.frozen["computed rows match eager"],
                     fmt="{:.0f} rows", why=f"the batch-{2 * r.batch} graph computed {rows_double}")
    lazy_cold, lazy_warm = r.warmup_rows[2], r.warmup_rows[3]
    warmup_ok = not lazy_cold["outcome"].startswith("captured") and lazy_warm["replay_matches_eager"] is True
    lab_report.check(texts["warmup"], float(warmup_ok), warmup_ok, fmt="{:.0f}", why=lazy_cold["outcome"])


def _cpu_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    assert r.cpu_model is not None, "the CPU counterpart's fit is what the CPU claims judge"
    narrow, wide = r.cpu_model.rows[0], r.cpu_model.rows[-1]
    lab_report.check(texts["cpu_small"], narrow["overhead_share_pct"], narrow["overhead_share_pct"] >= 50, fmt="{:.0f}%",
                     why=f"width {narrow['width']}: {r.cpu_model.overhead_us_per_layer:.1f} us overhead per layer")
    lab_report.check(texts["cpu_large"], wide["overhead_share_pct"], wide["overhead_share_pct"] < 25, fmt="{:.1f}%",
                     why=f"width {wide['width']}: {wide['measured_us_per_layer']:.0f} us per layer")


def tensorrt_claims(study: Mapping[str, Any] | None, *, tensorrt_installed: bool,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """Judge the TensorRT study (:func:`tensorrt_study`'s result; None where it could not run)."""
    lab_report = lab_report if lab_report is not None else report.LabReport(LAB)
    if study is None:
        why = "needs TensorRT: " + ("not installed" if not tensorrt_installed else "no GPU")
        lab_report.not_applicable(TRT_SPEEDUP_CLAIM, why)
        lab_report.not_applicable(TRT_INVALIDATION_CLAIM, why)
        return lab_report
    runs = list(study["runs"].values())
    lab_report.check_comparison(TRT_SPEEDUP_CLAIM, bench.compare(runs[0], runs[1]), threshold=1.0,
                                why="event time; the host time of each call is in the table")
    drops = study["engine_runner_graphs"]
    lab_report.check(TRT_INVALIDATION_CLAIM, float(all(drops.values())), all(drops.values()), fmt="{:.0f}",
                     why="" if all(drops.values()) else
                     "kept: " + "; ".join(what for what, dropped in drops.items() if not dropped))
    return lab_report
