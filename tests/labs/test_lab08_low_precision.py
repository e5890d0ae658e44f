"""Lab 08 (low precision), common.labs.lab08_low_precision: AutoCast results and reasons, ONNX Runtime
scoring, checked precision cases, FP8 fake quantization and FP8/INT8 products; ModelOpt configs, PTQ,
QAT, quantizer toggling, the sensitivity sweep and plan, ONNX export with Q/DQ, ModelOpt's ONNX PTQ and
reading Q/DQ placement; the TensorRT study's configuration. GPU tests need a CUDA GPU (FP8 ones compute
capability 8.9+)."""

import io
import logging
import sys

import numpy as np
import onnx
import pytest
import torch

from common import bench, cases, checks, env, models, training
from common import onnx as onnx_tools
from common.exercises.lab08 import qdq_example_graphs
from common.labs import lab08_low_precision as lab

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_fp8 = pytest.mark.skipif(not env.has("fp8"), reason="needs FP8 tensor cores (compute capability 8.9+)")


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
        with lab.captured_modelopt_output() as said:
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
    npz = lab.write_calibration_npz(digits.calib.images[:32], tmp_path / "calib.npz")
    assert set(np.load(npz).files) == {"input"}
    result = lab.autocast(fp32_onnx, tmp_path / "fp16.onnx", "fp16", npz)
    assert result.kept_fp32 == {} and result.cast_nodes == 0 and result.converted == result.nodes
    model = onnx.load(str(result.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert lab.fp32_compute_nodes(model) == []
    assert lab.fp32_compute_nodes(onnx.load(str(fp32_onnx)))   # the FP32 graph computes in FP32
    logits = lab.ort_logits(result.path, digits.test.images[:64])
    ref = lab.ort_logits(fp32_onnx, digits.test.images[:64])
    assert onnx_tools.max_relative_error(logits, ref) < 1e-2


def test_autocast_keeps_deep_reductions_in_fp32_and_says_why(fp32_onnx, digits, tmp_path):
    npz = lab.write_calibration_npz(digits.calib.images[:32], tmp_path / "calib.npz")
    # DigitsCNN(4): reduction depths 1*9, 4*9 = 36 and 8*9 = 72 (convolutions), 16 (classifier)
    result = lab.autocast(fp32_onnx, tmp_path / "deep.onnx", "fp16", npz, max_depth_of_reduction=30)
    assert set(result.kept_fp32) == {"/features/features.3/Conv", "/features/features.7/Conv"}
    assert "depth of reduction 36 exceeds 30" in result.kept_fp32["/features/features.3/Conv"]
    assert result.cast_nodes == 4 and result.converted == result.nodes - 2
    with pytest.raises(ValueError, match="fp16"):
        lab.autocast(fp32_onnx, tmp_path / "x.onnx", "fp8", npz)


def test_node_output_absmax_matches_pytorch(fp32_onnx, small_model, digits):
    images = digits.calib.images[:64]
    absmax = lab.node_output_absmax(fp32_onnx, images)
    with torch.no_grad():
        logits = small_model.eval()(images)
    assert absmax["/classifier/Gemm"] == pytest.approx(float(logits.abs().max()), rel=1e-4)
    assert min(absmax["/features/features.2/Relu"], absmax["/features/features.5/Relu"]) >= 0


# -- ONNX Runtime scoring ---------------------------------------------------------------------

def test_ort_logits_feed_the_graph_type_and_score(fp32_onnx, small_model, digits):
    logits = lab.ort_logits(fp32_onnx, digits.test.images)
    with torch.no_grad():
        ref = small_model.eval()(digits.test.images)
    assert onnx_tools.max_relative_error(logits, ref) < 1e-4
    assert onnx_tools.max_relative_error(lab.ort_logits(fp32_onnx, digits.test.images, optimization="all"), logits) < 1e-5
    row = lab.score("m", "ORT", logits, digits.test, reference=ref)
    assert row["n"] == len(digits.test) and row["agree_with_fp32_pct"] == 100.0
    assert row["accuracy_pct"] == pytest.approx(training.accuracy(small_model, digits.test))
    assert row["std_error_pts"] == pytest.approx(training.standard_error_points(row["accuracy_pct"], row["n"]))


# -- PyTorch precision cases -----------------------------------------------------------------------

def test_model_case_checks_before_timing(small_model, digits):
    x = digits.test.images[:64]
    for precision in ("fp32", "bf16"):
        case = lab.model_case(small_model, x, precision, device="cpu")
        assert case.error <= checks.tolerance(precision, "model") and case.fn().dtype == cases.TORCH_DTYPE[precision]
        assert case.params["batch"] == 64
    other = models.DigitsCNN(4)   # a different network is not the same model rounded
    # FP32 against FP32 keeps the one-operation bound: only the summation order differs
    with pytest.raises(checks.VerificationError, match=r"exceeds 1e-05 \(fp32, op\): do not time it"):
        lab.model_case(other, x, "fp32", device="cpu", reference_model=small_model)


def test_autocast_logits_stay_close_to_fp32(small_model, digits):
    with torch.no_grad():
        ref = small_model.eval()(digits.test.images)
    for precision in ("fp16", "bf16"):
        logits = lab.autocast_logits(small_model, digits.test.images, precision, device="cpu")
        assert logits.dtype == torch.float32 and logits.device.type == "cpu"
        assert 0 < onnx_tools.max_relative_error(logits, ref) < checks.tolerance(precision, "model")


def test_speed_rows_and_precision_speedups_on_cpu(small_model, digits):
    timed = lab.precision_cases({"m": (small_model, digits.test.images[:32])}, ("fp32", "bf16"), device="cpu",
                                layouts=("nchw",))
    runs = cases.measure_cases(timed, device="cpu", passes=2, warmup_ms=1, measure_ms=5, progress=False)
    rows = lab.speed_rows(timed, runs)
    assert [r["case"] for r in rows] == ["m fp32 nchw", "m bf16 nchw"]
    assert [(r["model"], r["precision"], r["layout"]) for r in rows] == [("m", "fp32", "nchw"), ("m", "bf16", "nchw")]
    assert rows[0]["img_per_s"] == pytest.approx(32 / (rows[0]["latency_ms"] / 1e3))
    assert rows[0]["regime"] == "cpu"
    speedups = lab.precision_speedups(rows, runs)
    assert list(speedups) == [("m", "bf16")] and speedups[("m", "bf16")].on == "event"   # no kernel time on a CPU
    assert speedups[("m", "bf16")].label_a == "m fp32 nchw" and speedups[("m", "bf16")].label_b == "m bf16 nchw"
    assert lab.layout_comparisons(rows, runs) == {}


def _fake(name, event_ms, kernel_ms):
    stats = bench.Stats.of([event_ms])
    kernel = bench.KernelTime(kernel_ms, kernel_ms, 0.0, 3, 1)
    return [bench.Measurement(name, "test", "cuda", 64, stats, stats, event_ms, 1, 0.0, "cuda-events", kernel=kernel)
            for _ in range(5)]


def test_layouts_are_chosen_and_compared_on_kernel_time():
    """FP32 faster in NCHW (cuDNN's channels-last FP32 kernels are slow), FP16 faster channels-last."""
    times = {("fp32", "nchw"): (20.0, 19.0), ("fp32", "channels_last"): (60.0, 59.0),
             ("fp16", "nchw"): (4.0, 3.9), ("fp16", "channels_last"): (3.0, 2.9)}
    runs = {f"w {p} {l}": _fake(f"w {p} {l}", e, k) for (p, l), (e, k) in times.items()}
    rows = [{"case": f"w {p} {l}", "model": "w", "precision": p, "layout": l, "latency_ms": e,
             **bench.kernel_fields(runs[f"w {p} {l}"])} for (p, l), (e, k) in times.items()]
    assert lab.best_layouts(rows) == {("w", "fp32"): "nchw", ("w", "fp16"): "channels_last"}
    layout = lab.layout_comparisons(rows, runs)
    assert layout[("w", "fp32")].speedup == pytest.approx(59 / 19) and layout[("w", "fp32")].on == "kernel"
    assert layout[("w", "fp16")].speedup == pytest.approx(2.9 / 3.9)
    fp16 = lab.precision_speedups(rows, runs)[("w", "fp16")]
    assert (fp16.label_a, fp16.label_b) == ("w fp32 nchw", "w fp16 channels_last")   # each in its faster layout
    assert fp16.speedup == pytest.approx(19 / 2.9)
    with_fields = lab.with_kernel_fields([{"case": "w fp16 nchw"}], runs)
    assert with_fields[0]["kernel_ms"] == pytest.approx(3.9) and with_fields[0]["regime"] == bench.DEVICE_BOUND


def test_model_case_layouts(small_model, digits):
    x = digits.test.images[:8]
    assert lab.model_case(small_model, x, "fp32", device="cpu").params["layout"] == "nchw"
    case = lab.model_case(small_model, x, "fp32", device="cpu", layout="channels_last")
    assert case.params["layout"] == "channels_last" and case.error <= 1e-5
    with pytest.raises(ValueError, match="layout must be one of"):
        lab.model_case(small_model, x, "fp32", device="cpu", layout="nhwc")


def test_ceiling_ratios_from_lab_00():
    from types import SimpleNamespace

    gpu = SimpleNamespace(device="cuda", matmul_tflops={"fp32": 50.0, "tf32": 350.0, "fp16": 650.0, "fp8": 1300.0})
    assert lab.ceiling_ratios(gpu) == {"fp16": 13.0, "tf32": 7.0}
    assert lab.ceiling_ratios(None) == {} and lab.ceiling_ratios(SimpleNamespace(device="cpu", matmul_tflops={})) == {}


def test_throughput_plot_uses_a_log_axis(tmp_path):
    rows = [{"case": "wide fp32", "img_per_s": 5.5e4}, {"case": "small fp16", "img_per_s": 8e6}]
    png = lab.throughput_plot(rows, title="t", path=tmp_path / "speed")
    assert png.exists() and (tmp_path / "speed.csv").read_text().startswith("case,img_per_s")


def test_fp8_fake_quantize_rounds_and_saturates():
    scale = torch.tensor(0.5)
    x = torch.tensor([0.0, 1.0, 104.0, 224.0, 300.0, -1000.0, 0.3])
    y = lab.fp8_fake_quantize(x, scale)
    assert y[:4].tolist() == [0.0, 1.0, 104.0, 224.0]                 # exactly representable: unchanged
    assert y[4] == 224.0 and y[5] == -224.0                           # beyond 448 steps of 0.5: saturated
    assert abs(float(y[6]) - 0.3) <= 0.3 * 2 ** -3                    # 3 mantissa bits
    assert y.dtype == x.dtype


def test_qdq_wrapped_model_keeps_its_predictions(small_model, digits):
    wrapped = lab.qdq_wrapped(small_model, digits.calib.images)
    convs = [m for m in wrapped.modules() if type(m).__name__ == "_QDQConv"]
    assert len(convs) == 3
    with torch.no_grad():
        w = convs[1].conv.weight
        assert torch.equal(lab.fp8_fake_quantize(w, w.abs().amax() / lab.FP8_MAX), w)   # weights are FP8 values
        ours, ref = wrapped(digits.test.images), small_model.eval()(digits.test.images)
    assert onnx_tools.max_relative_error(ours, ref) < checks.tolerance("fp8", "model")
    assert not any(type(m).__name__ == "_QDQConv" for m in small_model.modules())   # the original is untouched


@pytest.mark.skipif(not CPU_SCALED_MM, reason="this PyTorch has no CPU torch._scaled_mm")
def test_fp8_linear_stack_matches_fp32_within_fp8_tolerance():
    stack = lab.linear_stack_cases(32, 64, 2, device="cpu")
    assert [c.precision for c in stack] == ["fp16", "fp8"]
    assert stack[0].error < checks.tolerance("fp16", "model") < stack[1].error < checks.tolerance("fp8", "model")
    assert stack[1].flops == 2 * 32 * 64 * 64 * 2 and stack[1].fn().dtype == torch.float16


@pytest.mark.skipif(not CPU_INT_MM, reason="this PyTorch has no CPU torch._int_mm")
def test_int8_case_is_exact():
    case = lab.int8_case(32, 64, 16, device="cpu")
    assert case.error == 0.0 and case.fn().dtype == torch.int32 and case.flops == 2 * 32 * 64 * 16


@needs_gpu
def test_model_case_fp16_on_gpu(small_model, digits):
    with lab.gpu_math_defaults():
        case = lab.model_case(small_model, digits.test.images[:256], "fp16", device="cuda")
    assert case.fn().is_cuda and case.error <= checks.tolerance("fp16", "model")
    int8 = lab.int8_case(64, 256, 128, device="cuda")
    assert int8.error == 0.0


@needs_fp8
def test_fp8_linear_stack_on_gpu():
    fp16, fp8 = lab.linear_stack_cases(64, 1024, 2, device="cuda")
    assert fp8.fn().is_cuda and fp8.error <= checks.tolerance("fp8", "model")
    assert fp16.error <= checks.tolerance("fp16", "model")


@needs_gpu
def test_nchw_and_channels_last_fp32_on_gpu(small_model, digits):
    """Both layouts compute the same FP32 result; which one cuDNN runs faster is what the lab measures."""
    timed = lab.precision_cases({"m": (small_model, digits.test.images[:256])}, ("fp32",), device="cuda")
    assert [c.params["layout"] for c in timed] == list(lab.LAYOUTS) and all(c.error <= 1e-5 for c in timed)
    with lab.gpu_math_defaults():
        runs = cases.measure_cases(timed, device="cuda", passes=2, warmup_ms=2, measure_ms=5, progress=False)
    rows = lab.speed_rows(timed, runs)
    assert all(r["kernel_ms"] > 0 for r in rows)
    assert lab.layout_comparisons(rows, runs)[("m", "fp32")].on == "kernel"


def test_trtexec_and_polygraphy_commands():
    commands = lab.trtexec_commands((1, 8, 8), 256, bf16=False, fp8=True, max_batch=539)
    assert list(commands) == ["FP32", "FP16 (AutoCast)", "INT8 Q/DQ (ONNX PTQ)", "INT8 Q/DQ (PyTorch QAT)",
                              "FP8 Q/DQ (ONNX PTQ)"]
    assert commands["FP16 (AutoCast)"].startswith("trtexec --onnx=digits_fp16.onnx --minShapes=input:1x1x8x8 "
                                                  "--optShapes=input:256x1x8x8 --maxShapes=input:539x1x8x8")
    assert "--shapes=input:256x1x8x8" in commands["FP32"] and "--dumpProfile" in commands["FP32"]
    assert not any(flag in c for c in commands.values() for flag in ("--fp16", "--int8", "--best"))
    command = lab.polygraphy_command("trt_int8.onnx", "int8", 256, (1, 8, 8))
    assert command.startswith("polygraphy run trt_int8.onnx --trt --onnxrt --strongly-typed")
    assert "'input:[256,1,8,8]'" in command and "--atol 0.15 --rtol 0.15" in command


def test_polygraphy_check_reads_the_verdict():
    passed = lab.polygraphy_check(f"{sys.executable} -c \"print('[I] PASSED | Runtime: 1.2s')\"")
    assert passed == {"passed": True, "summary": "[I] PASSED | Runtime: 1.2s"}
    failed = lab.polygraphy_check(f"{sys.executable} -c \"import sys; print('[E] FAILED | Difference'); sys.exit(1)\"")
    assert failed["passed"] is False and failed["summary"] == "[E] FAILED | Difference"
    missing = lab.polygraphy_check("no-such-tool-here run x.onnx")
    assert missing == {"passed": None, "summary": "no-such-tool-here is not on the PATH"}


def test_engine_config_names_no_precision():
    config = lab.engine_config((1, 8, 8), 256, 539)
    assert config.profiles[0].shapes["input"] == ((1, 1, 8, 8), (256, 1, 8, 8), (539, 1, 8, 8))
    assert config.profiling_verbosity == "detailed" and not config.extra_flags


@pytest.mark.skipif(env.has("tensorrt"), reason="checks the message shown where TensorRT is missing")
def test_study_says_what_it_needs(digits):
    with pytest.raises(env.RequirementError, match="TensorRT"):
        lab.tensorrt_study({}, digits.test.images, digits.test.labels, batch=8)


# -- ModelOpt quantization (all on the CPU) -------------------------------------------------------

@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    model = models.DigitsCNN(8)
    training.train(model, digits.train, epochs=4)
    return model, training.accuracy(model, digits.test)


def _bits(cfg, name):
    return next(rule["cfg"]["num_bits"] for rule in cfg["quant_cfg"] if rule.get("quantizer_name") == name)


def test_configs_are_modelopt_presets_or_the_harsh_format():
    mtq = lab.mtq()
    assert lab.config("int8") == mtq.INT8_DEFAULT_CFG and lab.config("fp8") == mtq.FP8_DEFAULT_CFG
    harsh = lab.config("w4a3")
    assert _bits(harsh, "*weight_quantizer") == 4 and _bits(harsh, "*input_quantizer") == 3
    assert _bits(mtq.INT8_DEFAULT_CFG, "*input_quantizer") == 8   # the preset itself is untouched
    with pytest.raises(ValueError, match="w4a3"):
        lab.config("int3")


def test_ptq_quantizes_a_copy_and_reports_its_quantizers(trained, digits):
    model, fp32_pct = trained
    q = lab.ptq(model, "int8", digits.calib.images)
    assert lab.quantized_layers(q) == ["features.0", "features.3", "features.6", "features.7", "classifier"]
    assert not lab.quantizers(model)                        # the original stays a plain model
    summary = {(r["layer"], r["quantizer"]): r for r in lab.quantizer_summary(q)}
    assert summary[("features.3", "weight")]["format"] == "INT8"
    assert summary[("features.3", "weight")]["amax"].endswith("(16 channels)")   # per output channel
    assert summary[("features.0", "input")]["amax"] == "1"                       # pixels in [0, 1]
    assert abs(training.accuracy(q, digits.test) - fp32_pct) <= 2.0
    fp8 = lab.quantizer_summary(lab.ptq(model, "fp8", digits.calib.images))
    assert {r["format"] for r in fp8} == {"E4M3"}


def test_quantized_only_toggles_and_restores(trained, digits):
    model, _ = trained
    q = lab.ptq(model, "w4a3", digits.calib.images)
    x = digits.test.images[:64]
    with torch.no_grad():
        full = q(x)
        with lab.quantized_only(q, []):
            plain = q(x)
            assert lab.quantized_layers(q) == []
        with lab.quantized_only(q, ["features.3"]):
            assert lab.quantized_layers(q) == ["features.3"]
        again = q(x)
        reference = model.eval()(x)
    assert torch.allclose(plain, reference, atol=1e-5)        # nothing quantized: the FP32 model
    assert torch.equal(full, again) and not torch.allclose(full, reference, atol=1e-3)


def test_sensitivity_and_plan(trained, digits):
    model, fp32_pct = trained
    q = lab.ptq(model, "w4a3", digits.calib.images)
    rows = lab.sensitivity(q, digits.test, fp32_pct)
    assert [r["layer"] for r in rows] == lab.quantized_layers(q)
    for r in rows:
        assert r["drop_alone_pts"] == pytest.approx(fp32_pct - r["only_this_pct"])
    plan = lab.mixed_precision_plan(q, digits.test, rows, fp32_pct, budget_pts=1.0)
    assert plan[0]["kept_high_precision"] == "(none)"
    assert plan[0]["accuracy_pct"] == pytest.approx(training.accuracy(q, digits.test))
    assert plan[-1]["loss_pts"] <= 1.0 or len(plan) == len(rows) + 1
    costliest = max(rows, key=lambda r: (r["drop_alone_pts"], r["all_but_this_pct"]))["layer"]
    if len(plan) > 1:
        assert plan[1]["kept_high_precision"] == costliest
    assert lab.quantized_layers(q) == [r["layer"] for r in rows]   # the plan leaves every quantizer on


def test_qat_trains_through_the_quantizers(trained, digits):
    model, _ = trained
    q = lab.ptq(model, "w4a3", digits.calib.images)
    before = q.features[3].weight.detach().clone()
    fit = lab.qat(q, digits.train, epochs=1)
    assert fit.epochs == 1 and not torch.equal(before, q.features[3].weight)
    assert lab.quantized_layers(q)                           # still quantized


def test_export_and_onnx_ptq_place_qdq(trained, digits, tmp_path):
    model, _ = trained
    q = lab.ptq(model, "int8", digits.calib.images)
    exported = onnx.load(str(onnx_tools.export(q, digits.test.images[:4], tmp_path / "q.onnx")))
    placement = lab.qdq_placement(exported)
    assert placement["/features/features.3/Conv"] == {"op": "Conv", "activation": True, "weight": True}
    assert placement["/classifier/Gemm"]["weight"]
    fp32 = onnx_tools.export(model, digits.test.images[:4], tmp_path / "fp32.onnx")
    out = lab.onnx_ptq(fp32, tmp_path / "ptq.onnx", "int8", digits.calib.images[:16])
    graph = onnx.load(str(out))
    assert lab.qdq_counts(graph)["QuantizeLinear"] >= 4
    ranges = lab.activation_ranges(graph, "int8")
    assert ranges["input"] == pytest.approx(1.0, rel=1e-2) and all(v > 0 for v in ranges.values())
    assert lab.activation_scales(graph)["input"] == pytest.approx(ranges["input"] / 127)

    assert not lab.qdq_placement(graph)["/classifier/Gemm"]["weight"]   # K = 32, N = 10 < 16: left alone
    logits = lab.ort_logits(out, digits.test.images)
    assert training.accuracy_of(torch.from_numpy(logits).argmax(1), digits.test.labels) > 50


def test_onnx_fp8_ptq_reuses_the_int8_calibration(digits, tmp_path):
    """ModelOpt's ONNX FP8 PTQ calibrates in INT8 and multiplies each scale by 448 / 127 (not 127 / 448):
    the same amax, which E4M3 then holds at 127^2 / 448 = 36 rather than at 448."""
    torch.manual_seed(0)
    model = models.DigitsCNN(32).eval()           # wide enough that ModelOpt's FP8 rules quantize its convolutions
    fp32 = onnx_tools.export(model, digits.test.images[:4], tmp_path / "fp32.onnx")
    int8 = onnx.load(str(lab.onnx_ptq(fp32, tmp_path / "int8.onnx", "int8", digits.calib.images[:16], method="max")))
    fp8 = onnx.load(str(lab.onnx_ptq(fp32, tmp_path / "fp8.onnx", "fp8", digits.calib.images[:16], method="max")))
    shared = [t for t in lab.activation_scales(fp8) if t in lab.activation_scales(int8)]
    assert shared
    for tensor in shared:
        check = lab.fp8_scale_check(int8, fp8, tensor)
        assert check["ratio"] == pytest.approx(lab.ONNX_FP8_SCALE_FACTOR, rel=1e-3)
        assert check["amax_in_e4m3"] == pytest.approx(127 ** 2 / 448, rel=1e-3)
        assert check["fp8_saturates_at"] == pytest.approx(check["amax"] * (448 / 127) ** 2, rel=1e-3)
        assert lab.activation_ranges(fp8, "fp8")[tensor] == pytest.approx(check["fp8_saturates_at"])


def test_qdq_placement_on_hand_built_graphs():
    (graph_a, want_a), (graph_b, want_b) = qdq_example_graphs()
    for graph in (graph_a, graph_b):
        onnx.checker.check_model(graph)
    a = lab.qdq_placement(graph_a)
    assert a["conv"] == {"op": "Conv", "activation": True, "weight": True}
    assert a["pool"] == {"op": "MaxPool", "activation": True, "weight": False}
    assert a["gemm"] == {"op": "Gemm", "activation": False, "weight": False}   # listed: a GEMM, unquantized
    b = lab.qdq_placement(graph_b)
    assert b["gemm"]["weight"] and not b["gemm"]["activation"] and b["add"]["activation"]
    for graph, want in ((graph_a, want_a), (graph_b, want_b)):
        readers = {}
        for info in lab.qdq_placement(graph).values():
            if info["activation"] or info["weight"]:
                readers[info["op"]] = readers.get(info["op"], 0) + 1
        assert readers == want
    assert lab.qdq_counts(graph_a) == {"QuantizeLinear": 3, "DequantizeLinear": 3}


def test_placement_table_lines_up_graphs():
    (graph_a, _), (graph_b, _) = qdq_example_graphs()
    rows = lab.placement_table({"A": graph_a, "B": graph_b})
    by_node = {r["node"]: r for r in rows}
    assert by_node["conv"]["A"] == "act+weight" and by_node["conv"]["B"] == "-"
    assert by_node["gemm"]["A"] == "-" and by_node["gemm"]["B"] == "weight"
    assert by_node["add"]["B"] == "act" and "relu" not in by_node


def test_model_flops_counts_convolutions_and_linear_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 10))
    # conv: 8x4x4 outputs x (3 x 3 x 3) multiply-adds; linear: 10 outputs x 128
    assert lab.model_flops(net, torch.zeros(1, 3, 4, 4)) == 2 * (8 * 4 * 4 * 27 + 10 * 128)
    assert lab.model_flops(net, torch.zeros(2, 3, 4, 4)) == 2 * lab.model_flops(net, torch.zeros(1, 3, 4, 4))


def test_ceiling_shares_read_each_precision_in_its_faster_layout_on_event_time():
    from types import SimpleNamespace

    speed = [{"model": "m", "precision": "fp32", "layout": "nchw", "batch": 10, "latency_ms": 2.0, "kernel_ms": 1.9},
             {"model": "m", "precision": "fp32", "layout": "channels_last", "batch": 10, "latency_ms": 1.0, "kernel_ms": 0.9},
             {"model": "m", "precision": "fp16", "layout": "channels_last", "batch": 10, "latency_ms": 0.1, "kernel_ms": 0.05}]
    gpu = SimpleNamespace(device="cuda", matmul_tflops={"fp32": 50.0, "fp16": 600.0})
    shares = lab.ceiling_shares(speed, {"m": 2e9}, gpu)   # 20 GFLOP per batch
    assert shares[("m", "fp32")]["layout"] == "channels_last" and shares[("m", "fp32")]["tflops"] == pytest.approx(20.0)
    assert shares[("m", "fp32")]["pct_of_ceiling"] == pytest.approx(40.0)
    assert shares[("m", "fp16")]["pct_of_ceiling"] == pytest.approx(100 / 3)   # 200 of 600 TFLOP/s
    assert lab.ceiling_shares(speed, {"m": 2e9}, None) == {}
