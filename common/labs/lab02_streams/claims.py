"""Lab 02 (streams): the claims, as functions of what the experiments measured.

:func:`streams_claims` reads the side-by-side comparisons and, on a GPU, the default-stream, copy
bandwidth and upload studies (:class:`GpuStudies`); on a CPU it judges the two-thread counterpart.
:func:`aux_stream_claims` and :func:`contexts_claims` read the TensorRT studies, or say why they did
not run. Every ratio is decided from its 95% interval over passes (``check_comparison`` /
``check_ratio``): noise gives "inconclusive", not "does not hold". Speedups of independent work are
judged on event time (what a program waits for); the default stream's extra synchronisation on host
time, where TensorRT's documentation says it shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from common import bench, report

from .tensorrt_study import ContextsStudy
from .timing import Concurrency, OverlapStudy

LAB = "02_streams"
#: What one side-by-side case must gain over one stream (or thread) to count as a real gain.
MIN_GAIN = 1.3
#: Host time per call on the default stream over a created stream below which the default stream adds nothing.
HOST_COST_LIMIT = 1.2
DEFAULT_CLAIM = "on the legacy default stream, an inference does not overlap a spin kernel on a blocking stream"
HOST_CLAIM = (f"PyTorch CUDA graph: a replay on the legacy default stream costs the host under {HOST_COST_LIMIT}x "
              "a replay on a created stream (no extra synchronisation)")
TRT_HOST_CLAIM = ("TensorRT: execute_async_v3 on the legacy default stream costs the host more per call than on a "
                  "created stream (the extra synchronisation its documentation warns of)")


@dataclass(frozen=True)
class GpuStudies:
    """The GPU-only studies of lab 02 that its claims read."""

    default_stream: OverlapStudy                   # an inference beside a spin kernel, on and off the default stream
    default_host: bench.Comparison                 # host time per call: legacy default stream over a created one
    bandwidth: Mapping[str, bench.Comparison]      # per direction, pinned against pageable host memory
    uploads: OverlapStudy                          # a pageable and a pinned upload beside an inference


def _report(lab_report: report.LabReport | None) -> report.LabReport:
    return report.LabReport(LAB) if lab_report is None else lab_report


def streams_claims(results: Sequence[Concurrency], gpu: GpuStudies | None, *, model: str, batch: int,
                   big_batch: int, count: int, lab_report: report.LabReport | None = None) -> report.LabReport:
    """The side-by-side claims. `results` are the comparisons by tag: on a GPU "2x eager", "2x graph",
    "<count>x graph" and "2x graph b<big_batch>"; on a CPU (`gpu` None) "2x threads"."""
    lab_report = _report(lab_report)
    by_tag = {r.tag: r for r in results}
    gpu_claims = [f"two independent {model} (batch {batch}) on two streams are at least {MIN_GAIN}x faster than on "
                  f"one ({label})" for label in ("PyTorch eager", "CUDA graphs")]
    if gpu is None:
        gpu_claims += [f"at a batch that fills the GPU, two streams gain less than at batch {batch}", DEFAULT_CLAIM,
                       HOST_CLAIM, "pinned host memory copies faster than pageable, and overlaps compute"]
        for claim in gpu_claims:
            lab_report.not_applicable(claim, "needs a GPU: CUDA streams and host-device copies exist only there")
        lab_report.check_comparison(f"CPU: two models in two threads (one intra-op thread each) are at least "
                                    f"{MIN_GAIN}x faster than one after the other in one thread",
                                    by_tag["2x threads"].comparison, threshold=MIN_GAIN,
                                    why="PyTorch eager on the CPU: host time is the only time")
        return lab_report
    whys = ("the host launches every kernel: where it sets the pace, streams cannot help", "")
    for claim, kind, why in zip(gpu_claims, ("eager", "graph"), whys):
        lab_report.check_comparison(claim, by_tag[f"2x {kind}"].comparison, threshold=MIN_GAIN, why=why)
    lab_report.check_comparison(f"{count} CUDA graphs on {count} streams beat them on one stream",
                                by_tag[f"{count}x graph"].comparison, threshold=1.0)
    big, small = by_tag[f"2x graph b{big_batch}"].comparison, by_tag["2x graph"].comparison
    lab_report.check_ratio(f"at batch {big_batch}, where one model fills the GPU, two streams gain less than at "
                           f"batch {batch}", big.speedup, big.interval, threshold=small.speedup, above=False,
                           why=f"at batch {batch}: {small.speedup:.2f}x; event time over {big.passes} passes")
    _default_stream_claims(gpu.default_stream, lab_report)
    lab_report.check_comparison(HOST_CLAIM, gpu.default_host, threshold=HOST_COST_LIMIT, above=False,
                                why="host time per call, default stream over created stream")
    for direction, c in gpu.bandwidth.items():
        lab_report.check_comparison(f"{direction}: pinned host memory copies faster than pageable", c, threshold=1.0)
    pinned, pageable = gpu.uploads.row("pinned upload"), gpu.uploads.row("pageable upload")
    lab_report.check("a pinned upload overlaps an inference on another stream (overlap at least 0.5)",
                     pinned["overlap"], pinned["overlap"] >= 0.5, fmt="{:.2f}", why=f"spread {pinned['spread_pct']:.1f}%")
    # judged on the GPU's timeline (what overlapped), not on medians of a copy whose time varies by half
    lab_report.check("a pageable upload overlaps less than a pinned one (on the GPU's timeline)",
                     pageable["timeline_overlap"], pageable["timeline_overlap"] < pinned["timeline_overlap"],
                     fmt="{:.0%} of the shorter overlapped",
                     why=f"pinned: {pinned['timeline_overlap']:.0%}; the pageable copy holds the host until it is staged "
                         f"(from the medians: overlap {pageable['overlap']:.2f}, spread {pageable['spread_pct']:.0f}%)")
    return lab_report


def _no_overlap_claim(claim: str, row: dict, lab_report: report.LabReport) -> None:
    """`claim` that the two pieces of `row` (an overlap study's) ran one after the other on the timeline."""
    lab_report.check(claim, row["timeline_overlap"], row["timeline_overlap"] < 0.05,
                     fmt="{:.0%} of the shorter overlapped",
                     why=f"together {row['together_ms']:.3g} ms, sum alone {row['sum_ms']:.3g} ms")


def _default_stream_claims(study: OverlapStudy, lab_report: report.LabReport) -> None:
    _no_overlap_claim(DEFAULT_CLAIM, study.row("default | blocking spin"), lab_report)
    for case in ("created | blocking spin", "default | non-blocking spin"):
        lab_report.check_comparison(
            f"inference and spin kernel together finish sooner as '{case}' than as 'default | blocking spin'",
            study.compare("default | blocking spin", case), threshold=1.0,
            why="the two share no memory bandwidth: what is lost is the synchronisation alone")


AUX_CLAIMS = ("the four-branch network runs faster at batch 1 with auxiliary streams than with none (TensorRT)",
              "at the large batch, auxiliary streams gain less than at batch 1 (TensorRT)")


def aux_stream_claims(aux_rows: Sequence[dict] | None, *, batch: int, big_batch: int,
                      lab_report: report.LabReport | None = None) -> report.LabReport:
    """From :func:`aux_stream_study`'s rows: the best engine with auxiliary streams gains at `batch`, and
    gains less at `big_batch`, each decided from its interval. `aux_rows` None (no TensorRT): not applicable."""
    lab_report = _report(lab_report)
    if aux_rows is None:
        for claim in AUX_CLAIMS:
            lab_report.not_applicable(claim, "needs TensorRT: auxiliary streams are an engine's own scheduling, which "
                                             "PyTorch has no counterpart of (the two-model experiment above is the nearest)")
        return lab_report

    def best_at(b: int) -> dict:
        rows = [r for r in aux_rows if r["batch"] == b]
        with_aux = [r for r in rows if r["num_aux_streams"] > 0] or rows
        return max(with_aux, key=lambda r: r["speedup_vs_0"])

    small, big = best_at(batch), best_at(big_batch)
    lab_report.check_ratio(AUX_CLAIMS[0], small["speedup_vs_0"], (small["interval_lo"], small["interval_hi"]),
                           threshold=1.0, why=f"max_aux_streams={small['max_aux_streams']}, "
                                              f"{small['num_aux_streams']} used; event time")
    lab_report.check_ratio(AUX_CLAIMS[1], big["speedup_vs_0"], (big["interval_lo"], big["interval_hi"]),
                           threshold=small["speedup_vs_0"], above=False,
                           why=f"batch {big_batch}, best of the engines; at batch {batch}: {small['speedup_vs_0']:.2f}x")
    return lab_report


def contexts_claims(contexts: ContextsStudy | None, trt_default: OverlapStudy | None,
                    trt_host: bench.Comparison | None, *, batch: int,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """From :func:`contexts_study`, :func:`tensorrt_default_stream_study` and
    :func:`tensorrt_host_cost_study`: two contexts give at least 1.3x the throughput of one; TensorRT's
    enqueue on the legacy default stream does not overlap a kernel on a blocking stream; and it costs the
    host more per call there. Any study None (no TensorRT): not applicable."""
    lab_report = _report(lab_report)
    claims = [f"two execution contexts on two streams give at least {MIN_GAIN}x the throughput of one at batch "
              f"{batch} (TensorRT)",
              "TensorRT's enqueue on the legacy default stream does not overlap a spin kernel on a blocking stream",
              TRT_HOST_CLAIM]
    if contexts is None or trt_default is None or trt_host is None:
        for claim in claims:
            lab_report.not_applicable(claim, "needs TensorRT: execution contexts belong to an engine")
        return lab_report
    two = next(r for r in contexts.results if r.items == 2 * batch).comparison
    lab_report.check_comparison(claims[0], two, threshold=MIN_GAIN)
    _no_overlap_claim(claims[1], trt_default.row("TensorRT: default | blocking spin"), lab_report)
    lab_report.check_comparison(claims[2], trt_host, threshold=1.0,
                                why="host time per call, default stream over created stream")
    return lab_report
