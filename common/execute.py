"""Execute lab notebooks headless, in order, and keep their outputs.

`python -m common.execute [labs/00_tour.ipynb ...] [--out DIR | --inplace]` runs each notebook
top to bottom in a fresh kernel of the current Python (as nbval does), reports each one's
duration, and writes the executed notebook to DIR (default results/executed) or, with
--inplace, over the committed one. A failing cell stops that notebook and is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .env import project_root, results_dir


def lab_notebooks(root: Path | None = None) -> list[Path]:
    root = root or project_root()
    return sorted(p for p in (root / "labs").glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, out_path: Path, timeout_s: int = 1200) -> float:
    """Run one notebook with its outputs and execution counts; return the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lab in labs/")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="folder for executed notebooks (default results/executed)")
    where.add_argument("--inplace", action="store_true", help="overwrite the notebooks themselves")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or lab_notebooks()
    out_dir = args.out or results_dir("executed")
    timings = {}
    for i, path in enumerate(notebooks, 1):
        target = path if args.inplace else out_dir / path.name
        print(f"[{i}/{len(notebooks)}] {path.name} ...", flush=True)
        try:
            seconds = execute(path, target)
        except Exception as exc:   # report which lab failed and go on with the others
            print(f"    FAILED: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
            timings[path.name] = None
            continue
        timings[path.name] = round(seconds, 1)
        print(f"    done in {seconds:.1f} s -> {target}", flush=True)
    (Path(out_dir) / "timings.json").write_text(json.dumps(timings, indent=1))
    failed = [name for name, t in timings.items() if t is None]
    total = sum(t for t in timings.values() if t)
    print(f"{len(notebooks) - len(failed)} of {len(notebooks)} labs ran in {total:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
