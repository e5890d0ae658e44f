"""Lab 08 (low precision) exercises: INT8 fake quantization, where Q/DQ landed in a graph, and a
mixed-precision plan from a sensitivity sweep."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from common.exercises import Exercise


def _check_fake_quantize(fn) -> str | None:
    from common.datasets import digits

    # real pixels, shifted to take both signs; the last amax clips the largest values
    x = digits().calib.images[:32].flatten(1) * 3.0 - 1.0
    for amax in (float(x.abs().max()), 1.5, 0.8):
        got = fn(x.clone(), amax)
        if got is None:
            raise NotImplementedError
        want = torch.fake_quantize_per_tensor_affine(x, amax / 127, 0, -127, 127)
        got = torch.as_tensor(got, dtype=torch.float32)
        if got.shape != want.shape:
            return f"the output has shape {tuple(got.shape)}, the input {tuple(want.shape)}"
        if not torch.allclose(got, want, atol=1e-5, rtol=0):
            worst = int((got - want).abs().argmax())
            return (f"amax = {amax:.3g}: at x = {float(x.flatten()[worst]):.4f} expected {float(want.flatten()[worst]):.4f}, "
                    f"got {float(got.flatten()[worst]):.4f}. Scale = amax / 127, round to the nearest step, and clamp "
                    "to [-127, 127] steps: values beyond amax saturate.")
    return None


def _tensor(name: str, values) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def _qdq(prefix: str, source: str, scale: str, zero: str) -> list:
    return [helper.make_node("QuantizeLinear", [source, scale, zero], [f"{prefix}_q"], name=f"{prefix}_Q"),
            helper.make_node("DequantizeLinear", [f"{prefix}_q", scale, zero], [f"{prefix}_dq"], name=f"{prefix}_DQ")]


def qdq_example_graphs() -> list[tuple[onnx.ModelProto, dict[str, int]]]:
    """Two small Q/DQ graphs and, for each, the nodes (per op type) that read a dequantized tensor."""
    scale, zero = _tensor("s", 0.05), numpy_helper.from_array(np.array(0, dtype=np.int8), "z")
    conv_w, gemm_w = _tensor("conv_w", np.ones((4, 1, 3, 3)) * 0.1), _tensor("gemm_w", np.ones((10, 4)) * 0.1)
    a_nodes = (_qdq("in", "x", "s", "z") + _qdq("w", "conv_w", "s", "z") + [
        helper.make_node("Conv", ["in_dq", "w_dq"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu")] + _qdq("r", "r", "s", "z") + [
        helper.make_node("MaxPool", ["r_dq"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "gemm_w"], ["y"], name="gemm", transB=1)])
    b_nodes = (_qdq("w", "gemm_w", "s", "z") + _qdq("u", "x2", "s", "z") + _qdq("v", "x3", "s", "z") + [
        helper.make_node("Gemm", ["x1", "w_dq"], ["g"], name="gemm", transB=1),
        helper.make_node("Add", ["u_dq", "v_dq"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y2"], name="relu")])
    graphs = []
    for name, nodes, inputs, outputs, inits, answer in (
        ("a", a_nodes, [("x", [1, 1, 8, 8])], [("y", [1, 10])], [scale, zero, conv_w, gemm_w], {"Conv": 1, "MaxPool": 1}),
        ("b", b_nodes, [("x1", [2, 4]), ("x2", [2, 10]), ("x3", [2, 10])], [("g", [2, 10]), ("y2", [2, 10])],
         [scale, zero, gemm_w], {"Gemm": 1, "Add": 1}),
    ):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
        model.ir_version = 9
        graphs.append((model, answer))
    return graphs


def _check_dequantized_consumers(fn) -> str | None:
    for model, want in qdq_example_graphs():
        got = fn(model)
        if got is None:
            raise NotImplementedError
        got = {k: int(v) for k, v in dict(got).items() if v}
        if got != want:
            return (f"graph {model.graph.name!r}: expected {want}, got {got}. Count nodes (not Q/DQ nodes themselves) "
                    "with at least one input produced by a DequantizeLinear node, per op type.")
    return None


def _check_layers_to_keep(fn) -> str | None:
    cases = (
        ({"conv1": 0.2, "conv2": 3.0, "conv3": 0.5, "fc": 1.5}, 1.0, 2),
        ({"conv1": -0.2, "conv2": 0.4}, 0.0, 1),          # a negative drop is noise: it cannot pay for conv2
        ({"conv1": 0.3, "conv2": 0.2}, 1.0, 0),
        ({"a": 0.6, "b": 0.6, "c": 0.6, "d": 0.1}, 0.5, 3),
    )
    for drops, budget, fewest in cases:
        got = fn(dict(drops), budget)
        if got is None:
            raise NotImplementedError
        kept = list(got)
        if not set(kept) <= set(drops):
            return f"drops {drops}: you kept {kept}, which names layers that are not in the sweep"
        remaining = sum(d for layer, d in drops.items() if layer not in kept)
        if remaining > budget + 1e-9:
            return (f"drops {drops}, budget {budget}: keeping {kept} leaves {remaining:.2f} points of loss, "
                    "more than the budget")
        if len(set(kept)) != fewest:
            return (f"drops {drops}, budget {budget}: {fewest} layer(s) kept in high precision are enough, you kept "
                    f"{len(set(kept))} ({kept}). Which layers buy back the most per layer kept?")
    return None


def _consumers_of_any_qdq(model):
    # plausible but wrong: also counts the DequantizeLinear nodes, which read a QuantizeLinear output
    qdq_outputs = {o for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for o in n.output}
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if any(i in qdq_outputs for i in node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _keep_in_listed_order(drops, budget):
    kept = []
    for layer in drops:
        if sum(d for name, d in drops.items() if name not in kept) <= budget:
            break
        kept.append(layer)
    return kept


EXERCISES = [
    Exercise("08.1", "guided",
             "fake_quantize_int8(x, amax): symmetric per-tensor INT8 quantize-dequantize of x with range amax.",
             _check_fake_quantize,
             counterexample=lambda x, amax: torch.round(x / (amax / 127)) * (amax / 127)),
    Exercise("08.2", "practice",
             "dequantized_consumers(model): per op type, how many nodes read a DequantizeLinear output.",
             _check_dequantized_consumers,
             counterexample=_consumers_of_any_qdq),
    Exercise("08.3", "open",
             "layers_to_keep(drops, budget_pts): the fewest layers to keep in high precision so the rest lose "
             "at most budget_pts (drops assumed to add up).",
             _check_layers_to_keep, counterexample=_keep_in_listed_order),
]
