"""Lab 03 (CUDA graphs): a launch-bound MLP, graphs of it, and what a graph costs and freezes.

Introduced in lab 03 (CUDA graphs). A CUDA graph records the kernels one forward launches and
replays all of them with a single launch, so it pays where launching costs more than running: a
deep, narrow model at a small batch. This module holds

- the lab's model, :class:`MLP` (20 x Linear+ReLU), and the same forward written to allocate
  nothing, :class:`StaticMLP` (preallocated buffers, ``torch.addmm(..., out=)`` and ``relu_``): what
  a stream capture with cuda-python needs, since PyTorch's allocator does not know it is capturing;
- the captures: ``torch.cuda.CUDAGraph`` (:func:`capture_torch_graph`), cuda-python stream capture
  through :class:`common.trt.graphs.CudaGraph` (:func:`capture_static`, the mechanism TensorRT's
  path uses) and ``torch.compile(mode="reduce-overhead")`` (:func:`compile_reduce_overhead`);
- what a graph freezes, shown with values (:func:`stale_input_demo`, :func:`frozen_shape_demo`,
  :func:`warmup_rule_rows`), and one graph per input shape (:class:`ShapeGraphs`);
- the measurements: each configuration twice (:func:`measure_passes`), a width sweep, and the
  per-layer overhead derived from them, on a GPU from eager minus graph, on a CPU from a two-point
  model of time against FLOPs (:func:`cpu_overhead_model`);
- the TensorRT path, run only where TensorRT is installed (:func:`tensorrt_study`).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from . import bench, env
from .batching import tolerance
from .onnx import max_relative_error
from .trt.graphs import CudaError, CudaGraph, GraphCache

#: Depth of every model in the lab: 20 x (Linear, ReLU).
DEPTH = 20

EAGER = "PyTorch eager"
STATIC_EAGER = "PyTorch eager, allocation-free enqueue"
TORCH_GRAPH = "torch.cuda.CUDAGraph replay"
CUDA_PYTHON_GRAPH = "cuda-python graph replay"
COMPILE = "torch.compile reduce-overhead"

_PRECISIONS = {torch.float16: "fp16", torch.float32: "fp32", torch.bfloat16: "bf16"}


def backend_label(kind: str, device: str, dtype: torch.dtype) -> str:
    """What produced a number: e.g. 'torch.cuda.CUDAGraph replay (cuda, fp16)'."""
    return f"{kind} ({device}, {_PRECISIONS[dtype]})"


# -- the model -----------------------------------------------------------------------------------

class MLP(nn.Module):
    """`depth` layers of Linear(width -> width) followed by ReLU: many small kernels (lab 03)."""

    def __init__(self, width: int, depth: int = DEPTH, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        self.layers = nn.ModuleList(nn.Linear(width, width, device=device, dtype=dtype) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x

    @property
    def ops_per_forward(self) -> int:
        """Operators one forward dispatches: per layer a GEMM with its bias (addmm) and a ReLU."""
        return 2 * self.depth

    def flops_per_layer(self, batch: int) -> int:
        """Multiply-adds of one layer's GEMM, counted as 2 FLOPs each."""
        return 2 * batch * self.width * self.width


def build_mlp(width: int, depth: int = DEPTH, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
              seed: int = 0) -> MLP:
    """An inference-only MLP with seeded He-initialised weights, built directly on `device`.

    He initialisation (std sqrt(2/width)) keeps the signal's scale through 20 ReLU layers, so the
    output depends on the input (the lab's demonstrations compare outputs of different inputs) and
    FP16 neither underflows nor overflows.
    """
    model = MLP(width, depth, device=device, dtype=dtype)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.normal_(0.0, math.sqrt(2.0 / width), generator=generator)
            layer.bias.normal_(0.0, 0.01, generator=generator)
    return model.eval().requires_grad_(False)


def example_input(batch: int, width: int, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  seed: int = 1) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(batch, width, generator=generator, device=device, dtype=dtype)


class StaticMLP:
    """The MLP's forward over preallocated buffers: an enqueue that allocates nothing (lab 03).

    PyTorch's caching allocator does not know that cuda-python is capturing: a tensor allocated
    inside the capture comes from its ordinary pool and goes back there afterwards, so the graph
    would keep writing into memory that PyTorch hands to other tensors. (``torch.cuda.graph`` gives
    a capture a private pool for exactly this reason.) So everything this forward writes exists
    beforehand: the input buffer, and two activation buffers that the layers write in turn.
    """

    def __init__(self, model: MLP, max_batch: int) -> None:
        weight = model.layers[0].weight
        self.depth, self.width, self.max_batch = model.depth, model.width, max_batch
        self.weights_t = [layer.weight.t() for layer in model.layers]  # views; cuBLAS reads them transposed
        self.biases = [layer.bias for layer in model.layers]
        make = functools.partial(torch.zeros, max_batch, model.width, device=weight.device, dtype=weight.dtype)
        self.input = make()
        self._activations = (make(), make())

    def enqueue(self, batch: int) -> torch.Tensor:
        """Launch one forward of the first `batch` rows of :attr:`input`; returns the output view."""
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch {batch} is outside 1..{self.max_batch}, the rows these buffers hold")
        x = self.input[:batch]
        for i, (weight_t, bias) in enumerate(zip(self.weights_t, self.biases)):
            y = self._activations[i % 2][:batch]
            torch.addmm(bias, x, weight_t, out=y)
            y.relu_()
            x = y
        return x

    def output(self, batch: int | None = None) -> torch.Tensor:
        """The buffer the last layer writes (its first `batch` rows)."""
        return self._activations[(self.depth - 1) % 2][: batch or self.max_batch]

    @property
    def buffer_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.input, *self._activations))


# -- running and checking a configuration --------------------------------------------------------

@dataclass
class Timed:
    """One way to run a forward: `fn` enqueues it on `stream` (a created ``torch.cuda.Stream``;
    None on a CPU) and returns the output tensor, or None when `output` says where it is."""

    fn: Callable[[], torch.Tensor | None]
    stream: Any = None
    output: Callable[[], torch.Tensor] | None = None

    def run_once(self) -> torch.Tensor:
        """Run once and return a finished copy of the output."""
        if self.stream is None:
            out = self.fn()
            return (out if self.output is None else self.output()).clone()
        self.stream.wait_stream(torch.cuda.current_stream())  # inputs may have been written there
        with torch.cuda.stream(self.stream):
            out = self.fn()
            out = (out if self.output is None else self.output()).clone()
        self.stream.synchronize()
        return out


def _matches(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """Within the tolerance of `ref`'s precision (FP16 2e-2, FP32 1e-4 relative)."""
    return max_relative_error(out.float(), ref.float()) <= tolerance(_PRECISIONS[ref.dtype])


def verify(timed: Mapping[str, Timed], reference: torch.Tensor) -> dict[str, tuple[float, bool]]:
    """Each configuration's (relative error, bitwise equal) against `reference`."""
    results = {}
    for label, config in timed.items():
        out = config.run_once()
        results[label] = (max_relative_error(out.float(), reference.float()), bool(torch.equal(out, reference)))
    return results


def measure_passes(timed: Mapping[str, Timed], *, device: str, batch_size: int, passes: int = 2,
                   warmup_ms: float = 50.0, measure_ms: float = 200.0) -> dict[str, list[bench.Measurement]]:
    """Every configuration measured `passes` times with the course harness.

    The passes are interleaved (all configurations, then all again), so drift of clocks or host
    load between passes shows up as run-to-run spread instead of as a difference between them.
    """
    configs = {label: {"fn": config.fn, "name": label, "backend": label, "stream": config.stream}
               for label, config in timed.items()}
    return bench.measure_interleaved(configs, passes=passes, batch_size=batch_size, device=device,
                                     warmup_ms=warmup_ms, measure_ms=measure_ms)


def comparison_rows(runs: Mapping[str, Sequence[bench.Measurement]], baseline: str, *, depth: int = DEPTH) -> list[dict]:
    """One row per configuration: median latency, per layer, spread, and speedup over `baseline`."""
    rows = []
    for label, measurements in runs.items():
        cmp = bench.compare(runs[baseline], measurements)
        rows.append({
            "backend": label,
            "latency_ms": cmp.median_b_ms,
            "per_layer_us": cmp.median_b_ms * 1e3 / depth,
            "spread_pct": cmp.spread_b_pct,
            "throughput_per_s": measurements[0].batch_size / (cmp.median_b_ms / 1e3),
            "speedup": cmp.speedup,
            "significant": label != baseline and cmp.significant,
            "verdict": "baseline" if label == baseline else cmp.verdict(),
        })
    return rows


def launch_overhead_us(eager_ms: float, graph_ms: float, kernels: int) -> float:
    """What launching from the host adds per kernel: (eager - graph) / kernels, in microseconds."""
    if kernels <= 0:
        raise ValueError(f"kernels must be positive, got {kernels}")
    return (eager_ms - graph_ms) * 1e3 / kernels


# -- counting kernels ----------------------------------------------------------------------------

def graph_node_types(graph: CudaGraph) -> dict[str, int]:
    """How many nodes of each type a captured cuda-python graph holds (kernels, memsets, ...)."""
    from cuda.bindings import runtime as cudart  # type: ignore[import-untyped,import-not-found,unused-ignore]

    def check(result: tuple, what: str) -> tuple:
        if int(result[0]) != 0:
            raise CudaError(f"{what} failed: {getattr(result[0], 'name', result[0])}")
        return result[1:]

    _, count = check(cudart.cudaGraphGetNodes(graph.graph, 0), "cudaGraphGetNodes")
    nodes, count = check(cudart.cudaGraphGetNodes(graph.graph, count), "cudaGraphGetNodes")
    types: dict[str, int] = {}
    for node in nodes[:count]:
        (kind,) = check(cudart.cudaGraphNodeGetType(node), "cudaGraphNodeGetType")
        name = getattr(kind, "name", str(kind)).removeprefix("cudaGraphNodeType").lower()
        types[name] = types.get(name, 0) + 1
    return types


# -- capturing -----------------------------------------------------------------------------------

@dataclass
class TorchGraph:
    """A ``torch.cuda.CUDAGraph`` of one forward, with its static input and output (lab 03)."""

    graph: "torch.cuda.CUDAGraph"
    static_input: torch.Tensor
    static_output: torch.Tensor
    stream: "torch.cuda.Stream"
    warmup_seconds: float
    capture_seconds: float
    pool_bytes: int   # reserved by the graph's private memory pool: its activations and output

    def replay(self) -> torch.Tensor:
        with torch.cuda.stream(self.stream):
            self.graph.replay()
        return self.static_output

    def close(self) -> None:
        """Free the graph and its pool (GraphCache.invalidate calls this)."""
        self.graph.reset()


def capture_torch_graph(model: nn.Module, example: torch.Tensor, stream: "torch.cuda.Stream",
                        warmup_runs: int = 3) -> TorchGraph:
    """Warm up on `stream`, then capture one forward of `model` on a copy of `example`.

    The warm-up runs keep one-time work (cuBLAS workspace, the allocator's first blocks for this
    stream) out of the graph. `pool_bytes` is the growth of reserved memory across the capture,
    measured after releasing cached blocks so that it counts the graph's own pool.
    """
    static_input = example.clone()
    stream.wait_stream(torch.cuda.current_stream())
    t0 = time.perf_counter()
    with torch.cuda.stream(stream):
        for _ in range(warmup_runs):
            model(static_input)
    stream.synchronize()
    warmup_seconds = time.perf_counter() - t0
    torch.cuda.empty_cache()
    reserved_before = torch.cuda.memory_reserved()
    graph = torch.cuda.CUDAGraph()
    t0 = time.perf_counter()
    with torch.cuda.graph(graph, stream=stream):
        static_output = model(static_input)
    capture_seconds = time.perf_counter() - t0
    return TorchGraph(graph, static_input, static_output, stream, warmup_seconds, capture_seconds,
                      torch.cuda.memory_reserved() - reserved_before)


def capture_static(static: StaticMLP, batch: int, stream: "torch.cuda.Stream") -> CudaGraph:
    """Capture `static.enqueue(batch)` on `stream` with cuda-python (common.trt.graphs.CudaGraph,
    warm-up enqueue first): how the TensorRT path captures ``execute_async_v3``, here recording
    PyTorch kernels."""
    def enqueue() -> None:
        with torch.cuda.stream(stream):
            static.enqueue(batch)

    stream.wait_stream(torch.cuda.current_stream())  # weights and input were written on that stream
    return CudaGraph.capture(stream.cuda_stream, enqueue, warmup=True)


def compile_reduce_overhead(model: nn.Module, example: torch.Tensor, stream: "torch.cuda.Stream",
                            runs: int = 3) -> tuple[Callable[[], torch.Tensor], float]:
    """``torch.compile(mode="reduce-overhead")``: the callable, and the seconds its first `runs`
    calls took (compilation, a warm-up run, and the recording of its CUDA graph)."""
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)

    def run() -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # each call is a new inference: outputs may be reused
        return compiled(example)

    stream.wait_stream(torch.cuda.current_stream())
    t0 = time.perf_counter()
    with torch.cuda.stream(stream):
        for _ in range(runs):
            run()
    stream.synchronize()
    return run, time.perf_counter() - t0


# -- the capture rules, with values --------------------------------------------------------------

def default_stream_refusal() -> str:
    """What common.trt.graphs says when asked to capture the legacy default stream (handle 0)."""
    try:
        CudaGraph.capture(0, lambda: None)
    except ValueError as err:
        return f"{type(err).__name__}: {err}"
    raise AssertionError("CudaGraph.capture accepted the legacy default stream")


def legacy_stream_capture_status() -> str:
    """The CUDA error of ``cudaStreamBeginCapture`` on the legacy default stream itself."""
    env.require("cuda-bindings")
    from cuda.bindings import runtime as cudart  # type: ignore[import-untyped,import-not-found,unused-ignore]

    torch.cuda.synchronize()
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    (err,) = cudart.cudaStreamBeginCapture(0, mode)
    if int(err) == 0:  # not expected: end the capture so the stream works again
        cudart.cudaStreamEndCapture(0)
    cudart.cudaGetLastError()
    return str(getattr(err, "name", err))


class LazyScratch:
    """Scratch memory that an enqueue allocates with a plain ``cudaMalloc`` on its first call and
    clears on every call: the one-time initialisation libraries do on first use (TensorRT does on
    its first enqueue), which the warm-up enqueue keeps out of a capture."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.pointer: int | None = None

    def enqueue(self, stream_handle: int) -> None:
        from cuda.bindings import runtime as cudart  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if self.pointer is None:
            err, pointer = cudart.cudaMalloc(self.nbytes)
            if int(err) != 0:
                raise CudaError(f"cudaMalloc of {self.nbytes} bytes of scratch failed: {getattr(err, 'name', err)}")
            self.pointer = int(pointer)
        (err,) = cudart.cudaMemsetAsync(self.pointer, 0, self.nbytes, stream_handle)
        if int(err) != 0:
            raise CudaError(f"cudaMemsetAsync of the scratch failed: {getattr(err, 'name', err)}")

    def free(self) -> None:
        from cuda.bindings import runtime as cudart  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if self.pointer is not None:
            cudart.cudaFree(self.pointer)
            self.pointer = None


def _capture_attempt(model: MLP, x: torch.Tensor, *, warmup: bool, lazy_scratch_bytes: int) -> dict:
    """Capture the allocation-free enqueue (plus lazy scratch, if any) on a new stream; report how it went."""
    batch = x.shape[0]
    static = StaticMLP(model, batch)
    static.input.copy_(x)
    stream = torch.cuda.Stream()   # new: PyTorch has not made cuBLAS's workspace for it yet
    scratch = LazyScratch(lazy_scratch_bytes) if lazy_scratch_bytes else None

    def enqueue() -> None:
        if scratch is not None:
            scratch.enqueue(stream.cuda_stream)
        with torch.cuda.stream(stream):
            static.enqueue(batch)

    what = "PyTorch kernels" + (f" + {lazy_scratch_bytes >> 20} MiB scratch cudaMalloc'ed on first call" if scratch else "")
    row: dict[str, Any] = {"enqueue": what, "warm_up": "yes" if warmup else "no"}
    torch.cuda.synchronize()
    reserved_before = torch.cuda.memory_reserved()
    try:
        graph = CudaGraph.capture(stream.cuda_stream, enqueue, warmup=warmup)
    except RuntimeError as err:  # torch.AcceleratorError, CudaError and GraphCaptureError all are
        row.update(outcome=f"{type(err).__name__}: {str(err).strip().splitlines()[0]}", replay_matches_eager="-")
    else:
        with graph:
            nodes = graph_node_types(graph)
            graph.replay()
            stream.synchronize()
            row.update(outcome=f"captured: {nodes}", replay_matches_eager=_matches(static.output(batch), model(x)))
    finally:
        if scratch is not None:
            scratch.free()
    row["pytorch_reserved_mib"] = (torch.cuda.memory_reserved() - reserved_before) / 2**20
    return row


def warmup_rule_rows(model: MLP, x: torch.Tensor, lazy_scratch_bytes: int = 1 << 20) -> list[dict]:
    """Capture with and without the warm-up enqueue, each on a new stream: PyTorch's kernels alone
    (their one lazy step, cuBLAS's workspace for a new stream, is allocated by PyTorch, which
    switches the capture to relaxed mode for it), then with a library's lazy ``cudaMalloc``."""
    return [_capture_attempt(model, x, warmup=warmup, lazy_scratch_bytes=scratch)
            for scratch in (0, lazy_scratch_bytes) for warmup in (False, True)]


def _replay_cleared(graph: CudaGraph, static: StaticMLP, batch: int, stream: "torch.cuda.Stream") -> torch.Tensor:
    """Fill the output buffer with NaN, replay, wait: whatever the output holds now, the replay wrote."""
    with torch.cuda.stream(stream):
        static.output(static.max_batch).fill_(float("nan"))
    graph.replay()
    stream.synchronize()
    return static.output(batch)


def stale_input_demo(model: MLP, batch: int, stream: "torch.cuda.Stream") -> dict[str, bool]:
    """A graph reads the input address it was captured with, whatever tensor Python now holds.

    Captures on input A, then points the enqueue at a new tensor B (as code that builds a new input
    per request does) and replays; then shows the two fixes: copy B into the captured buffer, or
    recapture.
    """
    width, dtype, device = model.width, model.layers[0].weight.dtype, str(model.layers[0].weight.device)
    first = example_input(batch, width, device=device, dtype=dtype, seed=1)
    second = example_input(batch, width, device=device, dtype=dtype, seed=2)
    expected_first, expected_second = model(first), model(second)
    static = StaticMLP(model, batch)
    static.input.copy_(first)
    captured_input = static.input   # kept alive: freed, its memory could be reused, and the replay would read that
    results = {}
    with capture_static(static, batch, stream) as graph:
        static.input = second.clone()   # a new tensor at a new address
        out = _replay_cleared(graph, static, batch, stream)
        results["replay after reallocating the input computes the NEW input"] = _matches(out, expected_second)
        results["replay after reallocating the input computes the OLD input"] = _matches(out, expected_first)
        with torch.cuda.stream(stream):
            captured_input.copy_(second)   # fix 1: write new values into the captured buffer
        results["fix 1, copy into the captured buffer: replay computes the new input"] = _matches(
            _replay_cleared(graph, static, batch, stream), expected_second)
    with capture_static(static, batch, stream) as recaptured:  # fix 2: capture again on the new address
        with torch.cuda.stream(stream):
            static.input.copy_(first)
        results["fix 2, recapture on the new tensor: replay follows the new tensor"] = _matches(
            _replay_cleared(recaptured, static, batch, stream), expected_first)
    return results


def frozen_shape_demo(model: MLP, captured_batch: int, larger_batch: int, stream: "torch.cuda.Stream") -> dict[str, int | bool]:
    """A graph captured for `captured_batch` rows computes exactly those rows, whatever the buffer
    holds: its kernels were launched with that shape. A larger batch needs its own graph."""
    dtype, device = model.layers[0].weight.dtype, str(model.layers[0].weight.device)
    x = example_input(larger_batch, model.width, device=device, dtype=dtype)
    expected = model(x)
    static = StaticMLP(model, larger_batch)
    static.input.copy_(x)

    def rows_computed(graph: CudaGraph) -> tuple[int, bool]:
        out = _replay_cleared(graph, static, larger_batch, stream)   # rows it does not write stay NaN
        done = ~torch.isnan(out).any(dim=1)
        return int(done.sum()), _matches(out[done], expected[done])

    with capture_static(static, captured_batch, stream) as small:
        small_rows, small_ok = rows_computed(small)
    with capture_static(static, larger_batch, stream) as large:
        large_rows, large_ok = rows_computed(large)
    return {"rows in the input": larger_batch,
            f"rows the batch-{captured_batch} graph computes": small_rows,
            f"rows the batch-{larger_batch} graph computes": large_rows,
            "computed rows match eager": small_ok and large_ok}


# -- one graph per shape -------------------------------------------------------------------------

class ShapeGraphs:
    """One ``torch.cuda.CUDAGraph`` per input shape, captured on first use (lab 03).

    A :class:`common.trt.graphs.GraphCache` keyed by the request's shape: a shape seen before
    replays its graph; a new one pays a capture (seconds) and keeps a memory pool for as long as
    the graph lives.
    """

    def __init__(self, model: nn.Module, stream: "torch.cuda.Stream") -> None:
        self.model, self.stream = model, stream
        self._shape: tuple[int, ...] = ()
        self.graphs: dict[Hashable, TorchGraph] = {}
        self.cache: GraphCache[TorchGraph] = GraphCache(lambda: self._shape, self._capture)

    def _capture(self, key: Hashable) -> TorchGraph:
        weight = next(self.model.parameters())
        example = torch.zeros(key, device=weight.device, dtype=weight.dtype)
        self.graphs[key] = capture_torch_graph(self.model, example, self.stream)
        return self.graphs[key]

    def serve(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Run `x` through its shape's graph; returns (a copy of the output, captured now?)."""
        self._shape = tuple(x.shape)
        graph, captured_now = self.cache.get_or_capture()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            graph.static_input.copy_(x)
            out = graph.replay().clone()
        self.stream.synchronize()
        return out, captured_now

    def rows(self) -> list[dict]:
        """Per captured shape: captures, seconds (warm-up + capture) and the memory it holds."""
        return [{"shape": str(key), "captures": self.cache.captures[key],
                 "capture_s": self.cache.capture_seconds[key],
                 "of_which_warmup_s": graph.warmup_seconds,
                 "pool_mib": graph.pool_bytes / 2**20,
                 "io_kib": (graph.static_input.nbytes + graph.static_output.nbytes) / 2**10}
                for key, graph in self.graphs.items()]


# -- sweeps and the overhead they show -----------------------------------------------------------

def width_sweep(widths: Sequence[int], batch: int, *, device: str, dtype: torch.dtype, with_graph: bool,
                depth: int = DEPTH, passes: int = 2, warmup_ms: float = 30.0, measure_ms: float = 120.0,
                progress: bool = True) -> list[dict]:
    """Per width: latency and time per layer of eager PyTorch and, on a GPU, of its CUDA graph.

    Each graph's output is checked against eager before anything is timed. Every point is
    measured in `passes` passes over the whole sweep; rows carry the run-to-run spread.
    """
    eager_label = backend_label(EAGER, device, dtype)
    graph_label = backend_label(TORCH_GRAPH, device, dtype)
    configs: dict[tuple[int, str], Timed] = {}
    flops: dict[int, int] = {}
    for width in widths:
        model = build_mlp(width, depth, device=device, dtype=dtype)
        x = example_input(batch, width, device=device, dtype=dtype)
        flops[width] = model.flops_per_layer(batch)
        stream = torch.cuda.Stream() if device == "cuda" else None
        configs[(width, eager_label)] = Timed(functools.partial(model, x), stream)
        if with_graph:
            graph = capture_torch_graph(model, x, torch.cuda.Stream())
            configs[(width, graph_label)] = Timed(graph.replay, graph.stream)
            reference = configs[(width, eager_label)].run_once()
            error = max_relative_error(configs[(width, graph_label)].run_once().float(), reference.float())
            if not error <= tolerance(_PRECISIONS[dtype]):
                raise AssertionError(f"width {width}: the graph's output differs from eager (relative error "
                                     f"{error:.3g}): do not time it")
    results: dict[tuple[int, str], list[float]] = {key: [] for key in configs}
    steps = [(p, key) for p in range(passes) for key in configs]
    for _, key in tqdm(steps, desc="width sweep", disable=not progress, mininterval=2.0):
        config = configs[key]
        m = bench.measure(config.fn, name=f"width {key[0]}", backend=key[1], batch_size=batch, device=device,
                          stream=config.stream, warmup_ms=warmup_ms, measure_ms=measure_ms)
        results[key].append(m.latency_ms.median)
    rows = []
    for (width, label), medians in results.items():
        median_ms = statistics.median(medians)
        rows.append({"width": width, "backend": label, "batch": batch, "latency_ms": median_ms,
                     "per_layer_us": median_ms * 1e3 / depth, "gflop_per_layer": flops[width] / 1e9,
                     "spread_pct": bench.spread_pct(medians) if len(medians) > 1 else float("nan"),
                     "pass_medians_ms": [round(m, 5) for m in medians]})
    return rows


def graph_overhead_rows(rows: Sequence[dict], eager: str, graph: str) -> list[dict]:
    """GPU: per width, what eager launching adds per layer (eager - graph) and its share of eager."""
    by_width = {(r["width"], r["backend"]): r for r in rows}
    out = []
    for width in sorted({r["width"] for r in rows}):
        e, g = by_width[(width, eager)]["per_layer_us"], by_width[(width, graph)]["per_layer_us"]
        out.append({"width": width, "eager_us_per_layer": e, "graph_us_per_layer": g,
                    "overhead_us_per_layer": e - g, "overhead_share_pct": (e - g) / e * 100})
    return out


@dataclass
class CpuOverheadModel:
    """Per-layer time on a CPU as t = overhead + FLOPs / rate, solved from the smallest and the
    largest width of a sweep; the widths between are predictions to compare with measurements."""

    overhead_us_per_layer: float
    gflops: float
    rows: list[dict]


def cpu_overhead_model(rows: Sequence[dict], backend: str) -> CpuOverheadModel:
    """Fit t = overhead + flops / rate through the smallest and largest width of `backend`'s rows."""
    points = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["width"])
    if len(points) < 2:
        raise ValueError(f"need at least two widths of {backend!r} to separate overhead from compute")
    small, large = points[0], points[-1]
    f_small, f_large = small["gflop_per_layer"] * 1e3, large["gflop_per_layer"] * 1e3   # MFLOP
    t_small, t_large = small["per_layer_us"], large["per_layer_us"]
    if t_large <= t_small:
        raise ValueError(f"the widest layer ({large['width']}) is no slower than the narrowest "
                         f"({small['width']}): add wider points so compute shows")
    mflop_per_us = (f_large - f_small) / (t_large - t_small)
    overhead_us = t_small - f_small / mflop_per_us
    table = []
    for r in points:
        compute_us = r["gflop_per_layer"] * 1e3 / mflop_per_us
        table.append({"width": r["width"], "measured_us_per_layer": r["per_layer_us"],
                      "model_us_per_layer": overhead_us + compute_us, "compute_us": compute_us,
                      "overhead_share_pct": overhead_us / r["per_layer_us"] * 100,
                      "spread_pct": r["spread_pct"]})
    return CpuOverheadModel(overhead_us, mflop_per_us * 1e3, table)   # MFLOP/us = 1e3 GFLOP/s


# -- TensorRT ------------------------------------------------------------------------------------

def tensorrt_study(model: MLP, x: torch.Tensor, onnx_path: Path, *, other_batches: Sequence[int]) -> dict:
    """The TensorRT path: an engine built from the MLP's FP16 ONNX, enqueue against graph replay,
    one context (and graph) per shape, and what drops a context's graph.

    Needs TensorRT and a GPU. The engine has two identical profiles (batch 1..max), so that a
    profile change can be shown on its own. Returns plain values for the notebook to print.
    """
    from . import trt as trt_tools

    env.require("tensorrt")
    batch, width = x.shape
    batches = [batch, *other_batches]
    profile = trt_tools.batch_profile("input", (width,), 1, batch, max(batches))
    build = trt_tools.build_engine(onnx_path, trt_tools.BuildConfig(profiles=(profile, profile)))
    runner = trt_tools.EngineRunner(build.engine, num_contexts=len(batches))
    backend = f"TensorRT {trt_tools.version()}"
    result: dict[str, Any] = {"backend": backend, "build_s": build.build_seconds}
    try:
        reference = model(x)
        out = runner.run({"input": x}, 0)["output"]
        result["enqueue_matches"] = _matches(out, reference)
        graph = runner.capture_graph(0)
        stream = runner.stream(0)
        with torch.cuda.stream(stream):
            runner.outputs(0)["output"].zero_()
        graph.replay()
        runner.synchronize(0)
        result["graph_matches"] = _matches(runner.outputs(0)["output"], reference)
        if not (result["enqueue_matches"] and result["graph_matches"]):
            raise AssertionError(f"{backend} disagrees with PyTorch eager: {result}; do not time it")
        result["runs"] = measure_passes(
            {f"{backend} execute_async_v3": Timed(lambda: runner.enqueue(0), stream),
             f"{backend} CUDA graph replay": Timed(graph.replay, stream)},
            device="cuda", batch_size=batch)
        per_shape = []
        for i, b in enumerate(batches[1:], start=1):   # context i serves batch b with its own graph
            xb = example_input(b, width, device="cuda", dtype=x.dtype, seed=3)
            runner.set_input_shapes({"input": (b, width)}, i)
            shape_graph = runner.capture_graph(i)
            with torch.cuda.stream(runner.stream(i)):
                runner.inputs(i)["input"].copy_(xb)
            shape_graph.replay()
            runner.synchronize(i)
            per_shape.append({"batch": b, "context": i,
                              "capture_s": sum(runner.graphs(i).capture_seconds.values()),
                              "context_mib": runner.device_memory_bytes / 2**20,
                              "io_kib": runner.io_buffer_bytes(i) / 2**10,
                              "matches": _matches(runner.outputs(i)["output"], model(xb))})
        result["per_shape"] = per_shape
        runner.set_input_shapes({"input": (batches[1], width)}, 0)
        result["shape change drops the graph"] = len(runner.graphs(0)) == 0
        result["next enqueue_graph recaptures (shape)"] = runner.enqueue_graph(0)
        runner.set_optimization_profile(0, 1)
        result["profile change drops the graph"] = len(runner.graphs(0)) == 0
        runner.set_input_shapes({"input": (batch, width)}, 0)
        result["next enqueue_graph recaptures (profile)"] = runner.enqueue_graph(0)
        runner.synchronize(0)
    finally:
        runner.close()
    return result
