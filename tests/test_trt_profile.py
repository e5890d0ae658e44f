"""LayerTimes aggregation and the IProfiler adapter (with a stand-in tensorrt module)."""

import json
import sys
import types

import pytest

from common.trt.profile import LayerTimes, attach_profiler


def filled():
    lt = LayerTimes()
    for run_ms in ([1.0, 0.2, 3.0], [2.0, 0.2, 5.0], [1.5, 0.2, 4.0]):
        for name, ms in zip(["conv1 + relu1", "pool", "fc"], run_ms):
            lt.add(name, ms)
    return lt


def test_statistics():
    lt = filled()
    assert lt.runs == 3 and lt.layers == ["conv1 + relu1", "pool", "fc"]
    assert lt.median_ms("conv1 + relu1") == 1.5
    assert lt.mean_ms("fc") == pytest.approx(4.0)
    assert lt.total_ms("fc") == pytest.approx(12.0)
    assert lt.total_ms() == pytest.approx(4.5 + 0.6 + 12.0)
    assert lt.median_run_ms() == pytest.approx(1.5 + 0.2 + 4.0)
    assert sum(lt.share(n) for n in lt.layers) == pytest.approx(1.0)
    assert lt.samples_ms("pool") == [0.2, 0.2, 0.2]


def test_table_sorted_by_time_and_top():
    rows = filled().table()
    assert [r["layer"] for r in rows] == ["fc", "conv1 + relu1", "pool"]
    assert rows[0]["share_pct"] == pytest.approx(100 * 12.0 / 17.1)
    assert rows[0]["samples"] == 3 and rows[0]["median_ms"] == 4.0
    assert [r["layer"] for r in filled().table(top=1)] == ["fc"]


def test_to_dict_and_reset():
    lt = filled()
    d = json.loads(json.dumps(lt.to_dict()))
    assert d["runs"] == 3 and d["layers"][0]["layer"] == "fc"
    lt.reset()
    assert lt.runs == 0 and lt.total_ms() == 0 and lt.table() == [] and lt.median_run_ms() == 0


def test_layers_seen_in_fewer_runs():
    lt = LayerTimes()
    lt.add("a", 1)
    lt.add("a", 3)
    lt.add("b", 2)
    assert lt.runs == 2 and lt.share("b") == pytest.approx(2 / 6)


def test_attach_profiler_forwards_reports(monkeypatch):
    base_inits = []

    class IProfiler:  # trt.IProfiler: __init__(self), report_layer_time(self, layer_name, ms)
        def __init__(self):
            base_inits.append(self)

        def report_layer_time(self, layer_name, ms):
            raise AssertionError("the subclass must override report_layer_time")

    fake = types.ModuleType("tensorrt")
    fake.IProfiler = IProfiler
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    context = types.SimpleNamespace(profiler=None)
    lt = LayerTimes()
    profiler = attach_profiler(context, lt)
    assert context.profiler is profiler and isinstance(profiler, IProfiler)
    assert base_inits == [profiler]  # the base __init__ was called explicitly
    profiler.report_layer_time("conv1", 0.25)
    profiler.report_layer_time("conv1", 0.75)
    assert lt.samples_ms("conv1") == [0.25, 0.75]
    assert profiler in lt._keep_alive


def test_profile_layers_drops_the_warmup_and_detaches_and_share_pct_sums_the_named_layers(monkeypatch):
    from common.trt.profile import profile_layers, share_pct

    class IProfiler:
        def __init__(self):
            pass

    fake = types.ModuleType("tensorrt")
    fake.IProfiler = IProfiler
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    context = types.SimpleNamespace(profiler=None)

    class Runner:   # an EngineRunner whose enqueue reports two layers to the attached profiler
        calls = 0

        def context(self, ctx_index=0):
            return context

        def enqueue(self, ctx_index=0):
            Runner.calls += 1
            context.profiler.report_layer_time("gemm", 3.0 if Runner.calls > 2 else 50.0)
            context.profiler.report_layer_time("reformat", 1.0)

        def synchronize(self, ctx_index=0):
            pass

    times = profile_layers(Runner(), runs=4, warmup=2)
    assert Runner.calls == 6 and times.runs == 4 and times.median_ms("gemm") == 3.0
    assert context.profiler is None   # detached: later enqueues are plain again
    assert share_pct(times, ["reformat"]) == pytest.approx(25.0) and share_pct(LayerTimes(), ["x"]) == 0.0
