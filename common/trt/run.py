"""Run an engine: execution contexts, each on its own CUDA stream, with device buffers and graphs.

Introduced in lab 01 (batching); lab 02 (streams) uses several contexts, lab 03 CUDA graphs, lab 04
profile switching. PyTorch owns the memory: every I/O buffer is a ``torch.empty(..., device="cuda")``
tensor whose ``data_ptr()`` goes to ``set_tensor_address``, and every context enqueues on its own
``torch.cuda.Stream`` (never the default stream, which synchronizes implicitly with other work).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Sequence

from common import env

from . import buffers, compat
from .graphs import CudaGraph, GraphCache

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

Shape = tuple[int, ...]


def _dims(dims: Any) -> Shape:
    return tuple(int(dims[i]) for i in range(len(dims)))


@dataclass(frozen=True)
class TensorSpec:
    """An engine I/O tensor: name, direction, trt.DataType name, engine shape (-1 = dynamic) and,
    for inputs, each profile's (min, opt, max) shapes."""

    name: str
    is_input: bool
    dtype: str
    shape: Shape
    profile_shapes: tuple[tuple[Shape, Shape, Shape], ...] = ()

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)


@dataclass
class _Slot:
    """One execution context and what belongs to it alone."""

    context: "trt.IExecutionContext"
    stream: "torch.cuda.Stream"
    profile_index: int = 0
    input_shapes: dict[str, Shape] = field(default_factory=dict)
    storage: dict[str, "torch.Tensor"] = field(default_factory=dict)  # raw bytes, grown only
    tensors: dict[str, "torch.Tensor"] = field(default_factory=dict)  # typed, shaped views of storage
    graphs: GraphCache[CudaGraph] | None = None


class EngineRunner:
    """Execution contexts of one engine, their streams, buffers and CUDA graphs (lab 01).

    Each of the `num_contexts` contexts gets its own new ``torch.cuda.Stream``; a `stream` passed in
    is used by context 0 instead. Contexts start on profile 0; engines whose inputs are all static
    get their buffers at once, others after :meth:`set_input_shapes`.
    """

    def __init__(self, engine: "trt.ICudaEngine", *, num_contexts: int = 1,
                 stream: "torch.cuda.Stream | None" = None) -> None:
        env.require("gpu")
        import tensorrt as trt
        import torch

        if num_contexts < 1:
            raise ValueError(f"num_contexts must be at least 1, got {num_contexts}")
        if stream is not None and stream.cuda_stream == 0:
            warnings.warn("the default stream synchronizes with all other work on the device (lab 02 "
                          "measures it): pass torch.cuda.Stream() instead", stacklevel=2)
        self.engine = engine
        self.specs: dict[str, TensorSpec] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.is_shape_inference_io(name):
                raise NotImplementedError(f"{name!r} is a shape tensor; EngineRunner handles execution tensors only")
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = _dims(engine.get_tensor_shape(name))
            profiles: tuple[tuple[Shape, Shape, Shape], ...] = ()
            if is_input:
                if any(d < 0 for d in shape):
                    ranges = [engine.get_tensor_profile_shape(name, p)
                              for p in range(engine.num_optimization_profiles)]
                    profiles = tuple((_dims(r[0]), _dims(r[1]), _dims(r[2])) for r in ranges)
                else:
                    profiles = ((shape, shape, shape),) * engine.num_optimization_profiles
            self.specs[name] = TensorSpec(name, is_input, engine.get_tensor_dtype(name).name, shape, profiles)
        self._slots: list[_Slot] = []
        for i in range(num_contexts):
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"TensorRT could not create execution context {i} (out of GPU memory? "
                                   f"each needs {engine.device_memory_size_v2} bytes)")
            slot = _Slot(context, stream if (i == 0 and stream is not None) else torch.cuda.Stream())
            slot.graphs = GraphCache(functools.partial(self._graph_key, slot), functools.partial(self._capture, slot))
            self._slots.append(slot)
            if self._all_static:
                self.set_input_shapes({}, ctx_index=i)

    # -- what the engine has ---------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [n for n, s in self.specs.items() if s.is_input]

    @property
    def output_names(self) -> list[str]:
        return [n for n, s in self.specs.items() if not s.is_input]

    @property
    def _all_static(self) -> bool:
        return not any(s.is_dynamic for s in self.specs.values() if s.is_input)

    @property
    def num_contexts(self) -> int:
        return len(self._slots)

    @property
    def device_memory_bytes(self) -> int:
        """Activation memory each context allocates (STATIC strategy: the maximum over profiles)."""
        return int(self.engine.device_memory_size_v2)

    def device_memory_bytes_for_profile(self, profile_index: int) -> int:
        """Activation memory for one profile; on 10.8-10.11 see :func:`compat.profile_memory_note`."""
        return int(self.engine.get_device_memory_size_for_profile_v2(profile_index))

    def device_memory_note(self) -> str | None:
        """What to print beside the per-profile memory on this TensorRT, or None."""
        import tensorrt as trt

        return compat.profile_memory_note(trt)

    def _slot(self, ctx_index: int) -> _Slot:
        if not 0 <= ctx_index < len(self._slots):
            raise IndexError(f"context {ctx_index} does not exist; this runner has {len(self._slots)}")
        return self._slots[ctx_index]

    def context(self, ctx_index: int = 0) -> "trt.IExecutionContext":
        return self._slot(ctx_index).context

    def stream(self, ctx_index: int = 0) -> "torch.cuda.Stream":
        return self._slot(ctx_index).stream

    def inputs(self, ctx_index: int = 0) -> dict[str, "torch.Tensor"]:
        """The context's input buffers (write into them in place, on its stream)."""
        return {n: t for n, t in self._slot(ctx_index).tensors.items() if self.specs[n].is_input}

    def outputs(self, ctx_index: int = 0) -> dict[str, "torch.Tensor"]:
        return {n: t for n, t in self._slot(ctx_index).tensors.items() if not self.specs[n].is_input}

    def input_shapes(self, ctx_index: int = 0) -> dict[str, Shape]:
        return dict(self._slot(ctx_index).input_shapes)

    def io_buffer_bytes(self, ctx_index: int = 0) -> int:
        return sum(int(t.numel()) for t in self._slot(ctx_index).storage.values())

    # -- shapes and profiles ---------------------------------------------------------------------
    def set_optimization_profile(self, ctx_index: int, profile_index: int) -> None:
        """Switch a context's profile (lab 04); input shapes must be set again afterwards."""
        slot = self._slot(ctx_index)
        count = self.engine.num_optimization_profiles
        if not 0 <= profile_index < count:
            raise IndexError(f"profile {profile_index} does not exist; the engine has {count}")
        # Before any set_input_shape for that profile; it may enqueue copies on this same stream.
        # The binding raises on failure (it never returns False); say which context and profile.
        try:
            slot.context.set_optimization_profile_async(profile_index, slot.stream.cuda_stream)
        except RuntimeError as exc:
            raise RuntimeError(f"TensorRT refused to switch context {ctx_index} to profile {profile_index} "
                               f"({exc}); the context keeps profile {slot.profile_index}") from exc
        slot.profile_index, slot.input_shapes, slot.tensors = profile_index, {}, {}
        self._invalidate(slot)
        if self._all_static:
            self.set_input_shapes({}, ctx_index=ctx_index)

    def set_input_shapes(self, shapes: Mapping[str, Sequence[int]], ctx_index: int = 0) -> None:
        """Set input shapes (checked against the active profile) and size the buffers for them.

        Buffers are reallocated only when they must grow; a change of shape or of any buffer address
        drops the context's CUDA graphs, which froze the old ones.
        """
        import tensorrt as trt

        slot = self._slot(ctx_index)
        unknown = set(shapes) - set(self.input_names)
        if unknown:
            raise KeyError(f"no engine inputs named {sorted(unknown)}; inputs: {self.input_names}")
        new: dict[str, Shape] = {}
        for name in self.input_names:
            spec = self.specs[name]
            requested = shapes.get(name, slot.input_shapes.get(name))
            shape = buffers.resolve_shape(spec.shape, requested, name=name)
            lo, _, hi = spec.profile_shapes[slot.profile_index]
            buffers.check_in_profile(shape, lo, hi, name=name, profile_index=slot.profile_index)
            new[name] = shape
        if new == slot.input_shapes and slot.tensors:
            return
        # Nothing counts as bound until this succeeds, so a failure half-way is redone next time.
        slot.input_shapes, slot.tensors = {}, {}
        self._invalidate(slot)
        for name, shape in new.items():
            if self.specs[name].is_dynamic and not slot.context.set_input_shape(name, trt.Dims(shape)):
                raise buffers.ShapeError(f"TensorRT rejected shape {shape} for {name!r}")
        unresolved = slot.context.infer_shapes()
        if unresolved:
            raise buffers.ShapeError(f"TensorRT still lacks shapes for {unresolved}")
        self._bind(slot)
        slot.input_shapes = new

    def _bind(self, slot: _Slot) -> None:
        import torch

        # Allocate under the context's stream: the caching allocator ties a block to the stream
        # that allocated it, and reuses it only when that stream's work on it is done.
        with torch.cuda.stream(slot.stream):
            for name, spec in self.specs.items():
                shape = _dims(slot.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise NotImplementedError(f"output {name!r} has a data-dependent shape {shape}: "
                                              "it needs an IOutputAllocator, which EngineRunner lacks")
                size = buffers.nbytes(shape, spec.dtype)
                storage = slot.storage.get(name)
                if storage is None or storage.numel() < size:
                    storage = torch.empty(max(size, 1), dtype=torch.uint8, device="cuda")
                    slot.storage[name] = storage
                slot.tensors[name] = buffers.typed_view(storage, shape, spec.dtype)
                if not slot.context.set_tensor_address(name, storage.data_ptr()):
                    raise RuntimeError(f"TensorRT rejected the address of {name!r}")

    # -- running ---------------------------------------------------------------------------------
    def enqueue(self, ctx_index: int = 0) -> None:
        """``execute_async_v3`` on the context's stream; returns before the work is done."""
        slot = self._ready(ctx_index)
        if not slot.context.execute_async_v3(slot.stream.cuda_stream):
            raise RuntimeError(f"execute_async_v3 failed on context {ctx_index}; see TensorRT's log")

    def _ready(self, ctx_index: int) -> _Slot:
        slot = self._slot(ctx_index)
        if not slot.tensors:
            raise RuntimeError(f"context {ctx_index} has no input shapes: call set_input_shapes first")
        return slot

    def synchronize(self, ctx_index: int = 0) -> None:
        self._slot(ctx_index).stream.synchronize()

    def run(self, feed: Mapping[str, "torch.Tensor"], ctx_index: int = 0) -> dict[str, "torch.Tensor"]:
        """Copy `feed` in, enqueue, wait, and return copies of the outputs (convenience, not timing)."""
        import torch

        missing = set(self.input_names) - set(feed)
        if missing:
            raise KeyError(f"feed lacks inputs {sorted(missing)}; inputs: {self.input_names}")
        self.set_input_shapes({n: tuple(t.shape) for n, t in feed.items()}, ctx_index)
        slot = self._slot(ctx_index)
        slot.stream.wait_stream(torch.cuda.current_stream())  # the feed may still be being computed
        with torch.cuda.stream(slot.stream):
            for name, tensor in feed.items():
                target = slot.tensors[name]
                if tensor.dtype != target.dtype:
                    raise TypeError(f"input {name!r} is {tensor.dtype}, the engine takes "
                                    f"{self.specs[name].dtype} ({target.dtype}): convert it first")
                target.copy_(tensor, non_blocking=True)
        self.enqueue(ctx_index)
        slot.stream.synchronize()
        return {name: t.clone() for name, t in self.outputs(ctx_index).items()}

    # -- CUDA graphs (lab 03) -------------------------------------------------------------------
    def _graph_key(self, slot: _Slot) -> Hashable:
        return (slot.profile_index, tuple(sorted(slot.input_shapes.items())),
                tuple(sorted((n, t.data_ptr()) for n, t in slot.storage.items())))

    def _capture(self, slot: _Slot, key: Hashable) -> CudaGraph:
        handle = slot.stream.cuda_stream
        return CudaGraph.capture(handle, lambda: slot.context.execute_async_v3(handle), warmup=True)

    def _invalidate(self, slot: _Slot) -> None:
        if slot.graphs is not None:
            slot.graphs.invalidate()

    def graphs(self, ctx_index: int = 0) -> GraphCache[CudaGraph]:
        graphs = self._slot(ctx_index).graphs
        assert graphs is not None
        return graphs

    def capture_graph(self, ctx_index: int = 0) -> CudaGraph:
        """The context's graph for its current shapes, captured now (warm-up first) if needed."""
        self._ready(ctx_index)
        return self.graphs(ctx_index).get_or_capture()[0]

    def enqueue_graph(self, ctx_index: int = 0) -> bool:
        """Replay the context's graph (capturing it first if needed); True if it was captured now."""
        self._ready(ctx_index)
        graph, captured_now = self.graphs(ctx_index).get_or_capture()
        graph.replay()  # a capture records the work without running it, so replay either way
        return captured_now

    def context_for_shapes(self, shapes: Mapping[str, Sequence[int]]) -> int | None:
        """Index of a context whose current input shapes are `shapes` (lab 03: one graph per shape)."""
        want = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
        for i, slot in enumerate(self._slots):
            if slot.input_shapes == want:
                return i
        return None

    def close(self) -> None:
        for slot in self._slots:
            self._invalidate(slot)
        self._slots.clear()
