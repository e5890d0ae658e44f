"""Lab 03 (CUDA graphs): the lab's claims as functions of what it measured.

:func:`claims` judges the PyTorch experiments (graphs against eager, the capture rules, one graph
per shape, and the CPU counterpart); :func:`tensorrt_claims` the TensorRT study. Each adds to the
lab's :class:`common.report.LabReport`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from common import bench, report

from .experiments import (COMPILE, CUDA_PYTHON_GRAPH, DEPTH, EAGER, STATIC_EAGER, TORCH_GRAPH, backend_label,
                          comparison_rows, launch_overhead_us)
from .overhead import CpuOverheadModel

LAB = "03_cuda_graphs"

TRT_SPEEDUP_CLAIM = "TensorRT: CUDA graph replay is faster than execute_async_v3 on the launch-bound MLP"
TRT_INVALIDATION_CLAIM = ("EngineRunner: a shape or profile change drops the context's CUDA graph and the next "
                          "enqueue_graph recaptures it (TensorRT keeps no graph: a stale one would replay)")


@dataclass
class Results:
    """What lab 03 measured, for its claims; the GPU-only parts stay None on a CPU.

    `runs` are the launch-bound model's measurements by backend label; `big_runs` the
    compute-bound model's (eager, then its graph); `shape_cache` the :class:`ShapeGraphs` cache that
    served `requests`; `stale`, `frozen` and `warmup_rows` what the capture-rule demonstrations
    returned (None without cuda-python); `cpu_model` the CPU counterpart's fit (None on a GPU).
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
        "speedup": f"launch-bound ({r.depth} x {r.width}, batch {r.batch}): CUDA graph replay is at least 3x faster than eager launches",
        "per_kernel": "eager launching costs at least 2 us per GPU operation over graph replay",
        "cuda_python": "cuda-python capture (the TensorRT mechanism) replays the same kernels at least 2x faster than enqueueing them",
        "same_graph": "cuda-python and torch.cuda.CUDAGraph replays run equally fast (within 10% or the spread)",
        "compile": "torch.compile(reduce-overhead) is faster than eager on the launch-bound model",
        "compute_bound": f"compute-bound ({r.depth} x {r.big_width}, batch {r.big_batch}): a graph gains under 10%",
        "address": "after the input is reallocated, a replay still computes the old buffer",
        "shape": f"a graph captured at batch {r.batch} computes only its {r.batch} rows of a {2 * r.batch}-row buffer",
        "warmup": "a lazy cudaMalloc breaks a capture without warm-up; with the warm-up the capture succeeds",
        "per_shape": "one graph per shape: one capture per distinct shape, every other request replays",
        "capture_cost": "capturing a graph costs more than 10 replays of it",
        "cpu_small": "CPU: framework overhead is at least half of a layer's time at the narrowest width",
        "cpu_large": "CPU: framework overhead is under 25% of a layer's time at the widest width",
    }


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
                lab_report.not_applicable(texts[key], "CUDA graphs need an NVIDIA GPU")
        _cpu_claims(results, texts, lab_report)
    return lab_report


def _gpu_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    runs, eager = r.runs, r.label(EAGER)
    rows = {row["backend"]: row for row in comparison_rows(runs, eager, depth=r.depth)}
    graph_row = rows[r.label(TORCH_GRAPH)]
    spread = max(row["spread_pct"] for row in rows.values())
    lab_report.check(texts["speedup"], graph_row["speedup"], graph_row["speedup"] >= 3 and graph_row["significant"],
                     fmt="{:.2f}x", why=f"run-to-run spread {spread:.1f}%")
    overhead_per_kernel_us = launch_overhead_us(rows[eager]["latency_ms"], graph_row["latency_ms"], r.kernels)
    lab_report.check(texts["per_kernel"], overhead_per_kernel_us, overhead_per_kernel_us >= 2, fmt="{:.2f} us/op",
                     why=f"{r.kernels} operations per forward")
    compile_cmp = bench.compare(runs[eager], runs[r.label(COMPILE)])
    lab_report.check(texts["compile"], compile_cmp.speedup, compile_cmp.significant and compile_cmp.speedup > 1,
                     fmt="{:.2f}x", why=f"compile {r.compile_seconds:.1f} s, kept apart")
    assert r.big_runs is not None, "the compute-bound runs are measured on every GPU"
    big_cmp = bench.compare(r.big_runs[eager], r.big_runs[r.label(TORCH_GRAPH)])
    lab_report.check(texts["compute_bound"], big_cmp.speedup, big_cmp.speedup < 1.10, fmt="{:.3f}x",
                     why=f"eager at {r.big_eager_tflop_per_s:.0f} TFLOP/s; spread {big_cmp.noise_pct:.1f}%")
    cache, distinct = r.shape_cache, len(set(r.requests))
    captures = sum(cache.captures.values())
    lab_report.check(texts["per_shape"], captures, captures == distinct and cache.hits == len(r.requests) - distinct,
                     fmt="{:.0f} captures", why=f"{len(r.requests)} requests, {distinct} shapes")
    replays_per_capture = cache.capture_seconds[(r.batch, r.width)] * 1e3 / graph_row["latency_ms"]
    lab_report.check(texts["capture_cost"], replays_per_capture, replays_per_capture > 10, fmt="{:.0f} replays",
                     why=f"batch {r.batch}: capture (with warm-up) / median replay")
    if r.has_cuda_python:
        _cuda_python_claims(r, texts, lab_report)
    else:
        for key in ("cuda_python", "same_graph", "address", "shape", "warmup"):
            lab_report.not_applicable(texts[key], "needs cuda-python (pip install cuda-bindings)")


def _cuda_python_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    assert r.stale is not None and r.frozen is not None and r.warmup_rows is not None
    cp_cmp = bench.compare(r.runs[r.label(STATIC_EAGER)], r.runs[r.label(CUDA_PYTHON_GRAPH)])
    lab_report.check(texts["cuda_python"], cp_cmp.speedup, cp_cmp.speedup >= 2 and cp_cmp.significant, fmt="{:.2f}x",
                     why=f"run-to-run spread {cp_cmp.noise_pct:.1f}%")
    same = bench.compare(r.runs[r.label(TORCH_GRAPH)], r.runs[r.label(CUDA_PYTHON_GRAPH)])
    lab_report.check(texts["same_graph"], same.speedup, abs(same.speedup - 1) * 100 <= max(10.0, same.noise_pct),
                     fmt="{:.2f}x", why=f"run-to-run spread {same.noise_pct:.1f}%")
    stale_ok = r.stale["replay after reallocating the input computes the OLD input"] and all(
        v for k, v in r.stale.items() if k.startswith("fix"))
    lab_report.check(texts["address"], float(stale_ok), stale_ok, fmt="{:.0f}", why="fixed by copying in or recapturing")
    rows_done = r.frozen[f"rows the batch-{r.batch} graph computes"]
    rows_double = r.frozen[f"rows the batch-{2 * r.batch} graph computes"]
    lab_report.check(texts["shape"], rows_done, rows_done == r.batch and r.frozen["computed rows match eager"],
                     fmt="{:.0f} rows", why=f"the batch-{2 * r.batch} graph computed {rows_double}")
    lazy_cold, lazy_warm = r.warmup_rows[2], r.warmup_rows[3]
    warmup_ok = not lazy_cold["outcome"].startswith("captured") and lazy_warm["replay_matches_eager"] is True
    lab_report.check(texts["warmup"], float(warmup_ok), warmup_ok, fmt="{:.0f}", why=lazy_cold["outcome"][:48])


def _cpu_claims(r: Results, texts: dict[str, str], lab_report: report.LabReport) -> None:
    assert r.cpu_model is not None, "the CPU counterpart's fit is what the CPU claims judge"
    narrow, wide = r.cpu_model.rows[0], r.cpu_model.rows[-1]
    lab_report.check(texts["cpu_small"], narrow["overhead_share_pct"], narrow["overhead_share_pct"] >= 50, fmt="{:.0f}%",
                     why=f"width {narrow['width']}: {r.cpu_model.overhead_us_per_layer:.1f} us overhead per layer")
    lab_report.check(texts["cpu_large"], wide["overhead_share_pct"], wide["overhead_share_pct"] < 25, fmt="{:.1f}%",
                     why=f"width {wide['width']}: {wide['measured_us_per_layer']:.0f} us per layer")


def tensorrt_claims(study: Mapping[str, Any] | None, *, tensorrt_installed: bool,
                    lab_report: report.LabReport | None = None, depth: int = DEPTH) -> report.LabReport:
    """Judge the TensorRT study (:func:`tensorrt_study`'s result; None where it could not run)."""
    lab_report = lab_report if lab_report is not None else report.LabReport(LAB)
    if study is None:
        why = "needs TensorRT: " + ("not installed" if not tensorrt_installed else "no GPU")
        lab_report.not_applicable(TRT_SPEEDUP_CLAIM, why)
        lab_report.not_applicable(TRT_INVALIDATION_CLAIM, why)
        return lab_report
    trt_rows = comparison_rows(study["runs"], next(iter(study["runs"])), depth=depth)
    trt_graph = trt_rows[1]
    lab_report.check(TRT_SPEEDUP_CLAIM, trt_graph["speedup"], trt_graph["significant"] and trt_graph["speedup"] > 1,
                     fmt="{:.2f}x", why=f"run-to-run spread {max(r['spread_pct'] for r in trt_rows):.1f}%")
    drops = study["engine_runner_graphs"]
    lab_report.check(TRT_INVALIDATION_CLAIM, float(all(drops.values())), all(drops.values()), fmt="{:.0f}")
    return lab_report
