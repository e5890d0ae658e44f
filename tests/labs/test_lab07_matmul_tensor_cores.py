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
WOBBLE = (1.0, 1.005, 0.995, 1.002, 0.998)


def measurements(name: str, ms: float, *, device: str = "cuda", wobble=WOBBLE) -> list[bench.Measurement]:
    """Five passes around `ms`, with kernel time equal to it on a GPU (none on a CPU)."""
    out = []
    for w in wobble:
        stats = bench.Stats.of([ms * w])
        kernel = bench.KernelTime(union_ms=ms * w, sum_ms=ms * w, copy_ms=0.0, activities_per_iter=1,
                                  iterations=5) if device == "cuda" else None
        out.append(bench.Measurement(name, "test", device, 1, stats, stats, ms * w, 10, 1.0, "test", kernel=kernel))
    return out


def comparison(speedup: float, spread_pct: float, on: str = "kernel") -> bench.Comparison:
    """B `speedup` times as fast as A over five passes spreading by `spread_pct`."""
    wobble = [1 + spread_pct / 100 * f for f in (0.0, 0.5, 1.0, 0.25, 0.75)]
    return bench.Comparison("a", "b", median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread_pct,
                            spread_b_pct=spread_pct, passes_a_ms=tuple(speedup * w for w in wobble),
                            passes_b_ms=tuple(wobble[::-1]), on=on)


def sweep(rates: dict[tuple[str, int, int], float], base: int = BASE, device: str = "cuda"):
    """Rows and runs of a sweep at the given rates (TFLOP/s), M = base."""
    rows, runs = [], {}
    for (p, k, n), rate in rates.items():
        label = f"{p} {base}x{k}x{n}"
        ms = 2 * base * k * n / (rate * 1e12) * 1e3
        rows.append({"case": label, "precision": p, "m": base, "k": k, "n": n, "tflop_per_s": rate})
        runs[label] = measurements(label, ms, device=device)
    return rows, runs


def results(*, holds: bool, base: int = BASE) -> lab.AlignmentResults:
    """A GPU run (FP16 sweep, BF16, TF32, INT8) where every claim holds, or none does."""
    slow, near = (100.0, 650.0) if holds else (400.0, 500.0)
    rates = {("fp16", base, base): 690.0, ("fp16", base - 1, base): slow, ("fp16", base + 8, base): near,
             ("fp16", base, base - 1): slow, ("bf16", base, base): 690.0, ("bf16", base - 1, base): slow,
             ("tf32", base, base): 690.0, ("tf32", base - 4, base): near,
             ("int8", base, base): 900.0, ("int8", base - 8, base): 800.0 if holds else 500.0}
    rows, runs = sweep(rates, base)
    return lab.AlignmentResults(
        base=base, main="fp16", rows=rows, runs=runs,
        onnx_results={"Gemm": (0.0, True), "MatMul": (0.0 if holds else 3e-5, holds)}, onnx_equal=holds,
        pad_comparison=comparison(3.8 if holds else 0.9, 1.5), pad_share_pct=24.7,
        fp8_error="Expected trailing dimension of mat1 to be divisible by 16 but got mat1 shape: (4096x4088)."
        if holds else "some other error",
        int8_refused={base - 4: "expected K % 8 == 0", base - 1: "expected K % 8 == 0"},
        conv_comparison=comparison(2.27 if holds else 0.9, 0.4),
        attention_comparison=comparison(1.0 if holds else 1.3, 0.3),
        trt_study={"engines": {"original": {"reformat_layers": ["r1", "r2"], "reformat_share_pct": 12.0,
                                            "profiled_ms": 0.3},
                               "padded": {"reformat_layers": [] if holds else ["r1"], "profiled_ms": 0.25},
                               "4-D MatMul": {"layer_count": 1 if holds else 3},
                               "flattened MatMul": {"layer_count": 1}},
                   "comparison": comparison(1.05 if holds else 1.6, 1.0),
                   "batched_comparison": comparison(1.0, 1.0)})


def statuses(lab_report: report.LabReport) -> dict[str, tuple[str, str, str]]:
    return {c.claim: (c.status, c.measured, c.why) for c in lab_report.claims}


def test_claims_hold_on_a_gpu_with_fp8_int8_and_tensorrt():
    lab_report = lab.claims(results(holds=True), has_gpu=True, has_fp8=True)
    held = statuses(lab_report)
    c = lab.CLAIMS
    assert list(held) == [c[key] for key in ("onnx", "odd_k", "aligned_k", "odd_n", "bf16", "tf32", "int8",
                                             "pad_torch", "fp8", "conv", "cpu", "batched", "trt", "trt_gain",
                                             "trt_batched")]
    assert all(status in (report.HOLDS, report.NOT_APPLICABLE) for status, _, _ in held.values()), held
    assert held[c["onnx"]] == (report.HOLDS, "0.0e+00", "max relative difference, Gemm and MatMul graphs")
    assert held[c["odd_k"]][1].startswith("0.14x [") and held[c["odd_k"]][2] == "rate over the aligned shape's, kernel time"
    assert held[c["aligned_k"]][1].startswith("0.94x")
    assert held[c["int8"]][1].startswith("0.89x") and "refused K: [4092, 4095]" in held[c["int8"]][2]
    assert held[c["pad_torch"]][1].startswith("3.80x") and held[c["pad_torch"]][2].startswith("pad is 25% of the padded call")
    assert "judged on kernel time" in held[c["pad_torch"]][2]
    assert held[c["fp8"]] == (report.HOLDS, "1", results(holds=True).fp8_error)   # the whole message, never cut
    assert held[c["cpu"]] == (report.NOT_APPLICABLE, "-", "measured on the CPU run of this lab")
    assert held[c["trt"]] == (report.HOLDS, "0 reformat layers", "original engine: 2, 12% of its profiled time")
    assert held[c["trt_gain"]][0] == report.HOLDS and "per-layer profile 0.300 vs 0.250 ms" in held[c["trt_gain"]][2]
    assert held[c["trt_batched"]][:2] == (report.HOLDS, "1 layers")


def test_claims_do_not_hold_when_the_measurements_say_no():
    lab_report = lab.claims(results(holds=False), has_gpu=True, has_fp8=True)
    failed = statuses(lab_report)
    c = lab.CLAIMS
    for key in ("onnx", "odd_k", "aligned_k", "odd_n", "bf16", "tf32", "int8", "pad_torch", "fp8", "conv", "batched",
                "trt", "trt_gain", "trt_batched"):
        assert failed[c[key]][0] == report.FAILS, key
    assert failed[c["odd_k"]][1].startswith("0.58x") and failed[c["trt"]][1] == "1 reformat layers"
    assert failed[c["onnx"]][1] == "3.0e-05"
    assert failed[c["int8"]][1].startswith("0.56x")
    assert failed[c["int8"]][2].endswith("K = 4088 is a multiple of 8 but not of 16, INT8's tensor-core alignment: "
                                         "accepted, it runs through a slower kernel")
    assert lab_report.unexplained() == []


def test_claims_inside_the_noise_are_inconclusive():
    r = results(holds=True)
    r.pad_comparison, r.conv_comparison = comparison(1.02, 20.0), comparison(0.98, 20.0)
    r.attention_comparison = comparison(1.05, 20.0)
    lab_report = lab.claims(r, has_gpu=True, has_fp8=True)
    noisy = statuses(lab_report)
    for key in ("pad_torch", "conv", "batched"):
        assert noisy[lab.CLAIMS[key]][0] == report.INCONCLUSIVE, key
        assert "straddles" in noisy[lab.CLAIMS[key]][2]
    assert lab_report.unexplained() == []


def test_int8_claim_fails_when_a_multiple_of_8_is_refused_and_is_not_applicable_without_int8():
    r = results(holds=True)
    r.int8_refused = {BASE - 8: "refused"}
    assert "a multiple of 8 was refused" in statuses(lab.claims(r, has_gpu=True, has_fp8=True))[lab.CLAIMS["int8"]][2]
    r.rows = [row for row in r.rows if row["precision"] != "int8"]
    r.int8_refused = {BASE: "torch._int_mm is not supported on this GPU"}
    assert statuses(lab.claims(r, has_gpu=True, has_fp8=True))[lab.CLAIMS["int8"]] == (
        report.NOT_APPLICABLE, "-", "torch._int_mm did not run here: torch._int_mm is not supported on this GPU")


def test_claims_without_fp8_or_tensorrt_say_why():
    r = results(holds=True)
    r.fp8_error, r.trt_study = None, None
    missing = statuses(lab.claims(r, has_gpu=True, has_fp8=False))
    assert missing[lab.CLAIMS["fp8"]] == (report.NOT_APPLICABLE, "-", "FP8 tensor cores need compute capability 8.9+")
    for key in ("trt", "trt_gain", "trt_batched"):
        assert missing[lab.CLAIMS[key]] == (report.NOT_APPLICABLE, "-",
                                            "needs TensorRT (not installed); padding and the 4-D MatMul measured in "
                                            "PyTorch instead")


@pytest.mark.parametrize("cpu_rate, status", [(450.0, report.HOLDS), (300.0, report.FAILS)])
def test_claims_on_a_cpu_measure_only_the_fp32_sweep(cpu_rate, status):
    r = results(holds=True, base=512)
    r.rows, r.runs = sweep({("fp32", 512, 512): 500.0, ("fp32", 511, 512): cpu_rate}, base=512, device="cpu")
    r.main, r.fp8_error, r.trt_study = "fp32", None, None
    r.attention_comparison = comparison(1.0, 0.3, on="event")
    cpu = statuses(lab.claims(r, has_gpu=False, has_fp8=False))
    for key in ("odd_k", "aligned_k", "odd_n", "bf16", "tf32", "int8", "pad_torch", "fp8", "conv"):
        label = lab._labels(512)[key]
        assert cpu[label] == (report.NOT_APPLICABLE, "-", "tensor cores need an NVIDIA GPU; the CPU sweeps run in FP32 instead")
    assert "K = 511 reaches less than half the rate of K = 512" in lab._labels(512)["odd_k"]
    assert cpu[lab.CLAIMS["cpu"]][0] == status and cpu[lab.CLAIMS["cpu"]][1].startswith(f"{cpu_rate / 500:.2f}x")
    assert "event time (a CPU has no kernel time)" in cpu[lab.CLAIMS["cpu"]][2]
    assert cpu[lab.CLAIMS["batched"]][0] == report.HOLDS and len(cpu) == 15


def test_rate_ratio_scales_time_by_flops_and_carries_the_interval():
    a, b = measurements("a", 1.0), measurements("b", 4.0)
    ratio, (lo, hi), on = lab.rate_ratio(a, b, 100, 200)
    assert on == "kernel" and ratio == pytest.approx(0.5) and lo <= 0.5 <= hi
    assert lab.rate_ratio(measurements("a", 1.0, device="cpu"), measurements("b", 1.0, device="cpu"), 1, 1)[2] == "event"


def ceiling(rate: float, device: str = "cuda"):
    from common import ceilings

    return ceilings.Ceilings(machine="test", device=device, torch="", copy_gbps=100.0, copy_bytes=1,
                             matmul_tflops={"fp16": rate, "fp32": rate}, matmul_shape=(1, 1, 1))


def test_pct_of_ceilings_never_reads_above_100_and_says_why():
    c = ceiling(600.0)
    rows = lab.pct_of_ceilings([{"precision": "fp16", "tflop_per_s": 300.0}, {"precision": "fp16", "tflop_per_s": 690.0},
                                {"precision": "bf16", "tflop_per_s": 500.0}, {"precision": "fp16", "tflop_per_s": 0.0}], c)
    assert rows[1]["pct_of_ceiling"] == 100.0 and rows[0]["pct_of_ceiling"] == pytest.approx(100 * 300 / 690)
    assert c.lifted == {"fp16": 600.0} and "pct_of_ceiling" not in rows[2] and "pct_of_ceiling" not in rows[3]
    far = lab.pct_of_ceilings([{"precision": "fp16", "tflop_per_s": 900.0}], ceiling(600.0))
    assert np.isnan(far[0]["pct_of_ceiling"]) and "re-measure it" in far[0]["note"]
    cpu = lab.pct_of_ceilings([{"precision": "fp32", "tflop_per_s": 0.3}], ceiling(0.6, device="cpu"))
    assert cpu[0]["pct_of_ceiling"] == pytest.approx(50.0) and cpu[0]["note"] == ""


def test_sweep_rows_carry_kernel_time_and_regime():
    gemm = [cases.gemm_case(16, 16, 16, "fp32", device="cpu")]
    runs = cases.measure_cases(gemm, device="cpu", passes=2, warmup_ms=1, measure_ms=2, progress=False)
    row = lab.sweep_rows(gemm, runs, ceiling(1e6, device="cpu"))[0]
    assert row["regime"] == bench.CPU_REGIME and row["pct_of_ceiling"] <= 100 and row["note"] == ""


def test_quantization_arithmetic_and_tiles_from_kernel_names():
    q = lab.quantization(4096, 4096, 4088, (128, 256, 64), 132)
    assert q["k_steps"] == 64 and q["k_efficiency"] == pytest.approx(4088 / 4096)
    assert q["ctas"] == 512 and q["full_waves"] == 4 and q["wave_efficiency"] == pytest.approx(512 / 528)
    assert q["tile_efficiency"] == 1.0 and q["predicted"] == pytest.approx(4088 / 4096 * 512 / 528)
    edge = lab.quantization(4095, 4096, 4096, (128, 128, 64), 132)
    assert edge["ctas"] == 32 * 32 and edge["tile_efficiency"] == pytest.approx(4095 / 4096)
    assert lab.tile_of("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1") == (128, 256, 64)
    assert lab.tile_of("cutlass_80_tensorop_f16_s16816gemm_f16_128x256_64x3_tn_align8") == (128, 256, 64)
    assert lab.tile_of("void at::native::elementwise_kernel<128, 4>") is None


def test_residual_rows_compare_the_measurement_with_the_prediction():
    rows, runs = sweep({("bf16", BASE, BASE): 690.0, ("bf16", BASE - 8, BASE): 590.0})
    name = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1"
    kernels = {rows[0]["case"]: [name], rows[1]["case"]: ["elementwise", name]}
    row = lab.residual_rows([(rows[0]["case"], rows[1]["case"])], rows, runs, kernels, 132)[0]
    assert row["measured"] == pytest.approx(590 / 690) and row["same_kernel"] and row["kernel"] == name
    assert row["predicted"] == pytest.approx(4088 / 4096, rel=1e-6) and row["aligned_tile"] == "128x256x64"
    unknown = lab.residual_rows([(rows[0]["case"], rows[1]["case"])], rows, runs, {}, 132)[0]
    assert np.isnan(unknown["predicted"]) and "tile" not in unknown


def test_int8_cases_keep_what_torch_int_mm_refuses(monkeypatch):
    def fake(m, k, n, *, device):
        if k % 8:
            raise RuntimeError("self.size(1) needs to be a multiple of 8\nmore")
        return cases.Case(f"int8 {m}x{k}x{n}", "int8", lambda: None, 2 * m * k * n)

    monkeypatch.setattr(lab, "int8_case", fake)
    accepted, refused = lab.int8_cases(64, 64, (64, 56, 60), device="cpu")
    assert [c.label for c in accepted] == ["int8 64x64x64", "int8 64x56x64"]
    assert refused == {60: "self.size(1) needs to be a multiple of 8"}


def test_trtexec_commands_and_batched_graphs(tmp_path):
    src, dst = lab.fp16_padded_graphs(tmp_path, 13, 8)
    batched = {flat: lab.batched_matmul_onnx(tmp_path / f"b{flat}.onnx", 2, 3, 4, 8, flatten=flat) for flat in (False, True)}
    commands = lab.trtexec_commands((src, dst), batched.values(), batch=32, in_features=13)
    assert len(commands) == 4 and all(c.endswith("--dumpLayerInfo --dumpProfile") for c in commands)
    assert "--minShapes=input:1x13 --optShapes=input:32x13 --maxShapes=input:32x13" in commands[0]
    assert "--shapes=input:32x13" in commands[1] and str(tmp_path) not in " ".join(commands)
    q = np.random.default_rng(2).standard_normal((2, 3, 4, 8)).astype(np.float16)
    kt = np.random.default_rng(3).standard_normal((2, 3, 8, 4)).astype(np.float16)
    outs = [onnx_tools.ort_session(p).run(None, {"q": q, "kt": kt})[0] for p in batched.values()]
    assert outs[0].shape == (2, 3, 4, 4) and np.allclose(outs[0], outs[1], atol=1e-2)
    assert onnx_tools.node_counts(batched[False]) == {"MatMul": 1}
    assert onnx_tools.node_counts(batched[True]) == {"Reshape": 3, "MatMul": 1}
    assert "[Op: Pad]" in onnx_tools.polygraphy_inspect(dst, show_layers=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gemm_kernels_name_the_tile_cublas_picked():
    case = cases.gemm_case(1024, 1024, 1024, "fp16", device="cuda")
    names = lab.gemm_kernels(case.fn)
    assert names, "the profiler saw no kernel"


def test_fp16_graphs_for_tensorrt_are_padded_and_compute_the_same(tmp_path):
    src, dst = lab.fp16_padded_graphs(tmp_path, 13, 8)
    assert lab.weight_shapes(src)["weight"] == (8, 13) and (8, 16) in lab.weight_shapes(dst).values()
    x = np.random.default_rng(1).standard_normal((4, 13)).astype(np.float16)
    assert onnx_tools.max_relative_error(onnx_tools.ort_run(dst, x), onnx_tools.ort_run(src, x)) <= 1e-3


def test_fp8_probe_ks_separate_the_last_k_step_from_the_rows_alignment():
    ks = lab.fp8_probe_ks(4096)
    assert ks == (4080, 4064, 3968) and all(k % 16 == 0 for k in ks)
    assert [k % 128 != 0 for k in ks] == [True, True, False]                       # partial last K step
    assert [lab.row_pitch(k, 1)["sector_offset"] for k in ks] == [16, 0, 0]       # rows off a sector
    assert lab.row_pitch(3968, 1)["line_offset"] == 0 and "128-byte line" in lab.row_pitch(3968, 1)["text"]
    assert "every other row starts 16 bytes" in lab.row_pitch(4080, 1)["text"]


def _with_intervals(ratios, half_width=0.01):
    return {k: (r, (r - half_width, r + half_width)) for k, r in ratios.items()}


@pytest.mark.parametrize("ratios, reading", [
    ({4080: 0.89, 4064: 0.99, 3968: 1.0}, "follows the rows' alignment"),
    ({4080: 0.89, 4064: 0.90, 3968: 1.0}, "follows the partial last K step"),
    ({4080: 0.89, 4064: 0.90, 3968: 0.90}, "neither the rows' alignment nor the last K step"),
    ({4080: 0.89, 4064: 0.965, 3968: 1.0}, "straddles 0.97x"),       # 4064's interval 0.955-0.975
    ({4080: 0.99, 4064: 0.99, 3968: 1.0}, "neither"),                 # nothing slow: no cause to name
])
def test_residual_reading_names_the_cause_the_ratios_follow(ratios, reading):
    assert reading in lab.residual_reading(_with_intervals(ratios), tile_k=128, element_bytes=1)
    assert lab.residual_reading({}, 128, 1) == "no FP8 K probe ran"


def test_fp8_probe_reads_the_sweep_and_the_kernels_tile():
    def row(k):
        return {"precision": "fp8", "k": k, "n": 64, "m": 64, "case": f"fp8 {k}"}

    def runs_of(ms):
        s = bench.Stats.of([ms])
        return [bench.Measurement(name="n", backend="b", device="cpu", batch_size=1, latency_ms=s, host_ms=s,
                                  wall_ms_per_iter=ms, iterations=1, warmup_ms=0.0, timer="perf_counter")] * 5

    rows = [row(k) for k in (64, 48, 32)]                     # the probe's third K (64 - 128) was not measured
    runs = {"fp8 64": runs_of(1.0), "fp8 48": runs_of(48 / 64 / 0.8), "fp8 32": runs_of(32 / 64)}
    reading = lab.fp8_probe(rows, runs, 64, ["nvjet_sm90_qqhsh_128x128_32x6_2x1_v_bz_TNT"])   # a 32-deep K step
    assert "K = 48: 0.80x" in reading and "K = 32: 1.00x" in reading and "cannot be told apart" in reading
    assert "cannot be told apart" in lab.residual_reading(_with_intervals({4080: 0.9}), tile_k=128, element_bytes=1)
