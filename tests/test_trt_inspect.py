"""Engine-inspector JSON parsing: the 10.x and 11.x schemas, detailed and LAYER_NAMES_ONLY forms.

The fixtures are written from the documented schema (reference §9): 10.x layers with a combined
"Format/Datatype" and top-level "Bindings"; 11.x "I/O Tensors" objects and split Format/DataType keys.
"""

import json
import sys
import types
from pathlib import Path

import pytest

from common.trt.inspect import fused_ops_of, inspect_engine, parse_engine_information, split_format_dtype

DATA = Path(__file__).parent / "data"
V10 = (DATA / "inspector_10x.json").read_text()
V11 = (DATA / "inspector_11x.json").read_text()
NAMES_ONLY = {
    "Layers": ["Reformatting CopyNode for Input Tensor 0 to conv1 + bn1 + relu1", "conv1 + bn1 + relu1",
               "{ForeignNode[/blocks.0/attn/MatMul.../blocks.0/mlp/fc2/Add]}", "fc"],
    "Bindings": ["input", "output"],
}


def test_10x_layers():
    info = parse_engine_information(V10)
    assert info.schema == "10.x" and info.detailed
    assert [layer.layer_type for layer in info.layers] == ["Reformat", "CaskConvolution", "Myelin", "Reformat"]
    conv = info.layers[1]
    assert conv.fused_ops == ["/conv1/Conv", "/bn1/BatchNormalization", "/relu1/Relu"]  # from Metadata
    assert conv.tactic.startswith("sm90_xmma_fprop_implicit_gemm")
    assert conv.stream_id == 0 and info.layers[2].stream_id == 1
    assert conv.inputs[0].dtype == "HALF" and conv.inputs[0].format == "Channel major format where channel % 8 == 0"
    assert conv.outputs[0].dims == (8, 64, 112, 112)
    assert conv.raw["HasReLU"] == 1 and conv.raw["HasSparseWeights"] == 0
    first = info.layers[0]
    assert first.inputs[0].dtype == "FLOAT" and first.inputs[0].format == "Row major linear"
    assert first.inputs[0].format_dtype == "Row major linear FP32"


def test_10x_bindings_get_their_direction_from_the_layers():
    info = parse_engine_information(V10)
    assert [(t.name, t.mode) for t in info.io_tensors] == [("input", "input"), ("output", "output")]
    assert info.io_tensors[0].dims is None  # 10.x names only


def test_reformat_myelin_and_fused_layers():
    info = parse_engine_information(V10)
    assert [layer.name.split(" to ")[0] for layer in info.reformat_layers()] == [
        "Reformatting CopyNode for Input Tensor 0", "Reformatting CopyNode for Output Tensor 0"]
    myelin = info.myelin_layers()
    assert len(myelin) == 1 and myelin[0].fused_ops == ["/blocks.0/attn/MatMul", "/blocks.0/mlp/fc2/Add"]
    assert [layer.name for layer in info.fused_layers()] == ["conv1 + bn1 + relu1", myelin[0].name]
    assert info.count_by_type() == {"Reformat": 2, "CaskConvolution": 1, "Myelin": 1}


def test_table_rows():
    rows = parse_engine_information(V10).table()
    assert len(rows) == 4
    assert rows[1]["name"] == "conv1 + bn1 + relu1" and rows[1]["fused_ops"] == 3
    assert rows[1]["inputs"] == "HALF[8x3x224x224]" and rows[3]["outputs"] == "FLOAT[8x1000]"
    assert rows[2]["stream"] == 1 and rows[0]["type"] == "Reformat"
    json.dumps(rows)  # displayable and serialisable


def test_11x_io_tensors():
    info = parse_engine_information(V11)
    assert info.schema == "11.x"
    inp, out = info.io_tensors
    assert (inp.name, inp.mode, inp.dtype, inp.dims) == ("input", "input", "FLOAT", (-1, 3, 224, 224))
    assert out.mode == "output" and out.location == "Device" and inp.is_shape_inference_io is False
    assert inp.profiles[0]["MaxShape"] == [32, 3, 224, 224]


def test_11x_split_keys_read_like_the_combined_key():
    v10, v11 = parse_engine_information(V10), parse_engine_information(V11)
    summary = lambda info: [[(t.name, t.dtype, t.format, t.dims) for t in layer.inputs + layer.outputs]  # noqa: E731
                            for layer in info.layers]
    assert summary(v11) == summary(v10)
    assert v11.layers[1].inputs[0].format_dtype is None and v11.layers[1].inputs[0].dtype == "HALF"
    assert v11.table() == v10.table()


def test_layer_names_only():
    info = parse_engine_information(json.dumps(NAMES_ONLY))
    assert not info.detailed and info.schema == "10.x"
    assert [layer.layer_type for layer in info.layers] == [None] * 4
    assert info.count_by_type() == {"unknown": 4}
    assert len(info.reformat_layers()) == 1
    assert info.layers[1].fused_ops == ["conv1", "bn1", "relu1"]
    assert info.layers[3].fused_ops == ["fc"] and info.layers[2].is_myelin
    assert info.io_tensors[0].mode is None  # no detail to infer it from
    assert info.table()[1]["inputs"] == ""


def test_helpers():
    assert split_format_dtype("Row major linear FP32") == ("Row major linear", "FLOAT")
    assert split_format_dtype("Two wide channel vectorized row major BF16 format") == (
        "Two wide channel vectorized row major format", "BF16")
    assert split_format_dtype("Row major linear Int8") == ("Row major linear", "INT8")
    assert split_format_dtype("N/A due to dynamic shapes") == ("N/A due to dynamic shapes", None)
    assert fused_ops_of("conv1 + relu1") == ["conv1", "relu1"]
    assert fused_ops_of("Reformatting CopyNode for Input Tensor 0 to a + b") == []


@pytest.mark.parametrize("bad", ["[]", "{}", '{"Bindings": []}'])
def test_rejects_what_is_not_inspector_json(bad):
    with pytest.raises(ValueError, match="Layers"):
        parse_engine_information(bad)


def test_inspect_engine_uses_the_inspector(monkeypatch):
    calls = {}

    class Inspector:  # trt.EngineInspector: execution_context, get_engine_information(format)
        execution_context = None

        def get_engine_information(self, fmt):
            calls["format"], calls["context"] = fmt, self.execution_context
            return V11

    class Engine:
        def create_engine_inspector(self):
            return Inspector()

    fake = types.ModuleType("tensorrt")
    fake.LayerInformationFormat = types.SimpleNamespace(ONELINE="ONELINE", JSON="JSON")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    context = object()
    info = inspect_engine(Engine(), context)
    assert calls == {"format": "JSON", "context": context}
    assert info.schema == "11.x" and len(info.layers) == 4
