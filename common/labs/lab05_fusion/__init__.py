"""Lab 05 (fusion): graph rewrites with onnx-graphsurgeon, and one hand-written fused kernel.

A small package; the notebook imports it as ``from common.labs import lab05_fusion as lab``:

- :mod:`.graphs`: the two models (:class:`ConvResidualNet`, :class:`NormNet`), the rewrites
  (:func:`plant_transpose_pairs`, :func:`remove_inverse_transposes`, :func:`fuse_layernorm`, which
  writes the custom op ``trtlabs::FusedLayerNorm`` or its standard twin ``LayerNormalization``) and
  ONNX Runtime's view of them (:func:`ort_optimized_node_count`, :func:`ort_timing_rows`);
- :mod:`.layernorm`: the same LayerNorm in PyTorch four ways, with the Triton kernel of
  :mod:`common.kernels` behind a ``torch.library`` custom op (:func:`fused_layernorm_op`), verified
  (:func:`verify_layernorm`) and timed against the copy bandwidth (:func:`layernorm_rows`);
- :mod:`.study`: the TensorRT study, run only where TensorRT is installed (:func:`tensorrt_study`),
  and the lab's claims (:func:`tensorrt_claims`, :func:`claims` of a :class:`FusionResults`).
"""

from .graphs import (DECOMPOSED_OPS, EPS, PLUGIN_DOMAIN, PLUGIN_OP, ConvResidualNet, DecomposedLayerNorm, NormNet,
                     before_after_verdicts, decomposed_layernorm, fuse_layernorm, load_graph, onnx_node_count,
                     ort_optimized_node_count, ort_output, ort_timing_rows, plant_transpose_pairs,
                     remove_inverse_transposes, rewrite, save_graph, seeded)
from .layernorm import (COMPILED, DECOMPOSED, TORCH_LAYER_NORM, TRITON, fused_layernorm_op, layernorm_bytes,
                        layernorm_candidates, layernorm_inputs, layernorm_rows, measure_candidates,
                        verify_layernorm, versus_decomposed)
from .study import CLAIMS, TRT_CLAIMS, FusionResults, claims, tensorrt_claims, tensorrt_rows, tensorrt_study

__all__ = [
    "DECOMPOSED_OPS", "EPS", "PLUGIN_DOMAIN", "PLUGIN_OP", "ConvResidualNet", "DecomposedLayerNorm", "NormNet",
    "before_after_verdicts", "decomposed_layernorm", "fuse_layernorm", "load_graph", "onnx_node_count",
    "ort_optimized_node_count", "ort_output", "ort_timing_rows", "plant_transpose_pairs",
    "remove_inverse_transposes", "rewrite", "save_graph", "seeded",
    "COMPILED", "DECOMPOSED", "TORCH_LAYER_NORM", "TRITON", "fused_layernorm_op", "layernorm_bytes",
    "layernorm_candidates", "layernorm_inputs", "layernorm_rows", "measure_candidates",
    "verify_layernorm", "versus_decomposed",
    "CLAIMS", "TRT_CLAIMS", "FusionResults", "claims", "tensorrt_claims", "tensorrt_rows", "tensorrt_study",
]
