"""Lab 10 (builder optimization) exercises: when a build pays for itself, which setting to pick, and
reading the builder's tactic choices from an editable-timing-cache log."""

from __future__ import annotations

import math

from common.exercises import Exercise, close
from common.trt.tactics import EXAMPLE_AUTOTUNING_LOG


def _check_break_even(fn) -> str | None:
    # (build seconds, baseline ms, optimized ms, inferences to pay back the build)
    cases = ((20.0, 0.50, 0.40, 200_000.0), (4.0, 2.0, 1.0, 4_000.0), (0.008, 1.2, 0.7, 16.0))
    for build_s, base_ms, opt_ms, want in cases:
        got = fn(build_s, base_ms, opt_ms)
        if got is None:
            raise NotImplementedError
        if not close(float(got), want, rel=1e-6):
            return (f"a {build_s} s build that takes a {base_ms} ms inference to {opt_ms} ms: expected {want:,.0f} "
                    f"inferences, got {got}. Are seconds and milliseconds in the same unit?")
    got = fn(10.0, 1.0, 1.25)
    if got is None:
        raise NotImplementedError
    if not math.isinf(float(got)) or float(got) < 0:
        return (f"a build that makes the inference slower (1.0 -> 1.25 ms) never pays back: expected math.inf, got "
                f"{got}")
    return None


# Rows shaped like a TensorRT optimization-level sweep: effort rises, run time falls less and less.
_LEVEL_ROWS = [
    {"configuration": "level 0", "build_s": 2.0, "latency_ms": 1.60},
    {"configuration": "level 1", "build_s": 4.0, "latency_ms": 1.10},
    {"configuration": "level 2", "build_s": 6.0, "latency_ms": 1.02},
    {"configuration": "level 3", "build_s": 9.0, "latency_ms": 1.00},
    {"configuration": "level 4", "build_s": 20.0, "latency_ms": 0.99},
    {"configuration": "level 5", "build_s": 45.0, "latency_ms": 0.98},
]


def _check_good_enough(fn) -> str | None:
    shuffled = [_LEVEL_ROWS[i] for i in (4, 0, 5, 2, 1, 3)]   # the answer may not depend on the order
    for rows, tolerance_pct, want in ((_LEVEL_ROWS, 5.0, "level 2"), (shuffled, 5.0, "level 2"),
                                      (_LEVEL_ROWS, 0.0, "level 5"), (_LEVEL_ROWS, 15.0, "level 1"),
                                      (_LEVEL_ROWS, 100.0, "level 0")):
        got = fn([dict(r) for r in rows], tolerance_pct)
        if got is None:
            raise NotImplementedError
        if got != want:
            return (f"tolerance {tolerance_pct}%: expected {want!r}, got {got!r}. Among the configurations whose "
                    "latency is within the tolerance of the fastest one, take the one that builds quickest.")
    return None


def _check_selected_kernels(fn) -> str | None:
    got = fn(list(EXAMPLE_AUTOTUNING_LOG))
    if got is None:
        raise NotImplementedError
    want = {"gemm_0": "kernel_alpha", "gemm_1": "kernel_delta"}
    if dict(got) != want:
        return (f"expected {want}, got {dict(got)}. The selected tactic is named by its hash on the 'selected "
                "tactic' line, which need not be the first row; and one log message may hold several lines.")
    return None


def _fastest_row_kernels(lines: list[str]) -> dict[str, str]:
    """A plausible wrong answer: the first (fastest) row of each op's table."""
    found, op = {}, None
    for line in "\n".join(lines).splitlines():
        if line.startswith("Autotuning op "):
            op = line[len("Autotuning op "):].split("(")[0]
        elif op and line.strip()[:1].isdigit() and op not in found:
            found[op] = line.split(",")[4].strip()
    return found


EXERCISES = [
    Exercise("10.1", "guided",
             "break_even(build_s, baseline_ms, optimized_ms): how many inferences pay back a build (math.inf "
             "if it never does).",
             _check_break_even, counterexample=lambda build_s, base_ms, opt_ms: build_s / (base_ms - opt_ms)),
    Exercise("10.2", "practice",
             "good_enough(rows, tolerance_pct): the quickest-building configuration whose latency is within "
             "tolerance_pct of the fastest.",
             _check_good_enough,
             counterexample=lambda rows, tol: min(rows, key=lambda r: r["latency_ms"])["configuration"]),
    Exercise("10.3", "open",
             "selected_kernels(log_lines): {op: kernel name of the selected tactic} from an editable-timing-cache "
             "build log.",
             _check_selected_kernels, counterexample=_fastest_row_kernels),
]
