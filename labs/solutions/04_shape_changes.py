"""Worked solutions to lab 04's exercises (checked by tests/test_exercises.py)."""

import statistics
from collections import Counter

from common.labs import lab04_shape_changes as lab


def exercise_1(visits: list[tuple[float, list[float]]]) -> float:
    # each visit against its own steady state, so batch sizes of different speeds do not mix
    return statistics.median(first_ms / statistics.median(steady_ms) for first_ms, steady_ms in visits)


def exercise_2(requests: list[int], profiles: list[tuple[int, int, int]], shape_ms: float,
               profile_ms: float) -> tuple[float, float]:
    ranges = [((lo,), (opt,), (hi,)) for lo, opt, hi in profiles]
    profile_of = [lab.profile_index_for(ranges, (batch,)) for batch in requests]
    # One context: bound at the first request for free; then a new profile costs a profile switch
    # (shape included), a new batch size in the same profile a shape change.
    one_context_ms = 0.0
    for (prev_batch, prev_profile), (batch, profile) in zip(zip(requests, profile_of),
                                                             zip(requests[1:], profile_of[1:])):
        if profile != prev_profile:
            one_context_ms += profile_ms
        elif batch != prev_batch:
            one_context_ms += shape_ms
    # One context per profile: never switches profile, only changes shape within its own profile.
    per_profile_ms, last_batch = 0.0, {}
    for batch, profile in zip(requests, profile_of):
        if profile in last_batch and last_batch[profile] != batch:
            per_profile_ms += shape_ms
        last_batch[profile] = batch
    return one_context_ms, per_profile_ms


def exercise_3(requests: list[int], max_ratio: float) -> list[tuple[int, int, int]]:
    # Greedy from the smallest size: a profile starting at the smallest uncovered size reaches as far
    # as any profile covering it can, so no choice covers the sizes with fewer profiles.
    counts = Counter(requests)
    profiles = []
    sizes = sorted(counts)
    i = 0
    while i < len(sizes):
        lo = sizes[i]
        served = [s for s in sizes[i:] if s <= lo * max_ratio]
        opt = max(served, key=lambda s: counts[s])   # tune the profile where its traffic is
        profiles.append((lo, opt, served[-1]))
        i += len(served)
    return profiles
