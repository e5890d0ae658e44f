"""Lab 05 (fusion): graph rewrites with onnx-graphsurgeon, and one hand-written fused kernel.

A small package; the notebook imports it as ``from common.labs import lab05_fusion as lab``:

- :mod:`.graphs`: the two models (:class:`ConvResidualNet`, :class:`NormNet`), the rewrites
  (:func:`plant_transpose_pairs`, :func:`remove_inverse_transposes`, :func:`fuse_layernorm`, which
  writes the custom op ``trtlabs::FusedLayerNorm`` or its standard twin ``LayerNormalization``) and
  ONNX Runtime's view of them (:func:`ort_optimized_node_count`, :func:`ort_timing_rows`);
- :mod:`.compiled`: the GPU counterpart of the planted pairs, the conv network with and without them
  in eager PyTorch and under ``torch.compile``, with CUPTI's kernel count and kernel time
  (:func:`compile_study`);
- :mod:`.layernorm`: the same LayerNorm in PyTorch four ways, with the Triton kernel of
  :mod:`common.kernels` behind a ``torch.library`` custom op (:func:`fused_layernorm_op`), verified
  (:func:`verify_layernorm`) and timed against the copy bandwidth (:func:`layernorm_rows`);
- :mod:`.study`: the TensorRT study, run only where TensorRT is installed (:func:`tensorrt_study`: layers
  from the inspector, the per-layer profile, kernel time), its trtexec commands (:func:`trtexec_commands`),
  and the lab's claims (:func:`tensorrt_claims`, :func:`claims` of a :class:`FusionResults`).
"""

from .graphs import (DECOMPOSED_OPS, EPS, PLUGIN_DOMAIN, PLUGIN_OP, ConvResidualNet, DecomposedLayerNorm, NormNet,
                     before_after_verdicts, decomposed_layernorm, fuse_layernorm, load_graph, onnx_node_count,
                     ort_optimized_node_count, ort_output, ort_timing_rows, plant_transpose_pairs,
                     remove_inverse_transposes, rewrite, save_graph, seeded)
from .compiled import (COMPILE_MODE, EAGER_MODE, PLANTED, REWRITTEN, compile_candidates, compile_study,
                       kernels_per_iteration, rewrite_verdicts, verify_candidates)
from .layernorm import (COMPILED, DECOMPOSED, TORCH_LAYER_NORM, TRITON, fused_layernorm_op, layernorm_bytes,
                        layernorm_candidates, layernorm_inputs, layernorm_rows, measure_candidates, timed_on,
                        verify_layernorm, versus_decomposed)
from .study import (CLAIMS, TRT_CLAIMS, TRT_GRAPHS, FusionResults, build_config, claims, tensorrt_claims,
                    tensorrt_rows, tensorrt_study, trtexec_commands)

__all__ = [
    "DECOMPOSED_OPS", "EPS", "PLUGIN_DOMAIN", "PLUGIN_OP", "ConvResidualNet", "DecomposedLayerNorm", "NormNet",
    "before_after_verdicts", "decomposed_layernorm", "fuse_layernorm", "load_graph", "onnx_node_count",
    "ort_optimized_node_count", "ort_output", "ort_timing_rows", "plant_transpose_pairs",
    "remove_inverse_transposes", "rewrite", "save_graph", "seeded",
    "COMPILE_MODE", "EAGER_MODE", "PLANTED", "REWRITTEN", "compile_candidates", "compile_study",
    "kernels_per_iteration", "rewrite_verdicts", "verify_candidates",
    "COMPILED", "DECOMPOSED", "TORCH_LAYER_NORM", "TRITON", "fused_layernorm_op", "layernorm_bytes",
    "layernorm_candidates", "layernorm_inputs", "layernorm_rows", "measure_candidates", "timed_on",
    "verify_layernorm", "versus_decomposed",
    "CLAIMS", "TRT_CLAIMS", "TRT_GRAPHS", "FusionResults", "build_config", "claims", "tensorrt_claims",
    "tensorrt_rows", "tensorrt_study", "trtexec_commands",
]
