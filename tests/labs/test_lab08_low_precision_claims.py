"""Lab 08 (low precision): every claim and branch of common.labs.lab08_low_precision's claims, driven by
synthetic results: holds, does not hold, inconclusive, not applicable here (with its reason), GPU / CPU /
TensorRT."""

import dataclasses
import math

import pytest

from common import bench, report
from claim_keys import claims_by_key
from common.labs import lab08_low_precision as lab

HOLDS, FAILS, NA, INCONCLUSIVE = report.HOLDS, report.FAILS, report.NOT_APPLICABLE, report.INCONCLUSIVE
GEMM_BIG, GEMM_SMALL, WIDE = 8192, (64, 1024, 1024), 256


def cmp(speedup, spread=1.0, a="base", b="other", on="kernel"):
    """A comparison over five passes whose B runs `speedup` times faster than A, A's pass medians spread
    over +-`spread`/2 %: its 95% interval lies within about that of the speedup."""
    passes_a = tuple(speedup * (1 + spread / 200 * d) for d in (-1, -0.5, 0, 0.5, 1))
    return bench.Comparison(a, b, median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread, spread_b_pct=0.0,
                            passes_a_ms=passes_a, passes_b_ms=(1.0,) * 5, on=on)


def runs_of(name, ms):
    stats = bench.Stats.of([ms])
    kernel = bench.KernelTime(ms * 0.9, ms * 0.9, 0.0, 3, 1)
    return [bench.Measurement(name, "test", "cuda", 1, stats, stats, ms, 1, 0.0, "cuda-events", kernel=kernel)
            for _ in range(5)]


def trt_study(*, int8_layers=4, accuracy=98.0, refused=(), timed=("FP16 (AutoCast)", "INT8 Q/DQ (ONNX PTQ)"),
              fp16_ms=2.0, int8_ms=1.0, polygraphy=(True, True, True)):
    checks = [{"passed": passed, "summary": "PASSED | Command: polygraphy run" if passed else
               "FAILED | Output: 'output' | Difference exceeds tolerance"} for passed in polygraphy]
    rows = [{"engine": "FP32", "accuracy_pct": 98.5, "precisions": {"FLOAT": 7}, "polygraphy": checks[0]},
            {"engine": "FP16 (AutoCast)", "accuracy_pct": accuracy, "precisions": {"HALF": 7}, "polygraphy": checks[1]}]
    if "INT8 Q/DQ (ONNX PTQ)" not in refused:
        rows.append({"engine": "INT8 Q/DQ (ONNX PTQ)", "accuracy_pct": 98.2, "polygraphy": checks[2],
                     "precisions": {"INT8": int8_layers, "HALF": 3} if int8_layers else {"HALF": 7}})
    rows += [{"engine": name, "error": "could not parse"} for name in refused]
    ms = {"FP16 (AutoCast)": fp16_ms, "INT8 Q/DQ (ONNX PTQ)": int8_ms}
    return {"backend": "TensorRT 11.4", "rows": rows, "runs": {name: runs_of(name, ms[name]) for name in timed}}


def gpu_speedups(fp16_wide=3.0, fp16_small=1.3, tf32_wide=1.8):
    speedups = {(f"DigitsCNN({WIDE})", "fp16"): cmp(fp16_wide, 2.0), ("DigitsCNN(32)", "fp16"): cmp(fp16_small)}
    if tf32_wide is not None:
        speedups[(f"DigitsCNN({WIDE})", "tf32")] = cmp(tf32_wide, 3.0)
    return speedups


@pytest.fixture
def results():
    """A GPU run with TensorRT where every claim holds."""
    return lab.Results(
        n_test=539, fp32_pct=98.5, device="cuda", has_gpu=True, onnxruntime="1.23.2",
        fp16_kept_fp32={}, largest_activation=12.34,
        accuracy_rows=[{"model": "FP32 graph", "accuracy_pct": 98.5},
                       {"model": "FP16 graph (AutoCast)", "accuracy_pct": 98.33}],
        torch_pct={"fp32": 98.5, "tf32": 98.5, "fp16": 98.5, "bf16": 98.15},
        calibration_rows=[{"model": "INT8, max, 180 images", "pool_range": 4.0},
                          {"model": "INT8, entropy, 180 images", "pool_range": 3.0}],
        fused_check={"int8": (1e-3, 98.5, None), "fp8": (2e-3, 98.33, None)},
        qat_by={"int8": {"ptq_pct": 98.33, "qat_pct": 98.5, "ptq_loss_pts": 0.17, "qat_loss_pts": 0.0},
                "fp8": {"ptq_pct": 98.5, "qat_pct": 98.15, "ptq_loss_pts": 0.0, "qat_loss_pts": 0.35},
                "w4a3": {"ptq_pct": 80.0, "qat_pct": 98.0, "ptq_loss_pts": 18.5, "qat_loss_pts": 0.5}},
        plan=[{"kept_high_precision": "(none)", "loss_pts": 18.5},
              {"kept_high_precision": "features.0", "loss_pts": 0.8}],
        wide=WIDE, precision_speedups=gpu_speedups(), gemm_big=GEMM_BIG, gemm_small=GEMM_SMALL,
        fp8_pairs={key: cmp(v) for key, v in {("fp8", GEMM_BIG): 1.8, ("fp8", GEMM_SMALL[0]): 0.9,
                                              ("int8", GEMM_BIG): 1.4, ("fp8", "stack_big"): 1.3,
                                              ("fp8", "stack_small"): 0.8}.items()},
        qdq_cmp=cmp(0.7), qdq_precision="fp16", trt_study=trt_study(),
        layout_cmps={(f"DigitsCNN({WIDE})", "fp32"): cmp(2.5, b="DigitsCNN(256) fp32 nchw")},
        ceiling_ratio={"fp16": 13.0, "tf32": 7.0},
        fp8_scale={"amax": 4.73, "int8_scale": 4.73 / 127, "fp8_scale": 4.73 / 127 * 448 / 127,
                   "ratio": 448 / 127, "fp8_saturates_at": 4.73 * (448 / 127) ** 2, "amax_in_e4m3": 127 ** 2 / 448})


def by_key(lab_report, r):
    """Claims by their key in claim_texts."""
    return claims_by_key(lab_report, lab.claim_texts(r.wide, r.gemm_big, r.gemm_small))


def run(section, r):
    return by_key(section(r, report.LabReport("test")), r)


# -- the whole table ------------------------------------------------------------------------------

def test_claims_lists_every_claim_in_the_notebook_order(results):
    lab_report = lab.claims(results)
    assert lab_report.lab == "08_low_precision"
    assert [c.claim for c in lab_report.claims] == list(lab.claim_texts(WIDE, GEMM_BIG, GEMM_SMALL).values())
    assert {c.status for c in lab_report.claims} == {HOLDS}


def test_claims_add_to_the_report_passed_in(results):
    lab_report = report.LabReport("08_low_precision")
    lab_report.add_figure("figure.png")
    assert lab.claims(results, lab_report) is lab_report and lab_report.figures == ["figure.png"]


def test_each_section_adds_to_the_report_passed_in(results):
    lab_report = report.LabReport("08_low_precision")
    assert lab.accuracy_claims(results, lab_report) is lab_report and len(lab_report.claims) == 13
    assert lab.speed_claims(results, lab_report) is lab_report and len(lab_report.claims) == 25
    assert lab.tensorrt_claims(results, lab_report) is lab_report and len(lab_report.claims) == 29


def test_claim_texts_name_the_sizes():
    texts = lab.claim_texts(512, 1024, (64, 128, 256))
    assert texts["fp16_wide"].startswith("FP16 is at least 2x faster than FP32 on the wide DigitsCNN(512) (PyTorch")
    assert texts["fp8_big"].endswith("at 1024^3 (kernel time)") and texts["int8_mm"].endswith("at 1024^3 (kernel time)")
    assert texts["fp8_small"] == "FP8 does not pay at 64x128x256: under 1.2x FP16 (kernel time)"


def test_the_advisor_reads_the_small_fp8_size_from_its_claim(results):
    """common.advise parses "does not pay at MxKxN:" from lab 08's claims into a GEMM size."""
    text = lab.claim_texts(WIDE, GEMM_BIG, GEMM_SMALL)["fp8_small"]
    dims = text.split("does not pay at")[1].split(":")[0].strip().split("x")
    assert tuple(int(d) for d in dims) == GEMM_SMALL


# -- accuracy ------------------------------------------------------------------------------------

def test_accuracy_claims_hold(results):
    got = run(lab.accuracy_claims, results)
    assert list(got) == ["autocast", "fp16_acc", "bf16_acc", "entropy", "fp8_scale", "ort_fusion", "int8_ptq",
                         "fp8_ptq", "qat_within", "harsh_ptq", "qat_recovers", "harsh_qat", "mixed"]
    assert all(c.status == HOLDS for c in got.values())
    assert got["fp8_scale"].measured == "3.5276x the INT8 scale"
    assert got["fp8_scale"].why == ("448/127 = 3.5276; amax 4.73 becomes 36.0 in E4M3 (of 448), the pair saturates "
                                    "at 58.9")
    assert got["autocast"].measured == "0 nodes kept"
    assert got["autocast"].why == "largest |activation| 12.3 vs data_max 512"
    assert got["fp16_acc"].measured == "+0.17 pts lost" and got["fp16_acc"].why == "n = 539"
    assert got["bf16_acc"].measured == "+0.35 pts lost" and got["bf16_acc"].why == "PyTorch on cuda, n = 539"
    assert got["entropy"].measured == "0.75x the max range" and got["entropy"].why == "INT8, 180 images, max-pool output"
    assert got["ort_fusion"].measured == "2.00e-03 rel. difference"
    assert got["ort_fusion"].why == "ONNX Runtime 1.23.2; accuracy with all optimizations 98.3%"
    assert got["int8_ptq"].measured == "+0.17 pts lost" and got["fp8_ptq"].measured == "+0.00 pts lost"
    assert got["qat_within"].measured == "+0.35 pts lost (worst)"
    assert got["qat_within"].why == "INT8 98.50%, FP8 98.15%, FP32 98.50%"
    assert got["harsh_ptq"].measured == "18.50 pts lost"
    assert got["qat_recovers"].measured == "97% won back" and got["qat_recovers"].why == "PTQ 80.00% -> QAT 98.00%"
    assert got["harsh_qat"].measured == "+0.50 pts lost"
    assert got["mixed"].measured == "+0.80 pts lost" and got["mixed"].why == "kept in high precision: features.0"


def test_accuracy_claims_fail(results):
    r = dataclasses.replace(
        results, fp16_kept_fp32={"/features/features.3/Conv": "depth of reduction 288 exceeds 256"},
        accuracy_rows=[{"model": "FP16 graph (AutoCast)", "accuracy_pct": 97.9}], torch_pct={"bf16": 97.9},
        calibration_rows=[{"model": "INT8, max, 180 images", "pool_range": 4.0},
                          {"model": "INT8, entropy, 180 images", "pool_range": 4.0}],
        fused_check={"fp8": (0.02, 97.0, None)},
        fp8_scale=dict(results.fp8_scale, ratio=127 / 448),
        qat_by={"int8": {"ptq_pct": 97.0, "qat_pct": 97.4, "ptq_loss_pts": 1.5, "qat_loss_pts": 1.1},
                "fp8": {"ptq_pct": 97.3, "qat_pct": 98.5, "ptq_loss_pts": 1.2, "qat_loss_pts": 0.0},
                "w4a3": {"ptq_pct": 97.6, "qat_pct": 97.2, "ptq_loss_pts": 0.9, "qat_loss_pts": 1.3}},
        plan=[{"kept_high_precision": "(none)", "loss_pts": 3.0},
              {"kept_high_precision": "features.0, classifier", "loss_pts": 1.2}])
    got = run(lab.accuracy_claims, r)
    assert all(c.status == FAILS for c in got.values()), {k: c.status for k, c in got.items() if c.status != FAILS}
    assert got["autocast"].measured == "1 nodes kept"
    assert got["fp16_acc"].measured == "+0.60 pts lost" and got["bf16_acc"].measured == "+0.60 pts lost"
    assert got["entropy"].measured == "1.00x the max range"
    assert got["ort_fusion"].measured == "2.00e-02 rel. difference"
    assert got["int8_ptq"].measured == "+1.50 pts lost" and got["fp8_ptq"].measured == "+1.20 pts lost"
    assert got["qat_within"].measured == "+1.10 pts lost (worst)"
    assert got["harsh_ptq"].measured == "0.90 pts lost"
    assert got["qat_recovers"].measured == "-44% won back"          # QAT lost more than PTQ
    assert got["harsh_qat"].measured == "+1.30 pts lost"
    assert got["mixed"].measured == "+1.20 pts lost"


def test_accuracy_thresholds_are_inclusive_where_the_cell_said_so(results):
    r = dataclasses.replace(
        results, accuracy_rows=[{"model": "FP16 graph (AutoCast)", "accuracy_pct": 98.0}], torch_pct={"bf16": 98.0},
        fused_check={"fp8": (0.01, 98.0, None)},
        qat_by={"int8": {"ptq_pct": 97.5, "qat_pct": 97.5, "ptq_loss_pts": 1.0, "qat_loss_pts": 1.0},
                "fp8": {"ptq_pct": 97.5, "qat_pct": 97.5, "ptq_loss_pts": 1.0, "qat_loss_pts": 1.0},
                "w4a3": {"ptq_pct": 94.5, "qat_pct": 96.5, "ptq_loss_pts": 4.0, "qat_loss_pts": 2.0}},
        plan=[{"kept_high_precision": "(none)", "loss_pts": 1.0}])
    got = run(lab.accuracy_claims, r)
    for key in ("fp16_acc", "bf16_acc", "ort_fusion", "int8_ptq", "fp8_ptq", "qat_within", "qat_recovers", "mixed"):
        assert got[key].status == HOLDS, key
    assert got["qat_recovers"].measured == "50% won back" and got["harsh_qat"].status == FAILS


def test_fp8_scale_is_not_applicable_without_the_onnx_fp8_graph(results):
    got = run(lab.accuracy_claims, dataclasses.replace(results, fp8_scale={}))
    assert got["fp8_scale"].status == NA and got["fp8_scale"].why == "the ONNX FP8 graph was not calibrated in this run"


def test_bf16_accuracy_is_not_applicable_without_bf16(results):
    got = run(lab.accuracy_claims, dataclasses.replace(results, torch_pct={"fp32": 98.5, "fp16": 98.5}))
    assert got["bf16_acc"].status == NA and got["bf16_acc"].why == "BF16 tensor cores need compute capability 8.0+"


def test_ort_fusion_fails_when_onnx_runtime_refuses_the_fused_graph(results):
    refusal = "InvalidGraph: [ONNXRuntimeError] : 10 : INVALID_GRAPH"
    got = run(lab.accuracy_claims, dataclasses.replace(results, fused_check={"fp8": (None, None, refusal)}))
    assert got["ort_fusion"].status == FAILS and got["ort_fusion"].measured == "graph refused"
    assert got["ort_fusion"].why == f"ONNX Runtime 1.23.2: {refusal}"


def test_qat_cannot_win_back_what_ptq_did_not_lose(results):
    qat_by = dict(results.qat_by, w4a3={"ptq_pct": 98.5, "qat_pct": 98.5, "ptq_loss_pts": 0.0, "qat_loss_pts": 0.0})
    got = run(lab.accuracy_claims, dataclasses.replace(results, qat_by=qat_by))
    assert got["harsh_ptq"].status == FAILS
    assert got["qat_recovers"].status == FAILS and got["qat_recovers"].measured == "nan% won back"
    assert math.isnan(got["qat_recovers"].value)


# -- speed ---------------------------------------------------------------------------------------

def test_speed_claims_hold_on_a_gpu(results):
    got = run(lab.speed_claims, results)
    assert list(got) == ["layout_fp32", "fp16_wide", "ceiling", "tf32_wide", "tf32_ceiling", "small_model", "fp8_big",
                         "fp8_small", "int8_mm", "stack_big", "stack_small", "qdq_cnn"]
    assert all(c.status == HOLDS for c in got.values()), {k: (c.status, c.why) for k, c in got.items()}
    assert got["layout_fp32"].measured.startswith("2.50x [")
    assert got["layout_fp32"].why == "NCHW over channels-last, FP32, TF32 off; judged on kernel time over 5 passes"
    assert got["fp16_wide"].measured.startswith("3.00x [")
    assert got["fp16_wide"].why == "other vs base; judged on kernel time over 5 passes"
    assert got["ceiling"].measured.startswith("3.00x [") and got["ceiling"].why.startswith("FP16/FP32 ceilings 13.0x")
    assert got["tf32_wide"].measured.startswith("1.80x [")
    assert got["tf32_ceiling"].measured.startswith("1.80x [") and got["tf32_ceiling"].why.startswith("TF32/FP32 ceilings 7.0x")
    assert got["small_model"].measured.startswith("0.43x [")          # 1.3x on the small model / 3.0x on the wide
    assert got["small_model"].why == "FP16 over FP32: small model 1.30x, wide model 3.00x"
    assert got["fp8_big"].measured.startswith("1.80x [") and got["stack_small"].measured.startswith("0.80x [")
    assert got["qdq_cnn"].measured.startswith("0.70x [")
    assert got["qdq_cnn"].why == "fp16 on cuda; judged on kernel time over 5 passes"


def test_speed_claims_fail_on_a_gpu(results):
    r = dataclasses.replace(
        results, precision_speedups=gpu_speedups(fp16_wide=1.9, fp16_small=2.5, tf32_wide=0.9),
        fp8_pairs={key: cmp(v) for key, v in {("fp8", GEMM_BIG): 1.4, ("fp8", GEMM_SMALL[0]): 1.3,
                                              ("int8", GEMM_BIG): 0.8, ("fp8", "stack_big"): 0.9,
                                              ("fp8", "stack_small"): 1.3}.items()},
        qdq_cmp=cmp(1.1), layout_cmps={(f"DigitsCNN({WIDE})", "fp32"): cmp(0.8)}, ceiling_ratio={"fp16": 1.5, "tf32": 0.5})
    got = run(lab.speed_claims, r)
    assert all(c.status == FAILS for c in got.values()), {k: c.status for k, c in got.items() if c.status != FAILS}
    assert got["ceiling"].why.startswith("95% interval 1.88x-1.92x lies above 1.50x; FP16/FP32 ceilings 1.5x")
    assert got["tf32_wide"].measured.startswith("0.90x [")
    assert got["stack_big"].measured.startswith("0.90x [") and got["qdq_cnn"].measured.startswith("1.10x [")


def test_speed_claims_inconclusive_inside_the_noise(results):
    r = dataclasses.replace(
        results, precision_speedups=gpu_speedups(fp16_wide=2.0, fp16_small=2.0, tf32_wide=1.0),
        fp8_pairs={("fp8", GEMM_BIG): cmp(1.5, 10.0), ("fp8", "stack_small"): cmp(1.0, 10.0)},
        qdq_cmp=cmp(1.0, 10.0), layout_cmps={(f"DigitsCNN({WIDE})", "fp32"): cmp(1.0, 10.0)},
        ceiling_ratio={"fp16": 2.0})
    got = run(lab.speed_claims, r)
    for key in ("layout_fp32", "fp16_wide", "ceiling", "tf32_wide", "small_model", "fp8_big", "stack_small", "qdq_cnn"):
        assert got[key].status == INCONCLUSIVE, (key, got[key].status, got[key].why)
        assert "straddles" in got[key].why


def test_claims_that_need_a_measurement_this_run_lacks(results):
    r = dataclasses.replace(results, precision_speedups=gpu_speedups(tf32_wide=None), layout_cmps={}, ceiling_ratio={})
    got = run(lab.speed_claims, r)
    assert got["tf32_wide"].status == NA and got["tf32_wide"].why == "TF32 tensor cores need compute capability 8.0+"
    assert got["layout_fp32"].status == NA and got["layout_fp32"].why == "the wide model was measured in one layout only"
    assert got["ceiling"].status == NA and got["ceiling"].why == "no lab 00 ceilings cached on this machine (run lab 00 first)"
    assert got["fp16_wide"].status == HOLDS


def test_fp8_pairs_missing_on_a_gpu_without_fp8(results):
    got = run(lab.speed_claims, dataclasses.replace(results, fp8_pairs={("int8", GEMM_BIG): cmp(1.4)}))
    assert got["int8_mm"].status == HOLDS
    for key in ("fp8_big", "fp8_small", "stack_big", "stack_small"):
        assert got[key].status == NA and got[key].why == "needs FP8 (compute capability 8.9+) or INT8 tensor cores"


def test_speed_claims_on_a_cpu(results):
    r = dataclasses.replace(results, has_gpu=False, device="cpu", precision_speedups={}, fp8_pairs={}, layout_cmps={},
                            qdq_cmp=cmp(0.5, 4.0, on="event"), qdq_precision="fp32")
    got = run(lab.speed_claims, r)
    for key in (*lab.GPU_SPEED_KEYS, "fp8_big", "fp8_small", "int8_mm", "stack_big", "stack_small"):
        assert got[key].status == NA and got[key].why == "needs an NVIDIA GPU; this CPU run measured the CPU counterparts above"
    assert got["qdq_cnn"].status == HOLDS and got["qdq_cnn"].why == "fp32 on cpu; judged on event time over 5 passes"


# -- TensorRT ------------------------------------------------------------------------------------

def test_tensorrt_claims_hold(results):
    got = run(lab.tensorrt_claims, results)
    assert list(got) == ["trt_int8", "trt_acc", "trt_polygraphy", "trt_int8_speed"]
    assert all(c.status == HOLDS for c in got.values())
    assert got["trt_int8"].measured == "4 INT8 layers" and got["trt_int8"].why == "{'INT8': 4, 'HALF': 3}"
    assert got["trt_acc"].measured == "+0.50 pts lost (worst)" and got["trt_acc"].why == "3 engines, n = 539"
    assert got["trt_polygraphy"].measured == "3 of 3 engines match" and got["trt_polygraphy"].why == ""
    assert got["trt_int8_speed"].measured.startswith("2.00x")
    assert got["trt_int8_speed"].why == "judged on kernel time over 5 passes"


def test_tensorrt_claims_fail(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(
        results, trt_study=trt_study(int8_layers=0, accuracy=97.0, fp16_ms=1.0, int8_ms=2.0,
                                     polygraphy=(True, False, True))))
    assert all(c.status == FAILS for c in got.values())
    assert got["trt_int8"].measured == "0 INT8 layers" and got["trt_int8"].why == "{'HALF': 7}"
    assert got["trt_acc"].measured == "+1.50 pts lost (worst)"
    assert got["trt_polygraphy"].measured == "2 of 3 engines match"
    assert got["trt_polygraphy"].why == "FP16 (AutoCast): FAILED | Output: 'output' | Difference exceeds tolerance"
    assert got["trt_int8_speed"].measured.startswith("0.50x")


def test_tensorrt_speed_inconclusive_when_the_engines_tie(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_study=trt_study(fp16_ms=1.0, int8_ms=1.0)))
    assert got["trt_int8_speed"].status == INCONCLUSIVE and "straddles 1.00x" in got["trt_int8_speed"].why


def test_polygraphy_not_run_is_not_applicable(results):
    study = trt_study(polygraphy=(None, None, None))
    for row in study["rows"]:
        row["polygraphy"] = {"passed": None, "summary": "polygraphy is not on the PATH"}
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_study=study))
    assert got["trt_polygraphy"].status == NA and got["trt_polygraphy"].why == "polygraphy is not on the PATH"


def test_a_refused_engine_fails_the_accuracy_claim_and_skips_the_speed_claim(results):
    study = trt_study(refused=("INT8 Q/DQ (ONNX PTQ)", "FP8 Q/DQ (ONNX PTQ)"), timed=("FP16 (AutoCast)",))
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_study=study))
    assert got["trt_int8"].status == FAILS and got["trt_int8"].why == "the INT8 graph did not build"
    assert got["trt_acc"].status == FAILS and got["trt_acc"].measured == "+0.50 pts lost (worst)"
    assert got["trt_acc"].why == "refused: INT8 Q/DQ (ONNX PTQ), FP8 Q/DQ (ONNX PTQ)"
    assert got["trt_polygraphy"].measured == "2 of 2 engines match"
    assert got["trt_int8_speed"].status == NA and got["trt_int8_speed"].why == "the FP16 or the INT8 engine did not build"


def test_no_engine_built_leaves_no_accuracy_to_claim(results):
    study = {"backend": "TensorRT 11.4", "rows": [{"engine": "FP32", "error": "x"}], "runs": {}}
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_study=study))
    assert got["trt_acc"].status == FAILS and got["trt_acc"].measured == "+inf pts lost (worst)"
    assert got["trt_polygraphy"].status == NA and got["trt_polygraphy"].why == "Polygraphy was not run"


def test_tensorrt_claims_without_tensorrt(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_study=None))
    assert [c.status for c in got.values()] == [NA] * 4
    assert {c.why for c in got.values()} == {"needs TensorRT (not installed here); ONNX Runtime scored the graphs instead"}


def test_a_gain_past_the_ceilings_ratio_says_which_run_fell_short_of_its_ceiling(results):
    shares = {(f"DigitsCNN({WIDE})", "fp32"): {"tflops": 15.9, "ceiling_tflops": 53.9, "pct_of_ceiling": 29.5,
                                               "layout": "channels_last"},
              (f"DigitsCNN({WIDE})", "fp16"): {"tflops": 415.0, "ceiling_tflops": 663.0, "pct_of_ceiling": 62.6,
                                               "layout": "channels_last"}}
    r = dataclasses.replace(results, precision_speedups=gpu_speedups(fp16_wide=1.9, fp16_small=2.5, tf32_wide=0.9),
                            ceiling_ratio={"fp16": 1.5}, ceiling_share=shares)
    got = run(lab.speed_claims, r)
    assert got["ceiling"].status == FAILS
    assert ("FP32 ran at 30% of the FP32 matrix ceiling (15.9 of 53.9 TFLOP/s), FP16 at 63% of FP16's" in got["ceiling"].why
            and got["ceiling"].why.endswith("by about 2.1x"))
