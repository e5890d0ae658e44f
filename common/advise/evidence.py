"""What this machine measured in the course, as evidence for the advisor's findings.

The labs write their claims to ``results/<lab>/claims.json`` and lab 00 caches the machine's
ceilings; the advisor quotes those figures where they exist, names the machine and the backend that
produced them, and otherwise says that no measurement is cached (and which lab makes one). Nothing
here measures, unless the user asks for ``--measure``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from common import env
from common.files import read_json

#: An assumed host cost per kernel launch when nothing was measured here (CUDA kernel launches cost a
#: few microseconds of host time each; `--measure` or lab 03 replace it with this machine's figure).
DEFAULT_LAUNCH_US = 3.0


@dataclass
class Figures:
    """The course's cached results, read once; every method answers None (or a default) when absent."""

    claims: dict[str, dict] = field(default_factory=dict)    # lab -> claims.json content
    matmul_tflops: dict[str, float] = field(default_factory=dict)
    ceilings_machine: str = ""
    measured_launch_us: float | None = None

    @classmethod
    def load(cls, results: Path | None = None) -> "Figures":
        """Read every lab's claims.json under `results` (the course's results folder by default)."""
        results = Path(results) if results is not None else env.results_dir()
        figures = cls()
        for path in sorted(results.glob("*/claims.json")):
            data, problem = read_json(path)
            # An unreadable file is no evidence: the findings quote their rule's source instead.
            if not problem and isinstance(data, dict):
                figures.claims[path.parent.name] = data

        return figures

    def _find(self, lab: str, *keywords: str) -> tuple[dict, str] | None:
        data = self.claims.get(lab)
        if not data:
            return None
        machine = (data.get("environment") or {}).get("gpu_name") or "this machine's CPU"
        for claim in data.get("claims", []):
            text = claim.get("claim", "").lower()
            if claim.get("status") in ("holds", "does not hold") and all(k.lower() in text for k in keywords):
                return claim, machine
        return None

    def _quote(self, lab: str, *keywords: str) -> str | None:
        found = self._find(lab, *keywords)
        if found is None:
            return None
        claim, machine = found
        return f"lab {lab[:2]} on {machine}: {claim['claim']} — {claim['measured']} ({claim['status']})"

    # -- one method per figure a check quotes ---------------------------------------------------
    def batching_knee(self) -> str | None:
        return self._quote("01_batching", "throughput saturates")

    def launch_cost_us(self) -> tuple[float, str]:
        if self.measured_launch_us is not None:
            return self.measured_launch_us, f"measured here now: {self.measured_launch_us:.3g} us per launch"
        found = self._find("03_cuda_graphs", "per gpu operation")
        if found is not None and found[0].get("value"):
            claim, machine = found
            return float(claim["value"]), (f"lab 03 on {machine}: {claim['measured']} per operation (PyTorch eager "
                                           "dispatch, an upper bound on a TensorRT engine's enqueue)")
        return DEFAULT_LAUNCH_US, (f"no launch cost measured here (lab 03 measures one): {DEFAULT_LAUNCH_US:g} us per "
                                   "kernel assumed")

    def matmul_rate_tflops(self, precision: str) -> tuple[float, str]:
        rate = self.matmul_tflops.get(precision) or self.matmul_tflops.get("fp16")
        if rate:
            return rate, f"lab 00 ceilings on {self.ceilings_machine}: {rate:,.0f} TFLOP/s"
        return 0.0, "no matrix ceiling cached (lab 00 measures it, or pass --measure on a GPU)"

    def first_run_cost(self) -> str | None:
        return self._quote("04_shape_changes", "first run")

    def reduce_axis_figure(self) -> str | None:
        return self._quote("06_reduce_shuffle", "last axis")

    def alignment_figure(self, precision: str) -> str | None:
        return self._quote("07_matmul_tensor_cores", precision.upper(), "K =")

    def low_precision_crossover_gflop(self) -> tuple[float, str]:
        found = self._find("08_low_precision", "does not pay at")
        if found is not None:
            claim, machine = found
            dims = [int(d) for d in claim["claim"].split("does not pay at")[1].split(":")[0].strip().split("x")
                    if d.strip().isdigit()]
            if len(dims) == 3:
                return 2 * math.prod(dims) / 1e9, f"lab 08 on {machine}: {claim['claim']} — {claim['measured']}"
        return 1.0, "no lab 08 result cached here: 1 GFLOP assumed (lab 08 measures where FP8 stops paying)"

    def sparsity_crossover_gflop(self) -> tuple[float, str]:
        found = self._find("09_sparsity", "crossover")
        if found is not None and found[0].get("value"):
            claim, machine = found
            return float(claim["value"]), f"lab 09 on {machine}: {claim['claim']} — {claim['measured']}"
        return 2 * 4096**3 / 1e9, ("no lab 09 result cached here: on an H200 the 2:4 kernel beats the dense one by "
                                   "kernel time from about 4096^3 (137 GFLOP) and loses at 1024^3 (lab 09 measures it)")

    def timing_cache_figure(self) -> str | None:
        return self._quote("10_builder", "timing cache") or self._quote("10_builder", "warm inductor cache")


def with_ceilings(figures: Figures) -> Figures:
    """`figures` with the ceilings lab 00 cached on this machine, if any (never measures)."""
    from common import ceilings

    cached = ceilings.cached_ceilings()
    if cached is not None:
        figures.matmul_tflops = dict(cached.matmul_tflops)
        figures.ceilings_machine = cached.machine
    return figures
