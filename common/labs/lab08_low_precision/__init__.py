"""Lab 08 (low precision): FP16, BF16, INT8 and FP8, by PTQ and QAT, and where they do not pay.

The notebook imports this package as ``lab``. Its parts:

- :mod:`.precision`: AutoCast FP16/BF16 graphs and the nodes they keep in FP32, ONNX Runtime scoring,
  one model at FP32/TF32/FP16/BF16 in PyTorch, FP8/INT8 products and layers, Q/DQ-wrapped convolutions;
- :mod:`.quantization`: ModelOpt PTQ, QAT, per-layer sensitivity, ONNX PTQ, where Q/DQ landed;
- :mod:`.tensorrt`: the strongly typed engines of every graph, their trtexec commands, Polygraphy's
  TensorRT-against-ONNX-Runtime check and per-layer profiles (the inspector's types are parsed by
  :mod:`common.trt.precision`);
- :mod:`.claims`: the claims, as functions of the experiments' :class:`Results`.
"""

from .claims import GPU_SPEED_KEYS, TRT_KEYS, Results, accuracy_claims, claim_texts, claims, speed_claims, tensorrt_claims
from .precision import (FP8_MAX, LAYOUTS, AutocastResult, ToolOutput, autocast, autocast_logits, best_layouts,
                        captured_modelopt_output, ceiling_ratios, ceiling_shares, device_compare, fp8_fake_quantize,
                        fp8_linear_stack_fn, fp32_compute_nodes, gpu_math_defaults, int8_case, judged_on,
                        layout_comparisons, linear_stack, linear_stack_cases, model_case, model_flops,
                        node_output_absmax, ort_logits, precision_cases, precision_speedups, qdq_wrapped, score,
                        speed_rows, throughput_plot, with_kernel_fields, write_calibration_npz)
from .quantization import (DQ_OPS, FORMATS, ONNX_FP8_SCALE_FACTOR, QDQ_OPS, QUANT_MAX, activation_ranges,
                           activation_scales, config, fp8_scale_check, mixed_precision_plan, mtq, onnx_ptq,
                           placement_table, ptq, qat, qdq_counts, qdq_placement, quantized_layers, quantized_only,
                           quantizer_summary, quantizers, sensitivity)
from .tensorrt import (ENGINE_FILES, engine_config, engine_labels, polygraphy_check, polygraphy_command,
                       slowest_layers, tensorrt_graphs, tensorrt_study, trtexec_commands)

__all__ = [
    "GPU_SPEED_KEYS", "TRT_KEYS", "Results", "accuracy_claims", "claim_texts", "claims", "speed_claims", "tensorrt_claims",
    "FP8_MAX", "LAYOUTS", "AutocastResult", "ToolOutput", "autocast", "autocast_logits", "best_layouts",
    "captured_modelopt_output", "ceiling_ratios", "ceiling_shares", "device_compare", "fp8_fake_quantize", "fp8_linear_stack_fn", "fp32_compute_nodes",
    "gpu_math_defaults", "int8_case", "judged_on", "layout_comparisons", "linear_stack", "linear_stack_cases",
    "model_case", "model_flops", "node_output_absmax", "ort_logits", "precision_cases", "precision_speedups", "qdq_wrapped", "score",
    "speed_rows", "throughput_plot", "with_kernel_fields", "write_calibration_npz",
    "DQ_OPS", "FORMATS", "ONNX_FP8_SCALE_FACTOR", "QDQ_OPS", "QUANT_MAX", "activation_ranges", "activation_scales",
    "config", "fp8_scale_check", "mixed_precision_plan", "mtq", "onnx_ptq", "placement_table", "ptq", "qat",
    "qdq_counts", "qdq_placement", "quantized_layers", "quantized_only", "quantizer_summary", "quantizers",
    "sensitivity",
    "ENGINE_FILES", "engine_config", "engine_labels", "polygraphy_check", "polygraphy_command", "slowest_layers",
    "tensorrt_graphs", "tensorrt_study", "trtexec_commands",
]
