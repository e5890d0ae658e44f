"""Sweeps over a parameter (batch size, shape, option) for several runners, and what they show.

Introduced in lab 01 (batching). `batch_sweep` measures each runner at each batch size, `passes`
times, so every point carries its run-to-run spread; `scaling` reads a throughput curve: the best
batch, the gain over batch 1, and the knee where the GPU saturates. `format_table` prints rows as a
table, plain text in a terminal and HTML in JupyterLab; where rows carry kernel time it adds the GPU's
busy share and the regime beside the latency.
"""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from tqdm.auto import tqdm

from . import bench
from .runners import Runner


def batch_sweep(runners: Sequence[Runner], batch_sizes: Sequence[int], *, model: str, unit: str = "items",
                passes: int = 2, measure_ms: float = 300.0, warmup_ms: float = 100.0,
                progress: bool = True) -> list[dict]:
    """One row per (runner, batch): median latency and throughput over `passes` passes, and the spread.

    Passes run the whole sweep again (not back-to-back repeats of one point), so the spread also
    catches drift such as clocks or other load changing during the sweep. Each row also carries the
    GPU's own time (``kernel_ms``, ``gpu_busy``, ``regime``: :func:`common.bench.kernel_fields`).
    """
    results: dict[tuple[str, int], list[bench.Measurement]] = {}
    steps = [(p, r, b) for p in range(passes) for r in runners for b in batch_sizes]
    for _, runner, batch in tqdm(steps, desc=f"{model} sweep", disable=not progress, mininterval=2.0):
        m = runner.measure(batch, name=model, measure_ms=measure_ms, warmup_ms=warmup_ms)
        results.setdefault((runner.label, batch), []).append(m)
    rows = []
    for runner in runners:
        for batch in batch_sizes:
            ms = results[(runner.label, batch)]
            medians = [m.latency_ms.median for m in ms]
            median_ms = statistics.median(medians)
            rows.append({
                "model": model,
                "backend": runner.label,
                "batch": batch,
                "latency_ms": median_ms,
                "p90_ms": statistics.median(m.latency_ms.p90 for m in ms),
                "p99_ms": statistics.median(m.latency_ms.p99 for m in ms),
                "host_ms": bench.median_host_ms(ms),
                f"throughput_{unit}_per_s": batch / (median_ms / 1e3),
                "spread_pct": bench.spread_pct(medians) if len(medians) > 1 else float("nan"),
                "pass_medians_ms": [round(x, 5) for x in medians],
                "prepare_s": runner.prepare_seconds.get(batch, float("nan")),
                "timer": ms[0].timer,
                **bench.kernel_fields(ms),
            })
    return rows


@dataclass(frozen=True)
class Scaling:
    """What a throughput-vs-batch curve shows."""

    best_batch: int
    best_throughput: float
    batch1_throughput: float
    knee_batch: int          # smallest batch reaching `saturation` of the best throughput
    saturation: float

    @property
    def gain_over_batch1(self) -> float:
        return self.best_throughput / self.batch1_throughput


def scaling(batches: Sequence[int], throughputs: Sequence[float], saturation: float = 0.8) -> Scaling:
    """Read a throughput curve measured at increasing batch sizes.

    While the GPU has idle units, doubling the batch nearly doubles throughput; once it is
    saturated, a larger batch only adds latency. The knee is the smallest batch whose throughput
    reaches `saturation` (80%) of the best: past it no batch adds more than 1/0.8 = 1.25x. Defined
    from the top of the curve, it is not fooled by the noise of host-bound points at small batches.
    """
    if len(batches) != len(throughputs) or not batches:
        raise ValueError("need one throughput per batch size")
    pts = sorted(zip(batches, throughputs))
    if pts[0][0] != 1:
        raise ValueError("the sweep must start at batch 1 to compare against it")
    best_batch, best = max(pts, key=lambda p: p[1])
    knee = next(b for b, t in pts if t >= saturation * best)
    return Scaling(best_batch=best_batch, best_throughput=best, batch1_throughput=pts[0][1], knee_batch=knee,
                   saturation=saturation)


def rows_for(rows: Sequence[dict], **match) -> list[dict]:
    """The rows whose fields equal `match` (e.g. backend=..., model=...)."""
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


#: Columns added beside the others when rows carry kernel time and the caller did not list them.
KERNEL_COLUMNS = ("gpu_busy", "regime")


class Table(str):
    """A table as plain text (it is that string: ``print`` shows it) that JupyterLab renders as HTML."""

    rows: list[list[str]]
    columns: list[str]

    def __new__(cls, text: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> "Table":
        table = super().__new__(cls, text)
        table.columns, table.rows = list(columns), [list(r) for r in rows]
        return table

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        cell = "padding:2px 8px;border-bottom:1px solid #ddd;white-space:nowrap;"

        def align(value: str) -> str:
            return "right" if _looks_numeric(value) else "left"

        head = "".join(f"<th style='{cell}text-align:right'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(
            f"<td style='{cell}text-align:{align(v)};font-variant-numeric:tabular-nums'>{html.escape(v)}</td>"
            for v in row) + "</tr>" for row in self.rows)
        return (f"<table class='trtlabs-table' style='border-collapse:collapse'><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def _looks_numeric(value: str) -> bool:
    try:
        float(value.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return False


def _carries_kernel_time(rows: Sequence[dict]) -> bool:
    return any(isinstance(r.get("kernel_ms"), float) and not math.isnan(r["kernel_ms"]) for r in rows)


def format_table(rows: Sequence[dict], columns: Sequence[str], floatfmt: str = "{:,.4g}",
                 kernel_columns: bool = True) -> Table:
    """A table of selected columns, numbers formatted: a :class:`Table` (plain text, HTML in JupyterLab).

    Where rows carry kernel time (``kernel_ms`` measured), the GPU's busy share and the regime are
    added after the listed columns unless listed already (``kernel_columns=False`` leaves them out).
    """
    columns = list(columns)
    if kernel_columns and _carries_kernel_time(rows):
        columns += [c for c in KERNEL_COLUMNS if c not in columns]

    def cell(column, v):
        if (column == "gpu_busy" or column.endswith("_busy")) and isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.0%}"
        return floatfmt.format(v) if isinstance(v, float) else str(v)

    body = [[cell(c, r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = [" | ".join(c.rjust(w) for c, w in zip(columns, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return Table("\n".join(lines), columns, body)
