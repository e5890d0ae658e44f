"""Lab 10 (builder optimization): the lab's models and references, the trade-off arithmetic,
torch.compile with Inductor's cache cold and warm, the kernels each configuration runs, ONNX Runtime's
levels, the TensorRT study's orchestration with its TensorRT calls replaced, the trtexec commands, the
timing-cache plumbing that needs no TensorRT (common.trt.tactics), and every branch of the claims
(holds, does not hold, inconclusive, not applicable). GPU tests need a CUDA GPU."""

import dataclasses
import logging
import math
import os

import pytest
import torch

from common import bench, checks, report
from common import onnx as onnx_tools
from common.labs import lab10_builder as lab
from common.labs.lab10_builder import kernels_chosen, trt_study
from common.trt import BuildConfig, tactics
from common.trt.logger import BuildLog

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_lab_models_are_seeded_and_sized_by_scale():
    mlp = lab.lab_model("mlp", "small")
    assert mlp.sample_shape == (256,) and mlp.batch == 64
    assert mlp.example().shape == (64, 256)
    assert torch.equal(mlp.example(), lab.lab_model("mlp", "small").example())
    same = lab.lab_model("mlp", "small").module
    assert all(torch.equal(a, b) for a, b in zip(mlp.module.parameters(), same.parameters()))
    cnn = lab.lab_model("convnet", "full")
    assert cnn.sample_shape == (3, 64, 64) and cnn.batch == 64
    deep = lab.lab_model("mlp", "small", depth=8)
    assert len(deep.module) == 16 and "8 x" in deep.description
    with pytest.raises(KeyError, match="mlp"):
        lab.lab_model("resnet", "small")


def test_a_wrong_scale_names_the_allowed_values():
    with pytest.raises(ValueError, match="'full', 'small'"):
        lab.lab_model("mlp", "ful")
    with pytest.raises(ValueError, match="'full', 'small'"):
        lab.sizes("mlp", "large")
    assert lab.sizes("mlp", "small")["depth"] == lab.SIZES["small"]["mlp"]["depth"] == 4


def test_reference_is_the_fp32_module_output():
    model = lab.lab_model("convnet", "small")
    x = model.example()
    with torch.inference_mode():
        torch.testing.assert_close(model.reference(x), model.module(x))
    assert model.on("cpu", "fp32") is not model.module   # a copy: the source model is never moved or cast


def test_break_even_and_verdict():
    assert lab.break_even_inferences(20.0, 0.5, 0.4) == pytest.approx(200_000)
    assert math.isinf(lab.break_even_inferences(5.0, 1.0, 1.0))
    assert math.isinf(lab.break_even_inferences(5.0, 1.0, 1.2))
    faster = bench.Comparison("a", "b", 2.0, 1.0, 1.0, 1.0)
    slower = bench.Comparison("a", "b", 1.0, 2.0, 1.0, 1.0)
    noise = bench.Comparison("a", "b", 1.00, 1.01, 5.0, 5.0)
    assert [lab.verdict(c) for c in (faster, slower, noise)] == ["faster", "slower", "noise"]


def test_compile_modes_run_max_autotune_on_the_mlp_only_on_a_gpu():
    assert lab.compile_modes(True) == {"mlp": ["default", "reduce-overhead", "max-autotune-no-cudagraphs"],
                                       "convnet": ["default"]}
    assert lab.compile_modes(False) == {name: ["default", "max-autotune-no-cudagraphs"] for name in ("mlp", "convnet")}


def test_compile_cold_then_warm_on_cpu():
    model = lab.LabModel("tiny", lab.mlp(32, depth=2), 8, (32,), "tiny MLP")
    x = model.example()
    run = lab.compile_and_measure(model, model.on("cpu", "fp32"), x, model.reference(x), "default", precision="fp32",
                                  stream=None, warm=True, passes=2, warmup_ms=1, measure_ms=5)
    assert run.cold_cache["fx_misses"] >= 1 and run.cold_cache["fx_hits"] == 0   # a fresh folder: nothing to hit
    assert run.warm_cache["fx_hits"] + run.warm_cache["aot_hits"] >= 1 and run.warm_cache["fx_misses"] == 0
    assert run.warm_s < run.cold_s and run.relative_error <= checks.tolerance("fp32", "model")
    assert len(run.runs) == 2 and len(run.eager_runs) == 2 and run.label == "torch.compile (default)"
    assert run.eager_runs[0].name == "PyTorch eager" and run.skipped == 0
    assert run.kernels.device == "cpu" and run.kernels.kernels and run.kernels.label == "tiny: torch.compile (default)"


def test_compile_refuses_wrong_outputs_and_cuda_graphs_on_cpu():
    model = lab.LabModel("tiny", lab.mlp(16, depth=1), 4, (16,), "tiny MLP")
    x = model.example()
    with pytest.raises(checks.VerificationError, match="torch.compile"):
        lab.compile_and_measure(model, model.on("cpu", "fp32"), x, model.reference(x) + 1.0, "default",
                                precision="fp32", stream=None, warm=False, passes=1, warmup_ms=1, measure_ms=1)
    with pytest.raises(ValueError, match="GPU"):
        lab.compile_and_measure(model, model.module, x, model.reference(x), "reduce-overhead", precision="fp32",
                                stream=None)


def test_warm_up_compiles_the_tiny_models_in_a_throwaway_cache():
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    assert lab.warm_up_compiler("cpu", "fp32") > 0
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == before


def _measurement(name, ms, device="cpu", kernel_ms=None):
    stats = bench.Stats.of([ms])
    kernel = None if kernel_ms is None else bench.KernelTime(kernel_ms, kernel_ms, 0.0, 4, 5)
    return bench.Measurement(name, "fake", device, 1, stats, stats, ms, 1, 0.0, "perf_counter", kernel=kernel)


def _runs(name, *medians):
    return [_measurement(name, ms) for ms in medians]


def _gpu_runs(name, *medians, kernel=None):
    """CUDA runs with event medians and (per pass) kernel times (the same as the events if not given)."""
    kernel = kernel or medians
    return [_measurement(name, ms, "cuda", k) for ms, k in zip(medians, kernel)]


def test_compile_study_rows_compare_against_eager():
    run = lab.CompileRun("m", "default", 2.0, {}, 0.5, {}, 0.0, _runs("c", 0.5, 0.51))
    study = lab.CompileStudy("m", "fp32", 0.0, _runs("PyTorch eager", 1.0, 1.02), [run])
    base, row = study.rows()
    assert base["configuration"] == "PyTorch eager" and row["verdict"] == "faster" and row["regime"] == "cpu"
    assert row["break_even"] == pytest.approx(lab.break_even_inferences(2.0, 1.01, 0.505))
    assert math.isnan(row["kernel_speedup"]) and row["interval"] == "1.96-2.04"
    assert run.warm_speedup == 4.0 and study.run("default") is run
    assert study.compare("eager", "default").speedup == pytest.approx(1.01 / 0.505)
    assert study.on_device("eager", "default").on == "event"       # no kernel time on a CPU
    with pytest.raises(KeyError, match="default"):
        study.run("max-autotune")


def test_compile_study_rows_use_the_eager_passes_interleaved_with_each_mode():
    eager_a, eager_b = _gpu_runs("PyTorch eager", 1.0, 1.0), _gpu_runs("PyTorch eager", 2.0, 2.0)
    a = lab.CompileRun("m", "default", 1.0, {}, None, None, 0.0, _gpu_runs("a", 0.5, 0.5, kernel=(0.4, 0.4)), eager_a)
    b = lab.CompileRun("m", "reduce-overhead", 1.0, {}, None, None, 0.0, _gpu_runs("b", 1.0, 1.0), eager_b)
    study = lab.CompileStudy("m", "fp16", 0.0, eager_a + eager_b, [a, b])
    rows = {r["configuration"]: r for r in study.rows()}
    assert rows["torch.compile (default)"]["speedup"] == pytest.approx(2.0)
    assert rows["torch.compile (default)"]["kernel_speedup"] == pytest.approx(2.5)
    assert rows["torch.compile (reduce-overhead)"]["speedup"] == pytest.approx(2.0)   # against its own eager passes
    assert rows["torch.compile (default)"]["regime"] == "device-bound"
    assert study.on_device("eager", "default").on == "kernel"


def test_cache_and_cold_warm_rows_skip_modes_compiled_once():
    warm = lab.CompileRun("m", "default", 2.0, {"fx_hits": 0, "fx_misses": 3, "aot_hits": 0}, 0.5,
                          {"fx_hits": 3, "fx_misses": 0, "aot_hits": 1}, 0.0, [])
    once = lab.CompileRun("m", "reduce-overhead", 3.0, {}, None, None, 0.0, [])
    studies = {"m": lab.CompileStudy("m", "fp32", 0.0, [], [warm, once])}
    (row,) = lab.cache_rows(studies)
    assert row["cold: fx hits/misses"] == "0/3" and row["warm: fx hits/misses"] == "3/0" and row["cold/warm"] == 4.0
    assert lab.cold_warm_rows(studies) == [{"compile": "m default\ncold", "seconds": 2.0},
                                           {"compile": "m default\nwarm", "seconds": 0.5}]


def test_ort_levels_check_outputs_and_count_ops(tmp_path):
    model = lab.LabModel("tiny", lab.mlp(32, depth=2), 4, (32,), "tiny MLP")
    path = onnx_tools.export(model.module, model.example(), tmp_path / "tiny.onnx")
    study = lab.ort_level_study(path, model, build_repeats=2, warmup_ms=1, measure_ms=5, out_dir=tmp_path / "opt")
    assert [r.level for r in study] == list(lab.ORT_LEVELS)
    assert all(len(r.build_s) == 2 and len(r.runs) == bench.PASSES for r in study)
    nodes = {r.level: r.nodes for r in study}
    assert nodes["ORT_DISABLE_ALL"].get("Erf") == 2 and nodes["ORT_ENABLE_EXTENDED"].get("Gelu") == 2
    assert lab.gelu_fused(study, 2) and not lab.gelu_fused(study, 3)
    rows = lab.ort_rows(study)
    assert rows[0]["verdict"] == "baseline" and rows[0]["break_even"] == 0.0
    assert all(r["speedup_lo"] <= r["speedup"] <= r["speedup_hi"] for r in rows)
    assert sum(nodes["ORT_ENABLE_ALL"].values()) == rows[-1]["nodes"] < rows[0]["nodes"]
    with pytest.raises(ValueError, match="level must be one of"):
        lab.ort_level_study(path, model, levels=("ORT_ENABLE_EVERYTHING",), out_dir=tmp_path / "opt")


def test_tradeoff_rows_and_plots(tmp_path):
    rows = lab.tradeoff_rows("s", [("a", 1.0, 2.0), ("b", 10.0, 1.0)], baseline_ms=2.0)
    assert [r["relative_run_time"] for r in rows] == [1.0, 0.5]
    png = lab.tradeoff_plot(rows, title="t", path=tmp_path / "trade", show=False)
    assert png.exists() and png.with_suffix(".csv").exists()
    level_rows = [{"model": "m", "level": lv, "build_s": lv + 1.0, "latency_ms": 1.0 / (lv + 1)} for lv in range(6)]
    assert lab.level_plot(level_rows, x="level", title="t", path=tmp_path / "levels", show=False).exists()


def test_all_tradeoff_rows_one_series_per_compiler_and_model():
    study = lab.CompileStudy("mlp", "fp32", 0.0, _runs("eager", 2.0, 2.0),
                             [lab.CompileRun("mlp", "max-autotune-no-cudagraphs", 9.0, {}, None, None, 0.0,
                                             _runs("c", 1.0, 1.0))])
    ort = [lab.OrtLevelRun("mlp", level, [0.01], {}, 0.0, _runs(level, ms, ms))
           for level, ms in (("ORT_DISABLE_ALL", 4.0), ("ORT_ENABLE_ALL", 2.0))]
    rows = lab.all_tradeoff_rows({"mlp": study}, {"mlp": ort}, {}, "cpu")
    assert [(r["series"], r["config"], r["relative_run_time"]) for r in rows] == [
        ("torch.compile, mlp (cpu)", "max-autotune", 0.5),
        ("ONNX Runtime, mlp (CPU)", "disable all", 1.0), ("ONNX Runtime, mlp (CPU)", "all", 0.5)]


# -- common.trt.tactics and the parts of the TensorRT study that need no TensorRT ---------------------------

def test_parse_autotuning_log_reads_keys_tables_and_choices():
    records = tactics.parse_autotuning_log(tactics.EXAMPLE_AUTOTUNING_LOG)
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
    records = tactics.parse_autotuning_log(lines)
    assert [r.op for r in records] == ["y"]          # x never said which tactic it chose
    assert records[0].alternative() is None          # one tactic: nothing to force


def test_timing_cache_file_names_the_version_and_gpu():
    a = tactics.timing_cache_file("d", "mlp", "11.4.0.106", "NVIDIA H100 80GB HBM3")
    assert a.name == "mlp.trt-11.4.0.106.nvidia-h100-80gb-hbm3.timing-cache"
    assert a != tactics.timing_cache_file("d", "mlp", "11.4.1", "NVIDIA H100 80GB HBM3")
    assert a != tactics.timing_cache_file("d", "mlp", "11.4.0.106", "NVIDIA A100-SXM4-80GB")
    assert "/" not in tactics.timing_cache_file("d", "a/b", "1", "x/y").name


def test_knob_configs_label_and_set_one_field():
    base = BuildConfig(builder_optimization_level=None)
    configs = lab.knob_configs(base, "builder_optimization_level", range(6))
    assert list(configs)[3] == "builder_optimization_level=3 (default)"
    assert [c.builder_optimization_level for c in configs.values()] == list(range(6))
    sources = lab.knob_configs(base, "tactic_sources", [frozenset(), frozenset({"JIT_CONVOLUTIONS"}),
                                                        lab.DEFAULTS["tactic_sources"]])
    assert list(sources) == ["tactic_sources=none", "tactic_sources=JIT_CONVOLUTIONS",
                             "tactic_sources=EDGE_MASK_CONVOLUTIONS+JIT_CONVOLUTIONS (default)"]
    assert lab.static_profile(torch.zeros(8, 3, 4, 4)).shapes["input"] == ((8, 3, 4, 4),) * 3
    assert lab.static_config(torch.zeros(8, 3, 4, 4)).profiles == (lab.static_profile(torch.zeros(8, 3, 4, 4)),)
    assert lab.KNOB_VALUES["tactic_sources"][0] == lab.DEFAULTS["tactic_sources"]


def test_cache_key_checks_hold_for_two_models(tmp_path):
    paths = {name: onnx_tools.export(lab.mlp(8, depth=depth), torch.zeros(2, 8), tmp_path / f"{name}.onnx")
             for name, depth in (("mlp", 1), ("convnet", 2))}
    statements = lab.cache_key_checks(paths, (8,))
    assert [s for s, _ in statements][:2] == ["same model, settings, TensorRT and GPU -> same key",
                                              "another TensorRT version -> another key"]
    assert len(statements) == 6 and all(holds for _, holds in statements)


# -- the TensorRT study's orchestration, with the TensorRT calls replaced -----------------------------------

class _FakeRunner:
    closed = 0

    def close(self):
        _FakeRunner.closed += 1


@pytest.fixture
def fake_trt(monkeypatch):
    """build_checked and measure_engines without TensorRT: records what was built, times from a table."""
    built = []

    def build_checked(onnx_path, config, x, reference, *, model, label, verbose=False, **_):
        built.append((label, config, verbose))
        log = BuildLog()
        for line in tactics.EXAMPLE_AUTOTUNING_LOG:
            log.add("VERBOSE", line)
        kernels = ["kernel_beta"] if label == "forced tactic" else ["kernel_alpha"]
        return lab.EngineResult(model, label, config, 1.0, 100, 0.0, kernels, log=log), _FakeRunner()

    def measure_engines(engines, *, batch_size, passes=2, **_):
        for result, runner in engines:
            result.runs = [_measurement(result.label, 1.0 + 0.01 * i, "cuda") for i in range(passes)]
            runner.close()

    monkeypatch.setattr(trt_study, "build_checked", build_checked)
    monkeypatch.setattr(trt_study, "measure_engines", measure_engines)
    monkeypatch.setattr(trt_study, "timing_cache_entries", lambda path: 7)
    return built


def test_editable_cache_study_forces_the_fastest_other_tactic(fake_trt, monkeypatch, tmp_path):
    forced = []
    monkeypatch.setattr(trt_study, "force_tactic", lambda path, key, tactic_hash: forced.append((key, tactic_hash)))
    stale = tmp_path / "c.timing-cache"
    stale.write_bytes(b"old")
    study = lab.editable_cache_study("m.onnx", BuildConfig(), stale, torch.zeros(2, 4), torch.zeros(2, 4), model="m")
    assert not stale.exists()                                   # every study starts from an empty cache
    assert [label for label, _, _ in fake_trt] == ["builder's choice", "forced tactic"]
    assert all("EDITABLE_TIMING_CACHE" in config.extra_flags for _, config, _ in fake_trt)
    assert fake_trt[0][2] is True                               # the first build logs VERBOSE
    assert forced == [("0x00112233445566778899aabbccddeeff", "0x3c4d")]
    assert study["forced_kernel_in_engine"] and study["comparison"] is not None


def test_timing_cache_and_reuse_studies_build_what_they_say(fake_trt, tmp_path):
    cache = tmp_path / "m.timing-cache"
    cache.write_bytes(b"stale")
    study = lab.timing_cache_study("m.onnx", BuildConfig(), cache, torch.zeros(2, 4), torch.zeros(2, 4), model="m")
    assert not cache.exists() and study["entries"] == 7
    assert [r.label for r in (study["cold"], study["warm"])] == ["cold timing cache", "warm timing cache"]
    assert {config.timing_cache_path for _, config, _ in fake_trt} == {str(cache)}
    donor = tmp_path / "donor.timing-cache"
    donor.write_bytes(b"donor bytes")
    reuse = lab.reuse_study("deep.onnx", BuildConfig(), donor, tmp_path / "scratch", torch.zeros(2, 4),
                            torch.zeros(2, 4), model="deep")
    assert (tmp_path / "scratch" / "reused.timing-cache").read_bytes() == b"donor bytes"
    assert donor.read_bytes() == b"donor bytes" and reuse["donor_entries"] == 7
    assert [r.label for r in (reuse["empty"], reuse["reused"])] == ["empty timing cache",
                                                                  "another model's timing cache"]


# -- the kernels each configuration runs, and quiet autotuning -------------------------------------------

def test_kernel_kind_names_library_generated_and_pytorch_kernels():
    assert lab.kernel_kind("nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_TNT") == lab.LIBRARY
    assert lab.kernel_kind("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64") == lab.LIBRARY
    assert lab.kernel_kind("triton_tem_fused_addmm_gelu_0") == lab.GENERATED_GEMM
    assert lab.kernel_kind("triton_mm_18") == lab.GENERATED_GEMM
    assert lab.kernel_kind("triton_poi_fused_addmm_gelu_1") == lab.GENERATED
    assert lab.kernel_kind("void at::native::vectorized_elementwise_kernel<4, GeluCUDAKernelImpl>") == \
        kernels_chosen.ELEMENTWISE
    assert lab.kernel_kind("aten::addmm") == lab.LIBRARY and lab.kernel_kind("aten::gelu") == kernels_chosen.ELEMENTWISE
    assert lab.kernel_kind("Memcpy DtoD (Device -> Device)") == kernels_chosen.COPY
    assert lab.kernel_kind("something else") == kernels_chosen.OTHER


def test_aggregate_ranks_kernels_per_iteration_and_shares():
    profile = lab.aggregate("eager", "cuda", [("nvjet_a", 30.0), ("gelu elementwise", 5.0), ("nvjet_a", 30.0),
                                              ("gelu elementwise", 5.0)], iterations=2)
    assert [k["name"] for k in profile.kernels] == ["nvjet_a", "gelu elementwise"]
    assert profile.kernels[0]["us_per_iter"] == 30.0 and profile.kernels[0]["calls"] == 1.0
    assert profile.total_us == 35.0 and profile.share_of(lab.LIBRARY) == pytest.approx(100 * 30 / 35)
    assert profile.gemm_kind() == lab.LIBRARY
    tuned = lab.aggregate("max-autotune", "cuda", [("triton_tem_fused_0", 20.0), ("nvjet_a", 10.0)], 1)
    assert tuned.gemm_kind() == "both" and lab.aggregate("x", "cuda", [("triton_poi_0", 1.0)], 1).gemm_kind() == "none"
    (summary,) = lab.gemm_summary([tuned])
    assert summary["generated GEMM %"] == pytest.approx(200 / 3) and summary["other %"] == pytest.approx(0)
    rows = lab.kernel_rows([profile, tuned], top=1)
    assert [(r["configuration"], r["kernel"]) for r in rows] == [("eager", "nvjet_a"), ("max-autotune", "triton_tem_fused_0")]
    with pytest.raises(ValueError, match="iterations"):
        lab.aggregate("x", "cuda", [], 0)


def test_short_name_cuts_with_a_visible_ellipsis():
    assert lab.short_name("abc", 5) == "abc"
    assert lab.short_name("abcdefgh", 5) == "abcd…"


def test_profile_kernels_on_cpu_lists_operators():
    model = lab.mlp(16, depth=1)
    x = torch.zeros(4, 16)
    profile = lab.profile_kernels(lambda: model(x), label="eager", device="cpu", iterations=2)
    names = [k["name"] for k in profile.kernels]
    assert profile.device == "cpu" and any("addmm" in n or "linear" in n for n in names)


def test_quiet_autotuning_collects_errors_and_restores_the_loggers():
    from torch._inductor import select_algorithm

    logger = logging.getLogger(kernels_chosen.AUTOTUNE_LOGGERS[0])
    before = (logger.propagate, logger.level, list(logger.handlers), select_algorithm.PRINT_AUTOTUNE)
    with lab.quiet_autotuning() as messages:
        assert select_algorithm.PRINT_AUTOTUNE is False
        logger.error("Runtime error during autotuning: \n%s. \nIgnoring this choice.", "out of resource")
        logger.debug("not collected")
    assert (logger.propagate, logger.level, list(logger.handlers), select_algorithm.PRINT_AUTOTUNE) == before
    assert lab.skipped_candidates(messages) == 1 and len(messages) == 1
    assert "1 candidate kernel could not run" in lab.skipped_text({"mlp max-autotune": 1})
    assert lab.skipped_text({"mlp default": 0}) == "no autotuning candidate failed"


# -- trtexec -----------------------------------------------------------------------------------------

def test_planned_trtexec_commands_cover_every_engine_and_knob():
    sections = lab.planned_trtexec("small")
    lines = [line for section in sections.values() for line in section]
    assert len(sections["builder_optimization_level 0-5"]) == 12
    assert len(sections["tactic knobs (convnet)"]) == sum(len(v) for v in lab.KNOB_VALUES.values())
    for flag in ("--builderOptimizationLevel=5", "--timingCacheFile=mlp.timing-cache", "--avgTiming=8",
                 "--maxTactics=1", "--tilingOptimizationLevel=3", "--tacticSources=-EDGE_MASK_CONVOLUTIONS,"
                 "-JIT_CONVOLUTIONS", "--minShapes=input:64x256"):
        assert any(flag in line for line in lines), flag
    assert "not expressible in trtexec: BuilderFlag.EDITABLE_TIMING_CACHE" in sections["editable timing cache"][0]
    assert not any("/" in line.split("--onnx=")[1].split()[0] for line in lines)   # file names, no machine paths


def test_engine_trtexec_prints_each_engine_with_its_own_config():
    config = dataclasses.replace(lab.static_config((8, 16)), builder_optimization_level=2,
                                 timing_cache_path="/somewhere/m.timing-cache")
    result = lab.EngineResult("m", "level 2", config, 1.0, 1, 0.0)
    (line,) = lab.engine_trtexec("/a/b/m.onnx", [result])
    assert line.startswith("level 2: trtexec --onnx=m.onnx ") and "--timingCacheFile=m.timing-cache" in line
    assert "--builderOptimizationLevel=2" in line


# -- the claims ------------------------------------------------------------------------------------------

def _run(model, mode, medians, cold_s, warm_s=None, warm_cache=None, kernel=None, eager=None, kernels=None):
    return lab.CompileRun(model, mode, cold_s, {"fx_hits": 0, "fx_misses": 1, "aot_hits": 0}, warm_s, warm_cache, 0.0,
                          _gpu_runs(f"torch.compile ({mode})", *medians, kernel=kernel),
                          eager or _gpu_runs("PyTorch eager", 1.0, 1.01), kernels)


SERVED = {"fx_hits": 2, "fx_misses": 0, "aot_hits": 1}
LIBRARY_GEMMS = lab.aggregate("default", "cuda", [("nvjet_a", 30.0), ("triton_poi_fused_0", 5.0)], 1)
TRITON_GEMMS = lab.aggregate("default", "cuda", [("triton_tem_fused_0", 30.0), ("triton_poi_fused_0", 5.0)], 1)


def _studies(*, cnn_default, mlp_default, mlp_autotune, autotune_cold_s, warm_s, warm_cache=SERVED,
             graphs=(0.5, 0.505), kernels=LIBRARY_GEMMS, cnn_kernel=None):
    cnn = lab.CompileStudy("convnet", "fp16", 0.0, _gpu_runs("PyTorch eager", 1.0, 1.01),
                           [_run("convnet", "default", cnn_default, 2.0, warm_s, warm_cache, kernel=cnn_kernel)])
    modes = [_run("mlp", "default", mlp_default, 2.0, warm_s, warm_cache, kernels=kernels),
             _run("mlp", "max-autotune-no-cudagraphs", mlp_autotune, autotune_cold_s, 1.0, warm_cache)]
    if graphs is not None:
        modes.append(_run("mlp", "reduce-overhead", graphs, 2.0))
    mlp = lab.CompileStudy("mlp", "fp16", 0.0, _gpu_runs("PyTorch eager", 1.0, 1.01), modes)
    return {"mlp": mlp, "convnet": cnn}


def _by_claim(lab_report):
    return {c.claim: c for c in lab_report.claims}


def _compile_statuses(result):
    by = _by_claim(result)
    return {key: by[text] for key, text in lab.COMPILE_CLAIMS.items()}


def test_compile_claims_hold():
    studies = _studies(cnn_default=(0.5, 0.505), mlp_default=(0.98, 0.99), mlp_autotune=(0.97, 0.98),
                       autotune_cold_s=10.0, warm_s=0.5)
    result = lab.compile_claims(studies)
    assert result.lab == "10_builder" and len(result.claims) == 8
    assert all(c.status == report.HOLDS for c in result.claims), result.table()
    by = _compile_statuses(result)
    assert by["fusion"].measured == "2.00x [1.98x, 2.02x]" and "judged on kernel time over 2 passes" in by["fusion"].why
    assert by["library"].measured == "86% of its kernel time in library kernels"
    assert by["search_cost"].measured == "5.0x" and by["search_cost"].why == "2.0 s -> 10.0 s"
    assert "separate blocks" in by["search_gain"].why and "separate blocks" in by["host_pace"].why
    assert result.claims[5].why == "2.00 s -> 0.50 s" and result.claims[-1].why == "3 warm compiles"


def test_compile_claims_fail():
    studies = _studies(cnn_default=(1.5, 1.51), mlp_default=(0.5, 0.505), mlp_autotune=(1.0, 1.01),
                       autotune_cold_s=3.0, warm_s=1.5, warm_cache={"fx_hits": 1, "fx_misses": 1, "aot_hits": 0},
                       graphs=(1.0, 1.01), kernels=TRITON_GEMMS)
    claims = lab.compile_claims(studies).claims
    assert all(c.status == report.FAILS for c in claims), [c.claim for c in claims if c.status != report.FAILS]
    assert all(c.why for c in claims)
    by = _compile_statuses(lab.compile_claims(studies))
    assert by["library"].why == f"GEMMs run by: {lab.GENERATED_GEMM}" and by["search_gain"].measured.startswith("0.50x")
    assert claims[-1].why == "missed: mlp default, mlp max-autotune-no-cudagraphs, convnet default"


def test_compile_claims_inconclusive_inside_the_noise_and_judged_on_kernel_time():
    # the CNN's events say 2x, its kernels are as slow as eager's: fusion is judged on the kernels
    studies = _studies(cnn_default=(0.5, 0.505), mlp_default=(0.3, 1.5), mlp_autotune=(0.4, 1.6),
                       autotune_cold_s=10.0, warm_s=0.5, cnn_kernel=(0.9, 1.1), graphs=(0.2, 1.6))
    by = _compile_statuses(lab.compile_claims(studies))
    assert by["fusion"].status == report.INCONCLUSIVE and "straddles 1.00x" in by["fusion"].why
    assert by["search_gain"].status == report.INCONCLUSIVE and by["host_pace"].status == report.INCONCLUSIVE


def test_compile_claims_on_a_cpu():
    eager = _runs("PyTorch eager", 1.0, 1.01)
    cpu_run = lambda mode, medians, cold: lab.CompileRun(  # noqa: E731
        "m", mode, cold, {}, 0.5, SERVED, 0.0, _runs(mode, *medians), eager,
        lab.aggregate(mode, "cpu", [("aten::addmm", 10.0)], 1))
    studies = {"mlp": lab.CompileStudy("mlp", "fp32", 0.0, eager, [cpu_run("default", (0.9, 0.91), 1.0),
                                                                     cpu_run("max-autotune-no-cudagraphs", (0.9, 0.91), 5.0)]),
               "convnet": lab.CompileStudy("convnet", "fp32", 0.0, eager, [cpu_run("default", (0.5, 0.51), 1.0)])}
    by = _compile_statuses(lab.compile_claims(studies))
    assert by["library"].status == report.NOT_APPLICABLE and by["host_pace"].status == report.NOT_APPLICABLE
    assert by["fusion"].status == report.HOLDS and "no kernel time on a CPU" in by["fusion"].why
    assert "judged on event time" in by["search_gain"].why


def _ort_row(model, level, speedup, verdict, build_ms, break_even, interval=None):
    lo, hi = interval or (speedup * 0.98, speedup * 1.02)
    return {"model": model, "level": level, "speedup": speedup, "speedup_lo": lo, "speedup_hi": hi,
            "verdict": verdict, "build_ms": build_ms, "break_even": break_even}


def test_ort_claims_hold_fail_and_inconclusive():
    good = [_ort_row("convnet", "ORT_DISABLE_ALL", 1.0, "baseline", 20.0, 0.0),
            _ort_row("convnet", "ORT_ENABLE_ALL", 1.8, "faster", 40.0, 250.0),
            _ort_row("mlp", "ORT_ENABLE_EXTENDED", 1.3, "faster", 30.0, 10.0)]
    claims = lab.ort_claims(good).claims
    assert [c.status for c in claims] == [report.HOLDS] * 4
    assert [c.measured for c in claims] == ["1.80x [1.76x, 1.84x]", "1.30x [1.27x, 1.33x]", "40.0 ms", "250 inferences"]
    assert claims[0].why == "CPU time, interleaved passes"
    bad = [_ort_row("convnet", "ORT_ENABLE_ALL", 1.01, "noise", 1500.0, math.inf, interval=(0.9, 1.1)),
           _ort_row("mlp", "ORT_ENABLE_EXTENDED", 0.9, "slower", 30.0, math.inf)]
    claims = lab.ort_claims(bad).claims
    assert [c.status for c in claims] == [report.INCONCLUSIVE] + [report.FAILS] * 3
    assert [c.measured for c in claims] == ["1.01x [0.90x, 1.10x]", "0.90x [0.88x, 0.92x]", "1500.0 ms", "inf inferences"]
    assert claims[3].why == "no speed-up outside the noise: it never pays back"


def _engine(model, label, config, build_s, medians):
    return lab.EngineResult(model, label, config, build_s, 2**20, 1e-3, runs=_gpu_runs(label, *medians))


def _trt_results(*, level0, level5_build, level4, warm_build, reuse_build, forced, knob_builds):
    base = BuildConfig()
    levels = {}
    for name in ("mlp", "convnet"):
        configs = lab.knob_configs(base, "builder_optimization_level", range(6))
        medians = {0: level0, 3: (1.0, 1.01), 4: level4, 5: level4}
        builds = {0: 1.0, 5: level5_build}
        levels[name] = [_engine(name, label, config, builds.get(lv, 2.0), medians.get(lv, (1.0, 1.01)))
                        for lv, (label, config) in enumerate(configs.items())]
    cache = {name: {"cold": _engine(name, "cold", base, 4.0, (1.0, 1.0)),
                    "warm": _engine(name, "warm", base, warm_build, (1.0, 1.0))} for name in ("mlp", "convnet")}
    reuse = {"empty": _engine("deep", "empty", base, 4.0, (1, 1)),
             "reused": _engine("deep", "reused", base, reuse_build, (1, 1)), "donor_entries": 12}
    editable = {"forced": None}
    if forced is not None:
        in_engine, forced_medians = forced
        editable = {"original": _engine("mlp", "builder's choice", base, 1.0, (1.0, 1.01)),
                    "forced": _engine("mlp", "forced tactic", base, 1.0, forced_medians), "forced_kernel_in_engine": in_engine,
                    "tactic": tactics.Tactic("0x1", "sm90_xmma_gemm_f16f16_f32_tn_n_tilesize128x128x64_stage3", 0.1),
                    "comparison": bench.compare(_gpu_runs("chosen", 1.0, 1.01), _gpu_runs("forced", *forced_medians),
                                                on="kernel")}
    knobs = {name: [_engine("convnet", label, config, knob_builds[name][i], (1.0, 1.01))
                    for i, (label, config) in enumerate(lab.knob_configs(base, name, values).items())]
             for name, values in lab.KNOB_VALUES.items()}
    return lab.TensorRTResults(levels, cache, reuse, editable, knobs)


#: Build seconds per knob value, in KNOB_VALUES order: the expected trade, and its reverse.
EXPECTED_KNOB_BUILDS = {"avg_timing_iterations": [2.0, 6.0], "max_num_tactics": [1.0, 1.5, 4.0],
                        "tiling_optimization_level": [2.0, 3.0, 4.0, 8.0], "tactic_sources": [6.0, 5.0, 3.0, 2.0]}
REVERSED_KNOB_BUILDS = {"avg_timing_iterations": [6.0, 2.0], "max_num_tactics": [4.0, 1.5, 1.0],
                        "tiling_optimization_level": [8.0, 3.0, 4.0, 2.0], "tactic_sources": [2.0, 5.0, 3.0, 6.0]}


def test_tensorrt_claims_hold():
    results = _trt_results(level0=(2.0, 2.02), level5_build=10.0, level4=(1.02, 1.03), warm_build=1.0,
                           reuse_build=2.0, forced=(True, (1.2, 1.21)), knob_builds=EXPECTED_KNOB_BUILDS)
    claims = lab.tensorrt_claims(results).claims
    assert [c.claim for c in claims] == list(lab.TRT_CLAIMS.values())[:7] + [
        lab.TRT_CLAIMS[k] for k in ("avg_timing", "tiling", "max_tactics", "jit")]
    assert all(c.status == report.HOLDS for c in claims), [(c.claim, c.measured) for c in claims]
    assert [c.measured for c in claims] == [
        "10.0x (smaller of the two)", "0.50x [0.50x, 0.51x]", "0.98x [0.97x, 0.99x]", "4.0x (smaller of the two)",
        "2.0x", "1", "0.83x [0.83x, 0.84x]", "3.00x build time", "4.00x build time", "4.00x build time",
        "2.00x build time"]
    by = _by_claim(lab.tensorrt_claims(results))
    assert by[lab.TRT_CLAIMS["reuse"]].why == "12 entries reused"
    assert by[lab.TRT_CLAIMS["editable"]].why == "sm90_xmma_gemm_f16f16_f32_tn_n_tilesize128x128x64_stage3"
    assert by[lab.TRT_CLAIMS["jit"]].why == "3.0 s -> 6.0 s"
    assert "judged on kernel time" in by[lab.TRT_CLAIMS["level0_slow"]].why
    assert by[lab.TRT_CLAIMS["levels_build"]].why == "mlp: level 0 1.0 s, level 5 10.0 s"


def test_tensorrt_claims_fail():
    results = _trt_results(level0=(0.5, 0.505), level5_build=0.5, level4=(0.5, 0.505), warm_build=5.0,
                           reuse_build=5.0, forced=(False, (0.5, 0.505)), knob_builds=REVERSED_KNOB_BUILDS)
    claims = lab.tensorrt_claims(results).claims
    assert all(c.status == report.FAILS for c in claims), [(c.claim, c.measured) for c in claims if c.status != report.FAILS]
    assert all(c.why for c in claims)
    assert claims[2].measured == "2.00x [1.98x, 2.02x]" and claims[6].measured == "2.00x [1.98x, 2.02x]"


def test_tensorrt_claims_inconclusive_inside_the_noise():
    results = _trt_results(level0=(0.8, 1.3), level5_build=10.0, level4=(0.9, 1.2), warm_build=1.0,
                           reuse_build=2.0, forced=(True, (0.8, 1.3)), knob_builds=EXPECTED_KNOB_BUILDS)
    by = _by_claim(lab.tensorrt_claims(results))
    for key in ("level0_slow", "levels_flat", "builder_choice"):
        assert by[lab.TRT_CLAIMS[key]].status == report.INCONCLUSIVE, key
        assert "straddles" in by[lab.TRT_CLAIMS[key]].why


def test_tensorrt_claims_without_a_second_tactic_or_without_tensorrt():
    results = _trt_results(level0=(2.0, 2.02), level5_build=10.0, level4=(1.0, 1.01), warm_build=1.0,
                           reuse_build=2.0, forced=None, knob_builds=EXPECTED_KNOB_BUILDS)
    by = _by_claim(lab.tensorrt_claims(results))
    for key in ("editable", "builder_choice"):
        assert by[lab.TRT_CLAIMS[key]].status == report.NOT_APPLICABLE
        assert by[lab.TRT_CLAIMS[key]].why == "no op with two or more timed tactics in the VERBOSE build log"
    assert by[lab.TRT_CLAIMS["levels_flat"]].status == report.HOLDS
    absent = lab.tensorrt_claims(None).claims
    assert len(absent) == len(lab.TRT_CLAIMS) and {c.status for c in absent} == {report.NOT_APPLICABLE}
    assert {c.why for c in absent} == {"needs TensorRT (not installed here); torch.compile and ONNX Runtime "
                                       "measured instead"}


def test_built_trtexec_has_the_planned_sections_and_one_line_per_engine():
    results = _trt_results(level0=(2.0, 2.02), level5_build=10.0, level4=(1.0, 1.01), warm_build=1.0,
                           reuse_build=2.0, forced=(True, (1.2, 1.21)), knob_builds=EXPECTED_KNOB_BUILDS)
    built = lab.built_trtexec(results, {"mlp": "x/mlp.onnx", "convnet": "x/convnet.onnx"}, "x/deep.onnx")
    assert list(built) == list(lab.planned_trtexec("small"))
    assert {k: len(v) for k, v in built.items()} == {k: len(v) for k, v in lab.planned_trtexec("small").items()} | {
        "timing cache, cold then warm (run each command twice)": 4, "editable timing cache": 2}
    assert built["editable timing cache"][1].startswith("forced tactic: trtexec --onnx=mlp.onnx")


def test_claims_add_every_section_to_one_report_in_order():
    studies = _studies(cnn_default=(0.5, 0.505), mlp_default=(0.98, 0.99), mlp_autotune=(0.97, 0.98),
                       autotune_cold_s=10.0, warm_s=0.5)
    rows = [_ort_row("convnet", "ORT_ENABLE_ALL", 1.8, "faster", 40.0, 250.0),
            _ort_row("mlp", "ORT_ENABLE_EXTENDED", 1.3, "faster", 30.0, 10.0)]
    given = report.LabReport("10_builder")
    result = lab.claims(studies, rows, None, given)
    assert result is given and len(result.claims) == 8 + 4 + len(lab.TRT_CLAIMS)
    assert result.claims[8].claim.startswith("ONNX Runtime ORT_ENABLE_ALL")
    assert result.claims[-1].status == report.NOT_APPLICABLE


# -- GPU ----------------------------------------------------------------------------------------------

@needs_gpu
def test_compile_study_on_gpu_with_cuda_graphs():
    model = lab.LabModel("tiny", lab.mlp(64, depth=2), 16, (64,), "tiny MLP")
    study = lab.compile_study(model, ["default", "reduce-overhead"], device="cuda", precision="fp16",
                              warm_modes=["default"], warmup_ms=5, measure_ms=20, progress=False)
    assert [r.mode for r in study.modes] == ["default", "reduce-overhead"] and len(study.eager) == 2
    assert study.run("default").warm_s is not None and study.run("reduce-overhead").warm_s is None
    assert all(r.runs[0].timer == "cuda-events" for r in study.modes)
    assert all(len(r.eager_runs) == bench.PASSES for r in study.modes)
    assert study.eager_kernels.device == "cuda" and study.eager_kernels.gemm_kind() == lab.LIBRARY
    assert study.run("reduce-overhead").kernels.kernels, "CUPTI sees the kernels inside a CUDA-graph replay"
    assert {row["regime"] for row in study.rows()} <= {"device-bound", "host-bound", "mixed"}
    assert study.on_device("eager", "default").on == "kernel"


def test_a_search_that_bought_a_slower_kernel_says_which_kernels_ran():
    slow_templates = lab.aggregate("max-autotune", "cuda", [("triton_tem_fused_addmm_0", 45.0), ("triton_poi_fused_0", 5.0)], 1)
    studies = _studies(cnn_default=(0.5, 0.505), mlp_default=(0.5, 0.505), mlp_autotune=(1.0, 1.01),
                       autotune_cold_s=10.0, warm_s=0.5)
    studies["mlp"].modes[1] = dataclasses.replace(studies["mlp"].modes[1], kernels=slow_templates)
    by = _compile_statuses(lab.compile_claims(studies))
    assert by["search_gain"].status == report.FAILS
    why = by["search_gain"].why
    assert f"GEMMs: default {lab.LIBRARY} 30 us/iter, max-autotune {lab.GENERATED_GEMM} 45 us/iter: " in why
    assert "in the model they run slower" in why and "separate blocks" in why
