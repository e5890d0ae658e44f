"""Lab 02 (streams): independent work timed as one region, on CUDA streams or in CPU threads.

:class:`ForkJoin` enqueues independent pieces of GPU work on worker streams forked from one *main*
stream and joined back to it, so ``bench.measure(run, stream=main)`` times the whole region; its
:meth:`~ForkJoin.timeline` records when each piece ran on which stream. :class:`ThreadFork` is the CPU
counterpart: each piece in its own Python thread. :func:`compare_concurrent` times the same work one
piece after another and concurrently; :func:`overlap_study` times two pieces alone and together and
says how much of one hid under the other (:func:`overlap_fraction`, :func:`busy_overlap_ms`);
:func:`host_cost_study` times what one call costs the host on the legacy default stream and on a
created stream. Every comparison takes :data:`common.bench.PASSES` interleaved passes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from common import bench, env

Work = Callable[[], object]


@dataclass(frozen=True)
class Span:
    """When one piece of work ran, on which lane (a stream or a thread), in ms from a common start."""

    lane: str
    label: str
    start_ms: float
    end_ms: float

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


def with_lane_prefix(spans: Sequence[Span], prefix: str) -> list[Span]:
    """The spans with each lane renamed "prefix: lane", so configurations can share one panel."""
    return [dataclasses.replace(s, lane=f"{prefix}: {s.lane}") for s in spans]


def _labels(works: Sequence[Work], labels: Sequence[str] | None) -> list[str]:
    if not works:
        raise ValueError("no work given: pass at least one callable")
    names = list(labels) if labels is not None else [f"work {i}" for i in range(len(works))]
    if len(names) != len(works):
        raise ValueError(f"{len(names)} labels for {len(works)} pieces of work")
    return names


def _stream_name(stream: torch.cuda.Stream, index: int) -> str:
    return "legacy default stream" if stream.cuda_stream == 0 else f"stream {index}"


class ForkJoin:
    """Independent pieces of GPU work, each on a worker stream forked from one main stream (lab 02).

    :meth:`run` records an event on the main stream and makes every worker stream wait for it,
    enqueues work i on worker stream i mod n (in list order, under ``torch.cuda.stream``), records an
    event on each worker stream and makes the main stream wait for all of them. Events recorded on
    the main stream around :meth:`run` therefore bracket the whole region: that is how
    :meth:`measure` times it, with ``bench.measure(run, stream=main)``. With one worker stream the
    pieces run one after another: the baseline to compare with.

    `streams` is a count (new streams are created) or the streams themselves (the legacy default
    stream and :func:`blocking_stream` included); the main stream is always a created stream.
    """

    def __init__(self, works: Sequence[Work], streams: int | Sequence[torch.cuda.Stream], *,
                 labels: Sequence[str] | None = None, lane_names: Sequence[str] | None = None) -> None:
        self.labels = _labels(works, labels)
        if isinstance(streams, int) and streams < 1:
            raise ValueError(f"ForkJoin needs at least one worker stream, got {streams}")
        env.require("gpu")
        self.works = list(works)
        self.streams = [torch.cuda.Stream() for _ in range(streams)] if isinstance(streams, int) else list(streams)
        handles = [s.cuda_stream for s in self.streams]
        if not handles or len(set(handles)) != len(handles):
            raise ValueError("worker streams must be given and all different")
        self.lane_names = list(lane_names) if lane_names is not None else [
            _stream_name(s, i) for i, s in enumerate(self.streams)]
        if len(self.lane_names) != len(self.streams):
            raise ValueError(f"{len(self.lane_names)} lane names for {len(self.streams)} streams")
        self.main = torch.cuda.Stream()
        while self.main.cuda_stream in handles:   # PyTorch hands out its pooled streams round-robin
            self.main = torch.cuda.Stream()
        self._fork = torch.cuda.Event()
        self._joins = [torch.cuda.Event() for _ in self.streams]

    def _enqueue(self, marks: list | None) -> None:
        self._fork.record(self.main)
        for stream in self.streams:
            stream.wait_event(self._fork)
        for i, work in enumerate(self.works):
            stream = self.streams[i % len(self.streams)]
            with torch.cuda.stream(stream):
                if marks is None:
                    work()
                else:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record(stream)
                    work()
                    end.record(stream)
                    marks.append((i, start, end))
        for stream, join in zip(self.streams, self._joins):
            join.record(stream)
            self.main.wait_event(join)

    def run(self) -> None:
        """Enqueue every piece once, forked from and joined back to the main stream (returns at once)."""
        self._enqueue(None)

    def measure(self, name: str, *, batch_size: int, **bench_kwargs) -> bench.Measurement:
        """The whole fork-join region timed by events on the main stream; `batch_size` = items per region."""
        return bench.measure(self.run, name=name, batch_size=batch_size, device="cuda", stream=self.main,
                             **bench_kwargs)

    def timeline(self) -> list[Span]:
        """Run once with timing events around each piece; spans in ms from an event just before the fork."""
        origin = torch.cuda.Event(enable_timing=True)
        marks: list = []
        origin.record(self.main)
        self._enqueue(marks)
        self.main.synchronize()
        return [Span(self.lane_names[i % len(self.streams)], self.labels[i], origin.elapsed_time(start),
                     origin.elapsed_time(end)) for i, start, end in marks]


class ThreadFork:
    """The CPU counterpart of :class:`ForkJoin`: the pieces run in `num_threads` Python threads at once,
    and :meth:`run` returns when all are done (lab 02).

    PyTorch releases the GIL inside its operators, so two models can compute at the same time in two
    threads. Each piece first sets PyTorch's intra-op threads to `intra_op_threads` (default: what
    the calling thread has), so a configuration uses the cores it is given and no more: threads that
    each ask for every core oversubscribe the CPU. With ``num_threads=1`` the pieces run one after
    the other in the calling thread. Use it as a context manager (or call :meth:`close`): that stops
    the threads and restores the calling thread's intra-op setting.
    """

    def __init__(self, works: Sequence[Work], num_threads: int, *, intra_op_threads: int | None = None,
                 labels: Sequence[str] | None = None) -> None:
        self.labels = _labels(works, labels)
        if num_threads < 1:
            raise ValueError(f"ThreadFork needs at least one thread, got {num_threads}")
        self.works = list(works)
        self.num_threads = num_threads
        self._saved_intra_op_threads = torch.get_num_threads()
        self.intra_op_threads = intra_op_threads or self._saved_intra_op_threads
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="lab02") if num_threads > 1 else None

    def _call(self, index: int, marks: list | None) -> None:
        # Per call and per thread: PyTorch's OpenMP setting belongs to the thread that runs the operator.
        torch.set_num_threads(self.intra_op_threads)
        start = time.perf_counter_ns()
        self.works[index]()
        if marks is not None:
            marks.append((threading.get_ident(), index, start, time.perf_counter_ns()))

    def _enqueue(self, marks: list | None) -> None:
        if self._pool is None:
            for i in range(len(self.works)):
                self._call(i, marks)
            return
        futures = [self._pool.submit(self._call, i, marks) for i in range(len(self.works))]
        for future in futures:
            future.result()   # re-raises here what a piece raised in its thread

    def run(self) -> None:
        """Run every piece once and return when all have finished."""
        self._enqueue(None)

    def measure(self, name: str, *, batch_size: int, **bench_kwargs) -> bench.Measurement:
        return bench.measure(self.run, name=name, batch_size=batch_size, device="cpu", **bench_kwargs)

    def timeline(self) -> list[Span]:
        """Run once; spans in ms from the start of the run, one lane per thread that did work."""
        marks: list = []
        origin = time.perf_counter_ns()
        self._enqueue(marks)
        marks.sort(key=lambda m: m[2])
        lanes: dict[int, str] = {}
        for ident, *_ in marks:
            lanes.setdefault(ident, f"thread {len(lanes)}")
        return [Span(lanes[ident], self.labels[i], (start - origin) / 1e6, (end - origin) / 1e6)
                for ident, i, start, end in marks]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        torch.set_num_threads(self._saved_intra_op_threads)

    def __enter__(self) -> "ThreadFork":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- one after the other vs at the same time -----------------------------------------------------

@dataclass
class Concurrency:
    """The same work timed one piece after another and concurrently (a :class:`bench.Comparison`)."""

    experiment: str
    tag: str                    # a short name for charts
    one: str                    # how the baseline ran, e.g. "1 stream"
    concurrent: str             # how the concurrent run ran, e.g. "2 streams"
    items: int                  # items per region, for throughput
    comparison: bench.Comparison
    one_spans: list[Span]       # one timeline of each configuration, lanes prefixed by its label
    concurrent_spans: list[Span]
    one_runs: list[bench.Measurement] = dataclasses.field(default_factory=list)   # the passes behind `comparison`
    concurrent_runs: list[bench.Measurement] = dataclasses.field(default_factory=list)

    @property
    def spans(self) -> list[Span]:
        return self.one_spans + self.concurrent_spans

    def row(self) -> dict:
        """The comparison as a table row; with the GPU's busy share and regime of the concurrent run
        where its passes were kept (:func:`common.bench.kernel_fields`)."""
        c = self.comparison
        lo, hi = c.interval
        regime = bench.kernel_fields(self.concurrent_runs) if self.concurrent_runs else {}
        return {"experiment": self.experiment, "one": self.one, "concurrent": self.concurrent,
                "one_ms": c.median_a_ms, "concurrent_ms": c.median_b_ms, "speedup": c.speedup,
                "interval": f"{lo:.2f}-{hi:.2f}x", "spread_pct": c.noise_pct, "significant": c.significant,
                "one_items_per_s": self.items / (c.median_a_ms / 1e3),
                "concurrent_items_per_s": self.items / (c.median_b_ms / 1e3), **regime}


def compare_concurrent(one: ForkJoin | ThreadFork, concurrent: ForkJoin | ThreadFork, *, experiment: str,
                       tag: str, one_label: str, concurrent_label: str, items: int, passes: int = bench.PASSES,
                       **bench_kwargs) -> Concurrency:
    """Time `one` (the pieces one after another) and `concurrent` alternately, `passes` times each, so
    that drift hits both; speedup = one's median / concurrent's median, with its 95% interval over passes."""
    runs_one, runs_concurrent = [], []
    for p in range(passes):   # judged on event time: kernel time in the first pass, for the regime
        timing = {**bench_kwargs, "kernel_time": bench.kernel_time_in(p)}
        runs_one.append(one.measure(f"{experiment}, {one_label}", batch_size=items, **timing))
        runs_concurrent.append(concurrent.measure(f"{experiment}, {concurrent_label}", batch_size=items, **timing))
    return Concurrency(experiment, tag, one_label, concurrent_label, items, bench.compare(runs_one, runs_concurrent),
                       with_lane_prefix(one.timeline(), one_label),
                       with_lane_prefix(concurrent.timeline(), concurrent_label), runs_one, runs_concurrent)


def overlap_fraction(alone_a_ms: float, alone_b_ms: float, together_ms: float) -> float:
    """How much of the shorter piece hid under the other: 1 when together = the longer alone
    (full overlap), 0 when together = the sum (one after the other); below 0 when together costs more."""
    shorter = min(alone_a_ms, alone_b_ms)
    if shorter <= 0:
        raise ValueError(f"alone times must be positive, got {alone_a_ms} and {alone_b_ms}")
    return (alone_a_ms + alone_b_ms - together_ms) / shorter


def _merged(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def busy_overlap_ms(spans: Sequence[Span], lane_a: str, lane_b: str) -> float:
    """How long both lanes were busy at the same time, from a timeline."""
    a = _merged([(s.start_ms, s.end_ms) for s in spans if s.lane == lane_a])
    b = _merged([(s.start_ms, s.end_ms) for s in spans if s.lane == lane_b])
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


@dataclass(frozen=True)
class OverlapCase:
    """Two pieces of GPU work and the stream each runs on, e.g. a copy and an inference."""

    name: str
    works: tuple[Work, Work]
    streams: tuple[torch.cuda.Stream, torch.cuda.Stream]
    labels: tuple[str, str]
    lanes: tuple[str, str]


@dataclass
class OverlapStudy:
    """Per case: each piece alone, both together, how much overlapped; and one timeline per case."""

    rows: list[dict]
    timelines: dict[str, list[Span]]
    together: dict[str, list[bench.Measurement]]

    def row(self, case: str) -> dict:
        return next(r for r in self.rows if r["case"] == case)

    def compare(self, case_a: str, case_b: str) -> bench.Comparison:
        """Case b against case a, on the event time of the two pieces together (speedup = a / b): what
        the program waits for."""
        return bench.compare(self.together[case_a], self.together[case_b])

    def panel(self) -> list[Span]:
        """Every case's timeline in one list, each lane prefixed by its case: one panel of a timeline plot."""
        return [span for case, spans in self.timelines.items() for span in with_lane_prefix(spans, case)]


def overlap_study(cases: Sequence[OverlapCase], *, passes: int = bench.PASSES, **bench_kwargs) -> OverlapStudy:
    """Time each case's two pieces alone and together (fork-join regions), `passes` times in turn.

    The pieces are enqueued in the order given: put first what a real program issues first.
    """
    forks = {}
    for c in cases:
        forks[c.name] = [ForkJoin([c.works[0]], [c.streams[0]], labels=[c.labels[0]], lane_names=[c.lanes[0]]),
                         ForkJoin([c.works[1]], [c.streams[1]], labels=[c.labels[1]], lane_names=[c.lanes[1]]),
                         ForkJoin(list(c.works), list(c.streams), labels=list(c.labels), lane_names=list(c.lanes))]
    runs: dict[str, list[list[bench.Measurement]]] = {c.name: [[], [], []] for c in cases}
    for p in range(passes):   # judged on event time: kernel time in the first pass, for the regime
        for c in cases:
            for what, fork, bucket in zip((c.labels[0], c.labels[1], "together"), forks[c.name], runs[c.name]):
                bucket.append(fork.measure(f"{c.name}: {what}", batch_size=1, kernel_time=bench.kernel_time_in(p),
                                           **bench_kwargs))
    rows, timelines = [], {}
    for c in cases:
        a_ms, b_ms, together_ms = (bench.median_latency_ms(bucket) for bucket in runs[c.name])
        spans = forks[c.name][2].timeline()
        busy = [sum(s.duration_ms for s in spans if s.lane == lane) for lane in c.lanes]
        rows.append({
            "case": c.name, "a": c.labels[0], "b": c.labels[1], "a_alone_ms": a_ms, "b_alone_ms": b_ms,
            "sum_ms": a_ms + b_ms, "together_ms": together_ms,
            "spread_pct": max(bench.spread_pct(m.latency_ms.median for m in bucket) for bucket in runs[c.name]),
            "overlap": overlap_fraction(a_ms, b_ms, together_ms),
            "timeline_overlap": busy_overlap_ms(spans, *c.lanes) / min(busy),
            **bench.kernel_fields(runs[c.name][2]),
        })
        timelines[c.name] = spans
    return OverlapStudy(rows, timelines, {c.name: runs[c.name][2] for c in cases})



def host_cost_study(work: Work, streams: dict[str, torch.cuda.Stream], *, passes: int = bench.PASSES,
                    **bench_kwargs) -> dict[str, list[bench.Measurement]]:
    """What one call of `work` costs the host on each of `streams` (by name, e.g. the legacy default
    stream and a created one), `passes` interleaved passes each. Each call is a fork-join region from
    a created main stream, so the events stay off the default stream; the host time per call is what
    to compare (``bench.compare(..., on="host")``): a call that synchronises shows it there."""
    forks = {name: ForkJoin([work], [stream], labels=["call"], lane_names=[name]) for name, stream in streams.items()}
    runs: dict[str, list[bench.Measurement]] = {name: [] for name in streams}
    for p in range(passes):   # judged on host time: kernel time in the first pass, for the regime
        for name, fork in forks.items():
            runs[name].append(fork.measure(f"call on the {name}", batch_size=1, kernel_time=bench.kernel_time_in(p),
                                           **bench_kwargs))
    return runs


def default_stream_host_cost(work: Work, **bench_kwargs) -> bench.Comparison:
    """What one call of `work` costs the host on the legacy default stream against a created stream:
    host time per call, speedup = the default stream's / the created stream's (above 1: the call costs
    the host more on the default stream, as a call that synchronises there does)."""
    runs = host_cost_study(work, {"legacy default stream": torch.cuda.default_stream(),
                                  "created stream": torch.cuda.Stream()}, **bench_kwargs)
    return bench.compare(runs["legacy default stream"], runs["created stream"], on="host")
