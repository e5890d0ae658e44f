"""The TensorRT plugin "trtlabs::FusedLayerNorm", registered with ``tensorrt.plugin``.

Introduced in lab 05 (fusion). Registration plumbing only: the Triton kernel it serves lives in
:mod:`common.kernels`, below both this module and the lab. Importing this module imports neither
TensorRT nor Triton; :func:`register_plugin` does, so it runs only on a GPU machine with both.

:func:`register_plugin` declares the plugin's shape and type function, a JIT implementation (a
Python callback launching :func:`common.kernels.launch` on TensorRT's stream) and an AOT
implementation (the same kernel compiled to PTX and baked into the engine).

An ONNX node the parser maps to this plugin has op type :data:`PLUGIN_NAME`, domain
:data:`PLUGIN_NAMESPACE`, a float attribute ``epsilon``, and a string attribute ``plugin_namespace``
equal to the namespace: TensorRT reads the namespace from the node's domain only from 10.10 on.

No ``from __future__ import annotations`` here: ``tensorrt.plugin`` reads the registered functions'
type hints as objects.
"""

import functools
from typing import List, Tuple, Union

PLUGIN_NAMESPACE, PLUGIN_NAME = "trtlabs", "FusedLayerNorm"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"


@functools.cache
def register_plugin() -> str:
    """Register "trtlabs::FusedLayerNorm" with TensorRT (once per process); returns the plugin id.

    Call this before parsing an ONNX graph with that op and before deserializing an engine built
    with the JIT implementation, whose enqueue calls back into this process.
    """
    import tensorrt as trt
    import tensorrt.plugin as trtp
    import torch
    import triton

    from .. import kernels
    from . import compat
    from .cache import register_plugin_source

    # An engine built with the AOT implementation carries the kernel: the engine-cache key of every
    # model with this op includes the kernel's and this registration's source.
    register_plugin_source(PLUGIN_ID, kernels.layernorm_kernel, register_plugin)
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
            kernels.launch(as_torch(x), as_torch(weight), as_torch(bias), as_torch(outputs[0]), epsilon)

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
        block, warps = kernels.block_and_warps(n_cols)
        pointer = "*" + triton_types[x.dtype]
        source = triton.compiler.ASTSource(
            fn=kernels.layernorm_kernel,
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
