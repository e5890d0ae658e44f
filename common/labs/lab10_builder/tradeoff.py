"""Lab 10, the trade-off's arithmetic and pictures: inferences that pay a build back, a verdict against the
run-to-run spread, and run time against build seconds for every compiler the lab measures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from common import bench, plots

from .effort import SHORT_MODE

if TYPE_CHECKING:
    from .ort_levels import OrtLevelRun
    from .torch_compile import CompileStudy
    from .trt_study import EngineResult

def tradeoff_rows(series: str, points: Sequence[tuple[str, float, float]], baseline_ms: float) -> list[dict[str, Any]]:
    """Rows for :func:`tradeoff_plot`: each (label, build seconds, run ms) with its run time relative
    to `baseline_ms`, the least-effort configuration of the series (eager, level 0, no optimization)."""
    return [{"series": series, "config": label, "build_s": build_s, "latency_ms": latency_ms,
             "relative_run_time": latency_ms / baseline_ms} for label, build_s, latency_ms in points]


def all_tradeoff_rows(compile_studies: Mapping[str, "CompileStudy"], ort_studies: Mapping[str, Sequence["OrtLevelRun"]],
                      trt_levels: Mapping[str, Sequence["EngineResult"]], device: str) -> list[dict[str, Any]]:
    """One series per compiler and model, in order of effort: torch.compile against eager, ONNX Runtime
    against ORT_DISABLE_ALL, TensorRT's levels against level 0."""
    from .ort_levels import ORT_SHORT

    rows: list[dict[str, Any]] = []
    for name, st in compile_studies.items():
        rows += tradeoff_rows(f"torch.compile, {name} ({device})",
                              [(SHORT_MODE[r.mode], r.cold_s, r.latency_ms) for r in st.modes],
                              bench.median_latency_ms(st.eager))
    for name, study in ort_studies.items():
        rows += tradeoff_rows(f"ONNX Runtime, {name} (CPU)",
                              [(ORT_SHORT[r.level], r.build_median_s, r.latency_ms) for r in study],
                              study[0].latency_ms)
    for name, results in trt_levels.items():
        rows += tradeoff_rows(f"TensorRT levels, {name}",
                              [(f"L{r.config.builder_optimization_level}", r.build_s, r.latency_ms) for r in results],
                              results[0].latency_ms)
    return rows


def tradeoff_plot(rows: Sequence[dict[str, Any]], *, title: str, path: str | Path, show: bool = True) -> Path:
    """Run time (relative to each series' least-effort configuration) against build seconds, log x,
    one line per series in order of effort, each point labelled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    for name in dict.fromkeys(r["series"] for r in rows):
        pts = [r for r in rows if r["series"] == name and r["build_s"] > 0]
        if not pts:
            continue
        line, = ax.plot([p["build_s"] for p in pts], [p["relative_run_time"] for p in pts], marker="o", label=name)
        for p in pts:
            ax.annotate(p["config"], (p["build_s"], p["relative_run_time"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=line.get_color())
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set(title=title, xlabel="build (compile, session build) seconds, log scale",
           ylabel="run time / least-effort configuration's")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return plots.finish_figure(fig, rows, path, show)


def level_plot(rows: Sequence[dict[str, Any]], *, x: str, title: str, path: str | Path, show: bool = True) -> Path:
    """Build seconds (left) and run ms (right) against a builder setting `x`, one line pair per model."""
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    right = left.twinx()
    for name in dict.fromkeys(r["model"] for r in rows):
        pts = [r for r in rows if r["model"] == name]
        left.plot([p[x] for p in pts], [p["build_s"] for p in pts], marker="o", label=f"{name}: build s")
        right.plot([p[x] for p in pts], [p["latency_ms"] for p in pts], marker="s", linestyle="--",
                   label=f"{name}: run ms")
    left.set(title=title, xlabel=x, ylabel="build seconds (solid)")
    right.set_ylabel("median run ms (dashed)")
    left.grid(True, alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [str(h.get_label()) for h in handles], fontsize=7, loc="upper left")
    return plots.finish_figure(fig, rows, path, show)
