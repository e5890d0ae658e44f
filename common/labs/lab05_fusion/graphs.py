"""Lab 05 (fusion), the graphs: two small models, the onnx-graphsurgeon rewrites, ONNX Runtime's view.

- two small models: :class:`ConvResidualNet` (Conv + bias, + input, ReLU: what TensorRT fuses by
  itself) and :class:`NormNet` (Linear, then a LayerNorm written by hand as nine ONNX ops);
- the rewrites, each on an ``onnx_graphsurgeon`` graph and returning how many places it changed:
  :func:`plant_transpose_pairs` (a no-op NHWC round trip after each Conv, as exporters leave behind),
  :func:`remove_inverse_transposes` (its cure), and :func:`fuse_layernorm` (the nine-op chain into one
  node: the custom op ``trtlabs::FusedLayerNorm`` that a TensorRT plugin serves, or its standard-op
  twin ``LayerNormalization`` that ONNX Runtime can run to prove the rewrite computes the same);
- ONNX Runtime at a chosen optimisation level (:func:`common.onnx.ort_session`), the node count of
  the graph it actually runs (:func:`ort_optimized_node_count`) and timings before/after
  (:func:`ort_timing_rows`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from ... import bench
from ... import onnx as onnx_tools
from ...onnx import portable
from ...trt.plugins import PLUGIN_NAME as PLUGIN_OP
from ...trt.plugins import PLUGIN_NAMESPACE as PLUGIN_DOMAIN

EPS = 1e-5

#: The ONNX ops of the LayerNorm written by hand, in the order the exporter emits them.
DECOMPOSED_OPS = ("ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add")


# -- the models ----------------------------------------------------------------------------------

class ConvResidualNet(nn.Module):
    """`depth` x (Conv3x3 with bias, + its input, ReLU): the conv+bias+add+activation pattern (lab 05).

    With `transpose_pairs`, each Conv's output makes the NHWC round trip that
    :func:`plant_transpose_pairs` plants in the ONNX graph, as two real copies (``.contiguous()``: a
    PyTorch permute alone is a view and would copy nothing), so that eager PyTorch and
    ``torch.compile`` run the planted graph too. The weights do not depend on it.
    """

    def __init__(self, channels: int, depth: int, *, transpose_pairs: bool = False) -> None:
        super().__init__()
        self.transpose_pairs = transpose_pairs
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            y = conv(x)
            if self.transpose_pairs:
                y = y.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).contiguous()
            x = torch.relu(y + x)
        return x


def decomposed_layernorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """LayerNorm over the last dimension written op by op: nine kernels in eager, nine ONNX nodes."""
    centred = x - x.mean(-1, keepdim=True)
    variance = centred.pow(2).mean(-1, keepdim=True)
    return centred / torch.sqrt(variance + eps) * weight + bias


class DecomposedLayerNorm(nn.Module):
    """A LayerNorm the exporter cannot recognise: opset 17 sees nine ops, not LayerNormalization."""

    def __init__(self, hidden: int, eps: float = EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return decomposed_layernorm(x, self.weight, self.bias, self.eps)


class NormNet(nn.Module):
    """`depth` x (Linear(hidden -> hidden), hand-written LayerNorm): a transformer's pre-norm skeleton."""

    def __init__(self, hidden: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(hidden, hidden), DecomposedLayerNorm(hidden))
                                      for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded weights, LayerNorm's weight and bias too (not 1 and 0), so the rewrite must carry them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(2 * fan_in))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            elif isinstance(module, DecomposedLayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model.eval().requires_grad_(False)


# -- graph rewrites ------------------------------------------------------------------------------

def load_graph(path: str | Path) -> gs.Graph:
    return gs.import_onnx(onnx.load(str(path)))


def save_graph(graph: gs.Graph, path: str | Path) -> Path:
    """Clean up, sort and write `graph`; declares the plugin's domain when a node uses it."""
    graph.cleanup().toposort()
    model = portable(gs.export_onnx(graph))
    if any(node.domain == PLUGIN_DOMAIN for node in model.graph.node):
        model.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    else:
        onnx.checker.check_model(model)   # a custom domain has no schema for the checker to use
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_node_count(path: str | Path) -> int:
    return len(onnx.load(str(path)).graph.node)


def _redirect_consumers(old: gs.Tensor, new: gs.Tensor, graph: gs.Graph) -> None:
    """Every reader of `old` (a node input or a graph output) reads `new` instead."""
    for node in list(old.outputs):
        node.inputs = [new if t is old else t for t in node.inputs]
    graph.outputs = [new if t is old else t for t in graph.outputs]


def plant_transpose_pairs(graph: gs.Graph) -> int:
    """After every Conv, Transpose to NHWC and straight back to NCHW: a no-op that stands between the
    Conv and its Add + ReLU. Returns the number of pairs planted."""
    convs = [node for node in graph.nodes if node.op == "Conv"]
    for i, conv in enumerate(convs):
        out = conv.outputs[0]
        nhwc = gs.Variable(f"planted_nhwc_{i}", dtype=out.dtype)
        nchw = gs.Variable(f"planted_nchw_{i}", dtype=out.dtype)
        readers = list(out.outputs)
        graph.nodes.append(gs.Node("Transpose", name=f"planted_to_nhwc_{i}", attrs={"perm": [0, 2, 3, 1]},
                                   inputs=[out], outputs=[nhwc]))
        graph.nodes.append(gs.Node("Transpose", name=f"planted_to_nchw_{i}", attrs={"perm": [0, 3, 1, 2]},
                                   inputs=[nhwc], outputs=[nchw]))
        for node in readers:
            node.inputs = [nchw if t is out else t for t in node.inputs]
    return len(convs)


def _composes_to_identity(first: list[int], second: list[int]) -> bool:
    return len(first) == len(second) and [first[p] for p in second] == list(range(len(first)))


def remove_inverse_transposes(graph: gs.Graph) -> int:
    """Bypass every Transpose followed only by the Transpose that undoes it; returns pairs removed."""
    removed = 0
    for first in [node for node in graph.nodes if node.op == "Transpose"]:
        if not first.outputs:   # the second of a pair already removed
            continue
        middle = first.outputs[0]
        readers = list(middle.outputs)
        if len(readers) != 1 or readers[0].op != "Transpose" or middle in graph.outputs:
            continue
        second = readers[0]
        if not _composes_to_identity(first.attrs["perm"], second.attrs["perm"]):
            continue
        _redirect_consumers(second.outputs[0], first.inputs[0], graph)
        first.outputs.clear()
        second.outputs.clear()
        removed += 1
    return removed


def _constant(tensor: gs.Tensor) -> np.ndarray | None:
    """The value of a constant input: an initializer, or the output of a Constant node."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        return np.asarray(tensor.inputs[0].attrs["value"].values)
    return None


def _sole_reader(tensor: gs.Tensor, op: str) -> gs.Node | None:
    readers = list(tensor.outputs)
    return readers[0] if len(readers) == 1 and readers[0].op == op else None


def _reduces_last_axis(node: gs.Node) -> bool:
    return list(node.attrs.get("axes", [])) == [-1] and node.attrs.get("keepdims", 1) == 1


def _chain(tensor: gs.Tensor, ops: tuple[str, ...]) -> list[gs.Node] | None:
    """The nodes `ops`, each the sole reader of the previous one's output, starting from `tensor`."""
    nodes = []
    for op in ops:
        node = _sole_reader(tensor, op)
        if node is None:
            return None
        nodes.append(node)
        tensor = node.outputs[0]
    return nodes


def _match_layernorm(mean: gs.Node) -> dict[str, Any] | None:
    """The nine-op chain that starts at ReduceMean `mean`, or None where the graph differs anywhere."""
    x = mean.inputs[0]
    sub = _sole_reader(mean.outputs[0], "Sub")
    if not _reduces_last_axis(mean) or sub is None or sub.inputs[0] is not x:
        return None
    centred = sub.outputs[0]
    readers = {node.op: node for node in centred.outputs}
    if len(centred.outputs) != 2 or set(readers) != {"Pow", "Div"}:
        return None
    power, div = readers["Pow"], readers["Div"]
    variance_chain = _chain(power.outputs[0], ("ReduceMean", "Add", "Sqrt", "Div"))
    if variance_chain is None or variance_chain[-1] is not div or div.inputs[0] is not centred:
        return None
    variance, add_eps, sqrt, _ = variance_chain
    affine = _chain(div.outputs[0], ("Mul", "Add"))
    exponent, eps = _constant(power.inputs[1]), _constant(add_eps.inputs[1])
    if (affine is None or exponent is None or exponent.size != 1 or float(exponent) != 2.0 or eps is None
            or eps.size != 1 or not _reduces_last_axis(variance)):
        return None
    mul, add_bias = affine
    weight, bias = mul.inputs[1], add_bias.inputs[1]
    if not (isinstance(weight, gs.Constant) and isinstance(bias, gs.Constant)
            and weight.values.ndim == 1 and tuple(weight.shape) == tuple(bias.shape)):
        return None
    return {"x": x, "weight": weight, "bias": bias, "epsilon": float(eps), "output": add_bias.outputs[0],
            "nodes": [mean, sub, power, variance, add_eps, sqrt, div, mul, add_bias]}


def fuse_layernorm(graph: gs.Graph, *, standard: bool = False) -> int:
    """Replace each hand-written LayerNorm chain by one node; returns how many were replaced.

    `standard=False` writes the custom op ``trtlabs::FusedLayerNorm`` (inputs x, weight, bias;
    attribute epsilon, and plugin_namespace for TensorRT before 10.10, which reads the plugin's
    namespace from that attribute rather than from the node's domain) for the TensorRT plugin;
    `standard=True` writes its twin, the standard ``LayerNormalization`` (axis -1), which ONNX Runtime
    runs: the same rewrite, checkable anywhere.
    """
    matches = [m for node in graph.nodes if node.op == "ReduceMean" and (m := _match_layernorm(node))]
    for i, match in enumerate(matches):
        output = match["output"]
        for node in match["nodes"]:
            node.outputs.clear()
        inputs = [match["x"], match["weight"], match["bias"]]
        if standard:
            fused = gs.Node("LayerNormalization", name=f"layernorm_{i}", inputs=inputs, outputs=[output],
                            attrs={"axis": -1, "epsilon": match["epsilon"]})
        else:
            fused = gs.Node(PLUGIN_OP, name=f"fused_layernorm_{i}", domain=PLUGIN_DOMAIN, inputs=inputs,
                            outputs=[output], attrs={"epsilon": match["epsilon"], "plugin_namespace": PLUGIN_DOMAIN})
        graph.nodes.append(fused)
    return len(matches)


def rewrite(source: str | Path, destination: str | Path, transform: Callable[..., int], **kwargs) -> tuple[Path, int]:
    """Load `source`, apply `transform` (one of the rewrites above), save to `destination`."""
    graph = load_graph(source)
    changed = transform(graph, **kwargs)
    return save_graph(graph, destination), changed


# -- ONNX Runtime --------------------------------------------------------------------------------

def ort_optimized_node_count(path: str | Path, level: str = "basic") -> int:
    """Nodes in the graph ORT really runs after its `level` of optimisation (written beside `path`)."""
    optimized = Path(path).with_suffix(f".ort-{level}.onnx")
    onnx_tools.ort_session(path, level=level, optimized_path=optimized)
    return onnx_node_count(optimized)


def ort_output(path: str | Path, x: torch.Tensor, level: str = "all") -> np.ndarray:
    """The graph's first output on `x`, run by ONNX Runtime at its `level` of optimisation."""
    return onnx_tools.ort_run(onnx_tools.ort_session(path, level=level), x)


def ort_timing_rows(paths: Mapping[str, Path], x: torch.Tensor, levels: tuple[str, ...], *,
                    passes: int = bench.PASSES, measure_ms: float = 120.0, warmup_ms: float = 40.0,
                    threads: int = 1) -> tuple[list[dict], dict[tuple[str, str], list[bench.Measurement]]]:
    """Time each graph at each ORT level, `passes` times interleaved; one row per (graph, level), with
    its regime ("cpu": host time, there is no kernel time on a CPU).

    One intra-op thread by default: the graphs are small, and a thread pool's scheduling noise would
    hide the difference being measured."""
    feed_value = x.detach().cpu().numpy()
    sessions = {(name, level): onnx_tools.ort_session(path, level=level, threads=threads)
                for name, path in paths.items() for level in levels}
    runs: dict[tuple[str, str], list[bench.Measurement]] = {key: [] for key in sessions}
    for _ in range(passes):
        for (name, level), session in sessions.items():
            feed = {session.get_inputs()[0].name: feed_value}
            runs[name, level].append(bench.measure(
                functools.partial(session.run, None, feed), name=f"{name}, ORT {level}",
                backend="ONNX Runtime CPU", batch_size=x.shape[0], device="cpu",
                warmup_ms=warmup_ms, measure_ms=measure_ms))
    rows = [{"graph": name, "ort_level": level, "latency_ms": bench.median_latency_ms(ms),
             "spread_pct": bench.spread_pct(m.latency_ms.median for m in ms), **bench.kernel_fields(ms)}
            for (name, level), ms in runs.items()]
    return rows, runs


def before_after_verdicts(runs: Mapping[tuple[str, str], list[bench.Measurement]], before: str, after: str,
                          levels: tuple[str, ...]) -> dict[str, bench.Comparison]:
    """Per ORT level: the rewritten graph (`after`) against the original (`before`)."""
    return {level: bench.compare(runs[before, level], runs[after, level]) for level in levels}
