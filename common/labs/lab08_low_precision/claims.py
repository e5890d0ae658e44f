"""Lab 08 (low precision): the claims, as functions of what the experiments measured.

Three sections, in the order the claims table lists them: accuracy (AutoCast, calibration, PTQ, QAT,
the mixed-precision plan), speed (PyTorch precisions, FP8/INT8 products and layers, Q/DQ with no FP8
kernel) and TensorRT (strongly typed engines). :func:`claims` runs all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

from common import bench, report
from common.cases import versus

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

    @property
    def texts(self) -> dict[str, str]:
        return claim_texts(self.wide, self.gemm_big, self.gemm_small)


def claim_texts(wide: int, gemm_big: int, gemm_small: tuple[int, int, int]) -> dict[str, str]:
    """Each claim's sentence, by key."""
    return {
        "autocast": "AutoCast keeps no node of the digits CNN in FP32 at its defaults (activations far below data_max)",
        "fp16_acc": "FP16 (AutoCast graph, ONNX Runtime) keeps the FP32 test accuracy within 0.5 point",
        "bf16_acc": "BF16 (PyTorch) keeps the FP32 test accuracy within 0.5 point",
        "entropy": "entropy calibration chooses a narrower range than max (it clips rare large values)",
        "ort_fusion": "ONNX Runtime's full optimizations give the FP8 Q/DQ graph's result (within 1%)",
        "int8_ptq": "INT8 PTQ (ModelOpt) is within 1 point of FP32",
        "fp8_ptq": "FP8 PTQ (ModelOpt) is within 1 point of FP32",
        "qat_within": "INT8 and FP8 after QAT are within 1 point of FP32",
        "harsh_ptq": "W4A3 PTQ loses more than 1 point",
        "qat_recovers": "QAT wins back at least half of what W4A3 PTQ lost",
        "harsh_qat": "W4A3 after QAT is within 1 point of FP32",
        "mixed": "keeping the sweep's costliest layers in high precision brings W4A3 PTQ within 1 point",
        "fp16_wide": f"FP16 is at least 2x faster than FP32 on the wide DigitsCNN({wide}) (PyTorch)",
        "tf32_wide": f"TF32 is significantly faster than FP32 on DigitsCNN({wide})",
        "small_model": "the small trained model gains less from FP16 than the wide one",
        "fp8_big": f"FP8 (torch._scaled_mm) is at least 1.5x faster than FP16 at {gemm_big}^3",
        "fp8_small": f"FP8 does not pay at {gemm_small[0]}x{gemm_small[1]}x{gemm_small[2]}: under 1.2x FP16",
        "int8_mm": f"INT8 (torch._int_mm) is faster than FP16 at {gemm_big}^3",
        "stack_big": "FP8 linear layers, quantize step included, are significantly faster than FP16 at the large size",
        "stack_small": "with the quantize step, FP8 linear layers at batch 64 are not faster than FP16",
        "qdq_cnn": "FP8 Q/DQ around the digits CNN's convolutions, with no FP8 kernel, is slower than without",
        "trt_int8": "TensorRT runs layers of the INT8 Q/DQ engine in INT8 (inspector)",
        "trt_acc": "every TensorRT engine is within 1 point of FP32 accuracy",
        "trt_int8_speed": "TensorRT's INT8 engine of the small digits CNN is faster than its FP16 engine",
    }


def _faster(c: bench.Comparison) -> bool:
    return c.significant and c.speedup > 1


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


def speed_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """PyTorch at FP32/TF32/FP16, FP8 and INT8 products and layers against FP16, Q/DQ with no FP8 kernel."""
    claims = r.texts
    if r.has_gpu:
        wide_name = f"DigitsCNN({r.wide})"
        fp16_wide, fp16_small = r.precision_speedups[(wide_name, "fp16")], r.precision_speedups[("DigitsCNN(32)", "fp16")]
        lab_report.check(claims["fp16_wide"], fp16_wide.speedup, fp16_wide.speedup >= 2.0, fmt="{:.2f}x",
                         why=f"spread {fp16_wide.noise_pct:.1f}%")
        if (wide_name, "tf32") in r.precision_speedups:
            tf32_wide = r.precision_speedups[(wide_name, "tf32")]
            lab_report.check(claims["tf32_wide"], tf32_wide.speedup, _faster(tf32_wide), fmt="{:.2f}x",
                             why=f"spread {tf32_wide.noise_pct:.1f}%")
        else:
            lab_report.not_applicable(claims["tf32_wide"], "TF32 tensor cores need compute capability 8.0+")
        lab_report.check(claims["small_model"], fp16_small.speedup, fp16_small.speedup < fp16_wide.speedup,
                         fmt="{:.2f}x", why=f"wide model: {fp16_wide.speedup:.2f}x")
    else:
        for key in ("fp16_wide", "tf32_wide", "small_model"):
            lab_report.not_applicable(claims[key], NO_GPU)
    for key, pair_key, condition in (("fp8_big", ("fp8", r.gemm_big), lambda c: c.speedup >= 1.5),
                                     ("fp8_small", ("fp8", r.gemm_small[0]), lambda c: c.speedup < 1.2),
                                     ("int8_mm", ("int8", r.gemm_big), _faster),
                                     ("stack_big", ("fp8", "stack_big"), _faster),
                                     ("stack_small", ("fp8", "stack_small"), lambda c: not _faster(c))):
        if pair_key in r.fp8_pairs:
            pair = r.fp8_pairs[pair_key]
            lab_report.check(claims[key], pair.speedup, condition(pair), fmt="{:.2f}x", why=f"spread {pair.noise_pct:.1f}%")
        else:
            lab_report.not_applicable(claims[key], NO_GPU if not r.has_gpu else
                                      "needs FP8 (compute capability 8.9+) or INT8 tensor cores")
    qdq = r.qdq_cmp
    lab_report.check(claims["qdq_cnn"], qdq.speedup, qdq.significant and qdq.speedup < 1, fmt="{:.2f}x",
                     why=f"{r.qdq_precision} on {r.device}; spread {qdq.noise_pct:.1f}%")
    return lab_report


def tensorrt_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """The strongly typed engines: INT8 layers in the INT8 engine, every engine's accuracy, INT8 against FP16."""
    claims = r.texts
    if r.trt_study is None:
        for key in ("trt_int8", "trt_acc", "trt_int8_speed"):
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
    if {"FP16 (AutoCast)", "INT8 Q/DQ (ONNX PTQ)"} <= set(r.trt_study["runs"]):
        trt_cmp = versus(r.trt_study["runs"], "FP16 (AutoCast)", "INT8 Q/DQ (ONNX PTQ)")
        lab_report.check(claims["trt_int8_speed"], trt_cmp.speedup, _faster(trt_cmp), fmt="{:.2f}x",
                         why=f"spread {trt_cmp.noise_pct:.1f}%")
    else:
        lab_report.not_applicable(claims["trt_int8_speed"], "the FP16 or the INT8 engine did not build")
    return lab_report


def claims(r: Results, lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 08's claims, added to `lab_report` (a new one for "08_low_precision" by default)."""
    lab_report = lab_report if lab_report is not None else report.LabReport("08_low_precision")
    for section in (accuracy_claims, speed_claims, tensorrt_claims):
        section(r, lab_report)
    return lab_report
