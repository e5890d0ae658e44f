"""Lab 03 (CUDA graphs): a launch-bound MLP, graphs of it, and what a graph costs and freezes.

A CUDA graph records the kernels one forward launches and replays all of them with a single launch,
so it pays where launching costs more than running: a deep, narrow model at a small batch. The lab
imports this package as ``from common.labs import lab03_cuda_graphs as lab``; its parts:

- :mod:`.experiments`: the model (:class:`MLP`, the allocation-free :class:`StaticMLP`), the ways to
  run it (:class:`Timed`), checks before timing and the comparison rows;
- :mod:`.capture`: the captures (``torch.cuda.CUDAGraph``, cuda-python through
  :class:`common.trt.graphs.CudaGraph`, ``torch.compile(mode="reduce-overhead")``), the capture rules
  with values, one graph per input shape (:class:`ShapeGraphs`);
- :mod:`.overhead`: the width sweep and the per-layer overhead, on a GPU eager minus graph, on a CPU
  a two-point model of time against FLOPs;
- :mod:`.launches`: what one launch costs the host: PyTorch's operators, a bare Triton launch,
  cuda-python's ``cuLaunchKernel`` and a graph replay, per kernel;
- :mod:`.tensorrt_path`: the TensorRT path, run only where TensorRT is installed, and what
  :class:`common.trt.EngineRunner` does with a context's graph when shapes or profile change;
- :mod:`.claims`: the claims, as functions of the results (:func:`claims`, :func:`tensorrt_claims`).
"""

from .capture import (LazyScratch, ShapeGraphs, TorchGraph, capture_static, capture_torch_graph,
                      compile_reduce_overhead, default_stream_refusal, frozen_shape_demo, graph_node_types,
                      legacy_stream_capture_status, stale_input_demo, warmup_rule_rows)
from .claims import (LAB, TRT_INVALIDATION_CLAIM, TRT_SPEEDUP_CLAIM, Results, busy_interval, claim_texts, claims,
                     tensorrt_claims)
from .experiments import (COMPILE, CUDA_PYTHON_GRAPH, DEPTH, EAGER, MLP, STATIC_EAGER, TORCH_GRAPH, StaticMLP,
                          Timed, backend_label, bench_configs, build_mlp, comparison_rows, example_input,
                          launch_overhead_us, matches, tolerance, verify)
from .launches import (available_methods, check_triton_launch, driver_launcher, empty_kernel_ptx, kernels_per_call,
                       launch_configs, launch_cost_rows, ptx_target, triton_launcher)
from .overhead import CpuOverheadModel, cpu_overhead_model, graph_overhead_rows, width_sweep
from .tensorrt_path import copy_into, engine_config, engine_runner_graph_drops, tensorrt_study, trtexec_commands

__all__ = [
    "COMPILE", "CUDA_PYTHON_GRAPH", "DEPTH", "EAGER", "LAB", "MLP", "STATIC_EAGER", "TORCH_GRAPH",
    "TRT_INVALIDATION_CLAIM", "TRT_SPEEDUP_CLAIM", "CpuOverheadModel", "LazyScratch", "Results", "ShapeGraphs",
    "StaticMLP", "Timed", "TorchGraph", "available_methods", "backend_label", "bench_configs", "build_mlp",
    "busy_interval", "capture_static", "check_triton_launch", "driver_launcher", "empty_kernel_ptx", "engine_config",
    "kernels_per_call", "launch_configs", "launch_cost_rows", "ptx_target",
    "triton_launcher", "trtexec_commands",
    "capture_torch_graph", "claim_texts", "claims", "comparison_rows", "compile_reduce_overhead", "copy_into",
    "cpu_overhead_model", "default_stream_refusal", "engine_runner_graph_drops", "example_input",
    "frozen_shape_demo", "graph_node_types", "graph_overhead_rows", "launch_overhead_us",
    "legacy_stream_capture_status", "matches", "stale_input_demo", "tensorrt_claims", "tensorrt_study",
    "tolerance", "verify", "warmup_rule_rows", "width_sweep",
]
