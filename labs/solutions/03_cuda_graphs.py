"""Worked solutions to lab 03's exercises (checked by tests/test_exercises.py)."""

from collections import Counter
from functools import lru_cache


def exercise_1(eager_ms: float, graph_ms: float, graph_nodes: dict[str, int]) -> float:
    # the graph replays what eager launched one by one: every node (kernel, memset, copy) was one launch
    operations = sum(graph_nodes.values())
    return (eager_ms - graph_ms) * 1e3 / operations


def exercise_2(requests: list[int], buckets: list[int]) -> list[int]:
    ordered = sorted(buckets)
    served = []
    for batch in requests:
        fitting = [b for b in ordered if b >= batch]
        if not fitting:
            raise ValueError(f"no graph holds a batch of {batch}: the largest bucket is {ordered[-1]}")
        served.append(fitting[0])     # pad up to the smallest graph that holds the request
    return served


def exercise_3(requests: list[int], max_graphs: int) -> list[int]:
    # A best bucket is always one of the request sizes (lowering it to the largest request it serves
    # pads less), and the largest size must be one. Dynamic programming over the sorted sizes: a
    # bucket at sizes[j] serves every size above the previous bucket up to sizes[j].
    count = Counter(requests)
    sizes = sorted(count)

    def cost(lo: int, hi: int) -> int:   # padded rows when sizes[lo..hi] all pad up to sizes[hi]
        return sum(count[s] * (sizes[hi] - s) for s in sizes[lo:hi + 1])

    @lru_cache(maxsize=None)
    def best(start: int, graphs: int) -> tuple[int, tuple[int, ...]]:
        if start == len(sizes):
            return 0, ()
        if graphs == 0:
            return 10**18, ()
        options = []
        for end in range(start, len(sizes)):
            rest_cost, rest = best(end + 1, graphs - 1)
            options.append((cost(start, end) + rest_cost, (sizes[end],) + rest))
        return min(options)

    return list(best(0, max_graphs)[1])
