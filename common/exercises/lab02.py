"""Lab 02 (streams) exercises: how much two pieces of work overlapped, read from times and from a
timeline, and a model of when work on each stream may start (default stream, pageable copies)."""

from __future__ import annotations

import random

from common.exercises import Exercise, close
from common.labs import lab02_streams
from common.labs.lab02_streams import Span


def _check_overlap(fn) -> str | None:
    # (a alone, b alone, together), shaped like the lab's overlap table
    cases = [(9.817, 0.3511, 10.28), (1.252, 0.350, 1.256), (0.3614, 0.3506, 0.7399), (2.0, 1.0, 2.0),
             (3.0, 1.0, 4.0), (0.5, 2.0, 2.1)]
    for a_ms, b_ms, together_ms in cases:
        got = fn(a_ms, b_ms, together_ms)
        want = lab02_streams.overlap_fraction(a_ms, b_ms, together_ms)
        if got is None or not close(float(got), want, rel=1e-6, abs_=1e-9):
            return (f"alone {a_ms} ms and {b_ms} ms, together {together_ms} ms: expected overlap {want:.4f}, got {got}. "
                    "The time saved by running together is (a + b - together); compare it with the most that could "
                    "be saved, the shorter piece.")
    return None


def _timelines() -> list[tuple[list[Span], str, str]]:
    hand = [
        # a lane with a gap: its envelope overlaps the other lane where the lane itself is idle
        ([Span("copy", "c0", 0.0, 1.0), Span("copy", "c1", 3.0, 4.0), Span("inference", "i", 0.5, 3.5)],
         "copy", "inference"),
        # no overlap at all: one after the other
        ([Span("stream 0", "a", 0.0, 2.0), Span("stream 1", "b", 2.0, 3.0)], "stream 0", "stream 1"),
        # a third lane that must be ignored
        ([Span("s0", "a", 0.0, 4.0), Span("s1", "b", 1.0, 2.0), Span("s2", "c", 0.0, 9.0)], "s0", "s1"),
    ]
    rng = random.Random(2)
    for _ in range(6):   # random timelines: several pieces per lane, in order, with gaps
        spans = []
        for lane in ("stream 0", "stream 1"):
            t = rng.uniform(0, 1)
            for i in range(rng.randint(1, 4)):
                start = t + rng.uniform(0, 1)
                end = start + rng.uniform(0.1, 2)
                spans.append(Span(lane, f"{lane} #{i}", round(start, 3), round(end, 3)))
                t = end
        rng.shuffle(spans)
        hand.append((spans, "stream 0", "stream 1"))
    return hand


def _check_busy(fn) -> str | None:
    for spans, lane_a, lane_b in _timelines():
        got = fn(list(spans), lane_a, lane_b)
        want = lab02_streams.busy_overlap_ms(spans, lane_a, lane_b)
        if got is None or not close(float(got), want, rel=1e-9, abs_=1e-9):
            shown = [(s.lane, s.start_ms, s.end_ms) for s in spans]
            return (f"spans {shown}, lanes {lane_a!r} and {lane_b!r}: expected {want:.4f} ms when both were busy, got "
                    f"{got}. Sum, over every pair of a span of one lane and a span of the other, the length of "
                    "their intersection (a lane is idle between its spans).")
    return None


def _schedule(ops: list[tuple[str, float, bool]], blocking: set[str]) -> float:
    host_ms, stream_end, done, last = 0.0, {}, [], 0.0
    for stream, duration_ms, blocks_host in ops:
        start = max(host_ms, stream_end.get(stream, 0.0))
        if stream == "default":
            start = max([start] + [end for s, end in done if s in blocking])
        elif stream in blocking:
            start = max([start] + [end for s, end in done if s == "default"])
        end = start + duration_ms
        stream_end[stream] = end
        done.append((stream, end))
        last = max(last, end)
        if blocks_host:
            host_ms = end
    return last


#: (what it shows, operations in issue order (stream, ms, blocks the host), blocking streams)
_SCENARIOS = [
    ("copy on a blocking stream, inference on a created one", [("blocking", 0.36, False), ("s1", 0.35, False)],
     {"blocking"}),
    ("copy on a blocking stream, inference on the default stream", [("blocking", 0.36, False), ("default", 0.35, False)],
     {"blocking"}),
    ("copy on a non-blocking stream, inference on the default stream",
     [("copy", 0.36, False), ("default", 0.35, False)], set()),
    ("the default stream first, then a blocking stream", [("default", 1.0, False), ("blocking", 2.0, False)],
     {"blocking"}),
    ("two pieces in one stream", [("s", 1.0, False), ("s", 2.0, False), ("t", 2.5, False)], set()),
    ("a pageable upload issued before the inference", [("copy", 9.8, True), ("compute", 0.35, False)], set()),
    ("the inference issued before a pageable upload", [("compute", 0.35, False), ("copy", 9.8, True)], set()),
    ("a pinned upload issued before the inference", [("copy", 1.25, False), ("compute", 0.35, False)], set()),
    ("a pipeline: upload i+1 (pageable) issued after inference i",
     [("copy", 2.0, True), ("compute", 3.0, False), ("copy", 2.0, True), ("compute", 3.0, False),
      ("copy", 2.0, True), ("compute", 3.0, False)], set()),
    ("blocking streams wait for the default stream only, not for each other",
     [("b1", 1.0, False), ("default", 1.0, False), ("b2", 1.0, False), ("b1", 0.5, False)], {"b1", "b2"}),
]


def _check_schedule(fn) -> str | None:
    for what, ops, blocking in _SCENARIOS:
        got = fn(list(ops), set(blocking))
        want = _schedule(ops, blocking)
        if got is None or not close(float(got), want, rel=1e-9, abs_=1e-9):
            return (f"{what}: operations {ops}, blocking streams {sorted(blocking)}: expected the last to finish at "
                    f"{want:.3f} ms, got {got}. Check the two implicit waits of the legacy default stream, and that a "
                    "pageable copy holds the host until it is done.")
    return None


def _independent_streams(ops, blocking) -> float:
    """The counterexample: every stream runs its work in order, and nothing else waits."""
    per_stream: dict[str, float] = {}
    for stream, ms, _ in ops:
        per_stream[stream] = per_stream.get(stream, 0.0) + ms
    return max(per_stream.values())


EXERCISES = [
    Exercise("02.1", "guided",
             "overlap(a_alone_ms, b_alone_ms, together_ms): how much of the shorter piece hid under the other.",
             _check_overlap, counterexample=lambda a, b, t: (a + b - t) / max(a, b)),
    Exercise("02.2", "practice",
             "busy_overlap_ms(spans, lane_a, lane_b): how long both lanes of a timeline were busy at once.",
             _check_busy,
             counterexample=lambda spans, a, b: max(0.0, min(max(s.end_ms for s in spans if s.lane == a),
                                                             max(s.end_ms for s in spans if s.lane == b))
                                                    - max(min(s.start_ms for s in spans if s.lane == a),
                                                          min(s.start_ms for s in spans if s.lane == b)))),
    Exercise("02.3", "open",
             "finish_ms(ops, blocking_streams): when the last of a list of stream operations finishes, with the "
             "legacy default stream's implicit waits and pageable copies blocking the host.",
             _check_schedule, counterexample=_independent_streams),
]
