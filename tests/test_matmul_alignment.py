"""common.matmul_alignment (lab 07): alignment arithmetic, checked cases, padding in PyTorch and in
the ONNX graph (verified with ONNX Runtime), and the measured rows. GPU tests need a CUDA GPU."""

import numpy as np
import onnx
import pytest
import torch

from common import bench
from common import matmul_alignment as ma
from common import onnx as onnx_tools

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_alignment_arithmetic():
    assert [ma.alignment_of(k) for k in (4096, 4088, 4092, 4094, 4095)] == [16, 8, 4, 2, 1]
    assert ma.padded(4095, 8) == 4096 and ma.padded(4096, 8) == 4096 and ma.padded(63, 16) == 64
    assert ma.ALIGNMENT["fp16"] == 8 and ma.ALIGNMENT["tf32"] == 4 and ma.ALIGNMENT["fp8"] == 16


def test_random_tensor_is_seeded_and_not_zero():
    a = ma.random_tensor((8, 8), device="cpu", dtype=torch.float32, seed=1)
    assert torch.equal(a, ma.random_tensor((8, 8), device="cpu", dtype=torch.float32, seed=1))
    assert not torch.equal(a, ma.random_tensor((8, 8), device="cpu", dtype=torch.float32, seed=2))
    assert a.abs().min() > 0


def test_gemm_case_checks_against_fp32_and_counts_flops():
    case = ma.gemm_case(16, 15, 8, "fp32", device="cpu")
    assert case.flops == 2 * 16 * 15 * 8 and case.error <= ma.TOLERANCE["fp32"]
    assert case.fn().shape == (16, 8)


def test_a_wrong_result_is_refused_before_timing():
    case = ma.Case("wrong", "fp32", lambda: None, 1)
    ref = torch.ones(4, 4)
    with pytest.raises(AssertionError, match="do not time it"):
        ma.checked(case, ref * 1.1, ref)


def test_padded_matmul_pads_weight_once_and_keeps_the_product():
    w = ma.random_tensor((13, 5), device="cpu", dtype=torch.float32, seed=0)
    x = ma.random_tensor((3, 13), device="cpu", dtype=torch.float32, seed=1)
    padder = ma.PaddedMatmul.from_weight(w, 8)
    assert padder.weight.shape == (16, 5) and padder.pad == 3
    assert torch.count_nonzero(padder.weight[13:]) == 0
    assert padder.pad_input(x).shape == (3, 16)
    torch.testing.assert_close(padder(x), x @ w, rtol=1e-5, atol=1e-5)


def test_padding_cases_are_all_checked():
    cases = ma.padding_cases(8, 31, 8, "fp32", device="cpu", multiple=8)
    assert len(cases) == 4 and all(c.error <= ma.TOLERANCE["fp32"] for c in cases)
    assert cases[-1].flops == 0   # the pad alone moves data and computes nothing


def test_batched_and_conv_cases_match_their_references():
    cases = ma.batched_cases(dict(B=2, H=3, S=8, D=4, S2=5, K=16, N=8), "fp32", device="cpu")
    assert [c.flops for c in cases] == [2 * 2 * 3 * 8 * 8 * 4] * 2 + [2 * 2 * 5 * 16 * 8] * 2
    conv = ma.conv_case(7, 8, 1, 6, "fp32", device="cpu")
    assert conv.error <= ma.TOLERANCE["fp32"] and conv.flops == 2 * 36 * 8 * 7 * 9


def test_measure_cases_and_rows_on_cpu():
    cases = [ma.gemm_case(32, k, 32, "fp32", device="cpu") for k in (31, 32)]
    runs = ma.measure_cases(cases, device="cpu", warmup_ms=1, measure_ms=5, progress=False)
    assert all(len(v) == 2 for v in runs.values())
    rows = ma.result_rows(cases, runs)
    assert [r["k_aligned_to"] for r in rows] == [1, 16]
    assert rows[0]["tflop_per_s"] == pytest.approx(cases[0].flops / (rows[0]["latency_ms"] / 1e3) / 1e12)
    assert isinstance(ma.versus(runs, cases[1].label, cases[0].label), bench.Comparison)


@pytest.mark.parametrize("as_gemm", [True, False])
def test_graphsurgeon_padding_keeps_outputs(tmp_path, as_gemm):
    src = ma.linear_onnx(tmp_path / "l.onnx", 13, 6, as_gemm=as_gemm)
    dst, changed = ma.pad_onnx_file(src, tmp_path / "p.onnx", multiple=8)
    assert len(changed) == 1
    counts = onnx_tools.node_counts(dst)
    assert counts["Pad"] == 1 and counts == {**onnx_tools.node_counts(src), "Pad": 1}
    k_padded = [s for s in ma.weight_shapes(dst).values() if 16 in s]
    assert k_padded, "the weight's K was not padded to 16"
    x = np.random.default_rng(0).standard_normal((4, 13)).astype(np.float32)
    assert onnx_tools.max_relative_error(onnx_tools.ort_run(dst, x), onnx_tools.ort_run(src, x)) <= 1e-6


def test_aligned_graph_is_left_alone(tmp_path):
    src = ma.linear_onnx(tmp_path / "l.onnx", 16, 6)
    model, changed = ma.pad_inner_dimension(onnx.load(str(src)), 8)
    assert changed == [] and onnx_tools.node_counts(model) == {"Gemm": 1}


def test_tf32_mode_restores_settings():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with ma.tf32_mode(not before[0]):
        assert torch.backends.cuda.matmul.allow_tf32 == (not before[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@needs_gpu
def test_fp16_cases_on_gpu():
    case = ma.gemm_case(256, 255, 256, "fp16", device="cuda")
    assert case.error <= ma.TOLERANCE["fp16"]
    runs = ma.measure_cases([case], device="cuda", warmup_ms=5, measure_ms=10, progress=False)
    assert runs[case.label][0].timer == "cuda-events"


@needs_gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs FP8 tensor cores (compute capability 8.9+)")
def test_fp8_needs_multiples_of_16():
    assert ma.fp8_case(64, 64, 64, device="cuda").error <= ma.TOLERANCE["fp8"]
    assert "16" in ma.fp8_misaligned_error(64, 56, 64, device="cuda")
