"""Lab 10 (builder optimization): build effort against run speed, in every compiler the lab finds.

Every compiler trades time spent before the first inference for time saved on every inference after
it. This package measures both sides of that trade on the lab's two models (an MLP and a small CNN):
the compile or build in seconds on the host, kept apart from the steady-state run time measured with
:mod:`common.bench`. Every compiled output is checked against the FP32 model before it is timed.

- :mod:`.models`: the two models per scale, their seeded inputs and FP32 references;
- :mod:`.torch_compile`: ``torch.compile`` modes, Inductor's cache cold and warm;
- :mod:`.kernels_chosen`: which kernels each configuration runs (library or generated), and
  Inductor's autotuning kept out of the output;
- :mod:`.ort_levels`: ONNX Runtime's graph optimization levels;
- :mod:`.trt_study`: TensorRT's optimization levels, the timing cache, tactic knobs and the editable
  timing cache (its file and log plumbing is :mod:`common.trt.tactics`);
- :mod:`.tradeoff`: break-even counts, verdicts and the figures;
- :mod:`.claims`: the lab's claims, one function per section.
"""

from common.trt.tactics import EXAMPLE_AUTOTUNING_LOG, parse_autotuning_log, timing_cache_file

from .claims import COMPILE_CLAIMS, TRT_CLAIMS, claims, compile_claims, ort_claims, tensorrt_claims
from .kernels_chosen import (GENERATED, GENERATED_GEMM, LIBRARY, KernelProfile, aggregate, gemm_summary, kernel_kind,
                             kernel_rows, profile_kernels, quiet_autotuning, short_name, skipped_candidates,
                             skipped_text)
from .models import SIZES, LabModel, convnet, lab_model, mlp, sizes
from .ort_levels import ORT_LEVELS, ORT_SHORT, OrtLevelRun, gelu_fused, optimized_node_counts, ort_level_study, ort_rows
from .torch_compile import (COMPILE_MODES, CompileRun, CompileStudy, cache_rows, cold_warm_rows, compile_and_measure,
                            compile_modes, compile_study, device_comparison, kernel_comparison,
                            warm_up_compiler)
from .effort import SHORT_MODE, break_even_inferences, verdict
from .tradeoff import all_tradeoff_rows, level_plot, tradeoff_plot, tradeoff_rows
from .trt_study import (A100, DEFAULTS, H100, KNOB_VALUES, EngineResult, TensorRTResults, build_and_measure,
                        build_checked, built_trtexec, cache_key_checks, editable_cache_study, engine_trtexec,
                        knob_configs, measure_engines, planned_trtexec, reuse_study, static_config, static_profile,
                        timing_cache_study, trtexec_lines)

__all__ = [
    "EXAMPLE_AUTOTUNING_LOG", "parse_autotuning_log", "timing_cache_file",
    "COMPILE_CLAIMS", "TRT_CLAIMS", "claims", "compile_claims", "ort_claims", "tensorrt_claims",
    "GENERATED", "GENERATED_GEMM", "LIBRARY", "KernelProfile", "aggregate", "gemm_summary", "kernel_kind",
    "kernel_rows", "profile_kernels", "quiet_autotuning", "short_name", "skipped_candidates", "skipped_text",
    "SIZES", "LabModel", "convnet", "lab_model", "mlp", "sizes",
    "ORT_LEVELS", "ORT_SHORT", "OrtLevelRun", "gelu_fused", "optimized_node_counts", "ort_level_study", "ort_rows",
    "COMPILE_MODES", "CompileRun", "CompileStudy", "cache_rows", "cold_warm_rows", "compile_and_measure",
    "compile_modes", "compile_study", "device_comparison", "kernel_comparison", "warm_up_compiler",
    "SHORT_MODE", "all_tradeoff_rows", "break_even_inferences", "level_plot", "tradeoff_plot", "tradeoff_rows",
    "verdict",
    "A100", "DEFAULTS", "H100", "KNOB_VALUES", "EngineResult", "TensorRTResults", "build_and_measure", "build_checked",
    "built_trtexec", "cache_key_checks", "editable_cache_study", "engine_trtexec", "knob_configs", "measure_engines",
    "planned_trtexec", "reuse_study", "static_config", "static_profile", "timing_cache_study", "trtexec_lines",
]
