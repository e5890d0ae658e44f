"""Lab 00 (tour): what this machine's ceilings and the timing harness show, as claims; and the course map.

The measuring lives in shared modules the tour presents (:mod:`common.ceilings`, :mod:`common.bench`);
this module holds what lab 00 concludes from them:

- :func:`ceilings_claims`: how the measured dense matrix rates of the data types compare;
- :func:`harness_overhead` times a near-empty kernel with ``bench.measure`` and with a bare event
  loop, in back-to-back pairs, and :func:`harness_claims` judges the difference;
- :func:`course_map`: the labs present in ``labs/``, in order, with their titles.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Mapping

import torch

from common import bench, env, report
from common.ceilings import Ceilings
from common.execute import lab_notebooks

LAB = "00_tour"
#: How long the near-empty kernel of the harness check waits, in GPU clock cycles (a few microseconds).
TINY_KERNEL_CYCLES = 20_000
HARNESS_CLAIM = "bench.measure differs from a bare event loop by under 5% on a near-empty kernel"


def ceilings_claims(ceil: Ceilings, *, has_gpu: bool, lab_report: report.LabReport | None = None) -> report.LabReport:
    """Claims on the measured matrix rates: tensor cores against FP32, TF32 between them, FP8 over FP16,
    and PyTorch's INT8 against its FP8 (one tensor-core peak on Hopper). On a CPU: not applicable."""
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    rates: Mapping[str, float] = ceil.matmul_tflops
    if not has_gpu:
        for claim in ["FP16 tensor-core matmul is at least 8x plain FP32", "FP8 is at least 1.5x FP16"]:
            lab_report.not_applicable(claim, "needs a GPU with tensor cores")
        return lab_report
    lab_report.check("FP16 tensor-core matmul is at least 8x plain FP32", rates["fp16"] / rates["fp32"],
                     rates["fp16"] / rates["fp32"] >= 8, fmt="{:.1f}x")
    if "tf32" in rates:
        lab_report.check("TF32 lies between FP32 and FP16", rates["tf32"] / rates["fp32"],
                         rates["fp32"] < rates["tf32"] < rates["fp16"], fmt="{:.1f}x FP32")
    if "fp8" in rates:
        lab_report.check("FP8 is at least 1.5x FP16", rates["fp8"] / rates["fp16"], rates["fp8"] >= 1.5 * rates["fp16"],
                         fmt="{:.2f}x")
    else:
        lab_report.not_applicable("FP8 is at least 1.5x FP16", ceil.not_measured.get("fp8", "no FP8 on this GPU"))
    if "int8" in rates and "fp8" in rates:
        lab_report.check("PyTorch's INT8 matmul reaches its FP8 rate (one tensor-core peak on Hopper)",
                         rates["int8"] / rates["fp8"], rates["int8"] >= 0.9 * rates["fp8"], fmt="{:.2f}x FP8")
    return lab_report


@dataclass(frozen=True)
class HarnessOverhead:
    """The near-empty kernel's median latency (ms) per pair, timed by each of the two loops."""

    medians_ms: dict[str, list[float]]   # "bench.measure" and "bare event loop", one median per pair

    @property
    def ratios(self) -> list[float]:
        """bench.measure over the bare loop, pair by pair: drift between pairs cancels in each ratio."""
        return [h / b for h, b in zip(self.medians_ms["bench.measure"], self.medians_ms["bare event loop"])]

    @property
    def overhead_pct(self) -> float:
        return (statistics.median(self.ratios) - 1) * 100


def harness_overhead(pairs: int = 5, iterations: int = 20_000) -> HarnessOverhead:
    """Time a kernel that only waits :data:`TINY_KERNEL_CYCLES` with ``bench.measure`` and with the plainest
    correct event loop, alternately, `pairs` times, so drift in clocks or host load hits both alike."""
    env.require("gpu")

    def tiny() -> None:
        torch.cuda._sleep(TINY_KERNEL_CYCLES)

    runs: dict[str, list[float]] = {"bench.measure": [], "bare event loop": []}
    for _ in range(pairs):
        runs["bench.measure"].append(bench.measure(tiny, name="tiny", backend="PyTorch", warmup_ms=100,
                                                   measure_ms=200, max_iters=iterations).latency_ms.median)
        runs["bare event loop"].append(bench.Stats.of(bench.bare_event_loop(tiny, iterations=iterations)).median)
    return HarnessOverhead(runs)


def harness_claims(overhead: HarnessOverhead | None, lab_report: report.LabReport | None = None) -> report.LabReport:
    """The harness adds under 5% to a near-empty kernel; `overhead` None (no GPU): not applicable."""
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    if overhead is None:
        lab_report.not_applicable(HARNESS_CLAIM, "CUDA events need a GPU; on a CPU the harness times with perf_counter_ns")
    else:
        lab_report.check(HARNESS_CLAIM, overhead.overhead_pct, abs(overhead.overhead_pct) < 5, fmt="{:+.1f}%",
                         why=f"median of {len(overhead.ratios)} paired runs")
    return lab_report


def course_map() -> list[tuple[str, str]]:
    """(notebook file name, title) of every lab in ``labs/``, in order: the title is the first line of
    the notebook's first markdown cell."""
    labs = []
    for path in lab_notebooks():
        cells = json.loads(path.read_text())["cells"]
        title = next(c["source"] for c in cells if c["cell_type"] == "markdown")
        labs.append((path.name, (title if isinstance(title, str) else "".join(title)).splitlines()[0].lstrip("# ")))
    return labs
