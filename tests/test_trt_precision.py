"""common.trt.precision (lab 08): the compute type of each engine layer, parsed from the engine
inspector's JSON without TensorRT."""

import json
from pathlib import Path

from common.trt import precision as trt_precision
from common.trt.inspect import parse_engine_information

DATA = Path(__file__).parent / "data"


def _layer(name, layer_type, in_dtype, out_dtype):
    tensor = {"Location": "Device", "Dimensions": [8, 64, 8, 8], "Format": "Channel major format"}
    return {"Name": name, "LayerType": layer_type, "Inputs": [dict(tensor, Name=f"{name}_in", DataType=in_dtype)],
            "Outputs": [dict(tensor, Name=f"{name}_out", DataType=out_dtype)]}


def test_compute_dtype_and_precision_counts():
    doc = {"Layers": [_layer("quantize input", "Quantize", "FP32", "Int8"),
                      _layer("conv1 + relu", "CaskConvolution", "Int8", "Int8"),
                      _layer("conv2", "CaskConvolution", "Int8", "FP16"),
                      _layer("pool", "CaskPooling", "FP16", "FP16"),
                      _layer("Reformatting CopyNode for output", "Reformat", "FP16", "FP32")],
           "I/O Tensors": []}
    info = parse_engine_information(doc)
    assert [trt_precision.compute_dtype(layer) for layer in info.layers] == ["INT8", "INT8", "INT8", "HALF", "FLOAT"]
    assert trt_precision.precision_counts(info) == {"INT8": 3, "HALF": 1, "FLOAT": 1}
    rows = trt_precision.layer_rows(info)
    assert rows[2]["inputs"] == "INT8[8x64x8x8]" and rows[2]["outputs"] == "HALF[8x64x8x8]"


def test_compute_dtype_on_the_documented_fixtures():
    for fixture in ("inspector_10x.json", "inspector_11x.json"):
        info = parse_engine_information((DATA / fixture).read_text())
        counts = trt_precision.precision_counts(info)
        assert sum(counts.values()) == len(info.layers) and "HALF" in counts
    names_only = parse_engine_information(json.dumps({"Layers": ["conv1", "fc"], "Bindings": []}))
    assert trt_precision.precision_counts(names_only) == {"?": 2}
