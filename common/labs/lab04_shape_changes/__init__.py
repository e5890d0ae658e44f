"""Lab 04 (shape changes): what the first run after a shape or profile change costs, and how to keep
it off the serving path.

The lab imports this package as ``from common.labs import lab04_shape_changes as lab``; its parts:

- :mod:`.switching`: targets, the switching study (:func:`switch_study`) and its summary
  (:class:`FirstRunSummary`), the steady state with the harness (:func:`steady_state_rows`) and what
  stands out in it (:func:`standing_out`), PyTorch and ONNX Runtime targets, references, the
  distribution plot;
- :mod:`.recompiles`: `torch.compile`'s recompiles per new shape, static against dynamic
  (:func:`compile_study`), with kernel time and regimes (:func:`compile_steady_rows`, :func:`compile_notes`);
- :mod:`.tensorrt_path`: TensorRT targets over a :class:`common.trt.EngineRunner` (a shape change, a
  profile switch, one context per profile), their memory, the width of profiles, a context per
  ``ExecutionContextAllocationStrategy`` (:func:`allocation_strategy_study`) and the trtexec commands;
- :mod:`.claims`: the claims, one function per section (:func:`switch_claims`,
  :func:`compile_claims`, :func:`tensorrt_claims`).
"""

from .claims import (COMPILE_CLAIMS, LAB, NEW_SHAPE_CLAIM, SEEN_SHAPES_CLAIM, TRT_CLAIMS, compile_claims,
                     switch_claims, tensorrt_claims)
from .recompiles import (CompileStudy, compile_notes, compile_steady_rows, compile_study, eager_steady,
                         geometric_speedup, graphs_compiled)
from .switching import (FIRST, NOTICEABLE, STANDS_OUT, STEADY, FirstRunSummary, SwitchStudy, Target, alternating,
                        cnn_inputs, distribution_plot, geometric_mean, ort_targets, reference_outputs, relative_errors,
                        standing_out, standing_out_keys, steady_state_rows, switch_study, timed_call_ms, tolerance, torch_outputs,
                        torch_targets)
from .tensorrt_path import (HOW, STRATEGIES, Binding, allocation_rows_for_table, allocation_strategy_study,
                            build_engines, build_summary, engine_outputs, engine_width_study, profile_index_for,
                            profile_width_study, strategy_member, tensorrt_backend, trt_memory_rows,
                            trt_switch_studies, trt_targets, trtexec_commands, verify_engines)

__all__ = [
    "COMPILE_CLAIMS", "FIRST", "HOW", "LAB", "NEW_SHAPE_CLAIM", "NOTICEABLE", "SEEN_SHAPES_CLAIM", "STANDS_OUT",
    "STEADY", "STRATEGIES", "TRT_CLAIMS", "Binding", "CompileStudy", "FirstRunSummary", "SwitchStudy", "Target",
    "allocation_rows_for_table", "allocation_strategy_study", "alternating", "compile_notes", "geometric_speedup",
    "standing_out", "standing_out_keys", "steady_state_rows", "strategy_member", "trtexec_commands",
    "build_engines", "build_summary", "cnn_inputs", "compile_claims", "compile_steady_rows", "compile_study", "distribution_plot",
    "eager_steady", "engine_outputs", "engine_width_study", "geometric_mean", "graphs_compiled", "ort_targets", "profile_index_for",
    "profile_width_study", "reference_outputs", "relative_errors", "switch_claims", "switch_study",
    "tensorrt_backend", "tensorrt_claims", "timed_call_ms", "tolerance", "torch_outputs", "torch_targets", "trt_memory_rows",
    "trt_switch_studies", "trt_targets", "verify_engines",
]
