"""Lab 05 (fusion): one Triton LayerNorm kernel, served to TensorRT as the plugin "trtlabs::FusedLayerNorm".

Introduced in lab 05 (fusion). Needs Triton, so a GPU machine: import this module only there
(``common.fusion`` does so lazily). ``tensorrt`` is imported only by :func:`register_plugin`.

- :func:`layernorm_kernel` normalises one row per program, in FP32 registers, reading x once and
  writing y once: the whole ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add chain in one pass.
  Its arguments are ordered (inputs, scalar extras, outputs) because that is how TensorRT calls an
  ahead-of-time plugin kernel.
- :func:`launch` runs it from PyTorch on the current stream (the torch custom op and the JIT plugin).
- :func:`register_plugin` registers the TensorRT plugin with ``tensorrt.plugin``: its shape and type
  function, a JIT implementation (a Python callback launching :func:`launch` on TensorRT's stream)
  and an AOT implementation (the same kernel compiled to PTX and baked into the engine).

No ``from __future__ import annotations`` here: ``tensorrt.plugin`` reads the registered functions'
type hints as objects.
"""

import functools
from typing import List, Tuple, Union

import torch
import triton
import triton.language as tl

PLUGIN_ID = "trtlabs::FusedLayerNorm"

_TRITON_DTYPES = {torch.float16: "fp16", torch.float32: "fp32", torch.bfloat16: "bf16"}


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


@functools.cache
def register_plugin() -> str:
    """Register "trtlabs::FusedLayerNorm" with TensorRT (once per process); returns the plugin id.

    Import and call this before parsing an ONNX graph with that op (node domain "trtlabs", op
    "FusedLayerNorm", float attribute "epsilon") and before deserializing an engine built with the
    JIT implementation, whose enqueue calls back into this process.
    """
    import tensorrt as trt
    import tensorrt.plugin as trtp

    from . import compat

    triton_types = {trt.DataType.HALF: "fp16", trt.DataType.FLOAT: "fp32"}

    @trtp.register(PLUGIN_ID)
    def shape_and_type(x: trtp.TensorDesc, weight: trtp.TensorDesc, bias: trtp.TensorDesc,
                       epsilon: float) -> trtp.TensorDesc:
        return x.like()

    @trtp.autotune(PLUGIN_ID)
    def formats(x: trtp.TensorDesc, weight: trtp.TensorDesc, bias: trtp.TensorDesc, epsilon: float,
                outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        # All four tensors FP16, or all FP32; row-major only (the kernel indexes rows).
        return [trtp.AutoTuneCombination("FP16|FP32, FP16|FP32, FP16|FP32, FP16|FP32", "LINEAR")]

    @trtp.impl(PLUGIN_ID)
    def jit(x: trtp.Tensor, weight: trtp.Tensor, bias: trtp.Tensor, epsilon: float,
            outputs: Tuple[trtp.Tensor], stream: int) -> None:
        as_torch = functools.partial(torch.as_tensor, device="cuda")
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            launch(as_torch(x), as_torch(weight), as_torch(bias), as_torch(outputs[0]), epsilon)

    if not compat.has_aot_plugins(trtp):   # TensorRT 10.x before AOT Python plugins: JIT only
        return PLUGIN_ID

    @trtp.aot_impl(PLUGIN_ID)
    def aot(x: trtp.TensorDesc, weight: trtp.TensorDesc, bias: trtp.TensorDesc, epsilon: float,
            outputs: Tuple[trtp.TensorDesc], tactic: int
            ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
        n_cols_expr = x.shape_expr[-1]
        if not n_cols_expr.is_constant:
            raise ValueError("the AOT FusedLayerNorm compiles one block size: the normalised dimension must be static")
        n_cols = n_cols_expr.constant_value()
        block, warps = block_and_warps(n_cols)
        pointer = "*" + triton_types[x.dtype]
        source = triton.compiler.ASTSource(
            fn=layernorm_kernel,
            signature={"x_ptr": pointer, "w_ptr": pointer, "b_ptr": pointer, "n_cols": "i32",
                       "y_ptr": pointer, "EPS": "constexpr", "BLOCK": "constexpr"},
            constexprs={"EPS": epsilon, "BLOCK": block})
        compiled = triton.compile(source, options={"num_warps": warps})
        launch_params = trtp.KernelLaunchParams(grid_x=x.shape_expr.numel() // n_cols,   # one program per row
                                                block_x=compiled.metadata.num_warps * 32,
                                                shared_mem=compiled.metadata.shared)
        extra_args = trtp.SymIntExprs(1)          # the scalar between the inputs and the output
        extra_args[0] = trtp.SymInt32(n_cols)
        return compiled.metadata.name, compiled.asm["ptx"], launch_params, extra_args

    return PLUGIN_ID
