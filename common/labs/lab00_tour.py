"""Lab 00 (tour): what this machine's ceilings and the timing harness show, as claims; and the course map.

The measuring lives in shared modules the tour presents (:mod:`common.ceilings`, :mod:`common.bench`);
this module holds what lab 00 concludes from them:

- :func:`ceiling_tables`: the measured ceilings (best of a sweep, with the size or shape that gave
  each) beside the datasheet peaks, one unit per table, and :func:`datasheet_gap` says how far apart;
- :func:`roofline`: one memory-bound operation (an elementwise add) and one compute-bound one (a
  matrix product) measured against those ceilings, on a GPU or a CPU alike, and :func:`ceilings_claims`
  judges them with the tensor-core rate claims;
- :func:`harness_overhead` times one fixed piece of work with ``bench.measure`` and with the plainest
  correct loop (CUDA events on a GPU, ``perf_counter_ns`` on a CPU) in interleaved pairs, and
  :func:`harness_claims` judges the difference from its interval;
- :func:`course_map`: the labs present in ``labs/``, in order, with their titles.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from common import bench, env, report
from common.ceilings import CeilingExceeded, Ceilings, CeilingWarning
from common.execute import lab_notebooks

LAB = "00_tour"
#: How long the near-empty kernel of the harness check waits, in GPU clock cycles (a few microseconds).
TINY_KERNEL_CYCLES = 20_000
#: The side of the square FP32 product the harness check times on a CPU (well under a millisecond).
CPU_HARNESS_N = 128
HARNESS_LIMIT = 1.05
HARNESS_CLAIM = "bench.measure adds under 5% to what the plainest correct timing loop measures"
ADD_CLAIM = "an elementwise add is bound by memory: it reaches at least half of the copy ceiling"
MATMUL_CLAIM = "a large matrix product is bound by compute: it reaches at least half of its matrix ceiling"
#: The share of a ceiling that counts as "bound by" it in the roofline claims.
BOUND_SHARE = 0.5


def rate_unit(device: str) -> tuple[str, float]:
    """The unit matrix rates are shown in on `device`, and the factor from TFLOP/s to it: TFLOP/s on a
    GPU, GFLOP/s on a CPU (whose rates would read 0.0x TFLOP/s). One unit per table."""
    return ("TFLOP/s", 1.0) if device == "cuda" else ("GFLOP/s", 1e3)


def ceiling_tables(ceil: Ceilings) -> tuple[list[dict], list[dict]]:
    """The ceilings as two tables, each in one unit: copy bandwidth (GB/s) and matrix rates (TFLOP/s on a
    GPU, GFLOP/s on a CPU; INT8 in the same scale of operations, TOP/s or GOP/s). Each row: the measured
    best, the size or shape that gave it, the datasheet peak ("unknown" where the device is not listed)
    and the measured share of it."""
    rows = ceil.rows()
    def share(r: dict) -> str:
        return "-" if r["datasheet"] == "unknown" else f"{r['pct_of_datasheet']:.0f}%"

    copy = [{"ceiling": r["ceiling"], "GB_per_s": r["value"], "best_at": r["best_at"], "datasheet_GB_per_s":
             r["datasheet"], "of_datasheet": share(r)} for r in rows if r["unit"] == "GB/s"]
    unit, _ = rate_unit(ceil.device)
    matmul = [{"ceiling": r["ceiling"], unit: r["value"], "counts": r["unit"], "best_at": r["best_at"],
               f"datasheet_{unit}": r["datasheet"], "of_datasheet": share(r)} for r in rows if r["unit"] != "GB/s"]
    return copy, matmul


def datasheet_gap(ceil: Ceilings) -> str:
    """One sentence: how far the measured ceilings are from the datasheet peaks, from the figures themselves."""
    shares = {r["ceiling"]: r["pct_of_datasheet"] for r in ceil.rows() if r["datasheet"] != "unknown"}
    if not shares:
        what = "a CPU" if ceil.device == "cpu" else f"{ceil.machine}, which the course's datasheet table does not list"
        return f"No datasheet peak for {what}: the measured ceilings are the only ones to compare with."
    low, high = min(shares, key=shares.get), max(shares, key=shares.get)
    return (f"Measured against the datasheet of {ceil.datasheet.name}: from {shares[low]:.0f}% ({low}) to "
            f"{shares[high]:.0f}% ({high}) of the paper peaks. A datasheet peak assumes the top clock and ideal "
            f"data; the measured best is what this machine and library reach, and the figure later labs compare with.")


@dataclass(frozen=True)
class Roofline:
    """A memory-bound and a compute-bound operation measured against the ceilings."""

    device: str
    add_gbps: float            # elementwise add: (2 read + 1 written) x bytes / time
    add_pct_of_copy: float
    matmul_dtype: str
    matmul_shape: tuple[int, int, int]
    matmul_tflops: float       # 2 m n k / time
    matmul_pct: float          # of the matrix ceiling of its data type
    add_flops_pct_of_matmul: float   # the add's FLOP rate as a share of the product's
    regimes: dict[str, str] = field(default_factory=dict)   # measurement -> regime
    notes: tuple[str, ...] = ()   # figures that came out far above a ceiling (read as 100%), and why

    def rows(self) -> list[dict]:
        unit, scale = rate_unit(self.device)
        return [{"operation": "elementwise add (memory-bound)", "rate": f"{self.add_gbps:,.1f} GB/s",
                 "pct_of_ceiling": f"{self.add_pct_of_copy:.0f}% of copy", "regime": self.regimes.get("add", "")},
                {"operation": f"matmul {self.matmul_dtype} {'x'.join(map(str, self.matmul_shape))} (compute-bound)",
                 "rate": f"{self.matmul_tflops * scale:,.1f} {unit}",
                 "pct_of_ceiling": f"{self.matmul_pct:.0f}% of matmul {self.matmul_dtype}",
                 "regime": self.regimes.get("matmul", "")}]


def roofline(ceil: Ceilings, *, add_elements: int, matmul_n: int, **bench_kwargs) -> Roofline:
    """Measure ``a + b`` on `add_elements` FP32 values and an `matmul_n`³ product (FP16 on a GPU, FP32 on a
    CPU) on this machine's device, as shares of the measured ceilings (never above 100%)."""
    device = ceil.device
    dtype = "fp16" if device == "cuda" else "fp32"
    a, b = (torch.randn(add_elements, device=device) for _ in range(2))
    out = torch.empty_like(a)
    add = bench.measure(lambda: torch.add(a, b, out=out), name="elementwise add", backend="PyTorch", device=device,
                        **bench_kwargs)
    add_gbps = 3 * a.numel() * a.element_size() / (add.latency_ms.median / 1e3) / 1e9
    x, y = (torch.randn(matmul_n, matmul_n, device=device, dtype=torch.float16 if dtype == "fp16" else torch.float32)
            for _ in range(2))
    mm = bench.measure(lambda: x @ y, name=f"matmul {matmul_n}^3", backend="PyTorch", device=device, **bench_kwargs)
    tflops = 2 * matmul_n**3 / (mm.latency_ms.median / 1e3) / 1e12
    add_tflops = a.numel() / (add.latency_ms.median / 1e3) / 1e12
    notes: list[str] = []
    add_pct, matmul_pct = share_of_ceiling(ceil, add_gbps, "copy", notes), share_of_ceiling(ceil, tflops, dtype, notes)
    return Roofline(device, add_gbps, add_pct, dtype, (matmul_n,) * 3, tflops, matmul_pct, 100 * add_tflops / tflops,
                    {"add": add.regime, "matmul": mm.regime}, tuple(notes))


def share_of_ceiling(ceil: Ceilings, value: float, what: str, notes: list[str]) -> float:
    """`value` as a % of its ceiling (never above 100; ``Ceilings.pct_of``), with a line in `notes`
    wherever it came out above the ceiling. Up to ``ceilings.LIFT_LIMIT`` above, it is the best rate seen
    here (clocks, or an operation that streams memory better than a copy): it reads 100% and raises the
    ceiling. Further above, the ceiling was measured while other work loaded the machine (a shared CPU):
    it reads 100% too, and the note says how to measure the ceiling again."""
    ceiling = ceil.ceiling(what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CeilingWarning)   # said in `notes`, in the lab's own output
            pct = ceil.pct_of(value, what)
    except CeilingExceeded:
        notes.append(f"{what}: {value / ceiling:.2f}x the ceiling measured moments ago, read as 100%: "
                     f"the ceiling was measured under other load; ceilings.get_ceilings(refresh=True) measures it again")
        return 100.0
    if value > ceiling:
        notes.append(f"{what}: {value:,.4g} is {value / ceiling:.3f}x the ceiling measured moments ago ({ceiling:,.4g}): "
                     f"the best seen on this machine, so it reads 100% and is the ceiling from here on")
    return pct


def ceilings_claims(ceil: Ceilings, *, has_gpu: bool, points: Roofline | None = None,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """Claims on the measured ceilings: on a GPU, tensor cores against FP32, TF32 between them, FP8 over
    FP16, and PyTorch's INT8 against its FP8 (one tensor-core peak on Hopper), those not applicable on a
    CPU; on any device, from `points` (:func:`roofline`), an add bound by memory and a product bound by
    compute."""
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    rates: Mapping[str, float] = ceil.matmul_tflops
    if not has_gpu:
        for claim in ["FP16 tensor-core matmul is at least 8x plain FP32", "FP8 is at least 1.5x FP16"]:
            lab_report.not_applicable(claim, "needs a GPU with tensor cores")
    else:
        _tensor_core_claims(ceil, rates, lab_report)
    if points is not None:
        lab_report.check(ADD_CLAIM, points.add_pct_of_copy, points.add_pct_of_copy >= 100 * BOUND_SHARE,
                         fmt="{:.0f}% of copy", why=f"its FLOP rate is {points.add_flops_pct_of_matmul:.2g}% of the "
                                                    f"product's: bytes, not arithmetic, set its time")
        lab_report.check(MATMUL_CLAIM, points.matmul_pct, points.matmul_pct >= 100 * BOUND_SHARE,
                         fmt="{:.0f}% of matmul " + points.matmul_dtype,
                         why=f"{'x'.join(map(str, points.matmul_shape))}; the ceiling is the best of a sweep of sizes")
    return lab_report


#: Why a rate claim reads as it does: the figures are library rates on this chip.
RATES_WHY = "ratio of measured ceilings: PyTorch's (cuBLAS) best over the sweep"


def _tensor_core_claims(ceil: Ceilings, rates: Mapping[str, float], lab_report: report.LabReport) -> None:
    lab_report.check("FP16 tensor-core matmul is at least 8x plain FP32", rates["fp16"] / rates["fp32"],
                     rates["fp16"] / rates["fp32"] >= 8, fmt="{:.1f}x", why=RATES_WHY)
    if "tf32" in rates:
        lab_report.check("TF32 lies between FP32 and FP16", rates["tf32"] / rates["fp32"],
                         rates["fp32"] < rates["tf32"] < rates["fp16"], fmt="{:.1f}x FP32", why=RATES_WHY)
    if "fp8" in rates:
        lab_report.check("FP8 is at least 1.5x FP16", rates["fp8"] / rates["fp16"], rates["fp8"] >= 1.5 * rates["fp16"],
                         fmt="{:.2f}x", why="torch._scaled_mm against cuBLAS FP16, best of each sweep")
    else:
        lab_report.not_applicable("FP8 is at least 1.5x FP16", ceil.not_measured.get("fp8", "no FP8 on this GPU"))
    if "int8" in rates and "fp8" in rates:
        lab_report.check("PyTorch's INT8 matmul reaches its FP8 rate (one tensor-core peak on Hopper)",
                         rates["int8"] / rates["fp8"], rates["int8"] >= 0.9 * rates["fp8"], fmt="{:.2f}x FP8",
                         why="torch._int_mm's kernels against torch._scaled_mm's, not the chip: TensorRT brings its "
                             "own INT8 and FP8 kernels (lab 08)")


@dataclass(frozen=True)
class HarnessOverhead:
    """The same work's median latency (ms) per pass, timed by ``bench.measure`` and by a bare loop."""

    medians_ms: dict[str, list[float]]   # "bench.measure" and "bare loop", one median per pass
    work: str = "a near-empty kernel"

    @property
    def ratios(self) -> list[float]:
        """bench.measure over the bare loop, pass by pass: drift between passes cancels in each ratio."""
        return [h / b for h, b in zip(self.medians_ms["bench.measure"], self.medians_ms["bare loop"])]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def overhead_pct(self) -> float:
        return (self.ratio - 1) * 100

    @property
    def interval(self) -> tuple[float, float]:
        """95% bootstrap interval of median(bench.measure) / median(bare loop) over the passes."""
        return bench.ratio_interval(self.medians_ms["bench.measure"], self.medians_ms["bare loop"])


def _bare_cpu_loop(fn: Callable[[], object], iterations: int, warmup: int = 20) -> list[float]:
    """The plainest correct host-timing loop: warm up, then ``perf_counter_ns`` around each call (ms)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def harness_overhead(passes: int = bench.PASSES, iterations: int = 20_000) -> HarnessOverhead:
    """Time one fixed piece of work with ``bench.measure`` and with the plainest correct loop, alternately,
    `passes` times, so drift in clocks or host load hits both alike. On a GPU the work is a kernel that
    only waits :data:`TINY_KERNEL_CYCLES` and the loop is CUDA events; on a CPU a
    :data:`CPU_HARNESS_N`-square FP32 product, timed with ``perf_counter_ns``."""
    if env.has("gpu"):
        def work() -> None:
            torch.cuda._sleep(TINY_KERNEL_CYCLES)

        def bare() -> float:
            return bench.Stats.of(bench.bare_event_loop(work, iterations=iterations)).median
        what, budget = "a near-empty kernel", {"warmup_ms": 100, "measure_ms": 200, "max_iters": iterations}
    else:
        x = torch.randn(CPU_HARNESS_N, CPU_HARNESS_N)

        def work() -> None:
            torch.mm(x, x)

        def bare() -> float:
            return bench.Stats.of(_bare_cpu_loop(work, iterations=min(iterations, 500))).median
        what, budget = f"a {CPU_HARNESS_N}-square FP32 product", {"warmup_ms": 50, "measure_ms": 100, "max_iters": 500}
    runs: dict[str, list[float]] = {"bench.measure": [], "bare loop": []}
    for _ in range(passes):
        runs["bench.measure"].append(bench.measure(work, name="harness check", backend="PyTorch", kernel_time=False,
                                                   **budget).latency_ms.median)
        runs["bare loop"].append(bare())
    return HarnessOverhead(runs, what)


def harness_claims(overhead: HarnessOverhead, lab_report: report.LabReport | None = None) -> report.LabReport:
    """bench.measure adds under 5% to the bare loop's figure, decided from the interval over passes."""
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    lab_report.check_ratio(HARNESS_CLAIM, overhead.ratio, overhead.interval, threshold=HARNESS_LIMIT, above=False,
                           fmt="{:.3f}x", why=f"{overhead.work}, {len(overhead.ratios)} interleaved passes")
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
