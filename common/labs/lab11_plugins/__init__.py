"""Lab 11 (writing fast plugins): one fused bias + GELU kernel, its formats, tactics and call paths, and
the same kernel as two TensorRT plugins (FP32-LINEAR only against FP16 with several formats and
tactics, JIT against AOT).

- :mod:`.kernels`: the Triton kernel and its tactics, its PyTorch CPU twin, the layouts' index
  arithmetic, and the ``torch.library`` custom op;
- :mod:`.calls`: verification, the format, tactic and per-call-overhead candidates and their
  measurement;
- :mod:`.trt_plugins`: the two ``tensorrt.plugin`` plugins and the engines built with them (the
  lab's TensorRT study);
- :mod:`.claims`: the lab's claims.
"""

from .calls import (COMPILED_OP, COMPOSED, CPU_DIRECT, CUSTOM_OP, DECLARES_LAYOUT, FP32_LINEAR_ONLY, GRAPH_REPLAY,
                    JIT_CALLBACK, RAW_LAUNCH, best_and_worst, device_comparison, format_bounds, format_candidates,
                    format_traffic, host_ratio, host_words, measure, overhead_candidates, overhead_rows, speed_rows,
                    tactic_candidates, times_text, tolerance, verify)
from .claims import CLAIMS, PyTorchResults, claims, pytorch_claims, tensorrt_claims
from .kernels import (CPU_CHUNKS, DEFAULT_TACTIC, TACTIC_BY_ID, TACTICS, Tactic, autotune_choice, bias_gelu_kernel,
                      bias_gelu_op, bytes_moved, channel_of, channel_pitch, compile_ahead_of_time, composed_bias_gelu,
                      cpu_bias_gelu, cpu_chunk_label, from_channel_last_storage, jit_style_call, launch,
                      launch_autotuned, launch_from_pointers, make_inputs, reference, storage_elements,
                      to_channel_last_storage)
from .trt_plugins import (CHANNEL_LAST_VECTOR, DECLARED, FP32_LINEAR_PLUGIN, MULTI_FORMAT_PLUGIN, VARIANTS,
                          aot_plugins_available, engine_comparisons, expand_declared, study, trtexec_lines)

__all__ = [
    "COMPILED_OP", "COMPOSED", "CPU_DIRECT", "CUSTOM_OP", "DECLARES_LAYOUT", "FP32_LINEAR_ONLY", "GRAPH_REPLAY",
    "JIT_CALLBACK", "RAW_LAUNCH", "best_and_worst", "device_comparison", "format_bounds", "format_candidates",
    "format_traffic", "host_ratio", "host_words", "measure", "overhead_candidates", "overhead_rows", "speed_rows",
    "tactic_candidates", "times_text", "tolerance", "verify",
    "CLAIMS", "PyTorchResults", "claims", "pytorch_claims", "tensorrt_claims",
    "CPU_CHUNKS", "DEFAULT_TACTIC", "TACTIC_BY_ID", "TACTICS", "Tactic", "autotune_choice", "bias_gelu_kernel",
    "bias_gelu_op", "bytes_moved", "channel_of", "channel_pitch", "compile_ahead_of_time", "composed_bias_gelu",
    "cpu_bias_gelu", "cpu_chunk_label", "from_channel_last_storage", "jit_style_call", "launch", "launch_autotuned",
    "launch_from_pointers", "make_inputs", "reference", "storage_elements", "to_channel_last_storage",
    "CHANNEL_LAST_VECTOR", "DECLARED", "FP32_LINEAR_PLUGIN", "MULTI_FORMAT_PLUGIN", "VARIANTS",
    "aot_plugins_available", "engine_comparisons", "expand_declared", "study", "trtexec_lines",
]
