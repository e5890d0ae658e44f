"""Figures with fixed sizes, saved as PNG with their data as CSV beside them.

Introduced in lab 00 (tour). Every series is labelled with the backend that produced it, and the
title names the machine, so a figure read on its own still says where its numbers came from.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib.pyplot as plt

FIGSIZE = (8.0, 4.5)
DPI = 100


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Rows of dicts to CSV (columns in first-seen order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def line_plot(rows: Sequence[dict], *, x: str, y: str, series: str, title: str, xlabel: str, ylabel: str,
              path: str | Path, logx: bool = False, logy: bool = False, marks: Iterable[tuple[float, str]] = (),
              show: bool = True):
    """One line per distinct value of `series` (e.g. the backend label); `marks` draws vertical lines."""
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for name in dict.fromkeys(r[series] for r in rows):
        pts = sorted((r[x], r[y]) for r in rows if r[series] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=str(name))
    for xv, text in marks:
        ax.axvline(xv, color="grey", linestyle="--", linewidth=1)
        ax.annotate(text, (xv, ax.get_ylim()[1]), textcoords="offset points", xytext=(4, -12), fontsize=8)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, rows, path, show)


def bar_plot(rows: Sequence[dict], *, label: str, value: str, title: str, ylabel: str, path: str | Path,
             annotate_fmt: str = "{:.0f}", show: bool = True):
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    labels = [str(r[label]) for r in rows]
    values = [r[value] for r in rows]
    bars = ax.bar(labels, values, color="#76b900")
    for bar, v in zip(bars, values):
        ax.annotate(annotate_fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(True, axis="y", alpha=0.3)
    return finish_figure(fig, rows, path, show)


def finish_figure(fig, rows: Sequence[dict], path: str | Path, show: bool = True) -> Path:
    """Save `fig` as PNG and its data `rows` as CSV beside it, show it (notebooks), close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"))
    write_csv(rows, path.with_suffix(".csv"))
    if show:
        plt.show()
    plt.close(fig)
    return path.with_suffix(".png")
