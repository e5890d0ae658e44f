"""Per-layer times from TensorRT's IProfiler, aggregated over runs.

Introduced in lab 05 (fusion), which compares per-layer times before and after a hand-made fusion.
:class:`LayerTimes` is a plain aggregator (tested without TensorRT); :func:`attach_profiler` hooks
it to an execution context.

With a profiler attached (and ``context.enqueue_emits_profile`` left True, the default) every
``execute_async_v3`` becomes synchronous and reports its layer times itself, so per-layer times are
for reading the distribution over layers, never for end-to-end latency: time that separately, with
no profiler attached (``context.profiler = None``).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, SupportsFloat

if TYPE_CHECKING:
    import tensorrt as trt


class LayerTimes:
    """Samples of each layer's time in milliseconds, in first-reported order.

    Each enqueue reports every layer once, so a layer's sample count is the number of runs it was
    profiled in; :attr:`runs` is the largest such count.
    """

    def __init__(self) -> None:
        self._samples_ms: dict[str, list[float]] = {}
        self._keep_alive: list[object] = []  # profilers attached through attach_profiler

    def add(self, layer_name: str, ms: float) -> None:
        self._samples_ms.setdefault(str(layer_name), []).append(float(ms))

    def reset(self) -> None:
        """Forget all samples (e.g. after warm-up runs, whose first enqueue is slow)."""
        self._samples_ms.clear()

    @property
    def layers(self) -> list[str]:
        return list(self._samples_ms)

    @property
    def runs(self) -> int:
        return max((len(s) for s in self._samples_ms.values()), default=0)

    def samples_ms(self, layer_name: str) -> list[float]:
        return list(self._samples_ms[layer_name])

    def median_ms(self, layer_name: str) -> float:
        return statistics.median(self._samples_ms[layer_name])

    def mean_ms(self, layer_name: str) -> float:
        return statistics.fmean(self._samples_ms[layer_name])

    def total_ms(self, layer_name: str | None = None) -> float:
        """Sum of all samples of one layer, or of every layer when `layer_name` is None."""
        if layer_name is None:
            return sum(sum(s) for s in self._samples_ms.values())
        return sum(self._samples_ms[layer_name])

    def median_run_ms(self) -> float:
        """Sum of the per-layer medians: a typical run's profiled time."""
        return sum(statistics.median(s) for s in self._samples_ms.values())

    def share(self, layer_name: str) -> float:
        """This layer's fraction (0..1) of the total profiled time."""
        total = self.total_ms()
        return self.total_ms(layer_name) / total if total > 0 else 0.0

    def table(self, top: int | None = None) -> list[dict[str, Any]]:
        """Rows sorted by total time, slowest first; `top` keeps the first rows only."""
        total = self.total_ms()
        rows = [{
            "layer": name,
            "samples": len(s),
            "median_ms": statistics.median(s),
            "mean_ms": statistics.fmean(s),
            "total_ms": sum(s),
            "share_pct": 100.0 * sum(s) / total if total > 0 else 0.0,
        } for name, s in self._samples_ms.items()]
        rows.sort(key=lambda r: r["total_ms"], reverse=True)
        return rows if top is None else rows[:top]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "total_ms": self.total_ms(), "median_run_ms": self.median_run_ms(),
                "layers": self.table()}


def attach_profiler(context: "trt.IExecutionContext", layer_times: LayerTimes) -> "trt.IProfiler":
    """Set ``context.profiler`` to an IProfiler that adds each report to `layer_times` (lab 05).

    Enqueues on `context` become synchronous from now on (see the module docstring); detach with
    ``context.profiler = None`` before timing latency. The profiler object is also kept alive by
    `layer_times`, since TensorRT only holds a pointer to it.
    """
    import tensorrt as trt

    class _Profiler(trt.IProfiler):
        def __init__(self, sink: LayerTimes) -> None:
            trt.IProfiler.__init__(self)  # pybind11 trampolines need the base __init__ called explicitly
            self.sink = sink

        def report_layer_time(self, layer_name: str, ms: SupportsFloat) -> None:
            self.sink.add(layer_name, float(ms))

    profiler = _Profiler(layer_times)
    context.profiler = profiler
    layer_times._keep_alive.append(profiler)
    return profiler


def profile_layers(engine_runner: Any, *, runs: int = 20, warmup: int = 3, ctx_index: int = 0) -> LayerTimes:
    """Per-layer times of `runs` enqueues of an :class:`common.trt.EngineRunner` whose inputs are set
    (labs 05, 06, 07): a profiler is attached, `warmup` enqueues are dropped, and the profiler is
    detached again so that later timing sees plain (asynchronous) enqueues."""
    times = LayerTimes()
    context = engine_runner.context(ctx_index)
    attach_profiler(context, times)
    try:
        for i in range(warmup + runs):
            if i == warmup:
                times.reset()
            engine_runner.enqueue(ctx_index)
            engine_runner.synchronize(ctx_index)
    finally:
        context.profiler = None
    return times


def share_pct(times: LayerTimes, layer_names: Any) -> float:
    """The share (0..100) of the profiled time spent in the layers named (e.g. the reformat layers)."""
    names = set(layer_names)
    total = times.total_ms()
    return 100.0 * sum(times.total_ms(n) for n in times.layers if n in names) / total if total > 0 else 0.0
