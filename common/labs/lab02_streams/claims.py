"""Lab 02 (streams): the claims, as functions of what the experiments measured.

:func:`streams_claims` reads the side-by-side comparisons and, on a GPU, the default-stream, copy
bandwidth and upload studies (:class:`GpuStudies`); on a CPU it judges the two-thread counterpart.
:func:`aux_stream_claims` and :func:`contexts_claims` read the TensorRT studies, or say why they did
not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from common import bench, report

from .tensorrt_study import ContextsStudy
from .timing import Concurrency, OverlapStudy

LAB = "02_streams"


@dataclass(frozen=True)
class GpuStudies:
    """The GPU-only studies of lab 02 that its claims read."""

    default_stream: OverlapStudy                   # an inference beside a copy, on and off the default stream
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
    gpu_claims = [f"two independent {model} (batch {batch}) on two streams are at least 1.3x faster than on one "
                  f"({label})" for label in ("PyTorch eager", "CUDA graphs")]
    if gpu is None:
        gpu_claims += [f"at a batch that fills the GPU, two streams gain less than at batch {batch}",
                       "on the legacy default stream, an inference does not overlap a copy on a blocking stream",
                       "pinned host memory copies faster than pageable, and overlaps compute"]
        for claim in gpu_claims:
            lab_report.not_applicable(claim, "needs a GPU: CUDA streams and host-device copies exist only there")
        in_threads = by_tag["2x threads"].comparison
        lab_report.check("CPU: two models in two threads (one intra-op thread each) are at least 1.3x faster than "
                         "one after the other in one thread", in_threads.speedup,
                         in_threads.speedup >= 1.3 and in_threads.significant,
                         fmt="{:.2f}x", why=f"run-to-run spread {in_threads.noise_pct:.1f}%")
        return lab_report
    for claim, kind in zip(gpu_claims, ("eager", "graph")):
        c = by_tag[f"2x {kind}"].comparison
        lab_report.check(claim, c.speedup, c.speedup >= 1.3 and c.significant, fmt="{:.2f}x",
                         why=f"run-to-run spread {c.noise_pct:.1f}%")
    four = by_tag[f"{count}x graph"].comparison
    lab_report.check(f"{count} CUDA graphs on {count} streams beat them on one stream", four.speedup,
                     four.speedup > 1 and four.significant, fmt="{:.2f}x",
                     why=f"run-to-run spread {four.noise_pct:.1f}%")
    big = by_tag[f"2x graph b{big_batch}"].comparison
    small = by_tag["2x graph"].comparison
    lab_report.check(f"at batch {big_batch}, where one model fills the GPU, two streams gain less than at batch {batch}",
                     big.speedup, big.speedup < small.speedup, fmt="{:.2f}x",
                     why=f"at batch {batch}: {small.speedup:.2f}x; spread {big.noise_pct:.1f}%")
    _default_stream_claims(gpu.default_stream, lab_report)
    for direction, c in gpu.bandwidth.items():
        lab_report.check(f"{direction}: pinned host memory copies faster than pageable", c.speedup,
                         c.speedup > 1 and c.significant, fmt="{:.2f}x", why=f"run-to-run spread {c.noise_pct:.1f}%")
    pinned, pageable = gpu.uploads.row("pinned upload"), gpu.uploads.row("pageable upload")
    lab_report.check("a pinned upload overlaps an inference on another stream (overlap at least 0.5)",
                     pinned["overlap"], pinned["overlap"] >= 0.5, fmt="{:.2f}", why=f"spread {pinned['spread_pct']:.1f}%")
    lab_report.check("a pageable upload overlaps less than a pinned one", pageable["overlap"],
                     pageable["overlap"] < pinned["overlap"], fmt="{:.2f}", why=f"pinned: {pinned['overlap']:.2f}")
    return lab_report


def _no_overlap_claim(claim: str, row: dict, lab_report: report.LabReport) -> None:
    """`claim` that the two pieces of `row` (an overlap study's) ran one after the other on the timeline."""
    lab_report.check(claim, row["timeline_overlap"], row["timeline_overlap"] < 0.05,
                     fmt="{:.0%} of the shorter overlapped",
                     why=f"together {row['together_ms']:.3g} ms, sum alone {row['sum_ms']:.3g} ms")


def _default_stream_claims(study: OverlapStudy, lab_report: report.LabReport) -> None:
    _no_overlap_claim("on the legacy default stream, an inference does not overlap a copy on a blocking stream",
                      study.row("default | blocking copy"), lab_report)
    for case in ("created | blocking copy", "default | non-blocking copy"):
        c = study.compare("default | blocking copy", case)
        lab_report.check(f"inference and copy together finish sooner as '{case}' than as 'default | blocking copy'",
                         c.speedup, c.speedup > 1 and c.significant, fmt="{:.2f}x",
                         why=f"run-to-run spread {c.noise_pct:.1f}%")


AUX_CLAIMS = ("the four-branch network runs faster at batch 1 with auxiliary streams than with none (TensorRT)",
              "at the large batch, auxiliary streams gain less than at batch 1 (TensorRT)")


def aux_stream_claims(aux_rows: Sequence[dict] | None, *, batch: int, big_batch: int,
                      lab_report: report.LabReport | None = None) -> report.LabReport:
    """From :func:`aux_stream_study`'s rows: the best engine gains at `batch`, and gains less at `big_batch`.
    `aux_rows` None (no TensorRT): not applicable."""
    lab_report = _report(lab_report)
    if aux_rows is None:
        for claim in AUX_CLAIMS:
            lab_report.not_applicable(claim, "needs TensorRT: auxiliary streams are an engine's own scheduling, which "
                                             "PyTorch has no counterpart of (the two-model experiment above is the nearest)")
        return lab_report
    best = {b: max((r for r in aux_rows if r["batch"] == b), key=lambda r: r["speedup_vs_0"])
            for b in (batch, big_batch)}
    lab_report.check(AUX_CLAIMS[0], best[batch]["speedup_vs_0"],
                     best[batch]["speedup_vs_0"] > 1 and best[batch]["significant"], fmt="{:.2f}x",
                     why=f"max_aux_streams={best[batch]['max_aux_streams']}, {best[batch]['num_aux_streams']} used")
    lab_report.check(AUX_CLAIMS[1], best[big_batch]["speedup_vs_0"],
                     best[big_batch]["speedup_vs_0"] < best[batch]["speedup_vs_0"], fmt="{:.2f}x",
                     why=f"batch {big_batch}, best of the engines")
    return lab_report


def contexts_claims(contexts: ContextsStudy | None, trt_default: OverlapStudy | None, *, batch: int,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """From :func:`contexts_study` and :func:`tensorrt_default_stream_study`: two contexts give at least
    1.3x the throughput of one, and TensorRT's enqueue on the legacy default stream does not overlap a
    copy on a blocking stream. Either study None (no TensorRT): not applicable."""
    lab_report = _report(lab_report)
    claims = [f"two execution contexts on two streams give at least 1.3x the throughput of one at batch {batch} "
              "(TensorRT)",
              "TensorRT's enqueue on the legacy default stream does not overlap a copy on a blocking stream"]
    if contexts is None or trt_default is None:
        for claim in claims:
            lab_report.not_applicable(claim, "needs TensorRT: execution contexts belong to an engine")
        return lab_report
    two = next(r for r in contexts.results if r.items == 2 * batch).comparison
    lab_report.check(claims[0], two.speedup, two.speedup >= 1.3 and two.significant, fmt="{:.2f}x",
                     why=f"run-to-run spread {two.noise_pct:.1f}%")
    _no_overlap_claim(claims[1], trt_default.row("TensorRT: default | blocking copy"), lab_report)
    return lab_report
