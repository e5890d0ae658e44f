"""An ONNX model read for advice: shapes, producers and consumers, weights read only when asked.

The graph is loaded without its external data (a 300 MB model opens in well under a second); shapes
come from ONNX shape inference; a weight's values are read (from the file or its external-data file)
only by the checks that need them, such as the 2:4 pattern check.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

#: ONNX element types by the course's precision names (the types a strongly typed engine follows).
ELEM_TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16",
    onnx.TensorProto.DOUBLE: "fp64", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.FLOAT8E4M3FN: "fp8",
}

#: Operator domains TensorRT's ONNX parser implements itself; any other needs a plugin.
STANDARD_DOMAINS = ("", "ai.onnx")

Dim = int | str | None


class ModelError(ValueError):
    """The file is not an ONNX model the advisor can read."""


@dataclass
class ModelGraph:
    """The parts of an ONNX graph the checks read."""

    path: Path
    model: onnx.ModelProto
    shapes: dict[str, list[Dim]] = field(default_factory=dict)
    elem_types: dict[str, int] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: collections.defaultdict(list))
    _at_batch: dict[int, dict[str, list[Dim]]] = field(default_factory=dict, repr=False)

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    @property
    def inputs(self) -> list[onnx.ValueInfoProto]:
        """The graph inputs that are not weights."""
        return [v for v in self.model.graph.input if v.name not in self.initializers]

    def shape(self, name: str) -> list[Dim] | None:
        return self.shapes.get(name)

    def shape_at(self, name: str, batch: int) -> list[Dim] | None:
        """The shape of `name` with the inputs' batch dimension set to `batch`, inferred again through the
        whole graph (so a dimension a Reshape computes from the batch is known too); the symbolic shape
        where that inference leaves one unknown."""
        if batch not in self._at_batch:
            self._at_batch[batch] = _shapes_at_batch(self, batch)
        return self._at_batch[batch].get(name) or self.shape(name)

    def is_weight(self, name: str) -> bool:
        return name in self.initializers or (name in self.producer and self.producer[name].op_type == "Constant")

    def weight(self, name: str) -> np.ndarray:
        """The values of a weight (initializer or Constant node), read from disk on demand."""
        if name in self.initializers:
            tensor = self.initializers[name]
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(self.initializers[name])
                onnx.external_data_helper.load_external_data_for_tensor(tensor, str(self.path.parent))
            return numpy_helper.to_array(tensor)
        node = self.producer[name]
        return numpy_helper.to_array(node.attribute[0].t)

    def weight_shape(self, name: str) -> list[int] | None:
        if name in self.initializers:
            return list(self.initializers[name].dims)
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return list(node.attribute[0].t.dims)
        return None

    def weight_bytes(self) -> int:
        """Bytes of all initializers, external data included (from their shapes, not by reading them)."""
        total = 0
        for tensor in self.initializers.values():
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
            total += math.prod(tensor.dims) * itemsize
        return total

    def next_nodes(self, node: onnx.NodeProto) -> Iterator[onnx.NodeProto]:
        for out in node.output:
            yield from self.consumers.get(out, [])

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None


def attribute(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def node_label(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"


def _values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Every typed value of an inferred model: its inputs, intermediate values and outputs."""
    return list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)


def _value_shapes(values) -> dict[str, list[Dim]]:
    shapes = {}
    for value in values:
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                  for d in tensor_type.shape.dim]
    return shapes


def _shapes_at_batch(graph: ModelGraph, batch: int) -> dict[str, list[Dim]]:
    """Shape inference (with data propagation) on a copy of the graph whose inputs have `batch` in place
    of their symbolic first dimension; {} where the inference fails (the checks fall back to symbols)."""
    inputs = graph.inputs
    first = graph.shape(inputs[0].name) if inputs else None
    batch_dim = first[0] if first else None
    if not isinstance(batch_dim, str):
        return {}
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param == batch_dim:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError):
        return {}
    return _value_shapes(_values(inferred))


def load(path: str | Path) -> ModelGraph:
    """Read the ONNX model at `path` (weights stay on disk) and infer its shapes.

    Raises :class:`ModelError` naming the problem when the file is missing, empty, not ONNX, or an
    invalid graph.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no ONNX model at {path}: give the path of a .onnx file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path} is empty: re-export the model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:   # protobuf's DecodeError and friends: say it is not an ONNX file
        raise ModelError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise ModelError(f"{path} holds no graph nodes: is it an ONNX model?")
    try:
        onnx.checker.check_model(str(path))   # by path: external-data files are checked where they lie
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{path} is not a valid ONNX graph: {str(exc).splitlines()[0]}") from exc
    graph = ModelGraph(path=path, model=model)
    graph.initializers = {t.name: t for t in model.graph.initializer}
    for t in model.graph.initializer:
        graph.shapes[t.name] = list(t.dims)
        graph.elem_types[t.name] = t.data_type
    values = _values(inferred)
    for value in values:
        graph.elem_types.setdefault(value.name, value.type.tensor_type.elem_type)
    for name, shape in _value_shapes(values).items():
        graph.shapes.setdefault(name, shape)
    for node in model.graph.node:
        for out in node.output:
            graph.producer[out] = node
        for name in node.input:
            if name:
                graph.consumers[name].append(node)
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            graph.shapes.setdefault(node.output[0], list(node.attribute[0].t.dims))
    return graph

