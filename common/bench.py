"""The timing harness every lab uses, measuring the way `trtexec` does.

Introduced in lab 00 (tour). On a GPU the device time of each iteration comes from a pair of CUDA
events recorded on a created (never the default) stream around the enqueue alone; host enqueue
time is taken apart with ``perf_counter_ns``. Warm-up runs for a time budget, then enough
iterations fill a measuring budget; results are medians with p10/p90/p99. On a CPU the same
statistics come from ``perf_counter_ns`` around each call.

Each timed loop sits in an NVTX range named after the measurement, so an Nsight Systems trace of a
lab shows where every figure came from. Right after the event-timed loop, while the GPU still drains
its queue (so at the loop's clocks), a short pass runs under CUPTI (PyTorch's profiler with CUDA
activities only, :func:`device_profile`), its iterations back to back as in the loop, and reads the GPU's own busy time per
iteration: ``kernel_ms`` is the union of the intervals of every kernel, memory copy and memset the
iteration put on the device (work overlapping on several streams counts once), ``kernel_sum_ms``
their plain sum. ``gpu_busy = kernel_ms / event_ms`` names the regime a figure was measured in:
device-bound (busy >= 0.8), host-bound (< 0.5) or mixed. A busy share a little above 1 means the pass
ran slower than the loop's median: it reads the clocks at the loop's end, and a heavy kernel's clocks
fall during a short loop; kernels on several streams also overlap less under CUPTI (the kernel note
says so).
Where the host paced the loop (the GPU had caught up with it when the loop ended), nothing is
queued to keep the clocks, so inside a :func:`shared_kernel_session` block such measurements read their
kernel time together, in one session at the block's end: a session's fixed cost is paid once per pass
instead of once per configuration. :func:`interleaved_passes` (under :func:`measure_interleaved` and
``cases.measure_cases``) runs the configurations the host paced in the pass before first, in that block.
``TRTLABS_KERNEL_TIME=0`` (or ``measure(..., kernel_time=False)``) skips that pass.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import json
import math
import os
import random
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence


@dataclass(frozen=True)
class Stats:
    """Order statistics of a list of samples, in milliseconds."""

    n: int
    median: float
    p10: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "Stats":
        if not samples_ms:
            raise ValueError("no samples: the timed function never ran")
        xs = sorted(float(x) for x in samples_ms)
        return cls(
            n=len(xs),
            median=_quantile(xs, 0.5),
            p10=_quantile(xs, 0.10),
            p90=_quantile(xs, 0.90),
            p99=_quantile(xs, 0.99),
            mean=statistics.fmean(xs),
            std=statistics.pstdev(xs) if len(xs) > 1 else 0.0,
            min=xs[0],
            max=xs[-1],
        )


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted samples (numpy's default method)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


#: Interleaved passes every comparison takes (COURSE_DESIGN §5); fewer only where one pass takes over 10 s.
PASSES = 5
#: Confidence of the bootstrap interval a ratio carries, and the resampling that computes it.
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

DEVICE_BOUND, HOST_BOUND, MIXED, CPU_REGIME, NOT_MEASURED = "device-bound", "host-bound", "mixed", "cpu", "not measured"
#: gpu_busy at or above which a figure is device-bound, and below which it is host-bound.
DEVICE_BOUND_BUSY, HOST_BOUND_BUSY = 0.8, 0.5

#: Environment variable that switches the kernel-time pass off ("0", "false", "no", "off").
KERNEL_TIME_ENV = "TRTLABS_KERNEL_TIME"
#: The kernel-time pass profiles about this much time, 1 to KERNEL_TIME_MAX_ITERS iterations. A
#: session's fixed cost (CUPTI set up, flushed and torn down: about 16 ms on an H200) and reading its
#: records (a few microseconds per kernel) are what the pass costs a lab, so the window is short; it
#: follows the loop at the loop's clocks, and 30 iterations average out an iteration's jitter.
KERNEL_TIME_BUDGET_MS = 3.0
#: The window after a loop that left work queued (the GPU set the pace): such iterations are steady,
#: and every millisecond of window is one the lab waits, on top of a session that costs about 8 ms
#: there. On an H200 lab 09's 24 device-bound GEMMs (0.05-13 ms) read kernel medians over five passes
#: from 1 ms windows within -9% to +5% (median +0.4%) of 3 ms ones (the -9%: 0.8 ms layers read over one
#: iteration instead of three, closer to their event time), where their event medians moved -5% to +6%
#: between the same two runs; the lab's pass cost 0.5 s less.
QUEUED_KERNEL_TIME_BUDGET_MS = 1.0
KERNEL_TIME_MAX_ITERS = 30
#: Device activities that count as device work (kineto's names): kernels, copies and memsets.
DEVICE_ACTIVITIES = ("kernel", "gpu_memcpy", "gpu_memset")
_COPY_ACTIVITIES = ("gpu_memcpy", "gpu_memset")
#: The NVTX range around the kernel-time pass (an Nsight Systems trace shows it beside the timed loop).
KERNEL_PASS_LABEL = "bench: kernel-time pass"
#: A kernel note: CUPTI works in this process (its probe saw a known kernel) but saw none for this function.
NO_DEVICE_WORK = "CUPTI recorded no device work for this function"
#: A kernel note for work on several streams (each launch under CUPTI costs the host more, so a
#: second stream's kernels start later and overlap the first's less than in the timed loop).
SEVERAL_STREAMS_NOTE = ("kernels on {n} streams: under CUPTI they overlap less than in the timed loop, "
                        "so kernel time can exceed event time here")


@dataclass(frozen=True)
class KernelTime:
    """The GPU's own time per iteration, read by CUPTI in the pass right after the event-timed loop."""

    union_ms: float                    # median per iteration of the union of device-activity intervals
    sum_ms: float                      # median per iteration of their plain sum (overlap counted twice)
    copy_ms: float                     # the memcpy/memset part of union_ms (union of those alone)
    activities_per_iter: float         # kernels + copies + memsets per iteration (median)
    iterations: int                    # iterations profiled
    per_iteration_ms: tuple[float, ...] = ()   # union_ms of each profiled iteration
    streams: int = 1                   # distinct device streams the work ran on

    @property
    def several_streams(self) -> bool:
        """Work on more than one stream: under CUPTI it overlaps less than in the timed loop (see
        :data:`SEVERAL_STREAMS_NOTE`), so kernel_ms can come out above the loop's event time."""
        return self.streams > 1

    @classmethod
    def from_dict(cls, d: dict) -> "KernelTime":
        return cls(**{**d, "per_iteration_ms": tuple(d.get("per_iteration_ms", ()))})


def interval_union(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by `intervals` ((start, end) pairs): overlapping parts count once."""
    total = 0.0
    run: list[float] = []   # [start, end] of the run of overlapping intervals being merged
    for start, end in sorted((float(a), float(b)) for a, b in intervals):
        if end < start:
            raise ValueError(f"interval ends before it starts: ({start}, {end})")
        if run and start <= run[1]:
            run[1] = max(run[1], end)
            continue
        if run:
            total += run[1] - run[0]
        run = [start, end]
    return total + (run[1] - run[0] if run else 0.0)


def attribute(intervals: Sequence[tuple[float, float]],
              windows: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Give each interval to the window (iteration) in which it starts, clipped at that window's end.

    Windows are (start, end) on the same clock, in order and not overlapping (the profiling pass
    synchronises before its window closes, so the device work it launched ends inside it). An interval starting outside every window (another process's or the profiler's own work)
    belongs to no iteration and is dropped.
    """
    starts = [w[0] for w in windows]
    out: list[list[tuple[float, float]]] = [[] for _ in windows]
    for start, end in intervals:
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0 and start <= windows[i][1]:
            out[i].append((start, min(end, windows[i][1])))
    return out


def per_iteration(intervals: Sequence[tuple[float, float]], windows: Sequence[tuple[float, float]],
                  ) -> list[tuple[float, float, int]]:
    """(union, plain sum, count) of the intervals of each window, in the intervals' unit."""
    return [(interval_union(ivs), sum(e - s for s, e in ivs), len(ivs)) for ivs in attribute(intervals, windows)]


def regime_of(busy: float, device: str = "cuda") -> str:
    """The regime a gpu_busy value names: device-bound, host-bound or mixed; "cpu" on a CPU."""
    if device == "cpu":
        return CPU_REGIME
    if busy is None or math.isnan(busy):
        return NOT_MEASURED
    if busy >= DEVICE_BOUND_BUSY:
        return DEVICE_BOUND
    if busy < HOST_BOUND_BUSY:
        return HOST_BOUND
    return MIXED


def kernel_time_enabled(flag: bool | None = None) -> bool:
    """`flag` if given, else on unless TRTLABS_KERNEL_TIME is 0 / false / no / off."""
    if flag is not None:
        return bool(flag)
    value = os.environ.get(KERNEL_TIME_ENV, "").strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{KERNEL_TIME_ENV}={value!r}: expected 1 or 0 (on or off)")


def kernel_iterations(per_iter_ms: float, budget_ms: float = KERNEL_TIME_BUDGET_MS,
                      max_iters: int = KERNEL_TIME_MAX_ITERS) -> int:
    """How many iterations the kernel-time pass profiles: about `budget_ms` of them, 1 to `max_iters`."""
    if not per_iter_ms > 0:
        return max_iters
    return int(min(max_iters, max(1, budget_ms // per_iter_ms)))


@dataclass
class Measurement:
    """One timed configuration: what ran, where, and its latency distribution."""

    name: str
    backend: str
    device: str
    batch_size: int
    latency_ms: Stats          # device time per iteration (CUDA events) or host time on CPU
    host_ms: Stats             # host time spent in the call (enqueue cost on a GPU)
    wall_ms_per_iter: float    # the loop's span / iterations (first start to last end event on a GPU)
    iterations: int
    warmup_ms: float
    timer: str                 # "cuda-events" or "perf_counter"
    extra: dict = field(default_factory=dict)
    kernel: KernelTime | None = None   # the GPU's own time (CUPTI pass); None on a CPU or when skipped
    kernel_note: str = ""              # why `kernel` is None on a GPU
    host_paced: bool | None = None     # the GPU had caught up with the host when the timed loop ended

    @property
    def event_ms(self) -> float:
        """Median latency per iteration: CUDA events on a GPU, host time on a CPU."""
        return self.latency_ms.median

    @property
    def kernel_ms(self) -> float:
        """The GPU's busy time per iteration (union of device intervals); NaN when not measured."""
        return self.kernel.union_ms if self.kernel is not None else float("nan")

    @property
    def kernel_sum_ms(self) -> float:
        """The plain sum of device-activity durations per iteration; NaN when not measured."""
        return self.kernel.sum_ms if self.kernel is not None else float("nan")

    @property
    def gpu_busy(self) -> float:
        """kernel_ms / event_ms: the share of the measured latency the GPU was doing work."""
        return self.kernel_ms / self.event_ms if self.event_ms > 0 else float("nan")

    @property
    def regime(self) -> str:
        return regime_of(self.gpu_busy, self.device)

    @property
    def throughput_per_s(self) -> float:
        """Items per second: batch size over the median latency."""
        return self.batch_size / (self.latency_ms.median / 1e3)

    def throughput_formula(self, unit: str = "items") -> str:
        return (f"throughput = batch {self.batch_size} / median latency {self.latency_ms.median:.4g} ms "
                f"= {self.throughput_per_s:,.0f} {unit}/s")

    def summary(self) -> str:
        lat = self.latency_ms
        return (f"{self.name} [{self.backend}, {self.device}] batch {self.batch_size}: median {lat.median:.4g} ms "
                f"(p10 {lat.p10:.4g}, p90 {lat.p90:.4g}, p99 {lat.p99:.4g}; n={lat.n}, {self.timer}); "
                f"host {self.host_ms.median:.4g} ms/call{self._kernel_summary()}")

    def _kernel_summary(self) -> str:
        if self.kernel is None:
            return f"; kernel time not measured ({self.kernel_note})" if self.kernel_note else ""
        return (f"; kernels {self.kernel_ms:.4g} ms/iter (sum {self.kernel_sum_ms:.4g}), "
                f"{self.gpu_busy:.0%} busy: {self.regime}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["throughput_per_s"] = self.throughput_per_s
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        d = {k: v for k, v in d.items() if k != "throughput_per_s"}
        d["latency_ms"] = Stats(**d["latency_ms"])
        d["host_ms"] = Stats(**d["host_ms"])
        if d.get("kernel") is not None:
            d["kernel"] = KernelTime.from_dict(d["kernel"])
        return cls(**d)


def _cuda_stream(stream):
    import torch

    if stream is None:
        return torch.cuda.Stream()
    if isinstance(stream, torch.cuda.Stream):
        if stream.cuda_stream == 0:
            raise ValueError("refusing to time on the legacy default stream: pass a created torch.cuda.Stream()")
        return stream
    raise TypeError(f"stream must be a torch.cuda.Stream, got {type(stream).__name__}")


def measure(
    fn: Callable[[], Any],
    *,
    name: str = "",
    backend: str = "",
    batch_size: int = 1,
    device: str | None = None,
    stream=None,
    warmup_ms: float = 200.0,
    measure_ms: float = 1000.0,
    min_iters: int = 10,
    max_iters: int = 5000,
    extra: dict | None = None,
    kernel_time: bool | None = None,
) -> Measurement:
    """Time `fn` (which enqueues one inference) like trtexec: warm up by time, then many iterations.

    On 'cuda', `fn` runs inside ``torch.cuda.stream(stream)`` so PyTorch work lands on that created
    stream; a runner with its own stream (TensorRT) must enqueue on the same one (pass it). Only the
    enqueue sits between the two events: no allocation, no copies, no synchronisation.

    Unless `kernel_time` is False (default: on unless ``TRTLABS_KERNEL_TIME=0``), a few iterations run
    under CUPTI right after the timed loop, to read the GPU's own busy time (:class:`KernelTime`): about
    KERNEL_TIME_BUDGET_MS of them, QUEUED_KERNEL_TIME_BUDGET_MS after a loop that left work queued. The
    pass starts before the loop's queue has drained, so the GPU never idles between the two and runs
    the pass at the clocks of the loop. (With an idle GPU between them, behind the profiler's start, an
    H200 came back at its boost clock: 0.179 ms per 4096^3 FP16 product against the loop's 0.2105 ms at
    its power-limited 1485 MHz.)
    """
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        stream = _cuda_stream(stream)
        counting = kernel_time_enabled(kernel_time)
        found: list[tuple[KernelTime | None, str]] = []
        deferred: list[int] = []
        if counting:
            _cupti_problem()   # the profiler's one-off start, before the warm-up, not inside the measurement

            def kernel_pass(per_call_ms: float, caught_up: bool) -> None:
                iterations = kernel_iterations(per_call_ms, KERNEL_TIME_BUDGET_MS if caught_up
                                               else QUEUED_KERNEL_TIME_BUDGET_MS)
                if caught_up and _SHARED:   # host-paced, in a shared block: read with the others at its end
                    deferred.append(iterations)
                else:
                    found.append(measure_kernel_time(fn, stream, iterations))
        m = _measure_cuda(fn, name, backend, batch_size, stream, warmup_ms, measure_ms,
                          min_iters, max_iters, extra or {}, after_loop=kernel_pass if counting else None)
        if deferred:
            m.kernel, m.kernel_note = None, PENDING_NOTE
            _SHARED[-1].append((m, fn, stream, deferred[0]))
            return m
        m.kernel, m.kernel_note = found[0] if found else (
            None, f"switched off ({KERNEL_TIME_ENV}=0 or kernel_time=False)")
        if found:   # the pass waited for the loop's queued work first: that wait was the loop's own
            queued_ms = (m.wall_ms_per_iter - m.host_ms.mean) * m.iterations
            _PASS_COST["loop_tail_seconds"] += max(0.0, queued_ms) / 1e3
        _note_streams(m)
        return m
    if device == "cpu":
        return _measure_cpu(fn, name, backend, batch_size, warmup_ms, measure_ms, min_iters, max_iters,
                            extra or {})
    raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")


@contextlib.contextmanager
def _gc_paused():
    """Python's garbage collector off while timing (as `timeit` does): its pauses are host jitter
    that would land in the tails of whatever is being measured. No collection first: after
    `torch.compile` the heap is large enough for a full collection to take a second."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _iterations(per_iter_ms: float, measure_ms: float, min_iters: int, max_iters: int) -> int:
    if per_iter_ms <= 0:
        return max_iters
    return int(min(max_iters, max(min_iters, math.ceil(measure_ms / per_iter_ms))))


def nvtx_label(name: str, backend: str, batch_size: int) -> str:
    """The NVTX range around a timed loop: "bench: <name> [<backend>] batch <n>"."""
    return f"bench: {name or 'unnamed'}" + (f" [{backend}]" if backend else "") + f" batch {batch_size}"


def _measure_cuda(fn, name, backend, batch_size, stream, warmup_ms, measure_ms, min_iters, max_iters, extra,
                  after_loop: Callable[[float, bool], None] | None = None):
    import torch

    with torch.cuda.stream(stream):
        # Warm-up by time budget: lazy initialisation, autotuning and clocks settle before timing.
        start = time.perf_counter()
        warm_calls = 0
        while True:
            fn()
            warm_calls += 1
            stream.synchronize()
            elapsed_ms = (time.perf_counter() - start) * 1e3
            if elapsed_ms >= warmup_ms and warm_calls >= 2:
                break
        iters = _iterations(elapsed_ms / warm_calls, measure_ms, min_iters, max_iters)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        host_ns = [0] * iters
        # An NVTX range named after the measurement: an Nsight Systems trace shows each timed loop.
        with _gc_paused(), torch.cuda.nvtx.range(nvtx_label(name, backend, batch_size)):
            for i in range(iters):
                t0 = time.perf_counter_ns()
                starts[i].record(stream)
                fn()
                ends[i].record(stream)
                host_ns[i] = time.perf_counter_ns() - t0
        # the GPU had caught up with the host (its next-to-last iteration done): the host set the pace
        caught_up = ends[max(0, iters - 2)].query()
        if after_loop is not None:   # the kernel-time pass, queued behind the loop: no idle GPU between
            after_loop(elapsed_ms / warm_calls, caught_up)
        stream.synchronize()
    device_ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    span_ms = starts[0].elapsed_time(ends[-1])
    return Measurement(
        name=name, backend=backend, device="cuda", batch_size=batch_size,
        latency_ms=Stats.of(device_ms), host_ms=Stats.of([h / 1e6 for h in host_ns]),
        wall_ms_per_iter=span_ms / iters, iterations=iters, warmup_ms=elapsed_ms,
        timer="cuda-events", extra=extra, host_paced=caught_up,
    )


# -- the kernel-time pass ------------------------------------------------------------------------

def _profiler_busy() -> bool:
    import torch

    enabled = getattr(torch.autograd, "_profiler_enabled", None) or getattr(torch._C._autograd, "_profiler_enabled", None)
    return bool(enabled and enabled())


def activity_kind(event) -> str:
    """kineto's activity type of a device event; from the name on a PyTorch that does not expose it."""
    if hasattr(event, "activity_type"):
        return event.activity_type()
    name = event.name()
    if name.startswith("Memcpy"):
        return "gpu_memcpy"
    if name.startswith("Memset"):
        return "gpu_memset"
    return "cuda_sync" if name == "Context Sync" else "kernel"


def _stream_of(event) -> int:
    resource = getattr(event, "device_resource_id", None)
    return int(resource()) if resource is not None else 0


def device_records(events) -> Iterator[tuple[str, Any]]:
    """The device work among kineto's events, as (kind, event): every kernel, memcpy and memset CUPTI
    reported (those inside CUDA-graph replays, Triton's, cuBLAS/cuSPARSELt's, TensorRT's alike);
    host-side records (runtime calls), GPU-side annotations and synchronisation records are not work."""
    from torch.autograd import DeviceType

    typed = bool(events) and hasattr(events[0], "activity_type")
    for ev in events:   # thousands per session: one call per host-side record, the type first
        if typed:
            kind = ev.activity_type()
        else:
            kind = "" if ev.device_type() == DeviceType.CPU else activity_kind(ev)
        if kind in DEVICE_ACTIVITIES:
            yield kind, ev


def device_activities(events) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """From kineto's events: (device-activity intervals, their copy/memset part, streams they ran on), in
    ns, of the device work :func:`device_records` picks out."""
    return device_activities_of(device_records(events))


def device_activities_of(records: Iterable[tuple[str, Any]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """:func:`device_activities` of records :func:`device_records` already picked out."""
    work, copies, streams = [], [], set()
    for kind, ev in records:
        interval = (ev.start_ns(), ev.end_ns())
        work.append(interval)
        streams.add(_stream_of(ev))
        if kind in _COPY_ACTIVITIES:
            copies.append(interval)
    return work, copies, len(streams)


def kernel_time_of(work, copies, windows) -> KernelTime | None:
    """Per-window medians (one window per iteration, or one for a whole run) from intervals in ns; None if no window."""
    if not windows:
        return None
    rows = per_iteration(work, windows)
    copy_rows = per_iteration(copies, windows)
    union_ms = [u / 1e6 for u, _, _ in rows]
    return KernelTime(
        union_ms=statistics.median(union_ms), sum_ms=statistics.median(s / 1e6 for _, s, _ in rows),
        copy_ms=statistics.median(u / 1e6 for u, _, _ in copy_rows),
        activities_per_iter=statistics.median(n for _, _, n in rows), iterations=len(rows),
        per_iteration_ms=tuple(round(x, 6) for x in union_ms),
    )


_CUPTI_STATE: dict[str, str] = {}
#: What the kernel-time passes cost this process: wall seconds of the passes, their count, and
#: CUPTI's one-off start (the probe). A lab's claims file records it (:func:`kernel_pass_cost`).
_PASS_COST = {"pass_seconds": 0.0, "passes": 0, "cupti_start_seconds": 0.0, "loop_tail_seconds": 0.0,
              "shared_measurements": 0}


def kernel_pass_cost() -> dict[str, float]:
    """What the kernel-time passes cost this process so far (seconds, rounded), and how many ran.

    ``pass_seconds`` is their wall time beyond the timed loops' own: each pass starts while its loop's
    queued work still runs (``loop_tail_seconds``, the loop's device span less its host enqueue time),
    and waiting for that work is the loop's cost, paid with or without the pass. ``passes`` counts
    sessions; ``shared_measurements`` how many measurements were read in shared ones
    (:func:`shared_kernel_session`).
    """
    net = max(0.0, _PASS_COST["pass_seconds"] - _PASS_COST["loop_tail_seconds"])
    return {"pass_seconds": round(net, 3), "passes": _PASS_COST["passes"],
            "cupti_start_seconds": round(_PASS_COST["cupti_start_seconds"], 3),
            "loop_tail_seconds": round(_PASS_COST["loop_tail_seconds"], 3),
            "shared_measurements": _PASS_COST["shared_measurements"]}


def _cupti_problem() -> str:
    """"" when CUPTI reports kernels here (probed once per process on a known kernel), else why not."""
    if "problem" not in _CUPTI_STATE:
        import torch

        t0 = time.perf_counter()
        found, note = _profile(lambda: torch.cuda._sleep(1000), torch.cuda.Stream(), 1)
        _PASS_COST["cupti_start_seconds"] += time.perf_counter() - t0
        problem = note if found is None else (
            "" if found.activities_per_iter >= 1 else "CUPTI reported no kernel for a known one")
        if problem:
            warnings.warn(f"kernel time is not measured in this process: {problem}", RuntimeWarning, stacklevel=3)
        _CUPTI_STATE["problem"] = problem
    return _CUPTI_STATE["problem"]


def kernel_time_of_run(work, copies, iterations: int, streams: int = 1) -> KernelTime | None:
    """Per-iteration figures of `iterations` back-to-back iterations, from all the device work of one session.

    The iterations run back to back as in the event-timed loop (the GPU keeps the clocks and the
    queue it had there); their device work is summed over the session and divided by `iterations`.
    CUPTI records only work launched while it is on, so nothing from before the session (the timed
    loop's tail still running) is counted.
    """
    found = kernel_time_of(work, copies, [(-math.inf, math.inf)])
    if found is None or iterations < 1:
        return None
    return KernelTime(union_ms=found.union_ms / iterations, sum_ms=found.sum_ms / iterations,
                      copy_ms=found.copy_ms / iterations, activities_per_iter=found.activities_per_iter / iterations,
                      iterations=iterations, streams=max(1, streams))


def _finish_teardown() -> None:
    """Run one tiny kernel and wait: PyTorch tears CUPTI down at the first CUDA call after a session.

    Without that call in between, the next session's first launch would tear down the session itself
    (it records nothing), and the timed loop after it would pay for the teardown in its first iteration.
    """
    import torch

    torch.cuda._sleep(1)
    torch.cuda.synchronize()


def device_profile(device: str = "cuda"):
    """A profiler session (a context manager) recording CUDA activities on 'cuda', host-side operators
    on 'cpu'. After it, ``.kineto_results.events()`` holds the raw records (:func:`device_records`) and
    ``.key_averages()`` the operator view.

    PyTorch's autograd profiler, which ``torch.profiler.profile`` wraps: the wrapper's start imports
    ``torch._inductor`` to read one setting, several seconds in a process that has not compiled yet
    (4-6 s on an H200 machine), which the lower class does not pay.
    """
    from torch.autograd.profiler import profile

    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    return profile(use_cpu=device == "cpu", use_device="cuda" if device == "cuda" else None, use_kineto=True)


def device_records_of_call(fn: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The device work (:func:`device_records`) one call of `fn` puts on the GPU, by CUPTI. `fn` runs
    once before, so lazy initialisation is not counted."""
    import torch

    fn()
    torch.cuda.synchronize()
    with device_profile() as prof:
        fn()
        torch.cuda.synchronize()
    return list(device_records(prof.kineto_results.events()))


def _profile(fn, stream, iterations: int) -> tuple[KernelTime | None, str]:
    import torch

    # CUPTI left subscribed after a profile slows every later kernel launch in the process (PyTorch
    # leaves it so unless TEARDOWN_CUPTI=1; safe with CUDA graphs from CUDA 12.6): tear it down.
    os.environ.setdefault("TEARDOWN_CUPTI", "1")
    for _ in range(2):   # a session that recorded nothing gets one retry
        try:
            # CUDA activities only: no host-side op records (they would slow the iterations and the
            # profiler's stop), and every device record of the session belongs to these iterations.
            with torch.cuda.nvtx.range(KERNEL_PASS_LABEL), device_profile() as prof:
                with torch.cuda.stream(stream):
                    for _ in range(iterations):
                        fn()
                torch.cuda.synchronize()
            events = prof.kineto_results.events()
        except (RuntimeError, AttributeError) as exc:   # CUPTI taken by another tool, or an old profiler
            return None, _unavailable(exc)
        finally:
            _finish_teardown()
        work, copies, streams = device_activities(events)
        found = kernel_time_of_run(work, copies, iterations, streams)
        if found is not None and found.activities_per_iter > 0:
            return found, ""
    return None, NO_DEVICE_WORK


def _unavailable(exc: BaseException) -> str:
    """The kernel note for a profiler session that raised: its type and first line."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"profiler unavailable: {type(exc).__name__}: {first_line}"


def measure_kernel_time(fn: Callable[[], Any], stream, iterations: int) -> tuple[KernelTime | None, str]:
    """Run `fn` `iterations` times under CUPTI on `stream`: its :class:`KernelTime`, or None and why.

    Never raises for the profiler's sake: a figure without kernel time says why in its note.
    """
    if _profiler_busy():
        return None, "another profiler is running"
    problem = _cupti_problem()
    if problem:
        return None, problem
    with _counted_session():
        return _profile(fn, stream, iterations)


@contextlib.contextmanager
def _counted_session():
    """Around one kernel-time session: the garbage collector paused, its wall time and count added to
    what the passes cost (:func:`kernel_pass_cost`)."""
    t0 = time.perf_counter()
    try:
        with _gc_paused():
            yield
    finally:
        _PASS_COST["pass_seconds"] += time.perf_counter() - t0
        _PASS_COST["passes"] += 1


def _note_streams(m: Measurement) -> None:
    if m.kernel is not None and m.kernel.several_streams:
        m.kernel_note = SEVERAL_STREAMS_NOTE.format(n=m.kernel.streams)


#: A kernel note while a measurement waits for its shared session (:func:`shared_kernel_session`).
PENDING_NOTE = "kernel time pending: read when the shared session's block ends"
#: The open :func:`shared_kernel_session` blocks: each a list of (measurement, fn, stream, iterations).
_SHARED: list[list[tuple[Measurement, Callable[[], Any], Any, int]]] = []


@contextlib.contextmanager
def shared_kernel_session():
    """Within the block, a measurement whose timed loop the host paced reads its kernel time in one CUPTI
    session shared by all such measurements of the block, run when the block ends (in the order measured).

    A session right after its loop matters where the loop left work queued: the pass then runs at the
    loop's clocks. A host-paced loop leaves nothing queued (the GPU had caught up with the host when the
    loop ended), so its GPU idles while a session of its own starts anyway; the session's fixed cost
    (about 16 ms on an H200) is most of what such a pass costs, and the shared session pays it once. Inside
    it each measurement's iterations run back to back between two synchronisations and own the device
    work that ran between them (kineto's timestamps and ``time.time_ns`` are one clock; if any record falls
    outside every window the clocks disagree, and each measurement gets a session of its own instead).
    A window that recorded nothing while the others recorded work launched nothing: no retry.

    The block's measurements carry their kernel time only after it ends. Nested blocks share the outermost.
    Put only light work in a block (:func:`interleaved_passes` does): a heavy loop before the session
    leaves the clocks down, and light kernels read slower there than right after their own loops.
    """
    if _SHARED:
        yield
        return
    pending: list = []
    _SHARED.append(pending)
    finished = False
    try:
        yield
        finished = True
    finally:
        _SHARED.pop()
        if finished:
            _read_shared(pending)
        else:
            for m, *_ in pending:
                m.kernel_note = "not measured: the block raised before its shared session"


def _read_shared(pending) -> None:
    if not pending:
        return
    found: list[tuple[KernelTime | None, str]] | None = None
    # where the profiler is busy or CUPTI unusable, the own sessions below say so, measuring nothing
    if not (_profiler_busy() or _cupti_problem() or _CUPTI_STATE.get("shared_off")):
        _PASS_COST["shared_measurements"] += len(pending)
        with _counted_session():
            found = _profile_shared([(fn, stream, n) for _, fn, stream, n in pending])
    for i, (m, fn, stream, iterations) in enumerate(pending):
        m.kernel, m.kernel_note = found[i] if found is not None else measure_kernel_time(fn, stream, iterations)
        _note_streams(m)


def _profile_shared(items) -> list[tuple[KernelTime | None, str]] | None:
    """One session for `items` (fn, stream, iterations): each one's KernelTime and note, or None where
    the session cannot be split (it recorded nothing, or a record lies outside every window)."""
    import torch

    os.environ.setdefault("TEARDOWN_CUPTI", "1")
    windows: list[tuple[int, int]] = []
    try:
        with torch.cuda.nvtx.range(KERNEL_PASS_LABEL + " (shared)"), device_profile() as prof:
            for fn, stream, iterations in items:
                torch.cuda.synchronize()
                start = time.time_ns()
                with torch.cuda.stream(stream):
                    for _ in range(iterations):
                        fn()
                torch.cuda.synchronize()
                windows.append((start, time.time_ns()))
        events = prof.kineto_results.events()
    except (RuntimeError, AttributeError) as exc:
        return [(None, _unavailable(exc))] * len(items)
    finally:
        _finish_teardown()
    records = list(device_records(events))
    split = split_by_windows(records, windows)
    if split is None:
        if records:   # the clocks disagree: never try again here
            _CUPTI_STATE["shared_off"] = "kineto's timestamps fell outside the host's windows"
        return None
    out = []
    for (fn, stream, iterations), records in zip(items, split):
        work, copies, streams = device_activities_of(records)
        found = kernel_time_of_run(work, copies, iterations, streams) if records else None
        out.append((found, "") if found is not None else (None, NO_DEVICE_WORK))
    return out


def split_by_windows(records: Sequence[tuple[str, Any]], windows: Sequence[tuple[int, int]]
                     ) -> list[list[tuple[str, Any]]] | None:
    """The device records of a shared session, per window (ns on one clock) they lie wholly inside; None
    if the session recorded nothing, or any record lies outside every window (the clocks disagree)."""
    if not records:
        return None
    starts = [w[0] for w in windows]
    out: list[list[tuple[str, Any]]] = [[] for _ in windows]
    for kind, ev in records:
        i = bisect.bisect_right(starts, ev.start_ns()) - 1
        if i < 0 or ev.end_ns() > windows[i][1]:
            return None
        out[i].append((kind, ev))
    return out


def _measure_cpu(fn, name, backend, batch_size, warmup_ms, measure_ms, min_iters, max_iters, extra):
    start = time.perf_counter()
    warm_calls = 0
    while True:
        fn()
        warm_calls += 1
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if elapsed_ms >= warmup_ms and warm_calls >= 2:
            break
    iters = _iterations(elapsed_ms / warm_calls, measure_ms, min_iters, max_iters)
    samples = [0] * iters
    with _gc_paused():
        wall0 = time.perf_counter_ns()
        for i in range(iters):
            t0 = time.perf_counter_ns()
            fn()
            samples[i] = time.perf_counter_ns() - t0
        wall_ns = time.perf_counter_ns() - wall0
    stats = Stats.of([s / 1e6 for s in samples])
    return Measurement(
        name=name, backend=backend, device="cpu", batch_size=batch_size, latency_ms=stats, host_ms=stats,
        wall_ms_per_iter=wall_ns / 1e6 / iters, iterations=iters, warmup_ms=elapsed_ms,
        timer="perf_counter", extra=extra,
    )


def measure_interleaved(configs: dict, *, passes: int = 2, kernel_every_pass: bool = True, **kwargs) -> dict:
    """Measure each configuration `passes` times, all of them once per pass (never back to back).

    `configs` maps a key to the keyword arguments of :func:`measure` for it (fn, name, stream, ...);
    `kwargs` are shared by all. Interleaving makes drift of clocks or host load show up as
    run-to-run spread of every configuration rather than as a difference between two of them.
    With ``kernel_every_pass=False`` (figures judged on event or host time) only the first pass
    reads kernel time (:func:`kernel_time_in`). Passes run as :func:`interleaved_passes` says.
    """
    def one(key, p: int) -> Measurement:
        extra = {} if kernel_every_pass else {"kernel_time": kernel_time_in(p)}
        return measure(**{**kwargs, **extra, **configs[key]})

    return interleaved_passes(list(configs), passes, one, share=kernel_every_pass)


def interleaved_passes(keys: Sequence, passes: int, measure_one: Callable[[Any, int], Measurement], *,
                       share: bool = True) -> dict:
    """`measure_one(key, pass_index)` for every key, once per pass, `passes` times: the runs by key.

    With `share`, from the second pass on the keys whose loop the host paced in the pass before run
    first, in one :func:`shared_kernel_session` block, and the others after it, each read right after
    its own loop. So the shared session follows light work only: on an H200 a shared session right
    after a heavy GEMM read eager and 1024^3 kernels 17-25% slower than their own sessions (the clocks
    were still down), and 60 ms of idle first brought that to 1-5%, at the cost of the session it saved.
    """
    runs: dict = {key: [] for key in keys}
    host_paced: set = set()
    for p in range(passes):
        first = [k for k in keys if k in host_paced] if share else []
        with shared_kernel_session() if first else contextlib.nullcontext():
            for key in first:
                runs[key].append(measure_one(key, p))
        for key in [k for k in keys if k not in first]:
            runs[key].append(measure_one(key, p))
        host_paced = {k for k in keys if runs[k][-1].host_paced}
    return runs


# -- comparing two measurements honestly ---------------------------------------------------------

def spread_pct(medians: Iterable[float]) -> float:
    """Run-to-run spread of repeated medians: their range, (max - min) / min, in percent."""
    xs = list(medians)
    if len(xs) < 2:
        raise ValueError("a spread needs at least two runs of the same configuration")
    return (max(xs) - min(xs)) / min(xs) * 100.0


def ratio_interval(medians_a: Sequence[float], medians_b: Sequence[float], *, confidence: float = CONFIDENCE,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Bootstrap interval of median(A) / median(B) over passes (percentile method, seeded: deterministic).

    The pass medians of A and of B are resampled independently, with replacement, `resamples` times;
    the interval holds the central `confidence` share of the resampled ratios.
    """
    a, b = [float(x) for x in medians_a], [float(x) for x in medians_b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a ratio interval needs at least two passes of each side (got {len(a)} and {len(b)})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
                    for _ in range(resamples))
    tail = (1 - confidence) / 2
    return _quantile(ratios, tail), _quantile(ratios, 1 - tail)


#: What a comparison can be judged on: the figure each pass contributes.
COMPARED_ON = {
    "event": lambda m: m.latency_ms.median,     # what a user waits for
    "kernel": lambda m: m.kernel_ms,            # the GPU's own time: device effects
    "host": lambda m: m.host_ms.median,         # the host's cost per call
}


@dataclass(frozen=True)
class Comparison:
    """B against A (speedup = A's median / B's median), judged against the run-to-run noise.

    Built by :func:`compare`, it carries each pass's median, and the speedup a 95% bootstrap interval
    over them (:attr:`interval`); a difference is significant when that interval excludes 1. Built by
    hand without pass medians, the older rule applies: significant when larger than the spread.
    """

    label_a: str
    label_b: str
    median_a_ms: float
    median_b_ms: float
    spread_a_pct: float
    spread_b_pct: float
    passes_a_ms: tuple[float, ...] = ()
    passes_b_ms: tuple[float, ...] = ()
    on: str = "event"

    @property
    def speedup(self) -> float:
        return self.median_a_ms / self.median_b_ms

    @property
    def difference_pct(self) -> float:
        return (self.speedup - 1.0) * 100.0

    @property
    def noise_pct(self) -> float:
        return max(self.spread_a_pct, self.spread_b_pct)

    @property
    def passes(self) -> int:
        """The fewer of the two sides' pass counts (0 when built without pass medians)."""
        return min(len(self.passes_a_ms), len(self.passes_b_ms))

    @functools.cached_property
    def interval(self) -> tuple[float, float]:
        """95% bootstrap interval of the speedup over passes; (nan, nan) without two passes per side."""
        if self.passes < 2:
            return (float("nan"), float("nan"))
        return ratio_interval(self.passes_a_ms, self.passes_b_ms)

    @property
    def significant(self) -> bool:
        """A speedup whose interval holds 1 (or, without passes, no larger than the spread) is noise."""
        if self.passes >= 2:
            lo, hi = self.interval
            return not lo <= 1.0 <= hi
        return abs(self.difference_pct) > self.noise_pct

    def spread_text(self) -> str:
        """The range of each side's pass medians, as printed beside a comparison."""
        def span(xs, label):
            return f"{label} {min(xs):.4g}-{max(xs):.4g} ms"

        if self.passes < 2:
            return f"run-to-run spread {self.noise_pct:.1f}%"
        return (f"pass medians ({self.on} time, {self.passes} passes) {span(self.passes_a_ms, self.label_a)}, "
                f"{span(self.passes_b_ms, self.label_b)}")

    def verdict(self) -> str:
        head = f"{self.label_b} vs {self.label_a}: {self.speedup:.2f}x"
        if self.passes >= 2:
            lo, hi = self.interval
            head += f" (95% interval {lo:.2f}-{hi:.2f}x; {self.spread_text()})"
            return head if self.significant else f"{head}: the interval holds 1.00x: noise, no difference shown"
        if not self.significant:
            return (f"{head}, within the run-to-run spread ({self.noise_pct:.1f}%): noise, no difference shown")
        return f"{head} (run-to-run spread {self.noise_pct:.1f}%)"


def median_latency_ms(runs: Iterable[Measurement]) -> float:
    """The median over repeated runs of each run's median latency: one figure per configuration."""
    return statistics.median(m.latency_ms.median for m in runs)


def median_host_ms(runs: Iterable[Measurement]) -> float:
    """The median over repeated runs of each run's median host time per call."""
    return statistics.median(m.host_ms.median for m in runs)


def median_kernel_ms(runs: Iterable[Measurement]) -> float:
    """The median over repeated runs of each run's kernel time per iteration (NaN if any lacks it)."""
    xs = [m.kernel_ms for m in runs]
    return float("nan") if any(math.isnan(x) for x in xs) else statistics.median(xs)


def kernel_time_in(pass_index: int) -> bool | None:
    """``measure(kernel_time=...)`` for pass `pass_index` of a configuration whose figures are judged
    on event or host time: the kernel-time pass in the first pass only, which names the regime of the
    figures (:func:`kernel_fields`). A claim judged on kernel time needs it in every pass: there, leave
    `kernel_time` at its default."""
    return None if pass_index == 0 else False


def kernel_fields(runs: Sequence[Measurement]) -> dict:
    """Kernel time, busy share and regime of repeated runs of one configuration, for a table row.

    From the runs that carry kernel time (all of them, or the first pass only: :func:`kernel_time_in`),
    the busy share against those same runs' event time; NaN where none does. The regime is the one
    every such run names by its own busy share, "mixed" where they disagree: a configuration the host
    paced in one pass is not device-bound, whatever its median busy share.
    """
    measured = [m for m in runs if not math.isnan(m.kernel_ms)] or list(runs)
    kernel_ms = median_kernel_ms(measured)
    event_ms = median_latency_ms(measured)
    busy = kernel_ms / event_ms if event_ms > 0 else float("nan")
    regimes = {m.regime for m in measured}
    return {"kernel_ms": kernel_ms, "kernel_sum_ms": statistics.median(m.kernel_sum_ms for m in measured),
            "gpu_busy": busy, "regime": regimes.pop() if len(regimes) == 1 else MIXED}


def compare(runs_a: Sequence[Measurement], runs_b: Sequence[Measurement], *, on: str = "event") -> Comparison:
    """Compare two configurations each measured at least twice (COURSE_DESIGN §5; :data:`PASSES` passes).

    `on` picks the figure each pass contributes: "event" (latency, the default), "kernel" (the GPU's own
    time, for device effects) or "host" (the host's cost per call).
    """
    if on not in COMPARED_ON:
        raise ValueError(f"on must be one of {sorted(COMPARED_ON)}, got {on!r}")
    pick = COMPARED_ON[on]
    med_a = [pick(m) for m in runs_a]
    med_b = [pick(m) for m in runs_b]
    missing = [m for m in (*runs_a, *runs_b) if math.isnan(pick(m))]
    if missing:
        raise ValueError(f"{missing[0].name}: no {on} time to compare on ({missing[0].kernel_note or 'not measured'})")
    return Comparison(
        label_a=runs_a[0].name, label_b=runs_b[0].name,
        median_a_ms=statistics.median(med_a), median_b_ms=statistics.median(med_b),
        spread_a_pct=spread_pct(med_a), spread_b_pct=spread_pct(med_b),
        passes_a_ms=tuple(med_a), passes_b_ms=tuple(med_b), on=on,
    )


# -- persistence ---------------------------------------------------------------------------------

def save_measurements(measurements: Iterable[Measurement], path) -> None:
    from .files import write_text_atomic

    write_text_atomic(path, json.dumps([m.to_dict() for m in measurements], indent=1))


def load_measurements(path) -> list[Measurement]:
    with open(path) as f:
        return [Measurement.from_dict(d) for d in json.load(f)]


@contextlib.contextmanager
def wall_timer():
    """`with wall_timer() as t: ...; t.seconds` for one-off costs such as build or compile time."""

    class _T:
        seconds = float("nan")

    t = _T()
    t0 = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t0


def bare_event_loop(fn: Callable[[], Any], iterations: int, stream=None, warmup: int = 20) -> list[float]:
    """The plainest correct event-timing loop, with none of `measure`'s bookkeeping.

    Lab 00 compares `measure` against it on a near-empty kernel to show the harness adds nothing
    that the numbers of later labs would carry.
    """
    import torch

    stream = _cuda_stream(stream)
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
        stream.synchronize()
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                 for _ in range(iterations)]
        with _gc_paused():
            for start, end in pairs:
                start.record(stream)
                fn()
                end.record(stream)
            stream.synchronize()
    return [start.elapsed_time(end) for start, end in pairs]
