"""Figures with fixed sizes, saved as PNG with their data as CSV beside them.

Introduced in lab 00 (tour). Every series is labelled with the backend that produced it, and the
title names the machine, so a figure read on its own still says where its numbers came from. A title
too long for the figure is wrapped onto more lines, never clipped; the PNG carries its title and axes
as metadata ("Title", "Description"), which the course report uses as the figure's caption. Both
files are written atomically (common.files).
"""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib.pyplot as plt

from .files import write_atomic, write_text_atomic

FIGSIZE = (8.0, 4.5)
DPI = 100


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Rows of dicts to CSV (columns in first-seen order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())
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


def caption(fig) -> tuple[str, str]:
    """What `fig` shows, from its own texts: (its title or axes titles, each axes' "y against x")."""
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    titles = [t for ax in fig.axes for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if t]
    title = " ".join((suptitle or " | ".join(dict.fromkeys(titles))).split())
    axes = [f"{ax.get_ylabel()} against {ax.get_xlabel()}" for ax in fig.axes if ax.get_xlabel() and ax.get_ylabel()]
    return title, "; ".join(dict.fromkeys(" ".join(a.split()) for a in axes))


def _clipped(text, renderer, width: float, pad: float) -> float:
    """How much narrower `text` must get to lie inside the figure (0 when it does)."""
    box = text.get_window_extent(renderer)
    return max(0.0, pad - box.x0) * 2 + max(0.0, box.x1 - (width - pad)) * 2


def fit_titles(fig, pad: float = 4.0) -> None:
    """Lay `fig` out, wrapping every title that would cross the figure's edge onto more lines."""
    texts = [getattr(ax, name) for ax in fig.axes for name in ("title", "_left_title", "_right_title")]
    if getattr(fig, "_suptitle", None):
        texts.append(fig._suptitle)
    for _ in range(6):   # each pass narrows what still crosses the edge; the layout moves with it
        fig.tight_layout()
        renderer = fig.canvas.get_renderer()
        changed = False
        for text in texts:
            content = text.get_text()
            excess = _clipped(text, renderer, fig.bbox.width, pad) if content else 0.0
            if excess:
                width = text.get_window_extent(renderer).width
                longest = max(len(line) for line in content.splitlines())
                chars = max(8, int(longest * (width - excess) / width) - 1)
                text.set_text(textwrap.fill(" ".join(content.split()), chars))
                changed = True
        if not changed:
            return


def finish_figure(fig, rows: Sequence[dict], path: str | Path, show: bool = True) -> Path:
    """Save `fig` as PNG (its caption in the metadata) and its data `rows` as CSV beside it, show it
    (notebooks), close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    title, description = caption(fig)
    fit_titles(fig)
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Title": title, "Description": description})
    write_atomic(path.with_suffix(".png"), png.getvalue())
    write_csv(rows, path.with_suffix(".csv"))
    if show:
        plt.show()
    plt.close(fig)
    return path.with_suffix(".png")
