"""Lab 03 (CUDA graphs) exercises: the launch overhead per operation, serving requests from graphs
captured for padded buckets, and choosing those buckets."""

from __future__ import annotations

import itertools
from collections import Counter

from common.exercises import Exercise, close
from common.labs import lab03_cuda_graphs as lab

#: The lab's request stream (batch sizes), and the buckets its text suggests.
REQUESTS = [8, 1, 8, 64, 1, 4096, 8, 64, 4096, 8]
BUCKETS = [1, 8, 64, 4096]


def _check_overhead(fn) -> str | None:
    # (eager ms, graph ms, node types of the captured graph)
    cases = [(1.055, 0.0804, {"kernel": 40}), (0.8643, 0.0801, {"kernel": 40, "memset": 1}),
             (4.507, 4.465, {"kernel": 20}), (0.25, 0.05, {"kernel": 7, "memset": 2, "memcpy": 1})]
    for eager_ms, graph_ms, nodes in cases:
        got = fn(eager_ms, graph_ms, dict(nodes))
        want = lab.launch_overhead_us(eager_ms, graph_ms, sum(nodes.values()))
        if got is None or not close(float(got), want, rel=1e-6):
            return (f"eager {eager_ms} ms, graph {graph_ms} ms, graph nodes {nodes}: expected {want:.3f} us per "
                    f"operation, got {got}. Every node of the graph is one operation eager launched by itself "
                    "(kernels, memsets, copies); and the answer is in microseconds.")
    return None


def _bucket_of(requests: list[int], buckets: list[int]) -> list[int]:
    ordered = sorted(buckets)
    if max(requests) > ordered[-1]:
        raise ValueError(f"a request of {max(requests)} exceeds the largest bucket {ordered[-1]}")
    return [next(b for b in ordered if b >= r) for r in requests]


def _check_buckets(fn) -> str | None:
    cases = [(REQUESTS, BUCKETS), ([9, 3, 100, 1, 64, 65], BUCKETS), ([5, 17, 2, 30], [32, 4, 16])]
    for requests, buckets in cases:
        got = fn(list(requests), list(buckets))
        want = _bucket_of(requests, buckets)
        if got is None or list(got) != want:
            return (f"requests {requests}, buckets {buckets}: expected the graphs {want}, got {got}. A request is "
                    "padded up to the smallest bucket that holds it; a graph cannot compute fewer rows than it has.")
    try:
        fn([8, 5000], list(BUCKETS))
    except ValueError:
        return None
    return (f"requests [8, 5000] with buckets {BUCKETS}: expected a ValueError (5000 rows fit no graph), "
            "but nothing was raised.")


def _padded_rows(requests: list[int], buckets: list[int]) -> int:
    return sum(b - r for r, b in zip(requests, _bucket_of(requests, buckets)))


def _best_padding(requests: list[int], max_graphs: int) -> int:
    sizes = sorted(set(requests))
    top, rest = sizes[-1], sizes[:-1]
    best = _padded_rows(requests, [top])
    for k in range(1, min(max_graphs, len(sizes))):
        for chosen in itertools.combinations(rest, k):
            best = min(best, _padded_rows(requests, [*chosen, top]))
    return best


def _check_choice(fn) -> str | None:
    cases = [(REQUESTS, 2), (REQUESTS, 3), ([1, 2, 3, 5, 8, 13, 21, 34, 55, 89] * 2 + [3, 3, 3, 34], 3),
             ([7, 7, 7, 9, 12, 30, 31, 32, 100], 4), ([16, 4, 16, 4, 16], 1), ([6, 10, 14, 100], 8)]
    for requests, max_graphs in cases:
        got = fn(list(requests), max_graphs)
        if got is None:
            raise NotImplementedError
        buckets = sorted(set(int(b) for b in got))
        if not buckets or len(buckets) > max_graphs:
            return f"requests {requests}: at most {max_graphs} graphs allowed, got buckets {list(got)}"
        if max(requests) > buckets[-1]:
            return f"requests {requests}: buckets {buckets} leave the request of {max(requests)} without a graph"
        padding, best = _padded_rows(requests, buckets), _best_padding(requests, max_graphs)
        if padding != best:
            return (f"requests {requests}, at most {max_graphs} graphs: your buckets {buckets} pad {padding} rows in "
                    f"all, the best choice pads {best}. Only the request sizes themselves are worth trying as "
                    "buckets; search over them.")
    return None


def _most_frequent(requests: list[int], max_graphs: int) -> list[int]:
    """The counterexample: the most frequent sizes, with the largest one swapped in last."""
    common = [size for size, _ in Counter(requests).most_common(max_graphs)]
    return common if max(requests) in common else common[:-1] + [max(requests)]


EXERCISES = [
    Exercise("03.1", "guided",
             "launch_overhead_us(eager_ms, graph_ms, graph_nodes): what eager launching costs per GPU operation.",
             _check_overhead, counterexample=lambda e, g, nodes: (e - g) * 1e3 / nodes["kernel"]),
    Exercise("03.2", "practice",
             "graphs_for(requests, buckets): the bucket whose graph serves each request (padded up).",
             _check_buckets,
             counterexample=lambda requests, buckets: [min(buckets, key=lambda b: abs(b - r)) for r in requests]),
    Exercise("03.3", "open",
             "choose_buckets(requests, max_graphs): at most max_graphs batch sizes to capture, serving every "
             "request with the fewest padded rows.",
             _check_choice, counterexample=_most_frequent),
]
