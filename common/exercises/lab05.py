"""Lab 05 (fusion) exercises: a graph rewrite that removes a no-op pair, the memory traffic fusion
saves, and a matcher for a LayerNorm written another way. The rewrites are checked on small graphs
built here: node counts, and ONNX Runtime's outputs before and after."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from common.labs import lab05_fusion
from common.exercises import Exercise
from common.onnx import max_relative_error, ort_session, portable

OPSET = 17


def _const(name: str, value) -> gs.Constant:
    return gs.Constant(name, np.asarray(value))


class _Builder:
    """A few helpers to write a small onnx-graphsurgeon graph node by node."""

    def __init__(self) -> None:
        self.nodes: list[gs.Node] = []
        self.count = 0

    def op(self, op: str, *inputs, **attrs) -> gs.Variable:
        self.count += 1
        out = gs.Variable(f"{op.lower()}_{self.count}", dtype=np.float32)
        self.nodes.append(gs.Node(op, name=f"{op}_{self.count}", inputs=list(inputs), outputs=[out], attrs=attrs))
        return out


def _model(builder: _Builder, inputs: list[gs.Variable], outputs: list[tuple[gs.Variable, tuple]]) -> onnx.ModelProto:
    for out, shape in outputs:
        out.shape = shape
    graph = gs.Graph(nodes=builder.nodes, inputs=inputs, outputs=[out for out, _ in outputs], opset=OPSET)
    model = portable(gs.export_onnx(graph.cleanup().toposort()))
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort_session(model.SerializeToString(), level="disabled")   # run the graph as written
    return session.run(None, {session.get_inputs()[0].name: x})


def _apply(fn, model: onnx.ModelProto) -> tuple[object, onnx.ModelProto | str]:
    """Run the learner's rewrite on a graph of `model`; the rewritten model, or what went wrong saving it."""
    graph = gs.import_onnx(model)
    result = fn(graph)
    try:
        return result, portable(gs.export_onnx(graph.cleanup().toposort()))
    except Exception as exc:   # a rewrite that leaves a broken graph: say so, as a wrong answer
        return result, f"the rewritten graph cannot be saved ({type(exc).__name__}: {exc})"


def _compare(original: onnx.ModelProto, rewritten: onnx.ModelProto, x: np.ndarray, rtol: float) -> str | None:
    try:
        after = _run(rewritten, x)
    except Exception as exc:
        return f"ONNX Runtime cannot run the rewritten graph ({type(exc).__name__}: {str(exc)[:200]})"
    before = _run(original, x)
    for i, (b, a) in enumerate(zip(before, after)):
        if a.shape != b.shape:
            return f"output {i} changed shape: {b.shape} -> {a.shape}"
        error = max_relative_error(a, b)
        if not error <= rtol:
            return f"output {i} changed: relative error {error:.2e} against the original graph (allowed {rtol:g})"
    return None


# -- 05.1: an Unsqueeze/Squeeze pair -------------------------------------------------------------

def unsqueeze_pair_model(blocks: int = 3, channels: int = 8, seed: int = 0) -> onnx.ModelProto:
    """`blocks` x (Conv, Unsqueeze(axes 0) -> Squeeze(axes 0), + input, Relu), and two pairs that must
    stay: one whose Unsqueeze has a second reader, one whose Squeeze removes other axes."""
    rng = np.random.default_rng(seed)
    b = _Builder()
    x = gs.Variable("x", dtype=np.float32, shape=(2, channels, 6, 6))
    h = x
    for i in range(blocks):
        w = _const(f"w{i}", (rng.standard_normal((channels, channels, 3, 3)) / (3 * channels ** 0.5)).astype(np.float32))
        conv = b.op("Conv", h, w, _const(f"b{i}", (0.1 * rng.standard_normal(channels)).astype(np.float32)),
                    pads=[1, 1, 1, 1])
        pair = b.op("Squeeze", b.op("Unsqueeze", conv, _const(f"u_axes{i}", np.array([0], np.int64))),
                    _const(f"s_axes{i}", np.array([0], np.int64)))
        h = b.op("Relu", b.op("Add", pair, h))
    shared = b.op("Unsqueeze", h, _const("shared_axes", np.array([0], np.int64)))
    y = b.op("Relu", b.op("Squeeze", shared, _const("shared_squeeze_axes", np.array([0], np.int64))))
    total = b.op("ReduceSum", shared, keepdims=0)
    pooled = b.op("ReduceMean", h, axes=[3], keepdims=1)                       # (2, C, 6, 1)
    other = b.op("Squeeze", b.op("Unsqueeze", pooled, _const("other_axes", np.array([0], np.int64))),
                 _const("other_squeeze_axes", np.array([0, 4], np.int64)))    # (2, C, 6): not a no-op
    return _model(b, [x], [(y, (2, channels, 6, 6)), (total, ()), (other, (2, channels, 6))])


def _rewrite(fn, model: onnx.ModelProto):
    """The learner's rewrite applied: (its return value, the rewritten model, its op counts), or what
    went wrong as a string. An untouched exercise returns None: NotImplementedError."""
    result, rewritten = _apply(fn, model)
    if result is None:
        raise NotImplementedError
    if isinstance(rewritten, str):
        return rewritten
    return result, rewritten, Counter(node.op_type for node in rewritten.graph.node)


def _check_unsqueeze_pairs(fn) -> str | None:
    model = unsqueeze_pair_model()
    outcome = _rewrite(fn, model)
    if isinstance(outcome, str):
        return outcome
    removed, rewritten, counts = outcome
    if removed != 3 or counts["Unsqueeze"] != 2 or counts["Squeeze"] != 2:
        return (f"the graph has 3 removable pairs and 2 that must stay; your rewrite returned {removed} and left "
                f"{counts['Unsqueeze']} Unsqueeze and {counts['Squeeze']} Squeeze nodes (expected 3, 2 and 2). "
                "Remove a pair only when the Squeeze is the Unsqueeze's only reader and removes the same axes.")
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 6)).astype(np.float32)
    return _compare(model, rewritten, x, rtol=1e-6)


# -- 05.2: the memory traffic of the decomposed LayerNorm ----------------------------------------

def _decomposed_bytes(rows: int, cols: int, element_size: int) -> int:
    rc, r, c = rows * cols, rows, cols
    traffic = [rc + r,            # ReduceMean(x): read x, write the means
               rc + r + rc,       # Sub(x, mean)
               rc + rc,           # Pow(centred, 2)
               rc + r,            # ReduceMean(squares)
               r + r,             # Add(variance, eps)
               r + r,             # Sqrt
               rc + r + rc,       # Div(centred, std)
               rc + c + rc,       # Mul(normalised, weight)
               rc + c + rc]       # Add(scaled, bias)
    return sum(traffic) * element_size


def _check_traffic(fn) -> str | None:
    for rows, cols, size in ((16384, 8192, 2), (512, 256, 4), (1, 4096, 2), (3000, 7, 4)):
        got = fn(rows, cols, size)
        if got is None:
            raise NotImplementedError
        want = (_decomposed_bytes(rows, cols, size), lab05_fusion.layernorm_bytes(rows, cols, size))
        if tuple(int(v) for v in got) != want:
            return (f"{rows} x {cols}, {size}-byte elements: expected (decomposed, fused) = {want} bytes, got "
                    f"{tuple(got)}. Each of the nine ops reads all of its inputs and writes its output; the means, "
                    "variances and deviations are one value per row.")
    return None


# -- 05.3: a LayerNorm written with Reciprocal and Mul -------------------------------------------

def variant_layernorm_model(hidden: int = 32, epsilons: tuple[float, ...] = (1e-5, 0.1), seed: int = 0) -> onnx.ModelProto:
    """Per epsilon: Gemm, then a LayerNorm written as x - mean, (x - mean) * (x - mean), ReduceMean,
    + eps, Sqrt, Reciprocal, Mul, * weight, + bias; then Gemm and an RMSNorm of the same shape (no
    mean subtracted), which is not a LayerNorm and must stay."""
    rng = np.random.default_rng(seed)
    b = _Builder()
    x = gs.Variable("x", dtype=np.float32, shape=(16, hidden))

    def gemm(t: gs.Variable, i: int) -> gs.Variable:
        w = _const(f"gemm_w{i}", (rng.standard_normal((hidden, hidden)) / hidden ** 0.5).astype(np.float32))
        return b.op("Gemm", t, w, _const(f"gemm_b{i}", (0.5 * rng.standard_normal(hidden)).astype(np.float32)))

    def affine(normalised: gs.Variable, i: int) -> gs.Variable:
        weight = _const(f"norm_w{i}", (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
        bias = _const(f"norm_b{i}", (0.1 * rng.standard_normal(hidden)).astype(np.float32))
        return b.op("Add", b.op("Mul", normalised, weight), bias)

    def inverse_std(squares: gs.Variable, eps: float, i: int) -> gs.Variable:
        variance = b.op("ReduceMean", squares, axes=[-1], keepdims=1)
        return b.op("Reciprocal", b.op("Sqrt", b.op("Add", variance, _const(f"eps{i}", np.array(eps, np.float32)))))

    h = x
    for i, eps in enumerate(epsilons):
        h = gemm(h, i)
        centred = b.op("Sub", h, b.op("ReduceMean", h, axes=[-1], keepdims=1))
        h = affine(b.op("Mul", centred, inverse_std(b.op("Mul", centred, centred), eps, i)), i)
    i = len(epsilons)
    h = gemm(h, i)
    h = affine(b.op("Mul", h, inverse_std(b.op("Mul", h, h), 1e-5, i)), i)
    return _model(b, [x], [(h, (16, hidden))])


def _check_variant(fn) -> str | None:
    model = variant_layernorm_model()
    outcome = _rewrite(fn, model)
    if isinstance(outcome, str):
        return outcome
    fused, rewritten, counts = outcome
    if fused != 2 or counts["LayerNormalization"] != 2 or counts["ReduceMean"] != 1 or counts["Reciprocal"] != 1:
        return (f"the graph has 2 LayerNorms written with Reciprocal and an RMSNorm that must stay; your rewrite "
                f"returned {fused} and left nodes {dict(counts)}. Expected 2 fused, 2 LayerNormalization nodes, and "
                "the RMSNorm's ReduceMean and Reciprocal only.")
    x = np.random.default_rng(3).standard_normal((16, 32)).astype(np.float32)
    return _compare(model, rewritten, x, rtol=1e-4)


EXERCISES = [
    Exercise("05.1", "guided",
             "remove_unsqueeze_pairs(graph): bypass each Unsqueeze -> Squeeze pair over the same axes; returns "
             "how many were removed.",
             _check_unsqueeze_pairs, counterexample=lab05_fusion.remove_inverse_transposes),
    Exercise("05.2", "practice",
             "layernorm_traffic(rows, cols, element_size): bytes moved by the nine-op LayerNorm and by the fused one.",
             _check_traffic, counterexample=lambda rows, cols, size: (18 * rows * cols * size,
                                                                      2 * rows * cols * size)),
    Exercise("05.3", "open",
             "fuse_reciprocal_layernorm(graph): replace each LayerNorm written with Reciprocal and Mul by one "
             "LayerNormalization node; returns how many were fused.",
             _check_variant, counterexample=lambda graph: lab05_fusion.fuse_layernorm(graph, standard=True)),
]
