"""Lab 00 (tour) exercises: turning timings into rates, and judging a difference against noise with an interval."""

from __future__ import annotations

import statistics

from common import bench
from common.exercises import Exercise, close


def _check_copy_gbps(fn) -> str | None:
    # A device-to-device copy reads every byte once and writes it once.
    for nbytes, ms in ((1e9, 1.0), (256 * 2**20, 0.2)):
        got = fn(nbytes, ms)
        if got is None:
            raise NotImplementedError
        want = 2 * nbytes / (ms / 1e3) / 1e9
        if not close(float(got), want, rel=1e-3):
            return (f"copy of {nbytes:.3g} bytes in {ms} ms: expected {want:,.1f} GB/s, got {got}. "
                    "Does your formula count both the read and the write?")
    return None


def _check_tflops(fn) -> str | None:
    for m, n, k, ms in ((8192, 8192, 8192, 1.6), (4096, 1024, 512, 0.05)):
        got = fn(m, n, k, ms)
        if got is None:
            raise NotImplementedError
        want = 2 * m * n * k / (ms / 1e3) / 1e12
        if not close(float(got), want, rel=1e-3):
            return (f"{m}x{n}x{k} in {ms} ms: expected {want:,.1f} TFLOP/s, got {got}. "
                    "A multiply-add is two floating-point operations.")
    return None


def _spread_rule(a, b) -> bool:
    """The rule the interval replaces: the difference is noise if it is no larger than either side's range."""
    difference = abs(statistics.median(a) / statistics.median(b) - 1) * 100
    return difference <= max(bench.spread_pct(a), bench.spread_pct(b))


def _check_is_noise(fn) -> str | None:
    # (pass medians of A, of B, is the difference noise?): five interleaved passes each
    cases = (
        ([1.00, 1.02, 0.99, 1.01, 1.00], [0.99, 1.01, 1.00, 1.02, 0.98], True),    # 1% apart: noise
        ([1.00, 1.01, 1.00, 1.02, 1.01], [0.80, 0.81, 0.80, 0.82, 0.81], False),   # 25% faster: real
        ([1.00, 1.30, 0.95, 1.25, 1.10], [0.90, 1.20, 0.92, 1.15, 1.05], True),    # 5% apart, 35% range: noise
        ([1.00, 1.00, 1.01, 1.00, 1.60], [0.90, 0.90, 0.91, 0.90, 0.91], False),   # one slow pass of A: still real
    )
    for a, b, want in cases:
        got = fn(a, b)
        if got is None:
            raise NotImplementedError
        if bool(got) != want:
            return (f"pass medians A={a}, B={b}: expected {'noise' if want else 'a real difference'}, got "
                    f"{'noise' if got else 'a real difference'}. Does the 95% bootstrap interval of "
                    "median(A) / median(B) over the passes contain 1? One slow pass widens the range of the "
                    "passes, but hardly moves their median.")
    return None


EXERCISES = [
    Exercise("00.1", "guided",
             "copy_gbps(nbytes, median_ms): the bandwidth of a device-to-device copy in GB/s.",
             _check_copy_gbps, counterexample=lambda nbytes, ms: nbytes / (ms / 1e3) / 1e9),
    Exercise("00.2", "practice",
             "matmul_tflops(m, n, k, median_ms): the rate of an (m x k) @ (k x n) product in TFLOP/s.",
             _check_tflops, counterexample=lambda m, n, k, ms: m * n * k / (ms / 1e3) / 1e12),
    Exercise("00.3", "open",
             "is_noise(medians_a, medians_b): whether the 95% interval of median(A) / median(B) over the "
             "passes contains 1.",
             _check_is_noise, counterexample=_spread_rule),
]
