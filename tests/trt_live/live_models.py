"""Tiny ONNX models the live TensorRT tests build their engines from, written with onnx.helper.

Each is small enough to build in a second or two; ONNX Runtime (CPU) gives the FP32 reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
WIDTH = 64


def _save(model: onnx.ModelProto, path: Path, external: bool = False) -> Path:
    onnx.checker.check_model(model)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".weights", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def _weights(seed: int, *shape: int, scale: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def mlp(path: Path, *, seed: int = 0, width: int = WIDTH, external: bool = False,
        batch: str | int = "batch") -> Path:
    """input [batch, width] -> MatMul, Add, Relu, MatMul -> output [batch, width]."""
    inits = [numpy_helper.from_array(_weights(seed, width, width), "w1"),
             numpy_helper.from_array(_weights(seed + 1, width), "b1"),
             numpy_helper.from_array(_weights(seed + 2, width, width), "w2")]
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["output"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, width])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path, external)


def two_branches(path: Path, *, width: int = 256) -> Path:
    """Two independent MatMul chains joined by an Add: work TensorRT can put on an auxiliary stream."""
    inits, nodes = [], []
    for branch in ("a", "b"):
        previous = "input"
        for i in range(3):
            name = f"{branch}{i}"
            inits.append(numpy_helper.from_array(_weights(hash(name) % 1000, width, width, scale=0.05), f"w_{name}"))
            nodes += [helper.make_node("MatMul", [previous, f"w_{name}"], [f"m_{name}"]),
                      helper.make_node("Relu", [f"m_{name}"], [f"r_{name}"])]
            previous = f"r_{name}"
    nodes.append(helper.make_node("Add", ["r_a2", "r_b2"], ["output"]))
    graph = helper.make_graph(nodes, "branches", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def quantized_mlp(path: Path, precision: str, *, seed: int = 0, width: int = WIDTH) -> Path:
    """The MLP with explicit Q/DQ on the activations and weights (INT8 or FP8 E4M3), per-tensor scales."""
    qtype = {"int8": TensorProto.INT8, "fp8": TensorProto.FLOAT8E4M3FN}[precision]
    qmax = {"int8": 127.0, "fp8": 448.0}[precision]
    w1, b1, w2 = _weights(seed, width, width), _weights(seed + 1, width), _weights(seed + 2, width, width)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")]
    nodes = []

    def qdq(tensor: str, absmax: float) -> str:
        scale, zero = f"{tensor}_scale", f"{tensor}_zero"
        inits.extend([numpy_helper.from_array(np.array(absmax / qmax, np.float32), scale),
                      helper.make_tensor(zero, qtype, [], [0])])
        nodes.extend([helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}_q"]),
                      helper.make_node("DequantizeLinear", [f"{tensor}_q", scale, zero], [f"{tensor}_dq"])])
        return f"{tensor}_dq"

    x, w1q = qdq("input", 4.0), qdq("w1", float(np.abs(w1).max()))
    nodes += [helper.make_node("MatMul", [x, w1q], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
              helper.make_node("Relu", ["hb"], ["r"])]
    r, w2q = qdq("r", 4.0), qdq("w2", float(np.abs(w2).max()))
    nodes.append(helper.make_node("MatMul", [r, w2q], ["output"]))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)


def broken(path: Path) -> Path:
    """A model whose second node is an op no parser knows."""
    nodes = [helper.make_node("Relu", ["input"], ["r"], name="first_relu"),
             helper.make_node("NoSuchOperator", ["r"], ["output"], name="the_unknown_node")]
    graph = helper.make_graph(nodes, "broken", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.save_model(model, str(path))   # not checked: the checker would refuse the unknown op
    return path


def sparse_matmul(path: Path, *, width: int = 512) -> Path:
    """A MatMul whose constant weights follow the 2:4 pattern along the reduction axis."""
    w = _weights(7, width, width)
    groups = w.T.reshape(width, width // 4, 4)   # each output column, in groups of 4 along K
    smallest = np.argsort(np.abs(groups), axis=-1)[..., :2]
    np.put_along_axis(groups, smallest, 0.0, axis=-1)
    w = groups.reshape(width, width).T.copy()
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["output"], name="sparse_gemm")], "sparse",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
                              [numpy_helper.from_array(w, "w")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def layernorm(path: Path, *, plugin: bool, width: int = 256, eps: float = 1e-5) -> Path:
    """LayerNorm over the last axis: the standard op, or the course's "trtlabs::FusedLayerNorm" plugin node.

    The plugin node carries ``plugin_namespace`` as well as its domain: before 10.10 the ONNX parser
    reads the namespace from that attribute only.
    """
    inits = [numpy_helper.from_array(1.0 + _weights(3, width), "weight"), numpy_helper.from_array(_weights(4, width), "bias")]
    if plugin:
        node = helper.make_node("FusedLayerNorm", ["input", "weight", "bias"], ["output"], domain="trtlabs",
                                epsilon=eps, plugin_namespace="trtlabs")
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("trtlabs", 1)]
    else:
        node = helper.make_node("LayerNormalization", ["input", "weight", "bias"], ["output"], axis=-1, epsilon=eps)
        opsets = [helper.make_opsetid("", OPSET)]
    graph = helper.make_graph([node], "layernorm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [8, width])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [8, width])], inits)
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.save_model(model, str(path))
    return path


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's FP32 output on the CPU: the reference every engine is checked against."""
    from common.onnx import ort_session

    session = ort_session(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
