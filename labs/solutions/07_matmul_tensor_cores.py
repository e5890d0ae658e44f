"""Worked solutions to lab 07's exercises (checked by tests/test_exercises.py)."""

import copy

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
import torch.nn.functional as F
from torch import nn

from common import cases
from common.onnx import portable


def exercise_1(weight: torch.Tensor, multiple: int) -> torch.Tensor:
    k, n = weight.shape
    # zero columns at the end: the extra outputs are x @ 0 = 0, sliced off after the product
    return F.pad(weight, (0, cases.padded(n, multiple) - n)).contiguous()


def exercise_2(model: onnx.ModelProto, multiple: int) -> onnx.ModelProto:
    graph = gs.import_onnx(model)
    for node in list(graph.nodes):
        if node.op != "Conv" or not isinstance(node.inputs[1], gs.Constant) or node.attrs.get("group", 1) != 1:
            continue
        weight = node.inputs[1].values                        # (C_out, C_in, kh, kw)
        c_in = weight.shape[1]
        extra = cases.padded(c_in, multiple) - c_in
        if extra == 0:
            continue
        node.inputs[1] = gs.Constant(f"{node.inputs[1].name}_padded_c{c_in + extra}",
                                     np.pad(weight, [(0, 0), (0, extra), (0, 0), (0, 0)]))
        activation = node.inputs[0]
        rank = len(activation.shape)
        pads = np.zeros(2 * rank, dtype=np.int64)
        pads[rank + 1] = extra                                # [begins..., ends...]: the end of axis 1 (C)
        padded_activation = gs.Variable(f"{activation.name}_padded_c{c_in + extra}", dtype=activation.dtype)
        graph.nodes.append(gs.Node("Pad", f"{node.name}_pad_c", attrs={"mode": "constant"},
                                   inputs=[activation, gs.Constant(f"{node.name}_pads", pads)],
                                   outputs=[padded_activation]))
        node.inputs[0] = padded_activation
    graph.cleanup().toposort()
    return portable(gs.export_onnx(graph))


class _Pad(nn.Module):
    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, self.extra))


class _Slice(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :self.features]


def exercise_3(model: nn.Sequential, precision: str) -> nn.Module:
    # Pad every width once: a layer's zero output columns (zero bias) become the next layer's extra
    # input features, which meet zero weight rows, so whatever the activation makes of them adds
    # nothing. Only the network's input needs a Pad and its output a slice.
    multiple = cases.ALIGNMENT[precision]
    layers: list[nn.Module] = []
    first_in = last_out = None
    for module in model:
        if not isinstance(module, nn.Linear):
            layers.append(copy.deepcopy(module))
            continue
        k, n = module.in_features, module.out_features
        first_in = k if first_in is None else first_in
        last_out = n
        aligned = nn.Linear(cases.padded(k, multiple), cases.padded(n, multiple), bias=module.bias is not None)
        with torch.no_grad():
            aligned.weight.zero_()
            aligned.weight[:n, :k] = module.weight
            if module.bias is not None:
                aligned.bias.zero_()
                aligned.bias[:n] = module.bias
        layers.append(aligned)
    return nn.Sequential(_Pad(cases.padded(first_in, multiple) - first_in), *layers, _Slice(last_out)).eval()
