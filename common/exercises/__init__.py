"""Exercises with checked solutions: every lab ends with two or three, graded guided -> open.

Introduced in lab 00 (tour). An exercise asks the learner to write one function in the notebook;
`check("NN.k", fn)` runs it on inputs the exercise chooses (small, so it is quick on any machine) and
says whether the answer is right, and if not, what is wrong. The definitions live in
`common/exercises/labNN.py` (a list `EXERCISES`), the worked solutions in `labs/solutions/`
(functions `exercise_1`, `exercise_2`, ...). The test suite runs every solution through its checker,
and every exercise's `counterexample` (a plausible wrong answer) must be refused, so a solution that
stops working, or a checker that accepts anything, fails CI.

A check runs under a time limit (an answer that loops forever is stopped and said so), and the verdict
tells apart an answer that raised, one that returned nothing (a forgotten `return`), one the checker
could not use, and a fault of the checker itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from common.env import project_root

LEVELS = ("guided", "practice", "open")
#: How long one check may run: the checkers' inputs are small, so only a loop that never ends gets near it.
TIME_LIMIT_S = 60.0


@dataclass(frozen=True)
class Exercise:
    """One exercise: `check(fn)` returns None when `fn` answers it, else what is wrong."""

    key: str                               # "NN.k": lab number, then the exercise's place in the lab
    level: str                             # one of LEVELS
    task: str                              # one sentence: what the function must do
    check: Callable[[Callable[..., Any]], str | None]
    counterexample: Callable[..., Any]     # a plausible wrong answer the check must refuse
    time_limit_s: float = TIME_LIMIT_S

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
    status: str        # "correct", "not yet", "not attempted", or "not checked" (the checker's own fault)
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


class _TimeLimit(BaseException):
    """Raised into a check that ran past its time limit (a BaseException, so that an answer's own
    `except Exception` cannot swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop the code inside after `seconds` (SIGALRM: the main thread of a Unix process, where a
    notebook's cells run); elsewhere the check runs without a limit."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _TimeLimit

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Answer:
    """The learner's function as the checker sees it: every call goes through, and what came back
    (or was raised) is noted, so the verdict can say whose fault an error is."""

    def __init__(self, fn: Callable[..., Any]):
        functools.update_wrapper(self, fn)
        self.fn, self.calls, self.nones = fn, 0, 0
        self.raised: BaseException | None = None
        self.last: Any = None

    def __call__(self, *args, **kwargs):
        self.calls += 1
        try:
            result = self.fn(*args, **kwargs)
        except Exception as exc:
            self.raised = exc
            raise
        self.nones += result is None
        self.last = result
        return result

    def returned(self) -> str:
        """What the last call returned, in a few words (type, and shape for arrays)."""
        shape = getattr(self.last, "shape", None)
        kind = type(self.last).__name__
        return f"a {kind} of shape {tuple(shape)}" if shape is not None else f"{self.last!r:.80} (a {kind})"


_FORGOT_RETURN = "your function returned None: did you forget `return`?"


def verify(key: str, fn: Callable[..., Any]) -> Verdict:
    """Run the checker of exercise `key` on `fn`, within the exercise's time limit."""
    ex = get(key)
    answer = _Answer(fn)
    try:
        with _time_limit(ex.time_limit_s):
            problem = ex.check(answer)
    except _TimeLimit:
        return Verdict(key, "not yet", f"the check was stopped after {ex.time_limit_s:g} s with your function still "
                                       f"running (on small inputs it takes well under a second): look for a loop "
                                       "that never ends")
    except NotImplementedError as exc:
        if answer.raised is exc:
            where = solutions_file(ex.lab).relative_to(project_root())
            return Verdict(key, "not attempted",
                           f"replace `raise NotImplementedError` with your answer (a worked solution: {where}, "
                           f"{ex.function_name})")
        if answer.nones:   # the checkers raise it themselves on a None answer
            return Verdict(key, "not yet", _FORGOT_RETURN)
        return _checker_fault(key, exc)
    except Exception as exc:
        if answer.raised is exc:   # the learner's code raised: show it as the answer's problem, not a crash
            return Verdict(key, "not yet", f"your function raised {type(exc).__name__}: {exc}")
        if answer.calls == 0:
            return _checker_fault(key, exc)
        return Verdict(key, "not yet", f"your function returned {answer.returned()}, which the checker could not "
                                       f"use ({type(exc).__name__}: {exc})")
    if problem is None:
        return Verdict(key, "correct")
    if answer.calls and answer.nones == answer.calls:
        problem = f"{problem} ({_FORGOT_RETURN})"
    return Verdict(key, "not yet", problem)


def _checker_fault(key: str, exc: BaseException) -> Verdict:
    return Verdict(key, "not checked", f"the checker itself failed ({type(exc).__name__}: {exc}): a fault in the "
                                       "course, not in your answer")


def check(key: str, fn: Callable[..., Any]) -> None:
    """What a notebook calls: verify `fn` and print the verdict (returns nothing, so a notebook shows
    only the printed line)."""
    print(verify(key, fn))


def close(got: float, expected: float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    """Float comparison for checkers."""
    return abs(got - expected) <= max(abs_, rel * abs(expected))
