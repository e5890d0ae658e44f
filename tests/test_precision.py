"""common.precision (lab 08): AutoCast results and reasons, ONNX Runtime scoring,
checked precision cases, FP8 fake quantization and FP8/INT8 products; common.trt.precision's
inspector parsing. GPU tests need a CUDA GPU (FP8 ones compute capability 8.9+)."""

import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from common import env, models, training
from common import onnx as onnx_tools
from common import precision as prec
from common.trt import precision as trt_precision
from common.trt.inspect import parse_engine_information

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_fp8 = pytest.mark.skipif(not env.has("fp8"), reason="needs FP8 tensor cores (compute capability 8.9+)")
DATA = Path(__file__).parent / "data"


def _cpu_supports(op) -> bool:
    try:
        op()
    except (RuntimeError, NotImplementedError):
        return False
    return True


CPU_SCALED_MM = _cpu_supports(lambda: torch._scaled_mm(
    torch.zeros(16, 16).to(torch.float8_e4m3fn), torch.zeros(16, 16).to(torch.float8_e4m3fn).t(),
    scale_a=torch.ones(()), scale_b=torch.ones(()), out_dtype=torch.float16))
CPU_INT_MM = _cpu_supports(lambda: torch._int_mm(torch.zeros(32, 16, dtype=torch.int8), torch.zeros(16, 8, dtype=torch.int8)))


@pytest.fixture(scope="module")
def small_model(digits):
    torch.manual_seed(0)
    model = models.DigitsCNN(4)
    training.train(model, digits.train, epochs=2)
    return model


@pytest.fixture(scope="module")
def fp32_onnx(small_model, digits, tmp_path_factory):
    return onnx_tools.export(small_model, digits.test.images[:4], tmp_path_factory.mktemp("onnx") / "digits.onnx")


# -- ModelOpt's output ---------------------------------------------------------------------------

def test_captured_output_collects_logs_and_prints_and_restores_the_loggers():
    top, child = logging.getLogger("modelopt.onnx"), logging.getLogger("modelopt.onnx.lab08test")
    marker = logging.StreamHandler(io.StringIO())
    top.addHandler(marker)
    child.setLevel(logging.WARNING)
    try:
        with prec.captured_modelopt_output() as said:
            child.info("Skipping node n1: a reason")
            print("progress that would reach the notebook")
            sys.stderr.write("a progress bar\n")
        assert said.messages == ["Skipping node n1: a reason"]
        assert "progress that would reach the notebook" in said.text and "a progress bar" in said.text
        assert marker in top.handlers and child.level == logging.WARNING
    finally:
        top.removeHandler(marker)
        child.setLevel(logging.NOTSET)


# -- AutoCast --------------------------------------------------------------------------------------

def test_autocast_default_converts_every_node_of_the_digits_cnn(fp32_onnx, digits, tmp_path):
    npz = prec.write_calibration_npz(digits.calib.images[:32], tmp_path / "calib.npz")
    assert set(np.load(npz).files) == {"input"}
    result = prec.autocast(fp32_onnx, tmp_path / "fp16.onnx", "fp16", npz)
    assert result.kept_fp32 == {} and result.cast_nodes == 0 and result.converted == result.nodes
    model = onnx.load(str(result.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert prec.fp32_compute_nodes(model) == []
    assert prec.fp32_compute_nodes(onnx.load(str(fp32_onnx)))   # the FP32 graph computes in FP32
    logits = prec.ort_logits(result.path, digits.test.images[:64])
    ref = prec.ort_logits(fp32_onnx, digits.test.images[:64])
    assert onnx_tools.max_relative_error(logits, ref) < 1e-2


def test_autocast_keeps_deep_reductions_in_fp32_and_says_why(fp32_onnx, digits, tmp_path):
    npz = prec.write_calibration_npz(digits.calib.images[:32], tmp_path / "calib.npz")
    # DigitsCNN(4): reduction depths 1*9, 4*9 = 36 and 8*9 = 72 (convolutions), 16 (classifier)
    result = prec.autocast(fp32_onnx, tmp_path / "deep.onnx", "fp16", npz, max_depth_of_reduction=30)
    assert set(result.kept_fp32) == {"/features/features.3/Conv", "/features/features.7/Conv"}
    assert "depth of reduction 36 exceeds 30" in result.kept_fp32["/features/features.3/Conv"]
    assert result.cast_nodes == 4 and result.converted == result.nodes - 2
    with pytest.raises(ValueError, match="fp16"):
        prec.autocast(fp32_onnx, tmp_path / "x.onnx", "fp8", npz)


def test_node_output_absmax_matches_pytorch(fp32_onnx, small_model, digits):
    images = digits.calib.images[:64]
    absmax = prec.node_output_absmax(fp32_onnx, images)
    with torch.no_grad():
        logits = small_model.eval()(images)
    assert absmax["/classifier/Gemm"] == pytest.approx(float(logits.abs().max()), rel=1e-4)
    assert min(absmax["/features/features.2/Relu"], absmax["/features/features.5/Relu"]) >= 0


# -- ONNX Runtime scoring ---------------------------------------------------------------------

def test_ort_logits_feed_the_graph_type_and_score(fp32_onnx, small_model, digits):
    logits = prec.ort_logits(fp32_onnx, digits.test.images)
    with torch.no_grad():
        ref = small_model.eval()(digits.test.images)
    assert onnx_tools.max_relative_error(logits, ref) < 1e-4
    assert onnx_tools.max_relative_error(prec.ort_logits(fp32_onnx, digits.test.images, optimization="all"), logits) < 1e-5
    row = prec.score("m", "ORT", logits, digits.test, reference=ref)
    assert row["n"] == len(digits.test) and row["agree_with_fp32_pct"] == 100.0
    assert row["accuracy_pct"] == pytest.approx(training.accuracy(small_model, digits.test))
    assert row["std_error_pts"] == pytest.approx(training.standard_error_points(row["accuracy_pct"], row["n"]))


# -- PyTorch precision cases -----------------------------------------------------------------------

def test_model_case_checks_before_timing(small_model, digits):
    x = digits.test.images[:64]
    for precision in ("fp32", "bf16"):
        case = prec.model_case(small_model, x, precision, device="cpu")
        assert case.error <= prec.MODEL_TOLERANCE[precision] and case.fn().dtype == prec.TORCH_DTYPE[precision]
        assert case.params["batch"] == 64
    other = models.DigitsCNN(4)   # a different network is not the same model rounded
    with pytest.raises(AssertionError, match="do not time it"):
        prec.model_case(other, x, "fp32", device="cpu", reference_model=small_model)


def test_autocast_logits_stay_close_to_fp32(small_model, digits):
    with torch.no_grad():
        ref = small_model.eval()(digits.test.images)
    for precision in ("fp16", "bf16"):
        logits = prec.autocast_logits(small_model, digits.test.images, precision, device="cpu")
        assert logits.dtype == torch.float32 and logits.device.type == "cpu"
        assert 0 < onnx_tools.max_relative_error(logits, ref) < prec.MODEL_TOLERANCE[precision]


def test_speed_rows_on_cpu(small_model, digits):
    from common import matmul_alignment as ma

    cases = [prec.model_case(small_model, digits.test.images[:32], p, device="cpu", label=f"m {p}") for p in ("fp32", "bf16")]
    runs = ma.measure_cases(cases, device="cpu", warmup_ms=1, measure_ms=5, progress=False)
    rows = prec.speed_rows(cases, runs)
    assert [r["case"] for r in rows] == ["m fp32", "m bf16"]
    assert rows[0]["img_per_s"] == pytest.approx(32 / (rows[0]["latency_ms"] / 1e3))


def test_fp8_fake_quantize_rounds_and_saturates():
    scale = torch.tensor(0.5)
    x = torch.tensor([0.0, 1.0, 104.0, 224.0, 300.0, -1000.0, 0.3])
    y = prec.fp8_fake_quantize(x, scale)
    assert y[:4].tolist() == [0.0, 1.0, 104.0, 224.0]                 # exactly representable: unchanged
    assert y[4] == 224.0 and y[5] == -224.0                           # beyond 448 steps of 0.5: saturated
    assert abs(float(y[6]) - 0.3) <= 0.3 * 2 ** -3                    # 3 mantissa bits
    assert y.dtype == x.dtype


def test_qdq_wrapped_model_keeps_its_predictions(small_model, digits):
    wrapped = prec.qdq_wrapped(small_model, digits.calib.images)
    convs = [m for m in wrapped.modules() if type(m).__name__ == "_QDQConv"]
    assert len(convs) == 3
    with torch.no_grad():
        w = convs[1].conv.weight
        assert torch.equal(prec.fp8_fake_quantize(w, w.abs().amax() / prec.FP8_MAX), w)   # weights are FP8 values
        ours, ref = wrapped(digits.test.images), small_model.eval()(digits.test.images)
    assert onnx_tools.max_relative_error(ours, ref) < prec.MODEL_TOLERANCE["fp8"]
    assert not any(type(m).__name__ == "_QDQConv" for m in small_model.modules())   # the original is untouched


@pytest.mark.skipif(not CPU_SCALED_MM, reason="this PyTorch has no CPU torch._scaled_mm")
def test_fp8_linear_stack_matches_fp32_within_fp8_tolerance():
    cases = prec.linear_stack_cases(32, 64, 2, device="cpu")
    assert [c.precision for c in cases] == ["fp16", "fp8"]
    assert cases[0].error < prec.MODEL_TOLERANCE["fp16"] < cases[1].error < prec.MODEL_TOLERANCE["fp8"]
    assert cases[1].flops == 2 * 32 * 64 * 64 * 2 and cases[1].fn().dtype == torch.float16


@pytest.mark.skipif(not CPU_INT_MM, reason="this PyTorch has no CPU torch._int_mm")
def test_int8_case_is_exact():
    case = prec.int8_case(32, 64, 16, device="cpu")
    assert case.error == 0.0 and case.fn().dtype == torch.int32 and case.flops == 2 * 32 * 64 * 16


@needs_gpu
def test_model_case_fp16_on_gpu(small_model, digits):
    with prec.gpu_math_defaults():
        case = prec.model_case(small_model, digits.test.images[:256], "fp16", device="cuda")
    assert case.fn().is_cuda and case.error <= prec.MODEL_TOLERANCE["fp16"]
    int8 = prec.int8_case(64, 256, 128, device="cuda")
    assert int8.error == 0.0


@needs_fp8
def test_fp8_linear_stack_on_gpu():
    fp16, fp8 = prec.linear_stack_cases(64, 1024, 2, device="cuda")
    assert fp8.fn().is_cuda and fp8.error <= prec.MODEL_TOLERANCE["fp8"] and fp16.error <= prec.MODEL_TOLERANCE["fp16"]


# -- TensorRT engines, from the inspector ---------------------------------------------------------

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


def test_engine_config_names_no_precision():
    config = trt_precision.engine_config((1, 8, 8), 256, 539)
    assert config.profiles[0].shapes["input"] == ((1, 1, 8, 8), (256, 1, 8, 8), (539, 1, 8, 8))
    assert config.profiling_verbosity == "detailed" and not config.extra_flags


@pytest.mark.skipif(env.has("tensorrt"), reason="checks the message shown where TensorRT is missing")
def test_study_says_what_it_needs(digits):
    with pytest.raises(env.RequirementError, match="TensorRT"):
        trt_precision.study({}, digits.test.images, digits.test.labels, batch=8)
