"""Lab 00 (tour) exercises: turning timings into rates, and judging a difference against noise."""

from __future__ import annotations

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


def _check_is_noise(fn) -> str | None:
    # (medians of A, medians of B, is the difference noise?)
    cases = (
        ([1.00, 1.02], [0.99, 1.01], True),      # 1% apart, 2% spread: noise
        ([1.00, 1.01], [0.80, 0.81], False),     # 25% faster, 1.25% spread: real
        ([1.00, 1.30], [0.90, 0.92], True),      # 11% faster but A alone varies 30%: noise
    )
    for a, b, want in cases:
        got = fn(a, b)
        if got is None:
            raise NotImplementedError
        if bool(got) != want:
            return (f"medians A={a}, B={b}: expected {'noise' if want else 'a real difference'}, got "
                    f"{'noise' if got else 'a real difference'}. Compare the difference with the larger "
                    "run-to-run spread (max - min) / min of either configuration.")
    return None


EXERCISES = [
    Exercise("00.1", "guided",
             "copy_gbps(nbytes, median_ms): the bandwidth of a device-to-device copy in GB/s.",
             _check_copy_gbps, counterexample=lambda nbytes, ms: nbytes / (ms / 1e3) / 1e9),
    Exercise("00.2", "practice",
             "matmul_tflops(m, n, k, median_ms): the rate of an (m x k) @ (k x n) product in TFLOP/s.",
             _check_tflops, counterexample=lambda m, n, k, ms: m * n * k / (ms / 1e3) / 1e12),
    Exercise("00.3", "open",
             "is_noise(medians_a, medians_b): whether B's difference from A is within the run-to-run spread.",
             _check_is_noise,
             counterexample=lambda a, b: abs(sum(a) / len(a) / (sum(b) / len(b)) - 1) < 0.05),
]
