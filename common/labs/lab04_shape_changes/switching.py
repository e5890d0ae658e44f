"""Lab 04 (shape changes): the first run after a switch against steady state, for PyTorch and ONNX Runtime.

A *target* is one state a backend can serve from: a batch size of PyTorch eager or ONNX Runtime, a
TensorRT context bound to a profile and shape, a `torch.compile` graph. :func:`switch_study` visits
targets in a given order (new shapes once each, or A, B, A, B, ...) and times, from an idle device,
the first run after each switch and a few steady-state runs after it; :class:`FirstRunSummary`
compares the two distributions, and :func:`distribution_plot` draws them. :func:`steady_state_rows`
measures each target's steady state with the harness (kernel time and regime on a GPU), and
:func:`standing_out` explains a batch size whose steady runs stand out from its neighbours'.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from common import bench, cases, checks, models, plots

FIRST, STEADY = "first after switch", "steady"
#: A first run within 5% of the steady median counts as no cost, however steady the steady runs are.
NOTICEABLE = 1.05


def tolerance(precision: str) -> float:
    """The course's whole-model tolerance (common.checks) for `precision`: FP16 2e-2, FP32 1e-4."""
    return checks.tolerance(precision, "model")


# -- timing one call from an idle device ---------------------------------------------------------

def timed_call_ms(fn: Callable[[], Any], stream: "torch.cuda.Stream | None" = None) -> float:
    """Milliseconds from an idle device to the end of `fn`'s work: the latency one request sees.

    On a GPU (`stream` given) the stream is drained first, then a pair of CUDA events on it spans
    the call, so host work inside `fn` (cuDNN's algorithm search, a recompile, TensorRT re-setting
    a context) counts as the idle time it leaves between the events. On a CPU, perf_counter.
    """
    if stream is None:
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e6
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    stream.synchronize()
    with torch.cuda.stream(stream):
        start.record(stream)
        fn()
        end.record(stream)
    end.synchronize()
    return start.elapsed_time(end)


# -- targets and the switching study --------------------------------------------------------------

def _nothing() -> None:
    """The switch of a target that needs none (its input is already in place, its context bound)."""


@dataclass
class Target:
    """One state to serve from: `switch()` makes it current (untimed apart from the first run),
    `run()` enqueues one inference, `stream` is where that work goes (None on a CPU)."""

    run: Callable[[], None]
    switch: Callable[[], None] = _nothing
    stream: "torch.cuda.Stream | None" = None


def alternating(keys: Sequence[Hashable], cycles: int) -> list[Hashable]:
    """The visiting order A, B, A, B, ... (`cycles` rounds over `keys`)."""
    if len(keys) < 2:
        raise ValueError(f"alternating needs at least two keys to switch between, got {list(keys)}")
    return [k for _ in range(cycles) for k in keys]


@dataclass
class SwitchStudy:
    """Per-call times of one switching experiment: every row is one timed call."""

    label: str
    backend: str
    device: str
    rows: list[dict] = field(default_factory=list)

    def times_ms(self, kind: str, key: Hashable | None = None) -> list[float]:
        return [r["latency_ms"] for r in self.rows if r["kind"] == kind and (key is None or r["key"] == key)]

    @property
    def keys(self) -> list[Hashable]:
        return list(dict.fromkeys(r["key"] for r in self.rows))

    def visits(self) -> list[dict]:
        """Per visit: the first run and its steady median, and every run relative to that median.

        Each visit is compared with the steady state *of the same target*, so a study that visits
        several batch sizes is not confounded by their different speeds.
        """
        out = []
        for step in dict.fromkeys(r["step"] for r in self.rows):
            rows = [r for r in self.rows if r["step"] == step]
            first = next(r for r in rows if r["kind"] == FIRST)
            steady_ms = [r["latency_ms"] for r in rows if r["kind"] == STEADY]
            steady_median = statistics.median(steady_ms)
            out.append({"step": step, "key": first["key"], "first_ms": first["latency_ms"],
                        "steady_median_ms": steady_median, "switch_host_ms": first["switch_host_ms"],
                        "first_ratio": first["latency_ms"] / steady_median,
                        "steady_ratios": [t / steady_median for t in steady_ms]})
        return out

    def summary(self) -> "FirstRunSummary":
        visits = self.visits()
        return FirstRunSummary(
            self.label, self.backend,
            first_ratio=bench.Stats.of([v["first_ratio"] for v in visits]),
            steady_ratio=bench.Stats.of([x for v in visits for x in v["steady_ratios"]]),
            excess_ms=bench.Stats.of([v["first_ms"] - v["steady_median_ms"] for v in visits]),
            first_ms=bench.Stats.of([v["first_ms"] for v in visits]),
            steady_ms=bench.Stats.of(self.times_ms(STEADY)),
            switch_host_ms=bench.Stats.of([v["switch_host_ms"] for v in visits]))

    def per_key_rows(self) -> list[dict]:
        """For each key: its first-run median and steady median (one point per batch in a plot)."""
        out = []
        for key in self.keys:
            out.append({"study": self.label, "backend": self.backend, "key": key,
                        "first_ms": statistics.median(self.times_ms(FIRST, key)),
                        "steady_ms": statistics.median(self.times_ms(STEADY, key))})
        return out


def switch_study(label: str, backend: str, targets: Mapping[Hashable, Target], sequence: Sequence[Hashable],
                 *, steady_runs: int = 5) -> SwitchStudy:
    """Visit `targets` in `sequence`; at each visit time the switch plus the first run, then
    `steady_runs` more runs, each from an idle device (:func:`timed_call_ms`)."""
    if steady_runs < 1:
        raise ValueError("steady_runs must be at least 1: the first run needs steady runs to compare with")
    missing = [k for k in dict.fromkeys(sequence) if k not in targets]
    if missing:
        raise KeyError(f"sequence visits {missing}, which have no target; targets: {list(targets)}")
    devices = {"cpu" if t.stream is None else "cuda" for t in targets.values()}
    if len(devices) != 1:
        raise ValueError("all targets of one study must run on the same kind of device")
    study = SwitchStudy(label, backend, devices.pop())
    for step, key in enumerate(sequence):
        target = targets[key]
        switch_ns = [0]

        def switch_then_run(target=target, switch_ns=switch_ns) -> None:
            t0 = time.perf_counter_ns()
            target.switch()
            switch_ns[0] = time.perf_counter_ns() - t0
            target.run()

        first_ms = timed_call_ms(switch_then_run, target.stream)
        study.rows.append({"step": step, "key": key, "kind": FIRST, "latency_ms": first_ms,
                           "switch_host_ms": switch_ns[0] / 1e6})
        for _ in range(steady_runs):
            study.rows.append({"step": step, "key": key, "kind": STEADY,
                               "latency_ms": timed_call_ms(target.run, target.stream), "switch_host_ms": 0.0})
    return study


@dataclass(frozen=True)
class FirstRunSummary:
    """The first run after a switch against steady state, both relative to the steady median of
    the same visit (1.0 = a steady run), as distributions over the visits."""

    label: str
    backend: str
    first_ratio: bench.Stats      # first run / steady median, one per visit
    steady_ratio: bench.Stats     # every steady run / its visit's steady median: the noise floor
    excess_ms: bench.Stats        # first run - steady median: what a switch adds to one request
    first_ms: bench.Stats
    steady_ms: bench.Stats
    switch_host_ms: bench.Stats   # host time of the switch call alone (part of the first run)

    @property
    def ratio(self) -> float:
        """Median over visits of first run / steady median."""
        return self.first_ratio.median

    @property
    def slower(self) -> bool:
        """The typical first run is slower than 90% of steady runs (beyond their noise) and by more
        than :data:`NOTICEABLE` (below which no request would notice)."""
        return self.first_ratio.median > max(self.steady_ratio.p90, NOTICEABLE)

    @property
    def within_steady(self) -> bool:
        """The typical first run is within the steady runs' p90 or 5% of their median: no cost shown."""
        return not self.slower

    def row(self) -> dict:
        return {"study": self.label, "backend": self.backend, "switches": self.first_ratio.n,
                "first_ms": self.first_ms.median, "steady_ms": self.steady_ms.median,
                "ratio": self.ratio, "ratio_p10": self.first_ratio.p10, "ratio_p90": self.first_ratio.p90,
                "steady_p90_ratio": self.steady_ratio.p90, "excess_ms": self.excess_ms.median,
                "switch_host_ms": self.switch_host_ms.median}

    def band(self) -> str:
        """The spreads behind a claim: the first runs' p10-p90 against the steady runs' p90."""
        return (f"first/steady p10-p90 {self.first_ratio.p10:.2f}-{self.first_ratio.p90:.2f}x over "
                f"{self.first_ratio.n} switches; steady runs p90 {self.steady_ratio.p90:.2f}x")


# -- steady state with the harness, and what stands out ------------------------------------------

#: A batch size whose steady latency is this many times its neighbours' stands out and is explained.
STANDS_OUT = 1.25


def steady_state_rows(backend: str, targets: Mapping[Hashable, Target], *, passes: int = bench.PASSES,
                      warmup_ms: float = 10.0, measure_ms: float = 40.0, min_iters: int = 10) -> list[dict]:
    """Each target's steady state measured with the harness (`passes` interleaved passes, kernel time
    and regime on a GPU): the reference against which one visit's steady runs are read. `min_iters`
    bounds the runs per pass from below (a slow CPU target would otherwise run ten times per pass)."""
    configs = {key: {"fn": t.run, "stream": t.stream, "device": "cpu" if t.stream is None else "cuda",
                     "batch_size": key if isinstance(key, int) else 1} for key, t in targets.items()}
    runs = bench.measure_interleaved(configs, passes=passes, name=backend, backend=backend, warmup_ms=warmup_ms,
                                     measure_ms=measure_ms, min_iters=min_iters)
    rows = []
    for key, ms in runs.items():
        medians = [m.latency_ms.median for m in ms]
        rows.append({"backend": backend, "key": key, "latency_ms": statistics.median(medians),
                     "host_ms": bench.median_host_ms(ms), "spread_pct": bench.spread_pct(medians),
                     "pass_medians_ms": [round(x, 5) for x in medians], **bench.kernel_fields(ms)})
    return rows


def _neighbour_ratio(values: Mapping[Hashable, float], key: Hashable) -> float:
    """`values[key]` over the median of its neighbours' (the keys just before and after it, in order)."""
    keys = sorted(values)
    i = keys.index(key)
    around = [values[k] for k in keys[max(i - 1, 0):i] + keys[i + 1:i + 2]]
    return values[key] / statistics.median(around) if around else float("nan")


def standing_out_keys(visit_rows: Sequence[dict], *, factor: float = STANDS_OUT) -> list[Hashable]:
    """The keys whose steady median in a switching study (:meth:`SwitchStudy.per_key_rows`) is over
    `factor` times its neighbours', with those neighbours: what :func:`standing_out` needs measured."""
    visit = {r["key"]: r["steady_ms"] for r in visit_rows}
    keys = sorted(visit)
    wanted: set = set()
    for i, key in enumerate(keys):
        if _neighbour_ratio(visit, key) > factor:
            wanted.update(keys[max(i - 1, 0):i + 2])
    return [k for k in keys if k in wanted]


def standing_out(visit_rows: Sequence[dict], steady_rows: Sequence[dict], *,
                 factor: float = STANDS_OUT) -> list[str]:
    """One line per batch size whose steady median in a switching study (`visit_rows`, as
    :meth:`SwitchStudy.per_key_rows` gives them) is over `factor` times its neighbours', read against
    the harness's steady state of the same batch sizes (`steady_rows`, :func:`steady_state_rows`):

    - the harness does not see it (within `factor` of its neighbours): one visit's few steady runs,
      so noise at that visit;
    - the harness sees it on kernel time too: the GPU's own work at that shape is longer (for
      cuDNN, the algorithms it chose at that shape);
    - the harness sees it on event time alone: the host's time per call, not the GPU's.
    """
    visit = {r["key"]: r["steady_ms"] for r in visit_rows}
    steady = {r["key"]: r for r in steady_rows}
    event = {k: r["latency_ms"] for k, r in steady.items()}
    kernel = {k: r["kernel_ms"] for k, r in steady.items()}
    lines = []
    for key in sorted(visit):
        ratio = _neighbour_ratio(visit, key)
        if not ratio > factor or key not in steady:
            continue
        head = f"batch {key}: steady median {visit[key]:.3g} ms in the switching study, {ratio:.2f}x its neighbours'"
        event_ratio = _neighbour_ratio(event, key)
        kernel_ratio = _neighbour_ratio(kernel, key)
        busy = steady[key]["gpu_busy"]
        seen = (f"the harness ({len(steady[key]['pass_medians_ms'])} passes): {event_ratio:.2f}x on event time"
                + ("" if math.isnan(kernel_ratio) else f", {kernel_ratio:.2f}x on kernel time, {busy:.0%} busy"))
        if not event_ratio > factor:
            why = "not reproduced: noise at that one visit (a few steady runs, each from an idle device)"
        elif kernel_ratio > factor:
            why = "the GPU's own work at this shape is longer: the kernels chosen for it run slower"
        elif math.isnan(kernel_ratio):
            why = "reproduced; no kernel time here to say whether host or device"
        else:
            why = "the kernels take no longer: the extra time is the host's, per call"
        lines.append(f"{head}; {seen}: {why}")
    return lines


# -- PyTorch and ONNX Runtime targets -------------------------------------------------------------

def cnn_inputs(name: str, scale: str, batches: Sequence[int], *, device: str, dtype: torch.dtype,
               channels_last: bool = False) -> dict[int, torch.Tensor]:
    """A seeded input per batch size, made before any timing (allocation is not a shape-change cost)."""
    out = {}
    for batch in batches:
        x = models.example_input(name, batch, scale, device=device, dtype=dtype)
        out[batch] = x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
    return out


def torch_targets(model: torch.nn.Module, inputs: Mapping[int, torch.Tensor],
                  stream: "torch.cuda.Stream | None" = None) -> dict[int, Target]:
    """PyTorch eager at each batch: nothing to switch, the shape is the input's."""
    @torch.inference_mode()
    def run(x: torch.Tensor) -> None:
        model(x)

    return {batch: Target(run=functools.partial(run, x), stream=stream) for batch, x in inputs.items()}


def ort_targets(session: Any, inputs: Mapping[int, np.ndarray]) -> dict[int, Target]:
    """ONNX Runtime at each batch (`session.run` returns when done, so host time is its time)."""
    name = session.get_inputs()[0].name
    return {batch: Target(run=functools.partial(session.run, None, {name: x})) for batch, x in inputs.items()}


def reference_outputs(name: str, scale: str, batches: Sequence[int], device: str = "cpu") -> dict[int, torch.Tensor]:
    """The zoo model `name` in FP32 (no TF32) on `device`, on the seeded input of each batch size."""
    model = models.build(name, scale).to(device)
    out = {}
    with cases.tf32_mode(False), torch.inference_mode():   # an FP32 reference: no TF32
        for batch in batches:
            out[batch] = model(models.example_input(name, batch, scale, device=device)).float().cpu()
    return out


def relative_errors(outputs: Mapping[int, Any], reference: Mapping[int, torch.Tensor]) -> dict[int, float]:
    """‖out − ref‖ / ‖ref‖ per batch size."""
    return {batch: checks.relative_error(out, reference[batch]) for batch, out in outputs.items()}


@torch.inference_mode()
def torch_outputs(model: torch.nn.Module, inputs: Mapping[int, torch.Tensor],
                  stream: "torch.cuda.Stream | None" = None) -> dict[int, torch.Tensor]:
    """The model's output at each batch, run on `stream` (where the study will run it) if given."""
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        return {batch: model(x).float().cpu() for batch, x in inputs.items()}


# -- figures --------------------------------------------------------------------------------------

def distribution_plot(studies: Sequence[SwitchStudy], *, title: str, path: str | Path, show: bool = True) -> Path:
    """Box and strip plot: for each study, the first run after each switch beside the steady runs,
    both relative to the steady median of the same visit (so batch sizes of one study line up).

    A log axis, because a first run can cost a thousand steady ones. The per-visit ratios go to a
    CSV beside the PNG.
    """
    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    rng = np.random.default_rng(0)
    colours = {FIRST: "#d62728", STEADY: "#76b900"}
    positions, labels, csv_rows = [], [], []
    for i, study in enumerate(studies):
        visits = study.visits()
        groups = {FIRST: [v["first_ratio"] for v in visits], STEADY: [x for v in visits for x in v["steady_ratios"]]}
        for j, (kind, values) in enumerate(groups.items()):
            pos = 2.5 * i + j
            ax.boxplot([values], positions=[pos], widths=0.6, showfliers=False, medianprops={"color": "black"})
            ax.scatter(pos + rng.uniform(-0.2, 0.2, len(values)), values, s=6, alpha=0.5, color=colours[kind],
                       label=kind if i == 0 else None)
            positions.append(pos)
            labels.append(f"{study.label}: {'first' if kind == FIRST else 'steady'}")
            csv_rows += [{"study": study.label, "backend": study.backend, "kind": kind, "ratio": x} for x in values]
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(positions, labels, fontsize=6, rotation=30, ha="right")
    ax.set(title=title, ylabel="latency / steady median at that shape")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return plots.finish_figure(fig, csv_rows, path, show)


#: The mean of speedups (ratios): the standard library's, which refuses non-positive values.
geometric_mean = statistics.geometric_mean
