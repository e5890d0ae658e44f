"""Worked solutions to lab 00's exercises (checked by tests/test_exercises.py)."""

from common import bench


def exercise_1(nbytes: float, median_ms: float) -> float:
    # one read and one write of every byte
    return 2 * nbytes / (median_ms / 1e3) / 1e9


def exercise_2(m: int, n: int, k: int, median_ms: float) -> float:
    # m*n outputs, each a k-long dot product of k multiply-adds = 2k FLOPs
    return 2 * m * n * k / (median_ms / 1e3) / 1e12


def exercise_3(medians_a: list[float], medians_b: list[float]) -> bool:
    # noise when the bootstrap interval of median(A) / median(B) over the passes contains 1
    low, high = bench.ratio_interval(medians_a, medians_b)
    return low <= 1.0 <= high
