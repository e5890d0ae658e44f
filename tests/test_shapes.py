"""common.shapes (lab 04): switching studies, their summaries, torch.compile recompiles, TensorRT targets.

The TensorRT targets are driven here by a stand-in runner that records the calls EngineRunner
would receive, so which TensorRT call a switch makes (a shape, a profile, none) is checked on a CPU.
"""

import time

import matplotlib
import pytest
import torch

from common import bench, models, shapes
from common import onnx as onnx_tools
from common.trt.buffers import ShapeError

matplotlib.use("Agg")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def sleeper(ms):
    return lambda: time.sleep(ms / 1e3)


class SlowAfterSwitch:
    """A target whose first run after its switch takes `first_ms`, later runs `steady_ms`."""

    def __init__(self, first_ms, steady_ms):
        self.first_ms, self.steady_ms, self.fresh = first_ms, steady_ms, False

    def switch(self):
        self.fresh = True

    def run(self):
        time.sleep((self.first_ms if self.fresh else self.steady_ms) / 1e3)
        self.fresh = False


def test_timed_call_ms_times_the_call_on_cpu():
    assert shapes.timed_call_ms(sleeper(20)) >= 19


def test_alternating_visits_keys_in_turn():
    assert shapes.alternating(["a", "b"], 3) == ["a", "b", "a", "b", "a", "b"]
    with pytest.raises(ValueError, match="two keys"):
        shapes.alternating(["a"], 3)


def test_switch_study_records_first_and_steady_runs_per_visit():
    slow = [SlowAfterSwitch(12, 2), SlowAfterSwitch(14, 3)]
    targets = {k: shapes.Target(run=t.run, switch=t.switch) for k, t in zip("ab", slow)}
    study = shapes.switch_study("fake", "test", targets, shapes.alternating("ab", 4), steady_runs=3)
    assert study.device == "cpu" and study.keys == ["a", "b"]
    assert len(study.rows) == 8 * (1 + 3)
    assert len(study.times_ms(shapes.FIRST)) == 8 and len(study.times_ms(shapes.STEADY, "b")) == 12
    summary = study.summary()
    assert summary.slower and not summary.within_steady
    assert 3 < summary.ratio < 8           # 12/2 and 14/3, give or take the sleep's overshoot
    assert summary.excess_ms.median == pytest.approx(10.5, abs=3)
    row = summary.row()
    assert row["switches"] == 8 and row["ratio"] == summary.ratio
    assert "8 switches" in summary.band()


def test_switch_study_without_a_switch_cost_stays_within_steady():
    targets = {k: shapes.Target(run=sleeper(3)) for k in "ab"}
    summary = shapes.switch_study("flat", "test", targets, shapes.alternating("ab", 6), steady_runs=3).summary()
    assert summary.within_steady
    assert summary.ratio == pytest.approx(1.0, abs=0.3)


def test_switch_study_rejects_unknown_keys_and_zero_steady_runs():
    targets = {"a": shapes.Target(run=sleeper(0))}
    with pytest.raises(KeyError, match="no target"):
        shapes.switch_study("x", "test", targets, ["a", "b"])
    with pytest.raises(ValueError, match="steady_runs"):
        shapes.switch_study("x", "test", targets, ["a"], steady_runs=0)


def test_per_key_rows_give_one_point_per_batch():
    targets = {1: shapes.Target(run=sleeper(1)), 4: shapes.Target(run=sleeper(4))}
    rows = shapes.switch_study("new", "test", targets, [1, 4], steady_runs=2).per_key_rows()
    assert [r["key"] for r in rows] == [1, 4]
    assert rows[1]["steady_ms"] > rows[0]["steady_ms"]


def test_eager_and_onnx_runtime_targets_serve_each_batch(tmp_path):
    model = models.build("resnet18", "small")
    inputs = shapes.cnn_inputs("resnet18", "small", [1, 3], device="cpu", dtype=torch.float32)
    assert [tuple(x.shape)[0] for x in inputs.values()] == [1, 3]
    path = onnx_tools.export(model, inputs[3], tmp_path / "r18.onnx")
    session = onnx_tools.ort_session(path)
    reference = shapes.reference_outputs("resnet18", "small", [1, 3])
    eager = shapes.relative_errors(shapes.torch_outputs(model, inputs), reference)
    ort = shapes.relative_errors({b: onnx_tools.ort_run(session, x) for b, x in inputs.items()}, reference)
    assert max(eager.values()) < 1e-5 and max(ort.values()) < 1e-4
    for targets in (shapes.torch_targets(model, inputs),
                    shapes.ort_targets(session, {b: x.numpy() for b, x in inputs.items()})):
        study = shapes.switch_study("new shapes", "test", targets, [1, 3], steady_runs=2)
        assert len(study.visits()) == 2 and all(v["steady_median_ms"] > 0 for v in study.visits())


def test_compile_study_counts_recompiles_static_against_dynamic():
    model = models.build("transformer", "small")
    batches = [2, 4, 8]
    inputs = {b: models.example_input("transformer", b, "small") for b in batches}
    reference = shapes.reference_outputs("transformer", "small", batches)
    kwargs = dict(tolerance=1e-4, backend="eager", passes=2, warmup_ms=2, measure_ms=5)
    static = shapes.compile_study(model, inputs, reference, dynamic=False, **kwargs)
    dynamic = shapes.compile_study(model, inputs, reference, dynamic=True, **kwargs)
    assert static.graphs == [1, 1, 1]       # a graph per new shape
    assert dynamic.graphs == [1, 0, 0]      # one symbolic graph serves every later shape
    assert static.label == "torch.compile (dynamic=False)"
    assert all(len(runs) == 2 for runs in static.steady.values()) and static.steady_median_ms(8) > 0
    assert all(r["relative_error"] < 1e-4 for r in static.rows + dynamic.rows)


def test_compile_study_refuses_to_time_wrong_outputs():
    model = models.build("transformer", "small")
    inputs = {2: models.example_input("transformer", 2, "small")}
    wrong = {2: torch.zeros(2, *models.spec("transformer", "small").sample_shape) + 1}
    with pytest.raises(AssertionError, match="relative error"):
        shapes.compile_study(model, inputs, wrong, dynamic=False, tolerance=1e-2, backend="eager")


def test_profile_index_for_picks_the_profile_holding_the_shape():
    ranges = [((1, 3), (4, 3), (8, 3)), ((16, 3), (32, 3), (64, 3))]
    assert shapes.profile_index_for(ranges, (8, 3)) == 0
    assert shapes.profile_index_for(ranges, (16, 3)) == 1
    with pytest.raises(ShapeError, match="no profile holds shape"):
        shapes.profile_index_for(ranges, (12, 3))


class FakeRunner:
    """The EngineRunner calls trt_targets makes, recorded (CPU tensors, no streams)."""

    def __init__(self, engine=None, *, num_contexts=1):
        self.num_contexts = num_contexts
        self.calls = []
        self.shapes = [None] * num_contexts
        self.contexts = [type("Context", (), {"active_optimization_profile": 0})() for _ in range(num_contexts)]
        self.specs = {"input": type("Spec", (), {"profile_shapes": (((1, 2), (4, 2), (8, 2)),
                                                                    ((16, 2), (32, 2), (64, 2)))})()}
        self.device_memory_bytes = 1000

    def context(self, ctx=0):
        return self.contexts[ctx]

    def set_optimization_profile(self, ctx, profile):
        self.calls.append(("profile", ctx, profile))
        self.contexts[ctx].active_optimization_profile = profile

    def set_input_shapes(self, shapes, ctx=0):
        self.calls.append(("shape", ctx, tuple(shapes["input"])))
        self.shapes[ctx] = tuple(shapes["input"])

    def inputs(self, ctx=0):
        return {"input": torch.empty(self.shapes[ctx])}

    def stream(self, ctx=0):
        return None

    def enqueue(self, ctx=0):
        self.calls.append(("enqueue", ctx))

    def synchronize(self, ctx=0):
        pass

    def device_memory_bytes_for_profile(self, profile):
        return 100 * (profile + 1)

    def io_buffer_bytes(self, ctx=0):
        return 10


BINDINGS = {"a": (0, {"input": (4, 2)}), "b": (0, {"input": (8, 2)}), "c": (1, {"input": (32, 2)})}


def test_trt_shape_targets_switch_with_set_input_shape_only():
    runner = FakeRunner()
    targets = shapes.trt_targets(runner, {k: BINDINGS[k] for k in "ab"}, "shape")
    runner.calls.clear()
    targets["b"].switch()
    targets["b"].run()
    assert runner.calls == [("shape", 0, (8, 2)), ("enqueue", 0)]
    with pytest.raises(ValueError, match="one profile"):
        shapes.trt_targets(FakeRunner(), BINDINGS, "shape")


def test_trt_profile_targets_switch_profile_before_shape():
    runner = FakeRunner()
    targets = shapes.trt_targets(runner, {k: BINDINGS[k] for k in "ac"}, "profile")
    runner.calls.clear()
    targets["a"].switch()
    targets["c"].switch()
    assert runner.calls == [("profile", 0, 0), ("shape", 0, (4, 2)), ("profile", 0, 1), ("shape", 0, (32, 2))]


def test_trt_context_targets_bind_once_and_switch_nothing():
    runner = FakeRunner(num_contexts=2)
    targets = shapes.trt_targets(runner, {k: BINDINGS[k] for k in "ac"}, "contexts")
    assert ("profile", 1, 1) in runner.calls and ("shape", 1, (32, 2)) in runner.calls
    runner.calls.clear()
    targets["c"].switch()
    targets["c"].run()
    assert runner.calls == [("enqueue", 1)]
    with pytest.raises(ValueError, match="num_contexts=3"):
        shapes.trt_targets(FakeRunner(num_contexts=2), BINDINGS, "contexts")


def test_trt_switch_studies_serve_the_pairs_three_ways(monkeypatch):
    import common.trt

    monkeypatch.setattr(common.trt, "EngineRunner", FakeRunner)
    studies, memory = shapes.trt_switch_studies(object(), "fake", "TensorRT (fake)", "input", (2,),
                                                shape_pair=(4, 8), profile_pair=(8, 32), cycles=2, steady_runs=1)
    assert list(studies) == ["set_input_shape", "profile switch", "context per profile"]
    assert studies["set_input_shape"].keys == [4, 8] and studies["profile switch"].keys == [8, 32]
    assert all(len(s.visits()) == 4 for s in studies.values())
    assert list(memory) == ["one context, switching profiles", "one context per profile"]
    assert memory["one context per profile"][-1]["what"] == "total for 2 context(s)"


def test_engine_outputs_and_profile_width_study_pick_the_profile_holding_each_batch():
    class Runner(FakeRunner):
        def run(self, feed, ctx=0):
            self.set_input_shapes(feed, ctx)
            return {"output": feed["input"] * 2}

    narrow, wide = Runner(), Runner()
    wide.specs = {"input": type("Spec", (), {"profile_shapes": (((1, 2), (16, 2), (64, 2)),)})()}
    outputs = shapes.engine_outputs(narrow, {4: torch.ones(4, 2), 32: torch.ones(32, 2)})
    assert ("profile", 0, 1) in narrow.calls and outputs[32].shape == (32, 2) and float(outputs[4][0, 0]) == 2
    rows = shapes.profile_width_study(narrow, wide, "input", (2,), [4, 32], warmup_ms=1, measure_ms=2)
    assert [r["narrow_profile"] for r in rows] == ["0: 1..8 opt 4", "1: 16..64 opt 32"]
    assert all(r["wide_ms"] > 0 and r["narrow_ms"] > 0 and "vs" in r["verdict"] for r in rows)
    assert not any(call[0] == "profile" for call in wide.calls)   # one profile: never switched


def test_trt_memory_rows_add_up_per_context():
    rows = shapes.trt_memory_rows(FakeRunner(num_contexts=2), "input")
    by_what = {r["what"]: r["bytes"] for r in rows}
    assert by_what["activation memory profile 1 needs (get_device_memory_size_for_profile_v2)"] == 200
    assert by_what["total for 2 context(s)"] == 2 * 1000 + 2 * 10


def test_distribution_plot_writes_png_and_csv(tmp_path):
    targets = {k: shapes.Target(run=sleeper(1)) for k in "ab"}
    studies = [shapes.switch_study(name, "test", targets, shapes.alternating("ab", 2), steady_runs=2)
               for name in ("one", "two")]
    png = shapes.distribution_plot(studies, title="t", path=tmp_path / "dist", show=False)
    assert png.exists() and png.suffix == ".png"
    lines = (tmp_path / "dist.csv").read_text().splitlines()
    assert lines[0] == "study,backend,kind,ratio" and len(lines) == 1 + 2 * (4 + 4 * 2)


def test_geometric_mean():
    assert shapes.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        shapes.geometric_mean([1.0, 0.0])


@needs_gpu
def test_cuda_targets_time_with_events_on_their_stream():
    model = models.build("resnet18", "small").cuda().half()
    inputs = shapes.cnn_inputs("resnet18", "small", [2, 4], device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    study = shapes.switch_study("gpu", "test", shapes.torch_targets(model, inputs, stream),
                                shapes.alternating([2, 4], 2), steady_runs=2)
    assert study.device == "cuda" and all(r["latency_ms"] > 0 for r in study.rows)
    assert isinstance(study.summary().first_ratio, bench.Stats)
