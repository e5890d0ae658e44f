"""Lab 08 (low precision): the claims, as functions of what the experiments measured.

Three sections, in the order the claims table lists them: accuracy (AutoCast, calibration, PTQ, QAT,
the mixed-precision plan), speed (PyTorch precisions and layouts, FP8/INT8 products and layers, Q/DQ
with no FP8 kernel) and TensorRT (strongly typed engines). :func:`claims` runs all three. Precision
is a device effect: speed is judged on the kernels' own time (CUPTI) wherever it was measured, on host
time on a CPU, and every ratio is decided from its 95% interval over passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

from common import bench, report

from .precision import device_compare
from .quantization import ONNX_FP8_SCALE_FACTOR

NO_GPU = "needs an NVIDIA GPU; this CPU run measured the CPU counterparts above"
NO_TRT = "needs TensorRT (not installed here); ONNX Runtime scored the graphs instead"


@dataclass
class Results:
    """What lab 08's experiments measured, as its claims read it (the notebook's variables)."""

    n_test: int
    fp32_pct: float
    device: str
    has_gpu: bool
    onnxruntime: str | None
    #: AutoCast FP16 at its defaults: node -> why it stayed FP32; the largest |value| any node writes.
    fp16_kept_fp32: dict[str, str]
    largest_activation: float
    #: score() rows of the accuracy table (the "FP16 graph (AutoCast)" row among them).
    accuracy_rows: list[dict[str, Any]]
    #: PyTorch test accuracy per precision run on this device.
    torch_pct: dict[str, float]
    #: ONNX PTQ rows, each with its model label and the calibrated range of the max-pool output.
    calibration_rows: list[dict[str, Any]]
    #: per Q/DQ format: (relative difference all vs basic, accuracy with all optimizations, refusal or None).
    fused_check: dict[str, tuple[float | None, float | None, str | None]]
    #: per format ("int8", "fp8", "w4a3"): ptq_pct, qat_pct, ptq_loss_pts, qat_loss_pts.
    qat_by: dict[str, dict[str, Any]]
    #: the mixed-precision plan's steps; the last is where it stopped.
    plan: list[dict[str, Any]]
    wide: int
    #: (model, precision) -> that precision against FP32 on the same model (precision_speedups).
    precision_speedups: dict[tuple[str, str], bench.Comparison]
    gemm_big: int
    gemm_small: tuple[int, int, int]
    #: ("fp8" | "int8", GEMM M or "stack_big" | "stack_small") -> against FP16.
    fp8_pairs: dict[tuple[str, Hashable], bench.Comparison]
    qdq_cmp: bench.Comparison
    qdq_precision: str
    #: tensorrt_study()'s result, None where TensorRT did not run.
    trt_study: dict[str, Any] | None = None
    #: (model, precision) -> NCHW against channels-last (layout_comparisons); empty on a CPU.
    layout_cmps: dict[tuple[str, str], bench.Comparison] = field(default_factory=dict)
    #: per precision ("fp16", "tf32"): its measured matrix ceiling over FP32's (lab 00); empty where none is cached.
    ceiling_ratio: dict[str, float] = field(default_factory=dict)
    #: ceiling_shares(): (model, precision) -> its rate on event time and share of its matrix ceiling.
    ceiling_share: dict[tuple[str, str], dict] = field(default_factory=dict)
    #: fp8_scale_check() of the max-pool output (max calibration, 180 images); empty where not run.
    fp8_scale: dict[str, float] = field(default_factory=dict)

    @property
    def texts(self) -> dict[str, str]:
        return claim_texts(self.wide, self.gemm_big, self.gemm_small)


def claim_texts(wide: int, gemm_big: int, gemm_small: tuple[int, int, int]) -> dict[str, str]:
    """Each claim's sentence, by key."""
    small = f"{gemm_small[0]}x{gemm_small[1]}x{gemm_small[2]}"
    return {
        "autocast": "AutoCast keeps no node of the digits CNN in FP32 at its defaults (activations far below data_max)",
        "fp16_acc": "FP16 (AutoCast graph, ONNX Runtime) keeps the FP32 test accuracy within 0.5 point",
        "bf16_acc": "BF16 (PyTorch) keeps the FP32 test accuracy within 0.5 point",
        "entropy": "entropy calibration chooses a narrower range than max (it clips rare large values)",
        "fp8_scale": "ModelOpt's ONNX FP8 PTQ reuses the INT8 calibration's amax: its FP8 scale is the INT8 scale "
                     "x 448/127 (max-pool output, max, 180 images)",
        "ort_fusion": "ONNX Runtime's full optimizations give the FP8 Q/DQ graph's result (within 1%)",
        "int8_ptq": "INT8 PTQ (ModelOpt) is within 1 point of FP32",
        "fp8_ptq": "FP8 PTQ (ModelOpt) is within 1 point of FP32",
        "qat_within": "INT8 and FP8 after QAT are within 1 point of FP32",
        "harsh_ptq": "W4A3 PTQ loses more than 1 point",
        "qat_recovers": "QAT wins back at least half of what W4A3 PTQ lost",
        "harsh_qat": "W4A3 after QAT is within 1 point of FP32",
        "mixed": "keeping the sweep's costliest layers in high precision brings W4A3 PTQ within 1 point",
        "layout_fp32": f"PyTorch/cuDNN: DigitsCNN({wide})'s FP32 convolutions run faster in NCHW than channels-last "
                       "(kernel time)",
        "fp16_wide": f"FP16 is at least 2x faster than FP32 on the wide DigitsCNN({wide}) (PyTorch, each in its faster "
                     "layout, kernel time)",
        "ceiling": f"FP16's gain over FP32 on DigitsCNN({wide}) stays within this GPU's FP16/FP32 matrix-ceiling "
                   "ratio (lab 00)",
        "tf32_wide": f"TF32 is faster than FP32 on DigitsCNN({wide}) (kernel time)",
        "tf32_ceiling": f"TF32's gain over FP32 on DigitsCNN({wide}) stays within this GPU's TF32/FP32 matrix-ceiling "
                        "ratio (lab 00)",
        "small_model": "the small trained model gains less from FP16 than the wide one (kernel time)",
        "fp8_big": f"FP8 (torch._scaled_mm) is at least 1.5x faster than FP16 at {gemm_big}^3 (kernel time)",
        "fp8_small": f"FP8 does not pay at {small}: under 1.2x FP16 (kernel time)",
        "int8_mm": f"INT8 (torch._int_mm) is faster than FP16 at {gemm_big}^3 (kernel time)",
        "stack_big": "FP8 linear layers, quantize step included, are faster than FP16 at the large size (kernel time)",
        "stack_small": "with the quantize step, FP8 linear layers at batch 64 are slower than FP16 (kernel time)",
        "qdq_cnn": "FP8 Q/DQ around the digits CNN's convolutions, with no FP8 kernel, is slower than without "
                   "(kernel time on a GPU)",
        "trt_int8": "TensorRT runs layers of the INT8 Q/DQ engine in INT8 (inspector)",
        "trt_acc": "every TensorRT engine is within 1 point of FP32 accuracy",
        "trt_polygraphy": "polygraphy run --trt --onnxrt: every engine matches ONNX Runtime within its precision's "
                          "tolerance",
        "trt_int8_speed": "TensorRT's INT8 engine of the small digits CNN is faster than its FP16 engine (kernel time)",
    }


#: The speed claims that need a GPU (not applicable on a CPU).
GPU_SPEED_KEYS = ("layout_fp32", "fp16_wide", "ceiling", "tf32_wide", "tf32_ceiling", "small_model")
TRT_KEYS = ("trt_int8", "trt_acc", "trt_polygraphy", "trt_int8_speed")


def accuracy_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """AutoCast, FP16/BF16 accuracy, calibration, ONNX Runtime's fusion, PTQ, QAT and the plan."""
    claims, n = r.texts, r.n_test
    lab_report.check(claims["autocast"], len(r.fp16_kept_fp32), not r.fp16_kept_fp32, fmt="{:.0f} nodes kept",
                     why=f"largest |activation| {r.largest_activation:.1f} vs data_max 512")
    fp16_row = next(row for row in r.accuracy_rows if row["model"] == "FP16 graph (AutoCast)")
    fp16_lost = r.fp32_pct - fp16_row["accuracy_pct"]
    lab_report.check(claims["fp16_acc"], fp16_lost, fp16_lost <= 0.5, fmt="{:+.2f} pts lost", why=f"n = {n}")
    if "bf16" in r.torch_pct:
        bf16_lost = r.fp32_pct - r.torch_pct["bf16"]
        lab_report.check(claims["bf16_acc"], bf16_lost, bf16_lost <= 0.5, fmt="{:+.2f} pts lost",
                         why=f"PyTorch on {r.device}, n = {n}")
    else:
        lab_report.not_applicable(claims["bf16_acc"], "BF16 tensor cores need compute capability 8.0+")
    ranges = {row["model"]: row["pool_range"] for row in r.calibration_rows}
    entropy_ratio = ranges["INT8, entropy, 180 images"] / ranges["INT8, max, 180 images"]
    lab_report.check(claims["entropy"], entropy_ratio, entropy_ratio < 1, fmt="{:.2f}x the max range",
                     why="INT8, 180 images, max-pool output")
    if r.fp8_scale:
        scale = r.fp8_scale
        lab_report.check(claims["fp8_scale"], scale["ratio"], abs(scale["ratio"] / ONNX_FP8_SCALE_FACTOR - 1) <= 1e-3,
                         fmt="{:.4f}x the INT8 scale",
                         why=f"448/127 = {ONNX_FP8_SCALE_FACTOR:.4f}; amax {scale['amax']:.3g} becomes "
                             f"{scale['amax_in_e4m3']:.1f} in E4M3 (of 448), the pair saturates at {scale['fp8_saturates_at']:.3g}")
    else:
        lab_report.not_applicable(claims["fp8_scale"], "the ONNX FP8 graph was not calibrated in this run")
    fp8_error, fp8_fused_pct, fp8_refused = r.fused_check["fp8"]
    if fp8_refused:
        lab_report.check(claims["ort_fusion"], float("nan"), False, fmt="graph refused",
                         why=f"ONNX Runtime {r.onnxruntime}: {fp8_refused}")
    else:
        lab_report.check(claims["ort_fusion"], fp8_error, fp8_error <= 0.01, fmt="{:.2e} rel. difference",
                         why=f"ONNX Runtime {r.onnxruntime}; accuracy with all optimizations {fp8_fused_pct:.1f}%")
    for form in ("int8", "fp8"):
        loss = r.qat_by[form]["ptq_loss_pts"]
        lab_report.check(claims[f"{form}_ptq"], loss, loss <= 1.0, fmt="{:+.2f} pts lost", why=f"n = {n}")
    qat_worst = max(r.qat_by["int8"]["qat_loss_pts"], r.qat_by["fp8"]["qat_loss_pts"])
    lab_report.check(claims["qat_within"], qat_worst, qat_worst <= 1.0, fmt="{:+.2f} pts lost (worst)",
                     why=f"INT8 {r.qat_by['int8']['qat_pct']:.2f}%, FP8 {r.qat_by['fp8']['qat_pct']:.2f}%, "
                         f"FP32 {r.fp32_pct:.2f}%")
    harsh = r.qat_by["w4a3"]
    lab_report.check(claims["harsh_ptq"], harsh["ptq_loss_pts"], harsh["ptq_loss_pts"] > 1.0,
                     fmt="{:.2f} pts lost")
    won_back = ((harsh["ptq_loss_pts"] - harsh["qat_loss_pts"]) / harsh["ptq_loss_pts"] if harsh["ptq_loss_pts"] > 0
                else float("nan"))
    lab_report.check(claims["qat_recovers"], won_back * 100, won_back >= 0.5, fmt="{:.0f}% won back",
                     why=f"PTQ {harsh['ptq_pct']:.2f}% -> QAT {harsh['qat_pct']:.2f}%")
    lab_report.check(claims["harsh_qat"], harsh["qat_loss_pts"], harsh["qat_loss_pts"] <= 1.0,
                     fmt="{:+.2f} pts lost")
    last = r.plan[-1]
    lab_report.check(claims["mixed"], last["loss_pts"], last["loss_pts"] <= 1.0, fmt="{:+.2f} pts lost",
                     why=f"kept in high precision: {last['kept_high_precision']}")
    return lab_report


def _ratio_of_speedups(a: bench.Comparison, b: bench.Comparison) -> tuple[float, tuple[float, float]]:
    """a's speedup over b's, with the widest interval their two intervals allow."""
    (a_lo, a_hi), (b_lo, b_hi) = a.interval, b.interval
    return a.speedup / b.speedup, (a_lo / b_hi, a_hi / b_lo)


def _gpu_speed_claims(r: Results, lab_report: report.LabReport) -> None:
    claims = r.texts
    wide_name = f"DigitsCNN({r.wide})"
    layout = r.layout_cmps.get((wide_name, "fp32"))
    if layout is not None:
        lab_report.check_comparison(claims["layout_fp32"], layout, why="NCHW over channels-last, FP32, TF32 off")
    else:
        lab_report.not_applicable(claims["layout_fp32"], "the wide model was measured in one layout only")
    fp16_wide, fp16_small = r.precision_speedups[(wide_name, "fp16")], r.precision_speedups[("DigitsCNN(32)", "fp16")]
    lab_report.check_comparison(claims["fp16_wide"], fp16_wide, threshold=2.0,
                                why=f"{fp16_wide.label_b} vs {fp16_wide.label_a}")
    if "fp16" in r.ceiling_ratio:
        lab_report.check_ratio(claims["ceiling"], fp16_wide.speedup, fp16_wide.interval, threshold=r.ceiling_ratio["fp16"],
                               above=False, why=_ceiling_why(r, wide_name))
    else:
        lab_report.not_applicable(claims["ceiling"], "no lab 00 ceilings cached on this machine (run lab 00 first)")
    if (wide_name, "tf32") in r.precision_speedups:
        tf32_wide = r.precision_speedups[(wide_name, "tf32")]
        lab_report.check_comparison(claims["tf32_wide"], tf32_wide, why=f"{tf32_wide.label_b} vs {tf32_wide.label_a}")
        if "tf32" in r.ceiling_ratio:
            lab_report.check_ratio(claims["tf32_ceiling"], tf32_wide.speedup, tf32_wide.interval,
                                   threshold=r.ceiling_ratio["tf32"], above=False, why=_ceiling_why(r, wide_name, "tf32"))
        else:
            lab_report.not_applicable(claims["tf32_ceiling"], "no lab 00 ceilings cached on this machine (run lab 00 first)")
    else:
        lab_report.not_applicable(claims["tf32_wide"], "TF32 tensor cores need compute capability 8.0+")
        lab_report.not_applicable(claims["tf32_ceiling"], "TF32 tensor cores need compute capability 8.0+")
    ratio, interval = _ratio_of_speedups(fp16_small, fp16_wide)
    lab_report.check_ratio(claims["small_model"], ratio, interval, threshold=1.0, above=False,
                           why=f"FP16 over FP32: small model {fp16_small.speedup:.2f}x, wide model {fp16_wide.speedup:.2f}x")


def _ceiling_why(r: Results, model: str, precision: str = "fp16") -> str:
    """Why a precision's gain can pass the ceilings' ratio: each run's share of its own matrix ceiling."""
    name = precision.upper()
    head = f"{name}/FP32 ceilings {r.ceiling_ratio[precision]:.1f}x"
    fp32, other = r.ceiling_share.get((model, "fp32")), r.ceiling_share.get((model, precision))
    if not fp32 or not other:
        return head + "; a gain beyond them means a baseline slower than its own ceiling allows"
    return (f"{head}; on event time FP32 ran at {fp32['pct_of_ceiling']:.0f}% of the FP32 matrix ceiling "
            f"({fp32['tflops']:.1f} of {fp32['ceiling_tflops']:.1f} TFLOP/s), {name} at {other['pct_of_ceiling']:.0f}% of "
            f"{name}'s: cuDNN's FP32 convolutions ({fp32['layout']}) fall further short of their ceiling than its "
            f"tensor-core ones, so the gain exceeds the ratio by about "
            f"{other['pct_of_ceiling'] / fp32['pct_of_ceiling']:.1f}x")


def speed_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """PyTorch's precisions and layouts, FP8 and INT8 products and layers against FP16, Q/DQ with no FP8 kernel."""
    claims = r.texts
    if r.has_gpu:
        _gpu_speed_claims(r, lab_report)
    else:
        for key in GPU_SPEED_KEYS:
            lab_report.not_applicable(claims[key], NO_GPU)
    for key, pair_key, threshold, above in (("fp8_big", ("fp8", r.gemm_big), 1.5, True),
                                            ("fp8_small", ("fp8", r.gemm_small[0]), 1.2, False),
                                            ("int8_mm", ("int8", r.gemm_big), 1.0, True),
                                            ("stack_big", ("fp8", "stack_big"), 1.0, True),
                                            ("stack_small", ("fp8", "stack_small"), 1.0, False)):
        if pair_key in r.fp8_pairs:
            lab_report.check_comparison(claims[key], r.fp8_pairs[pair_key], threshold=threshold, above=above)
        else:
            lab_report.not_applicable(claims[key], NO_GPU if not r.has_gpu else
                                      "needs FP8 (compute capability 8.9+) or INT8 tensor cores")
    lab_report.check_comparison(claims["qdq_cnn"], r.qdq_cmp, above=False, why=f"{r.qdq_precision} on {r.device}")
    return lab_report


def tensorrt_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """The strongly typed engines: INT8 layers in the INT8 engine, every engine's accuracy and Polygraphy's
    cross-check against ONNX Runtime, INT8 against FP16."""
    claims = r.texts
    if r.trt_study is None:
        for key in TRT_KEYS:
            lab_report.not_applicable(claims[key], NO_TRT)
        return lab_report
    refused = [row["engine"] for row in r.trt_study["rows"] if "error" in row]
    built = {row["engine"]: row for row in r.trt_study["rows"] if "error" not in row}
    int8_row = built.get("INT8 Q/DQ (ONNX PTQ)")
    int8_layers = int8_row["precisions"].get("INT8", 0) if int8_row else 0
    lab_report.check(claims["trt_int8"], int8_layers, int8_layers > 0, fmt="{:.0f} INT8 layers",
                     why=str(int8_row["precisions"]) if int8_row else "the INT8 graph did not build")
    worst = max((r.fp32_pct - row["accuracy_pct"] for row in built.values()), default=float("inf"))
    lab_report.check(claims["trt_acc"], worst, worst <= 1.0 and not refused, fmt="{:+.2f} pts lost (worst)",
                     why=f"refused: {', '.join(refused)}" if refused else f"{len(built)} engines, n = {r.n_test}")
    checked = {label: row["polygraphy"] for label, row in built.items() if row.get("polygraphy")}
    if not checked or all(c["passed"] is None for c in checked.values()):
        lab_report.not_applicable(claims["trt_polygraphy"], next((c["summary"] for c in checked.values()),
                                                                 "Polygraphy was not run"))
    else:
        failed = [label for label, c in checked.items() if not c["passed"]]
        lab_report.check(claims["trt_polygraphy"], len(checked) - len(failed), not failed,
                         fmt=f"{{:.0f}} of {len(checked)} engines match",
                         why="; ".join(f"{label}: {checked[label]['summary']}" for label in failed))
    if {"FP16 (AutoCast)", "INT8 Q/DQ (ONNX PTQ)"} <= set(r.trt_study["runs"]):
        runs = r.trt_study["runs"]
        lab_report.check_comparison(claims["trt_int8_speed"], device_compare(runs["FP16 (AutoCast)"],
                                                                             runs["INT8 Q/DQ (ONNX PTQ)"]))
    else:
        lab_report.not_applicable(claims["trt_int8_speed"], "the FP16 or the INT8 engine did not build")
    return lab_report


def claims(r: Results, lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 08's claims, added to `lab_report` (a new one for "08_low_precision" by default)."""
    lab_report = lab_report if lab_report is not None else report.LabReport("08_low_precision")
    for section in (accuracy_claims, speed_claims, tensorrt_claims):
        section(r, lab_report)
    return lab_report
