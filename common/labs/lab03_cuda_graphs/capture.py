"""Lab 03 (CUDA graphs): capturing a forward, and the rules of capturing shown with values.

- the captures: ``torch.cuda.CUDAGraph`` (:func:`capture_torch_graph`), cuda-python stream capture
  through :class:`common.trt.graphs.CudaGraph` (:func:`capture_static`, the mechanism TensorRT's
  path uses) and ``torch.compile(mode="reduce-overhead")`` (:func:`compile_reduce_overhead`), and
  what a captured graph holds (:func:`graph_node_types`);
- what a graph freezes, shown with values (:func:`stale_input_demo`, :func:`frozen_shape_demo`,
  :func:`warmup_rule_rows`, :func:`default_stream_refusal`), and one graph per input shape
  (:class:`ShapeGraphs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import torch
from torch import nn

from common import env
from common.trt.graphs import CudaError, CudaGraph, GraphCache

from .experiments import MLP, StaticMLP, example_input, matches


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
            row.update(outcome=f"captured: {nodes}", replay_matches_eager=matches(static.output(batch), model(x)))
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
        results["replay after reallocating the input computes the NEW input"] = matches(out, expected_second)
        results["replay after reallocating the input computes the OLD input"] = matches(out, expected_first)
        with torch.cuda.stream(stream):
            captured_input.copy_(second)   # fix 1: write new values into the captured buffer
        results["fix 1, copy into the captured buffer: replay computes the new input"] = matches(
            _replay_cleared(graph, static, batch, stream), expected_second)
    with capture_static(static, batch, stream) as recaptured:  # fix 2: capture again on the new address
        with torch.cuda.stream(stream):
            static.input.copy_(first)
        results["fix 2, recapture on the new tensor: replay follows the new tensor"] = matches(
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
        return int(done.sum()), matches(out[done], expected[done])

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

