"""Worked solutions to lab 01's exercises (checked by tests/test_exercises.py)."""


def exercise_1(batches: list[int], throughputs: list[float]) -> int:
    # the smallest batch already within 80% of the best: past it, no batch adds more than 1.25x
    best = max(throughputs)
    return next(b for b, t in sorted(zip(batches, throughputs)) if t >= 0.8 * best)


def exercise_2(rows: list[dict], budget_ms: float) -> dict[str, int | None]:
    # a budget is a promise about the slow requests too: judge each batch by its p99, not its median
    best: dict[str, int | None] = {}
    for row in rows:
        backend = row["backend"]
        best.setdefault(backend, None)
        if row["p99_ms"] <= budget_ms and (best[backend] is None or row["batch"] > best[backend]):
            best[backend] = row["batch"]
    return best


def exercise_3(batches: list[int], latency_ms: list[float], arrival_per_s: float) -> int | None:
    best, best_worst_ms = None, float("inf")
    for batch, ms in zip(batches, latency_ms):
        fill_ms = batch / arrival_per_s * 1e3     # time for `batch` new requests to arrive
        if ms > fill_ms:
            continue                              # the server falls behind: the queue grows without end
        worst_ms = (batch - 1) / arrival_per_s * 1e3 + ms   # the first request waits for the rest, then the run
        if worst_ms < best_worst_ms:
            best, best_worst_ms = batch, worst_ms
    return best
