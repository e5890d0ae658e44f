"""Worked solutions to lab 05's exercises (checked by tests/test_exercises.py)."""

import numpy as np
import onnx_graphsurgeon as gs


def _constant(tensor) -> np.ndarray | None:
    """The value of an initializer or of a Constant node's output, else None."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        return np.asarray(tensor.inputs[0].attrs["value"].values)
    return None


def _bypass(old, new, graph) -> None:
    """Every reader of tensor `old` (a node input or a graph output) reads `new` instead."""
    for node in list(old.outputs):
        node.inputs = [new if t is old else t for t in node.inputs]
    graph.outputs = [new if t is old else t for t in graph.outputs]


def exercise_1(graph) -> int:
    removed = 0
    for unsqueeze in [n for n in graph.nodes if n.op == "Unsqueeze"]:
        middle = unsqueeze.outputs[0]
        readers = list(middle.outputs)
        if len(readers) != 1 or readers[0].op != "Squeeze" or middle in graph.outputs:
            continue   # another reader needs the unsqueezed tensor: keep the pair
        squeeze = readers[0]
        inserted, dropped = _constant(unsqueeze.inputs[1]), _constant(squeeze.inputs[1])
        if inserted is None or dropped is None or sorted(inserted.tolist()) != sorted(dropped.tolist()):
            continue   # the Squeeze removes other axes: not a no-op
        _bypass(squeeze.outputs[0], unsqueeze.inputs[0], graph)
        unsqueeze.outputs.clear()   # cleanup() then drops both nodes
        squeeze.outputs.clear()
        removed += 1
    return removed


def exercise_2(rows: int, cols: int, element_size: int) -> tuple[int, int]:
    full, per_row, per_col = rows * cols, rows, cols
    reads_writes = [
        full + per_row,                  # ReduceMean(x) -> mean
        full + per_row + full,           # Sub(x, mean) -> centred
        full + full,                     # Pow(centred, 2)
        full + per_row,                  # ReduceMean -> variance
        per_row + per_row,               # Add(variance, eps)
        per_row + per_row,               # Sqrt -> std
        full + per_row + full,           # Div(centred, std)
        full + per_col + full,           # Mul(., weight)
        full + per_col + full,           # Add(., bias)
    ]
    fused = 2 * full + 2 * per_col       # read x, weight, bias once; write y once
    return sum(reads_writes) * element_size, fused * element_size


def _readers(tensor) -> list:
    """The nodes that read `tensor`, each once (a node reading it twice is listed twice)."""
    readers: list = []
    for node in tensor.outputs:
        if not any(node is seen for seen in readers):
            readers.append(node)
    return readers


def _sole_reader(tensor, op: str):
    readers = _readers(tensor)
    return readers[0] if len(readers) == 1 and readers[0].op == op else None


def _last_axis(node) -> bool:
    return list(node.attrs.get("axes", [])) == [-1] and node.attrs.get("keepdims", 1) == 1


def _match(mean):
    """x -> ReduceMean -> Sub -> {Mul(c, c) -> ReduceMean -> Add eps -> Sqrt -> Reciprocal, Mul(c, r)}
    -> Mul(weight) -> Add(bias), each step checked; None where the graph differs anywhere."""
    x = mean.inputs[0]
    sub = _sole_reader(mean.outputs[0], "Sub")
    if not _last_axis(mean) or sub is None or sub.inputs[0] is not x:
        return None
    centred = sub.outputs[0]
    readers = _readers(centred)
    square = next((n for n in readers if n.op == "Mul" and n.inputs[0] is centred and n.inputs[1] is centred), None)
    scale = next((n for n in readers if n.op == "Mul" and n is not square), None)
    if len(readers) != 2 or square is None or scale is None:
        return None
    chain, tensor = [], square.outputs[0]
    for op in ("ReduceMean", "Add", "Sqrt", "Reciprocal"):
        node = _sole_reader(tensor, op)
        if node is None:
            return None
        chain.append(node)
        tensor = node.outputs[0]
    variance, add_eps, sqrt, reciprocal = chain
    eps = _constant(add_eps.inputs[1])
    if not _last_axis(variance) or eps is None or eps.size != 1 or _sole_reader(tensor, "Mul") is not scale:
        return None
    mul_weight = _sole_reader(scale.outputs[0], "Mul")
    add_bias = _sole_reader(mul_weight.outputs[0], "Add") if mul_weight is not None else None
    if add_bias is None:
        return None
    weight, bias = mul_weight.inputs[1], add_bias.inputs[1]
    if not (isinstance(weight, gs.Constant) and isinstance(bias, gs.Constant) and weight.values.ndim == 1
            and tuple(weight.shape) == tuple(bias.shape)):
        return None
    return {"x": x, "weight": weight, "bias": bias, "epsilon": float(eps.reshape(())), "output": add_bias.outputs[0],
            "nodes": [mean, sub, square, variance, add_eps, sqrt, reciprocal, scale, mul_weight, add_bias]}


def exercise_3(graph) -> int:
    # an RMSNorm has the same tail but no Sub of the mean: the match starts at the mean, so it never matches
    matches = [m for node in graph.nodes if node.op == "ReduceMean" and (m := _match(node))]
    for i, match in enumerate(matches):
        for node in match["nodes"]:
            node.outputs.clear()
        graph.nodes.append(gs.Node("LayerNormalization", name=f"layernorm_{i}",
                                   inputs=[match["x"], match["weight"], match["bias"]], outputs=[match["output"]],
                                   attrs={"axis": -1, "epsilon": match["epsilon"]}))
    return len(matches)
