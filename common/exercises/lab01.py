"""Lab 01 (batching) exercises: reading a throughput curve, serving under a latency budget, and
choosing a batch for a steady stream of requests."""

from __future__ import annotations

from common import sweeps
from common.exercises import Exercise

# A curve shaped like the lab's GPU sweeps: host-bound and noisy at small batches, then saturating.
_GPU_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
_GPU_THROUGHPUT = [194.0, 300.0, 1001.0, 1937.0, 3522.0, 6536.0, 11890.0, 12950.0, 13760.0]
_CURVES = [
    (_GPU_BATCHES, _GPU_THROUGHPUT),
    ([1, 2, 4, 8, 16], [410.0, 820.0, 1500.0, 1700.0, 1750.0]),     # a CPU-like curve, knee at 4
    ([1, 2, 4, 8], [100.0, 101.0, 99.0, 100.5]),                    # flat: already saturated at 1
]


def _check_knee(fn) -> str | None:
    for batches, throughputs in _CURVES:
        got = fn(list(batches), list(throughputs))
        want = sweeps.scaling(batches, throughputs).knee_batch
        if got != want:
            return (f"batches {batches}, throughputs {throughputs}: expected the knee at batch {want}, got {got}. "
                    "The knee is the smallest batch whose throughput reaches 80% of the best one.")
    return None


def _sweep_rows() -> list[dict]:
    """Rows as sweeps.batch_sweep writes them: two backends, median and p99 latency per batch."""
    table = {
        "PyTorch eager (cuda, fp16)": [(1, 5.2, 6.7), (8, 4.1, 11.2), (32, 4.9, 9.4), (64, 5.4, 6.0),
                                       (128, 9.9, 10.0), (256, 18.6, 18.7)],
        "torch.compile (cuda, fp16)": [(1, 1.1, 1.3), (8, 1.4, 1.6), (32, 2.1, 2.4), (64, 3.6, 3.9),
                                       (128, 6.8, 10.4), (256, 13.0, 13.3)],
    }
    return [{"model": "resnet50", "backend": backend, "batch": batch, "latency_ms": median, "p99_ms": p99,
             "throughput_img_per_s": batch / (median / 1e3)}
            for backend, points in table.items() for batch, median, p99 in points]


def _best_under_budget(rows: list[dict], budget_ms: float) -> dict[str, int | None]:
    best: dict[str, int | None] = {}
    for row in rows:
        best.setdefault(row["backend"], None)
        if row["p99_ms"] <= budget_ms and (best[row["backend"]] is None or row["batch"] > best[row["backend"]]):
            best[row["backend"]] = row["batch"]
    return best


def _check_budget(fn) -> str | None:
    rows = _sweep_rows()
    for budget_ms in (10.0, 5.0, 1.0):
        got = fn([dict(r) for r in rows], budget_ms)
        want = _best_under_budget(rows, budget_ms)
        if got != want:
            return (f"budget {budget_ms} ms: expected {want}, got {got}. A request's latency budget holds for "
                    "its p99 (99 of 100 requests), not only for the median; a backend that never fits gets None.")
    return None


def _serving_batch(batches: list[int], latency_ms: list[float], arrival_per_s: float) -> int | None:
    best, best_ms = None, float("inf")
    for batch, ms in zip(batches, latency_ms):
        if ms / 1e3 > batch / arrival_per_s:
            continue   # a batch takes longer than the next one takes to arrive: the queue grows forever
        worst_ms = (batch - 1) / arrival_per_s * 1e3 + ms
        if worst_ms < best_ms:
            best, best_ms = batch, worst_ms
    return best


def _check_serving(fn) -> str | None:
    latency_ms = [5.16, 6.66, 4.00, 4.13, 4.54, 4.90, 5.38, 9.88, 18.6]   # host-bound: flat, even falling
    cases = [(_GPU_BATCHES, latency_ms, rate) for rate in (150.0, 250.0, 1500.0, 12000.0, 20000.0)]
    cases.append(([1, 2, 4, 8], [1.0, 1.5, 2.5, 4.5], 500.0))
    cases.append(([1, 2, 4, 6], [2.0, 5.0, 3.9, 1.5], 1000.0))   # a larger batch can wait less overall
    for batches, ms, rate in cases:
        got = fn(list(batches), list(ms), rate)
        want = _serving_batch(batches, ms, rate)
        if got != want:
            return (f"batches {batches}, median latency {ms} ms, {rate:g} requests/s: expected batch {want}, got "
                    f"{got}. Keep only the batches that keep up (a batch is done before the next has arrived), "
                    "then count the wait for the batch to fill as well as its run.")
    return None


EXERCISES = [
    Exercise("01.1", "guided",
             "knee_batch(batches, throughputs): the smallest batch reaching 80% of the best throughput.",
             _check_knee, counterexample=lambda b, t: b[t.index(max(t))]),
    Exercise("01.2", "practice",
             "best_batch_under_budget(rows, budget_ms): per backend, the largest batch whose p99 fits the budget.",
             _check_budget,
             counterexample=lambda rows, budget: {
                 r["backend"]: max((x["batch"] for x in rows if x["backend"] == r["backend"]
                                    and x["latency_ms"] <= budget), default=None) for r in rows}),
    Exercise("01.3", "open",
             "serving_batch(batches, latency_ms, arrival_per_s): the batch that keeps up with a steady stream "
             "of requests with the smallest worst-case request latency.",
             _check_serving,
             counterexample=lambda b, ms, rate: b[max(range(len(b)), key=lambda i: b[i] / ms[i])]),
]
