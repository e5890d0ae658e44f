"""Lab 09 (2:4 structured sparsity): half the weights, not always half the time.

The notebook imports this package as ``lab``. Its parts:

- :mod:`.pattern`: the 2:4 checker and magnitude pruner, ModelOpt's pruning and export, accuracy rows;
- :mod:`.gemms`: a convolution as the GEMM a sparse kernel computes, checked dense and 2:4 sparse FP16
  products (cuSPARSELt, CUTLASS) and their speedups on the kernels' own time beside the time per call,
  the crossover, zeros in a dense kernel, the speedup plot;
- :mod:`.tensorrt`: the model built dense and with ``SPARSE_WEIGHTS`` (and the trtexec commands for
  both); TensorRT's account of it is
  parsed by :mod:`common.trt.sparsity` (whose documented example and log parser are re-exported here);
- :mod:`.claims`: the claims, as functions of the experiments' :class:`Results`.
"""

from common.trt.sparsity import DOCUMENTED_EXAMPLE, parse_build_log

from .gemms import (BACKENDS, FORMS, GemmShape, LayerStudy, backend_status, best_against_best, case_label,
                    crossover_gflop, crossover_text, device_compare, headline_rows, judged_on, per_call_of,
                    conv_as_gemm, conv_layer_gemms, conv_weight_as_gemm, force_cutlass, gemm_cases,
                    im2col_channels_innermost, layer_inputs, layer_study, model_layer_cases, relative_error,
                    speedup_plot, speedup_rows, sweep_cases, to_semi_structured, zeros_cases, zeros_rows)
from .claims import SPEED_KEYS, Results, claim_texts, claims, pruning_claims, speed_claims, tensorrt_claims
from .pattern import (GROUP, KEEP, PatternCheck, Pruned, accuracy_row, check_2_4, export_sparse, groups_along_input,
                      groups_in_memory_order, is_2_4, magnitude_mask_2_4, modelopt_imported, modelopt_sparsify,
                      pattern_rows, prune_2_4, pruned_layers, weight_layers)
from .tensorrt import ENGINES, engine_configs, onnx_name, tensorrt_sparsity_study, trtexec_commands

__all__ = [
    "DOCUMENTED_EXAMPLE", "parse_build_log",
    "BACKENDS", "FORMS", "GemmShape", "LayerStudy", "backend_status", "best_against_best", "case_label",
    "crossover_gflop", "crossover_text", "device_compare", "headline_rows", "judged_on", "per_call_of",
    "conv_as_gemm", "conv_layer_gemms", "conv_weight_as_gemm", "force_cutlass", "gemm_cases",
    "im2col_channels_innermost", "layer_inputs", "layer_study", "model_layer_cases", "relative_error",
    "speedup_plot", "speedup_rows", "sweep_cases", "to_semi_structured", "zeros_cases", "zeros_rows",
    "SPEED_KEYS", "Results", "claim_texts", "claims", "pruning_claims", "speed_claims", "tensorrt_claims",
    "GROUP", "KEEP", "PatternCheck", "Pruned", "accuracy_row", "check_2_4", "export_sparse", "groups_along_input",
    "groups_in_memory_order", "is_2_4", "magnitude_mask_2_4", "modelopt_imported", "modelopt_sparsify",
    "pattern_rows", "prune_2_4", "pruned_layers", "weight_layers",
    "ENGINES", "engine_configs", "onnx_name", "tensorrt_sparsity_study", "trtexec_commands",
]
