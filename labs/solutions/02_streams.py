"""Worked solutions to lab 02's exercises (checked by tests/test_exercises.py)."""

from common.labs.lab02_streams import Span


def exercise_1(a_alone_ms: float, b_alone_ms: float, together_ms: float) -> float:
    # saved time over the most that could be saved: 1 = the shorter piece hid entirely, 0 = one after the other
    return (a_alone_ms + b_alone_ms - together_ms) / min(a_alone_ms, b_alone_ms)


def exercise_2(spans: list[Span], lane_a: str, lane_b: str) -> float:
    a = [(s.start_ms, s.end_ms) for s in spans if s.lane == lane_a]
    b = [(s.start_ms, s.end_ms) for s in spans if s.lane == lane_b]
    # a lane's spans never overlap each other, so the pairwise intersections add up without double counting
    return sum(max(0.0, min(end_a, end_b) - max(start_a, start_b)) for start_a, end_a in a for start_b, end_b in b)


def exercise_3(ops: list[tuple[str, float, bool]], blocking_streams: set[str]) -> float:
    host_ms = 0.0                                   # when the host issues the next operation
    stream_end: dict[str, float] = {}               # each stream runs its work in order
    finished: list[tuple[str, float]] = []          # (stream, end) of every operation issued so far
    for stream, duration_ms, blocks_host in ops:
        start = max(host_ms, stream_end.get(stream, 0.0))
        if stream == "default":                     # the legacy default stream waits for every blocking stream
            start = max([start] + [end for s, end in finished if s in blocking_streams])
        elif stream in blocking_streams:            # ... and every blocking stream waits for it
            start = max([start] + [end for s, end in finished if s == "default"])
        end = start + duration_ms
        stream_end[stream] = end
        finished.append((stream, end))
        if blocks_host:                             # a pageable copy returns only once it is done
            host_ms = end
    return max(end for _, end in finished)
