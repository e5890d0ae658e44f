"""The precision each layer of a TensorRT engine computes in, read from the engine inspector.

Introduced in lab 08 (low precision), whose engines are built strongly typed from AutoCast and Q/DQ
graphs: what each layer finally runs in is only known from the built engine. :func:`compute_dtype`,
:func:`precision_counts` and :func:`layer_rows` are pure parsing of the inspector's layers, tested
without TensorRT.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .inspect import EngineInfo, LayerInfo

#: Data types of layers that compute in a quantized format.
QUANTIZED_DTYPES = ("INT8", "FP8", "INT4", "FP4")


def compute_dtype(layer: LayerInfo) -> str:
    """The type a layer computes in, as the inspector reports it: its first input's (the activation;
    a Quantize layer's input is the higher-precision tensor, so it reports its output's type), else
    its first output's; "?" when the inspector says neither."""
    if layer.layer_type not in ("Quantize", "Reformat") and layer.inputs and layer.inputs[0].dtype:
        return layer.inputs[0].dtype
    if layer.outputs and layer.outputs[0].dtype:
        return layer.outputs[0].dtype
    return layer.inputs[0].dtype if layer.inputs and layer.inputs[0].dtype else "?"


def precision_counts(info: EngineInfo) -> dict[str, int]:
    """Engine layers per compute type (e.g. {"INT8": 4, "HALF": 2, "FLOAT": 1}), most frequent first."""
    return dict(Counter(compute_dtype(layer) for layer in info.layers).most_common())


def layer_rows(info: EngineInfo) -> list[dict[str, Any]]:
    """One row per engine layer: name, type, compute type, inputs and outputs as TYPE[dims]."""
    return [{"layer": layer.name, "type": layer.layer_type or "?", "computes_in": compute_dtype(layer),
             "inputs": ", ".join(t.short() for t in layer.inputs),
             "outputs": ", ".join(t.short() for t in layer.outputs)} for layer in info.layers]
