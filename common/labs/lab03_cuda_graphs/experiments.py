"""Lab 03 (CUDA graphs): the launch-bound MLP, the ways to run it, and what the timings show.

- the lab's model, :class:`MLP` (20 x Linear+ReLU), and the same forward written to allocate
  nothing, :class:`StaticMLP` (preallocated buffers, ``torch.addmm(..., out=)`` and ``relu_``): what
  a stream capture with cuda-python needs, since PyTorch's allocator does not know it is capturing;
- one way to run a forward, :class:`Timed`, checked against eager before timing (:func:`verify`)
  and measured with ``bench.measure_interleaved`` (:func:`bench_configs`), five passes each;
- launching's cost per kernel on a GPU, eager minus graph (:func:`launch_overhead_us`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from common import bench, checks

#: Depth of every model in the lab: 20 x (Linear, ReLU).
DEPTH = 20

EAGER = "PyTorch eager"
STATIC_EAGER = "PyTorch eager, allocation-free enqueue"
TORCH_GRAPH = "torch.cuda.CUDAGraph replay"
CUDA_PYTHON_GRAPH = "cuda-python graph replay"
COMPILE = "torch.compile reduce-overhead"


def backend_label(kind: str, device: str, dtype: torch.dtype) -> str:
    """What produced a number: e.g. 'torch.cuda.CUDAGraph replay (cuda, fp16)'."""
    return f"{kind} ({device}, {checks.precision_of(dtype)})"


def tolerance(dtype: torch.dtype) -> float:
    """The course's whole-model tolerance for `dtype` (common.checks): FP16 2e-2, FP32 1e-4 relative."""
    return checks.tolerance(checks.precision_of(dtype), "model")


def matches(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """`out` is within the tolerance of `ref`'s precision."""
    return checks.relative_error(out, ref) <= tolerance(ref.dtype)


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


def verify(timed: Mapping[str, Timed], reference: torch.Tensor) -> dict[str, tuple[float, bool]]:
    """Each configuration's (relative error, bitwise equal) against `reference`."""
    results = {}
    for label, config in timed.items():
        out = config.run_once()
        results[label] = (checks.relative_error(out, reference), bool(torch.equal(out, reference)))
    return results


def bench_configs(timed: Mapping[str, Timed]) -> dict[str, dict]:
    """The keyword arguments of ``bench.measure`` for each configuration, named by its label: what
    ``bench.measure_interleaved`` takes to measure them all, pass after pass."""
    return {label: {"fn": config.fn, "name": label, "backend": label, "stream": config.stream}
            for label, config in timed.items()}


def comparison_rows(runs: Mapping[str, Sequence[bench.Measurement]], baseline: str, *, depth: int = DEPTH) -> list[dict]:
    """One row per configuration: median event time (``latency_ms``), per layer, host time per call,
    the GPU's own time and busy share with its regime, the spread, and the speedup over `baseline`
    with its 95% interval over passes (event time: what a caller waits for)."""
    rows = []
    for label, measurements in runs.items():
        cmp = bench.compare(runs[baseline], measurements)
        lo, hi = cmp.interval
        rows.append({
            "backend": label,
            "latency_ms": cmp.median_b_ms,
            "per_layer_us": cmp.median_b_ms * 1e3 / depth,
            "host_ms": bench.median_host_ms(measurements),
            **bench.kernel_fields(measurements),
            "spread_pct": cmp.spread_b_pct,
            "throughput_per_s": measurements[0].batch_size / (cmp.median_b_ms / 1e3),
            "speedup": cmp.speedup,
            "interval": "-" if label == baseline or math.isnan(lo) else f"{lo:.2f}-{hi:.2f}",
            "significant": label != baseline and cmp.significant,
            "verdict": "baseline" if label == baseline else cmp.verdict(),
        })
    return rows


def launch_overhead_us(eager_ms: float, graph_ms: float, kernels: int) -> float:
    """What launching from the host adds per kernel: (eager - graph) / kernels, in microseconds."""
    if kernels <= 0:
        raise ValueError(f"kernels must be positive, got {kernels}")
    return (eager_ms - graph_ms) * 1e3 / kernels
