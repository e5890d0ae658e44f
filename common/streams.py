"""Lab 02 (streams): independent work run at the same time, on CUDA streams or CPU threads, and timed.

Introduced in lab 02 (streams). What is here:

- :class:`ForkJoin` enqueues independent pieces of GPU work on worker streams forked from one *main*
  stream and joined back to it, so ``bench.measure(run, stream=main)`` times the whole region; its
  :meth:`~ForkJoin.timeline` records when each piece ran on which stream. :class:`ThreadFork` is
  the CPU counterpart: each piece in its own Python thread.
- :func:`compare_concurrent` times the same work one piece after another and concurrently, each
  measured twice; :func:`overlap_study` times two pieces alone and together, and says how much of
  one hid under the other (:func:`overlap_fraction`).
- :func:`blocking_stream` makes the kind of stream the legacy default stream synchronises with.
  PyTorch's own streams are created non-blocking and never do.
- :func:`copy_bandwidth_study`: host<->device copies from pageable and from pinned host memory.
- :class:`MultiBranchNet`, the four-branch network that TensorRT's auxiliary streams can run in
  parallel, with :func:`aux_stream_study` and :func:`contexts_study` (TensorRT only).
- :func:`timeline_plot` draws the spans of each experiment as horizontal bars, one row per stream.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch
from torch import nn
from torch.nn import functional as F

from . import batching, bench, env, models, plots
from . import onnx as onnx_tools
from .runners import Runner, TorchCudaGraphRunner, TorchEagerRunner

Work = Callable[[], object]
MiB = 2**20
BRANCHES = 4
#: One figure for every timeline, whatever the number of panels: its size never depends on the machine.
TIMELINE_FIGSIZE = (9.0, 9.0)
#: Relative error allowed against the FP32 reference on the CPU (FP16 keeps about three digits).
FP16_TOLERANCE = batching.tolerance("fp16")


# -- the multi-branch network ---------------------------------------------------------------------

def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]


class MultiBranchNet(nn.Module):
    """A stem, then `branches` independent conv stacks on its output, concatenated and fused by a 1x1 conv.

    The branches share nothing after the stem, so an engine may run them at the same time on
    auxiliary streams (TensorRT's ``max_aux_streams``). Each branch is narrow: at a small batch one
    branch alone leaves most of a large GPU idle, and that idle room is what parallel branches use.
    """

    def __init__(self, width: int = 64, branches: int = BRANCHES, depth: int = 3, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, width, stride=2))
        self.branches = nn.ModuleList(
            nn.Sequential(*[m for _ in range(depth) for m in _conv_bn_relu(width, width)]) for _ in range(branches))
        self.fuse = nn.Sequential(*_conv_bn_relu(branches * width, width, kernel=1))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def multibranch_sample_shape(scale: str = "full") -> tuple[int, int, int]:
    """One input sample (C, H, W): 112x112 on a GPU, 32x32 at CPU scale."""
    return (3, 112, 112) if scale == "full" else (3, 32, 32)


def build_multibranch(scale: str = "full", seed: int = 0) -> MultiBranchNet:
    """The network in eval mode with weights and BatchNorm statistics drawn from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultiBranchNet(width=64 if scale == "full" else 16)
        for m in model.modules():   # non-trivial BatchNorm statistics, as a trained model has
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def multibranch_input(batch_size: int, scale: str = "full", seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch_size, *multibranch_sample_shape(scale)), generator=gen)


def export_multibranch(scale: str, out_dir: Path) -> tuple[dict[str, Path], float]:
    """The network as FP32 ONNX with a dynamic batch (and FP16 on a GPU), and ONNX Runtime's relative
    error against PyTorch FP32 on the FP32 file (the export raises if it exceeds 1e-4)."""
    model = build_multibranch(scale)
    x = multibranch_input(2, scale)
    paths = {"fp32": onnx_tools.export(model, x, Path(out_dir) / f"multibranch_{scale}_fp32.onnx")}
    error = onnx_tools.check_export(model, paths["fp32"], x, rtol=1e-4)
    if env.has("gpu"):
        paths["fp16"] = onnx_tools.export(model, x, Path(out_dir) / f"multibranch_{scale}_fp16.onnx", precision="fp16")
    return paths, error


def concat_fan_in(onnx_path: str | Path) -> list[int]:
    """How many tensors each Concat node of the graph joins: the parallel branches it ends."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    return [len(node.input) for node in graph.node if node.op_type == "Concat"]


# -- timing several streams (or threads) as one region -------------------------------------------

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

    @property
    def spans(self) -> list[Span]:
        return self.one_spans + self.concurrent_spans

    def row(self) -> dict:
        c = self.comparison
        return {"experiment": self.experiment, "one": self.one, "concurrent": self.concurrent,
                "one_ms": c.median_a_ms, "concurrent_ms": c.median_b_ms, "speedup": c.speedup,
                "spread_pct": c.noise_pct, "significant": c.significant,
                "one_items_per_s": self.items / (c.median_a_ms / 1e3),
                "concurrent_items_per_s": self.items / (c.median_b_ms / 1e3)}


def compare_concurrent(one: ForkJoin | ThreadFork, concurrent: ForkJoin | ThreadFork, *, experiment: str,
                       tag: str, one_label: str, concurrent_label: str, items: int, passes: int = 2,
                       **bench_kwargs) -> Concurrency:
    """Time `one` (the pieces one after another) and `concurrent` alternately, `passes` times each, so
    that drift hits both; speedup = one's median / concurrent's median, judged against the spread."""
    runs_one, runs_concurrent = [], []
    for _ in range(passes):
        runs_one.append(one.measure(f"{experiment}, {one_label}", batch_size=items, **bench_kwargs))
        runs_concurrent.append(concurrent.measure(f"{experiment}, {concurrent_label}", batch_size=items,
                                                  **bench_kwargs))
    return Concurrency(experiment, tag, one_label, concurrent_label, items, bench.compare(runs_one, runs_concurrent),
                       with_lane_prefix(one.timeline(), one_label),
                       with_lane_prefix(concurrent.timeline(), concurrent_label))


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
        """Case b against case a, on the time of the two pieces together (speedup = a / b)."""
        return bench.compare(self.together[case_a], self.together[case_b])

    def panel(self) -> list[Span]:
        """Every case's timeline in one list, each lane prefixed by its case: one panel of a timeline plot."""
        return [span for case, spans in self.timelines.items() for span in with_lane_prefix(spans, case)]


def overlap_study(cases: Sequence[OverlapCase], *, passes: int = 2, **bench_kwargs) -> OverlapStudy:
    """Time each case's two pieces alone and together (fork-join regions), `passes` times in turn.

    The pieces are enqueued in the order given: put first what a real program issues first.
    """
    forks = {}
    for c in cases:
        forks[c.name] = [ForkJoin([c.works[0]], [c.streams[0]], labels=[c.labels[0]], lane_names=[c.lanes[0]]),
                         ForkJoin([c.works[1]], [c.streams[1]], labels=[c.labels[1]], lane_names=[c.lanes[1]]),
                         ForkJoin(list(c.works), list(c.streams), labels=list(c.labels), lane_names=list(c.lanes))]
    runs: dict[str, list[list[bench.Measurement]]] = {c.name: [[], [], []] for c in cases}
    for _ in range(passes):
        for c in cases:
            for what, fork, bucket in zip((c.labels[0], c.labels[1], "together"), forks[c.name], runs[c.name]):
                bucket.append(fork.measure(f"{c.name}: {what}", batch_size=1, **bench_kwargs))
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
        })
        timelines[c.name] = spans
    return OverlapStudy(rows, timelines, {c.name: runs[c.name][2] for c in cases})


# -- the work itself ------------------------------------------------------------------------------

def model_runners(name: str, count: int, scale: str, *, kind: str = "eager", batch_size: int = 1,
                  device: str | None = None) -> list[Runner]:
    """`count` independent copies of zoo model `name` (weights from seeds 0, 1, ...), each prepared at
    `batch_size`: PyTorch eager (FP16 and channels-last on a GPU, FP32 on a CPU) or, on a GPU, one
    CUDA graph per model (captured after a warm-up). ``runner.run`` enqueues on the current stream."""
    device = device or env.detect().device
    precision = "fp16" if device == "cuda" else "fp32"
    kinds = {"eager": TorchEagerRunner, "graph": TorchCudaGraphRunner}
    if kind not in kinds:
        raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
    runners = []
    for seed in range(count):
        make_input = functools.partial(_zoo_input, name, scale, seed)
        runner = kinds[kind](models.build(name, scale, seed=seed), make_input, device=device, precision=precision)
        runner.prepare(batch_size)
        runners.append(runner)
    return runners


def _zoo_input(name: str, scale: str, seed: int, batch_size: int) -> torch.Tensor:
    return models.example_input(name, batch_size, scale, seed=seed)


def reference_errors(runners: Sequence[Runner], name: str, scale: str) -> list[float]:
    """Each runner's last output against zoo model `name` (seed i for runner i) in FP32 on the CPU."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()   # the work may have run on any stream
    errors = []
    for seed, runner in enumerate(runners):
        with torch.inference_mode():
            reference = models.build(name, scale, seed=seed)(_zoo_input(name, scale, seed, runner.batch_size))
        errors.append(onnx_tools.max_relative_error(runner.output(), reference))
    return errors


def blocking_stream(device: int = 0) -> torch.cuda.ExternalStream:
    """A stream made by plain ``cudaStreamCreate``: a *blocking* stream, which the legacy default stream
    synchronises with implicitly. Created once per process and device, and never destroyed.

    PyTorch creates its own streams (``torch.cuda.Stream()``) with ``cudaStreamNonBlocking``, so they
    never synchronise with the legacy default stream; C++ or cuda-python code that creates streams
    with the default flags gets blocking ones, and meets the pitfall lab 02 measures.
    """
    env.require("gpu")
    return torch.cuda.ExternalStream(_blocking_handle(device), device=device)


@functools.lru_cache(maxsize=None)
def _blocking_handle(device: int) -> int:
    cudart = torch.cuda.cudart()   # PyTorch's own binding of libcudart
    handle = ctypes.c_void_p()
    with torch.cuda.device(device):
        err = cudart.cudaStreamCreate(ctypes.addressof(handle))
    if err != cudart.cudaError.success:
        raise RuntimeError(f"cudaStreamCreate failed: {cudart.cudaGetErrorString(err)}")
    return int(handle.value or 0)


def device_copy(nbytes: int) -> Work:
    """A piece of work that copies `nbytes` from one device buffer to another (one device-to-device memcpy)."""
    src = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return functools.partial(dst.copy_, src, non_blocking=True)


def host_buffer(nbytes: int, *, pinned: bool) -> torch.Tensor:
    """`nbytes` of host memory, pinned (page-locked) or pageable, written once so its pages exist."""
    return torch.ones(nbytes, dtype=torch.uint8, pin_memory=pinned)


def host_to_device_copy(nbytes: int, *, pinned: bool) -> Work:
    """A piece of work that uploads `nbytes` from pinned or pageable host memory to the device."""
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    return functools.partial(dst.copy_, host_buffer(nbytes, pinned=pinned), non_blocking=True)


def copy_bandwidth_study(nbytes: int, *, passes: int = 2,
                         **bench_kwargs) -> tuple[list[dict], dict[str, bench.Comparison]]:
    """Host-to-device and device-to-host copy bandwidth from pageable and from pinned host memory.

    Each copy is ``copy_(..., non_blocking=True)`` timed by events on a created stream; bandwidth =
    bytes / median time. Returns one row per (direction, memory) and, per direction, pinned against
    pageable as a :class:`bench.Comparison` (speedup = pageable time / pinned time).
    """
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    hosts = {"pageable": host_buffer(nbytes, pinned=False), "pinned": host_buffer(nbytes, pinned=True)}
    rows, comparisons = [], {}
    for direction in ("host to device", "device to host"):
        runs: dict[str, list[bench.Measurement]] = {memory: [] for memory in hosts}
        for _ in range(passes):
            for memory, host in hosts.items():
                copy = (functools.partial(device.copy_, host, non_blocking=True) if direction == "host to device"
                        else functools.partial(host.copy_, device, non_blocking=True))
                runs[memory].append(bench.measure(copy, name=f"{direction}, {memory}", device="cuda", **bench_kwargs))
        for memory, measured in runs.items():
            median_ms = bench.median_latency_ms(measured)
            rows.append({"direction": direction, "host memory": memory, "MiB": nbytes / MiB, "median_ms": median_ms,
                         "GB_per_s": nbytes / (median_ms / 1e3) / 1e9,
                         "spread_pct": bench.spread_pct(m.latency_ms.median for m in measured)})
        comparisons[direction] = bench.compare(runs["pageable"], runs["pinned"])
    return rows, comparisons


# -- TensorRT: auxiliary streams and several contexts ----------------------------------------------

def _check_engine_output(output: torch.Tensor, reference: torch.Tensor, what: str) -> float:
    error = onnx_tools.max_relative_error(output, reference)
    if not error <= FP16_TOLERANCE:
        raise AssertionError(f"{what}: relative error {error:.3g} against PyTorch FP32 exceeds {FP16_TOLERANCE}; "
                             "do not trust its timings")
    return error


def aux_stream_study(onnx_path: str | Path, scale: str, *, batches: Sequence[int],
                     aux_counts: Sequence[int] = (0, 1, 2, 4), passes: int = 2, **bench_kwargs) -> list[dict]:
    """TensorRT: the multi-branch network built with ``max_aux_streams=n`` for each n, checked against
    PyTorch FP32, then timed at each batch size (twice each) against n=0; and the engine that uses
    the most auxiliary streams run again with streams the user supplies (``set_aux_streams``).
    """
    from .runners import TensorRTRunner
    from .trt import BuildConfig, batch_profile

    env.require("tensorrt")
    make_input = functools.partial(multibranch_input, scale=scale)
    profile = batch_profile("input", multibranch_sample_shape(scale), 1, min(batches), max(batches))
    with torch.inference_mode():
        reference = build_multibranch(scale)(make_input(min(batches)))
    engines: dict[str, TensorRTRunner] = {}
    num_aux: dict[str, int] = {}
    for n in aux_counts:
        runner = TensorRTRunner(onnx_path, make_input, BuildConfig(profiles=(profile,), max_aux_streams=n),
                                precision="fp16")
        runner.prepare(min(batches))
        runner.run()
        _check_engine_output(runner.output(), reference, f"engine with max_aux_streams={n}")
        engines[str(n)], num_aux[str(n)] = runner, int(runner.build.engine.num_aux_streams)
    most = max(engines, key=lambda k: num_aux[k])
    runs_of: dict[str, Callable[[int], bench.Measurement]] = {
        k: functools.partial(_measure_runner, r, **bench_kwargs) for k, r in engines.items()}
    if num_aux[most] > 0:
        user = f"{most}, user streams"
        runs_of[user] = _user_aux_streams(onnx_path, make_input, engines[most].build.config, num_aux[most],
                                          bench_kwargs)
        num_aux[user] = num_aux[most]
    rows = []
    for batch in batches:
        runs: dict[str, list[bench.Measurement]] = {k: [] for k in runs_of}
        for _ in range(passes):
            for key, measure in runs_of.items():
                runs[key].append(measure(batch))
        for key, measured in runs.items():
            versus = bench.compare(runs[str(aux_counts[0])], measured)
            rows.append({"max_aux_streams": key, "num_aux_streams": num_aux[key], "batch": batch,
                         "latency_ms": versus.median_b_ms, "spread_pct": bench.spread_pct(
                             m.latency_ms.median for m in measured),
                         f"speedup_vs_{aux_counts[0]}": versus.speedup, "significant": versus.significant})
    return rows


def _measure_runner(runner: Runner, batch: int, **bench_kwargs) -> bench.Measurement:
    return runner.measure(batch, name=runner.label, **bench_kwargs)


def _user_aux_streams(onnx_path, make_input, config, count: int,
                      bench_kwargs: dict) -> Callable[[int], bench.Measurement]:
    """A second context of the same (cached) engine, run with `count` auxiliary streams of our own."""
    from .runners import TensorRTRunner

    runner = TensorRTRunner(onnx_path, make_input, config, precision="fp16")
    aux = [torch.cuda.Stream() for _ in range(count)]
    handles = [s.cuda_stream for s in aux]
    context = runner.engine_runner.context(0)

    def enqueue() -> None:
        # The listing says the streams apply to "the next execute_async_v3() call": set them every time.
        context.set_aux_streams(handles)
        runner.run()

    def measure(batch: int) -> bench.Measurement:
        if runner.batch_size != batch:
            runner.prepare(batch)
        return bench.measure(enqueue, name=f"{runner.label}, user aux streams", batch_size=batch, device="cuda",
                             stream=runner.stream, **bench_kwargs)

    return measure


def enqueue_on_current_stream(engine_runner, ctx_index: int = 0) -> Work:
    """A piece of work that enqueues a TensorRT context on whatever stream is current (as ForkJoin sets
    it), so one engine can be enqueued on the legacy default stream or a created one alike."""
    context = engine_runner.context(ctx_index)

    def enqueue() -> None:
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"execute_async_v3 failed on context {ctx_index}; see TensorRT's log")

    return enqueue


@dataclass
class ContextsStudy:
    """Rows per context count, the comparisons behind them, and the EngineRunner that ran them."""

    rows: list[dict]
    results: list[Concurrency]
    engine_runner: object


def contexts_study(onnx_path: str | Path, name: str, scale: str, *, batch_size: int,
                   counts: Sequence[int] = (1, 2, 4), passes: int = 2, **bench_kwargs) -> ContextsStudy:
    """TensorRT: one engine of zoo model `name`, N execution contexts each on its own stream, against
    the same N inferences of one context on one stream. Every context is checked against PyTorch FP32
    first. The engine is built with ``max_aux_streams=0`` so the only concurrency is between contexts.
    Rows carry each context's activation memory (the weights are shared by all contexts)."""
    from .trt import BuildConfig, EngineRunner, batch_profile, build_engine

    env.require("tensorrt")
    sample = models.spec(name, scale).sample_shape
    config = BuildConfig(profiles=(batch_profile("input", sample, 1, batch_size, batch_size),), max_aux_streams=0)
    built = build_engine(onnx_path, config)
    runner = EngineRunner(built.engine, num_contexts=max(counts))
    x = models.example_input(name, batch_size, scale)
    with torch.inference_mode():
        reference = models.build(name, scale)(x)
    for i in range(runner.num_contexts):
        out = runner.run({"input": x.to(device="cuda", dtype=torch.float16)}, ctx_index=i)
        _check_engine_output(next(iter(out.values())), reference, f"context {i}")
    rows, results = [], []
    for n in counts:
        one = ForkJoin([functools.partial(runner.enqueue, 0)] * n, [runner.stream(0)],
                       labels=[f"inference {i}" for i in range(n)], lane_names=["context 0"])
        many = ForkJoin([functools.partial(runner.enqueue, i) for i in range(n)], [runner.stream(i) for i in range(n)],
                        labels=[f"inference {i}" for i in range(n)], lane_names=[f"context {i}" for i in range(n)])
        result = compare_concurrent(one, many, experiment=f"{n} x {name} batch {batch_size}, TensorRT",
                                    tag=f"TensorRT {n} contexts", one_label="1 context, 1 stream",
                                    concurrent_label=f"{n} contexts, {n} streams", items=n * batch_size,
                                    passes=passes, **bench_kwargs)
        results.append(result)
        rows.append({**result.row(), "contexts": n, "activation_MiB_per_context": runner.device_memory_bytes / MiB,
                     "activation_MiB_total": n * runner.device_memory_bytes / MiB,
                     "engine_plan_MiB_shared": built.plan_size_bytes / MiB})
    return ContextsStudy(rows, results, runner)


# -- the timeline figure ----------------------------------------------------------------------------

def timeline_plot(panels: dict[str, Sequence[Span]], *, title: str, path: str | Path, show: bool = True) -> Path:
    """One horizontal bar per piece of work, one row per lane (stream or thread), one panel per experiment;
    PNG (fixed size) and CSV of the spans into `path`. Bars that share a column of time ran at once."""
    if not panels:
        raise ValueError("no timeline to draw")
    fig, axes = plt.subplots(len(panels), 1, figsize=TIMELINE_FIGSIZE, dpi=plots.DPI, squeeze=False)
    colors = plt.get_cmap("tab10")
    rows = []
    for ax, (panel, spans) in zip(axes[:, 0], panels.items()):
        lanes = list(dict.fromkeys(s.lane for s in spans))
        labels = list(dict.fromkeys(s.label for s in spans))
        for s in spans:
            ax.barh(lanes.index(s.lane), s.duration_ms, left=s.start_ms, height=0.6,
                    color=colors(labels.index(s.label) % 10), edgecolor="black", linewidth=0.4)
            rows.append({"panel": panel, "lane": s.lane, "label": s.label, "start_ms": s.start_ms, "end_ms": s.end_ms})
        ax.set_yticks(range(len(lanes)))
        ax.set_yticklabels(lanes, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("ms from the start of the region", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(handles=[Patch(color=colors(i % 10), label=label) for i, label in enumerate(labels)],
                  fontsize=6, loc="lower right")
    fig.suptitle(title, fontsize=10)
    return plots.finish_figure(fig, rows, path, show)
