"""common.sparsity (lab 09): the 2:4 checker and pruner, ModelOpt pruning and fine-tuning, a convolution
as a GEMM, checked dense/sparse cases and their speedup rows; common.trt.sparsity: TensorRT's
"(Sparsity)" build-log lines and inspector fields, parsed from text written in the documented formats
(the TensorRT Developer Guide and trtexec output quoted in NVIDIA/TensorRT issues #2169, #4020, #4056),
not from a run. GPU tests need a GPU with 2:4 sparse tensor cores (compute capability 8.0+)."""

import json

import pytest
import torch
from torch import nn

from common import bench, models, training
from common import sparsity as sp
from common.datasets import Split
from common.matmul_alignment import Case, measure_cases
from common.trt import BuildLog
from common.trt import sparsity as trt_sparsity

needs_sparse_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
    reason="needs an NVIDIA GPU with 2:4 sparse tensor cores (compute capability 8.0+)")


# -- the pattern ------------------------------------------------------------------------------------

def test_conv_groups_run_along_input_channels_not_memory_order():
    w = torch.arange(8.0).reshape(1, 8, 1, 1).repeat(2, 1, 3, 3)      # w[k, c, r, s] = c
    groups = sp.groups_along_input(w)
    assert groups.shape == (2 * 3 * 3 * 2, 4)
    assert groups[0].tolist() == [0, 1, 2, 3] and groups[1].tolist() == [4, 5, 6, 7]
    assert sp.groups_in_memory_order(w)[0].tolist() == [0, 0, 0, 0]   # along the kernel, not the channels


def test_checker_counts_broken_groups_along_the_input():
    ok = torch.tensor([[1.0, 0, 2, 0, 0, 0, 3, 4]])
    assert sp.check_2_4(ok) == sp.PatternCheck(groups=2, violating_groups=0, zero_fraction=0.5) and sp.is_2_4(ok)
    broken = torch.tensor([[1.0, 2, 3, 0, 1, 1, 1, 1]])
    assert sp.check_2_4(broken).violating_groups == 2 and not sp.is_2_4(broken)
    # 2:4 along C_in at every kernel position, but 3 non-zeros along the kernel in memory order
    conv = torch.zeros(1, 4, 2, 2)
    conv[0, 0] = 1.0
    conv[0, 1] = 1.0
    assert sp.is_2_4(conv)
    assert sp.check_2_4(conv, along="memory").violating_groups > 0


def test_checker_refuses_what_groups_of_4_cannot_tile():
    with pytest.raises(ValueError, match="multiple of 4"):
        sp.check_2_4(torch.ones(8, 6))
    with pytest.raises(ValueError, match="no input dimension"):
        sp.check_2_4(torch.ones(8))
    with pytest.raises(ValueError, match="along"):
        sp.check_2_4(torch.ones(8, 8), along="rows")


def test_magnitude_pruning_keeps_the_two_largest_of_each_group():
    w = torch.tensor([[0.1, -5.0, 3.0, 0.2, 1.0, 2.0, -3.0, 4.0]])
    assert sp.prune_2_4(w).tolist() == [[0.0, -5.0, 3.0, 0.0, 0.0, 0.0, -3.0, 4.0]]
    conv = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    pruned = sp.prune_2_4(conv)
    assert sp.is_2_4(pruned) and sp.check_2_4(pruned).zero_fraction == 0.5
    assert torch.equal(sp.prune_2_4(pruned), pruned)                   # idempotent
    kept = sp.groups_along_input(pruned).abs().sort(dim=1).values[:, 2:]
    assert torch.equal(kept, sp.groups_along_input(conv).abs().sort(dim=1).values[:, 2:])


# -- ModelOpt -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_data():
    g = torch.Generator().manual_seed(0)
    return Split(torch.rand(96, 1, 8, 8, generator=g), torch.randint(0, 10, (96,), generator=g))


def test_modelopt_magnitude_matches_the_reference_pruner_and_skips_small_layers():
    model = models.DigitsCNN(16)
    pruned = sp.modelopt_sparsify(model)
    assert sp.pruned_layers(pruned.model) == ["features.3", "features.7"]
    assert len(pruned.skipped) == 2 and all("Skipping" in s for s in pruned.skipped)
    assert sp.pruned_layers(model) == [], "the dense model must be left untouched"
    for name in ("features.3", "features.7"):
        dense_w = dict(model.named_modules())[name].weight.detach()
        masked_w = dict(pruned.model.named_modules())[name].weight.detach()
        assert torch.equal(masked_w != 0, sp.magnitude_mask_2_4(dense_w))
    rows = {r["layer"]: r for r in sp.pattern_rows(pruned.model)}
    assert rows["features.3"]["zeros_pct"] == 50.0 and rows["features.3"]["broken_along_input"] == 0
    assert rows["features.0"]["broken_along_input"] == "-" and not rows["classifier"]["pruned_2_4"]


def test_fine_tuning_keeps_the_mask_and_export_bakes_it_in(small_data):
    pruned = sp.modelopt_sparsify(models.DigitsCNN(16))
    before = dict(pruned.model.named_modules())["features.3"].weight.detach().clone()
    training.train(pruned.model, small_data, epochs=1, lr=1e-2)
    after = dict(pruned.model.named_modules())["features.3"].weight.detach()
    assert not torch.equal(before, after), "fine-tuning changed nothing"
    assert sp.pruned_layers(pruned.model) == ["features.3", "features.7"]
    exported = sp.export_sparse(pruned.model)
    assert type(exported.features[3]) is nn.Conv2d
    assert sp.pruned_layers(exported) == ["features.3", "features.7"]


def test_sparsegpt_needs_calibration_and_its_conv_masks_follow_memory_order(small_data):
    model = models.DigitsCNN(16)
    with pytest.raises(ValueError, match="calibration"):
        sp.modelopt_sparsify(model, "sparsegpt")
    with pytest.raises(ValueError, match="mode"):
        sp.modelopt_sparsify(model, "unstructured")
    pruned = sp.modelopt_sparsify(model, "sparsegpt", calibration=small_data)
    conv = dict(pruned.model.named_modules())["features.7"].weight.detach()
    # What lab 09 reports about ModelOpt 0.47: SparseGPT groups a conv weight's flattened
    # (C_in * kh * kw) axis. If this starts failing, ModelOpt changed and the lab's text must follow.
    assert sp.check_2_4(conv, along="memory").ok and sp.check_2_4(conv).zero_fraction >= 0.5
    assert not sp.is_2_4(conv)


def test_accuracy_row_carries_sample_size_and_standard_error(small_data):
    row = sp.accuracy_row("dense", models.DigitsCNN(8), small_data)
    assert row["n"] == 96 and 0 <= row["accuracy_pct"] <= 100
    assert row["std_error_pts"] == pytest.approx(training.standard_error_points(row["accuracy_pct"], 96))


# -- a convolution as a GEMM --------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
def test_conv_as_gemm_reproduces_the_convolution(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=bias)
    x = torch.randn(2, 8, 5, 6)
    assert sp.relative_error(sp.conv_as_gemm(x, conv), conv(x)) < 1e-5
    cols = sp.im2col_channels_innermost(x, (3, 3), 1)
    assert cols.shape == (2 * 5 * 6, 9 * 8)


def test_gemm_weight_keeps_the_2_4_groups_of_the_conv():
    w = sp.prune_2_4(torch.randn(16, 8, 3, 3))
    gemm = sp.conv_weight_as_gemm(w)
    assert gemm.shape == (16, 72) and sp.is_2_4(gemm)
    assert not sp.is_2_4(w.reshape(16, -1)), "memory order should not be 2:4 here"
    with pytest.raises(NotImplementedError, match="stride 1"):
        sp.conv_as_gemm(torch.randn(1, 8, 4, 4), nn.Conv2d(8, 8, 3, stride=2))


def test_conv_layer_gemms_on_cpu():
    model = models.DigitsCNN(8).eval()
    layers = sp.conv_layer_gemms(model, ["features.3", "features.7"], torch.rand(3, 1, 8, 8), device="cpu")
    (n3, s3, w3, c3, e3), (n7, s7, w7, c7, e7) = layers
    assert (s3.n, s3.k, s3.m) == (16, 72, 3 * 64) and (s7.n, s7.k, s7.m) == (32, 144, 3 * 16)
    assert w3.shape == (16, 72) and c7.shape == (48, 144) and max(e3, e7) < 1e-5


def test_layer_inputs_captures_what_each_layer_receives():
    model = models.DigitsCNN(8).eval()
    seen = sp.layer_inputs(model, ["features.0", "classifier"], torch.rand(2, 1, 8, 8))
    assert seen["features.0"].shape == (2, 1, 8, 8) and seen["classifier"].shape == (2, 32)


# -- cases and rows ---------------------------------------------------------------------------------

def test_shape_and_relative_error():
    shape = sp.GemmShape(768, 3072, 8192)
    assert shape.flops == 2 * 768 * 3072 * 8192 and shape.label == "768x3072x8192"
    assert sp.relative_error(torch.ones(4), torch.ones(4)) == 0.0
    assert sp.relative_error(torch.ones(4) * 1.1, torch.ones(4)) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        sp.relative_error(torch.ones(4), torch.ones(5))


def test_force_cutlass_restores_the_flag():
    cls = torch.sparse.SparseSemiStructuredTensor
    before = cls._FORCE_CUTLASS
    with sp.force_cutlass(not before):
        assert cls._FORCE_CUTLASS == (not before)
    assert cls._FORCE_CUTLASS == before
    with pytest.raises(ValueError, match="backend"):
        sp.to_semi_structured(torch.ones(64, 64), "cuBLAS")


def test_gemm_cases_on_cpu_check_dense_and_record_refusals():
    cases, refused = sp.gemm_cases(sp.GemmShape(64, 128, 32), device="cpu", backends=sp.BACKENDS)
    assert [c.params["backend"] for c in cases] == ["dense", "dense"]
    assert all(c.error <= sp.FP16_TOLERANCE for c in cases)
    assert set(refused) == set(sp.BACKENDS), "the CPU has no semi-structured kernels: both must refuse"
    with pytest.raises(ValueError, match="not 2:4"):
        sp.gemm_cases(sp.GemmShape(64, 128, 32), device="cpu", backends=(), weight=torch.randn(64, 128))


def test_zeros_cases_and_rows_on_cpu():
    cases = sp.zeros_cases(sp.GemmShape(32, 64, 48), device="cpu", dtype=torch.float32)
    assert len(cases) == 2 and all(c.error <= 1e-5 for c in cases)
    assert "50% zeros" in cases[1].label and cases[0].flops == 2 * 32 * 64 * 48
    runs = measure_cases(cases, device="cpu", warmup_ms=1, measure_ms=3, progress=False)
    (row,) = sp.zeros_rows(cases, runs)
    assert row["gemm"] == "32x64x48" and row["speedup"] == pytest.approx(row["dense_ms"] / row["sparse_ms"])


def _fake_runs(medians_ms: dict[str, list[float]]) -> dict[str, list[bench.Measurement]]:
    def one(name, ms):
        stats = bench.Stats.of([ms])
        return bench.Measurement(name=name, backend="test", device="cuda", batch_size=1, latency_ms=stats,
                                 host_ms=stats, wall_ms_per_iter=ms, iterations=1, warmup_ms=0, timer="cuda-events")
    return {name: [one(name, ms) for ms in values] for name, values in medians_ms.items()}


def test_speedup_rows_pair_each_sparse_case_with_its_dense_orientation():
    def case(backend, form, gemm="g"):
        return Case(f"{gemm} {backend}, {form}", "fp16", lambda: None, 2_000_000_000,
                    params={"gemm": gemm, "form": form, "backend": backend})
    cases = [case("dense", "W @ X"), case("dense", "F.linear(x, W)"),
             case("cuSPARSELt", "W @ X"), case("cuSPARSELt", "F.linear(x, W)")]
    runs = _fake_runs({"g dense, W @ X": [2.0, 2.02], "g dense, F.linear(x, W)": [1.0, 1.01],
                       "g cuSPARSELt, W @ X": [1.0, 1.01], "g cuSPARSELt, F.linear(x, W)": [1.25, 1.26]})
    rows = {r["variant"]: r for r in sp.speedup_rows(cases, runs)}
    assert rows["cuSPARSELt, W @ X"]["speedup"] == pytest.approx(2.01 / 1.005)
    assert rows["cuSPARSELt, F.linear(x, W)"]["speedup"] == pytest.approx(1.005 / 1.255)
    assert rows["cuSPARSELt, W @ X"]["gflop"] == 2.0 and rows["cuSPARSELt, W @ X"]["significant"]
    best = sp.best_against_best(cases, runs, "g")     # fastest dense (linear) against fastest sparse (mm)
    assert best.label_a == "g dense, F.linear(x, W)" and best.label_b == "g cuSPARSELt, W @ X"
    assert best.speedup == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs a dense and a sparse case"):
        sp.best_against_best(cases[:2], runs, "g")


def test_speedup_plot_writes_png_and_csv(tmp_path):
    rows = [{"gemm": "a", "gflop": 1.0, "variant": "v", "speedup": 0.5},
            {"gemm": "b", "gflop": 100.0, "variant": "v", "speedup": 1.2}]
    png = sp.speedup_plot(rows, title="t", path=tmp_path / "fig", ylabel="x")
    assert png.exists() and (tmp_path / "fig.csv").read_text().startswith("gemm,gflop,variant,speedup")


# -- TensorRT's account, from the documented formats -------------------------------------------------

def test_documented_example_parses():
    log = trt_sparsity.parse_build_log(trt_sparsity.DOCUMENTED_EXAMPLE)
    assert log.reported and log.eligible == ("conv1", "conv2", "conv3") and log.picked == ("conv2", "conv3")
    assert log.eligible_not_picked == ("conv1",)


def test_bare_messages_from_the_recording_logger_parse():
    log = BuildLog()
    log.add("INFO", "Total Activation Memory: 7864832")
    log.add("INFO", "(Sparsity) Layers eligible for sparse math: /features/features.3/Conv + /features/features.5/Relu, "
                    "/features/features.7/Conv + /features/features.9/Relu")
    log.add("INFO", "(Sparsity) TRT inference plan picked sparse implementation for layers: "
                    "/features/features.7/Conv + /features/features.9/Relu")
    parsed = trt_sparsity.parse_build_log(text for _, text in log.records)
    assert parsed.eligible == ("/features/features.3/Conv + /features/features.5/Relu",
                               "/features/features.7/Conv + /features/features.9/Relu")
    assert parsed.eligible_not_picked == ("/features/features.3/Conv + /features/features.5/Relu",)


def test_an_empty_picked_list_and_a_log_without_sparsity_lines():
    # trtexec prints the second line with nothing after the colon when every dense kernel was faster
    text = ("[07/19/2022-11:58:20] [I] [TRT] (Sparsity) Layers eligible for sparse math: Conv_22, MatMul_51\n"
            "[07/19/2022-11:58:20] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers:\n")
    parsed = trt_sparsity.parse_build_log(text)
    assert parsed.reported and parsed.picked == () and parsed.eligible_not_picked == ("Conv_22", "MatMul_51")
    silent = trt_sparsity.parse_build_log(["[I] [TRT] Engine built in 31.2 sec."])
    assert not silent.reported and "no '(Sparsity)' messages" in silent.summary()


def test_repeated_messages_merge_without_duplicates():
    line = "(Sparsity) Layers eligible for sparse math: a, b"
    assert trt_sparsity.parse_build_log([line, "(Sparsity) Layers eligible for sparse math: b, c"]).eligible == ("a", "b", "c")


def _inspector_json(schema_key: str) -> str:
    """Two layers in the detailed --exportLayerInfo format of NVIDIA/TensorRT issue #4020 (10.x)."""
    def conv(name, tactic):
        return {"Name": name, "LayerType": "CaskConvolution",
                "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [64, 32, 8, 8],
                            "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
                "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [64, 64, 8, 8],
                             "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
                "ParameterType": "Convolution", "Kernel": [3, 3], "Weights": {"Type": "Half", "Count": 18432},
                "HasSparseWeights": 1, "HasDynamicFilter": 0, "Activation": "RELU", "TacticName": tactic,
                "StreamId": 0, "Metadata": f"[ONNX Layer: {name}]"}
    layers = [conv("conv2 + relu2", "sm80_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize64x64x64"),
              conv("conv3 + relu3", "sm80_xmma_fprop_sparse_conv_f16f16_f16f32_f32_nhwckrsc_nhwc_sptensor16x8x32"),
              {"Name": "reshape", "LayerType": "NoOp", "TacticValue": "0x0000000000000000", "StreamId": 0}]
    io = ["input", "output"] if schema_key == "Bindings" else [{"Name": "input", "IOMode": "kINPUT"}]
    return json.dumps({"Layers": layers, schema_key: io})


@pytest.mark.parametrize("schema_key", ["Bindings", "I/O Tensors"])
def test_inspector_tells_sparse_weights_from_sparse_kernels(schema_key):
    layers = trt_sparsity.layer_sparsity_from_json(_inspector_json(schema_key))
    assert [layer.name for layer in layers] == ["conv2 + relu2", "conv3 + relu3"]
    assert all(layer.has_sparse_weights for layer in layers)
    assert [layer.sparse_kernel for layer in layers] == [False, True]


def test_a_sparse_kernel_without_the_flag_is_still_listed():
    doc = {"Layers": [{"Name": "fc", "LayerType": "gemm", "TacticName": "sm90_xmma_gemm_f16f16_sptensor_nn"}],
           "I/O Tensors": []}
    (layer,) = trt_sparsity.layer_sparsity_from_json(doc)
    assert layer.has_sparse_weights is None and layer.sparse_kernel


# -- on a GPU with sparse tensor cores ----------------------------------------------------------------

@needs_sparse_gpu
def test_sparse_products_match_dense_on_gpu():
    status = sp.backend_status("cuda")
    assert set(status) == set(sp.BACKENDS)
    usable = [b for b, problem in status.items() if problem is None]
    assert usable, f"no semi-structured backend ran: {status}"
    cases, refused = sp.gemm_cases(sp.GemmShape(256, 512, 128), device="cuda", backends=usable)
    assert {c.params["backend"] for c in cases} == {"dense", *usable} and not refused
    assert all(c.error <= sp.FP16_TOLERANCE for c in cases)
    runs = measure_cases(cases, device="cuda", warmup_ms=2, measure_ms=5, progress=False)
    assert len(sp.speedup_rows(cases, runs)) == 2 * len(usable)


@needs_sparse_gpu
def test_model_layers_as_gemms_on_gpu():
    model = sp.export_sparse(sp.modelopt_sparsify(models.DigitsCNN(32)).model)
    layers = sp.conv_layer_gemms(model, ["features.3", "features.7"], torch.rand(16, 1, 8, 8), device="cuda")
    for name, shape, weight, cols, error in layers:
        assert error < 1e-4 and sp.is_2_4(weight) and cols.shape == (shape.m, shape.k)
        cases, _ = sp.gemm_cases(shape, device="cuda", backends=("cuSPARSELt",), weight=weight, x=cols, name=name)
        assert len(cases) == 4 and all(c.error <= sp.FP16_TOLERANCE for c in cases)
