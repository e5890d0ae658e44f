"""Engine inspector JSON -> layers, fusions, formats and I/O tensors, for tables.

Introduced in lab 05 (fusion), which reads TensorRT's own fusions from the engine; lab 07 (MatMul)
counts reformat layers. :func:`parse_engine_information` is pure parsing and reads:

- the I/O tensors from both schemas: TensorRT 10.x's top-level ``"Bindings"`` (a list of names) and
  11.x's ``"I/O Tensors"`` (objects with Name, IOMode, DataType, Dimensions, Location,
  IsShapeInferenceIO, ProfileInfo);
- per-tensor format and type from 10.x's combined ``"Format/Datatype"`` string or from separate
  ``"Format"`` and ``"DataType"`` keys (the 11.0 notes announce a split whose key names are not
  documented, so both spellings are read);
- ``"Layers"`` as detailed objects (``ProfilingVerbosity.DETAILED``) or as plain names
  (``LAYER_NAMES_ONLY``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import tensorrt as trt

# Spellings of data types inside format strings ("Row major linear FP32", "Channel major FP16 format
# where channel % 8 == 0") and DataType fields, mapped to trt.DataType names.
_DTYPE_WORDS = {
    "FP32": "FLOAT", "FLOAT": "FLOAT", "FLOAT32": "FLOAT", "FP16": "HALF", "HALF": "HALF",
    "FLOAT16": "HALF", "BF16": "BF16", "BFLOAT16": "BF16", "INT8": "INT8", "INT32": "INT32",
    "INT64": "INT64", "BOOL": "BOOL", "UINT8": "UINT8", "FP8": "FP8", "INT4": "INT4", "FP4": "FP4",
    "E8M0": "E8M0",
}
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
_FOREIGN = re.compile(r"ForeignNode\[(.*)\]")


def normalize_dtype(text: str | None) -> str | None:
    """A data-type spelling from the inspector ("FP16", "Half", "DataType.HALF") as a trt.DataType name."""
    if not text:
        return None
    word = str(text).strip().upper().replace("DATATYPE.", "")
    return _DTYPE_WORDS.get(word)


def split_format_dtype(text: str) -> tuple[str | None, str | None]:
    """Split a 10.x "Format/Datatype" string into (format, dtype name); dtype None when not found."""
    words = text.split()
    for i, word in enumerate(words):
        dtype = normalize_dtype(word)
        if dtype is not None:
            layout = " ".join(words[:i] + words[i + 1:]).strip()
            return (layout or None), dtype
    return (text or None), None


@dataclass
class TensorInfo:
    """One input or output of a layer, as the inspector describes it."""

    name: str
    dtype: str | None = None          # trt.DataType name, e.g. "HALF"
    format: str | None = None         # layout, e.g. "Channel major format where channel % 8 == 0"
    dims: tuple[int, ...] | None = None
    location: str | None = None
    format_dtype: str | None = None   # the raw 10.x "Format/Datatype" string, when present

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TensorInfo":
        combined = d.get("Format/Datatype", d.get("Format/DataType"))
        layout = d.get("Format")
        dtype = normalize_dtype(d.get("DataType", d.get("Datatype")))
        if combined is not None:
            split_layout, split_dtype = split_format_dtype(str(combined))
            layout = layout if layout is not None else split_layout
            dtype = dtype or split_dtype
        dims = d.get("Dimensions")
        return cls(name=str(d.get("Name", "")), dtype=dtype, format=None if layout is None else str(layout),
                   dims=None if dims is None else tuple(int(x) for x in dims),
                   location=d.get("Location"), format_dtype=None if combined is None else str(combined))

    def short(self) -> str:
        dims = "x".join(str(x) for x in self.dims) if self.dims is not None else "?"
        return f"{self.dtype or '?'}[{dims}]"


@dataclass
class IOTensorInfo:
    """An engine input or output. From 10.x "Bindings" only `name` is known (mode may be inferred)."""

    name: str
    mode: str | None = None           # "input" | "output"
    dtype: str | None = None
    dims: tuple[int, ...] | None = None
    location: str | None = None
    is_shape_inference_io: bool | None = None
    profiles: list[dict[str, Any]] = field(default_factory=list)  # 11.x ProfileInfo entries


@dataclass
class LayerInfo:
    """One engine layer. With LAYER_NAMES_ONLY verbosity only `name` (and fused_ops) are known."""

    name: str
    layer_type: str | None = None
    tactic: str | None = None
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    fused_ops: list[str] = field(default_factory=list)
    stream_id: int | None = None
    metadata: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_reformat(self) -> bool:
        return self.layer_type == "Reformat" or "Reformat" in self.name

    @property
    def is_myelin(self) -> bool:
        """A Myelin-compiled region: a ForeignNode, or a kernel Myelin generated ("__myl_...")."""
        if self.is_reformat:  # "Reformatting CopyNode for ... to {ForeignNode[...]}" feeds one
            return False
        return (self.layer_type or "").lower() == "myelin" or "ForeignNode[" in self.name \
            or self.name.startswith("__myl")


def fused_ops_of(name: str, metadata: str | None = None) -> list[str]:
    """The network ops one engine layer runs, best known first from metadata, else from the name.

    TensorRT names a fused layer by joining its parts with " + " ("conv1 + bn1 + relu1"), a Myelin
    region "{ForeignNode[first.../last]}" (only the ends are named), and in 10.x+ records the
    source ONNX nodes in Metadata as "[ONNX Layer: name]" entries.
    """
    if metadata:
        found = _ONNX_LAYER.findall(metadata)
        if found:
            return [s.strip() for s in found]
    if name.startswith("Reformatting CopyNode"):  # names the layer it feeds, runs no op of its own
        return []
    foreign = _FOREIGN.search(name)
    if foreign:
        return [s.strip() for s in foreign.group(1).split("...") if s.strip()]
    return [part.strip() for part in name.split(" + ") if part.strip()]


def _layer(entry: Any) -> LayerInfo:
    if not isinstance(entry, Mapping):  # LAYER_NAMES_ONLY (or NONE: layer indices)
        name = str(entry)
        return LayerInfo(name=name, fused_ops=fused_ops_of(name))
    name = str(entry.get("Name", ""))
    metadata = entry.get("Metadata")
    stream = entry.get("StreamId")
    known = {"Name", "LayerType", "TacticName", "Inputs", "Outputs", "StreamId", "Metadata"}
    return LayerInfo(
        name=name, layer_type=entry.get("LayerType"), tactic=entry.get("TacticName"),
        inputs=[TensorInfo.from_json(t) for t in entry.get("Inputs", []) if isinstance(t, Mapping)],
        outputs=[TensorInfo.from_json(t) for t in entry.get("Outputs", []) if isinstance(t, Mapping)],
        fused_ops=fused_ops_of(name, metadata if isinstance(metadata, str) else None),
        stream_id=None if stream is None else int(stream),
        metadata=metadata if isinstance(metadata, str) else None,
        raw={k: v for k, v in entry.items() if k not in known},
    )


def _io_tensor(entry: Any) -> IOTensorInfo:
    if not isinstance(entry, Mapping):  # 10.x "Bindings": a name
        return IOTensorInfo(name=str(entry))
    mode = entry.get("IOMode")
    dims = entry.get("Dimensions")
    shape_io = entry.get("IsShapeInferenceIO")
    return IOTensorInfo(
        name=str(entry.get("Name", "")),
        mode=None if mode is None else str(mode).lower().replace("kinput", "input").replace("koutput", "output"),
        dtype=normalize_dtype(entry.get("DataType")),
        dims=None if dims is None else tuple(int(x) for x in dims),
        location=entry.get("Location"),
        is_shape_inference_io=None if shape_io is None else bool(shape_io),
        profiles=[dict(p) for p in entry.get("ProfileInfo", []) if isinstance(p, Mapping)],
    )


@dataclass
class EngineInfo:
    """What the engine inspector reports: layers in execution order and the engine's I/O tensors."""

    layers: list[LayerInfo]
    io_tensors: list[IOTensorInfo]
    schema: str          # "11.x" ("I/O Tensors"), "10.x" ("Bindings") or "unknown"
    detailed: bool       # False for LAYER_NAMES_ONLY / NONE verbosity

    def table(self) -> list[dict[str, Any]]:
        """One row per layer, for display (e.g. ``pandas.DataFrame(info.table())``)."""
        return [{
            "index": i, "name": layer.name, "type": layer.layer_type, "tactic": layer.tactic,
            "stream": layer.stream_id, "fused_ops": len(layer.fused_ops),
            "inputs": ", ".join(t.short() for t in layer.inputs),
            "outputs": ", ".join(t.short() for t in layer.outputs),
            "output_formats": ", ".join(t.format or "?" for t in layer.outputs),
        } for i, layer in enumerate(self.layers)]

    def count_by_type(self) -> dict[str, int]:
        """Layers per LayerType ("unknown" where the verbosity gives none), most frequent first."""
        return dict(Counter(layer.layer_type or "unknown" for layer in self.layers).most_common())

    def reformat_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.is_reformat]

    def fused_layers(self) -> list[LayerInfo]:
        """Layers that run more than one network op (the fusions lab 05 looks for)."""
        return [layer for layer in self.layers if len(layer.fused_ops) > 1]

    def myelin_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.is_myelin]


def _infer_modes(layers: list[LayerInfo], io: list[IOTensorInfo]) -> None:
    """For 10.x "Bindings", tell inputs from outputs: an output is produced by some layer."""
    produced = {t.name for layer in layers for t in layer.outputs}
    consumed = {t.name for layer in layers for t in layer.inputs}
    for tensor in io:
        if tensor.mode is None:
            if tensor.name in produced:
                tensor.mode = "output"
            elif tensor.name in consumed:
                tensor.mode = "input"


def parse_engine_information(data: str | bytes | Mapping[str, Any]) -> EngineInfo:
    """Parse ``EngineInspector.get_engine_information(LayerInformationFormat.JSON)`` output."""
    doc = json.loads(data) if isinstance(data, (str, bytes)) else data
    if not isinstance(doc, Mapping) or "Layers" not in doc:
        raise ValueError("not engine-inspector JSON: expected an object with a 'Layers' list")
    entries = doc["Layers"]
    layers = [_layer(e) for e in entries]
    if "I/O Tensors" in doc:
        schema, io = "11.x", [_io_tensor(e) for e in doc["I/O Tensors"]]
    elif "Bindings" in doc:
        schema, io = "10.x", [_io_tensor(e) for e in doc["Bindings"]]
    else:
        schema, io = "unknown", []
    _infer_modes(layers, io)
    detailed = any(isinstance(e, Mapping) for e in entries)
    return EngineInfo(layers=layers, io_tensors=io, schema=schema, detailed=detailed)


def inspect_engine(engine: "trt.ICudaEngine", context: "trt.IExecutionContext | None" = None) -> EngineInfo:
    """Ask TensorRT's engine inspector about `engine` (lab 05, fusion).

    Pass an execution context whose input shapes are set to see actual shapes instead of -1.
    Full detail needs an engine built with ``BuildConfig(profiling_verbosity="detailed")``.
    """
    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    return parse_engine_information(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
