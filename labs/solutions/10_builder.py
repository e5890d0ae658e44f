"""Worked solutions to lab 10's exercises (checked by tests/test_exercises.py)."""

import math

from common.trt.tactics import parse_autotuning_log


def exercise_1(build_s: float, baseline_ms: float, optimized_ms: float) -> float:
    # the build is paid back once the milliseconds saved per inference add up to the build's seconds
    saved_ms = baseline_ms - optimized_ms
    if saved_ms <= 0:
        return math.inf
    return build_s * 1e3 / saved_ms


def exercise_2(rows: list[dict], tolerance_pct: float) -> str:
    # "good enough" is judged against the fastest; among those, the cheapest build wins (a CI build)
    fastest_ms = min(r["latency_ms"] for r in rows)
    good = [r for r in rows if r["latency_ms"] <= fastest_ms * (1 + tolerance_pct / 100)]
    return min(good, key=lambda r: r["build_s"])["configuration"]


def exercise_3(log_lines: list[str]) -> dict[str, str]:
    # the course's parser (common.trt.tactics) follows the same states: key, header, rows, selection
    selected = {}
    for record in parse_autotuning_log(log_lines):
        tactic = record.selected_tactic
        if tactic is not None:
            selected[record.op] = tactic.kernel
    return selected
