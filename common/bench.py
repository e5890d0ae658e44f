"""The timing harness every lab uses, measuring the way `trtexec` does.

Introduced in lab 00 (tour). On a GPU the device time of each iteration comes from a pair of CUDA
events recorded on a created (never the default) stream around the enqueue alone; host enqueue
time is taken apart with ``perf_counter_ns``. Warm-up runs for a time budget, then enough
iterations fill a measuring budget; results are medians with p10/p90/p99. On a CPU the same
statistics come from ``perf_counter_ns`` around each call.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence


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


@dataclass
class Measurement:
    """One timed configuration: what ran, where, and its latency distribution."""

    name: str
    backend: str
    device: str
    batch_size: int
    latency_ms: Stats          # device time per iteration (CUDA events) or host time on CPU
    host_ms: Stats             # host time spent in the call (enqueue cost on a GPU)
    wall_ms_per_iter: float    # total wall time / iterations, synchronised at the end
    iterations: int
    warmup_ms: float
    timer: str                 # "cuda-events" or "perf_counter"
    extra: dict = field(default_factory=dict)

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
                f"host {self.host_ms.median:.4g} ms/call")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["throughput_per_s"] = self.throughput_per_s
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        d = {k: v for k, v in d.items() if k != "throughput_per_s"}
        d["latency_ms"] = Stats(**d["latency_ms"])
        d["host_ms"] = Stats(**d["host_ms"])
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
) -> Measurement:
    """Time `fn` (which enqueues one inference) like trtexec: warm up by time, then many iterations.

    On 'cuda', `fn` runs inside ``torch.cuda.stream(stream)`` so PyTorch work lands on that created
    stream; a runner with its own stream (TensorRT) must enqueue on the same one (pass it). Only the
    enqueue sits between the two events: no allocation, no copies, no synchronisation.
    """
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return _measure_cuda(fn, name, backend, batch_size, _cuda_stream(stream), warmup_ms, measure_ms,
                             min_iters, max_iters, extra or {})
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


def _measure_cuda(fn, name, backend, batch_size, stream, warmup_ms, measure_ms, min_iters, max_iters, extra):
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
        with _gc_paused():
            wall0 = time.perf_counter_ns()
            for i in range(iters):
                t0 = time.perf_counter_ns()
                starts[i].record(stream)
                fn()
                ends[i].record(stream)
                host_ns[i] = time.perf_counter_ns() - t0
            stream.synchronize()
            wall_ns = time.perf_counter_ns() - wall0
    device_ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return Measurement(
        name=name, backend=backend, device="cuda", batch_size=batch_size,
        latency_ms=Stats.of(device_ms), host_ms=Stats.of([h / 1e6 for h in host_ns]),
        wall_ms_per_iter=wall_ns / 1e6 / iters, iterations=iters, warmup_ms=elapsed_ms,
        timer="cuda-events", extra=extra,
    )


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


def measure_interleaved(configs: dict, *, passes: int = 2, **kwargs) -> dict:
    """Measure each configuration `passes` times, all of them once per pass (never back to back).

    `configs` maps a key to the keyword arguments of :func:`measure` for it (fn, name, stream, ...);
    `kwargs` are shared by all. Interleaving makes drift of clocks or host load show up as
    run-to-run spread of every configuration rather than as a difference between two of them.
    """
    runs: dict = {key: [] for key in configs}
    for _ in range(passes):
        for key, config in configs.items():
            runs[key].append(measure(**{**kwargs, **config}))
    return runs


# -- comparing two measurements honestly ---------------------------------------------------------

def spread_pct(medians: Iterable[float]) -> float:
    """Run-to-run spread of repeated medians: (max - min) / min, in percent."""
    xs = list(medians)
    if len(xs) < 2:
        raise ValueError("a spread needs at least two runs of the same configuration")
    return (max(xs) - min(xs)) / min(xs) * 100.0


@dataclass(frozen=True)
class Comparison:
    """B against A (speedup = A's median / B's median), judged against the run-to-run spread."""

    label_a: str
    label_b: str
    median_a_ms: float
    median_b_ms: float
    spread_a_pct: float
    spread_b_pct: float

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
    def significant(self) -> bool:
        """A difference no larger than the run-to-run spread is noise."""
        return abs(self.difference_pct) > self.noise_pct

    def verdict(self) -> str:
        if not self.significant:
            return (f"{self.label_b} vs {self.label_a}: {self.speedup:.2f}x, within the run-to-run spread "
                    f"({self.noise_pct:.1f}%): noise, no difference shown")
        return (f"{self.label_b} vs {self.label_a}: {self.speedup:.2f}x "
                f"(run-to-run spread {self.noise_pct:.1f}%)")


def median_latency_ms(runs: Iterable[Measurement]) -> float:
    """The median over repeated runs of each run's median latency: one figure per configuration."""
    return statistics.median(m.latency_ms.median for m in runs)


def median_host_ms(runs: Iterable[Measurement]) -> float:
    """The median over repeated runs of each run's median host time per call."""
    return statistics.median(m.host_ms.median for m in runs)


def compare(runs_a: Sequence[Measurement], runs_b: Sequence[Measurement]) -> Comparison:
    """Compare two configurations each measured at least twice (COURSE_DESIGN §5)."""
    med_a = [m.latency_ms.median for m in runs_a]
    med_b = [m.latency_ms.median for m in runs_b]
    return Comparison(
        label_a=runs_a[0].name, label_b=runs_b[0].name,
        median_a_ms=statistics.median(med_a), median_b_ms=statistics.median(med_b),
        spread_a_pct=spread_pct(med_a), spread_b_pct=spread_pct(med_b),
    )


# -- persistence ---------------------------------------------------------------------------------

def save_measurements(measurements: Iterable[Measurement], path) -> None:
    with open(path, "w") as f:
        json.dump([m.to_dict() for m in measurements], f, indent=1)


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
