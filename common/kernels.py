"""Triton kernels that the course's plugins serve, and their launchers from PyTorch.

Introduced in lab 05 (fusion). Needs Triton, so a GPU machine: import this module only there (the
lab modules and :mod:`common.trt.plugins` do so lazily). A kernel lives here, below both its users:
the lab that runs it as a ``torch.library`` op and the plumbing that registers it as a TensorRT plugin.

- :func:`layernorm_kernel` normalises one row per program, in FP32 registers, reading x once and
  writing y once: the whole ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add chain in one pass.
  Its arguments are ordered (inputs, scalar extras, outputs) because that is how TensorRT calls an
  ahead-of-time plugin kernel.
- :func:`block_and_warps` picks its launch configuration for a row length.
- :func:`launch` runs it from PyTorch on the current stream (the torch custom op and the JIT plugin).

No ``from __future__ import annotations``: Triton reads the kernel's ``tl.constexpr`` hints as objects.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, n_cols, y_ptr, EPS: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    offsets = row * n_cols + cols
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / n_cols
    centred = tl.where(mask, x - mean, 0.0)
    variance = tl.sum(centred * centred, axis=0) / n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = centred / tl.sqrt(variance + EPS) * w + b
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


def block_and_warps(n_cols: int) -> tuple[int, int]:
    """One row per program: the block covers the row; more warps for longer rows (8192 -> 16 warps)."""
    block = triton.next_power_of_2(n_cols)
    return block, min(max(block // 512, 1), 16)


def launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    """y = LayerNorm(x) over the last dimension, on PyTorch's current stream. Contiguous tensors only."""
    n_cols = x.shape[-1]
    if not (x.is_contiguous() and y.is_contiguous()) or weight.numel() != n_cols or bias.numel() != n_cols:
        raise ValueError(f"fused LayerNorm needs contiguous x and y and {n_cols}-element weight and bias")
    block, warps = block_and_warps(n_cols)
    layernorm_kernel[(x.numel() // n_cols,)](x, weight, bias, n_cols, y, EPS=eps, BLOCK=block, num_warps=warps)
