"""What the first run after a shape or profile change costs, and how to keep it off the serving path.

Introduced in lab 04 (shape changes). A *target* is one state a backend can serve from: a batch
size of PyTorch eager or ONNX Runtime, a TensorRT context bound to a profile and shape, a
`torch.compile` graph. :func:`switch_study` visits targets in a given order (new shapes once each,
or A, B, A, B, ...) and times, from an idle device, the first run after each switch and a few
steady-state runs after it; :class:`FirstRunSummary` compares the two distributions. TensorRT
targets come from :func:`trt_targets` over a :class:`common.trt.EngineRunner` (a shape change in
one context, a profile switch in one context, or one context per profile); `torch.compile`'s
recompilation is measured by :func:`compile_study`.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import bench, models, plots
from .onnx import max_relative_error

FIRST, STEADY = "first after switch", "steady"
#: A first run within 5% of the steady median counts as no cost, however steady the steady runs are.
NOTICEABLE = 1.05


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


@contextlib.contextmanager
def _no_tf32():
    """FP32 references must be FP32: cuDNN convolutions default to TF32 on Ampere and newer."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def reference_outputs(name: str, scale: str, batches: Sequence[int], device: str = "cpu") -> dict[int, torch.Tensor]:
    """The zoo model `name` in FP32 (no TF32) on `device`, on the seeded input of each batch size."""
    model = models.build(name, scale).to(device)
    out = {}
    with _no_tf32(), torch.inference_mode():
        for batch in batches:
            out[batch] = model(models.example_input(name, batch, scale, device=device)).float().cpu()
    return out


def relative_errors(outputs: Mapping[int, Any], reference: Mapping[int, torch.Tensor]) -> dict[int, float]:
    """‖out − ref‖ / ‖ref‖ per batch size."""
    return {batch: max_relative_error(out, reference[batch]) for batch, out in outputs.items()}


@torch.inference_mode()
def torch_outputs(model: torch.nn.Module, inputs: Mapping[int, torch.Tensor],
                  stream: "torch.cuda.Stream | None" = None) -> dict[int, torch.Tensor]:
    """The model's output at each batch, run on `stream` (where the study will run it) if given."""
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        return {batch: model(x).float().cpu() for batch, x in inputs.items()}


# -- torch.compile: recompilation per shape ------------------------------------------------------

def graphs_compiled() -> int:
    """How many graphs TorchDynamo has compiled in this process (a private counter of torch._dynamo)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def inductor_cache_hits() -> int:
    """How many compiles Inductor served from its on-disk FX graph cache in this process."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["fxgraph_cache_hit"])


def warm_up_compiler(device: str, backend: str = "inductor") -> float:
    """Compile and run a one-line function once, so the compiler's own start-up (imports, worker
    processes) is not charged to the first shape of a study; returns its seconds."""
    def tiny(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * 2.0 + 1.0)

    with bench.wall_timer() as t:
        torch.compile(tiny, backend=backend)(torch.ones(64, device=device))
        if device == "cuda":
            torch.cuda.synchronize()
    torch._dynamo.reset()
    return t.seconds


@dataclass
class CompileStudy:
    """One `torch.compile` configuration: the first call at each shape and the steady state after."""

    dynamic: bool
    rows: list[dict]                               # per batch, in the order first used
    steady: dict[int, list[bench.Measurement]]     # per batch, one Measurement per pass

    @property
    def label(self) -> str:
        return f"torch.compile (dynamic={self.dynamic})"

    @property
    def graphs(self) -> list[int]:
        return [r["new_graphs"] for r in self.rows]

    @property
    def first_call_s(self) -> list[float]:
        return [r["first_call_s"] for r in self.rows]

    def steady_median_ms(self, batch: int) -> float:
        return bench.median_latency_ms(self.steady[batch])


def measure_passes(fns: Mapping[int, Callable[[], None]], *, name: str, backend: str,
                   stream: "torch.cuda.Stream | None", passes: int = 2, warmup_ms: float = 100.0,
                   measure_ms: float = 300.0) -> dict[int, list[bench.Measurement]]:
    """Steady state of each batch's function, `passes` sweeps over all batches (each point twice)."""
    device = "cpu" if stream is None else "cuda"
    configs = {batch: {"fn": fn, "batch_size": batch} for batch, fn in fns.items()}
    return bench.measure_interleaved(configs, passes=passes, name=name, backend=backend, device=device,
                                     stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)


def compile_study(model: torch.nn.Module, inputs: Mapping[int, torch.Tensor], reference: Mapping[int, torch.Tensor],
                  *, dynamic: bool, tolerance: float, stream: "torch.cuda.Stream | None" = None,
                  backend: str = "inductor", passes: int = 2, warmup_ms: float = 100.0,
                  measure_ms: float = 300.0) -> CompileStudy:
    """Compile `model` afresh, call it at each batch of `inputs` in order, then time the steady state.

    The first call at each batch is timed in seconds on the host (through synchronisation: a
    compile is host work) with the number of graphs Dynamo compiled for it. Each output is checked
    against `reference` (relative error within `tolerance`) before any steady-state timing.
    """
    torch._dynamo.reset()   # compiled code is cached per Python function: start from none
    compiled = torch.compile(model, dynamic=dynamic, backend=backend)
    ctx = (lambda: torch.cuda.stream(stream)) if stream is not None else contextlib.nullcontext

    @torch.inference_mode()
    def call(x: torch.Tensor) -> torch.Tensor:
        with ctx():
            return compiled(x)

    rows = []
    for batch, x in inputs.items():
        graphs_before, hits_before = graphs_compiled(), inductor_cache_hits()
        with bench.wall_timer() as t:
            y = call(x)
            if stream is not None:
                stream.synchronize()
        error = max_relative_error(y.float().cpu(), reference[batch])
        if not error <= tolerance:
            raise AssertionError(f"torch.compile (dynamic={dynamic}) at batch {batch}: relative error {error:.3g} "
                                 f"exceeds {tolerance:g}; its timings would mean nothing")
        rows.append({"batch": batch, "first_call_s": t.seconds, "new_graphs": graphs_compiled() - graphs_before,
                     "cache_hits": inductor_cache_hits() - hits_before, "relative_error": error})
    steady = measure_passes({b: functools.partial(call, x) for b, x in inputs.items()},
                            name=f"torch.compile (dynamic={dynamic})", backend=f"torch.compile (dynamic={dynamic})",
                            stream=stream, passes=passes, warmup_ms=warmup_ms, measure_ms=measure_ms)
    return CompileStudy(dynamic, rows, steady)


def compile_steady_rows(static: CompileStudy, dynamic: CompileStudy,
                        eager: Mapping[int, Sequence[bench.Measurement]]) -> list[dict]:
    """Per batch: eager, static and dynamic steady-state medians, and dynamic against static
    judged against the run-to-run spread (:func:`common.bench.compare`)."""
    rows = []
    for batch in static.steady:
        cmp = bench.compare(static.steady[batch], dynamic.steady[batch])
        rows.append({"batch": batch, "eager_ms": bench.median_latency_ms(eager[batch]),
                     "static_ms": cmp.median_a_ms, "dynamic_ms": cmp.median_b_ms,
                     "static_speedup": cmp.median_b_ms / cmp.median_a_ms, "noise_pct": cmp.noise_pct,
                     "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows


# -- TensorRT targets over an EngineRunner --------------------------------------------------------

#: A binding: (profile index, {input name: shape}).
Binding = tuple[int, Mapping[str, Sequence[int]]]
HOW = ("shape", "profile", "contexts")


def profile_index_for(profile_shapes: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]],
                      shape: Sequence[int]) -> int:
    """The first profile whose min..max range holds `shape` (one input's (min, opt, max) per profile)."""
    for index, (lo, _, hi) in enumerate(profile_shapes):
        if len(lo) == len(shape) and all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return index
    from .trt.buffers import ShapeError

    ranges = ", ".join(f"{i}: {tuple(lo)}..{tuple(hi)}" for i, (lo, _, hi) in enumerate(profile_shapes))
    raise ShapeError(f"no profile holds shape {tuple(shape)} (profiles {ranges}): rebuild with a profile "
                     "that covers it")


def _fill_inputs(runner: Any, ctx_index: int) -> None:
    """Random normal values in the context's input buffers: finite data, as a real request carries."""
    stream = runner.stream(ctx_index)
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        for tensor in runner.inputs(ctx_index).values():
            tensor.normal_() if tensor.is_floating_point() else tensor.zero_()


def _bind(runner: Any, ctx_index: int, binding: Binding) -> None:
    """Put a context on a binding's profile (only if it is on another one) and shapes."""
    profile, shapes = binding
    if runner.context(ctx_index).active_optimization_profile != profile:
        runner.set_optimization_profile(ctx_index, profile)
    runner.set_input_shapes(shapes, ctx_index)


def trt_targets(runner: Any, bindings: Mapping[Hashable, Binding], how: str) -> dict[Hashable, Target]:
    """Targets over one EngineRunner, switched `how`:

    - ``"shape"``: one context, one profile; a switch is ``set_input_shape`` (every binding must
      name the same profile);
    - ``"profile"``: one context; a switch is ``set_optimization_profile_async`` then
      ``set_input_shape``;
    - ``"contexts"``: binding i lives in context i, bound once here; a switch only picks the context.

    Every binding is run once here (buffers allocated, inputs filled, first enqueue done), so the
    study times repeated switches between states already seen, as a server would make them.
    """
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    targets: dict[Hashable, Target] = {}
    context_of: dict[Hashable, int] = {}
    if how == "contexts":
        if runner.num_contexts < len(bindings):
            raise ValueError(f"{len(bindings)} bindings need {len(bindings)} contexts, the runner has "
                             f"{runner.num_contexts}: EngineRunner(engine, num_contexts={len(bindings)})")
        for ctx_index, (key, binding) in enumerate(bindings.items()):
            _bind(runner, ctx_index, binding)
            context_of[key] = ctx_index
            targets[key] = Target(run=functools.partial(runner.enqueue, ctx_index), stream=runner.stream(ctx_index))
    else:
        profiles = {profile for profile, _ in bindings.values()}
        if how == "shape":
            if len(profiles) != 1:
                raise ValueError(f"a shape change stays in one profile; these bindings use profiles {sorted(profiles)}")
            profile = profiles.pop()
            if runner.context(0).active_optimization_profile != profile:
                runner.set_optimization_profile(0, profile)
        for key, (profile, shapes) in bindings.items():
            switch = (functools.partial(runner.set_input_shapes, shapes, 0) if how == "shape"
                      else functools.partial(_bind, runner, 0, (profile, shapes)))
            context_of[key] = 0
            targets[key] = Target(run=functools.partial(runner.enqueue, 0), switch=switch, stream=runner.stream(0))
    for key, target in targets.items():
        target.switch()
        _fill_inputs(runner, context_of[key])
        target.run()
        runner.synchronize(context_of[key])
    return targets


def trt_memory_rows(runner: Any, input_name: str) -> list[dict]:
    """Device memory a runner holds: activation memory per profile and per context, I/O buffers.

    Contexts are created with TensorRT's default STATIC strategy, so each one allocates the
    engine's ``device_memory_size_v2`` (the largest profile's need) whichever profile it serves.
    """
    rows = [{"what": f"activation memory profile {p} needs (get_device_memory_size_for_profile_v2)",
             "bytes": runner.device_memory_bytes_for_profile(p)}
            for p in range(len(runner.specs[input_name].profile_shapes))]
    per_context = runner.device_memory_bytes
    rows.append({"what": "activation memory each context allocates (device_memory_size_v2)", "bytes": per_context})
    io_bytes = [runner.io_buffer_bytes(i) for i in range(runner.num_contexts)]
    rows += [{"what": f"context {i} I/O buffers", "bytes": b} for i, b in enumerate(io_bytes)]
    rows.append({"what": f"total for {runner.num_contexts} context(s)",
                 "bytes": runner.num_contexts * per_context + sum(io_bytes)})
    return rows


def profile_width_study(narrow: Any, wide: Any, input_name: str, sample_shape: Sequence[int],
                        batches: Sequence[int], *, passes: int = 2, warmup_ms: float = 100.0,
                        measure_ms: float = 300.0) -> list[dict]:
    """Steady state at each batch: an engine with narrow profiles (the one holding the batch is
    used) against an engine with one wide profile. Both measured `passes` times, alternately."""
    rows = []
    narrow_ranges = narrow.specs[input_name].profile_shapes
    for batch in batches:
        shape = (batch, *sample_shape)
        profile = profile_index_for(narrow_ranges, shape)
        _bind(narrow, 0, (profile, {input_name: shape}))
        _bind(wide, 0, (0, {input_name: shape}))
        runs: dict[str, list[bench.Measurement]] = {"wide": [], "narrow": []}
        for _ in range(passes):
            for label, runner in (("wide", wide), ("narrow", narrow)):
                _fill_inputs(runner, 0)
                stream = runner.stream(0)
                runs[label].append(bench.measure(functools.partial(runner.enqueue, 0), name=f"{label} profile",
                                                 backend="TensorRT", batch_size=batch,
                                                 device="cpu" if stream is None else "cuda", stream=stream,
                                                 warmup_ms=warmup_ms, measure_ms=measure_ms))
        cmp = bench.compare(runs["wide"], runs["narrow"])
        lo, opt, hi = narrow_ranges[profile]
        rows.append({"batch": batch, "narrow_profile": f"{profile}: {lo[0]}..{hi[0]} opt {opt[0]}",
                     "wide_ms": cmp.median_a_ms, "narrow_ms": cmp.median_b_ms, "speedup": cmp.speedup,
                     "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows


def engine_outputs(runner: Any, inputs: Mapping[int, torch.Tensor], input_name: str = "input") -> dict[int, torch.Tensor]:
    """The engine's output at each batch (context 0, on the profile that holds the batch)."""
    out = {}
    for batch, x in inputs.items():
        profile = profile_index_for(runner.specs[input_name].profile_shapes, tuple(x.shape))
        if runner.context(0).active_optimization_profile != profile:
            runner.set_optimization_profile(0, profile)
        result = runner.run({input_name: x})
        out[batch] = next(iter(result.values())).float().cpu()
    return out


def trt_switch_studies(engine: Any, label: str, backend: str, input_name: str, sample_shape: Sequence[int], *,
                       shape_pair: tuple[int, int], profile_pair: tuple[int, int], cycles: int,
                       steady_runs: int = 5) -> tuple[dict[str, SwitchStudy], dict[str, list[dict]]]:
    """The three ways to serve two batch sizes from one engine, each alternated `cycles` times:

    - ``"set_input_shape"``: one context, both batches in one profile (`shape_pair`);
    - ``"profile switch"``: one context, the batches in two profiles (`profile_pair`);
    - ``"context per profile"``: two contexts, each bound once to its profile and batch.

    Returns the studies and the device memory each arrangement holds (:func:`trt_memory_rows`).
    """
    from .trt import EngineRunner

    one = EngineRunner(engine)
    ranges = one.specs[input_name].profile_shapes

    def bindings(batches: Sequence[int]) -> dict[Hashable, Binding]:
        return {b: (profile_index_for(ranges, (b, *sample_shape)), {input_name: (b, *sample_shape)}) for b in batches}

    a, b = shape_pair
    studies = {"set_input_shape": switch_study(
        f"{label}: set_input_shape {a}<->{b}", backend, trt_targets(one, bindings(shape_pair), "shape"),
        alternating(list(shape_pair), cycles), steady_runs=steady_runs)}
    a, c = profile_pair
    studies["profile switch"] = switch_study(
        f"{label}: profile switch {a}<->{c}", backend, trt_targets(one, bindings(profile_pair), "profile"),
        alternating(list(profile_pair), cycles), steady_runs=steady_runs)
    memory = {"one context, switching profiles": trt_memory_rows(one, input_name)}
    per_profile = EngineRunner(engine, num_contexts=2)
    studies["context per profile"] = switch_study(
        f"{label}: context per profile {a}<->{c}", backend, trt_targets(per_profile, bindings(profile_pair), "contexts"),
        alternating(list(profile_pair), cycles), steady_runs=steady_runs)
    memory["one context per profile"] = trt_memory_rows(per_profile, input_name)
    return studies, memory


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
