"""Lab 07 (MatMul and tensor-core alignment) exercises: pad the output dimension of a weight, pad a
convolution's input channels in the ONNX graph, and align every layer of a small MLP."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from common import cases
from common.exercises import Exercise
from common.labs.lab07_matmul_tensor_cores import PaddedMatmul, pad_inner_dimension
from common.onnx import max_relative_error, ort_session, portable


def _check_pad_n(fn) -> str | None:
    for k, n, multiple, dtype in ((64, 63, 8, torch.float32), (33, 100, 8, torch.float16),
                                  (16, 30, 16, torch.float32), (8, 40, 8, torch.float32)):
        weight = cases.random_tensor((k, n), device="cpu", dtype=dtype, seed=n)
        got = fn(weight.clone(), multiple)
        if got is None:
            raise NotImplementedError
        want_shape = (k, cases.padded(n, multiple))
        if tuple(got.shape) != want_shape:
            return (f"a ({k}, {n}) weight, multiple {multiple}: expected shape {want_shape} (N, the columns, padded; "
                    f"K, the rows, unchanged), got {tuple(got.shape)}")
        if got.dtype != dtype:
            return f"a {dtype} weight came back as {got.dtype}: pad in the weight's own precision"
        if not torch.equal(got[:, :n], weight) or bool(got[:, n:].any()):
            return f"a ({k}, {n}) weight: the first {n} columns must be the weight and the added ones zero"
        x = cases.random_tensor((5, k), device="cpu", dtype=torch.float32, seed=1)
        sliced = (x @ got.float())[:, :n]
        if max_relative_error(sliced, x @ weight.float()) > 1e-6:
            return f"a ({k}, {n}) weight: x @ padded, sliced to {n} columns, differs from x @ weight"
    return None


def conv_model(seed: int = 0) -> onnx.ModelProto:
    """Conv 3 -> 16 channels (an RGB input), ReLU, Conv 16 -> 12 (aligned), ReLU, Conv 12 -> 8; 3x3,
    padding 1, FP32, input (2, 3, 10, 10). Shapes inferred, as pad_onnx_file prepares a graph."""
    rng = np.random.default_rng(seed)
    x = gs.Variable("input", dtype=np.float32, shape=(2, 3, 10, 10))
    nodes, h = [], x
    for i, (c_in, c_out) in enumerate(((3, 16), (16, 12), (12, 8))):
        w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
        out = gs.Variable(f"conv{i}", dtype=np.float32)
        bias = (0.1 * rng.standard_normal(c_out)).astype(np.float32)
        nodes.append(gs.Node("Conv", f"conv_{i}", attrs={"pads": [1, 1, 1, 1]},
                             inputs=[h, gs.Constant(f"w{i}", w), gs.Constant(f"b{i}", bias)], outputs=[out]))
        h = out
        if i < 2:
            relu = gs.Variable(f"relu{i}", dtype=np.float32)
            nodes.append(gs.Node("Relu", f"relu_{i}", inputs=[h], outputs=[relu]))
            h = relu
    h.name, h.shape = "output", (2, 8, 10, 10)
    model = portable(gs.export_onnx(gs.Graph(nodes=nodes, inputs=[x], outputs=[h], opset=17)))
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort_session(model.SerializeToString()).run(None, {"input": x})[0]


def _check_conv_pad(fn) -> str | None:
    model = conv_model()
    x = cases.random_tensor((2, 3, 10, 10), device="cpu", dtype=torch.float32, seed=4).numpy()
    before = _run(model, x)
    for multiple in (8, 16):
        got = fn(copy.deepcopy(model), multiple)
        if got is None:
            raise NotImplementedError
        weights = {t.name: tuple(t.dims) for t in got.graph.initializer}
        for node in got.graph.node:
            if node.op_type == "Conv" and len(weights.get(node.input[1], ())) == 4:
                c_in = weights[node.input[1]][1]
                if c_in % multiple:
                    return (f"multiple {multiple}: Conv {node.name!r} still has C_in = {c_in} (weight "
                            f"{weights[node.input[1]]}); pad the weight's axis 1 and the activation's channels")
        if [i.name for i in got.graph.input] != ["input"] or \
                [d.dim_value for d in got.graph.input[0].type.tensor_type.shape.dim] != [2, 3, 10, 10]:
            return "the graph's input must stay (2, 3, 10, 10): pad inside the graph, with a Pad node"
        try:
            after = _run(got, x)
        except Exception as exc:
            return f"multiple {multiple}: ONNX Runtime cannot run the padded graph ({type(exc).__name__}: {str(exc)[:200]})"
        if after.shape != before.shape or max_relative_error(after, before) > 1e-5:
            return (f"multiple {multiple}: the padded graph's output differs from the original's (relative error "
                    f"{max_relative_error(after, before) if after.shape == before.shape else 'shape ' + str(after.shape)}); "
                    "the added channels must be zeros in the activation and in the weight")
    return None


def _mlp(widths: tuple[int, ...], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b, bias=i % 2 == 0))
        if i < len(widths) - 2:
            layers.append(nn.GELU() if i % 2 else nn.ReLU())
    return nn.Sequential(*layers).eval()


def _check_align_mlp(fn) -> str | None:
    for widths, precision in (((30, 45, 61, 10), "fp16"), ((30, 45, 61, 10), "fp8"), ((64, 100, 7), "tf32")):
        model = _mlp(widths, seed=len(widths))
        saved = copy.deepcopy(model.state_dict())
        multiple = cases.ALIGNMENT[precision]
        aligned = fn(model, precision)
        if aligned is None:
            raise NotImplementedError
        if any(not torch.equal(v, model.state_dict()[k]) for k, v in saved.items()):
            return "your function changed the original model: build a new one"
        linears = [m for m in aligned.modules() if isinstance(m, nn.Linear)]
        if len(linears) != len(widths) - 1:
            return f"widths {widths}: expected {len(widths) - 1} Linear layers in the aligned model, found {len(linears)}"
        for layer in linears:
            if layer.in_features % multiple or layer.out_features % multiple:
                return (f"widths {widths}, {precision}: a Linear({layer.in_features}, {layer.out_features}) is not "
                        f"aligned to {multiple}; pad both K (in_features) and N (out_features)")
        x = cases.random_tensor((6, widths[0]), device="cpu", dtype=torch.float32, seed=9)
        with torch.no_grad():
            want, got = model(x), aligned(x)
        if tuple(got.shape) != tuple(want.shape):
            return f"widths {widths}: the aligned model returns shape {tuple(got.shape)}, the original {tuple(want.shape)}"
        if max_relative_error(got, want) > 1e-5:
            return (f"widths {widths}, {precision}: outputs differ (relative error {max_relative_error(got, want):.2e}); "
                    "padded weight rows must be zero, so the padded features, whatever the activation makes of "
                    "them, contribute nothing")
    return None


class _PadK(nn.Module):
    """The counterexample's layer: K padded as PaddedMatmul does, N left as it was."""

    def __init__(self, layer: nn.Linear, multiple: int) -> None:
        super().__init__()
        self.k = layer.in_features
        k_padded = cases.padded(self.k, multiple)
        self.linear = nn.Linear(k_padded, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[:, :self.k] = layer.weight
            if layer.bias is not None:
                self.linear.bias.copy_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.nn.functional.pad(x, (0, self.linear.in_features - self.k)))


def _pad_k_only(model: nn.Sequential, precision: str) -> nn.Sequential:
    multiple = cases.ALIGNMENT[precision]
    return nn.Sequential(*(_PadK(m, multiple) if isinstance(m, nn.Linear) else copy.deepcopy(m) for m in model))


EXERCISES = [
    Exercise("07.1", "guided",
             "pad_output_dim(weight, multiple): a (K, N) weight with zero columns added up to N a multiple.",
             _check_pad_n, counterexample=lambda weight, multiple: PaddedMatmul.from_weight(weight, multiple).weight),
    Exercise("07.2", "practice",
             "pad_conv_channels(model, multiple): pad C_in of every Conv with a constant weight in an ONNX model.",
             _check_conv_pad, counterexample=lambda model, multiple: pad_inner_dimension(model, multiple)[0]),
    Exercise("07.3", "open",
             "align_mlp(model, precision): an equivalent model whose every Linear has K and N aligned for precision.",
             _check_align_mlp, counterexample=_pad_k_only),
]
