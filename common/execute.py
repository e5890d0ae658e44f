"""Execute lab notebooks headless, in order, with progress, inside an optional time budget.

    python -m common.execute [labs/00_tour.ipynb ...] [--labs 00,03] [--scale small|full]
                             [--budget-min N] [--out DIR | --inplace] [--report]

Each notebook runs top to bottom in a fresh kernel of the current Python (as nbval does); a bar
shows its cells as they finish. Executed notebooks go to DIR (default `report/`, ignored by git)
together with their results (claims, figures: `DIR/results/`), never over the committed notebooks
unless `--inplace` is given (then results go to `results/`, and the report and timings to DIR). `--labs` picks a subset by number, `--scale` forces the labs' scale
(TRTLABS_SCALE) and `--budget-min` is a workshop's time budget: a lab whose last recorded duration
no longer fits is skipped, and no cell may run past the budget. `--report` then writes the HTML
report of everything in DIR (common.course_report). A failing lab is reported and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .env import project_root

DEFAULT_OUT = "report"
TIMINGS_FILE = "timings.json"


def lab_notebooks(root: Path | None = None) -> list[Path]:
    root = root or project_root()
    return sorted(p for p in (root / "labs").glob("[0-9][0-9]_*.ipynb"))


def select(notebooks: list[Path], labs: str | None) -> list[Path]:
    """The notebooks whose two-digit number is in the comma-separated `labs` ("00,3,11")."""
    if not labs:
        return notebooks
    wanted = {f"{int(x):02d}" for x in labs.replace(" ", "").split(",") if x}
    known = {p.name[:2] for p in notebooks}
    unknown = sorted(wanted - known)
    if unknown:
        raise SystemExit(f"no lab numbered {', '.join(unknown)}; the labs are {', '.join(sorted(known))}")
    return [p for p in notebooks if p.name[:2] in wanted]


def recorded_seconds(path: Path) -> float | None:
    """How long this notebook took when its committed outputs were produced, if recorded."""
    meta = json.loads(path.read_text()).get("metadata", {}).get("trtlabs", {})
    return meta.get("seconds")


def execute(path: Path, out_path: Path, timeout_s: float = 1200, progress: bool = True) -> float:
    """Run one notebook with its outputs and execution counts; return the seconds it took.

    The run's duration, machine and scale are kept in the notebook's metadata ("trtlabs"), which
    the time-budget planner reads back and nbval ignores.
    """
    import nbformat
    from nbclient import NotebookClient
    from tqdm import tqdm

    nb = nbformat.read(path, as_version=4)
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    bar = tqdm(total=n_code, desc=f"  {path.stem}", unit="cell", disable=not progress, mininterval=1,
               file=sys.stdout, leave=False)
    started: dict[int, float] = {}
    cell_seconds: dict[int, float] = {}

    def cell_started(cell_index: int, **_) -> None:
        started[cell_index] = time.perf_counter()

    def cell_done(cell_index: int, **_) -> None:
        cell_seconds[cell_index] = round(time.perf_counter() - started.get(cell_index, time.perf_counter()), 2)
        bar.update(1)

    client = NotebookClient(nb, timeout=max(1, int(timeout_s)), kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=cell_started, on_cell_executed=cell_done)
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    from .env import detect, scale

    slowest = sorted(cell_seconds.items(), key=lambda kv: -kv[1])[:5]
    nb.metadata["trtlabs"] = {"seconds": round(seconds, 1), "machine": detect().machine, "scale": scale(),
                              "slowest_cells": {str(i): s for i, s in slowest}}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    return seconds


def plan(notebooks: list[Path], budget_s: float | None) -> tuple[list[Path], list[str]]:
    """Labs that fit the budget by their recorded durations (in order), and why the rest do not."""
    if budget_s is None:
        return notebooks, []
    chosen, skipped, used = [], [], 0.0
    for path in notebooks:
        expected = recorded_seconds(path) or 0.0
        if used + expected > budget_s:
            skipped.append(f"{path.stem}: needs about {expected:.0f} s, {budget_s - used:.0f} s of the budget left")
            continue
        chosen.append(path)
        used += expected
    return chosen, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lab in labs/")
    parser.add_argument("--labs", help="comma-separated lab numbers to run, e.g. 00,01,03")
    parser.add_argument("--scale", choices=("small", "full"), help="force the labs' scale (TRTLABS_SCALE)")
    parser.add_argument("--budget-min", type=float, help="time budget in minutes for the whole run")
    parser.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT}/)")
    parser.add_argument("--inplace", action="store_true",
                        help="overwrite the committed notebooks themselves (results go to results/, "
                             "timings and report to the output folder)")
    parser.add_argument("--report", action="store_true", help="write the HTML report when done")
    args = parser.parse_args(argv)

    notebooks = select([p.resolve() for p in args.notebooks] or lab_notebooks(), args.labs)
    out_dir = (args.out or project_root() / DEFAULT_OUT).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.scale:
        os.environ["TRTLABS_SCALE"] = args.scale   # inherited by every kernel started below
    if not args.inplace:   # results next to the executed notebooks, not over results/
        os.environ["TRTLABS_RESULTS"] = str(out_dir / "results")
    budget_s = args.budget_min * 60 if args.budget_min else None
    notebooks, skipped = plan(notebooks, budget_s)
    for line in skipped:
        print(f"skipped (time budget): {line}", flush=True)

    timings: dict[str, float | None] = {}
    start = time.perf_counter()
    for i, path in enumerate(notebooks, 1):
        left_s = budget_s - (time.perf_counter() - start) if budget_s else 1200
        if left_s <= 0:
            skipped.append(f"{path.stem}: the budget ran out before it started")
            print(f"skipped (time budget): {skipped[-1]}", flush=True)
            continue
        target = path if args.inplace else out_dir / "notebooks" / path.name
        print(f"[{i}/{len(notebooks)}] {path.name} ...", flush=True)
        try:
            seconds = execute(path, target, timeout_s=min(1200, left_s))
        except Exception as exc:   # report which lab failed and go on with the others
            print(f"    FAILED: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
            timings[path.name] = None
            continue
        timings[path.name] = round(seconds, 1)
        print(f"    done in {seconds:.1f} s", flush=True)
    total = time.perf_counter() - start
    summary = {"labs": timings, "skipped": skipped, "total_seconds": round(total, 1),
               "scale": args.scale or "auto", "budget_minutes": args.budget_min}
    (out_dir / TIMINGS_FILE).write_text(json.dumps(summary, indent=1))
    failed = [name for name, t in timings.items() if t is None]
    print(f"{len(timings) - len(failed)} of {len(timings)} labs ran in {total:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; {len(skipped)} skipped for time" if skipped else ""))
    if args.report:
        from .course_report import write_report
        from .env import results_dir

        if args.inplace:
            path = write_report(out_dir, notebooks_dir=project_root() / "labs", results=results_dir())
        else:
            path = write_report(out_dir)
        print("report:", path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
