"""Exercises with checked solutions: every lab ends with two or three, graded guided -> open.

Introduced in lab 00 (tour). An exercise asks the learner to write one function in the notebook;
`check("NN.k", fn)` runs it on inputs the exercise chooses (small, so it is quick on any machine) and
says whether the answer is right, and if not, what is wrong. The definitions live in
`common/exercises/labNN.py` (a list `EXERCISES`), the worked solutions in `labs/solutions/`
(functions `exercise_1`, `exercise_2`, ...). The test suite runs every solution through its checker,
and every exercise's `counterexample` (a plausible wrong answer) must be refused, so a solution that
stops working, or a checker that accepts anything, fails CI.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from common.env import project_root

LEVELS = ("guided", "practice", "open")


@dataclass(frozen=True)
class Exercise:
    """One exercise: `check(fn)` returns None when `fn` answers it, else what is wrong."""

    key: str                               # "NN.k": lab number, then the exercise's place in the lab
    level: str                             # one of LEVELS
    task: str                              # one sentence: what the function must do
    check: Callable[[Callable[..., Any]], str | None]
    counterexample: Callable[..., Any]     # a plausible wrong answer the check must refuse

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"exercise {self.key}: level must be one of {LEVELS}, got {self.level!r}")

    @property
    def lab(self) -> str:
        return self.key.split(".")[0]

    @property
    def function_name(self) -> str:
        return f"exercise_{self.key.split('.')[1]}"


@dataclass(frozen=True)
class Verdict:
    key: str
    status: str        # "correct", "not yet", "not attempted"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "correct"

    def __str__(self) -> str:
        text = f"Exercise {self.key}: {self.status}"
        return f"{text} — {self.detail}" if self.detail else text


def lab_exercises(lab: str) -> list[Exercise]:
    """The exercises of lab `lab` ("01"), in order."""
    module = importlib.import_module(f"common.exercises.lab{lab}")
    return list(module.EXERCISES)


def get(key: str) -> Exercise:
    for ex in lab_exercises(key.split(".")[0]):
        if ex.key == key:
            return ex
    raise KeyError(f"no exercise {key!r}; lab {key.split('.')[0]} has "
                   f"{[e.key for e in lab_exercises(key.split('.')[0])]}")


def solutions_file(lab: str) -> Path:
    matches = sorted((project_root() / "labs" / "solutions").glob(f"{lab}_*.py"))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one solutions file labs/solutions/{lab}_*.py, found {len(matches)}")
    return matches[0]


def solutions(lab: str) -> ModuleType:
    """The worked solutions of lab `lab`, imported from labs/solutions/."""
    path = solutions_file(lab)
    spec = importlib.util.spec_from_file_location(f"solutions_{lab}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verify(key: str, fn: Callable[..., Any]) -> Verdict:
    """Run the checker of exercise `key` on `fn`."""
    ex = get(key)
    try:
        problem = ex.check(fn)
    except NotImplementedError:
        where = solutions_file(ex.lab).relative_to(project_root())
        return Verdict(key, "not attempted",
                       f"replace `raise NotImplementedError` with your answer (a worked solution: {where}, "
                       f"{ex.function_name})")
    except Exception as exc:   # the learner's code raised: show it as the answer's problem, not a crash
        return Verdict(key, "not yet", f"your function raised {type(exc).__name__}: {exc}")
    return Verdict(key, "correct") if problem is None else Verdict(key, "not yet", problem)


def check(key: str, fn: Callable[..., Any]) -> None:
    """What a notebook calls: verify `fn` and print the verdict (returns nothing, so a notebook shows
    only the printed line)."""
    print(verify(key, fn))


def close(got: float, expected: float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    """Float comparison for checkers."""
    return abs(got - expected) <= max(abs_, rel * abs(expected))
