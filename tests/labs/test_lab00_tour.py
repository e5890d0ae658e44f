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


INT8_WHY = ("torch._int_mm's kernels against torch._scaled_mm's, not the chip: TensorRT brings its own INT8 and FP8 "
            "kernels (lab 08)")
FP8_WHY = "torch._scaled_mm against cuBLAS FP16, best of each sweep"


def test_a_share_above_the_ceiling_reads_100_and_says_so_in_the_notes_not_on_stderr(recwarn):
    ceil, notes = ceilings(H100), []
    assert lab.share_of_ceiling(ceil, 1500.0, "copy", notes) == pytest.approx(50.0) and notes == []
    assert lab.share_of_ceiling(ceil, 3039.0, "copy", notes) == 100.0          # 1.3% above: the new best
    assert len(notes) == 1 and "1.013x the ceiling" in notes[0] and ceil.copy_gbps == 3039.0
    assert lab.share_of_ceiling(ceil, 3 * 3039.0, "copy", notes) == 100.0      # far above: a stale ceiling
    assert len(notes) == 2 and "refresh=True" in notes[1]
    assert not [w for w in recwarn if "ceiling" in str(w.message)]


def test_ceilings_claims_on_a_hopper_gpu():
    got = outcome(lab.ceilings_claims(ceilings(H100), has_gpu=True))
    assert got == [
        ("FP16 tensor-core matmul is at least 8x plain FP32", "12.5x", report.HOLDS, lab.RATES_WHY),
        ("TF32 lies between FP32 and FP16", "7.3x FP32", report.HOLDS, lab.RATES_WHY),
        ("FP8 is at least 1.5x FP16", "1.97x", report.HOLDS, FP8_WHY),
        ("PyTorch's INT8 matmul reaches its FP8 rate (one tensor-core peak on Hopper)", "0.70x FP8", report.FAILS,
         INT8_WHY),
    ]


def test_ceilings_claims_that_do_not_hold():
    rates = {"fp32": 50.0, "tf32": 700.0, "fp16": 300.0, "fp8": 400.0, "int8": 380.0}
    lab_report = lab.ceilings_claims(ceilings(rates), has_gpu=True, points=points(40, 45, device="cuda"))
    statuses = {c.claim: (c.measured, c.status) for c in lab_report.claims}
    assert statuses == {
        "FP16 tensor-core matmul is at least 8x plain FP32": ("6.0x", report.FAILS),
        "TF32 lies between FP32 and FP16": ("14.0x FP32", report.FAILS),
        "FP8 is at least 1.5x FP16": ("1.33x", report.FAILS),
        "PyTorch's INT8 matmul reaches its FP8 rate (one tensor-core peak on Hopper)": ("0.95x FP8", report.HOLDS),
        lab.ADD_CLAIM: ("40% of copy", report.FAILS),
        lab.MATMUL_CLAIM: ("45% of matmul fp32", report.FAILS),
    }
    assert lab_report.unexplained() == []


def test_ceilings_claims_on_a_gpu_without_tf32_or_fp8():
    rates = {"fp32": 8.0, "fp16": 65.0, "int8": 130.0}   # a Turing T4
    got = outcome(lab.ceilings_claims(ceilings(rates, {"fp8": "needs compute capability 8.9"}), has_gpu=True))
    assert got == [("FP16 tensor-core matmul is at least 8x plain FP32", "8.1x", report.HOLDS, lab.RATES_WHY),
                   ("FP8 is at least 1.5x FP16", "-", report.NOT_APPLICABLE, "needs compute capability 8.9")]
    unexplained = lab.ceilings_claims(ceilings(rates), has_gpu=True).claims[-1]
    assert (unexplained.status, unexplained.why) == (report.NOT_APPLICABLE, "no FP8 on this GPU")


def cpu_ceilings():
    return Ceilings(machine="CPU", device="cpu", torch="2.5", copy_gbps=20.0, copy_bytes=2**26,
                    matmul_tflops={"fp32": 0.05}, matmul_shape=(1024, 1024, 1024),
                    matmul_shapes={"fp32": (1024, 1024, 1024)})


def points(add_pct, matmul_pct, device="cpu"):
    return lab.Roofline(device, add_gbps=add_pct / 5, add_pct_of_copy=add_pct, matmul_dtype="fp32",
                        matmul_shape=(512, 512, 512), matmul_tflops=0.04, matmul_pct=matmul_pct,
                        add_flops_pct_of_matmul=3.2, regimes={"add": "cpu", "matmul": "cpu"})


def test_ceilings_claims_on_a_cpu_judge_the_roofline_and_add_to_the_given_report():
    lab_report = report.LabReport("00_tour")
    assert lab.ceilings_claims(cpu_ceilings(), has_gpu=False, points=points(70, 80), lab_report=lab_report) is lab_report
    assert outcome(lab_report) == [
        ("FP16 tensor-core matmul is at least 8x plain FP32", "-", report.NOT_APPLICABLE, "needs a GPU with tensor cores"),
        ("FP8 is at least 1.5x FP16", "-", report.NOT_APPLICABLE, "needs a GPU with tensor cores"),
        (lab.ADD_CLAIM, "70% of copy", report.HOLDS, "its FLOP rate is 3.2% of the product's: bytes, not arithmetic, "
                                                     "set its time"),
        (lab.MATMUL_CLAIM, "80% of matmul fp32", report.HOLDS, "512x512x512; the ceiling is the best of a sweep of sizes"),
    ]
    low = lab.ceilings_claims(cpu_ceilings(), has_gpu=False, points=points(30, 40)).claims
    assert [c.status for c in low[2:]] == [report.FAILS, report.FAILS]
    assert len(lab.ceilings_claims(cpu_ceilings(), has_gpu=False).claims) == 2   # no roofline measured


def test_ceiling_tables_keep_one_unit_per_table_and_say_how_far_the_datasheet_is():
    copy, matmul = lab.ceiling_tables(cpu_ceilings())
    assert copy == [{"ceiling": "copy bandwidth", "GB_per_s": 20.0, "best_at": "64 MiB", "datasheet_GB_per_s": "unknown",
                     "of_datasheet": "-"}]
    assert [(r["ceiling"], r["GFLOP/s"], r["counts"], r["best_at"]) for r in matmul] == [
        ("matmul fp32", 50.0, "GFLOP/s", "1024x1024x1024")]
    assert lab.datasheet_gap(cpu_ceilings()) == ("No datasheet peak for a CPU: the measured ceilings are the only "
                                                 "ones to compare with.")
    h200 = Ceilings(machine="NVIDIA H200 (sm_90)", device="cuda", torch="2.11", copy_gbps=4290.0, copy_bytes=4 << 30,
                    matmul_tflops={"fp16": 611.0, "int8": 892.0}, matmul_shape=(12288,) * 3,
                    matmul_shapes={"fp16": (12288,) * 3, "int8": (8192,) * 3})
    copy, matmul = lab.ceiling_tables(h200)
    assert (copy[0]["datasheet_GB_per_s"], copy[0]["best_at"], copy[0]["of_datasheet"]) == (4800, "4 GiB", "89%")
    assert {r["counts"] for r in matmul} == {"TFLOP/s", "TOP/s"} and all("TFLOP/s" in r for r in matmul)
    gap = lab.datasheet_gap(h200)
    assert gap.startswith("Measured against the datasheet of H200 SXM: from 45% (matmul int8) to 89% (copy bandwidth)")
    unknown = Ceilings(machine="NVIDIA Future GPU", device="cuda", torch="2.11", copy_gbps=1000.0, copy_bytes=1 << 30,
                       matmul_tflops={"fp16": 100.0}, matmul_shape=(8192,) * 3)
    assert "NVIDIA Future GPU, which the course's datasheet table does not list" in lab.datasheet_gap(unknown)
    assert lab.rate_unit("cuda") == ("TFLOP/s", 1.0) and lab.rate_unit("cpu") == ("GFLOP/s", 1e3)


def test_roofline_on_this_machine_reads_shares_of_the_ceilings():
    ceil = cpu_ceilings() if not torch.cuda.is_available() else None
    if ceil is None:
        pytest.skip("the GPU roofline is checked by the notebook at full scale")
    ceil.copy_gbps, ceil.matmul_tflops["fp32"] = 1e4, 10.0   # ceilings no CPU reaches: shares stay below 100%
    got = lab.roofline(ceil, add_elements=1 << 16, matmul_n=64, warmup_ms=5, measure_ms=20)
    assert got.device == "cpu" and got.matmul_shape == (64, 64, 64) and 0 < got.add_pct_of_copy < 100
    assert 0 < got.matmul_pct < 100 and got.regimes == {"add": "cpu", "matmul": "cpu"}
    assert [r["operation"] for r in got.rows()] == ["elementwise add (memory-bound)", "matmul fp32 64x64x64 (compute-bound)"]
    assert got.rows()[1]["rate"].endswith(" GFLOP/s") and got.notes == ()
    ceil.copy_gbps = 1e-3   # a ceiling measured under heavy load: the add reads 100% and says why
    stale = lab.roofline(ceil, add_elements=1 << 16, matmul_n=64, warmup_ms=5, measure_ms=20)
    assert stale.add_pct_of_copy == 100.0 and stale.notes[0].startswith("copy: ") and "refresh=True" in stale.notes[0]


def overhead(measure_ms, bare_ms, work="a near-empty kernel"):
    return lab.HarnessOverhead({"bench.measure": list(measure_ms), "bare loop": list(bare_ms)}, work)


def test_harness_overhead_is_the_median_paired_ratio_with_an_interval():
    o = overhead([0.0142, 0.0140, 0.0139, 0.0140, 0.0142], [0.0140, 0.0140, 0.0140, 0.0140, 0.0140])
    assert o.ratios == pytest.approx([142 / 140, 1.0, 139 / 140, 1.0, 142 / 140])
    assert o.overhead_pct == pytest.approx(0.0)
    lo, hi = o.interval
    assert lo <= 1.0 <= hi < 1.02


def test_harness_claims_hold_fail_and_are_inconclusive():
    small = outcome(lab.harness_claims(overhead([1.0] * 4 + [1.01], [1.0, 1.0, 0.99, 1.0, 1.0])))
    assert small == [(lab.HARNESS_CLAIM, "1.000x [1.000x, 1.010x]", report.HOLDS,
                      "a near-empty kernel, 5 interleaved passes")]
    large = lab.harness_claims(overhead([1.08, 1.06, 1.07], [1.0, 1.0, 1.0], "a 128-square FP32 product")).claims[0]
    assert (large.measured, large.status) == ("1.070x [1.060x, 1.080x]", report.FAILS)
    assert large.why.endswith("a 128-square FP32 product, 3 interleaved passes")
    noisy = lab.harness_claims(overhead([1.0, 1.2, 0.9, 1.1, 1.0], [1.0] * 5)).claims[0]
    assert noisy.status == report.INCONCLUSIVE and "straddles 1.050x" in noisy.why


def test_harness_overhead_on_this_machine_times_both_loops_in_passes():
    o = lab.harness_overhead(passes=2, iterations=300)
    assert [len(v) for v in o.medians_ms.values()] == [2, 2] and all(r > 0 for r in o.ratios)
    assert o.work == ("a near-empty kernel" if torch.cuda.is_available() else "a 128-square FP32 product")


def test_course_map_lists_every_lab_with_its_title():
    labs = lab.course_map()
    assert labs[0] == ("00_tour.ipynb", "Lab 00 — Tour: the machine, its ceilings, and how to read a lab")
    assert [name[:2] for name, _ in labs] == sorted(name[:2] for name, _ in labs)
    assert all(title.startswith(f"Lab {name[:2]} — ") for name, title in labs)
