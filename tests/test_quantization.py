"""common.quantization (lab 08): ModelOpt configs, PTQ, QAT, quantizer toggling, the sensitivity
sweep and plan, ONNX export with Q/DQ, ModelOpt's ONNX PTQ, and reading Q/DQ placement. All on the CPU."""

import onnx
import pytest
import torch

from common import models, training
from common import onnx as onnx_tools
from common import precision as prec
from common import quantization as quant
from common.exercises.lab08 import qdq_example_graphs


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    model = models.DigitsCNN(8)
    training.train(model, digits.train, epochs=4)
    return model, training.accuracy(model, digits.test)


def _bits(cfg, name):
    return next(rule["cfg"]["num_bits"] for rule in cfg["quant_cfg"] if rule.get("quantizer_name") == name)


def test_configs_are_modelopt_presets_or_the_harsh_format():
    mtq = quant.mtq()
    assert quant.config("int8") == mtq.INT8_DEFAULT_CFG and quant.config("fp8") == mtq.FP8_DEFAULT_CFG
    harsh = quant.config("w4a3")
    assert _bits(harsh, "*weight_quantizer") == 4 and _bits(harsh, "*input_quantizer") == 3
    assert _bits(mtq.INT8_DEFAULT_CFG, "*input_quantizer") == 8   # the preset itself is untouched
    with pytest.raises(ValueError, match="w4a3"):
        quant.config("int3")


def test_ptq_quantizes_a_copy_and_reports_its_quantizers(trained, digits):
    model, fp32_pct = trained
    q = quant.ptq(model, "int8", digits.calib.images)
    assert quant.quantized_layers(q) == ["features.0", "features.3", "features.6", "features.7", "classifier"]
    assert not quant.quantizers(model)                        # the original stays a plain model
    summary = {(r["layer"], r["quantizer"]): r for r in quant.quantizer_summary(q)}
    assert summary[("features.3", "weight")]["format"] == "INT8"
    assert summary[("features.3", "weight")]["amax"].endswith("(16 channels)")   # per output channel
    assert summary[("features.0", "input")]["amax"] == "1"                       # pixels in [0, 1]
    assert abs(training.accuracy(q, digits.test) - fp32_pct) <= 2.0
    fp8 = quant.quantizer_summary(quant.ptq(model, "fp8", digits.calib.images))
    assert {r["format"] for r in fp8} == {"E4M3"}


def test_quantized_only_toggles_and_restores(trained, digits):
    model, _ = trained
    q = quant.ptq(model, "w4a3", digits.calib.images)
    x = digits.test.images[:64]
    with torch.no_grad():
        full = q(x)
        with quant.quantized_only(q, []):
            plain = q(x)
            assert quant.quantized_layers(q) == []
        with quant.quantized_only(q, ["features.3"]):
            assert quant.quantized_layers(q) == ["features.3"]
        again = q(x)
        reference = model.eval()(x)
    assert torch.allclose(plain, reference, atol=1e-5)        # nothing quantized: the FP32 model
    assert torch.equal(full, again) and not torch.allclose(full, reference, atol=1e-3)


def test_sensitivity_and_plan(trained, digits):
    model, fp32_pct = trained
    q = quant.ptq(model, "w4a3", digits.calib.images)
    rows = quant.sensitivity(q, digits.test, fp32_pct)
    assert [r["layer"] for r in rows] == quant.quantized_layers(q)
    for r in rows:
        assert r["drop_alone_pts"] == pytest.approx(fp32_pct - r["only_this_pct"])
    plan = quant.mixed_precision_plan(q, digits.test, rows, fp32_pct, budget_pts=1.0)
    assert plan[0]["kept_high_precision"] == "(none)"
    assert plan[0]["accuracy_pct"] == pytest.approx(training.accuracy(q, digits.test))
    assert plan[-1]["loss_pts"] <= 1.0 or len(plan) == len(rows) + 1
    costliest = max(rows, key=lambda r: (r["drop_alone_pts"], r["all_but_this_pct"]))["layer"]
    if len(plan) > 1:
        assert plan[1]["kept_high_precision"] == costliest
    assert quant.quantized_layers(q) == [r["layer"] for r in rows]   # the plan leaves every quantizer on


def test_qat_trains_through_the_quantizers(trained, digits):
    model, _ = trained
    q = quant.ptq(model, "w4a3", digits.calib.images)
    before = q.features[3].weight.detach().clone()
    fit = quant.qat(q, digits.train, epochs=1)
    assert fit.epochs == 1 and not torch.equal(before, q.features[3].weight)
    assert quant.quantized_layers(q)                           # still quantized


def test_export_and_onnx_ptq_place_qdq(trained, digits, tmp_path):
    model, _ = trained
    q = quant.ptq(model, "int8", digits.calib.images)
    exported = onnx.load(str(onnx_tools.export(q, digits.test.images[:4], tmp_path / "q.onnx")))
    placement = quant.qdq_placement(exported)
    assert placement["/features/features.3/Conv"] == {"op": "Conv", "activation": True, "weight": True}
    assert placement["/classifier/Gemm"]["weight"]
    fp32 = onnx_tools.export(model, digits.test.images[:4], tmp_path / "fp32.onnx")
    out = quant.onnx_ptq(fp32, tmp_path / "ptq.onnx", "int8", digits.calib.images[:16])
    graph = onnx.load(str(out))
    assert quant.qdq_counts(graph)["QuantizeLinear"] >= 4
    ranges = quant.activation_ranges(graph, "int8")
    assert ranges["input"] == pytest.approx(1.0, rel=1e-2) and all(v > 0 for v in ranges.values())
    assert not quant.qdq_placement(graph)["/classifier/Gemm"]["weight"]   # K = 32, N = 10 < 16: left alone
    logits = prec.ort_logits(out, digits.test.images)
    assert training.accuracy_of(torch.from_numpy(logits).argmax(1), digits.test.labels) > 50


def test_qdq_placement_on_hand_built_graphs():
    (graph_a, want_a), (graph_b, want_b) = qdq_example_graphs()
    for graph in (graph_a, graph_b):
        onnx.checker.check_model(graph)
    a = quant.qdq_placement(graph_a)
    assert a["conv"] == {"op": "Conv", "activation": True, "weight": True}
    assert a["pool"] == {"op": "MaxPool", "activation": True, "weight": False}
    assert a["gemm"] == {"op": "Gemm", "activation": False, "weight": False}   # listed: a GEMM, unquantized
    b = quant.qdq_placement(graph_b)
    assert b["gemm"]["weight"] and not b["gemm"]["activation"] and b["add"]["activation"]
    for graph, want in ((graph_a, want_a), (graph_b, want_b)):
        readers = {}
        for info in quant.qdq_placement(graph).values():
            if info["activation"] or info["weight"]:
                readers[info["op"]] = readers.get(info["op"], 0) + 1
        assert readers == want
    assert quant.qdq_counts(graph_a) == {"QuantizeLinear": 3, "DequantizeLinear": 3}


def test_placement_table_lines_up_graphs():
    (graph_a, _), (graph_b, _) = qdq_example_graphs()
    rows = quant.placement_table({"A": graph_a, "B": graph_b})
    by_node = {r["node"]: r for r in rows}
    assert by_node["conv"]["A"] == "act+weight" and by_node["conv"]["B"] == "-"
    assert by_node["gemm"]["A"] == "-" and by_node["gemm"]["B"] == "weight"
    assert by_node["add"]["B"] == "act" and "relu" not in by_node
