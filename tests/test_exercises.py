"""Every lab has two or three exercises, graded guided -> open, whose worked solutions pass their
checkers and whose counterexamples do not; the notebooks call exactly the registered exercises."""

import json
import re

import pytest

from common import exercises
from common.execute import lab_notebooks

NOTEBOOKS = lab_notebooks()
LABS = [nb.name[:2] for nb in NOTEBOOKS]
CHECK_CALL = re.compile(r'exercises\.check\("(\d\d\.\d)",\s*(exercise_\d)\)')


def _notebook_calls(nb) -> list[tuple[str, str]]:
    cells = json.loads(nb.read_text())["cells"]
    return [m for c in cells if c["cell_type"] == "code" for m in CHECK_CALL.findall("".join(c["source"]))]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_lab_has_two_or_three_graded_exercises_and_calls_them(nb):
    lab = nb.name[:2]
    registered = exercises.lab_exercises(lab)
    assert 2 <= len(registered) <= 3, f"lab {lab} has {len(registered)} exercises"
    assert [e.key for e in registered] == [f"{lab}.{i}" for i in range(1, len(registered) + 1)]
    levels = [exercises.LEVELS.index(e.level) for e in registered]
    assert levels == sorted(levels) and levels[0] == 0, "exercises go from guided to open"
    calls = _notebook_calls(nb)
    assert calls == [(e.key, e.function_name) for e in registered], \
        f"{nb.name} must call exercises.check for each of its exercises, in order"


def _registered(lab):
    try:
        return exercises.lab_exercises(lab)
    except ModuleNotFoundError:   # reported by the test above, per lab
        return []


ALL = [e for lab in LABS for e in _registered(lab)]


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.key)
def test_worked_solution_passes_and_counterexample_fails(ex):
    solution = getattr(exercises.solutions(ex.lab), ex.function_name)
    verdict = exercises.verify(ex.key, solution)
    assert verdict.ok, str(verdict)
    wrong = exercises.verify(ex.key, ex.counterexample)
    assert wrong.status == "not yet", f"{ex.key}: the checker accepted its counterexample ({wrong})"


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.key)
def test_untouched_exercise_reads_not_attempted_and_points_to_the_solution(ex):
    def untouched(*args, **kwargs):
        raise NotImplementedError

    verdict = exercises.verify(ex.key, untouched)
    assert verdict.status == "not attempted"
    assert f"labs/solutions/{exercises.solutions_file(ex.lab).name}" in verdict.detail


def test_a_crashing_answer_is_reported_not_raised():
    def crashes(*args):
        raise ZeroDivisionError("division by zero")

    verdict = exercises.verify("00.1", crashes)
    assert verdict.status == "not yet" and "ZeroDivisionError" in verdict.detail


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="00.1"):
        exercises.get("00.9")


def test_an_answer_that_changes_its_inputs_is_not_marked_correct():
    def zero_then_view(x):   # zeroes x, then returns a view whose sums match the zeroed x
        x.zero_()
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]) if not x.is_contiguous() \
            else x.view(x.shape[0], x.shape[1], -1)

    assert exercises.verify("06.1", zero_then_view).status == "not yet"

    def zero_bias(storage, bias, shape):   # GELU(storage) with the bias zeroed: matched the zeroed reference
        import torch

        bias.zero_()
        return torch.nn.functional.gelu(storage)

    verdict = exercises.verify("11.3", zero_bias)
    assert verdict.status == "not yet", str(verdict)


def test_a_forgotten_return_is_not_read_as_not_attempted():
    def forgot_return(x):
        x.reshape(x.shape[0], x.shape[1], -1)   # computed, never returned

    verdict = exercises.verify("06.1", forgot_return)
    assert verdict.status == "not yet" and "did you forget `return`" in verdict.detail


def test_an_answer_the_checker_cannot_use_is_not_said_to_have_raised():
    verdict = exercises.verify("06.2", lambda channels, groups: [[0.0] * channels] * channels)
    assert verdict.status == "not yet"
    assert "your function returned" in verdict.detail and "could not use" in verdict.detail
    assert "your function raised" not in verdict.detail


def test_a_fault_of_the_checker_itself_is_not_blamed_on_the_learner(monkeypatch):
    import dataclasses

    broken = dataclasses.replace(exercises.get("00.1"), check=lambda fn: {}["the checker's own bug"])
    monkeypatch.setattr(exercises, "get", lambda key: broken)
    verdict = exercises.verify("00.1", lambda *a: 1.0)
    assert verdict.status == "not checked" and "not in your answer" in verdict.detail


def test_an_answer_that_never_returns_is_stopped_by_the_time_limit(monkeypatch):
    import dataclasses
    import time

    quick = dataclasses.replace(exercises.get("00.1"), time_limit_s=1.0)
    monkeypatch.setattr(exercises, "get", lambda key: quick)

    def loops_forever(*args):
        while True:
            try:
                pass
            except Exception:   # an answer's own handler cannot swallow the stop
                pass

    start = time.monotonic()
    verdict = exercises.verify("00.1", loops_forever)
    assert time.monotonic() - start < 10
    assert verdict.status == "not yet" and "stopped after 1 s" in verdict.detail
