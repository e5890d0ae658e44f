"""CUDA-graph capture and replay with cuda-python, and a cache of graphs by key.

Introduced in lab 03 (CUDA graphs). Nothing here imports TensorRT: :class:`CudaGraph` captures
whatever `enqueue` launches on a stream (a TensorRT ``execute_async_v3`` or PyTorch kernels), which
is how it is tested on a GPU without TensorRT. The rules it enforces come from trtexec:

- warm up first: one enqueue, then synchronize, *before* capturing, so that one-time lazy work
  (TensorRT initializes resources on its first enqueue) stays out of the graph;
- never capture the legacy default stream (handle 0), which cannot be captured;
- if the enqueue fails inside the capture, end the capture, clear CUDA's error and tell the user
  to run without graphs: the engine contains work that cannot be captured.

A graph freezes the shapes, addresses and context state it was captured with; :class:`GraphCache`
holds one graph per key and is invalidated when any of those change.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generic, Hashable, TypeVar

from common import env

_LEGACY_DEFAULT_STREAMS = (0, 1)  # NULL and cudaStreamLegacy


class CudaError(RuntimeError):
    """A CUDA runtime call returned an error code."""


class GraphCaptureError(RuntimeError):
    """The work could not be captured into a CUDA graph; run it without graphs."""


def _cudart() -> Any:
    env.require("cuda-bindings")
    from cuda.bindings import runtime as cudart  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return cudart


def _check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack a cuda-bindings result tuple ``(err, *values)``; raise :class:`CudaError` on failure.

    Returns None, the single value, or a tuple of values.
    """
    if not isinstance(result, tuple) or not result:
        raise TypeError(f"{what}: expected a (cudaError_t, ...) tuple from cuda-bindings, got {result!r}")
    err, values = result[0], result[1:]
    if int(err) != 0:  # cudaSuccess
        raise CudaError(f"{what} failed: {getattr(err, 'name', err)} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _stream_handle(stream: Any) -> int:
    """An int handle from an int, a ``torch.cuda.Stream`` (``.cuda_stream``) or a ``cudaStream_t``."""
    handle = getattr(stream, "cuda_stream", stream)
    return int(handle)


class CudaGraph:
    """One instantiated CUDA graph and the stream it replays on (lab 03, CUDA graphs)."""

    def __init__(self, graph: Any, graph_exec: Any, stream_handle: int,
                 capture_seconds: float, warmup_seconds: float) -> None:
        self.graph = graph
        self.graph_exec = graph_exec
        self.stream_handle = stream_handle
        self.capture_seconds = capture_seconds   # begin capture .. instantiated
        self.warmup_seconds = warmup_seconds     # the warm-up enqueue and its synchronize
        self.replays = 0

    @classmethod
    def capture(cls, stream_handle: Any, enqueue: Callable[[], object], *, warmup: bool = True) -> "CudaGraph":
        """Capture what `enqueue` launches on the stream into a graph and instantiate it.

        `stream_handle` is an int (``torch.cuda.Stream().cuda_stream``; a ``torch.cuda.Stream`` itself
        is accepted too); `enqueue` must launch its work on that stream and may return False to say
        it failed (as ``execute_async_v3`` does).
        """
        handle = _stream_handle(stream_handle)
        if handle in _LEGACY_DEFAULT_STREAMS:
            raise ValueError("cannot capture a CUDA graph on the legacy default stream (handle "
                             f"{handle}): create a stream (torch.cuda.Stream()) and enqueue on it")
        cudart = _cudart()
        warmup_seconds = 0.0
        if warmup:
            t0 = time.perf_counter()
            if enqueue() is False:
                raise RuntimeError("the warm-up enqueue before capture failed (returned False)")
            _check(cudart.cudaStreamSynchronize(handle), "cudaStreamSynchronize after warm-up")
            warmup_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _check(cudart.cudaStreamBeginCapture(handle, mode), "cudaStreamBeginCapture")
        try:
            ok = enqueue()
        except BaseException:
            cls._abandon_capture(cudart, handle)
            raise
        if ok is False:
            cls._abandon_capture(cudart, handle)
            raise GraphCaptureError(
                "the enqueue failed while being captured: the engine contains operations that "
                "cannot be captured into a CUDA graph (trtexec falls back the same way). "
                "Run it without CUDA graphs.")
        err, graph = cudart.cudaStreamEndCapture(handle)
        if int(err) != 0:
            cudart.cudaGetLastError()  # clear the sticky-until-read error so later calls work
            raise GraphCaptureError(f"cudaStreamEndCapture failed: {getattr(err, 'name', err)}; something "
                                    "in the captured work synchronized or used another stream. "
                                    "Run it without CUDA graphs.")
        try:
            graph_exec = _check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except CudaError:
            cudart.cudaGraphDestroy(graph)
            raise
        return cls(graph, graph_exec, handle, time.perf_counter() - t0, warmup_seconds)

    @staticmethod
    def _abandon_capture(cudart: Any, handle: int) -> None:
        err, graph = cudart.cudaStreamEndCapture(handle)
        if int(err) == 0 and graph is not None and int(graph) != 0:
            cudart.cudaGraphDestroy(graph)
        cudart.cudaGetLastError()

    def replay(self) -> None:
        """Launch the graph on its stream (asynchronous, like an enqueue)."""
        if self.graph_exec is None:
            raise RuntimeError("this CUDA graph was closed")
        _check(_cudart().cudaGraphLaunch(self.graph_exec, self.stream_handle), "cudaGraphLaunch")
        self.replays += 1

    def close(self) -> None:
        """Destroy the executable graph and the graph; safe to call twice."""
        if self.graph_exec is None:
            return
        cudart = _cudart()
        _check(cudart.cudaGraphExecDestroy(self.graph_exec), "cudaGraphExecDestroy")
        _check(cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
        self.graph_exec = self.graph = None

    def __enter__(self) -> "CudaGraph":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


G = TypeVar("G")


class GraphCache(Generic[G]):
    """One captured graph per key, captured on first use (lab 03: one graph per input shape).

    ``make_key()`` describes the current state (e.g. input shapes, addresses, profile);
    ``capture_fn(key)`` captures a graph for it. Capture counts and seconds are kept per key across
    :meth:`invalidate`, so a lab can show how often it recaptured and what that cost.
    """

    def __init__(self, make_key: Callable[[], Hashable], capture_fn: Callable[[Hashable], G]) -> None:
        self.make_key = make_key
        self.capture_fn = capture_fn
        self._graphs: dict[Hashable, G] = {}
        self.captures: dict[Hashable, int] = {}
        self.capture_seconds: dict[Hashable, float] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self._graphs)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._graphs

    def get_or_capture(self, key: Hashable | None = None) -> tuple[G, bool]:
        """(graph, captured_now) for `key` (default: ``make_key()``)."""
        key = self.make_key() if key is None else key
        if key in self._graphs:
            self.hits += 1
            return self._graphs[key], False
        t0 = time.perf_counter()
        graph = self.capture_fn(key)
        self.capture_seconds[key] = self.capture_seconds.get(key, 0.0) + time.perf_counter() - t0
        self.captures[key] = self.captures.get(key, 0) + 1
        self._graphs[key] = graph
        return graph, True

    def invalidate(self) -> None:
        """Drop (and close, where they can be closed) every graph: the state they froze changed."""
        graphs, self._graphs = list(self._graphs.values()), {}
        for graph in graphs:
            close = getattr(graph, "close", None)
            if callable(close):
                close()
