"""common.builder and common.trt.builder_study (lab 10): the lab's models and references, the trade-off
arithmetic, torch.compile with Inductor's cache cold and warm, ONNX Runtime's levels, the timing-cache
file names, knob configs and the editable-timing-cache log parser. GPU tests need a CUDA GPU."""

import math
import os

import pytest
import torch

from common import bench, builder
from common import onnx as onnx_tools
from common.trt import BuildConfig, builder_study as bs

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_lab_models_are_seeded_and_sized_by_scale():
    mlp = builder.lab_model("mlp", "small")
    assert mlp.sample_shape == (256,) and mlp.batch == 64
    assert mlp.example().shape == (64, 256)
    assert torch.equal(mlp.example(), builder.lab_model("mlp", "small").example())
    same = builder.lab_model("mlp", "small").module
    assert all(torch.equal(a, b) for a, b in zip(mlp.module.parameters(), same.parameters()))
    cnn = builder.lab_model("convnet", "full")
    assert cnn.sample_shape == (3, 64, 64) and cnn.batch == 64
    deep = builder.lab_model("mlp", "small", depth=8)
    assert len(deep.module) == 16 and "8 x" in deep.description
    with pytest.raises(KeyError, match="mlp"):
        builder.lab_model("resnet", "small")


def test_reference_is_the_fp32_module_output():
    lab = builder.lab_model("convnet", "small")
    x = lab.example()
    with torch.inference_mode():
        torch.testing.assert_close(lab.reference(x), lab.module(x))
    assert lab.on("cpu", "fp32") is not lab.module   # a copy: the source model is never moved or cast


def test_break_even_and_verdict():
    assert builder.break_even_inferences(20.0, 0.5, 0.4) == pytest.approx(200_000)
    assert math.isinf(builder.break_even_inferences(5.0, 1.0, 1.0))
    assert math.isinf(builder.break_even_inferences(5.0, 1.0, 1.2))
    faster = bench.Comparison("a", "b", 2.0, 1.0, 1.0, 1.0)
    slower = bench.Comparison("a", "b", 1.0, 2.0, 1.0, 1.0)
    noise = bench.Comparison("a", "b", 1.00, 1.01, 5.0, 5.0)
    assert [builder.verdict(c) for c in (faster, slower, noise)] == ["faster", "slower", "noise"]


def test_checked_error_refuses_a_wrong_output():
    ref = torch.ones(4, 4)
    assert builder.checked_error(ref.clone(), ref, 1e-4, "ok") == 0.0
    with pytest.raises(AssertionError, match="timings would mean nothing"):
        builder.checked_error(ref * 1.1, ref, 1e-4, "wrong")


def test_fresh_inductor_cache_switches_the_folder_and_restores_it():
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with builder.fresh_inductor_cache():
        inside = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        assert inside != before and os.path.isdir(inside)
        assert os.environ["TRITON_CACHE_DIR"].startswith(inside)
    # back to the folder of before (Inductor may since have written its default into the variable)
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") != inside
    assert not os.path.exists(inside)   # deleted on the way out


def test_compile_cold_then_warm_on_cpu():
    lab = builder.LabModel("tiny", builder.mlp(32, depth=2), 8, (32,), "tiny MLP")
    x = lab.example()
    run = builder.compile_and_measure(lab, lab.on("cpu", "fp32"), x, lab.reference(x), "default", precision="fp32",
                                      stream=None, warm=True, passes=2, warmup_ms=1, measure_ms=5)
    assert run.cold_cache["fx_misses"] >= 1 and run.cold_cache["fx_hits"] == 0   # a fresh folder: nothing to hit
    assert run.warm_cache["fx_hits"] + run.warm_cache["aot_hits"] >= 1 and run.warm_cache["fx_misses"] == 0
    assert run.warm_s < run.cold_s and run.relative_error <= builder.TOLERANCE["fp32"]
    assert len(run.runs) == 2 and run.label == "torch.compile (default)"


def test_compile_refuses_wrong_outputs_and_cuda_graphs_on_cpu():
    lab = builder.LabModel("tiny", builder.mlp(16, depth=1), 4, (16,), "tiny MLP")
    x = lab.example()
    with pytest.raises(AssertionError, match="torch.compile"):
        builder.compile_and_measure(lab, lab.on("cpu", "fp32"), x, lab.reference(x) + 1.0, "default",
                                    precision="fp32", stream=None, warm=False, passes=1, warmup_ms=1, measure_ms=1)
    with pytest.raises(ValueError, match="GPU"):
        builder.compile_and_measure(lab, lab.module, x, lab.reference(x), "reduce-overhead", precision="fp32",
                                    stream=None)


def test_compile_study_rows_compare_against_eager():
    eager = [bench.Measurement("PyTorch eager", "", "cpu", 1, bench.Stats.of([m]), bench.Stats.of([m]), m, 1, 0.0,
                               "perf_counter") for m in (1.0, 1.02)]
    fast = [bench.Measurement("c", "", "cpu", 1, bench.Stats.of([m]), bench.Stats.of([m]), m, 1, 0.0, "perf_counter")
            for m in (0.5, 0.51)]
    run = builder.CompileRun("m", "default", 2.0, {}, 0.5, {}, 0.0, fast)
    study = builder.CompileStudy("m", "fp32", 0.0, eager, [run])
    base, row = study.rows()
    assert base["configuration"] == "PyTorch eager" and row["verdict"] == "faster"
    assert row["break_even"] == pytest.approx(builder.break_even_inferences(2.0, 1.01, 0.505))
    assert run.warm_speedup == 4.0 and study.run("default") is run
    with pytest.raises(KeyError, match="default"):
        study.run("max-autotune")


def test_ort_levels_check_outputs_and_count_ops(tmp_path):
    lab = builder.LabModel("tiny", builder.mlp(32, depth=2), 4, (32,), "tiny MLP")
    path = onnx_tools.export(lab.module, lab.example(), tmp_path / "tiny.onnx")
    study = builder.ort_level_study(path, lab, build_repeats=2, warmup_ms=1, measure_ms=5, out_dir=tmp_path / "opt")
    assert [r.level for r in study] == list(builder.ORT_LEVELS)
    assert all(len(r.build_s) == 2 and len(r.runs) == 2 for r in study)
    nodes = {r.level: r.nodes for r in study}
    assert nodes["ORT_DISABLE_ALL"].get("Erf") == 2 and nodes["ORT_ENABLE_EXTENDED"].get("Gelu") == 2
    rows = builder.ort_rows(study)
    assert rows[0]["verdict"] == "baseline" and rows[0]["break_even"] == 0.0
    assert sum(nodes["ORT_ENABLE_ALL"].values()) == rows[-1]["nodes"] < rows[0]["nodes"]
    with pytest.raises(ValueError, match="ORT_ENABLE_ALL"):
        builder.ort_options("ORT_ENABLE_EVERYTHING")


def test_tradeoff_rows_and_plots(tmp_path):
    rows = builder.tradeoff_rows("s", [("a", 1.0, 2.0), ("b", 10.0, 1.0)], baseline_ms=2.0)
    assert [r["relative_run_time"] for r in rows] == [1.0, 0.5]
    png = builder.tradeoff_plot(rows, title="t", path=tmp_path / "trade", show=False)
    assert png.exists() and png.with_suffix(".csv").exists()
    level_rows = [{"model": "m", "level": lv, "build_s": lv + 1.0, "latency_ms": 1.0 / (lv + 1)} for lv in range(6)]
    assert builder.level_plot(level_rows, x="level", title="t", path=tmp_path / "levels", show=False).exists()


# -- common.trt.builder_study: the parts that need no TensorRT ----------------------------------------------

def test_parse_autotuning_log_reads_keys_tables_and_choices():
    records = bs.parse_autotuning_log(bs.EXAMPLE_AUTOTUNING_LOG)
    assert [r.op for r in records] == ["gemm_0", "gemm_1"]
    first, second = records
    assert first.key == "0x00112233445566778899aabbccddeeff" and len(first.tactics) == 2
    assert first.selected_tactic.kernel == "kernel_alpha" and first.alternative().hash == "0x3c4d"
    assert second.selected == "0x7a8b" and second.selected_tactic.kernel == "kernel_delta"   # not the first row
    assert second.alternative().kernel == "kernel_gamma" and second.tactics[0].cost_ms == pytest.approx(0.02)


def test_parse_autotuning_log_ignores_unfinished_and_foreign_lines():
    lines = ["[TensorRT] some other message", "Autotuning op x(key: 0xabc):", "no table here",
             "Autotuning op y(key: 0xdef):", "tactic_id, cost(in ms), cost/fastest_cost, ...",
             "   1, 0.5, 1.0, 0.1, only_kernel, 0x1,", "end of table",
             "The selected tactic is (tactic hash, cost(in ms)):0x1, 0.5"]
    records = bs.parse_autotuning_log(lines)
    assert [r.op for r in records] == ["y"]          # x never said which tactic it chose
    assert records[0].alternative() is None          # one tactic: nothing to force


def test_timing_cache_file_names_the_version_and_gpu():
    a = bs.timing_cache_file("d", "mlp", "11.4.0.106", "NVIDIA H100 80GB HBM3")
    assert a.name == "mlp.trt-11.4.0.106.nvidia-h100-80gb-hbm3.timing-cache"
    assert a != bs.timing_cache_file("d", "mlp", "11.4.1", "NVIDIA H100 80GB HBM3")
    assert a != bs.timing_cache_file("d", "mlp", "11.4.0.106", "NVIDIA A100-SXM4-80GB")
    assert "/" not in bs.timing_cache_file("d", "a/b", "1", "x/y").name


def test_knob_configs_label_and_set_one_field():
    base = BuildConfig(builder_optimization_level=None)
    configs = bs.knob_configs(base, "builder_optimization_level", range(6))
    assert list(configs)[3] == "builder_optimization_level=3 (default)"
    assert [c.builder_optimization_level for c in configs.values()] == list(range(6))
    sources = bs.knob_configs(base, "tactic_sources", [frozenset(), frozenset({"JIT_CONVOLUTIONS"}),
                                                       bs.DEFAULTS["tactic_sources"]])
    assert list(sources) == ["tactic_sources=none", "tactic_sources=JIT_CONVOLUTIONS",
                             "tactic_sources=EDGE_MASK_CONVOLUTIONS+JIT_CONVOLUTIONS (default)"]
    assert bs.static_profile(torch.zeros(8, 3, 4, 4)).shapes["input"] == ((8, 3, 4, 4),) * 3


# -- GPU ----------------------------------------------------------------------------------------------

@needs_gpu
def test_compile_study_on_gpu_with_cuda_graphs():
    lab = builder.LabModel("tiny", builder.mlp(64, depth=2), 16, (64,), "tiny MLP")
    study = builder.compile_study(lab, ["default", "reduce-overhead"], device="cuda", precision="fp16",
                                  warm_modes=["default"], warmup_ms=5, measure_ms=20, progress=False)
    assert [r.mode for r in study.modes] == ["default", "reduce-overhead"] and len(study.eager) == 2
    assert study.run("default").warm_s is not None and study.run("reduce-overhead").warm_s is None
    assert all(r.runs[0].timer == "cuda-events" for r in study.modes)


# -- common.trt.builder_study's orchestration, with the TensorRT calls replaced ------------------------------

def _measurement(name, ms):
    stats = bench.Stats.of([ms])
    return bench.Measurement(name, "fake", "cuda", 1, stats, stats, ms, 1, 0.0, "cuda-events")


class _FakeRunner:
    closed = 0

    def close(self):
        _FakeRunner.closed += 1


@pytest.fixture
def fake_trt(monkeypatch):
    """build_checked and measure_engines without TensorRT: records what was built, times from a table."""
    from common.trt.logger import BuildLog

    built = []

    def build_checked(onnx_path, config, x, reference, *, model, label, verbose=False, **_):
        built.append((label, config, verbose))
        log = BuildLog()
        for line in bs.EXAMPLE_AUTOTUNING_LOG:
            log.add("VERBOSE", line)
        kernels = ["kernel_beta"] if label == "forced tactic" else ["kernel_alpha"]
        return bs.EngineResult(model, label, config, 1.0, 100, 0.0, kernels, log=log), _FakeRunner()

    def measure_engines(engines, *, batch_size, passes=2, **_):
        for result, runner in engines:
            result.runs = [_measurement(result.label, 1.0 + 0.01 * i) for i in range(passes)]
            runner.close()

    monkeypatch.setattr(bs, "build_checked", build_checked)
    monkeypatch.setattr(bs, "measure_engines", measure_engines)
    monkeypatch.setattr(bs, "timing_cache_entries", lambda path: 7)
    return built


def test_editable_cache_study_forces_the_fastest_other_tactic(fake_trt, monkeypatch, tmp_path):
    forced = []
    monkeypatch.setattr(bs, "force_tactic", lambda path, key, tactic_hash: forced.append((key, tactic_hash)))
    stale = tmp_path / "c.timing-cache"
    stale.write_bytes(b"old")
    study = bs.editable_cache_study("m.onnx", BuildConfig(), stale, torch.zeros(2, 4), torch.zeros(2, 4), model="m")
    assert not stale.exists()                                   # every study starts from an empty cache
    assert [label for label, _, _ in fake_trt] == ["builder's choice", "forced tactic"]
    assert all("EDITABLE_TIMING_CACHE" in config.extra_flags for _, config, _ in fake_trt)
    assert fake_trt[0][2] is True                               # the first build logs VERBOSE
    assert forced == [("0x00112233445566778899aabbccddeeff", "0x3c4d")]
    assert study["forced_kernel_in_engine"] and study["comparison"] is not None


def test_timing_cache_and_reuse_studies_build_what_they_say(fake_trt, tmp_path):
    cache = tmp_path / "m.timing-cache"
    cache.write_bytes(b"stale")
    study = bs.timing_cache_study("m.onnx", BuildConfig(), cache, torch.zeros(2, 4), torch.zeros(2, 4), model="m")
    assert not cache.exists() and study["entries"] == 7
    assert [r.label for r in (study["cold"], study["warm"])] == ["cold timing cache", "warm timing cache"]
    assert {config.timing_cache_path for _, config, _ in fake_trt} == {str(cache)}
    donor = tmp_path / "donor.timing-cache"
    donor.write_bytes(b"donor bytes")
    reuse = bs.reuse_study("deep.onnx", BuildConfig(), donor, tmp_path / "scratch", torch.zeros(2, 4),
                           torch.zeros(2, 4), model="deep")
    assert (tmp_path / "scratch" / "reused.timing-cache").read_bytes() == b"donor bytes"
    assert donor.read_bytes() == b"donor bytes" and reuse["donor_entries"] == 7
    assert [r.label for r in (reuse["empty"], reuse["reused"])] == ["empty timing cache",
                                                                  "another model's timing cache"]
