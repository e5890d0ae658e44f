"""Lab 04 (shape changes): the lab's claims as functions of its studies, one per section.

:func:`switch_claims` judges the switching studies of PyTorch and ONNX Runtime (a new batch size,
and switching between batch sizes already seen), :func:`compile_claims` `torch.compile`'s static
and dynamic shapes, :func:`tensorrt_claims` TensorRT's shape changes, profile switches, contexts
per profile, profile width, the edge-mask tactic source and the context allocation strategies. Ratios
over passes are decided from their 95% interval (noise gives "inconclusive"): device effects on kernel
time where it was measured. Each adds to the lab's
:class:`common.report.LabReport` (a new one when none is passed) and returns it.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from common import report

from .recompiles import CompileStudy, geometric_speedup
from .switching import SwitchStudy

LAB = "04_shape_changes"

NEW_SHAPE_CLAIM = "{backend}: the first run at a new batch size is slower than steady state"
SEEN_SHAPES_CLAIM = "{backend}: switching between batch sizes already seen costs nothing measurable"
COMPILE_CLAIMS = ["torch.compile (dynamic=False) compiles again at every new batch size",
                  "torch.compile (dynamic=True) compiles once, then meets new batch sizes without compiling",
                  "a compile at a new batch size costs more than 1000 steady-state runs (dynamic=False)",
                  "torch.compile: dynamic shapes cost kernel time (static faster, geometric mean over the batch sizes)"]
COMPILE_NOT_HERE = ("torch.compile is studied on a GPU only (Inductor's C++ compiles on a CPU exceed this lab's "
                    "time budget)")
TRT_CLAIMS = ["TensorRT: the first run after set_input_shape is slower than steady state",
              "TensorRT: the first run after set_optimization_profile_async is slower than steady state",
              "TensorRT: one context per profile removes the switch cost",
              "TensorRT: a context per profile costs device memory",
              "TensorRT: narrow profiles run faster than one wide profile at some batch size",
              "TensorRT: EDGE_MASK_CONVOLUTIONS off makes a shape change cheaper",
              "TensorRT: EDGE_MASK_CONVOLUTIONS off shortens the build",
              "TensorRT: an ON_PROFILE_CHANGE context on the small profile holds less device memory than a STATIC one",
              "TensorRT: a USER_MANAGED context allocates no activation memory and runs in the caller's buffer"]


def _report(lab_report: report.LabReport | None) -> report.LabReport:
    return lab_report if lab_report is not None else report.LabReport(LAB)


def switch_claims(studies: Mapping[str, SwitchStudy], lab_report: report.LabReport | None = None) -> report.LabReport:
    """Studies keyed "<backend>: new" (each batch size met once) or "<backend>: seen" (alternating
    between warmed batch sizes); other keys are judged elsewhere."""
    lab_report = _report(lab_report)
    for key, study in studies.items():
        summary = study.summary()
        if key.endswith(": new"):
            lab_report.check(NEW_SHAPE_CLAIM.format(backend=study.backend), summary.ratio, summary.slower,
                             fmt="{:.2f}x (median)", why=summary.band())
        elif key.endswith(": seen"):
            lab_report.check(SEEN_SHAPES_CLAIM.format(backend=study.backend), summary.ratio, summary.within_steady,
                             fmt="{:.2f}x (median)", why=summary.band())
    return lab_report


def compile_claims(compiled: Mapping[bool, CompileStudy], steady_rows: Sequence[dict],
                   lab_report: report.LabReport | None = None) -> report.LabReport:
    """`compiled` maps dynamic=False/True to its study (empty where torch.compile did not run);
    `steady_rows` are :func:`compile_steady_rows` of the two."""
    lab_report = _report(lab_report)
    if not compiled:
        for claim in COMPILE_CLAIMS:
            lab_report.not_applicable(claim, COMPILE_NOT_HERE)
        return lab_report
    static, dynamic = compiled[False], compiled[True]

    def seconds(study: CompileStudy) -> str:
        return ", ".join(f"{t:.2f}" for t in study.first_call_s) + " s"

    lab_report.check(COMPILE_CLAIMS[0], sum(static.graphs), all(g >= 1 for g in static.graphs),
                     fmt="{:.0f} graphs for %d sizes" % len(static.rows), why=f"first calls {seconds(static)}")
    lab_report.check(COMPILE_CLAIMS[1], sum(dynamic.graphs[1:]), dynamic.graphs[0] >= 1 and sum(dynamic.graphs[1:]) == 0,
                     fmt="{:.0f} graphs after the first", why=f"first calls {seconds(dynamic)}")
    runs_per_compile = statistics.median(r["first_call_s"] * 1e3 / static.steady_median_ms(r["batch"])
                                         for r in static.rows)
    lab_report.check(COMPILE_CLAIMS[2], runs_per_compile, runs_per_compile > 1000, fmt="{:,.0f} runs (median)",
                     why=f"cache hits during the compiles: {sum(r['cache_hits'] for r in static.rows)}")
    on = "kernel" if not any(math.isnan(m.kernel_ms) for c in (static, dynamic) for ms in c.steady.values()
                             for m in ms) else "event"
    speedup, interval = geometric_speedup(dynamic.steady, static.steady, on=on)
    per_batch = "; ".join(f"batch {r['batch']}: {r['static_speedup']:.2f}x" for r in steady_rows)
    lab_report.check_ratio(COMPILE_CLAIMS[3], speedup, interval, threshold=1.0, fmt="{:.2f}x",
                           why=f"judged on {on} time over {len(next(iter(static.steady.values())))} passes"
                               + ("" if on == "kernel" else " (no kernel time here)") + f"; {per_batch}")
    return lab_report


def tensorrt_claims(trt_studies: Mapping[str, Mapping[str, SwitchStudy]], trt_memory: Mapping[str, Mapping[str, list]],
                    width_rows: Sequence[dict], builds: Mapping[str, Any], allocation_rows: Sequence[dict] = (), *,
                    tensorrt_installed: bool, lab_report: report.LabReport | None = None) -> report.LabReport:
    """`trt_studies` and `trt_memory` by tactic-source label ("edge-mask on", "edge-mask off"), as
    :func:`trt_switch_studies` returns them, `width_rows` from :func:`profile_width_study` and
    `allocation_rows` from :func:`allocation_strategy_study`; empty where TensorRT did not run (then
    `tensorrt_installed` says why)."""
    lab_report = _report(lab_report)
    if not trt_studies:
        for claim in TRT_CLAIMS:
            lab_report.not_applicable(claim, "needs TensorRT: " + ("not installed" if not tensorrt_installed else "no GPU"))
        return lab_report
    on, off = trt_studies["edge-mask on"], trt_studies["edge-mask off"]
    for claim, key in zip(TRT_CLAIMS[:2], ["set_input_shape", "profile switch"]):
        summary = on[key].summary()
        lab_report.check(claim, summary.ratio, summary.slower, fmt="{:.2f}x (median)", why=summary.band())
    summary = on["context per profile"].summary()
    lab_report.check(TRT_CLAIMS[2], summary.ratio, summary.within_steady, fmt="{:.2f}x (median)", why=summary.band())
    total = {arrangement: rows[-1]["bytes"] for arrangement, rows in trt_memory["edge-mask on"].items()}
    extra_bytes = total["one context per profile"] - total["one context, switching profiles"]
    lab_report.check(TRT_CLAIMS[3], extra_bytes / 2**20, extra_bytes > 0, fmt="+{:.1f} MiB",
                     why=f"{total['one context per profile'] / 2**20:.1f} MiB for two contexts")
    best = max(width_rows, key=lambda r: r["speedup"])
    lab_report.check_ratio(TRT_CLAIMS[4], best["speedup"], (best["interval_lo"], best["interval_hi"]), threshold=1.0,
                           why=f"at batch {best['batch']}, the best of {len(width_rows)} batch sizes; "
                               f"judged on {best['compared_on']} time")
    excess_on, excess_off = on["set_input_shape"].summary().excess_ms, off["set_input_shape"].summary().excess_ms
    lab_report.check(TRT_CLAIMS[5], excess_off.median, excess_off.median < excess_on.p10, fmt="{:.3f} ms per switch",
                     why=f"with it on: median {excess_on.median:.3f} ms, p10 {excess_on.p10:.3f} ms")
    build_on, build_off = builds["edge-mask on"].build_seconds, builds["edge-mask off"].build_seconds
    lab_report.check(TRT_CLAIMS[6], build_on / build_off, build_off < build_on, fmt="{:.2f}x",
                     why=f"{build_on:.1f} s on, {build_off:.1f} s off; one build each: no run-to-run spread")
    _allocation_claims(allocation_rows, lab_report)
    return lab_report


def _allocation_claims(rows: Sequence[dict], lab_report: report.LabReport) -> None:
    """The allocation-strategy claims from :func:`allocation_strategy_study`'s rows."""
    if not rows:
        for claim in TRT_CLAIMS[7:]:
            lab_report.not_applicable(claim, "the allocation-strategy study did not run")
        return
    by = {(r["strategy"], r["profile"]): r for r in reversed(rows)}   # the first row of each (strategy, profile)
    small = min(r["profile"] for r in rows)
    static, on_change = by[("STATIC", small)], by[("ON_PROFILE_CHANGE", small)]
    lab_report.check(TRT_CLAIMS[7], on_change["taken_bytes"] / 2**20, on_change["taken_bytes"] < static["taken_bytes"],
                     fmt="{:.1f} MiB", why=f"STATIC: {static['taken_bytes'] / 2**20:.1f} MiB at batch {static['batch']}")
    user = [r for r in rows if r["strategy"] == "USER_MANAGED"]
    created = user[0]["created_bytes"]
    static_created = by[("STATIC", small)]["created_bytes"]
    lab_report.check(TRT_CLAIMS[8], created / 2**20, created < static_created and all(r["caller_bytes"] > 0 for r in user),
                     fmt="{:.1f} MiB at creation",
                     why=f"STATIC: {static_created / 2**20:.1f} MiB at creation; caller's buffer up to "
                         f"{max(r['caller_bytes'] for r in user) / 2**20:.1f} MiB; outputs checked")
