"""The course's TensorRT features on this machine's TensorRT and GPU, each checked on behaviour.

Run with ``make test-trt`` (about a minute on a data-centre GPU). Every engine is built from a tiny
model the test writes itself (``live_models``) and checked against ONNX Runtime's FP32 output within
the course's tolerance (``common.checks``). Skipped, one line each, where TensorRT or a GPU is missing.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

import live_models as models
from common import checks, env
from common.trt import (BuildConfig, EngineRunner, LayerTimes, OnnxParseError, ShapeError, attach_profiler,
                        batch_profile, build_engine, inspect_engine)

pytestmark = pytest.mark.trt
WIDTH = models.WIDTH


def feature(name: str) -> pytest.MarkDecorator:
    return pytest.mark.feature(name)


def profile(lo: int = 1, opt: int = 8, hi: int = 32, width: int = WIDTH) -> tuple:
    return (batch_profile("input", (width,), lo, opt, hi),)


def inputs(batch: int, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32)


def run(runner: EngineRunner, x: np.ndarray, ctx: int = 0) -> np.ndarray:
    """One inference through EngineRunner, the input converted to the engine's input type."""
    import torch

    runner.set_input_shapes({"input": x.shape}, ctx)
    dtype = runner.inputs(ctx)["input"].dtype
    out = runner.run({"input": torch.from_numpy(x).to("cuda", dtype)}, ctx)
    return next(iter(out.values())).float().cpu().numpy()


def missing(need: str) -> str | None:
    """Why this machine lacks `need` (one line), or None."""
    try:
        env.require(need)
    except env.RequirementError as exc:
        return str(exc).splitlines()[0]
    return None


def check(out: np.ndarray, ref: np.ndarray, precision: str, what: str) -> None:
    checks.verify(out, ref, what, precision=precision, scope="model")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "engines"


# -- precision: the engine's output against ONNX Runtime ------------------------------------------

@feature("build and run (FP32)")
def test_fp32_engine_matches_onnx_runtime(tmp_path, cache_dir):
    path = models.mlp(tmp_path / "mlp.onnx")
    built = build_engine(path, BuildConfig(profiles=profile(), tf32=False), cache_dir=cache_dir)
    x = inputs(8)
    check(run(EngineRunner(built.engine), x), models.reference(path, x), "fp32", "FP32 engine")


@feature("FP16 from AutoCast")
def test_fp16_engine_from_autocast_matches_onnx_runtime(tmp_path, cache_dir):
    pytest.importorskip("modelopt.onnx.autocast", reason="needs ModelOpt AutoCast")
    from modelopt.onnx.autocast import convert_to_mixed_precision
    import onnx

    path = models.mlp(tmp_path / "mlp.onnx")
    x = inputs(8)
    np.savez(tmp_path / "calibration.npz", input=x)
    fp16 = convert_to_mixed_precision(str(path), low_precision_type="fp16",
                                      calibration_data=str(tmp_path / "calibration.npz"), providers=["cpu"])
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer), "AutoCast made no FP16"
    onnx.save(fp16, str(tmp_path / "mlp_fp16.onnx"))
    built = build_engine(tmp_path / "mlp_fp16.onnx", BuildConfig(profiles=profile()), cache_dir=cache_dir)
    check(run(EngineRunner(built.engine), x), models.reference(path, x), "fp16", "FP16 (AutoCast) engine")


@pytest.mark.parametrize("precision, need", [pytest.param("int8", "int8-tensor-cores", marks=feature("INT8 from Q/DQ")),
                                             pytest.param("fp8", "fp8", marks=feature("FP8 from Q/DQ"))])
def test_qdq_engine_matches_onnx_runtime(tmp_path, cache_dir, precision, need):
    reason = missing(need)
    if reason:
        pytest.skip(reason)
    plain, quantized = models.mlp(tmp_path / "mlp.onnx"), models.quantized_mlp(tmp_path / f"{precision}.onnx", precision)
    built = build_engine(quantized, BuildConfig(profiles=profile(), profiling_verbosity="detailed"), cache_dir=cache_dir)
    x = inputs(8)
    check(run(EngineRunner(built.engine), x), models.reference(plain, x), precision, f"{precision.upper()} Q/DQ engine")
    kinds = {t.dtype for layer in inspect_engine(built.engine).layers for t in layer.inputs}
    assert precision.upper() in {str(k).upper() for k in kinds if k}, f"no {precision} layer input in {kinds}"


# -- the parser ------------------------------------------------------------------------------------

@feature("parser errors")
def test_a_broken_onnx_raises_onnx_parse_error_with_the_node_and_message(tmp_path):
    path = models.broken(tmp_path / "broken.onnx")
    with pytest.raises(OnnxParseError) as info:
        build_engine(path, cache=False)
    errors = info.value.errors
    assert errors, str(info.value)
    assert any(e["node"] == 1 or e["node_name"] == "the_unknown_node" for e in errors), errors
    assert all(e["desc"] for e in errors) and "NoSuchOperator" in str(info.value)


# -- shapes, profiles, contexts, streams -----------------------------------------------------------

@feature("dynamic shapes and profiles")
def test_dynamic_shapes_inside_the_profile_run_and_outside_are_a_clear_error(tmp_path, cache_dir):
    path = models.mlp(tmp_path / "mlp.onnx")
    runner = EngineRunner(build_engine(path, BuildConfig(profiles=profile(1, 8, 32)), cache_dir=cache_dir).engine)
    for batch in (1, 5, 32):
        x = inputs(batch)
        check(run(runner, x), models.reference(path, x), "tf32", f"batch {batch}")
    with pytest.raises(ShapeError, match=r"profile 0") as info:
        runner.set_input_shapes({"input": (33, WIDTH)})
    assert "33" in str(info.value) and "32" in str(info.value)


@feature("dynamic shapes and profiles")
def test_two_profiles_and_the_switch_between_them(tmp_path, cache_dir):
    path = models.mlp(tmp_path / "mlp.onnx")
    config = BuildConfig(profiles=(profile(1, 4, 8)[0], profile(16, 32, 64)[0]))
    runner = EngineRunner(build_engine(path, config, cache_dir=cache_dir).engine)
    assert runner.engine.num_optimization_profiles == 2
    with pytest.raises(ShapeError):
        runner.set_input_shapes({"input": (32, WIDTH)})   # profile 0 stops at 8
    runner.set_optimization_profile(0, 1)
    x = inputs(32)
    check(run(runner, x), models.reference(path, x), "tf32", "profile 1")
    assert runner.device_memory_bytes_for_profile(1) > 0
    note = runner.device_memory_note()
    assert note is None or "non-v2 getter" in note


@feature("several contexts and streams")
def test_several_contexts_on_several_streams_give_the_same_outputs(tmp_path, cache_dir):
    import torch

    path = models.mlp(tmp_path / "mlp.onnx")
    runner = EngineRunner(build_engine(path, BuildConfig(profiles=profile()), cache_dir=cache_dir).engine,
                          num_contexts=3)
    assert len({runner.stream(i).cuda_stream for i in range(3)}) == 3 and runner.stream(0).cuda_stream != 0
    x = inputs(8)
    for i in range(3):
        runner.set_input_shapes({"input": x.shape}, i)
        runner.inputs(i)["input"].copy_(torch.from_numpy(x).cuda())
    torch.cuda.synchronize()
    for i in range(3):
        runner.enqueue(i)   # all three in flight at once
    outputs = []
    for i in range(3):
        runner.synchronize(i)
        outputs.append(runner.outputs(i)["output"].cpu().numpy())
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:])
    check(outputs[0], models.reference(path, x), "tf32", "context 0")


@feature("auxiliary streams")
@pytest.mark.parametrize("limit", [0, 2])
def test_aux_streams_as_built(tmp_path, cache_dir, limit):
    path = models.two_branches(tmp_path / "branches.onnx")
    built = build_engine(path, BuildConfig(profiles=profile(1, 16, 16, 256), max_aux_streams=limit), cache_dir=cache_dir)
    streams = int(built.engine.num_aux_streams)
    assert 0 <= streams <= limit, f"num_aux_streams {streams} with max_aux_streams={limit}"
    x = inputs(16, 256)
    check(run(EngineRunner(built.engine), x), models.reference(path, x), "tf32", f"max_aux_streams={limit}")


# -- CUDA graphs -------------------------------------------------------------------------------------

@feature("CUDA graphs")
def test_cuda_graph_replay_equals_enqueue_and_recaptures_after_a_shape_change(tmp_path, cache_dir):
    reason = missing("cuda-bindings")
    if reason:
        pytest.skip(reason)
    import torch

    path = models.mlp(tmp_path / "mlp.onnx")
    runner = EngineRunner(build_engine(path, BuildConfig(profiles=profile()), cache_dir=cache_dir).engine)
    for batch, seed in ((8, 1), (16, 2)):
        x = inputs(batch, seed=seed)
        runner.set_input_shapes({"input": x.shape})
        runner.inputs()["input"].copy_(torch.from_numpy(x).cuda())
        torch.cuda.synchronize()
        runner.enqueue()
        runner.synchronize()
        enqueued = runner.outputs()["output"].clone()
        runner.outputs()["output"].zero_()
        assert runner.enqueue_graph() is True            # captured now, for this shape
        assert runner.enqueue_graph() is False           # replayed
        runner.synchronize()
        assert torch.equal(runner.outputs()["output"], enqueued), f"graph replay differs at batch {batch}"
        check(enqueued.cpu().numpy(), models.reference(path, x), "tf32", f"graph at batch {batch}")


# -- inspector and profiler --------------------------------------------------------------------------

@feature("engine inspector")
def test_the_inspector_json_has_layers_formats_and_tactics(tmp_path, cache_dir):
    path = models.mlp(tmp_path / "mlp.onnx")
    built = build_engine(path, BuildConfig(profiles=profile(), profiling_verbosity="detailed"), cache_dir=cache_dir)
    info = inspect_engine(built.engine)
    assert info.layers, "the inspector listed no layers"
    assert any(layer.tactic for layer in info.layers), "no layer has a tactic"
    assert any(t.format or t.dtype for layer in info.layers for t in layer.inputs + layer.outputs), "no formats"


@feature("per-layer profiler")
def test_the_profilers_per_layer_sum_is_close_to_the_event_time(tmp_path, cache_dir):
    import torch

    width = 1024   # large enough that the layers, not the launches, take the time
    path = models.two_branches(tmp_path / "branches.onnx", width=width)
    runner = EngineRunner(build_engine(path, BuildConfig(profiles=profile(512, 512, 512, width),
                                                         profiling_verbosity="detailed"), cache_dir=cache_dir).engine)
    run(runner, inputs(512, width))
    stream = runner.stream()
    event_ms = []
    for _ in range(30):   # the event time of a plain enqueue (the profiler makes enqueues synchronous)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        runner.enqueue()
        end.record(stream)
        end.synchronize()
        event_ms.append(start.elapsed_time(end))
    times = LayerTimes()
    attach_profiler(runner.context(), times)
    for _ in range(20):
        runner.enqueue()
        runner.synchronize()
    runner.context().profiler = None
    assert times.runs >= 10 and times.layers
    layer_sum, event = times.median_run_ms(), float(np.median(event_ms[5:]))
    assert 0.5 * event <= layer_sum <= 1.5 * event + 0.05, f"per-layer sum {layer_sum:.3f} ms, events {event:.3f} ms"


# -- the builder: timing cache, tactics, levels, sparsity --------------------------------------------

@feature("timing cache")
def test_timing_cache_cold_then_warm_and_a_corrupt_file_falls_back(tmp_path, record_property):
    path = models.two_branches(tmp_path / "branches.onnx")
    cache_file = tmp_path / "timing.cache"
    config = BuildConfig(profiles=profile(1, 64, 64, 256), timing_cache_path=str(cache_file))
    cold = build_engine(path, config, cache=False)
    size = cache_file.stat().st_size
    warm = build_engine(path, config, cache=False)
    record_property("cold_build_s", cold.build_seconds)
    record_property("warm_build_s", warm.build_seconds)
    assert size > 0 and cache_file.stat().st_size >= size
    if warm.build_seconds >= cold.build_seconds:
        warnings.warn(f"warm build ({warm.build_seconds:.2f} s) was not faster than cold ({cold.build_seconds:.2f} s)")
    cache_file.write_bytes(b"\x00not a timing cache\x00" * 8)
    with pytest.warns(UserWarning, match="timing cache .* starting an empty one"):
        rebuilt = build_engine(path, config, cache=False)
    x = inputs(64, 256)
    check(run(EngineRunner(rebuilt.engine), x), models.reference(path, x), "tf32", "after the fallback")


@feature("editable timing cache")
def test_the_editable_timing_cache_forces_a_tactic(tmp_path):
    from common.trt import tactics

    path = models.two_branches(tmp_path / "branches.onnx")
    cache_file = tmp_path / "editable.cache"
    config = BuildConfig(profiles=profile(64, 64, 64, 256), timing_cache_path=str(cache_file),
                         extra_flags=frozenset({"EDITABLE_TIMING_CACHE"}))
    first = build_engine(path, config, cache=False, verbose=True)
    records = [r for r in tactics.parse_autotuning_log(t for _, t in first.log.records) if r.alternative()]
    if not records:
        pytest.skip("the builder timed only one tactic per op here: nothing to force")
    record = records[0]
    forced = record.alternative()
    assert forced is not None and forced.hash != record.selected
    tactics.force_tactic(cache_file, record.key, forced.hash)
    second = build_engine(path, config, cache=False, verbose=True)
    again = [r for r in tactics.parse_autotuning_log(t for _, t in second.log.records) if r.key == record.key]
    assert not again or again[0].selected == forced.hash, f"{record.op} kept {again[0].selected}, not {forced.hash}"


@feature("builder optimization levels")
@pytest.mark.parametrize("level", [0, 5])
def test_builder_levels_0_and_5_both_build(tmp_path, level):
    path = models.mlp(tmp_path / "mlp.onnx")
    built = build_engine(path, BuildConfig(profiles=profile(), builder_optimization_level=level), cache=False)
    x = inputs(8)
    check(run(EngineRunner(built.engine), x), models.reference(path, x), "tf32", f"level {level}")


@feature("2:4 sparsity log")
def test_sparse_weights_log_lines_parse_on_a_real_build(tmp_path):
    from common.trt import sparsity

    reason = missing("sparsity")
    if reason:
        pytest.skip(reason)
    path = models.sparse_matmul(tmp_path / "sparse.onnx")
    built = build_engine(path, BuildConfig(profiles=profile(256, 256, 256, 512), sparse_weights=True,
                                           profiling_verbosity="detailed"), cache=False)
    log = sparsity.parse_build_log(t for _, t in built.log.records)
    assert log.reported, "no '(Sparsity)' line in the build log:\n" + "\n".join(built.log_lines[-20:])
    assert log.eligible, f"the 2:4 weights were not eligible: {log.summary()}"


# -- the Python plugin --------------------------------------------------------------------------------

@feature("Python plugin (tensorrt.plugin)")
@pytest.mark.parametrize("implementation", ["jit", "aot"])
def test_the_layernorm_plugin_matches_its_standard_op_twin(tmp_path, implementation):
    if not env.has_triton():
        pytest.skip("needs Triton (the plugin's kernel)")
    import tensorrt.plugin as trtp

    from common.trt import compat, plugins

    if implementation == "aot" and not compat.has_aot_plugins(trtp):
        pytest.skip("this TensorRT has no ahead-of-time Python plugins (10.9 and newer)")
    plugins.register_plugin()
    plugin_model = models.layernorm(tmp_path / "plugin.onnx", plugin=True)
    standard = models.layernorm(tmp_path / "standard.onnx", plugin=False)
    x = inputs(8, 256)
    ours = build_engine(plugin_model, BuildConfig(python_plugins=implementation, profiling_verbosity="detailed"),
                        cache=False)
    twin = build_engine(standard, BuildConfig(), cache=False)
    assert any("FusedLayerNorm" in (layer.name + str(layer.layer_type) + str(layer.metadata))
               for layer in inspect_engine(ours.engine).layers), "no plugin layer in the engine"
    out, ref = run(EngineRunner(ours.engine), x), run(EngineRunner(twin.engine), x)
    check(out, ref, "fp32", f"FusedLayerNorm ({implementation}) against LayerNormalization")


# -- the engine cache -----------------------------------------------------------------------------------

@feature("engine cache")
def test_the_engine_cache_rebuilds_on_a_changed_model_weights_version_or_gpu(tmp_path, cache_dir, monkeypatch):
    config = BuildConfig(profiles=profile())
    path = models.mlp(tmp_path / "mlp.onnx", external=True)
    first = build_engine(path, config, cache_dir=cache_dir)
    again = build_engine(path, config, cache_dir=cache_dir)
    assert not first.from_cache and again.from_cache and again.cache_key == first.cache_key

    weights = tmp_path / "mlp.onnx.weights"   # a weights-only change: the .onnx file is untouched
    data = bytearray(weights.read_bytes())
    data[10] ^= 0x40
    weights.write_bytes(bytes(data))
    changed = build_engine(path, config, cache_dir=cache_dir)
    assert not changed.from_cache and changed.cache_key != first.cache_key

    models.mlp(tmp_path / "mlp.onnx", seed=5, external=True)   # a different model
    assert not build_engine(path, config, cache_dir=cache_dir).from_cache

    real = env.detect()
    for change in ({"tensorrt": f"{real.tensorrt}-other"}, {"gpu_name": f"{real.gpu_name} (another)"}):
        monkeypatch.setattr(env, "detect", lambda c=change: dataclasses.replace(real, **c))
        other = build_engine(path, config, cache_dir=cache_dir)
        assert not other.from_cache, f"an engine cached for {change} was reused"
    monkeypatch.undo()
    assert build_engine(path, config, cache_dir=cache_dir).from_cache
