"""Lab 05 (fusion), the LayerNorm on a GPU: decomposed eager, the Triton kernel as a torch op,
``torch.compile`` and ``layer_norm``, verified against FP32 and timed against the copy bandwidth.

The Triton kernel is :mod:`common.kernels`' (the one the TensorRT plugin :mod:`common.trt.plugins`
serves), behind a ``torch.library`` custom op (:func:`fused_layernorm_op`); the candidates are
checked (:func:`verify_layernorm`, then :func:`common.checks.verify_errors`) and timed
(:func:`measure_candidates`, :func:`layernorm_rows`), on kernel time where CUPTI measures it.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Mapping

import torch

from ... import bench
from ...onnx import max_relative_error
from .graphs import EPS, decomposed_layernorm

DECOMPOSED = "PyTorch eager, decomposed (9 ops)"
TRITON = "Triton fused kernel (torch custom op)"
COMPILED = "torch.compile of the decomposed"
TORCH_LAYER_NORM = "torch.nn.functional.layer_norm"


@functools.cache
def fused_layernorm_op() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """``torch.ops.trtlabs.fused_layernorm``: the plugin's Triton kernel as a PyTorch op (GPU only).

    A ``torch.library`` custom op, so ``torch.compile`` treats it as one opaque node; its fake
    (meta) implementation tells the compiler the output's shape and dtype without running it.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("the fused LayerNorm is a Triton kernel: it needs an NVIDIA GPU")
    from ... import kernels   # imports Triton

    @torch.library.custom_op("trtlabs::fused_layernorm", mutates_args=(),
                             schema="(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor")
    def fused_layernorm(x, weight, bias, eps):
        y = torch.empty_like(x)
        kernels.launch(x, weight, bias, y, eps)
        return y

    @fused_layernorm.register_fake
    def _(x, weight, bias, eps):
        return torch.empty_like(x)

    return torch.ops.trtlabs.fused_layernorm


def layernorm_inputs(rows: int, cols: int, *, device: str, dtype: torch.dtype, seed: int = 0):
    """x (rows x cols) and LayerNorm's weight and bias, seeded, on `device`."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=generator) * 2 + 0.5
    weight = 1 + 0.1 * torch.randn(cols, generator=generator)
    bias = 0.1 * torch.randn(cols, generator=generator)
    return tuple(t.to(device=device, dtype=dtype) for t in (x, weight, bias))


def layernorm_candidates(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                         with_triton: bool, with_compile: bool) -> dict[str, Callable[[], torch.Tensor]]:
    """The same LayerNorm several ways, each a no-argument function of the fixed inputs."""
    candidates: dict[str, Callable[[], torch.Tensor]] = {
        DECOMPOSED: lambda: decomposed_layernorm(x, weight, bias),
        TORCH_LAYER_NORM: lambda: torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, EPS),
    }
    if with_triton:
        fused = fused_layernorm_op()
        candidates[TRITON] = lambda: fused(x, weight, bias, EPS)
    if with_compile:
        compiled = torch.compile(decomposed_layernorm, dynamic=False)
        candidates[COMPILED] = lambda: compiled(x, weight, bias)
    return candidates


def verify_layernorm(candidates: Mapping[str, Callable[[], torch.Tensor]], x: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor) -> dict[str, float]:
    """Relative error of each candidate against ``layer_norm`` computed in FP32."""
    reference = torch.nn.functional.layer_norm(x.float(), x.shape[-1:], weight.float(), bias.float(), EPS)
    return {name: max_relative_error(fn().float(), reference) for name, fn in candidates.items()}


def layernorm_bytes(rows: int, cols: int, element_size: int) -> int:
    """Bytes a LayerNorm must move at least: read x, write y, read weight and bias."""
    return (2 * rows * cols + 2 * cols) * element_size


def measure_candidates(candidates: Mapping[str, Callable[[], Any]], *, device: str, passes: int = bench.PASSES,
                       warmup_ms: float = 40.0, measure_ms: float = 100.0,
                       label: Callable[[str], str] = str) -> dict[str, list[bench.Measurement]]:
    """Each candidate `passes` times, interleaved, on its own created stream on a GPU."""
    configs = {name: {"fn": fn, "name": label(name), "backend": label(name),
                      "stream": torch.cuda.Stream() if device == "cuda" else None}
               for name, fn in candidates.items()}
    return bench.measure_interleaved(configs, passes=passes, device=device, warmup_ms=warmup_ms, measure_ms=measure_ms)


def timed_on(runs: Mapping[str, list[bench.Measurement]]) -> str:
    """"kernel" where every run carries CUPTI's kernel time (a GPU), else "event" (a CPU: the host's clock)."""
    every = [m for ms in runs.values() for m in ms]
    return "kernel" if every and all(m.kernel is not None for m in every) else "event"


def versus_decomposed(runs: Mapping[str, list[bench.Measurement]]) -> dict[str, bench.Comparison]:
    """Each other candidate against decomposed eager (speedup = decomposed / candidate), on kernel time
    where it was measured: fusion is a device effect."""
    on = timed_on(runs)
    return {name: bench.compare(runs[DECOMPOSED], ms, on=on) for name, ms in runs.items() if name != DECOMPOSED}


def layernorm_rows(runs: Mapping[str, list[bench.Measurement]], nbytes: int, ceilings: Any = None) -> list[dict]:
    """Per candidate: event and kernel time, achieved GB/s = bytes / time (kernel time where measured),
    its share of the measured copy ceiling (bytes read + written, as a copy counts them; never above
    100: a faster figure raises the ceiling, :meth:`common.ceilings.Ceilings.pct_of`), speedup over
    decomposed, busy share and regime."""
    on = timed_on(runs)
    pick = bench.median_kernel_ms if on == "kernel" else bench.median_latency_ms
    baseline = pick(runs[DECOMPOSED])
    rows = []
    for name, ms in runs.items():
        device_ms = pick(ms)
        gbps = nbytes / (device_ms / 1e3) / 1e9
        rows.append({"kernel": name, "latency_ms": bench.median_latency_ms(ms), "timed_on": on,
                     "spread_pct": bench.spread_pct(bench.COMPARED_ON[on](m) for m in ms), "gb_per_s": gbps,
                     "pct_of_copy": _pct_of_copy(ceilings, gbps), "speedup_vs_decomposed": baseline / device_ms,
                     **bench.kernel_fields(ms)})
    return rows


def _pct_of_copy(ceilings: Any, gbps: float) -> float:
    if ceilings is None:
        return float("nan")
    from ...ceilings import CeilingWarning

    with warnings.catch_warnings():   # a lifted ceiling is reported by the notebook (ceilings.lifted)
        warnings.simplefilter("ignore", CeilingWarning)
        return ceilings.pct_of_copy(gbps)
