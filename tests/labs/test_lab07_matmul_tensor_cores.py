"""Lab 07's module (MatMul and tensor-core alignment): padding in PyTorch and in the ONNX graph (verified
with ONNX Runtime), the convolution and batched cases, FP8's refusal, and the claims on synthetic
results through every branch. The shared cases are tested in tests/test_cases.py. GPU tests need a
CUDA GPU."""

import numpy as np
import onnx
import pytest
import torch

from common import bench, cases, checks, report
from common import onnx as onnx_tools
from common.labs import lab07_matmul_tensor_cores as lab


def test_padded_matmul_pads_weight_once_and_keeps_the_product():
    w = cases.random_tensor((13, 5), device="cpu", dtype=torch.float32, seed=0)
    x = cases.random_tensor((3, 13), device="cpu", dtype=torch.float32, seed=1)
    padder = lab.PaddedMatmul.from_weight(w, 8)
    assert padder.weight.shape == (16, 5) and padder.pad == 3
    assert torch.count_nonzero(padder.weight[13:]) == 0
    assert padder.pad_input(x).shape == (3, 16)
    torch.testing.assert_close(padder(x), x @ w, rtol=1e-5, atol=1e-5)


def test_padding_cases_are_all_checked():
    pad_cases = lab.padding_cases(8, 31, 8, "fp32", device="cpu", multiple=8)
    assert len(pad_cases) == 4 and all(c.error <= checks.tolerance("fp32", "op") for c in pad_cases)
    assert pad_cases[-1].flops == 0   # the pad alone moves data and computes nothing


def test_batched_and_conv_cases_match_their_references():
    batched = lab.batched_cases(dict(B=2, H=3, S=8, D=4, S2=5, K=16, N=8), "fp32", device="cpu")
    assert [c.flops for c in batched] == [2 * 2 * 3 * 8 * 8 * 4] * 2 + [2 * 2 * 5 * 16 * 8] * 2
    conv = lab.conv_case(7, 8, 1, 6, "fp32", device="cpu")
    assert conv.error <= checks.tolerance("fp32", "op") and conv.flops == 2 * 36 * 8 * 7 * 9


@pytest.mark.parametrize("as_gemm", [True, False])
def test_graphsurgeon_padding_keeps_outputs(tmp_path, as_gemm):
    src = lab.linear_onnx(tmp_path / "l.onnx", 13, 6, as_gemm=as_gemm)
    dst, changed = lab.pad_onnx_file(src, tmp_path / "p.onnx", multiple=8)
    assert len(changed) == 1
    counts = onnx_tools.node_counts(dst)
    assert counts["Pad"] == 1 and counts == {**onnx_tools.node_counts(src), "Pad": 1}
    k_padded = [s for s in lab.weight_shapes(dst).values() if 16 in s]
    assert k_padded, "the weight's K was not padded to 16"
    x = np.random.default_rng(0).standard_normal((4, 13)).astype(np.float32)
    assert onnx_tools.max_relative_error(onnx_tools.ort_run(dst, x), onnx_tools.ort_run(src, x)) <= 1e-6


def test_aligned_graph_is_left_alone(tmp_path):
    src = lab.linear_onnx(tmp_path / "l.onnx", 16, 6)
    model, changed = lab.pad_inner_dimension(onnx.load(str(src)), 8)
    assert changed == [] and onnx_tools.node_counts(model) == {"Gemm": 1}


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs FP8 tensor cores (compute capability 8.9+)")
def test_fp8_needs_multiples_of_16():
    assert "16" in lab.fp8_misaligned_error(64, 56, 64, device="cuda")


# -- the claims, on synthetic results --------------------------------------------------------------

BASE = 4096


def comparison(speedup: float, spread_pct: float) -> bench.Comparison:
    return bench.Comparison("a", "b", median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread_pct,
                            spread_b_pct=spread_pct / 2)


def sweep_rows(rates: dict[tuple[str, int, int], float]) -> list[dict]:
    return [{"precision": p, "k": k, "n": n, "tflop_per_s": rate} for (p, k, n), rate in rates.items()]


def results(*, holds: bool, base: int = BASE) -> lab.AlignmentResults:
    """A GPU run (FP16 sweep, BF16, TF32) where every claim holds, or none does."""
    slow, near = (100.0, 650.0) if holds else (400.0, 500.0)
    rates = {("fp16", base, base): 690.0, ("fp16", base - 1, base): slow, ("fp16", base + 8, base): near,
             ("fp16", base, base - 1): slow, ("bf16", base, base): 690.0, ("bf16", base - 1, base): slow,
             ("tf32", base, base): 690.0, ("tf32", base - 4, base): near}
    return lab.AlignmentResults(
        base=base, main="fp16", rows=sweep_rows(rates),
        onnx_results={"Gemm": (0.0, True), "MatMul": (0.0 if holds else 3e-5, holds)}, onnx_equal=holds,
        pad_comparison=comparison(3.8 if holds else 1.01, 1.5), pad_share_pct=24.7,
        fp8_error="Expected trailing dimension of mat1 to be divisible by 16 but got mat1 shape: (4096x4088)."
        if holds else "some other error",
        conv_comparison=comparison(2.27 if holds else 0.9, 0.4),
        attention_comparison=comparison(1.0 if holds else 1.3, 0.3),
        trt_study={"engines": {"original": {"reformat_layers": ["r1", "r2"]},
                               "padded": {"reformat_layers": [] if holds else ["r1"]}}})


def statuses(lab_report: report.LabReport) -> dict[str, tuple[str, str, str]]:
    return {c.claim: (c.status, c.measured, c.why) for c in lab_report.claims}


def test_claims_hold_on_a_gpu_with_fp8_and_tensorrt():
    held = statuses(lab.claims(results(holds=True), has_gpu=True, has_fp8=True))
    c = lab.CLAIMS
    assert list(held) == [c[key] for key in ("onnx", "odd_k", "aligned_k", "odd_n", "bf16", "tf32", "pad_torch",
                                             "fp8", "conv", "cpu", "batched", "trt")]
    assert held[c["onnx"]] == (report.HOLDS, "0.0e+00", "max relative difference, Gemm and MatMul graphs")
    assert held[c["odd_k"]] == (report.HOLDS, "0.14x of K=4096", "")
    assert held[c["aligned_k"]] == (report.HOLDS, "0.94x of K=4096", "")
    assert held[c["odd_n"]] == (report.HOLDS, "0.14x of N=4096", "")
    assert held[c["bf16"]][:2] == (report.HOLDS, "0.14x of K=4096")
    assert held[c["tf32"]][:2] == (report.HOLDS, "0.94x of K=4096")
    assert held[c["pad_torch"]] == (report.HOLDS, "3.80x", "pad is 25% of the padded call; spread 1.5%")
    assert held[c["fp8"]] == (report.HOLDS, "1", "Expected trailing dimension of mat1 to be divisi")   # its first 48 characters
    assert held[c["conv"]] == (report.HOLDS, "2.27x", "spread 0.4%")
    assert held[c["cpu"]] == (report.NOT_APPLICABLE, "-", "measured on the CPU run of this lab")
    assert held[c["batched"]] == (report.HOLDS, "1.00x", "spread 0.3%")
    assert held[c["trt"]] == (report.HOLDS, "0 reformat layers", "original engine: 2")


def test_claims_do_not_hold_when_the_measurements_say_no():
    failed = statuses(lab.claims(results(holds=False), has_gpu=True, has_fp8=True))
    c = lab.CLAIMS
    for key in ("onnx", "odd_k", "aligned_k", "odd_n", "bf16", "tf32", "pad_torch", "fp8", "conv", "batched", "trt"):
        assert failed[c[key]][0] == report.FAILS, key
    assert failed[c["odd_k"]][1] == "0.58x of K=4096" and failed[c["trt"]][1] == "1 reformat layers"
    assert failed[c["pad_torch"]][1:] == ("1.01x", "pad is 25% of the padded call; spread 1.5%")   # within the noise
    assert failed[c["onnx"]][1] == "3.0e-05"


def test_claims_without_fp8_or_tensorrt_say_why():
    r = results(holds=True)
    r.fp8_error, r.trt_study = None, None
    missing = statuses(lab.claims(r, has_gpu=True, has_fp8=False))
    assert missing[lab.CLAIMS["fp8"]] == (report.NOT_APPLICABLE, "-", "FP8 tensor cores need compute capability 8.9+")
    assert missing[lab.CLAIMS["trt"]] == (report.NOT_APPLICABLE, "-",
                                          "needs TensorRT (not installed); padding measured in PyTorch")


@pytest.mark.parametrize("cpu_rate, status", [(450.0, report.HOLDS), (300.0, report.FAILS)])
def test_claims_on_a_cpu_measure_only_the_fp32_sweep(cpu_rate, status):
    r = results(holds=True, base=512)
    r.rows = sweep_rows({("fp32", 512, 512): 500.0, ("fp32", 511, 512): cpu_rate})
    r.main, r.fp8_error, r.trt_study = "fp32", None, None
    cpu = statuses(lab.claims(r, has_gpu=False, has_fp8=False))
    gpu_only = ("odd_k", "aligned_k", "odd_n", "bf16", "tf32", "pad_torch", "fp8", "conv")
    for key in gpu_only:
        assert cpu[lab.CLAIMS[key]] == (report.NOT_APPLICABLE, "-",
                                        "tensor cores need an NVIDIA GPU; the CPU sweeps run in FP32 instead")
    assert cpu[lab.CLAIMS["cpu"]] == (status, f"{cpu_rate / 500:.2f}x of K=512", "")
    assert cpu[lab.CLAIMS["batched"]][0] == report.HOLDS and len(cpu) == 12


def test_batched_claim_allows_five_percent_or_the_noise():
    r = results(holds=True)
    for speedup, spread, status in ((1.04, 0.3, report.HOLDS), (0.9, 12.0, report.HOLDS), (0.9, 4.0, report.FAILS)):
        r.attention_comparison = comparison(speedup, spread)
        assert statuses(lab.claims(r, has_gpu=True, has_fp8=True))[lab.CLAIMS["batched"]][0] == status


def test_fp16_graphs_for_tensorrt_are_padded_and_compute_the_same(tmp_path):
    src, dst = lab.fp16_padded_graphs(tmp_path, 13, 8)
    assert lab.weight_shapes(src)["weight"] == (8, 13) and (8, 16) in lab.weight_shapes(dst).values()
    x = np.random.default_rng(1).standard_normal((4, 13)).astype(np.float16)
    assert onnx_tools.max_relative_error(onnx_tools.ort_run(dst, x), onnx_tools.ort_run(src, x)) <= 1e-3
