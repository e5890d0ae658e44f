"""Lab 04 (shape changes): switching studies, their summaries, torch.compile recompiles, TensorRT targets,
and every claim.

The TensorRT targets are driven here by a stand-in runner that records the calls EngineRunner
would receive, so which TensorRT call a switch makes (a shape, a profile, none) is checked on a CPU.
"""

import ctypes
import sys
import time
import types

import matplotlib
import pytest
import torch

from common import bench, checks, models, report
from common import onnx as onnx_tools
from common.labs import lab04_shape_changes as lab
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
    assert lab.timed_call_ms(sleeper(20)) >= 19


def test_alternating_visits_keys_in_turn():
    assert lab.alternating(["a", "b"], 3) == ["a", "b", "a", "b", "a", "b"]
    with pytest.raises(ValueError, match="two keys"):
        lab.alternating(["a"], 3)


def test_switch_study_records_first_and_steady_runs_per_visit():
    slow = [SlowAfterSwitch(12, 2), SlowAfterSwitch(14, 3)]
    targets = {k: lab.Target(run=t.run, switch=t.switch) for k, t in zip("ab", slow)}
    study = lab.switch_study("fake", "test", targets, lab.alternating("ab", 4), steady_runs=3)
    assert study.device == "cpu" and study.keys == ["a", "b"]
    assert len(study.rows) == 8 * (1 + 3)
    assert len(study.times_ms(lab.FIRST)) == 8 and len(study.times_ms(lab.STEADY, "b")) == 12
    summary = study.summary()
    assert summary.slower and not summary.within_steady
    assert 3 < summary.ratio < 8           # 12/2 and 14/3, give or take the sleep's overshoot
    assert summary.excess_ms.median == pytest.approx(10.5, abs=3)
    row = summary.row()
    assert row["switches"] == 8 and row["ratio"] == summary.ratio
    assert "8 switches" in summary.band()


def test_switch_study_without_a_switch_cost_stays_within_steady():
    targets = {k: lab.Target(run=sleeper(3)) for k in "ab"}
    summary = lab.switch_study("flat", "test", targets, lab.alternating("ab", 6), steady_runs=3).summary()
    assert summary.within_steady
    assert summary.ratio == pytest.approx(1.0, abs=0.3)


def test_switch_study_rejects_unknown_keys_and_zero_steady_runs():
    targets = {"a": lab.Target(run=sleeper(0))}
    with pytest.raises(KeyError, match="no target"):
        lab.switch_study("x", "test", targets, ["a", "b"])
    with pytest.raises(ValueError, match="steady_runs"):
        lab.switch_study("x", "test", targets, ["a"], steady_runs=0)


def test_per_key_rows_give_one_point_per_batch():
    targets = {1: lab.Target(run=sleeper(1)), 4: lab.Target(run=sleeper(15))}   # far apart: a loaded host stays ordered
    rows = lab.switch_study("new", "test", targets, [1, 4], steady_runs=2).per_key_rows()
    assert [r["key"] for r in rows] == [1, 4]
    assert rows[1]["steady_ms"] > rows[0]["steady_ms"]


def test_eager_and_onnx_runtime_targets_serve_each_batch(tmp_path):
    model = models.build("resnet18", "small")
    inputs = lab.cnn_inputs("resnet18", "small", [1, 3], device="cpu", dtype=torch.float32)
    assert [tuple(x.shape)[0] for x in inputs.values()] == [1, 3]
    path = onnx_tools.export(model, inputs[3], tmp_path / "r18.onnx")
    session = onnx_tools.ort_session(path)
    reference = lab.reference_outputs("resnet18", "small", [1, 3])
    eager = lab.relative_errors(lab.torch_outputs(model, inputs), reference)
    ort = lab.relative_errors({b: onnx_tools.ort_run(session, x) for b, x in inputs.items()}, reference)
    assert max(eager.values()) < 1e-5 and max(ort.values()) < 1e-4
    for targets in (lab.torch_targets(model, inputs),
                    lab.ort_targets(session, {b: x.numpy() for b, x in inputs.items()})):
        study = lab.switch_study("new shapes", "test", targets, [1, 3], steady_runs=2)
        assert len(study.visits()) == 2 and all(v["steady_median_ms"] > 0 for v in study.visits())


def test_compile_study_counts_recompiles_static_against_dynamic():
    model = models.build("transformer", "small")
    batches = [2, 4, 8]
    inputs = {b: models.example_input("transformer", b, "small") for b in batches}
    reference = lab.reference_outputs("transformer", "small", batches)
    kwargs = dict(tolerance=1e-4, backend="eager", passes=2, warmup_ms=2, measure_ms=5)
    static = lab.compile_study(model, inputs, reference, dynamic=False, **kwargs)
    dynamic = lab.compile_study(model, inputs, reference, dynamic=True, **kwargs)
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
        lab.compile_study(model, inputs, wrong, dynamic=False, tolerance=1e-2, backend="eager")


def test_profile_index_for_picks_the_profile_holding_the_shape():
    ranges = [((1, 3), (4, 3), (8, 3)), ((16, 3), (32, 3), (64, 3))]
    assert lab.profile_index_for(ranges, (8, 3)) == 0
    assert lab.profile_index_for(ranges, (16, 3)) == 1
    with pytest.raises(ShapeError, match="no profile holds shape"):
        lab.profile_index_for(ranges, (12, 3))


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
        self.note = None

    def device_memory_note(self):
        return self.note

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
    targets = lab.trt_targets(runner, {k: BINDINGS[k] for k in "ab"}, "shape")
    runner.calls.clear()
    targets["b"].switch()
    targets["b"].run()
    assert runner.calls == [("shape", 0, (8, 2)), ("enqueue", 0)]
    with pytest.raises(ValueError, match="one profile"):
        lab.trt_targets(FakeRunner(), BINDINGS, "shape")


def test_trt_profile_targets_switch_profile_before_shape():
    runner = FakeRunner()
    targets = lab.trt_targets(runner, {k: BINDINGS[k] for k in "ac"}, "profile")
    runner.calls.clear()
    targets["a"].switch()
    targets["c"].switch()
    assert runner.calls == [("profile", 0, 0), ("shape", 0, (4, 2)), ("profile", 0, 1), ("shape", 0, (32, 2))]


def test_trt_context_targets_bind_once_and_switch_nothing():
    runner = FakeRunner(num_contexts=2)
    targets = lab.trt_targets(runner, {k: BINDINGS[k] for k in "ac"}, "contexts")
    assert ("profile", 1, 1) in runner.calls and ("shape", 1, (32, 2)) in runner.calls
    runner.calls.clear()
    targets["c"].switch()
    targets["c"].run()
    assert runner.calls == [("enqueue", 1)]
    with pytest.raises(ValueError, match="num_contexts=3"):
        lab.trt_targets(FakeRunner(num_contexts=2), BINDINGS, "contexts")


def test_trt_switch_studies_serve_the_pairs_three_ways(monkeypatch):
    import common.trt

    monkeypatch.setattr(common.trt, "EngineRunner", FakeRunner)
    studies, memory = lab.trt_switch_studies(object(), "fake", "TensorRT (fake)", "input", (2,),
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
    outputs = lab.engine_outputs(narrow, {4: torch.ones(4, 2), 32: torch.ones(32, 2)})
    assert ("profile", 0, 1) in narrow.calls and outputs[32].shape == (32, 2) and float(outputs[4][0, 0]) == 2
    rows = lab.profile_width_study(narrow, wide, "input", (2,), [4, 32], warmup_ms=1, measure_ms=2)
    assert [r["narrow_profile"] for r in rows] == ["0: 1..8 opt 4", "1: 16..64 opt 32"]
    assert all(r["wide_ms"] > 0 and r["narrow_ms"] > 0 and "vs" in r["verdict"] for r in rows)
    assert {r["compared_on"] for r in rows} == {"event"}   # no kernel time on a CPU
    assert all(r["interval_lo"] <= r["interval_hi"] for r in rows)
    assert not any(call[0] == "profile" for call in wide.calls)   # one profile: never switched


def test_trt_memory_rows_add_up_per_context():
    rows = lab.trt_memory_rows(FakeRunner(num_contexts=2), "input")
    by_what = {r["what"]: r["bytes"] for r in rows}
    assert by_what["activation memory profile 1 needs (get_device_memory_size_for_profile_v2)"] == 200
    assert by_what["total for 2 context(s)"] == 2 * 1000 + 2 * 10
    assert {r["note"] for r in rows} == {""}   # no note on this TensorRT


def test_trt_memory_rows_carry_the_version_note_on_the_per_profile_rows():
    from common.trt import compat

    runner = FakeRunner()
    runner.note = compat.profile_memory_note(types.SimpleNamespace(__version__="10.8.0"))
    assert runner.note and "non-v2" in runner.note
    rows = lab.trt_memory_rows(runner, "input")
    notes = {r["what"]: r["note"] for r in rows}
    assert [n for w, n in notes.items() if w.startswith("activation memory profile")] == [runner.note] * 2
    assert notes["activation memory each context allocates (device_memory_size_v2)"] == ""
    assert compat.profile_memory_note(types.SimpleNamespace(__version__="11.4.0")) is None


def test_distribution_plot_writes_png_and_csv(tmp_path):
    targets = {k: lab.Target(run=sleeper(1)) for k in "ab"}
    studies = [lab.switch_study(name, "test", targets, lab.alternating("ab", 2), steady_runs=2)
               for name in ("one", "two")]
    png = lab.distribution_plot(studies, title="t", path=tmp_path / "dist", show=False)
    assert png.exists() and png.suffix == ".png"
    lines = (tmp_path / "dist.csv").read_text().splitlines()
    assert lines[0] == "study,backend,kind,ratio" and len(lines) == 1 + 2 * (4 + 4 * 2)


def test_geometric_mean():
    assert lab.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        lab.geometric_mean([1.0, 0.0])


@needs_gpu
def test_cuda_targets_time_with_events_on_their_stream():
    model = models.build("resnet18", "small").cuda().half()
    inputs = lab.cnn_inputs("resnet18", "small", [2, 4], device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    study = lab.switch_study("gpu", "test", lab.torch_targets(model, inputs, stream),
                                lab.alternating([2, 4], 2), steady_runs=2)
    assert study.device == "cuda" and all(r["latency_ms"] > 0 for r in study.rows)
    assert isinstance(study.summary().first_ratio, bench.Stats)


def test_eager_steady_measures_each_batch_twice_on_cpu():
    model = models.build("transformer", "small")
    inputs = {b: models.example_input("transformer", b, "small") for b in (2, 4)}
    runs = lab.eager_steady(model, inputs, None, warmup_ms=2, measure_ms=5)
    assert list(runs) == [2, 4] and all(len(ms) == bench.PASSES for ms in runs.values())
    assert runs[4][0].batch_size == 4 and runs[2][0].backend == "PyTorch eager (cpu, fp32)"


def test_build_summary_names_the_backend_and_cached_engines(monkeypatch):
    import common.trt

    monkeypatch.setattr(common.trt, "version", lambda: "11.4")
    builds = {"edge-mask on": types.SimpleNamespace(from_cache=False, build_seconds=61.25, plan_size_bytes=3 * 2**20),
              "wide profile": types.SimpleNamespace(from_cache=True, build_seconds=40.0, plan_size_bytes=2**20)}
    assert lab.tensorrt_backend() == "TensorRT 11.4"
    assert lab.build_summary(builds).splitlines() == [
        "TensorRT 11.4 edge-mask on : build   61.2 s; plan 3.0 MiB",
        "TensorRT 11.4 wide profile : build   40.0 s (engine from the cache: the time of its original build); "
        "plan 1.0 MiB"]


def test_build_engines_narrow_profiles_per_tactic_source_set_and_one_wide(monkeypatch):
    import common.trt

    built = []
    monkeypatch.setattr(common.trt, "build_engine", lambda path, config: built.append((path, config)) or len(built))
    sources = {"edge-mask on": frozenset({"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"}),
               "edge-mask off": frozenset({"JIT_CONVOLUTIONS"})}
    builds = lab.build_engines("m.onnx", (3, 8, 8), narrow=((1, 4, 8), (16, 32, 64)), wide=(1, 16, 64),
                               tactic_sources=sources)
    assert builds == {"edge-mask on": 1, "edge-mask off": 2, "wide profile": 3}
    configs = [config for _, config in built]
    assert [c.tactic_sources for c in configs] == [sources["edge-mask on"], sources["edge-mask off"],
                                                   sources["edge-mask on"]]
    assert [p.shapes["input"] for p in configs[1].profiles] == [((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8)),
                                                               ((16, 3, 8, 8), (32, 3, 8, 8), (64, 3, 8, 8))]
    assert [p.shapes["input"] for p in configs[2].profiles] == [((1, 3, 8, 8), (16, 3, 8, 8), (64, 3, 8, 8))]


def test_engine_width_study_runs_each_engine_in_its_own_runner(monkeypatch):
    import common.trt

    narrow, wide = FakeRunner(), FakeRunner()
    wide.specs = {"input": type("Spec", (), {"profile_shapes": (((1, 2), (16, 2), (64, 2)),)})()}
    monkeypatch.setattr(common.trt, "EngineRunner", lambda engine: engine)
    rows = lab.engine_width_study(narrow, wide, "input", (2,), [4], warmup_ms=1, measure_ms=2)
    assert [r["narrow_profile"] for r in rows] == ["0: 1..8 opt 4"] and ("enqueue", 0) in wide.calls


@needs_gpu
def test_verify_engines_refuses_an_engine_that_disagrees(monkeypatch):
    import common.trt

    model = models.build("resnet18", "small").cuda().half().eval()

    class Runner(FakeRunner):
        wrong = False

        def __init__(self):
            super().__init__()
            image = tuple(models.example_input("resnet18", 1, "small").shape[1:])
            self.specs = {"input": type("Spec", (), {"profile_shapes": (((1, *image), (8, *image), (16, *image)),)})()}

        def run(self, feed, ctx=0):
            with torch.inference_mode():
                out = model(feed["input"])
            return {"output": torch.zeros_like(out) if self.wrong else out}

    class WrongRunner(Runner):
        wrong = True

    engines = {"good": types.SimpleNamespace(engine=Runner), "bad": types.SimpleNamespace(engine=WrongRunner)}
    monkeypatch.setattr(common.trt, "EngineRunner", lambda engine: engine())
    worst = lab.verify_engines({"good": engines["good"]}, "resnet18", "small", [2, 16])
    assert list(worst) == ["good"] and worst["good"] <= lab.tolerance("fp16")
    with pytest.raises(checks.VerificationError, match="TensorRT engine 'bad' at batch 2"):
        lab.verify_engines(engines, "resnet18", "small", [2, 16])


# -- claims ------------------------------------------------------------------------------------------

STEADY_MS = [1.0, 1.02, 0.98, 1.01, 0.99]
SLOW = [(300.0, STEADY_MS)] * 6      # each first run costs 300 steady ones
FLAT = [(1.0, STEADY_MS)] * 6        # a first run like any steady one


def _study(visits, backend="PyTorch eager (cpu, fp32)", label="study"):
    study = lab.SwitchStudy(label, backend, "cpu")
    for step, (first_ms, steady_ms) in enumerate(visits):
        study.rows.append({"step": step, "key": step % 2, "kind": lab.FIRST, "latency_ms": first_ms,
                           "switch_host_ms": 0.1})
        study.rows += [{"step": step, "key": step % 2, "kind": lab.STEADY, "latency_ms": t, "switch_host_ms": 0.0}
                       for t in steady_ms]
    return study


def _statuses(lab_report):
    return [(c.claim, c.status, c.measured) for c in lab_report.claims]


def test_switch_claims_judge_new_and_seen_studies_only():
    eager, ort = "PyTorch eager (cpu, fp32)", "ONNX Runtime (cpu, fp32)"
    studies = {f"{eager}: new": _study(SLOW, eager), f"{eager}: seen": _study(FLAT, eager),
               f"{ort}: new": _study(FLAT, ort), f"{ort}: seen": _study(SLOW, ort),
               "TensorRT: set_input_shape": _study(SLOW, "TensorRT 11.4")}
    lab_report = lab.switch_claims(studies)
    assert _statuses(lab_report) == [
        (f"{eager}: the first run at a new batch size is slower than steady state", report.HOLDS, "300.00x (median)"),
        (f"{eager}: switching between batch sizes already seen costs nothing measurable", report.HOLDS, "1.00x (median)"),
        (f"{ort}: the first run at a new batch size is slower than steady state", report.FAILS, "1.00x (median)"),
        (f"{ort}: switching between batch sizes already seen costs nothing measurable", report.FAILS, "300.00x (median)")]
    assert lab_report.claims[0].why == "first/steady p10-p90 300.00-300.00x over 6 switches; steady runs p90 1.02x"


PASS_FACTORS = (1.0, 1.01, 0.99, 1.02, 0.98)
NOISY = (0.6, 1.4, 1.0, 0.7, 1.3)


def _measurements(ms, batch, kernel_ms=None, factors=PASS_FACTORS, name="m"):
    """Five passes around `ms` (event) with kernel time around `kernel_ms` (None: not measured)."""
    out = []
    for f in factors:
        stats = bench.Stats.of([ms * f])
        kernel = None if kernel_ms is None else bench.KernelTime(kernel_ms * f, kernel_ms * f, 0.0, 12, 5)
        out.append(bench.Measurement(name, name, "cuda", batch, stats, stats, ms, 10, 1.0, "cuda-events",
                                     kernel=kernel))
    return out


def _compile_study(dynamic, graphs, first_call_s, steady_ms=0.3, kernel_ms=(0.1, 0.2, 0.4), factors=PASS_FACTORS):
    rows = [{"batch": b, "first_call_s": s, "new_graphs": g, "cache_hits": 0}
            for b, g, s in zip((4, 16, 64), graphs, first_call_s)]
    kernels = dict(zip((4, 16, 64), kernel_ms if kernel_ms is not None else (None,) * 3))
    return lab.CompileStudy(dynamic, rows, {r["batch"]: _measurements(steady_ms, r["batch"], kernels[r["batch"]], factors)
                                            for r in rows})


def _steady_rows(speedups):
    return [{"batch": b, "static_speedup": s} for b, s in zip((4, 16, 64), speedups)]


def test_compile_claims_hold():
    compiled = {False: _compile_study(False, [1, 1, 1], [3.9, 3.9, 3.2]),
                True: _compile_study(True, [1, 0, 0], [6.4, 0.001, 0.001], kernel_ms=(0.12, 0.24, 0.48))}
    lab_report = lab.compile_claims(compiled, _steady_rows([1.2, 1.2, 1.2]))
    got = _statuses(lab_report)
    assert got[:3] == [
        (lab.COMPILE_CLAIMS[0], report.HOLDS, "3 graphs for 3 sizes"),
        (lab.COMPILE_CLAIMS[1], report.HOLDS, "0 graphs after the first"),
        (lab.COMPILE_CLAIMS[2], report.HOLDS, "13,000 runs (median)")]
    assert got[3][:2] == (lab.COMPILE_CLAIMS[3], report.HOLDS) and got[3][2].startswith("1.20x [")
    whys = [c.why for c in lab_report.claims]
    assert whys[0] == "first calls 3.90, 3.90, 3.20 s" and whys[2] == "cache hits during the compiles: 0"
    assert whys[3] == "judged on kernel time over 5 passes; batch 4: 1.20x; batch 16: 1.20x; batch 64: 1.20x"


def test_compile_claims_fail():
    compiled = {False: _compile_study(False, [1, 0, 1], [0.1, 0.1, 0.1]),
                True: _compile_study(True, [1, 1, 0], [6.4, 2.0, 0.001], kernel_ms=(0.08, 0.16, 0.32))}
    lab_report = lab.compile_claims(compiled, _steady_rows([0.8, 0.8, 0.8]))
    assert [c.status for c in lab_report.claims] == [report.FAILS] * 4
    assert [c.measured for c in lab_report.claims][:3] == ["2 graphs for 3 sizes", "1 graphs after the first",
                                                           "333 runs (median)"]
    assert "lies below 1.00x" in lab_report.claims[3].why


def test_compile_claim_on_noise_is_inconclusive_and_falls_back_to_event_time_without_kernel_time():
    compiled = {False: _compile_study(False, [1, 1, 1], [3.9, 3.9, 3.2], factors=NOISY),
                True: _compile_study(True, [1, 0, 0], [6.4, 0.001, 0.001], kernel_ms=(0.105, 0.21, 0.42))}
    claim = lab.compile_claims(compiled, _steady_rows([1.05] * 3)).claims[3]
    assert claim.status == report.INCONCLUSIVE and "straddles 1.00x" in claim.why
    no_kernels = {False: _compile_study(False, [1, 1, 1], [3.9, 3.9, 3.2], kernel_ms=None),
                  True: _compile_study(True, [1, 0, 0], [6.4, 0.001, 0.001], steady_ms=0.36, kernel_ms=None)}
    claim = lab.compile_claims(no_kernels, _steady_rows([1.2] * 3)).claims[3]
    assert claim.status == report.HOLDS and "judged on event time over 5 passes (no kernel time here)" in claim.why


def test_geometric_speedup_takes_per_pass_geometric_means():
    steady = (1.0,) * 5   # identical passes: the interval closes on the value
    slow = {b: _measurements(2 * ms, b, kernel_ms=2 * ms, factors=steady) for b, ms in ((4, 0.1), (16, 0.4))}
    fast = {b: _measurements(ms, b, kernel_ms=ms, factors=steady) for b, ms in ((4, 0.1), (16, 0.4))}
    speedup, (lo, hi) = lab.geometric_speedup(slow, fast)
    assert speedup == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def _steady(eager, static, dynamic, eager_kernel, static_kernel, dynamic_kernel, batch=4):
    return (_measurements(eager, batch, eager_kernel), _measurements(static, batch, static_kernel),
            _measurements(dynamic, batch, dynamic_kernel))


def test_compile_steady_rows_and_notes_explain_a_static_compile_slower_than_eager():
    host_bound = _steady(0.28, 0.34, 0.40, 0.20, 0.10, 0.12)          # static: 29% busy, faster kernels
    device_bound = _steady(1.0, 1.2, 1.3, 0.95, 1.15, 1.25, batch=64)  # static: slower kernels
    static = lab.CompileStudy(False, [], {4: host_bound[1], 64: device_bound[1]})
    dynamic = lab.CompileStudy(True, [], {4: host_bound[2], 64: device_bound[2]})
    rows = lab.compile_steady_rows(static, dynamic, {4: host_bound[0], 64: device_bound[0]})
    r4 = rows[0]
    assert r4["static_vs_eager"] == pytest.approx(0.28 / 0.34) and r4["static_vs_eager_significant"]
    assert r4["static_regime"] == "host-bound" and r4["compared_on"] == "kernel"
    assert r4["static_speedup"] == pytest.approx(1.2) and r4["static_kernel_ms"] == pytest.approx(0.10)
    notes = lab.compile_notes(rows)
    assert len(notes) == 2
    assert notes[0].startswith("batch 4: static compile at 0.82x eager on event time (interval ")
    assert "host-bound (static 29% busy, eager 71%)" in notes[0]
    assert notes[0].endswith("its kernels take 0.50x eager's kernel time")
    assert notes[1].endswith("the compiled kernels themselves take longer (1.21x eager's kernel time)")
    faster = lab.CompileStudy(False, [], {4: _measurements(0.2, 4, 0.1)})
    assert lab.compile_notes(lab.compile_steady_rows(faster, faster, {4: host_bound[0]})) == []


def _memory(one_mib, per_profile_mib):
    return {"one context, switching profiles": [{"what": "total for 1 context(s)", "bytes": one_mib * 2**20}],
            "one context per profile": [{"what": "total for 2 context(s)", "bytes": per_profile_mib * 2**20}]}


def _allocation_rows(holds: bool):
    """What allocation_strategy_study returns for batches 8, 32, 8 (profiles 0, 1, 0), in bytes."""
    mib = 2**20
    rows = []
    for strategy, created, taken in (("STATIC", 60, (62, 62, 62)), ("ON_PROFILE_CHANGE", 2, (12, 62, 62)),
                                     ("USER_MANAGED", 2 if holds else 70, (12, 62, 62))):
        for batch, profile, t in zip((8, 32, 8), (0, 1, 0), taken):
            on_change_small = strategy == "ON_PROFILE_CHANGE" and profile == 0 and batch == 8 and t == 12
            rows.append({"strategy": strategy, "batch": batch, "profile": profile, "engine_says_bytes": 10 * mib,
                         "for_shapes_bytes": 9 * mib if strategy == "USER_MANAGED" else None,
                         "caller_bytes": 10 * mib if strategy == "USER_MANAGED" else 0,
                         "created_bytes": created * mib,
                         "taken_bytes": (t if holds or not on_change_small else 70) * mib,
                         "relative_error": 1e-3, "note": ""})
    return rows


def _trt_inputs(holds: bool):
    first, then = (SLOW, FLAT) if holds else (FLAT, SLOW)
    studies = {"edge-mask on": {"set_input_shape": _study(first), "profile switch": _study(first),
                                "context per profile": _study(then)},
               "edge-mask off": {"set_input_shape": _study(then)}}
    memory = {"edge-mask on": _memory(100.0, 150.0) if holds else _memory(100.0, 100.0)}
    width_rows = [{"batch": 4, "speedup": 1.3 if holds else 0.95, "interval_lo": 1.2 if holds else 0.9,
                   "interval_hi": 1.4 if holds else 0.97, "compared_on": "kernel"},
                  {"batch": 32, "speedup": 1.1 if holds else 0.9, "interval_lo": 1.05 if holds else 0.85,
                   "interval_hi": 1.15 if holds else 0.95, "compared_on": "kernel"}]
    builds = {"edge-mask on": types.SimpleNamespace(build_seconds=60.0 if holds else 40.0),
              "edge-mask off": types.SimpleNamespace(build_seconds=40.0 if holds else 60.0)}
    return studies, memory, width_rows, builds, _allocation_rows(holds)


def test_tensorrt_claims_hold():
    lab_report = lab.tensorrt_claims(*_trt_inputs(True), tensorrt_installed=True)
    got = _statuses(lab_report)
    assert got[:4] == [
        (lab.TRT_CLAIMS[0], report.HOLDS, "300.00x (median)"), (lab.TRT_CLAIMS[1], report.HOLDS, "300.00x (median)"),
        (lab.TRT_CLAIMS[2], report.HOLDS, "1.00x (median)"), (lab.TRT_CLAIMS[3], report.HOLDS, "+50.0 MiB")]
    assert got[4] == (lab.TRT_CLAIMS[4], report.HOLDS, "1.30x [1.20x, 1.40x]")
    assert got[5:] == [(lab.TRT_CLAIMS[5], report.HOLDS, "0.000 ms per switch"),
                       (lab.TRT_CLAIMS[6], report.HOLDS, "1.50x"),
                       (lab.TRT_CLAIMS[7], report.HOLDS, "12.0 MiB"),
                       (lab.TRT_CLAIMS[8], report.HOLDS, "2.0 MiB at creation")]
    whys = [c.why for c in lab_report.claims]
    assert whys[3:] == ["150.0 MiB for two contexts",
                        "at batch 4, the best of 2 batch sizes; judged on kernel time",
                        "with it on: median 299.000 ms, p10 299.000 ms",
                        "60.0 s on, 40.0 s off; one build each: no run-to-run spread",
                        "STATIC: 62.0 MiB at batch 8",
                        "STATIC: 60.0 MiB at creation; caller's buffer up to 10.0 MiB; outputs checked"]


def test_tensorrt_claims_fail():
    lab_report = lab.tensorrt_claims(*_trt_inputs(False), tensorrt_installed=True)
    assert [c.status for c in lab_report.claims] == [report.FAILS] * 9
    assert lab_report.claims[4].measured == "0.95x [0.90x, 0.97x]"
    assert lab_report.claims[4].why.startswith("95% interval 0.90x-0.97x lies below 1.00x; at batch 4")


def test_tensorrt_claims_on_profile_width_noise_are_inconclusive():
    studies, memory, width_rows, builds, allocation = _trt_inputs(True)
    width_rows = [{**r, "interval_lo": 0.9} for r in width_rows]
    claim = lab.tensorrt_claims(studies, memory, width_rows, builds, allocation, tensorrt_installed=True).claims[4]
    assert claim.status == report.INCONCLUSIVE and "straddles 1.00x" in claim.why


def test_allocation_claims_not_applicable_without_the_study():
    studies, memory, width_rows, builds, _ = _trt_inputs(True)
    claims = lab.tensorrt_claims(studies, memory, width_rows, builds, tensorrt_installed=True).claims
    assert [(c.status, c.why) for c in claims[7:]] == [
        (report.NOT_APPLICABLE, "the allocation-strategy study did not run")] * 2


@pytest.mark.parametrize("installed, why", [(False, "needs TensorRT: not installed"), (True, "needs TensorRT: no GPU")])
def test_tensorrt_claims_not_applicable_without_tensorrt(installed, why):
    lab_report = report.LabReport(lab.LAB)
    assert lab.tensorrt_claims({}, {}, [], {}, tensorrt_installed=installed, lab_report=lab_report) is lab_report
    assert [(c.claim, c.status, c.why) for c in lab_report.claims] == [
        (claim, report.NOT_APPLICABLE, why) for claim in lab.TRT_CLAIMS]


# -- steady state with the harness, and what stands out ---------------------------------------------

def test_steady_state_rows_measure_each_target_over_passes_on_cpu():
    targets = {1: lab.Target(run=sleeper(1)), 2: lab.Target(run=sleeper(10))}
    rows = lab.steady_state_rows("sleep", targets, passes=2, warmup_ms=2, measure_ms=12)
    assert [r["key"] for r in rows] == [1, 2] and all(len(r["pass_medians_ms"]) == 2 for r in rows)
    assert rows[1]["latency_ms"] > rows[0]["latency_ms"] and {r["regime"] for r in rows} == {"cpu"}


def _visit_rows(steady_ms):
    return [{"key": b, "steady_ms": ms} for b, ms in steady_ms.items()]


def _harness_rows(event_ms, kernel_ms=None):
    return [{"key": b, "latency_ms": ms, "kernel_ms": (kernel_ms or {}).get(b, float("nan")),
             "gpu_busy": (kernel_ms or {}).get(b, float("nan")) / ms, "pass_medians_ms": [ms] * 5}
            for b, ms in event_ms.items()]


VISITS = {1: 1.6, 2: 1.55, 4: 1.56, 12: 1.58, 16: 2.86, 24: 1.67}


def test_standing_out_says_noise_when_the_harness_does_not_reproduce_it():
    flat = {b: 1.6 for b in VISITS}
    lines = lab.standing_out(_visit_rows(VISITS), _harness_rows(flat, {b: 0.4 for b in VISITS}))
    assert len(lines) == 1 and lines[0].startswith("batch 16: steady median 2.86 ms in the switching study, 1.76x")
    assert "1.00x on event time, 1.00x on kernel time, 25% busy" in lines[0]
    assert lines[0].endswith("not reproduced: noise at that one visit (a few steady runs, each from an idle device)")


def test_standing_out_tells_device_from_host_when_the_harness_reproduces_it():
    event = {**{b: 1.6 for b in VISITS}, 16: 2.9}
    device = lab.standing_out(_visit_rows(VISITS), _harness_rows(event, {**{b: 0.4 for b in VISITS}, 16: 1.6}))
    assert device[0].endswith("the GPU's own work at this shape is longer: the kernels chosen for it run slower")
    host = lab.standing_out(_visit_rows(VISITS), _harness_rows(event, {b: 0.4 for b in VISITS}))
    assert host[0].endswith("the kernels take no longer: the extra time is the host's, per call")
    unknown = lab.standing_out(_visit_rows(VISITS), _harness_rows(event))
    assert unknown[0].endswith("reproduced; no kernel time here to say whether host or device")
    assert lab.standing_out(_visit_rows({b: 1.6 for b in VISITS}), _harness_rows(event)) == []


# -- allocation strategies, with a stand-in TensorRT --------------------------------------------

class _Enum:
    def __init__(self, **members):
        self.__dict__.update(members)


class StandInTrt(types.ModuleType):
    """The few TensorRT names the allocation study uses."""

    def __init__(self, version="11.4.0"):
        super().__init__("tensorrt")
        self.__version__ = version
        self.ExecutionContextAllocationStrategy = _Enum(STATIC="STATIC", ON_PROFILE_CHANGE="ON_PROFILE_CHANGE",
                                                        USER_MANAGED="USER_MANAGED")
        self.TensorIOMode = _Enum(INPUT="INPUT", OUTPUT="OUTPUT")


MiB = 2**20


class StandInContext:
    """Takes device memory as TensorRT documents each strategy to, and copies input to output."""

    def __init__(self, engine, strategy):
        self.engine, self.strategy, self.active_optimization_profile = engine, strategy, 0
        self.addresses, self.shape, self.user_memory = {}, None, None
        self.held = engine.device_memory_size_v2 if strategy == "STATIC" else 0
        engine.taken += self.held + MiB   # 1 MiB of the context's own state, whatever the strategy

    def set_optimization_profile_async(self, profile, stream):
        self.active_optimization_profile = profile
        if self.strategy == "ON_PROFILE_CHANGE":
            self.engine.taken += self.engine.get_device_memory_size_for_profile_v2(profile) - self.held
            self.held = self.engine.get_device_memory_size_for_profile_v2(profile)
        return True

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return True

    def update_device_memory_size_for_shapes(self):
        return self.shape[0] * MiB

    def set_device_memory(self, ptr, size):
        self.user_memory = (ptr, size)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        if self.strategy == "USER_MANAGED" and self.user_memory is None:
            return False
        if self.strategy == "ON_PROFILE_CHANGE" and self.held == 0:   # profile 0 is selected at creation
            self.set_optimization_profile_async(0, stream)
        nbytes = 2 * self.shape[0] * self.shape[1]   # FP16
        ctypes.memmove(self.addresses["output"], self.addresses["input"], nbytes)
        return True


class StandInEngine:
    num_io_tensors, num_optimization_profiles = 2, 2
    device_memory_size_v2 = 40 * MiB

    def __init__(self):
        self.taken, self.created = 0, []

    def get_tensor_name(self, i):
        return ("input", "output")[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name="HALF")

    def get_tensor_profile_shape(self, name, profile):
        return [((1, 4), (4, 4), (8, 4)), ((16, 4), (32, 4), (64, 4))][profile]

    def get_device_memory_size_for_profile_v2(self, profile):
        return (10 * MiB, 40 * MiB)[profile]

    def create_execution_context(self, strategy):
        self.created.append(strategy)
        return StandInContext(self, strategy)


def _allocation_study(monkeypatch, version="11.4.0"):
    monkeypatch.setitem(sys.modules, "tensorrt", StandInTrt(version))
    engine = StandInEngine()
    inputs = {b: torch.randn(b, 4).half() for b in (8, 32)}
    inputs = {8: inputs[8], 32: inputs[32]}
    reference = {b: x.float() for b, x in inputs.items()}
    rows = lab.allocation_strategy_study(engine, "input", inputs, reference, free_bytes=lambda: -engine.taken)
    return engine, rows


def test_allocation_strategy_study_creates_a_context_per_strategy_and_records_its_memory(monkeypatch):
    engine, rows = _allocation_study(monkeypatch)
    assert engine.created == list(lab.STRATEGIES)
    by = {(r["strategy"], r["batch"]): r for r in rows}
    assert [(r["strategy"], r["batch"], r["profile"]) for r in rows] == [
        (s, b, p) for s in lab.STRATEGIES for b, p in ((8, 0), (32, 1))]
    assert by[("STATIC", 8)]["created_bytes"] == 41 * MiB and by[("STATIC", 8)]["engine_says_bytes"] == 40 * MiB
    assert by[("ON_PROFILE_CHANGE", 8)]["taken_bytes"] == 11 * MiB       # the small profile's memory only
    assert by[("ON_PROFILE_CHANGE", 32)]["taken_bytes"] == 41 * MiB
    user = by[("USER_MANAGED", 32)]
    assert user["created_bytes"] == MiB and user["caller_bytes"] == 40 * MiB and user["for_shapes_bytes"] == 32 * MiB
    assert by[("USER_MANAGED", 8)]["caller_bytes"] == 10 * MiB and by[("STATIC", 8)]["for_shapes_bytes"] is None
    assert all(r["relative_error"] == 0.0 and r["note"] == "" for r in rows)
    table = lab.allocation_rows_for_table(rows)
    assert table[0]["allocated_by"] == "TensorRT" and table[-1]["allocated_by"] == "caller"
    assert table[0]["engine_says_MiB"] == 40.0 and table[0]["for_shapes_MiB"] != table[0]["for_shapes_MiB"]   # nan
    lab_report = lab.tensorrt_claims(*_trt_inputs(True)[:4], rows, tensorrt_installed=True)
    assert [c.status for c in lab_report.claims[7:]] == [report.HOLDS, report.HOLDS]


def test_allocation_strategy_study_prints_the_10_8_note_on_the_profile_figures(monkeypatch):
    _, rows = _allocation_study(monkeypatch, version="10.8.0")
    assert {r["note"] for r in rows if r["strategy"] == "STATIC"} == {""}   # STATIC reads device_memory_size_v2
    notes = {r["note"] for r in rows if r["strategy"] != "STATIC"}
    assert len(notes) == 1 and "non-v2" in notes.pop()


def test_allocation_strategy_study_refuses_a_context_whose_output_is_off(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", StandInTrt())
    engine = StandInEngine()
    inputs = {8: torch.randn(8, 4).half()}
    with pytest.raises(checks.VerificationError, match="strategy STATIC at batch 8"):
        lab.allocation_strategy_study(engine, "input", inputs, {8: -inputs[8].float()}, free_bytes=lambda: 0)


def test_strategy_member_names_only_tensorrts_three_strategies():
    trt = StandInTrt()
    assert [lab.strategy_member(trt, s) for s in lab.STRATEGIES] == list(lab.STRATEGIES)
    with pytest.raises(ValueError, match="one of"):
        lab.strategy_member(trt, "DYNAMIC")


def test_trtexec_commands_build_every_engine_and_the_allocation_strategies():
    sources = {"edge-mask on": frozenset({"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"}),
               "edge-mask off": frozenset({"JIT_CONVOLUTIONS"})}
    commands = lab.trtexec_commands("04_resnet18_full_fp16.onnx", (3, 224, 224), narrow=((1, 4, 8), (16, 32, 64)),
                                    wide=(1, 16, 64), tactic_sources=sources, batch=8)
    assert len(commands) == 5
    assert "--tacticSources=+EDGE_MASK_CONVOLUTIONS,+JIT_CONVOLUTIONS" in commands[0]
    assert "--tacticSources=-EDGE_MASK_CONVOLUTIONS,+JIT_CONVOLUTIONS" in commands[1]
    assert "--profile" not in commands[2] and "--optShapes=input:16x3x224x224" in commands[2]
    assert commands[3].endswith("--allocationStrategy=profile") and commands[4].endswith("--allocationStrategy=runtime")
    assert all("--shapes=input:8x3x224x224" in c for c in commands)
    assert all("--useProfile=0" in c for c in commands[:2] + commands[3:])


def test_standing_out_keys_are_what_stands_out_and_its_neighbours():
    assert lab.standing_out_keys(_visit_rows(VISITS)) == [12, 16, 24]
    assert lab.standing_out_keys(_visit_rows({1: 5.0, 2: 1.0, 4: 1.0})) == [1, 2]
    assert lab.standing_out_keys(_visit_rows({b: 1.6 for b in VISITS})) == []


def test_a_static_compile_slower_only_inside_the_noise_is_remarked_as_such():
    noisy = lab.CompileStudy(False, [], {4: _measurements(0.30, 4, 0.1, factors=(0.6, 0.8, 1.0, 1.3, 1.6))})
    eager = {4: _measurements(0.28, 4, 0.2, factors=(0.7, 0.9, 1.0, 1.2, 1.5))}
    rows = lab.compile_steady_rows(noisy, noisy, eager)
    assert rows[0]["static_vs_eager"] < 1 and not rows[0]["static_vs_eager_significant"]
    (note,) = lab.compile_notes(rows)
    assert note.startswith("batch 4: static compile at 0.93x eager on event time (interval ")
    assert note.endswith("inside the run-to-run noise, no slowdown shown")
