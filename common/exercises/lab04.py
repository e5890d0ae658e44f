"""Lab 04 (shape changes) exercises: the first run against steady state per visit, what switching
costs one context against one context per profile, and choosing optimization profiles."""

from __future__ import annotations

import statistics
from collections import Counter

from common.exercises import Exercise, close
from common.labs import lab04_shape_changes as lab
from common.trt import batch_profile


def _study(visits: list[tuple[float, list[float]]]) -> lab.SwitchStudy:
    """The visits as the rows switch_study records (key = the visit's batch size)."""
    study = lab.SwitchStudy("exercise", "exercise", "cpu")
    for step, (first_ms, steady_ms) in enumerate(visits):
        study.rows.append({"step": step, "key": step, "kind": lab.FIRST, "latency_ms": first_ms,
                           "switch_host_ms": 0.0})
        study.rows += [{"step": step, "key": step, "kind": lab.STEADY, "latency_ms": t, "switch_host_ms": 0.0}
                       for t in steady_ms]
    return study


def _check_ratio(fn) -> str | None:
    cases = [
        # new batch sizes of very different speeds, each met once: batch 1 is cheap, batch 24 is not
        [(502.8, [2.17, 2.16, 2.18]), (536.0, [2.13, 2.12, 2.14]), (40.0, [20.0, 21.0, 19.5]),
         (90.0, [45.0, 44.0, 46.0, 45.5]), (130.0, [65.0, 66.0, 64.0])],
        # switching between warm shapes: no cost
        [(2.50, [2.48, 2.47, 2.49]), (9.9, [10.0, 9.8, 10.1]), (2.46, [2.47, 2.48, 2.45]), (10.2, [10.0, 10.1, 9.9])],
        [(3.0, [1.0]), (5.0, [4.0, 6.0])],
    ]
    for visits in cases:
        got = fn([(first, list(steady)) for first, steady in visits])
        want = _study(visits).summary().ratio
        if got is None or not close(float(got), want, rel=1e-9):
            return (f"visits {visits}: expected a median first/steady ratio of {want:.4f}, got {got}. Divide each "
                    "visit's first run by the median of that visit's own steady runs, then take the median of "
                    "those ratios: a slow batch size must not be compared with a fast one.")
    return None


def _profile_of(profiles: list[tuple[int, int, int]], batch: int) -> int:
    return lab.profile_index_for([((lo,), (opt,), (hi,)) for lo, opt, hi in profiles], (batch,))


def _switch_costs(requests, profiles, shape_ms, profile_ms) -> tuple[float, float]:
    one_ms = 0.0
    current = None
    for batch in requests:
        profile = _profile_of(profiles, batch)
        if current is not None and profile != current[0]:
            one_ms += profile_ms
        elif current is not None and batch != current[1]:
            one_ms += shape_ms
        current = (profile, batch)
    per_profile_ms, last_batch = 0.0, {}
    for batch in requests:
        profile = _profile_of(profiles, batch)
        if profile in last_batch and last_batch[profile] != batch:
            per_profile_ms += shape_ms
        last_batch[profile] = batch
    return one_ms, per_profile_ms


_NARROW = [(1, 4, 8), (16, 32, 64)]


def _check_costs(fn) -> str | None:
    cases = [
        ([8, 32] * 5, _NARROW, 0.4, 1.5),                       # the lab's served pair: one in each profile
        ([4, 8] * 5, _NARROW, 0.4, 1.5),                        # both in profile 0: shape changes only
        ([1, 1, 16, 16, 2, 64, 64, 3, 3, 3, 32], _NARROW, 0.3, 2.0),
        ([5, 20, 5, 20, 40, 5], [(1, 4, 8), (9, 16, 32), (33, 48, 64)], 0.2, 1.0),
    ]
    for requests, profiles, shape_ms, profile_ms in cases:
        got = fn(list(requests), list(profiles), shape_ms, profile_ms)
        want = _switch_costs(requests, profiles, shape_ms, profile_ms)
        if got is None or len(got) != 2 or not all(close(float(g), w, rel=1e-9, abs_=1e-9) for g, w in zip(got, want)):
            return (f"requests {requests}, profiles {profiles}, shape change {shape_ms} ms, profile switch "
                    f"{profile_ms} ms: expected (one context, one context per profile) = {want}, got {got}. "
                    "A context pays when what it is bound to changes: its profile, or else its batch size.")
    return None


def _fewest_profiles(requests: list[int], max_ratio: float) -> int:
    count, start = 0, None
    for size in sorted(set(requests)):
        if start is None or size > start * max_ratio:
            count, start = count + 1, size
    return count


def _check_profiles(fn) -> str | None:
    cases = [([8, 32, 8, 32, 1, 2, 4, 12, 16, 24], 8.0), ([1, 2, 3, 5, 6, 7, 10, 12, 16, 20, 24], 4.0),
             ([64, 64, 64, 1, 17, 200, 256, 256, 7], 4.0), ([3, 5, 9, 9, 40, 41, 42, 160], 2.0)]
    for requests, max_ratio in cases:
        got = fn(list(requests), max_ratio)
        if got is None:
            raise NotImplementedError
        profiles = [tuple(int(v) for v in p) for p in got]
        for lo, opt, hi in profiles:
            try:
                batch_profile("input", (3, 224, 224), lo, opt, hi)   # the course's Profile checks min <= opt <= max
            except ValueError as exc:
                return f"requests {requests}: profile {(lo, opt, hi)} is not a profile: {exc}"
            if hi > lo * max_ratio:
                return (f"requests {requests}: profile {(lo, opt, hi)} spans more than {max_ratio:g}x "
                        f"(max {hi} > {max_ratio:g} x min {lo})")
        served: dict[int, list[int]] = {}
        for batch in requests:
            try:
                served.setdefault(_profile_of(profiles, batch), []).append(batch)
            except ValueError:
                return f"requests {requests}: no profile of {profiles} holds batch {batch}"
        fewest = _fewest_profiles(requests, max_ratio)
        if len(profiles) != fewest:
            return (f"requests {requests}, max/min at most {max_ratio:g}: {len(profiles)} profiles {profiles}, the "
                    f"fewest that cover them is {fewest}. Sort the sizes and let each profile start at the smallest "
                    "size not yet covered.")
        for index, batches in served.items():
            counts = Counter(batches)
            if counts[profiles[index][1]] != max(counts.values()):
                return (f"requests {requests}: profile {profiles[index]} serves {sorted(batches)} (the first profile "
                        f"that holds a size serves it); put opt at the size it serves most, not at {profiles[index][1]}")
    return None


def _median_of_all(visits) -> float:
    """The counterexample: one median of all first runs over one median of all steady runs."""
    return statistics.median(f for f, _ in visits) / statistics.median(t for _, s in visits for t in s)


EXERCISES = [
    Exercise("04.1", "guided",
             "first_run_ratio(visits): the median over visits of first run / that visit's steady median.",
             _check_ratio, counterexample=_median_of_all),
    Exercise("04.2", "practice",
             "switch_costs(requests, profiles, shape_ms, profile_ms): the milliseconds that re-binding adds to a "
             "request stream with one context, and with one context per profile.",
             _check_costs,
             counterexample=lambda requests, profiles, shape_ms, profile_ms: (
                 profile_ms * sum(a != b for a, b in zip(requests, requests[1:])), 0.0)),
    Exercise("04.3", "open",
             "choose_profiles(requests, max_ratio): the fewest (min, opt, max) batch profiles, each no wider than "
             "max_ratio, covering every request, with opt at the size each serves most.",
             _check_profiles,
             counterexample=lambda requests, max_ratio: [(b, b, b) for b in sorted(set(requests))]),
]
