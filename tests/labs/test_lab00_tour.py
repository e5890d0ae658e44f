"""common.labs.lab00_tour: the claims on the ceilings and on the harness, driven through every branch with
synthetic results, and the course map."""

import pytest
import torch

from common import report
from common.ceilings import Ceilings
from common.labs import lab00_tour as lab

H100 = {"fp32": 51.7, "tf32": 379.2, "fp16": 648.4, "bf16": 672.1, "fp8": 1277.0, "int8": 893.3}


def ceilings(rates, not_measured=None):
    return Ceilings(machine="test GPU", device="cuda", torch="2.5", copy_gbps=3000.0, copy_bytes=2**30,
                    matmul_tflops=dict(rates), matmul_shape=(8192, 8192, 8192), not_measured=not_measured or {})


def outcome(lab_report):
    return [(c.claim, c.measured, c.status, c.why) for c in lab_report.claims]


def test_ceilings_claims_on_a_hopper_gpu():
    got = outcome(lab.ceilings_claims(ceilings(H100), has_gpu=True))
    assert got == [
        ("FP16 tensor-core matmul is at least 8x plain FP32", "12.5x", report.HOLDS, ""),
        ("TF32 lies between FP32 and FP16", "7.3x FP32", report.HOLDS, ""),
        ("FP8 is at least 1.5x FP16", "1.97x", report.HOLDS, ""),
        ("PyTorch's INT8 matmul reaches its FP8 rate (one tensor-core peak on Hopper)", "0.70x FP8", report.FAILS, ""),
    ]


def test_ceilings_claims_that_do_not_hold():
    rates = {"fp32": 50.0, "tf32": 700.0, "fp16": 300.0, "fp8": 400.0, "int8": 380.0}
    statuses = {c.claim: (c.measured, c.status) for c in lab.ceilings_claims(ceilings(rates), has_gpu=True).claims}
    assert statuses == {
        "FP16 tensor-core matmul is at least 8x plain FP32": ("6.0x", report.FAILS),
        "TF32 lies between FP32 and FP16": ("14.0x FP32", report.FAILS),
        "FP8 is at least 1.5x FP16": ("1.33x", report.FAILS),
        "PyTorch's INT8 matmul reaches its FP8 rate (one tensor-core peak on Hopper)": ("0.95x FP8", report.HOLDS),
    }


def test_ceilings_claims_on_a_gpu_without_tf32_or_fp8():
    rates = {"fp32": 8.0, "fp16": 65.0, "int8": 130.0}   # a Turing T4
    got = outcome(lab.ceilings_claims(ceilings(rates, {"fp8": "needs compute capability 8.9"}), has_gpu=True))
    assert got == [("FP16 tensor-core matmul is at least 8x plain FP32", "8.1x", report.HOLDS, ""),
                   ("FP8 is at least 1.5x FP16", "-", report.NOT_APPLICABLE, "needs compute capability 8.9")]
    unexplained = lab.ceilings_claims(ceilings(rates), has_gpu=True).claims[-1]
    assert (unexplained.status, unexplained.why) == (report.NOT_APPLICABLE, "no FP8 on this GPU")


def test_ceilings_claims_on_a_cpu_are_not_applicable_and_added_to_the_given_report():
    lab_report = report.LabReport("00_tour")
    cpu = Ceilings(machine="CPU", device="cpu", torch="2.5", copy_gbps=20.0, copy_bytes=2**26,
                   matmul_tflops={"fp32": 0.5}, matmul_shape=(1024, 1024, 1024))
    assert lab.ceilings_claims(cpu, has_gpu=False, lab_report=lab_report) is lab_report
    assert outcome(lab_report) == [
        ("FP16 tensor-core matmul is at least 8x plain FP32", "-", report.NOT_APPLICABLE, "needs a GPU with tensor cores"),
        ("FP8 is at least 1.5x FP16", "-", report.NOT_APPLICABLE, "needs a GPU with tensor cores"),
    ]


def overhead(measure_ms, bare_ms):
    return lab.HarnessOverhead({"bench.measure": list(measure_ms), "bare event loop": list(bare_ms)})


def test_harness_overhead_is_the_median_paired_ratio():
    o = overhead([0.0142, 0.0140, 0.0139, 0.0140, 0.0142], [0.0140, 0.0140, 0.0140, 0.0140, 0.0140])
    assert o.ratios == pytest.approx([142 / 140, 1.0, 139 / 140, 1.0, 142 / 140])
    assert o.overhead_pct == pytest.approx(0.0)


def test_harness_claims_hold_fail_and_are_not_applicable_without_a_gpu():
    small = outcome(lab.harness_claims(overhead([1.0] * 4 + [1.1], [1.0, 1.0, 0.98, 1.0, 1.0])))
    assert small == [(lab.HARNESS_CLAIM, "+0.0%", report.HOLDS, "median of 5 paired runs")]
    large = outcome(lab.harness_claims(overhead([1.08, 1.06, 1.07], [1.0, 1.0, 1.0])))
    assert large == [(lab.HARNESS_CLAIM, "+7.0%", report.FAILS, "median of 3 paired runs")]
    negative = lab.harness_claims(overhead([0.9] * 5, [1.0] * 5)).claims[0]
    assert (negative.measured, negative.status) == ("-10.0%", report.FAILS)
    assert outcome(lab.harness_claims(None)) == [
        (lab.HARNESS_CLAIM, "-", report.NOT_APPLICABLE,
         "CUDA events need a GPU; on a CPU the harness times with perf_counter_ns")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_harness_overhead_on_a_gpu_times_both_loops_in_pairs():
    o = lab.harness_overhead(pairs=2, iterations=500)
    assert [len(v) for v in o.medians_ms.values()] == [2, 2] and all(r > 0 for r in o.ratios)


def test_course_map_lists_every_lab_with_its_title():
    labs = lab.course_map()
    assert labs[0] == ("00_tour.ipynb", "Lab 00 — Tour: the machine, its ceilings, and how to read a lab")
    assert [name[:2] for name, _ in labs] == sorted(name[:2] for name, _ in labs)
    assert all(title.startswith(f"Lab {name[:2]} — ") for name, title in labs)
