"""Lab 02 (streams): the work that runs side by side, and the experiments that time it.

- :class:`MultiBranchNet`, the four-branch network that TensorRT's auxiliary streams can run in
  parallel, and its export;
- :func:`model_runners`: independent copies of a zoo model (eager or CUDA graphs), checked against
  FP32 with :func:`reference_errors`; :func:`on_streams` and :func:`in_threads` time them one after
  another and side by side;
- :func:`blocking_stream` makes the kind of stream the legacy default stream synchronises with.
  PyTorch's own streams are created non-blocking and never do; :func:`spin_kernel` is the work put on
  it: a kernel that only waits, so it competes with nothing (no memory traffic, one SM) and whatever
  it changes in another stream's timing is the synchronisation alone;
- :func:`copy_bandwidth_study`: host<->device copies from pageable and from pinned host memory;
- :func:`timeline_plot` draws the spans of each experiment as horizontal bars, one row per stream.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch
from torch import nn
from torch.nn import functional as F

from common import bench, checks, env, models, plots
from common import onnx as onnx_tools
from common.runners import Runner, TorchCudaGraphRunner, TorchEagerRunner

from .timing import Concurrency, ForkJoin, Span, ThreadFork, Work, compare_concurrent

MiB = 2**20
BRANCHES = 4
#: One figure for every timeline, whatever the number of panels: its size never depends on the machine.
TIMELINE_FIGSIZE = (9.0, 9.0)


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
    return (3, 112, 112) if env.as_scale(scale) is env.Scale.FULL else (3, 32, 32)


def build_multibranch(scale: str = "full", seed: int = 0) -> MultiBranchNet:
    """The network in eval mode with weights and BatchNorm statistics drawn from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultiBranchNet(width=64 if env.as_scale(scale) is env.Scale.FULL else 16)
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
    return onnx_tools.export_pair(build_multibranch(scale), multibranch_input(2, scale), out_dir, f"multibranch_{scale}")


def concat_fan_in(onnx_path: str | Path) -> list[int]:
    """How many tensors each Concat node of the graph joins: the parallel branches it ends."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    return [len(node.input) for node in graph.node if node.op_type == "Concat"]


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
        errors.append(checks.relative_error(runner.output(), reference))
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


#: Cycles the calibration of :func:`spin_kernel` waits, about a millisecond on any recent GPU.
_CALIBRATION_CYCLES = 1_000_000


def spin_kernel(duration_ms: float) -> Work:
    """A piece of work that enqueues one kernel waiting about `duration_ms` on the GPU's clock
    (``torch.cuda._sleep``: one thread spinning, no memory traffic), calibrated on this GPU once."""
    env.require("gpu")
    if duration_ms <= 0:
        raise ValueError(f"duration_ms must be positive, got {duration_ms}")
    return functools.partial(torch.cuda._sleep, max(1, round(duration_ms * _spin_cycles_per_ms())))


@functools.lru_cache(maxsize=None)
def _spin_cycles_per_ms() -> float:
    m = bench.measure(functools.partial(torch.cuda._sleep, _CALIBRATION_CYCLES), name="spin calibration",
                      device="cuda", warmup_ms=20, measure_ms=50, kernel_time=False)
    return _CALIBRATION_CYCLES / m.latency_ms.median


def host_buffer(nbytes: int, *, pinned: bool) -> torch.Tensor:
    """`nbytes` of host memory, pinned (page-locked) or pageable, written once so its pages exist."""
    return torch.ones(nbytes, dtype=torch.uint8, pin_memory=pinned)


def host_to_device_copy(nbytes: int, *, pinned: bool) -> Work:
    """A piece of work that uploads `nbytes` from pinned or pageable host memory to the device."""
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    return functools.partial(dst.copy_, host_buffer(nbytes, pinned=pinned), non_blocking=True)


def copy_bandwidth_study(nbytes: int, *, passes: int = bench.PASSES,
                         **bench_kwargs) -> tuple[list[dict], dict[str, bench.Comparison]]:
    """Host-to-device and device-to-host copy bandwidth from pageable and from pinned host memory.

    Each copy is ``copy_(..., non_blocking=True)`` timed by events on a created stream; bandwidth =
    bytes / median time. Returns one row per (direction, memory) and, per direction, pinned against
    pageable as a :class:`bench.Comparison` (speedup = pageable time / pinned time, on event time:
    the copy is the device work being compared).
    """
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    hosts = {"pageable": host_buffer(nbytes, pinned=False), "pinned": host_buffer(nbytes, pinned=True)}
    rows, comparisons = [], {}
    for direction in ("host to device", "device to host"):
        runs: dict[str, list[bench.Measurement]] = {memory: [] for memory in hosts}
        for p in range(passes):   # judged on event time: kernel time in the first pass, for the regime
            for memory, host in hosts.items():
                copy = (functools.partial(device.copy_, host, non_blocking=True) if direction == "host to device"
                        else functools.partial(host.copy_, device, non_blocking=True))
                runs[memory].append(bench.measure(copy, name=f"{direction}, {memory}", device="cuda",
                                                  kernel_time=bench.kernel_time_in(p), **bench_kwargs))
        for memory, measured in runs.items():
            median_ms = bench.median_latency_ms(measured)
            rows.append({"direction": direction, "host memory": memory, "MiB": nbytes / MiB, "median_ms": median_ms,
                         "GB_per_s": nbytes / (median_ms / 1e3) / 1e9,
                         "spread_pct": bench.spread_pct(m.latency_ms.median for m in measured),
                         **bench.kernel_fields(measured)})
        comparisons[direction] = bench.compare(runs["pageable"], runs["pinned"])
    return rows, comparisons


# -- independent models: one after another, then side by side -----------------------------------

def on_streams(runners: Sequence[Runner], *, model: str, batch: int, backend: str, tag: str,
               **bench_kwargs) -> Concurrency:
    """The runners' inferences one after another on one stream, then each on its own stream (GPU)."""
    k = len(runners)
    works, labels = [r.run for r in runners], [f"{model} #{i}" for i in range(k)]
    return compare_concurrent(ForkJoin(works, 1, labels=labels), ForkJoin(works, k, labels=labels),
                              experiment=f"{k} x {model} batch {batch}, {backend}", tag=tag,
                              one_label="1 stream", concurrent_label=f"{k} streams", items=k * batch, **bench_kwargs)


def in_threads(runners: Sequence[Runner], *, model: str, batch: int, **bench_kwargs) -> Concurrency:
    """The CPU counterpart of :func:`on_streams`: one after another in one thread, then each in its own
    thread, with one intra-op thread per model on both sides (one core against `len(runners)`)."""
    k = len(runners)
    works, labels = [r.run for r in runners], [f"{model} #{i}" for i in range(k)]
    with ThreadFork(works, 1, intra_op_threads=1, labels=labels) as one_thread, \
            ThreadFork(works, k, intra_op_threads=1, labels=labels) as threads:
        return compare_concurrent(one_thread, threads, experiment=f"{k} x {model} batch {batch}, PyTorch eager (CPU)",
                                  tag=f"{k}x threads", one_label="1 thread", concurrent_label=f"{k} threads",
                                  items=k * batch, **bench_kwargs)


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
