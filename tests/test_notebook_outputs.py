"""No committed notebook output shows a figure above 100% of its ceiling (COURSE_DESIGN §5).

Scanned: every "N% of ..." in the outputs' text, and every number in a plain-text table column whose
name starts with ``pct_of`` (``pct_of_ceiling``, ``pct_of_copy``, ...). A figure above 100% of a
ceiling means the ceiling was not the best the machine reaches, or the figure counts something the
ceiling does not.
"""

import json
import re
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parent.parent / "labs"

#: Notebooks whose committed outputs predate the ceilings that no figure exceeds: they fail today and
#: are expected to (xfail) until they are executed again on the GPU machine. Empty it after that run.
AWAITING_RERUN: set[str] = set()

_PCT_OF = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*%\s+of\b")
_NUMBER = re.compile(r"^[+-]?\d[\d,]*(?:\.\d+)?(?:[eE][+-]?\d+)?$")


def _texts(nb: dict):
    """(cell index, text) of every text output (streams, and the text/plain of results and displays)."""
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if "text" in out:
                yield i, "".join(out["text"])
            plain = out.get("data", {}).get("text/plain")
            if plain:
                yield i, "".join(plain)


def over_100(text: str) -> list[str]:
    """The figures in `text` that read as more than 100% of something, each with its context."""
    found = [f"{m.group(0)!r} in {_line_of(text, m.start())!r}"
             for m in _PCT_OF.finditer(text) if float(m.group(1).replace(",", "")) > 100]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        columns = [c.strip() for c in line.split("|")]
        pct = [j for j, name in enumerate(columns) if name.startswith("pct_of")]
        if not pct or i + 1 >= len(lines) or not set(lines[i + 1].replace("+", "")) <= {"-"}:
            continue   # not a table header followed by its rule line
        for row in lines[i + 2:]:
            cells = [c.strip() for c in row.split("|")]
            if len(cells) != len(columns):
                break
            found += [f"{columns[j]} = {cells[j]} in {row.strip()!r}" for j in pct
                      if _NUMBER.match(cells[j]) and float(cells[j].replace(",", "")) > 100]
    return found


def _line_of(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start:end if end >= 0 else len(text)].strip()


def test_the_scanner_finds_figures_above_100_percent():
    assert over_100("675 TFLOP/s = 104% of the measured fp16 ceiling") != []
    assert over_100("639 TFLOP/s = 96% of measured FP8; 1,250% of nothing") == ["'1,250% of' in " + repr(
        "639 TFLOP/s = 96% of measured FP8; 1,250% of nothing")]
    assert over_100("GEMM sweep: 100%|#####| 44/44; exactly 100% of the copy") == []
    table = ("case | tflop_per_s | pct_of_ceiling\n-----+-------------+---------------\n"
             "a    |       639.8 |          98.67\nb    |       695.5 |          107.3\nnext line")
    assert over_100(table) == ["pct_of_ceiling = 107.3 in 'b    |       695.5 |          107.3'"]
    assert over_100(table.replace("107.3", "  nan")) == []


@pytest.mark.parametrize("path", sorted(LABS.glob("*.ipynb")), ids=lambda p: p.name)
def test_no_committed_output_exceeds_100_percent_of_a_ceiling(path):
    nb = json.loads(path.read_text())
    offending = [f"cell {i}: {figure}" for i, text in _texts(nb) for figure in over_100(text)]
    if path.name in AWAITING_RERUN:
        if offending:
            pytest.xfail(f"{path.name} awaits its re-run: " + "; ".join(offending))
        pytest.fail(f"{path.name} no longer shows a figure above 100%: remove it from AWAITING_RERUN")
    assert not offending, f"{path.name} shows figures above 100% of a ceiling:\n" + "\n".join(offending)


#: What a committed output must not show on stderr: a traceback, a library's log line or a dump.
_LOG_LINE = re.compile(r"Traceback \(most recent call last\)|^[EWIF]\d{4} \d\d:\d\d|^\[\w+\] (WARNING|ERROR)|"
                       r"^(WARNING|ERROR|CRITICAL):|AUTOTUNE |\d+%\|.*\| \d+/\d+|"
                       r"^\S+\.py:\d+: \w*Warning: ", re.M)   # a Python warning: a file path and its line


#: Notebooks whose committed outputs predate clean headless runs (progress bars, library logs on
#: stderr): expected to fail until executed again on the GPU machine. Empty it after that run.
AWAITING_RERUN_STDERR: set[str] = set()


def stderr_problems(nb: dict) -> list[str]:
    """(cell, first offending line) of every stderr output or error that reads as a crash or a log dump."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: error {out.get('ename')}: {out.get('evalue', '')[:120]}")
            elif out.get("name") == "stderr":
                match = _LOG_LINE.search("".join(out.get("text", "")))
                if match:
                    found.append(f"cell {i}: {_line_of(''.join(out['text']), match.start())[:160]!r}")
    return found


def test_the_stderr_scanner_finds_tracebacks_logs_and_progress_bars():
    def nb(text):
        return {"cells": [{"outputs": [{"output_type": "stream", "name": "stderr", "text": text}]}]}

    assert stderr_problems(nb("Traceback (most recent call last):\n  File x"))
    assert stderr_problems(nb("E1124 09:55:30.73 select_algorithm.py] Runtime error during autotuning"))
    assert stderr_problems(nb("[IPKernelApp] WARNING | Kernel is running over TCP"))
    assert stderr_problems(nb("AUTOTUNE addmm(2048x2048, 2048x2048)"))
    assert stderr_problems(nb("sweep:  50%|█████     | 2/4 [00:03<00:03,  1.88s/it]"))
    assert stderr_problems(nb("/srv/course/common/ceilings.py:162: CeilingWarning: 4356 is above the ceiling"))
    assert not stderr_problems(nb("")) and not stderr_problems({"cells": [{"outputs": []}]})


@pytest.mark.parametrize("path", sorted(LABS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_committed_outputs_carry_no_traceback_log_dump_or_progress_residue(path):
    problems = stderr_problems(json.loads(path.read_text()))
    if path.name in AWAITING_RERUN_STDERR:
        pytest.xfail(f"committed outputs predate the clean-output run: {problems[:2]}")
    assert not problems, f"{path.name}: {problems[:5]}"
