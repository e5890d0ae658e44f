"""Lab 10, ONNX Runtime's side of the trade: its graph optimization levels, session build and run time."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from common import bench, checks
from common.onnx import node_counts, ort_session

from .models import LabModel
from .effort import break_even_inferences, verdict

#: ONNX Runtime's levels in order of effort (newer releases also have ORT_ENABLE_LAYOUT, between
#: EXTENDED and ALL: its layout transformations are part of ALL either way).
ORT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
ORT_SHORT = {"ORT_DISABLE_ALL": "disable all", "ORT_ENABLE_BASIC": "basic", "ORT_ENABLE_EXTENDED": "extended",
             "ORT_ENABLE_ALL": "all"}


def optimized_node_counts(path: str | Path, level: str, out_dir: str | Path) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime runs at `level` (it writes the optimized model; not timed)."""
    out = Path(out_dir) / f"{Path(path).stem}.{level}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    ort_session(path, level=level, optimized_path=out)
    return dict(sorted(node_counts(out).items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class OrtLevelRun:
    """One model at one level: session build seconds (repeated), the ops it runs, and its run time."""

    model: str
    level: str
    build_s: list[float]
    nodes: dict[str, int]
    relative_error: float
    runs: list[bench.Measurement] = field(default_factory=list)

    @property
    def build_median_s(self) -> float:
        return statistics.median(self.build_s)

    @property
    def latency_ms(self) -> float:
        return bench.median_latency_ms(self.runs)


def ort_level_study(onnx_path: str | Path, lab: LabModel, *, levels: Sequence[str] = ORT_LEVELS,
                    build_repeats: int = 7, passes: int = bench.PASSES, warmup_ms: float = 20.0,
                    measure_ms: float = 80.0,
                    out_dir: str | Path, threads: int | None = None) -> list[OrtLevelRun]:
    """Session build time (`build_repeats` builds per level, interleaved, after one untimed build that
    pays ONNX Runtime's one-off start-up) and run time (`passes` interleaved passes) at each level,
    every level's output checked against the FP32 PyTorch model first."""
    x = lab.example()
    reference = lab.reference(x)
    feed = {"input": x.numpy()}
    ort_session(onnx_path, level=levels[0], threads=threads)
    build_s: dict[str, list[float]] = {level: [] for level in levels}
    sessions = {}
    for _ in range(build_repeats):
        for level in levels:
            t0 = time.perf_counter()
            sessions[level] = ort_session(onnx_path, level=level, threads=threads)
            build_s[level].append(time.perf_counter() - t0)
    results = {}
    for level in levels:
        out = sessions[level].run(None, feed)[0]
        error = checks.verify(out, reference, f"ONNX Runtime {level} on {lab.name}", precision="fp32")
        results[level] = OrtLevelRun(lab.name, level, build_s[level], optimized_node_counts(onnx_path, level, out_dir),
                                     error)
    configs = {level: {"fn": (lambda s=sessions[level]: s.run(None, feed)), "name": f"ONNX Runtime {ORT_SHORT[level]}"}
               for level in levels}
    runs = bench.measure_interleaved(configs, passes=passes, backend="ONNX Runtime CPU", device="cpu",
                                     batch_size=lab.batch, warmup_ms=warmup_ms, measure_ms=measure_ms)
    for level in levels:
        results[level].runs = runs[level]
    return [results[level] for level in levels]


def ort_rows(study: Sequence[OrtLevelRun]) -> list[dict[str, Any]]:
    """Per level: build ms (median of the repeats), run ms (CPU time: ONNX Runtime runs on the CPU here),
    speed-up over the first level with its 95% interval over the interleaved passes, and the inferences
    that pay the extra build time back."""
    base = study[0]
    rows = []
    for run in study:
        cmp = bench.compare(base.runs, run.runs)
        extra_s = max(run.build_median_s - base.build_median_s, 0.0)
        if run is base:
            break_even = 0.0
        elif cmp.significant:
            break_even = break_even_inferences(extra_s, base.latency_ms, run.latency_ms)
        else:
            break_even = math.inf
        lo, hi = cmp.interval
        rows.append({"model": run.model, "level": run.level, "build_ms": run.build_median_s * 1e3,
                     "latency_ms": run.latency_ms, "speedup": cmp.speedup, "speedup_lo": lo, "speedup_hi": hi,
                     "spread_pct": cmp.noise_pct,
                     "verdict": "baseline" if run is base else verdict(cmp), "nodes": sum(run.nodes.values()),
                     "break_even": break_even, "relative_error": run.relative_error})
    return rows


def gelu_fused(study: Sequence[OrtLevelRun], depth: int) -> bool:
    """Whether ORT_ENABLE_EXTENDED turned each of the MLP's `depth` GELU Erf subgraphs into one Gelu op."""
    levels = {run.level: run.nodes for run in study}
    return (levels["ORT_DISABLE_ALL"].get("Erf") == depth and levels["ORT_ENABLE_EXTENDED"].get("Gelu") == depth
            and "Erf" not in levels["ORT_ENABLE_EXTENDED"])
