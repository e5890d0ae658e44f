"""Execute lab notebooks headless, in order, with progress, inside an optional time budget.

Each notebook runs top to bottom in a fresh kernel of the current Python (as nbval does); a bar shows
its cells as they finish. A lab's kernel starts while the lab before it runs (and imports torch and the
libraries its notebook lists under ``metadata["trtlabs"]["preload"]`` while it waits: no cell of the
lab runs before its turn), and a finished lab's kernel shuts down behind the next one, so kernels'
start-up and teardown add nothing to the course's time. Executed notebooks go to DIR (default
`report/`, ignored by git) with their results (claims, figures: `DIR/results/`), never over the
committed notebooks unless `--inplace` is given (then results go to `results/`, the report and
timings to DIR). `--labs` picks labs by number,
`--scale` forces the labs' scale (TRTLABS_SCALE), `--budget-min` is a workshop's time budget: a lab
whose recorded duration on this machine and scale (common.durations) no longer fits is skipped, and
no cell runs past the budget. `--plan` prints that plan and runs nothing. `--report` writes the HTML
report of the run (common.course_report).

A failed lab keeps its notebook, executed up to the failing cell with its traceback, and the run goes
on; the error's own last lines are printed with the cell. Ctrl-C stops the run where it is, keeps what
ran, and still writes the timings and the report. Every argument is checked before any lab starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from . import durations
from .env import FolderError, check_folders, check_writable, detect, project_root
from .files import write_text_atomic

PROG = "python -m common.execute"
DEFAULT_OUT = "report"
TIMINGS_FILE = "timings.json"
#: The longest a single cell may run when no budget says otherwise.
CELL_LIMIT_S = 1200
#: Imported by each lab's kernel while it waits for its turn (every lab imports them first thing).
PRELOAD = ("torch",)
#: A notebook lists the heavy libraries its kernel may import ahead (the compiler, ModelOpt, ONNX)
#: under ``metadata["trtlabs"]["preload"]``: imported, like PRELOAD, before the lab's turn.
PRELOAD_KEY = "preload"
#: The nice value of the thread that imports them: a waiting kernel takes no CPU the running lab wants.
PRELOAD_NICE = 19
#: How long an interrupted lab's kernel gets to stop by itself before it is killed.
STOP_GRACE_S = 10.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class UsageError(ValueError):
    """An argument that cannot work; raised before any lab starts."""


def lab_notebooks(root: Path | None = None) -> list[Path]:
    root = root or project_root()
    return sorted(p for p in (root / "labs").glob("[0-9][0-9]_*.ipynb"))


def parse_labs(labs: str) -> set[str]:
    """The two-digit numbers in the comma-separated `labs` ("00, 3,11"); anything else is a UsageError."""
    pieces = [x.strip() for x in labs.split(",")]
    if not any(pieces):
        raise UsageError(f"--labs names no lab ({labs!r}); give lab numbers separated by commas, e.g. 00,01,03")
    bad = [x for x in pieces if x and not (x.isdigit() and len(x) <= 2)]
    if bad:
        raise UsageError(f"--labs takes lab numbers separated by commas (e.g. 00,01,03); "
                         f"{', '.join(map(repr, bad))} is not one")
    return {f"{int(x):02d}" for x in pieces if x}


def select(notebooks: list[Path], labs: str | None) -> list[Path]:
    """The notebooks whose two-digit number is in the comma-separated `labs` ("00,3,11")."""
    if labs is None:
        return notebooks
    wanted = parse_labs(labs)
    known = {p.name[:2] for p in notebooks}
    unknown = sorted(wanted - known)
    if unknown:
        raise UsageError(f"no lab numbered {', '.join(unknown)}; the labs are {', '.join(sorted(known))}")
    return [p for p in notebooks if p.name[:2] in wanted]


# -- one notebook -------------------------------------------------------------------------------

@dataclass
class LabRun:
    """What became of one lab: "ran", "failed" or "interrupted", with the error and its cell."""

    status: str
    seconds: float
    notebook: str = ""
    error: str = ""
    cell: int | None = None            # 1-based position of the failing cell in the notebook
    execution_count: int | None = None

    def where(self) -> str:
        if self.cell is None:
            return ""
        count = f", In [{self.execution_count}]" if self.execution_count else ""
        return f"cell {self.cell}{count}"


def _tail(text: str, lines: int = 25) -> str:
    """The end of a traceback, from its last frame: the line that raised and the whole message."""
    rows = _ANSI.sub("", text).rstrip().splitlines()
    starts = [i for i, r in enumerate(rows) if r.startswith(("File ", "Cell In[", "Traceback", "---->"))]
    frame = [i for i in starts if not rows[i].startswith("---->")]
    rows = rows[frame[-1]:] if frame else rows
    return "\n".join(rows[-lines:]) if len(rows) > lines else "\n".join(rows)


def describe_error(exc: BaseException, nb, cell_index: int | None) -> str:
    """The error a lab stopped on, as a learner needs it: the failing cell's traceback tail (the
    exception's own last lines, never cut from the end), or the runner's own message."""
    if cell_index is not None:
        for out in nb.cells[cell_index].get("outputs", []):
            if out.get("output_type") == "error":
                return _tail("\n".join(out.get("traceback", [])) or f"{out.get('ename')}: {out.get('evalue')}")
    if hasattr(exc, "ename"):
        return f"{getattr(exc, 'ename')}: {getattr(exc, 'evalue', '')}"
    text = str(exc).split("Here is a preview of the cell contents", 1)[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _kernel_group(client) -> int | None:
    provisioner = getattr(getattr(client, "km", None), "provisioner", None)
    return getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)


def _signal_kernel(client, sig: int) -> bool:
    """Send `sig` to the kernel's process group; False if there is none (any more)."""
    group = _kernel_group(client)
    if group is None:
        return False
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_kernel(client, done: threading.Event) -> None:
    """Interrupt the kernel (the running cell raises KeyboardInterrupt), then kill it if it lingers."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        if not _signal_kernel(client, sig):
            break
        try:
            if done.wait(STOP_GRACE_S):
                return
        except KeyboardInterrupt:   # a second Ctrl-C: do not wait, kill
            pass
    done.wait(STOP_GRACE_S)


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

_PRELOAD_CODE = """\
def _preload(first, modules):
    import os, sys, threading

    def load(names):
        for name in names:
            try:
                __import__(name)
            except Exception:   # the lab's own import shows the error, in its cell
                pass

    def low_priority():
        if sys.platform.startswith("linux"):   # the nice value is per thread there; the cells' thread keeps its own
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), {nice})
            except OSError:
                pass
        load(modules)

    load(first)   # PyTorch's profiler (kineto) registers on the thread that loads it: the cells' thread
    worker = threading.Thread(target=low_priority, name="trtlabs preload", daemon=True)
    worker.start()
    worker.join()   # the kernel answers only after it: no cell imports alongside it

_preload({first!r}, {modules!r})
"""


def _is_module_name(name: object) -> bool:
    return isinstance(name, str) and _MODULE_NAME.fullmatch(name) is not None


def _preload_line(modules: Sequence[str]) -> str:
    """One line for the kernel's ``exec_lines`` that imports `modules` (those installed) and binds no
    name: the notebook imports them itself. The imports run in a thread at the lowest priority, which
    the kernel waits for before it takes its first cell, so that a kernel waiting for its turn slows
    the lab that is running as little as the machine allows. PRELOAD's own modules (torch) are
    imported first, on the kernel's main thread: PyTorch's profiler registers itself on the thread
    that loads it and complains ("External init callback must run in same thread as registerClient")
    when a cell's thread later profiles."""
    modules = tuple(modules)
    for module in modules:
        if not _is_module_name(module):
            raise ValueError(f"not a module name: {module!r}")
    first = tuple(m for m in modules if m in PRELOAD)
    rest = tuple(m for m in modules if m not in PRELOAD)
    return f"exec({_PRELOAD_CODE.format(nice=PRELOAD_NICE, first=first, modules=rest)!r}, {{}})"


def preload_of(nb, path: Path) -> tuple[str, ...]:
    """What `nb`'s kernel imports while it waits: PRELOAD, then the notebook's own list, once each."""
    listed = nb.metadata.get("trtlabs", {}).get(PRELOAD_KEY, [])
    if not isinstance(listed, list) or not all(_is_module_name(m) for m in listed):
        raise UsageError(f"{path.name}: metadata trtlabs.{PRELOAD_KEY} must be a list of module names, got {listed!r}")
    return tuple(dict.fromkeys((*PRELOAD, *listed)))


class LabSession:
    """One notebook in its own fresh kernel, which starts as soon as the session is made and waits.

    The runner makes the next lab's session while the current lab runs, so that kernel's start-up
    (a new Python process, IPython, the kernel's handshake) overlaps the current lab instead of
    adding to the course, and a finished lab's kernel shuts down behind the next lab's first cells.
    A kernel starts nothing of the lab before :meth:`run`: no cell, no import, no GPU work.

    Everything nbclient does for the session happens in one worker thread with its own event loop,
    so that Ctrl-C reaches the runner as KeyboardInterrupt (nbclient's own SIGINT handler, installed
    only in the main thread, would kill the kernel and let the next lab start).
    """

    def __init__(self, path: Path, preload: Sequence[str] = ()) -> None:
        """`preload`: the modules the kernel imports while it waits (:func:`preload_of`)."""
        import nbformat

        self.path, self.preload = path, tuple(preload)
        self.nb = nbformat.read(path, as_version=4)
        for cell in self.nb.cells:   # no committed output may pass for this run's
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        self.client = None
        self.exc: BaseException | None = None
        self._go, self._cancelled = threading.Event(), False
        self._run_options: dict = {}       # the cell timeout and hooks, set by run() before _go
        self._done = threading.Event()     # the cells have run (or the session ended without them)
        self._closed = threading.Event()   # the kernel is shut down
        threading.Thread(target=self._work, name=f"kernel {path.stem}", daemon=True).start()

    def _work(self) -> None:
        import asyncio

        from nbclient import NotebookClient
        from traitlets.config import Config

        loop = asyncio.new_event_loop()
        try:
            # IPC sockets in a private folder: the kernel is reachable only from this machine, and
            # it has no "running over TCP without encryption" warning to print once per lab.
            with tempfile.TemporaryDirectory(prefix="trtlabs-kernel-") as sockets:
                config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
                client = NotebookClient(self.nb, timeout=CELL_LIMIT_S, kernel_name="python3", config=config,
                                        resources={"metadata": {"path": str(self.path.parent)}})
                if self.preload:   # imported while the kernel waits; no name bound in the notebook
                    client.extra_arguments += [f"--IPKernelApp.exec_lines={_preload_line(self.preload)}"]
                client.km = client.create_kernel_manager()
                client.owns_km = False   # this session shuts the kernel down, after the runner has the notebook
                self.client = client
                try:
                    try:
                        loop.run_until_complete(client.async_start_new_kernel())
                        loop.run_until_complete(client.async_start_new_kernel_client())
                        self._go.wait()
                        if not self._cancelled:
                            for option, value in self._run_options.items():
                                setattr(client, option, value)
                            loop.run_until_complete(client.async_execute())
                    except BaseException as exc:   # handed to the runner, which decides
                        self.exc = exc
                    finally:
                        self._done.set()
                finally:
                    loop.run_until_complete(client._async_cleanup_kernel())
        except BaseException as exc:   # the kernel could not even be set up
            self.exc = self.exc or exc
        finally:
            self._done.set()
            loop.close()
            self._closed.set()

    def cancel(self) -> None:
        """Shut the waiting kernel down without running the lab."""
        self._cancelled = True
        self._go.set()

    def wait_closed(self, timeout_s: float = 30.0) -> bool:
        return self._closed.wait(timeout_s)

    def kill(self) -> None:
        """Kill the kernel's process group at once (a second Ctrl-C while kernels shut down)."""
        _signal_kernel(self.client, signal.SIGKILL)

    def run(self, out_path: Path, timeout_s: float = CELL_LIMIT_S, progress: bool = True) -> LabRun:
        """Run the notebook and write it to `out_path` whatever happens: complete, or up to the cell
        that failed (with its traceback) or was interrupted; cells after it are left without outputs.

        The run's status, duration, machine and scale are kept in the notebook's metadata
        ("trtlabs"), which nbval ignores. Ctrl-C stops the kernel and returns the status "interrupted".
        """
        import nbformat
        from tqdm import tqdm

        nb = self.nb
        n_code = sum(c.cell_type == "code" for c in nb.cells)
        bar = tqdm(total=n_code, desc=f"  {self.path.stem}", unit="cell", disable=not progress, mininterval=1,
                   file=sys.stdout, leave=False)
        started: dict[int, float] = {}
        cell_seconds: dict[int, float] = {}
        current: list[int] = []

        def cell_started(cell_index: int, **_) -> None:
            started[cell_index] = time.perf_counter()
            current[:] = [cell_index]

        def cell_done(cell_index: int, **_) -> None:
            cell_seconds[cell_index] = round(time.perf_counter() - started.get(cell_index, time.perf_counter()), 2)
            bar.update(1)

        self._run_options = {"timeout": max(1, int(timeout_s)), "on_cell_start": cell_started,
                             "on_cell_executed": cell_done}
        interrupted = False
        t0 = time.perf_counter()
        try:
            self._go.set()
            while not self._done.wait(0.2):   # not Thread.join: an interrupted join can leave is_alive() wrong
                pass
        except KeyboardInterrupt:
            self._cancelled = True   # a kernel still starting runs no cell
            if self.client is not None:
                _stop_kernel(self.client, self._done)
            interrupted = True
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
        exc = self.exc if not interrupted else KeyboardInterrupt()
        failed_at = current[0] if exc is not None and current else None
        if exc is not None and getattr(exc, "ename", None) == "KeyboardInterrupt":
            interrupted = True
        run = LabRun(status="interrupted" if interrupted else "failed" if exc is not None else "ran",
                     seconds=round(seconds, 1))
        if exc is not None:
            run.error = "interrupted (Ctrl-C)" if interrupted else describe_error(exc, nb, failed_at)
            if failed_at is not None:
                run.cell, run.execution_count = failed_at + 1, nb.cells[failed_at].get("execution_count")

        from .env import scale

        slowest = sorted(cell_seconds.items(), key=lambda kv: -kv[1])[:5]
        record = nb.metadata.get("trtlabs", {})
        declared = {PRELOAD_KEY: record[PRELOAD_KEY]} if PRELOAD_KEY in record else {}   # the notebook's own
        nb.metadata["trtlabs"] = {**declared, "seconds": run.seconds, "machine": detect().machine,
                                  "scale": str(scale()), "recorded_as": durations.machine_key(),
                                  "slowest_cells": {str(i): s for i, s in slowest}}
        if run.status != "ran":
            nb.metadata["trtlabs"].update(status=run.status, error=run.error, cell=run.cell)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = without_progress_bars(cell.outputs)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_path, nbformat.writes(nb))
        return run


def execute(path: Path, out_path: Path, timeout_s: float = CELL_LIMIT_S, progress: bool = True) -> LabRun:
    """Run one notebook in a fresh kernel and write it to `out_path` (:meth:`LabSession.run`); the
    kernel is shut down before this returns."""
    session = LabSession(path)
    try:
        return session.run(out_path, timeout_s=timeout_s, progress=progress)
    finally:
        session.wait_closed()


#: A progress bar's line as tqdm writes it to a text stream ("desc:  40%|████      | 2/5 [00:01<...]").
_PROGRESS_LINE = re.compile(r"^[^\n]*\d+%\|[^|]*\| *[\d.?]+[kMG]?/[\d.?]+[kMG]? \[[^\]]*\]\s*$")


def without_progress_bars(outputs: list) -> list:
    """`outputs` with the progress-bar lines taken out of their stderr streams (and streams left empty
    dropped): the bars are for whoever watches a run, and an executed notebook keeps no residue."""
    import nbformat

    kept = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            lines = re.split(r"(?<=\n)|\r", "".join(out.get("text", "")))
            text = "".join(line for line in lines if not _PROGRESS_LINE.match(line.strip("\n")))
            if not text.strip():
                continue
            out = nbformat.NotebookNode({**out, "text": text})
        kept.append(out)
    return kept


# -- the plan -----------------------------------------------------------------------------------

def plan(notebooks: list[Path], budget_s: float | None, seconds: dict[str, float]) -> tuple[list[Path], list[str]]:
    """Labs that fit the budget by their expected `seconds` (by notebook stem), in order, and why
    the rest do not. A lab with no recorded duration is expected to take as long as the longest one."""
    if budget_s is None:
        return notebooks, []
    fallback = max(seconds.values(), default=0.0)
    chosen, skipped, used = [], [], 0.0
    for path in notebooks:
        expected = seconds.get(path.stem, fallback)
        if used + expected > budget_s:
            skipped.append(f"{path.stem}: needs about {expected:.0f} s, {budget_s - used:.0f} s of the budget left")
            continue
        chosen.append(path)
        used += expected
    return chosen, skipped


def describe_plan(notebooks: list[Path], budget_s: float | None, est: durations.Estimate) -> str:
    """What `--plan` prints: each lab with its expected duration and whether it fits."""
    chosen, skipped = plan(notebooks, budget_s, est.seconds)
    fallback = max(est.seconds.values(), default=0.0)
    width = max(len(p.stem) for p in notebooks)
    lines = [f"Plan from {est.note}" + (f"; budget {budget_s / 60:g} min" if budget_s else "; no time budget") + ":"]
    reasons = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in skipped}
    for path in notebooks:
        recorded = path.stem in est.seconds
        expected = est.seconds.get(path.stem, fallback)
        how = f"{expected:6.0f} s" + ("" if recorded or not est.seconds else " (not recorded: assumed the longest)")
        verdict = "runs" if path in chosen else f"skipped: {reasons[path.stem]}"
        lines.append(f"  {path.stem:<{width}}  {how if est.seconds else '     ? s'}  {verdict}")
    total = sum(est.seconds.get(p.stem, fallback) for p in chosen)
    lines.append(f"{len(chosen)} of {len(notebooks)} labs planned, about {total:.0f} s"
                 + (f" of {budget_s:.0f} s" if budget_s else "")
                 + ("" if est.exact else " (estimated: this machine has no record at this scale)"))
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     epilog="Example: python -m common.execute --labs 00,01 --scale small "
                                            "--budget-min 20 --report")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lab in labs/")
    parser.add_argument("--labs", help="comma-separated lab numbers to run, e.g. 00,01,03")
    parser.add_argument("--scale", choices=("small", "full"), help="force the labs' scale (TRTLABS_SCALE)")
    parser.add_argument("--budget-min", type=float, help="time budget in minutes for the whole run (> 0)")
    parser.add_argument("--plan", action="store_true",
                        help="print which labs fit the budget, from which recorded durations, and run nothing")
    parser.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT}/)")
    parser.add_argument("--inplace", action="store_true",
                        help="overwrite the committed notebooks themselves (results go to results/, "
                             "timings and report to the output folder); records durations like --record-durations")
    parser.add_argument("--record-durations", action="store_true",
                        help="also record the labs' durations in docs/durations.json "
                             "(for a run whose results are committed)")
    parser.add_argument("--report", action="store_true", help="write the HTML report when done")
    return parser


def _notebooks(args) -> list[Path]:
    if args.notebooks:
        missing = [str(p) for p in args.notebooks if not p.is_file() or p.suffix != ".ipynb"]
        if missing:
            raise UsageError(f"not a notebook file: {', '.join(missing)}")
        found = [p.resolve() for p in args.notebooks]
    else:
        found = lab_notebooks()
        if not found:
            raise UsageError(f"no lab notebooks (NN_name.ipynb) in {project_root() / 'labs'}: "
                             "run this from a complete checkout of the course")
    return select(found, args.labs)


def _preloads(notebooks: Sequence[Path]) -> dict[Path, tuple[str, ...]]:
    """Each notebook's preload (:func:`preload_of`), its list checked before any lab starts."""
    import nbformat

    found = {}
    for path in notebooks:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:   # not a notebook: the lab fails in its turn, with nbformat's own error
            continue
        found[path] = preload_of(nb, path)
    return found


def _check(args, parser: argparse.ArgumentParser):
    """Every argument and folder checked before any lab starts: (notebooks, out_dir, budget_s, preloads)."""
    try:
        notebooks = _notebooks(args)
        preloads = _preloads(notebooks)
        if args.budget_min is not None and not (math.isfinite(args.budget_min) and args.budget_min > 0):
            raise UsageError(f"--budget-min must be a positive number of minutes, got {args.budget_min:g}")
        out_dir = (args.out or project_root() / DEFAULT_OUT).expanduser().resolve()
        if args.plan:
            return notebooks, out_dir, args.budget_min * 60 if args.budget_min else None, preloads
        check_writable(out_dir, "the output folder (--out)")
        if args.inplace:
            for folder in sorted({p.parent for p in notebooks}):
                check_writable(folder, "the notebooks' folder (--inplace)")
        else:   # results next to the executed notebooks, not over results/
            os.environ["TRTLABS_RESULTS"] = str(out_dir / "results")
        check_folders()
    except (UsageError, FolderError) as exc:
        parser.error(str(exc))
    return notebooks, out_dir, args.budget_min * 60 if args.budget_min else None, preloads


def _clear_results(lab: str) -> None:
    """Remove what an earlier run of `lab` left in the results folder, so that nothing of it can be
    shown as this run's."""
    from .env import results_dir

    folder = results_dir(lab)
    for old in [folder / "claims.json", *folder.glob("*.png"), *folder.glob("*.csv")]:
        old.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.scale:
        os.environ["TRTLABS_SCALE"] = args.scale   # inherited by every kernel started below
    notebooks, out_dir, budget_s, preloads = _check(args, parser)
    try:
        from .env import scale

        run_scale = str(scale())
    except ValueError as exc:   # a TRTLABS_SCALE typo in the caller's environment
        parser.error(str(exc))
    machine = durations.machine_key()
    est = durations.estimate(machine, run_scale)
    if args.plan:
        print(describe_plan(notebooks, budget_s, est))
        return 0
    if budget_s is not None:
        print(f"time budget {budget_s / 60:g} min, planned from {est.note}", flush=True)
    chosen, skipped = plan(notebooks, budget_s, est.seconds)
    for line in skipped:
        print(f"skipped (time budget): {line}", flush=True)

    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs: dict[str, LabRun] = {}
    interrupted, current = "", ""
    start = time.perf_counter()
    fallback = max(est.seconds.values(), default=0.0)
    sessions: dict[Path, LabSession] = {}

    def session(path: Path) -> LabSession:
        if path not in sessions:
            sessions[path] = LabSession(path, preload=preloads.get(path, PRELOAD))
        return sessions[path]

    try:
        for i, path in enumerate(chosen, 1):
            left_s = budget_s - (time.perf_counter() - start) if budget_s else CELL_LIMIT_S
            expected = est.seconds.get(path.stem, fallback) if budget_s else 0.0
            if left_s <= 0 or expected > left_s:
                if path in sessions:
                    sessions[path].cancel()
                skipped.append(f"{path.stem}: needs about {expected:.0f} s, {max(0.0, left_s):.0f} s of the budget left")
                print(f"skipped (time budget): {skipped[-1]}", flush=True)
                continue
            target = path if args.inplace else out_dir / "notebooks" / path.name
            print(f"[{i}/{len(chosen)}] {path.name} ...", flush=True)
            current = path.name
            _clear_results(path.stem)
            this = session(path)
            if i < len(chosen):
                session(chosen[i])   # the next lab's kernel starts while this lab runs
            run = this.run(target, timeout_s=min(CELL_LIMIT_S, left_s))
            run.notebook = _relative(target, out_dir)
            runs[path.name] = run
            if run.status == "interrupted":
                raise KeyboardInterrupt
            if run.status == "ran":
                print(f"    done in {run.seconds:.1f} s", flush=True)
            else:
                print(f"    FAILED in {run.where() or 'the kernel'} after {run.seconds:.1f} s:", flush=True)
                print("      " + run.error.replace("\n", "\n      "), flush=True)
                print(f"    the notebook as far as it ran: {target}", flush=True)
    except KeyboardInterrupt:
        stopped = runs.get(current)
        if stopped is None and current:   # stopped before its kernel ran a cell
            runs[current] = stopped = LabRun("interrupted", 0.0, error="interrupted (Ctrl-C) while starting")
        interrupted = (f"{current}, {stopped.where() or 'before its first cell'}"
                       if stopped and stopped.status == "interrupted" else "between labs")
        print(f"\ninterrupted ({interrupted}): the run stops here; what ran is kept", flush=True)
    finally:
        for waiting in sessions.values():
            waiting.cancel()   # a kernel started ahead for a lab that did not run
        try:
            for waiting in sessions.values():
                waiting.wait_closed()
        except KeyboardInterrupt:   # Ctrl-C again while kernels shut down: no kernel is left behind
            for waiting in sessions.values():
                waiting.kill()
            raise
    total = time.perf_counter() - start

    _record(runs, machine, run_scale, record_committed=args.inplace or args.record_durations)
    summary = {"started_at": started_at, "machine": detect().machine, "scale": run_scale,
               "budget_minutes": args.budget_min, "planned_from": est.note,
               "labs": {name: asdict(run) for name, run in runs.items()}, "skipped": skipped,
               "interrupted": interrupted or None, "total_seconds": round(total, 1)}
    write_text_atomic(out_dir / TIMINGS_FILE, json.dumps(summary, indent=1))
    failed = [name for name, run in runs.items() if run.status != "ran"]
    print(f"{len(runs) - len(failed)} of {len(runs)} labs ran in {total:.1f} s"
          + (f"; did not finish: {', '.join(failed)}" if failed else "")
          + (f"; {len(skipped)} skipped for time" if skipped else ""), flush=True)
    if args.report:
        from .course_report import write_report
        from .env import results_dir

        results = results_dir() if args.inplace else None
        try:
            print("report:", write_report(out_dir, results=results), flush=True)
        except OSError as exc:   # the run's notebooks and timings are written: say what failed, keep them
            print(f"error: the report could not be written: {exc}", file=sys.stderr)
            return 1
    if interrupted:
        return 130
    return 1 if failed else 0


def _relative(path: Path, out_dir: Path) -> str:
    try:
        return str(path.relative_to(out_dir))
    except ValueError:
        return str(path)


def _record(runs: dict[str, LabRun], machine: str, scale: str, record_committed: bool) -> None:
    """This run's durations of completed labs into this machine's record (and the committed one)."""
    done = {Path(name).stem: run.seconds for name, run in runs.items() if run.status == "ran"}
    if not done:
        return
    targets = [durations.local_file()] + ([durations.COMMITTED] if record_committed else [])
    for target in targets:
        try:
            durations.record(target, machine, scale, done)
        except OSError as exc:   # a planner's record is never worth failing a finished run for
            print(f"warning: could not record durations in {target}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
