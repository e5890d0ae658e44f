"""Lab 06's module (reduce and shuffle): reduction cases and their byte counts, PyTorch and ONNX Runtime
reductions against FP64, rate comparisons, storage sharing of shuffles, the shuffle micro-graphs, and
the claims on synthetic results through every branch."""

import numpy as np
import pytest
import torch

from common import bench, ceilings, checks, report
from common import onnx as onnx_tools
from common.labs import lab06_reduce_shuffle as lab

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL_NCHW, SMALL_MATRIX = (2, 8, 6, 5), (12, 10)


def ceiling(copy_gbps: float, device: str = "cpu") -> ceilings.Ceilings:
    return ceilings.Ceilings(machine="test", device=device, torch="", copy_gbps=copy_gbps, copy_bytes=1,
                             matmul_tflops={"fp32": 1.0}, matmul_shape=(1, 1, 1))


def test_cases_cover_short_and_long_last_axes_and_transposes():
    cases = lab.reduce_cases((4, 16, 7, 7), (32, 64))
    assert len({c.name for c in cases}) == len(cases) == 9
    assert [c.axis_length for c in cases if c.is_last_axis] == [7, 49, 64]
    transposed = [c for c in cases if c.transpose_first]
    assert [(c.label, c.dim) for c in transposed] == [("NCHW", 1), ("matrix", 0)]
    nchw_c = lab.ReduceCase("NCHW", (4, 16, 7, 7), 1)
    assert nchw_c.output_shape == (4, 7, 7)
    assert nchw_c.useful_bytes(2) == (4 * 16 * 49 + 4 * 49) * 2
    assert transposed[0].moved_bytes(2) == nchw_c.useful_bytes(2) + 2 * 4 * 16 * 49 * 2


@pytest.mark.parametrize("case", lab.reduce_cases(SMALL_NCHW, SMALL_MATRIX), ids=lambda c: c.short_name)
def test_torch_and_ort_reductions_match_fp64(case, tmp_path):
    x = lab.make_input(case.shape, device="cpu", dtype=torch.float32)
    torch_reduce = lab.TorchReduce(case, x)
    assert tuple(torch_reduce().shape) == case.output_shape
    assert torch_reduce.reference_error() <= checks.tolerance("fp32", "op")
    ort_reduce = lab.OrtReduce(case, x.numpy(), tmp_path)
    assert ort_reduce().shape == case.output_shape
    assert ort_reduce.reference_error() <= checks.tolerance("fp32", "op")
    ops = onnx_tools.node_counts(lab.reduce_sum_model(case))
    assert ops == ({"Transpose": 1, "ReduceSum": 1} if case.transpose_first else {"ReduceSum": 1})


def test_torch_reduce_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="not the case's"):
        lab.TorchReduce(lab.ReduceCase("m", (3, 4), 0), torch.zeros(4, 3))


def test_measure_reductions_reports_bandwidth_against_the_ceiling():
    case = lab.ReduceCase("m", (64, 128), 1)
    reduce = lab.TorchReduce(case, lab.make_input(case.shape, device="cpu", dtype=torch.float32))
    rows, runs = lab.measure_reductions([reduce], backend="test", device="cpu", ceiling=ceiling(1e6), passes=2,
                                        warmup_ms=1, measure_ms=5)
    assert len(runs[case.name]) == 2
    row = rows[0]
    assert row["timed_on"] == "event" and row["regime"] == bench.CPU_REGIME and row["note"] == ""
    assert row["GB_per_s"] == pytest.approx(case.useful_bytes(4) / (row["median_ms"] / 1e3) / 1e9)
    assert row["pct_of_copy"] == pytest.approx(row["GB_per_s"] / 1e4)


def test_pcts_of_copy_never_exceed_100_and_say_why():
    c = ceiling(100.0)
    plain = lab.pcts_of_copy(c, [50.0, float("nan")])
    assert plain[0] == (50.0, "") and np.isnan(plain[1][0]) and plain[1][1] == ""   # a view: no bandwidth
    lifted = lab.pcts_of_copy(c, [50.0, 110.0])   # the fastest raises the ceiling first: both read against 110
    assert [pct for pct, _ in lifted] == pytest.approx([100 * 50 / 110, 100.0]) and c.lifted == {"copy": 100.0}
    far = lab.pcts_of_copy(ceiling(100.0), [50.0, 300.0])
    assert far[0] == (50.0, "") and np.isnan(far[1][0]) and "a sum reads, a copy reads and writes" in far[1][1]


def measurements(name: str, medians_ms, *, kernel: bool = True, kernels: float = 1.0) -> list[bench.Measurement]:
    """One Measurement per pass median, with kernel time equal to it (a device-bound GPU run)."""
    out = []
    for median in medians_ms:
        stats = bench.Stats.of([median])
        k = bench.KernelTime(union_ms=median, sum_ms=median, copy_ms=0.0, activities_per_iter=kernels,
                             iterations=5) if kernel else None
        out.append(bench.Measurement(name, "test", "cuda" if kernel else "cpu", 1, stats, stats, median, 10, 1.0,
                                     "test", kernel=k))
    return out


def test_rate_comparison_scales_the_time_ratio_by_the_bytes():
    runs = {"w": measurements("w", [4.0, 4.1, 3.9, 4.0, 4.05]), "h": measurements("h", [1.0, 1.01, 0.99, 1.0, 1.0])}
    rows = [{"backend": "b", "case": "w", "name": "w", "useful_bytes": 100},
            {"backend": "b", "case": "h", "name": "h", "useful_bytes": 50}]
    faster = lab.compare_rates(rows, runs, "w", "h", "b")
    assert faster.ratio == pytest.approx(2.0) and faster.on == "kernel" and faster.significant
    lo, hi = faster.interval
    assert lo <= 2.0 <= hi and "the GB/s" in faster.verdict()
    same = lab.rate_comparison(runs["w"], measurements("x", [4.1, 3.9, 4.0, 4.0, 4.05]), 1, 1)
    assert not same.significant and "noise" in same.verdict()
    with pytest.raises(KeyError, match="no row"):
        lab.compare_rates(rows, runs, "w", "missing", "b")
    assert lab.copy_time_ms(10**9, 2.0) == pytest.approx(1000.0)


def test_views_share_storage_and_real_transposes_copy():
    x = lab.make_input(SMALL_NCHW, device="cpu", dtype=torch.float32)
    facts = {f["shuffle"]: f for f in lab.storage_facts(x, lab.shuffle_cases(groups=2))}
    shared = [name for name, f in facts.items() if f["shares_storage"]]
    assert len(shared) == 4 and all(facts[name]["is_view"] for name in shared)
    assert not facts["permute to NHWC (a strided view)"]["contiguous"]
    assert not facts["channel shuffle, 2 groups"]["shares_storage"]
    assert not facts["permute to NHWC, .contiguous()"]["shares_storage"]
    q, q_heads, k = lab.heads_matmul_operands(2, 6, 3, 4, device="cpu", dtype=torch.float32)
    assert torch.equal(q.permute(0, 2, 1, 3), q_heads)
    assert not lab.shares_storage(q, q.permute(0, 2, 1, 3).reshape(6, 6, 4))
    assert torch.allclose(torch.matmul(q.permute(0, 2, 1, 3), k), torch.matmul(q_heads, k))


def test_measure_shuffles_prices_views_below_copies():
    x = lab.make_input((8, 64, 32, 32), device="cpu", dtype=torch.float32)
    cases = [c for c in lab.shuffle_cases() if c.name.startswith(("flatten", "permute to NHWC, "))]
    rows = {r["shuffle"]: r for r in lab.measure_shuffles(x, cases, backend="test", device="cpu", ceiling=ceiling(1e6),
                                                          passes=2, warmup_ms=1, measure_ms=10)}
    view, copy = rows["flatten(start_dim=1)"], rows["permute to NHWC, .contiguous()"]
    assert view["shares_storage"] and np.isnan(view["GB_per_s"]) and view["median_ms"] < copy["median_ms"]
    assert copy["GB_per_s"] == pytest.approx(2 * x.numel() * 4 / (copy["median_ms"] / 1e3) / 1e9)   # read + write
    assert copy["pct_of_copy"] == pytest.approx(copy["GB_per_s"] / 1e4)
    assert copy["x_one_copy"] == pytest.approx(copy["median_ms"] / lab.copy_time_ms(x.numel() * 4, 1e6))


@pytest.mark.parametrize("kind", lab.SHUFFLE_GRAPHS)
def test_shuffle_graphs_compute_their_reference(kind, tmp_path):
    paths = lab.save_shuffle_graphs((2, 8, 3, 3), tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 8, 3, 3)).astype(np.float32)
    assert np.array_equal(onnx_tools.ort_run(paths[kind], x), lab.shuffle_reference(kind, x))
    expected = {"Relu": 2, "Reshape": 1} if kind == "pure reshape" else {"Relu": 2, "Reshape": 2, "Transpose": 1}
    assert onnx_tools.node_counts(paths[kind]) == expected


def test_tensorrt_reduce_graphs_keep_the_axis_and_compute_the_sum(tmp_path):
    cases = lab.trt_reduce_cases((2, 8, 3, 5))
    assert [c.short_name for c in cases] == ["NCHW axis 3 (5)", "NCHW axis 1 (8)", "NCHW axis 1 (8) via transpose",
                                            "N,C,HW axis 2 (15)"]
    paths = lab.save_trt_reduce_graphs(cases, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 8, 3, 5)).astype(np.float16)
    via = onnx_tools.ort_run(paths["NCHW axis 1 (8) via transpose"], x)
    assert via.shape == (2, 3, 5, 1) and via.dtype == np.float16
    in_place = onnx_tools.ort_run(paths["NCHW axis 1 (8)"], x)
    assert in_place.shape == (2, 1, 3, 5)
    assert np.allclose(via[..., 0], in_place[:, 0], atol=1e-2)
    commands = lab.trtexec_commands(paths)
    assert len(commands) == 4 and all(c.endswith("--dumpLayerInfo --dumpProfile") for c in commands)
    assert all("--onnx=reduce_" in c and str(tmp_path) not in c for c in commands)


def test_size1_transpose_keeps_memory_order_and_channel_shuffle_does_not():
    x = np.arange(2 * 8 * 3 * 3, dtype=np.float32).reshape(2, 8, 3, 3)
    assert np.array_equal(lab.shuffle_reference("size-1 transpose", x), x)
    assert not np.array_equal(lab.shuffle_reference("channel shuffle", x), x)
    with pytest.raises(ValueError, match="groups"):
        lab.shuffle_graph("channel shuffle", (1, 6, 2, 2), groups=4)
    with pytest.raises(ValueError, match="kind must be"):
        lab.shuffle_graph("rotate", (1, 8, 2, 2))


def test_grouped_bar_plot_writes_png_and_csv(tmp_path):
    rows = [{"backend": b, "case": c, "pct": v} for b, c, v in [("a", "x", 10.0), ("a", "y", 20.0), ("b", "x", 5.0)]]
    png = lab.grouped_bar_plot(rows, label="case", value="pct", series="backend", title="t", ylabel="%",
                              path=tmp_path / "fig", reference=100.0, show=False)
    assert png.exists() and png.with_suffix(".csv").read_text().count("\n") == 4


@needs_gpu
def test_gpu_fp16_reduction_and_kernel_counts():
    case = lab.ReduceCase("NCHW", (8, 64, 56, 56), 3)
    x = lab.make_input(case.shape, device="cuda", dtype=torch.float16)
    assert lab.TorchReduce(case, x).reference_error() <= checks.tolerance("fp16", "op")
    assert lab.cuda_kernels_launched(lambda: x.reshape(8, 64, -1)) == 0
    assert lab.cuda_kernels_launched(lambda: x.permute(0, 2, 3, 1).contiguous()) >= 1


def test_reductions_are_verified_against_the_op_tolerance_of_their_precision():
    assert lab.verify_reductions({"sum": 4e-3}, torch.float16)          # FP16: 5e-3 for one operation
    with pytest.raises(checks.VerificationError, match="sum: relative error .*do not time it"):
        lab.verify_reductions({"sum": 2e-5}, torch.float32)             # FP32: 1e-5


# -- the claims, on synthetic results --------------------------------------------------------------

NCHW = (64, 256, 56, 56)
BACKEND = "PyTorch FP16 (cuda)"


def comparison(speedup: float, spread_pct: float) -> bench.Comparison:
    """B `speedup` times as fast as A over five passes spreading by `spread_pct` (kernel time)."""
    wobble = [1 + spread_pct / 100 * f for f in (0.0, 0.5, 1.0, 0.25, 0.75)]
    return bench.Comparison("in place", "other", median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread_pct,
                            spread_b_pct=spread_pct, passes_a_ms=tuple(speedup * w for w in wobble),
                            passes_b_ms=tuple(wobble[::-1]), on="kernel")


def rate(ratio: float, spread: float = 0.02) -> lab.RateComparison:
    return lab.RateComparison("a", "b", ratio, (ratio * (1 - spread), ratio * (1 + spread)), "kernel")


def reduce_row(case: str, pct: float, backend: str = BACKEND, note: str = "") -> dict:
    return {"backend": backend, "case": case, "GB_per_s": 30.0 * pct, "pct_of_copy": pct, "note": note}


def results(*, holds: bool) -> lab.ReduceShuffleResults:
    """A run where every claim holds, or where none does."""
    short_last, middle_h, middle_c, long_last = lab.axis_case_names(NCHW)
    pcts = {short_last: 17.0, middle_h: 78.0, middle_c: 77.0, long_last: 82.0} if holds else \
        {short_last: 60.0, middle_h: 55.0, middle_c: 59.0, long_last: 45.0}
    rows = [reduce_row(case, pct) for case, pct in pcts.items()]
    rows.append(reduce_row(short_last, 99.0, backend="ONNX Runtime FP32 (cpu)"))   # another backend: ignored
    axis = {"H vs short last W": rate(4.59 if holds else 0.9), "C vs short last W": rate(4.55 if holds else 0.95),
            "long last vs short last": rate(4.82 if holds else 0.75)}
    cases = [case for case in lab.reduce_cases(NCHW, (4096, 8192)) if case.transpose_first]
    facts = [{"shuffle": case.name, "shares_storage": i < (4 if holds else 5)} for i, case in enumerate(lab.shuffle_cases())]
    shuffle_rows = [{"shuffle": case.name, "timed_on": "kernel", "GB_per_s": 570.0 if holds else 2500.0,
                     "x_one_copy": (0.0 if holds else 0.12) if i < 4 else (5.15 if holds else 1.2),
                     "pct_of_copy": float("nan") if i < 4 else (19.0 if holds else 83.0),
                     "median_ms": 0.0071 if i < 4 else 0.3, "kernels_per_iter": (0 if holds else 1) if i < 4 else 1}
                    for i, case in enumerate(lab.shuffle_cases())]
    trt_reduce = [{"case": c.short_name, "layers": 1 if holds or not c.transpose_first else 2, "GB_per_s_profile": 2000.0,
                   "layer_names": ["reduce"]} for c in lab.trt_reduce_cases(NCHW)]
    c_axis, via, long = (c.short_name for c in lab.trt_reduce_cases(NCHW)[1:])
    trt_cmp = {"long last vs C": lab.RateComparison(c_axis, long, 1.3 if holds else 0.8, (1.25, 1.35) if holds else (0.75, 0.85), "kernel"),
               "C via transpose vs C": lab.RateComparison(c_axis, via, 1.0, (0.98, 1.02), "kernel")}
    return lab.ReduceShuffleResults(
        backend=BACKEND, nchw=NCHW, reduce_rows=rows, axis_comparisons=axis,
        transpose_results=[(case, comparison(0.11 if holds else 1.5, 5.0)) for case in cases],
        facts=facts, shuffle_rows=shuffle_rows, matmul_comparison=comparison(0.83 if holds else 1.2, 0.3),
        trt_rows=[{"graph": "pure reshape", "shuffle_layers": 0 if holds else 1, "layer_names": ["a"]},
                  {"graph": "channel shuffle", "shuffle_layers": 1 if holds else 2, "layer_names": ["b", "c"]}],
        trt_reduce_rows=trt_reduce, trt_reduce_comparisons=trt_cmp)


def statuses(lab_report: report.LabReport) -> dict[str, tuple[str, str, str]]:
    return {c.claim: (c.status, c.measured, c.why) for c in lab_report.claims}


def test_claims_hold_with_their_measured_figures():
    lab_report = lab.claims(results(holds=True), has_tensorrt=True)
    held = statuses(lab_report)
    assert len(held) == 14 and all(status == report.HOLDS for status, _, _ in held.values()), held
    short = f"{BACKEND}: summing the short last axis W=56 streams at a lower rate than summing "
    assert held[short + "H (axis 2)"][1] == "4.59x [4.50x, 4.68x]"
    assert held[short + "H (axis 2)"][2] == "GB/s ratio; H (axis 2): 2,340 GB/s, W: 510 GB/s (kernel time)"
    assert held[f"{BACKEND}: a long last axis (3136) sums faster than the short one (56)"][1].startswith("4.82x")
    assert held[f"{BACKEND}: summing a long last axis (3136) reaches at least half the copy bandwidth"][1] == "82% of copy"
    transposed = f"{BACKEND}: NCHW axis 1 (256) via transpose is slower than summing in place (the copy is an extra pass)"
    assert held[transposed][1].startswith("0.11x") and "judged on kernel time" in held[transposed][2]
    storage = "reshape, flatten, a size-1 transpose and a strided permute share the input's storage (no copy runs)"
    assert held[storage][1] == "4 of 7 share storage"
    no_op = f"{BACKEND}: a no-op reshape costs under 10% of one copy of the tensor (kernel time)"
    assert held[no_op][1] == "0.00% of a copy's time"
    assert held[no_op][2].startswith("no kernel ran for any of them: the 7.1 us between the events is the host's call")
    real = (f"{BACKEND}: a real transpose (NCHW -> NHWC, .contiguous()) moves the tensor at under half the copy "
            "bandwidth (bytes read + written, as the copy ceiling counts them)")
    assert held[real][:2] == (report.HOLDS, "19% of copy") and "5.15x the time of one copy" in held[real][2]
    assert held[lab.TRT_CLAIMS[0]] == (report.HOLDS, "0 Shuffle layers", "['a']")
    assert held[lab.TRT_CLAIMS[1]] == (report.HOLDS, "1 Shuffle layers", "['b', 'c']")
    assert held[lab.TRT_CLAIMS[2]][1].startswith("1.30x") and "per-layer profile 2000 vs 2000 GB/s" in held[lab.TRT_CLAIMS[2]][2]
    assert held[lab.TRT_CLAIMS[3]][:2] == (report.HOLDS, "1 layers")


def test_claims_do_not_hold_when_the_measurements_say_no():
    lab_report = lab.claims(results(holds=False), has_tensorrt=True)
    failed = statuses(lab_report)
    assert len(failed) == 14 and all(status == report.FAILS for status, _, _ in failed.values()), failed
    assert failed[lab.TRT_CLAIMS[1]][1] == "2 Shuffle layers"
    no_op = f"{BACKEND}: a no-op reshape costs under 10% of one copy of the tensor (kernel time)"
    assert "kernel time 300.0 us, the cost of the call itself" in failed[no_op][2]
    assert failed[lab.TRT_CLAIMS[3]][1] == "2 layers" and "layers ['reduce']" in failed[lab.TRT_CLAIMS[3]][2]
    assert lab_report.unexplained() == []


def test_a_difference_within_the_noise_is_inconclusive():
    r = results(holds=True)
    r.transpose_results = [(case, comparison(0.96, 10.0)) for case, _ in r.transpose_results]
    r.matmul_comparison = comparison(0.99, 10.0)
    r.axis_comparisons = {**r.axis_comparisons, "H vs short last W": rate(1.02, spread=0.2)}
    lab_report = lab.claims(r, has_tensorrt=False)
    noisy = statuses(lab_report)
    short = f"{BACKEND}: summing the short last axis W=56 streams at a lower rate than summing "
    assert noisy[short + "H (axis 2)"][0] == report.INCONCLUSIVE and "straddles" in noisy[short + "H (axis 2)"][2]
    assert noisy[short + "C (axis 1)"][0] == report.HOLDS
    assert noisy[f"{BACKEND}: a permute feeding a matmul is slower than the matmul on a contiguous operand"][0] == report.INCONCLUSIVE
    assert lab_report.unexplained() == []


def test_a_cpu_sum_faster_than_the_copy_figure_reads_no_percentage_and_says_why():
    r = results(holds=True)
    _, _, _, long_last = lab.axis_case_names(NCHW)
    note = "above the copy ceiling (10 GB/s): a sum reads, a copy reads and writes; no % of it is shown"
    r.reduce_rows = [{**reduce_row(row["case"], float("nan"), note=note), "GB_per_s": 12.0}
                     if row["case"] == long_last else row for row in r.reduce_rows]
    held = statuses(lab.claims(r, has_tensorrt=False))
    claim = held[f"{BACKEND}: summing a long last axis (3136) reaches at least half the copy bandwidth"]
    assert claim == (report.HOLDS, "12 GB/s", note)


def test_tensorrt_claims_are_not_applicable_without_tensorrt():
    r = results(holds=True)
    r.trt_rows, r.trt_reduce_rows, r.trt_reduce_comparisons = [], [], {}
    missing = statuses(lab.claims(r, has_tensorrt=False))
    for claim in lab.TRT_CLAIMS:
        assert missing[claim] == (report.NOT_APPLICABLE, "-",
                                  "needs TensorRT: the engine inspector and profiler read a built engine")
    lab_report = report.LabReport("06_reduce_shuffle")
    assert lab.claims(r, has_tensorrt=False, lab_report=lab_report) is lab_report and len(lab_report.claims) == 14


def test_a_view_on_a_gpu_counts_as_no_kernel_and_zero_device_time(monkeypatch):
    from types import SimpleNamespace

    def fake_runs(name, ms, kernel_ms):
        stats = bench.Stats.of([ms])
        kernel = None if kernel_ms is None else bench.KernelTime(kernel_ms, kernel_ms, 0.0, 1, 5)
        note = bench.NO_DEVICE_WORK if kernel_ms is None else ""
        return [bench.Measurement(name, "fake", "cuda", 1, stats, stats, ms, 1, 0.0, "cuda-events", kernel=kernel,
                                  kernel_note=note) for _ in range(2)]

    cases = [lab.ShuffleCase("view", lambda t: t.reshape(t.shape[0], -1)),
             lab.ShuffleCase("copy", lambda t: t.permute(0, 2, 3, 1).contiguous())]
    monkeypatch.setattr(lab.bench, "measure_interleaved", lambda configs, **kw: {
        "view": fake_runs("view", 0.007, None), "copy": fake_runs("copy", 0.3, 0.29)})
    rows = lab.measure_shuffles(torch.zeros(2, 3, 4, 4), cases, backend="b", device="cuda",
                                ceiling=SimpleNamespace(copy_gbps=1000.0, pcts_of=lambda gbps, *a: [(50.0, "")] * len(gbps)),
                                passes=2)
    view, copy = rows
    assert (view["kernels_per_iter"], view["kernel_ms"], view["x_one_copy"], view["timed_on"]) == (0, 0.0, 0.0, "kernel")
    assert view["regime"] == bench.HOST_BOUND and copy["kernels_per_iter"] == 1 and copy["kernel_ms"] == pytest.approx(0.29)
