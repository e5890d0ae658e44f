"""Lab 09 (2:4 structured sparsity), common.labs.lab09_sparsity: the 2:4 checker and pruner, ModelOpt
pruning and fine-tuning, a convolution as a GEMM, checked dense/sparse cases, their speedup rows and the
layer study; the TensorRT study's refusal where TensorRT is missing. GPU tests need a GPU with 2:4
sparse tensor cores (compute capability 8.0+)."""

import pytest
import torch
from torch import nn

from common import bench, checks, env, models, training
from common.cases import Case, measure_cases
from common.datasets import Split
from common.labs import lab09_sparsity as lab

needs_sparse_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
    reason="needs an NVIDIA GPU with 2:4 sparse tensor cores (compute capability 8.0+)")


# -- the pattern ------------------------------------------------------------------------------------

def test_conv_groups_run_along_input_channels_not_memory_order():
    w = torch.arange(8.0).reshape(1, 8, 1, 1).repeat(2, 1, 3, 3)      # w[k, c, r, s] = c
    groups = lab.groups_along_input(w)
    assert groups.shape == (2 * 3 * 3 * 2, 4)
    assert groups[0].tolist() == [0, 1, 2, 3] and groups[1].tolist() == [4, 5, 6, 7]
    assert lab.groups_in_memory_order(w)[0].tolist() == [0, 0, 0, 0]   # along the kernel, not the channels


def test_checker_counts_broken_groups_along_the_input():
    ok = torch.tensor([[1.0, 0, 2, 0, 0, 0, 3, 4]])
    assert lab.check_2_4(ok) == lab.PatternCheck(groups=2, violating_groups=0, zero_fraction=0.5) and lab.is_2_4(ok)
    broken = torch.tensor([[1.0, 2, 3, 0, 1, 1, 1, 1]])
    assert lab.check_2_4(broken).violating_groups == 2 and not lab.is_2_4(broken)
    # 2:4 along C_in at every kernel position, but 3 non-zeros along the kernel in memory order
    conv = torch.zeros(1, 4, 2, 2)
    conv[0, 0] = 1.0
    conv[0, 1] = 1.0
    assert lab.is_2_4(conv)
    assert lab.check_2_4(conv, along="memory").violating_groups > 0


def test_checker_refuses_what_groups_of_4_cannot_tile():
    with pytest.raises(ValueError, match="multiple of 4"):
        lab.check_2_4(torch.ones(8, 6))
    with pytest.raises(ValueError, match="no input dimension"):
        lab.check_2_4(torch.ones(8))
    with pytest.raises(ValueError, match="along"):
        lab.check_2_4(torch.ones(8, 8), along="rows")


def test_magnitude_pruning_keeps_the_two_largest_of_each_group():
    w = torch.tensor([[0.1, -5.0, 3.0, 0.2, 1.0, 2.0, -3.0, 4.0]])
    assert lab.prune_2_4(w).tolist() == [[0.0, -5.0, 3.0, 0.0, 0.0, 0.0, -3.0, 4.0]]
    conv = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    pruned = lab.prune_2_4(conv)
    assert lab.is_2_4(pruned) and lab.check_2_4(pruned).zero_fraction == 0.5
    assert torch.equal(lab.prune_2_4(pruned), pruned)                   # idempotent
    kept = lab.groups_along_input(pruned).abs().sort(dim=1).values[:, 2:]
    assert torch.equal(kept, lab.groups_along_input(conv).abs().sort(dim=1).values[:, 2:])


# -- ModelOpt -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_data():
    g = torch.Generator().manual_seed(0)
    return Split(torch.rand(96, 1, 8, 8, generator=g), torch.randint(0, 10, (96,), generator=g))


def test_modelopt_magnitude_matches_the_reference_pruner_and_skips_small_layers():
    model = models.DigitsCNN(16)
    pruned = lab.modelopt_sparsify(model)
    assert lab.pruned_layers(pruned.model) == ["features.3", "features.7"]
    assert len(pruned.skipped) == 2 and all("Skipping" in s for s in pruned.skipped)
    assert lab.pruned_layers(model) == [], "the dense model must be left untouched"
    for name in ("features.3", "features.7"):
        dense_w = dict(model.named_modules())[name].weight.detach()
        masked_w = dict(pruned.model.named_modules())[name].weight.detach()
        assert torch.equal(masked_w != 0, lab.magnitude_mask_2_4(dense_w))
    rows = {r["layer"]: r for r in lab.pattern_rows(pruned.model)}
    assert rows["features.3"]["zeros_pct"] == 50.0 and rows["features.3"]["broken_along_input"] == 0
    assert rows["features.0"]["broken_along_input"] == "-" and not rows["classifier"]["pruned_2_4"]


def test_fine_tuning_keeps_the_mask_and_export_bakes_it_in(small_data):
    pruned = lab.modelopt_sparsify(models.DigitsCNN(16))
    before = dict(pruned.model.named_modules())["features.3"].weight.detach().clone()
    training.train(pruned.model, small_data, epochs=1, lr=1e-2)
    after = dict(pruned.model.named_modules())["features.3"].weight.detach()
    assert not torch.equal(before, after), "fine-tuning changed nothing"
    assert lab.pruned_layers(pruned.model) == ["features.3", "features.7"]
    exported = lab.export_sparse(pruned.model)
    assert type(exported.features[3]) is nn.Conv2d
    assert lab.pruned_layers(exported) == ["features.3", "features.7"]


def test_sparsegpt_needs_calibration_and_its_conv_masks_follow_memory_order(small_data):
    model = models.DigitsCNN(16)
    with pytest.raises(ValueError, match="calibration"):
        lab.modelopt_sparsify(model, "sparsegpt")
    with pytest.raises(ValueError, match="mode"):
        lab.modelopt_sparsify(model, "unstructured")
    pruned = lab.modelopt_sparsify(model, "sparsegpt", calibration=small_data)
    conv = dict(pruned.model.named_modules())["features.7"].weight.detach()
    # What lab 09 reports about ModelOpt 0.47: SparseGPT groups a conv weight's flattened
    # (C_in * kh * kw) axis. If this starts failing, ModelOpt changed and the lab's text must follow.
    assert lab.check_2_4(conv, along="memory").ok and lab.check_2_4(conv).zero_fraction >= 0.5
    assert not lab.is_2_4(conv)


def test_accuracy_row_carries_sample_size_and_standard_error(small_data):
    row = lab.accuracy_row("dense", models.DigitsCNN(8), small_data)
    assert row["n"] == 96 and 0 <= row["accuracy_pct"] <= 100
    assert row["std_error_pts"] == pytest.approx(training.standard_error_points(row["accuracy_pct"], 96))


# -- a convolution as a GEMM --------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
def test_conv_as_gemm_reproduces_the_convolution(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=bias)
    x = torch.randn(2, 8, 5, 6)
    assert lab.relative_error(lab.conv_as_gemm(x, conv), conv(x)) < 1e-5
    cols = lab.im2col_channels_innermost(x, (3, 3), 1)
    assert cols.shape == (2 * 5 * 6, 9 * 8)


def test_gemm_weight_keeps_the_2_4_groups_of_the_conv():
    w = lab.prune_2_4(torch.randn(16, 8, 3, 3))
    gemm = lab.conv_weight_as_gemm(w)
    assert gemm.shape == (16, 72) and lab.is_2_4(gemm)
    assert not lab.is_2_4(w.reshape(16, -1)), "memory order should not be 2:4 here"
    with pytest.raises(NotImplementedError, match="stride 1"):
        lab.conv_as_gemm(torch.randn(1, 8, 4, 4), nn.Conv2d(8, 8, 3, stride=2))


def test_conv_layer_gemms_on_cpu():
    model = models.DigitsCNN(8).eval()
    layers = lab.conv_layer_gemms(model, ["features.3", "features.7"], torch.rand(3, 1, 8, 8), device="cpu")
    (n3, s3, w3, c3, e3), (n7, s7, w7, c7, e7) = layers
    assert (s3.n, s3.k, s3.m) == (16, 72, 3 * 64) and (s7.n, s7.k, s7.m) == (32, 144, 3 * 16)
    assert w3.shape == (16, 72) and c7.shape == (48, 144) and max(e3, e7) < 1e-5


def test_layer_inputs_captures_what_each_layer_receives():
    model = models.DigitsCNN(8).eval()
    seen = lab.layer_inputs(model, ["features.0", "classifier"], torch.rand(2, 1, 8, 8))
    assert seen["features.0"].shape == (2, 1, 8, 8) and seen["classifier"].shape == (2, 32)


# -- cases and rows ---------------------------------------------------------------------------------

def test_shape_and_relative_error():
    shape = lab.GemmShape(768, 3072, 8192)
    assert shape.flops == 2 * 768 * 3072 * 8192 and shape.label == "768x3072x8192"
    assert lab.relative_error(torch.ones(4), torch.ones(4)) == 0.0
    assert lab.relative_error(torch.ones(4) * 1.1, torch.ones(4)) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        lab.relative_error(torch.ones(4), torch.ones(5))


def test_force_cutlass_restores_the_flag():
    cls = torch.sparse.SparseSemiStructuredTensor
    before = cls._FORCE_CUTLASS
    with lab.force_cutlass(not before):
        assert cls._FORCE_CUTLASS == (not before)
    assert cls._FORCE_CUTLASS == before
    with pytest.raises(ValueError, match="backend"):
        lab.to_semi_structured(torch.ones(64, 64), "cuBLAS")


def test_gemm_cases_on_cpu_check_dense_and_record_refusals():
    cases, refused = lab.gemm_cases(lab.GemmShape(64, 128, 32), device="cpu", backends=lab.BACKENDS)
    assert [c.params["backend"] for c in cases] == ["dense", "dense"]
    assert all(c.error <= checks.tolerance("fp16", "op") for c in cases)
    assert set(refused) == set(lab.BACKENDS), "the CPU has no semi-structured kernels: both must refuse"
    with pytest.raises(ValueError, match="not 2:4"):
        lab.gemm_cases(lab.GemmShape(64, 128, 32), device="cpu", backends=(), weight=torch.randn(64, 128))


def test_zeros_cases_and_rows_on_cpu():
    cases = lab.zeros_cases(lab.GemmShape(32, 64, 48), device="cpu", dtype=torch.float32)
    assert len(cases) == 2 and all(c.error <= 1e-5 for c in cases)
    assert "50% zeros" in cases[1].label and cases[0].flops == 2 * 32 * 64 * 48
    runs = measure_cases(cases, device="cpu", warmup_ms=1, measure_ms=3, progress=False)
    (row,) = lab.zeros_rows(cases, runs)
    assert row["gemm"] == "32x64x48" and row["speedup"] == pytest.approx(row["dense_ms"] / row["sparse_ms"])


def _fake_runs(medians_ms: dict[str, list[float]], kernel_ms: dict[str, list[float]] | None = None
               ) -> dict[str, list[bench.Measurement]]:
    """Measurements with the given event medians per pass and, where given, kernel time per pass."""
    def one(name, ms, kernel):
        stats = bench.Stats.of([ms])
        return bench.Measurement(name=name, backend="test", device="cuda", batch_size=1, latency_ms=stats,
                                 host_ms=stats, wall_ms_per_iter=ms, iterations=1, warmup_ms=0, timer="cuda-events",
                                 kernel=None if kernel is None else bench.KernelTime(kernel, kernel, 0.0, 1, 1))
    kernel_ms = kernel_ms or {}
    return {name: [one(name, ms, k) for ms, k in zip(values, kernel_ms.get(name, [None] * len(values)))]
            for name, values in medians_ms.items()}


def _pair_cases(gemm="g"):
    def case(backend, form):
        return Case(f"{gemm} {backend}, {form}", "fp16", lambda: None, 2_000_000_000,
                    params={"gemm": gemm, "form": form, "backend": backend})
    return [case("dense", "W @ X"), case("dense", "F.linear(x, W)"),
            case("cuSPARSELt", "W @ X"), case("cuSPARSELt", "F.linear(x, W)")]


def test_speedup_rows_pair_each_sparse_case_with_its_dense_orientation():
    cases = _pair_cases()
    runs = _fake_runs({"g dense, W @ X": [2.0, 2.02], "g dense, F.linear(x, W)": [1.0, 1.01],
                       "g cuSPARSELt, W @ X": [1.0, 1.01], "g cuSPARSELt, F.linear(x, W)": [1.25, 1.26]})
    rows = {r["variant"]: r for r in lab.speedup_rows(cases, runs)}
    assert rows["cuSPARSELt, W @ X"]["speedup"] == pytest.approx(2.01 / 1.005)
    assert rows["cuSPARSELt, F.linear(x, W)"]["speedup"] == pytest.approx(1.005 / 1.255)
    assert rows["cuSPARSELt, W @ X"]["gflop"] == 2.0 and rows["cuSPARSELt, W @ X"]["significant"]
    assert rows["cuSPARSELt, W @ X"]["on"] == "event"                  # no kernel time measured: per call
    best = lab.best_against_best(cases, runs, "g")     # fastest dense (linear) against fastest sparse (mm)
    assert best.label_a == "g dense, F.linear(x, W)" and best.label_b == "g cuSPARSELt, W @ X"
    assert best.speedup == pytest.approx(1.0) and best.on == "event"
    with pytest.raises(ValueError, match="needs a dense and a sparse case"):
        lab.best_against_best(cases[:2], runs, "g")


def test_speedup_rows_judge_on_kernel_time_and_show_the_per_call_set_up():
    """cuSPARSELt through PyTorch: a call of 0.8 ms whose kernels run 0.1 ms, against a dense 0.2 ms call."""
    cases = _pair_cases()
    events = {"g dense, W @ X": [0.20] * 5, "g dense, F.linear(x, W)": [0.21] * 5,
              "g cuSPARSELt, W @ X": [0.80, 0.82, 0.79, 0.81, 0.80], "g cuSPARSELt, F.linear(x, W)": [0.90] * 5}
    kernels = {"g dense, W @ X": [0.19] * 5, "g dense, F.linear(x, W)": [0.20] * 5,
               "g cuSPARSELt, W @ X": [0.10, 0.101, 0.099, 0.10, 0.10], "g cuSPARSELt, F.linear(x, W)": [0.12] * 5}
    runs = _fake_runs(events, kernels)
    row = {r["variant"]: r for r in lab.speedup_rows(cases, runs)}["cuSPARSELt, W @ X"]
    assert row["on"] == "kernel" and row["speedup"] == pytest.approx(1.9) and row["verdict"] == "faster"
    assert row["call_speedup"] == pytest.approx(0.25) and row["setup_ms"] == pytest.approx(0.70)
    assert row["sparse_kernel_ms"] == pytest.approx(0.10) and row["dense_kernel_ms"] == pytest.approx(0.19)
    assert row["regime"] == bench.HOST_BOUND and row["gpu_busy"] == pytest.approx(0.125)
    best = lab.best_against_best(cases, runs, "g")
    assert (best.on, best.label_a, best.label_b) == ("kernel", "g dense, W @ X", "g cuSPARSELt, W @ X")
    call = lab.per_call_of(runs, best)
    assert call.on == "event" and (call.label_a, call.label_b) == (best.label_a, best.label_b)
    assert call.speedup == pytest.approx(0.25)
    assert lab.judged_on(runs["g dense, W @ X"], runs["g cuSPARSELt, W @ X"]) == "kernel"
    assert lab.device_compare(runs["g dense, W @ X"], runs["g cuSPARSELt, W @ X"]).on == "kernel"


def test_headline_rows_and_crossover_text():
    cases = _pair_cases("1x1x1") + _pair_cases("8x8x8")
    events = {c.label: [0.8 if "cuSPARSELt" in c.label else 0.2] * 5 for c in cases}
    kernels = {c.label: [(0.3 if c.params["gemm"] == "1x1x1" else 0.1) if "cuSPARSELt" in c.label else 0.2] * 5
               for c in cases}
    runs = _fake_runs(events, kernels)
    best = {g: lab.best_against_best(cases, runs, g) for g in ("1x1x1", "8x8x8")}
    rows = lab.headline_rows(best, {g: lab.per_call_of(runs, c) for g, c in best.items()}, {"1x1x1": 1.0, "8x8x8": 50.0})
    small, large = rows
    assert small["speedup"] == pytest.approx(2 / 3) and small["verdict"] == "slower" and small["on"] == "kernel"
    assert large["speedup"] == pytest.approx(2.0) and large["call_speedup"] == pytest.approx(0.25)
    assert large["sparse_kernel_ms"] == pytest.approx(0.1) and large["sparse_call_ms"] == pytest.approx(0.8)
    assert large["gpu_busy"] == pytest.approx(0.125) and large["regime"] == bench.HOST_BOUND
    assert lab.crossover_text(rows) == "crossover: 50 GFLOP (8x8x8, 2.00x); below it, 1x1x1 (1 GFLOP) at 0.67x"
    assert lab.crossover_text(rows[1:]).endswith("sparse wins at every size of the sweep")
    assert lab.crossover_text(rows[:1]).startswith("no crossover in the sweep: sparse loses at the largest GEMM")


def test_device_compare_falls_back_to_event_time_without_kernel_time():
    runs = _fake_runs({"a": [1.0, 1.0], "b": [2.0, 2.0]}, {"a": [0.5, 0.5]})
    assert lab.judged_on(runs["a"], runs["b"]) == "event"
    assert lab.device_compare(runs["a"], runs["b"]).speedup == pytest.approx(0.5)


@pytest.mark.parametrize("points, want", [
    ([(1, 0.5), (10, 0.9), (100, 1.1), (1000, 1.2)], 100),
    ([(1, 0.5), (10, 1.05), (100, 0.95), (1000, 1.2)], 1000),      # a win below a loss is not the crossover
    ([(1000, 1.3), (1, 0.4), (100, 1.02), (10, 0.8)], 100),        # rows in any order
    ([(1, 0.3), (10, 0.6), (100, 0.9)], None),                     # sparse never pays
    ([(1, 1.1), (10, 1.2)], 1)])
def test_crossover_is_where_the_winning_streak_to_the_largest_size_starts(points, want):
    assert lab.crossover_gflop([{"gflop": g, "speedup": x} for g, x in points]) == want


def test_layer_study_on_cpu_times_the_dense_gemms_of_every_model():
    narrow = lab.export_sparse(lab.modelopt_sparsify(models.DigitsCNN(16)).model)
    wide = lab.export_sparse(lab.modelopt_sparsify(models.DigitsCNN(32)).model)
    images = torch.rand(4, 1, 8, 8)
    study = lab.layer_study({"narrow": (narrow, images), "wide": (wide, images)}, ["features.3", "features.7"],
                            device="cpu", backends=(), warmup_ms=1, measure_ms=2)
    assert set(study.refused) == {"narrow", "wide"} and study.refused["narrow"] == {}
    assert len(study.conv_errors) == 4 and max(study.conv_errors.values()) < 1e-5
    assert len(study.cases) == 8 and set(study.runs) == {c.label for c in study.cases}
    assert study.speed == [] and study.best == {} and study.per_call == {} and study.flops == {}   # no sparse case
    assert all(len(r) == bench.PASSES for r in study.runs.values())


@pytest.mark.skipif(env.has("tensorrt"), reason="checks the message shown where TensorRT is missing")
def test_tensorrt_study_says_what_it_needs(tmp_path):
    with pytest.raises(env.RequirementError, match="TensorRT"):
        lab.tensorrt_sparsity_study(tmp_path / "model.onnx", torch.zeros(2, 1, 8, 8))


def test_speedup_plot_writes_png_and_csv(tmp_path):
    rows = [{"gemm": "a", "gflop": 1.0, "variant": "v", "speedup": 0.5},
            {"gemm": "b", "gflop": 100.0, "variant": "v", "speedup": 1.2}]
    png = lab.speedup_plot(rows, title="t", path=tmp_path / "fig", ylabel="x")
    assert png.exists() and (tmp_path / "fig.csv").read_text().startswith("gemm,gflop,variant,speedup")


def test_speedup_plot_draws_kernel_and_per_call_lines_and_the_crossover(tmp_path):
    rows = [{"gemm": "a", "gflop": 1.0, "variant": "v", "speedup": 0.5, "call_speedup": 0.05, "on": "kernel"},
            {"gemm": "b", "gflop": 100.0, "variant": "v", "speedup": 1.2, "call_speedup": 0.3, "on": "kernel"}]
    png = lab.speedup_plot(rows, title="t", path=tmp_path / "fig", ylabel="x", crossover=100.0)
    assert png.exists() and "call_speedup" in (tmp_path / "fig.csv").read_text().splitlines()[0]


def test_trtexec_commands_for_the_dense_and_the_sparse_engine():
    commands = lab.trtexec_commands("digits_fp16.onnx", (1, 8, 8), 539)
    assert set(commands) == set(lab.ENGINES) == {"dense", "sparse_weights"}
    for name, command in commands.items():
        assert command.startswith("trtexec --onnx=digits_fp16.onnx --minShapes=input:1x1x8x8 --optShapes=input:539x1x8x8")
        assert "--shapes=input:539x1x8x8" in command and "--verbose" in command
        assert f"--exportLayerInfo=digits_fp16_{name}_layers.json" in command
        assert ("--sparsity=enable" in command) == (name == "sparse_weights")
    assert lab.onnx_name("DigitsCNN(256)") == "digitscnn_256_fp16.onnx"
    configs = lab.engine_configs((1, 8, 8), 16)
    assert configs["sparse_weights"].sparse_weights and not configs["dense"].sparse_weights


# -- on a GPU with sparse tensor cores ----------------------------------------------------------------

@needs_sparse_gpu
def test_sparse_products_match_dense_on_gpu():
    status = lab.backend_status("cuda")
    assert set(status) == set(lab.BACKENDS)
    usable = [b for b, problem in status.items() if problem is None]
    assert usable, f"no semi-structured backend ran: {status}"
    cases, refused = lab.gemm_cases(lab.GemmShape(256, 512, 128), device="cuda", backends=usable)
    assert {c.params["backend"] for c in cases} == {"dense", *usable} and not refused
    assert all(c.error <= checks.tolerance("fp16", "op") for c in cases)
    runs = measure_cases(cases, device="cuda", warmup_ms=2, measure_ms=5, progress=False)
    rows = lab.speedup_rows(cases, runs)
    assert len(rows) == 2 * len(usable)
    # CUPTI sees cuSPARSELt's kernels: the speedups are judged on them, the per-call set-up shown apart
    assert all(r["on"] == "kernel" and 0 < r["sparse_kernel_ms"] <= r["sparse_ms"] for r in rows)


@needs_sparse_gpu
def test_model_layers_as_gemms_on_gpu():
    model = lab.export_sparse(lab.modelopt_sparsify(models.DigitsCNN(32)).model)
    layers = lab.conv_layer_gemms(model, ["features.3", "features.7"], torch.rand(16, 1, 8, 8), device="cuda")
    for name, shape, weight, cols, error in layers:
        assert error < 1e-4 and lab.is_2_4(weight) and cols.shape == (shape.m, shape.k)
        cases, _ = lab.gemm_cases(shape, device="cuda", backends=("cuSPARSELt",), weight=weight, x=cols, name=name)
        assert len(cases) == 4 and all(c.error <= checks.tolerance("fp16", "op") for c in cases)


@needs_sparse_gpu
def test_layer_study_on_gpu_pairs_sparse_with_dense():
    model = lab.export_sparse(lab.modelopt_sparsify(models.DigitsCNN(32)).model)
    study = lab.layer_study({"DigitsCNN(32)": (model, torch.rand(64, 1, 8, 8))}, ["features.3", "features.7"],
                            device="cuda", backends=("cuSPARSELt",), warmup_ms=2, measure_ms=5)
    assert set(study.best) == set(study.flops) == set(study.per_call) and len(study.best) == 2
    assert all(cmp.on == "kernel" and cmp.passes == bench.PASSES for cmp in study.best.values())
    assert all(row["variant"].startswith("digits CNN layers, cuSPARSELt") for row in study.speed)
