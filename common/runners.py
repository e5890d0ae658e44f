"""One interface over every backend a lab sweeps: TensorRT, PyTorch and ONNX Runtime.

Introduced in lab 01 (batching). A runner owns its inputs and outputs; `prepare(batch)` does the
allocation, compilation or capture for a batch size (outside any timed region) and `run()`
enqueues one inference (asynchronously on a GPU, on the runner's own created stream). Every
result a lab prints carries `runner.label`, so it is always clear which backend produced it.
"""

from __future__ import annotations

import abc
import contextlib
import time
from pathlib import Path
from typing import Callable

import torch

from . import bench

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Runner(abc.ABC):
    backend: str = ""
    device: str = "cpu"
    precision: str = "fp32"

    def __init__(self) -> None:
        self.stream = torch.cuda.Stream() if self.device == "cuda" else None
        self.batch_size = 0
        self.prepare_seconds: dict[int, float] = {}   # one-off cost per batch: compile, capture, build

    @property
    def label(self) -> str:
        return f"{self.backend} ({self.device}, {self.precision})"

    def prepare(self, batch_size: int) -> None:
        """Get ready to run `batch_size` items: allocate, and compile or capture if the backend does."""
        t0 = time.perf_counter()
        self._prepare(batch_size)
        self.batch_size = batch_size
        if self.stream is not None:
            self.stream.synchronize()
        # The first preparation of a batch size is its one-off cost; later ones only re-bind inputs.
        self.prepare_seconds.setdefault(batch_size, time.perf_counter() - t0)

    @abc.abstractmethod
    def _prepare(self, batch_size: int) -> None: ...

    @abc.abstractmethod
    def run(self) -> None:
        """Enqueue one inference of the prepared batch."""

    @abc.abstractmethod
    def output(self) -> torch.Tensor:
        """The last output on the CPU, in FP32 (synchronises)."""

    #: "cuda" when run() only enqueues (timed with CUDA events), "cpu" when it returns finished work.
    timer_device: str | None = None

    def measure(self, batch_size: int, name: str = "", **kwargs) -> bench.Measurement:
        """Prepare for `batch_size` (untimed), then time `run()` with the harness."""
        if batch_size != self.batch_size:
            self.prepare(batch_size)
        device = self.timer_device or self.device
        return bench.measure(self.run, name=name or self.label, backend=self.label, batch_size=batch_size,
                             device=device, stream=self.stream if device == "cuda" else None, **kwargs)


class _TorchRunner(Runner):
    """Shared by the PyTorch runners: the model moved to the device and precision, and a fixed input."""

    def __init__(self, model: torch.nn.Module, make_input: Callable[[int], torch.Tensor], *,
                 device: str = "cuda", precision: str = "fp16", channels_last: bool | None = None):
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {sorted(DTYPES)}, got {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no GPU: use device='cpu'")
        self.device, self.precision = device, precision
        super().__init__()
        # A fair baseline is PyTorch at its best: on a GPU, convolutions in channels-last (NHWC)
        # layout, which the tensor-core kernels use natively, and cuDNN timing its algorithms per
        # shape (its counterpart of TensorRT's tactic selection).
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        self.channels_last = (device == "cuda" and has_conv) if channels_last is None else channels_last
        if device == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = model.to(device=device, dtype=DTYPES[precision]).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.make_input = make_input
        self._inputs: dict[int, torch.Tensor] = {}
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    @property
    def label(self) -> str:
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.backend} ({self.device}, {self.precision}{layout})"

    def _input(self, batch_size: int) -> torch.Tensor:
        """The input of `batch_size` items, made on the first preparation of that size and kept: a sweep
        prepares each size again in every pass, and a new seeded input would hold the same values."""
        if batch_size not in self._inputs:
            x = self.make_input(batch_size).to(device=self.device, dtype=DTYPES[self.precision])
            self._inputs[batch_size] = (x.contiguous(memory_format=torch.channels_last)
                                        if self.channels_last and x.dim() == 4 else x)
        return self._inputs[batch_size]

    def output(self) -> torch.Tensor:
        if self.stream is not None:
            self.stream.synchronize()
        assert self.y is not None, "run() first"
        return self.y.detach().float().cpu()


class TorchEagerRunner(_TorchRunner):
    backend = "PyTorch eager"

    @torch.inference_mode()
    def _prepare(self, batch_size: int) -> None:
        self.x = self._input(batch_size)
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with ctx:
            self.y = self.model(self.x)   # first run of a shape: cuDNN's algorithm search happens here

    @torch.inference_mode()
    def run(self) -> None:
        self.y = self.model(self.x)


class TorchCompileRunner(_TorchRunner):
    """`torch.compile`; compiling is counted in prepare_seconds, never in timings.

    With `dynamic=False` (the default here) each batch size gets its own graph, specialised to its
    shape, as a TensorRT engine is to its profile; sweep it over a few batch sizes only.
    """

    def __init__(self, model, make_input, *, mode: str = "default", dynamic: bool | None = False, **kwargs):
        super().__init__(model, make_input, **kwargs)
        self.mode = mode
        self.backend = f"torch.compile ({mode})"
        self.compiled = torch.compile(self.model, mode=mode, dynamic=dynamic)

    @torch.inference_mode()
    def _prepare(self, batch_size: int) -> None:
        self.x = self._input(batch_size)
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with ctx:
            for _ in range(2):   # compile, then one run of the compiled code
                self.y = self.compiled(self.x)

    @torch.inference_mode()
    def run(self) -> None:
        self.y = self.compiled(self.x)


class TorchCudaGraphRunner(_TorchRunner):
    """PyTorch eager captured into one CUDA graph per batch size and replayed."""

    backend = "PyTorch CUDA graph"

    def __init__(self, model, make_input, **kwargs):
        super().__init__(model, make_input, **kwargs)
        if self.device != "cuda":
            raise RuntimeError("CUDA graphs need a GPU")
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    @torch.inference_mode()
    def _prepare(self, batch_size: int) -> None:
        if batch_size not in self.graphs:
            x = self._input(batch_size)
            with torch.cuda.stream(self.stream):
                for _ in range(3):   # warm up before capture: lazy init and allocator state stay out
                    self.model(x)
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                y = self.model(x)
            self.graphs[batch_size] = (graph, x, y)
        _, self.x, self.y = self.graphs[batch_size]

    def run(self) -> None:
        self.graphs[self.batch_size][0].replay()


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime (FP32): the reference run, and the CPU counterpart of a TensorRT engine.

    `session.run` returns only when the work is done, on any provider, so it is timed on the host
    (perf_counter) even with the CUDA provider; host-to-device copies of the input are then inside
    the time, and the label says which provider ran.
    """

    def __init__(self, onnx_path: str | Path, make_input: Callable[[int], torch.Tensor], *,
                 providers: list[str] | None = None, intra_op_threads: int | None = None):
        from .onnx import ort_session

        self.device = "cpu"
        super().__init__()
        self.session = ort_session(onnx_path, providers=providers, threads=intra_op_threads)
        provider = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.backend = f"ONNX Runtime {provider}"
        if provider == "CUDA":
            self.device = "cuda"
        self.timer_device = "cpu"
        graph_input = self.session.get_inputs()[0]
        self.precision = "fp16" if graph_input.type == "tensor(float16)" else "fp32"   # what the ONNX carries
        self.input_name = graph_input.name
        self.make_input = make_input
        self._feeds: dict[int, dict] = {}
        self.feed: dict = {}
        self.y = None

    def _prepare(self, batch_size: int) -> None:
        if batch_size not in self._feeds:   # made once per batch size, as the PyTorch runners' inputs
            self._feeds[batch_size] = {self.input_name: self.make_input(batch_size).to(DTYPES[self.precision]).numpy()}
        self.feed = self._feeds[batch_size]

    def run(self) -> None:
        self.y = self.session.run(None, self.feed)[0]

    def output(self) -> torch.Tensor:
        assert self.y is not None, "run() first"
        return torch.from_numpy(self.y).float()


class TensorRTRunner(Runner):
    """A TensorRT engine built from ONNX by common.trt, run with execute_async_v3 on a created stream."""

    device = "cuda"

    def __init__(self, onnx_path: str | Path, make_input: Callable[[int], torch.Tensor], config=None, *,
                 precision: str = "fp32", input_name: str = "input"):
        from . import trt as trt_tools

        super().__init__()
        self.precision = precision   # what the ONNX carries: TensorRT 11 takes precision from the graph
        self.build = trt_tools.build_engine(onnx_path, config or trt_tools.BuildConfig())
        self.backend = f"TensorRT {trt_tools.version()}"
        self.engine_runner = trt_tools.EngineRunner(self.build.engine, stream=self.stream)
        self.make_input = make_input
        self.input_name = input_name

    def _prepare(self, batch_size: int) -> None:
        x = self.make_input(batch_size)
        self.engine_runner.set_input_shapes({self.input_name: tuple(x.shape)})
        inp = self.engine_runner.inputs(0)[self.input_name]
        # The copy goes on the runner's stream, where run() enqueues, after whatever the current
        # stream still does to x (EngineRunner.run orders its feed the same way).
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            inp.copy_(x.to(device=inp.device, dtype=inp.dtype), non_blocking=True)
        if x.is_cuda:
            x.record_stream(self.stream)   # x may be freed before the copy has run

    def run(self) -> None:
        self.engine_runner.enqueue(0)

    def output(self) -> torch.Tensor:
        self.stream.synchronize()
        outputs = self.engine_runner.outputs(0)
        return next(iter(outputs.values())).float().cpu()

