"""common.cases (introduced in lab 07, used by labs 08-10): alignment arithmetic, seeded data, checked
cases that refuse a wrong result before timing, the interleaved timing and its rows. GPU tests need
a CUDA GPU."""

import pytest
import torch

from common import bench, cases, checks

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_alignment_arithmetic():
    assert [cases.alignment_of(k) for k in (4096, 4088, 4092, 4094, 4095)] == [16, 8, 4, 2, 1]
    assert cases.padded(4095, 8) == 4096 and cases.padded(4096, 8) == 4096 and cases.padded(63, 16) == 64
    assert cases.ALIGNMENT["fp16"] == 8 and cases.ALIGNMENT["tf32"] == 4 and cases.ALIGNMENT["fp8"] == 16


def test_random_tensor_is_seeded_and_not_zero():
    a = cases.random_tensor((8, 8), device="cpu", dtype=torch.float32, seed=1)
    assert torch.equal(a, cases.random_tensor((8, 8), device="cpu", dtype=torch.float32, seed=1))
    assert not torch.equal(a, cases.random_tensor((8, 8), device="cpu", dtype=torch.float32, seed=2))
    assert a.abs().min() > 0


def test_gemm_case_checks_against_fp32_and_counts_flops():
    case = cases.gemm_case(16, 15, 8, "fp32", device="cpu")
    assert case.flops == 2 * 16 * 15 * 8 and case.error <= checks.tolerance("fp32", "op")
    assert case.fn().shape == (16, 8)


def test_a_wrong_result_is_refused_before_timing():
    case = cases.Case("wrong", "fp32", lambda: None, 1)
    ref = torch.ones(4, 4)
    with pytest.raises(checks.VerificationError, match="do not time it"):
        cases.checked(case, ref * 1.1, ref)
    assert cases.checked(case, ref * 1.1, ref, tolerance=0.2).error == pytest.approx(0.1)


def test_measure_cases_and_rows_on_cpu():
    gemm_cases = [cases.gemm_case(32, k, 32, "fp32", device="cpu") for k in (31, 32)]
    runs = cases.measure_cases(gemm_cases, device="cpu", warmup_ms=1, measure_ms=5, progress=False)
    assert all(len(v) == 2 for v in runs.values())
    rows = cases.result_rows(gemm_cases, runs)
    assert [r["k_aligned_to"] for r in rows] == [1, 16]
    assert rows[0]["tflop_per_s"] == pytest.approx(gemm_cases[0].flops / (rows[0]["latency_ms"] / 1e3) / 1e12)
    assert isinstance(cases.versus(runs, gemm_cases[1].label, gemm_cases[0].label), bench.Comparison)


def test_tf32_mode_restores_settings():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with cases.tf32_mode(not before[0]):
        assert torch.backends.cuda.matmul.allow_tf32 == (not before[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@needs_gpu
def test_fp16_cases_on_gpu():
    case = cases.gemm_case(256, 255, 256, "fp16", device="cuda")
    assert case.error <= checks.tolerance("fp16", "op")
    runs = cases.measure_cases([case], device="cuda", warmup_ms=5, measure_ms=10, progress=False)
    assert runs[case.label][0].timer == "cuda-events"


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs FP8 tensor cores (compute capability 8.9+)")
def test_fp8_case_on_gpu():
    assert cases.fp8_case(64, 64, 64, device="cuda").error <= checks.tolerance("fp8", "op")


def test_int8_case_is_exact_and_counts_flops():
    case = cases.int8_case(32, 64, 16, device="cpu")
    assert case.precision == "int8" and case.flops == 2 * 32 * 64 * 16 and case.error == 0.0
    out = case.fn()
    assert out.dtype == torch.int32 and out.shape == (32, 16)


@needs_gpu
def test_int8_case_is_refused_where_torch_int_mm_needs_a_multiple_of_8():
    assert cases.int8_case(64, 128, 64, device="cuda").error == 0.0
    with pytest.raises(RuntimeError):
        cases.int8_case(64, 124, 64, device="cuda")
