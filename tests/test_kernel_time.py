"""Kernel time: the pure parts on synthetic intervals (any machine), the CUPTI pass on a GPU."""

import math

import pytest
import torch

from common import bench

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="kernel time needs a GPU (CUPTI)")


def test_union_counts_overlap_once():
    assert bench.interval_union([]) == 0.0
    assert bench.interval_union([(0, 2), (1, 3), (5, 6)]) == 4.0           # two streams overlapping, then a gap
    assert bench.interval_union([(5, 6), (0, 10)]) == 10.0                 # one interval inside another, any order
    assert bench.interval_union([(0, 1), (1, 2)]) == 2.0                   # touching: no double count, no gap
    with pytest.raises(ValueError, match="ends before it starts"):
        bench.interval_union([(3, 1)])


def test_each_interval_belongs_to_the_iteration_it_starts_in():
    windows = [(0, 10), (10, 20)]
    intervals = [(1, 3), (2, 4), (9, 12), (11, 13), (25, 26), (-5, -1)]   # last two: in no iteration
    assert bench.attribute(intervals, windows) == [[(1, 3), (2, 4), (9, 10)], [(11, 13)]]
    rows = bench.per_iteration(intervals, windows)
    assert rows == [(4.0, 5.0, 3), (2.0, 2.0, 1)]                        # (union, plain sum, count)


def test_kernel_time_takes_per_iteration_medians_in_milliseconds():
    ns = 1_000_000
    windows = [(0, 10 * ns), (10 * ns, 20 * ns), (20 * ns, 30 * ns)]
    work = [(0, 2 * ns), (1 * ns, 3 * ns), (10 * ns, 12 * ns), (20 * ns, 29 * ns)]
    copies = [(20 * ns, 21 * ns)]
    kt = bench.kernel_time_of(work, copies, windows)
    assert kt.per_iteration_ms == (3.0, 2.0, 9.0)
    assert (kt.union_ms, kt.sum_ms, kt.copy_ms, kt.activities_per_iter, kt.iterations) == (3.0, 4.0, 0.0, 1, 3)
    assert bench.kernel_time_of(work, copies, []) is None


@pytest.mark.parametrize("busy, regime", [
    (0.95, bench.DEVICE_BOUND), (0.8, bench.DEVICE_BOUND), (0.79, bench.MIXED), (0.5, bench.MIXED),
    (0.49, bench.HOST_BOUND), (0.05, bench.HOST_BOUND), (float("nan"), bench.NOT_MEASURED),
])
def test_regime_follows_from_busy(busy, regime):
    assert bench.regime_of(busy) == regime
    assert bench.regime_of(busy, "cpu") == bench.CPU_REGIME


def test_the_pass_is_switched_by_keyword_and_environment(monkeypatch):
    monkeypatch.delenv(bench.KERNEL_TIME_ENV, raising=False)
    assert bench.kernel_time_enabled() and not bench.kernel_time_enabled(False)
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv(bench.KERNEL_TIME_ENV, off)
        assert not bench.kernel_time_enabled() and bench.kernel_time_enabled(True)
    monkeypatch.setenv(bench.KERNEL_TIME_ENV, "maybe")
    with pytest.raises(ValueError, match="TRTLABS_KERNEL_TIME"):
        bench.kernel_time_enabled()


def test_the_pass_profiles_about_3_ms():
    assert bench.kernel_iterations(0.01) == bench.KERNEL_TIME_MAX_ITERS == 30
    assert bench.kernel_iterations(1.0) == 3
    assert bench.kernel_iterations(0.25) == 12
    assert bench.kernel_iterations(200.0) == 1
    assert bench.kernel_iterations(0.0) == bench.KERNEL_TIME_MAX_ITERS


def _run(event_ms: float, kernel: bool, device: str = "cuda") -> bench.Measurement:
    s = bench.Stats.of([event_ms])
    kt = bench.KernelTime(union_ms=event_ms / 2, sum_ms=event_ms / 2, copy_ms=0.0, activities_per_iter=3,
                          iterations=5) if kernel else None
    return bench.Measurement("x", "b", device, 1, s, s, event_ms, 10, 0.0, "cuda-events", kernel=kt)


def test_kernel_time_in_the_first_pass_names_the_regime_of_all_passes():
    assert [bench.kernel_time_in(p) for p in range(3)] == [None, False, False]
    runs = [_run(2.0, True), _run(1.0, False), _run(1.2, False)]
    fields = bench.kernel_fields(runs)
    # busy from the pass that carries kernel time, against that pass's own event time (not the median's)
    assert fields["kernel_ms"] == 1.0 and fields["gpu_busy"] == pytest.approx(0.5)
    assert fields["regime"] == bench.MIXED
    assert math.isnan(bench.median_kernel_ms(runs))   # a comparison on kernel time still needs every pass
    with pytest.raises(ValueError, match="no kernel time"):
        bench.compare(runs, runs, on="kernel")
    none = bench.kernel_fields([_run(1.0, False), _run(1.0, False)])
    assert math.isnan(none["kernel_ms"]) and none["regime"] == bench.regime_of(float("nan"))


def test_interleaved_passes_read_kernel_time_in_every_pass_or_in_the_first_only(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "measure", lambda **kw: seen.append((kw["name"], kw.get("kernel_time", "default")))
                        or _measurement(0.1))
    bench.measure_interleaved({"a": {"fn": None, "name": "a"}, "b": {"fn": None, "name": "b"}}, passes=3)
    assert seen == [(n, "default") for _ in range(3) for n in "ab"]
    seen.clear()
    bench.measure_interleaved({"a": {"fn": None, "name": "a"}}, passes=3, kernel_every_pass=False)
    assert seen == [("a", None), ("a", False), ("a", False)]


class _Event:
    def __init__(self, name, device, kind, start, end, stream=7):
        self._v = name, device, kind, start, end, stream

    def name(self):
        return self._v[0]

    def device_type(self):
        return self._v[1]

    def activity_type(self):
        return self._v[2]

    def start_ns(self):
        return self._v[3]

    def end_ns(self):
        return self._v[4]

    def device_resource_id(self):
        return self._v[5]


def test_device_work_is_kernels_copies_and_memsets_only():
    from torch.autograd import DeviceType

    events = [
        _Event("cudaGraphLaunch", DeviceType.CPU, "cuda_runtime", 5, 8),
        _Event("a region", DeviceType.CUDA, "gpu_user_annotation", 10, 90),   # spans the kernels: not work
        _Event("Context Sync", DeviceType.CUDA, "cuda_sync", 60, 95),
        _Event("ampere_h16816gemm", DeviceType.CUDA, "kernel", 10, 50),
        _Event("Memcpy HtoD (Pinned -> Device)", DeviceType.CUDA, "gpu_memcpy", 40, 70, stream=9),
        _Event("Memset (Device)", DeviceType.CUDA, "gpu_memset", 80, 81),
    ]
    work, copies, streams = bench.device_activities(events)
    assert work == [(10, 50), (40, 70), (80, 81)] and copies == [(40, 70), (80, 81)] and streams == 2
    kt = bench.kernel_time_of_run(work, copies, 1, streams)
    assert kt.union_ms == pytest.approx(61e-6) and kt.sum_ms == pytest.approx(71e-6)
    assert kt.streams == 2 and kt.several_streams


def test_back_to_back_iterations_are_averaged_over_the_session():
    ns = 1_000_000
    work = [(0, 2 * ns), (1 * ns, 3 * ns), (10 * ns, 12 * ns), (20 * ns, 29 * ns)]   # 3 iterations' kernels
    kt = bench.kernel_time_of_run(work, [(20 * ns, 21 * ns)], iterations=3)
    assert (kt.union_ms, kt.sum_ms, kt.copy_ms, kt.activities_per_iter, kt.iterations) == \
        pytest.approx((14 / 3, 15 / 3, 1 / 3, 4 / 3, 3))
    assert kt.streams == 1 and not kt.several_streams
    assert bench.kernel_time_of_run([], [], iterations=3).union_ms == 0.0
    assert bench.kernel_time_of_run(work, [], iterations=0) is None


def test_measurement_keeps_kernel_time_through_json(tmp_path):
    s = bench.Stats.of([2.0])
    kt = bench.KernelTime(union_ms=1.9, sum_ms=2.1, copy_ms=0.0, activities_per_iter=40, iterations=5,
                          per_iteration_ms=(1.9, 1.8, 2.0, 1.9, 1.9))
    m = bench.Measurement("mlp", "x", "cuda", 8, s, s, 2.0, 10, 0.0, "cuda-events", kernel=kt)
    assert (m.event_ms, m.kernel_ms, m.kernel_sum_ms) == (2.0, 1.9, 2.1)
    assert m.gpu_busy == pytest.approx(0.95) and m.regime == bench.DEVICE_BOUND
    assert "95% busy: device-bound" in m.summary()
    path = tmp_path / "m.json"
    bench.save_measurements([m], path)
    (back,) = bench.load_measurements(path)
    assert back == m
    old = bench.Measurement("old", "x", "cuda", 1, s, s, 2.0, 10, 0.0, "cuda-events")   # as callers build it
    assert math.isnan(old.kernel_ms) and old.regime == bench.NOT_MEASURED
    d = old.to_dict()
    del d["kernel"], d["kernel_note"]                      # a file written before kernel time existed
    assert bench.Measurement.from_dict(d) == old


def test_kernel_fields_for_a_table_row():
    def run(event, kernel):
        s = bench.Stats.of([event])
        kt = bench.KernelTime(kernel, kernel, 0.0, 1, 1) if kernel is not None else None
        return bench.Measurement("m", "x", "cuda", 1, s, s, event, 1, 0.0, "cuda-events", kernel=kt)

    row = bench.kernel_fields([run(1.0, 0.1), run(1.2, 0.1), run(1.1, 0.1)])
    assert row["kernel_ms"] == 0.1 and row["gpu_busy"] == pytest.approx(0.1 / 1.1) and row["regime"] == bench.HOST_BOUND
    assert math.isnan(bench.kernel_fields([run(1.0, None)])["kernel_ms"])
    assert bench.kernel_fields([run(1.0, None)])["regime"] == bench.NOT_MEASURED
    # the regime every pass names: one pass the host paced (busy 4.1 / 6.07 = 68%) makes the point mixed,
    # although the median busy share (90%) is device-bound
    passes = [run(4.54, 4.1), run(4.55, 4.1), run(6.07, 4.1), run(4.5, 4.1), run(4.56, 4.1)]
    row = bench.kernel_fields(passes)
    assert row["gpu_busy"] > bench.DEVICE_BOUND_BUSY and row["regime"] == bench.MIXED
    assert bench.kernel_fields(passes[:2] + passes[3:])["regime"] == bench.DEVICE_BOUND


def test_cpu_measurements_are_labelled_cpu():
    m = bench.measure(lambda: sum(range(100)), device="cpu", warmup_ms=2, measure_ms=5)
    assert m.kernel is None and m.regime == bench.CPU_REGIME


# -- on a GPU -----------------------------------------------------------------------------------

@gpu
def test_a_large_matmul_is_device_bound_and_kernel_time_matches_events():
    from common.benchmarks import validate_harness as vh

    m = bench.measure(vh.matmul_case(4096), measure_ms=300)
    assert m.kernel is not None, m.kernel_note
    assert m.kernel_ms == pytest.approx(m.event_ms, rel=0.05)
    assert m.regime == bench.DEVICE_BOUND


@gpu
def test_a_narrow_mlp_is_host_bound_eager_and_device_bound_as_a_cuda_graph():
    from common.benchmarks import validate_harness as vh

    eager, replay = vh.mlp_cases()
    e = bench.measure(eager, measure_ms=300)
    g = bench.measure(replay, measure_ms=300)
    assert e.gpu_busy < 0.5 and e.regime == bench.HOST_BOUND, e.summary()
    assert g.gpu_busy > 0.8 and g.regime == bench.DEVICE_BOUND, g.summary()
    # kernels inside the graph replay are seen: as many per iteration as eager, about as long
    assert e.kernel.activities_per_iter >= vh.MLP_LAYERS and g.kernel.activities_per_iter >= vh.MLP_LAYERS
    assert g.kernel.activities_per_iter == pytest.approx(e.kernel.activities_per_iter, rel=0.1)
    assert g.kernel_ms == pytest.approx(e.kernel_ms, rel=0.3)


@gpu
def test_kernels_on_two_streams_at_once_count_once():
    from common.benchmarks import validate_harness as vh

    m = bench.measure(vh.two_streams_case(), measure_ms=200)
    assert m.kernel.activities_per_iter == 2
    assert m.kernel_ms < 0.75 * m.kernel_sum_ms


@gpu
def test_a_triton_kernel_is_counted():
    from common.benchmarks import validate_harness as vh

    fn = vh.triton_case()
    if fn is None:
        pytest.skip("needs Triton")
    m = bench.measure(fn, measure_ms=200)
    assert m.kernel.activities_per_iter >= 1 and m.kernel_ms > 0


@gpu
def test_torch_compile_output_is_counted():
    from common import env

    if not env.has_triton():
        pytest.skip("torch.compile on a GPU needs Triton")
    x = torch.randn(1 << 22, device="cuda")
    fn = torch.compile(lambda t: torch.relu(t) * 2 + 1)
    m = bench.measure(lambda: fn(x), measure_ms=200)
    assert m.kernel.activities_per_iter >= 1 and m.kernel_ms > 0


@gpu
def test_a_copy_counts_as_device_work():
    from common.benchmarks import validate_harness as vh

    m = bench.measure(vh.copy_case(64 << 20), measure_ms=200)
    assert m.kernel.copy_ms > 0 and m.kernel_ms >= m.kernel.copy_ms
    assert m.regime == bench.DEVICE_BOUND


@gpu
def test_cusparselt_kernels_are_counted(monkeypatch):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("2:4 sparsity needs compute capability 8.0")
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    monkeypatch.setattr(SparseSemiStructuredTensor, "_FORCE_CUTLASS", False)
    mask = torch.tensor([0, 0, 1, 1], device="cuda", dtype=torch.float16).tile((1024, 256))
    w = torch.rand(1024, 1024, device="cuda", dtype=torch.float16) * mask
    try:
        ws = to_sparse_semi_structured(w)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"cuSPARSELt not usable here: {exc}")
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    m = bench.measure(lambda: torch.mm(ws, x), measure_ms=200)
    assert m.kernel.activities_per_iter >= 1 and m.kernel_ms > 0


@gpu
def test_switched_off_the_pass_does_not_run(monkeypatch):
    monkeypatch.setenv(bench.KERNEL_TIME_ENV, "0")
    m = bench.measure(lambda: torch.cuda._sleep(1000), measure_ms=20)
    assert m.kernel is None and "switched off" in m.kernel_note and m.regime == bench.NOT_MEASURED


@gpu
def test_a_shared_session_reads_host_paced_loops_and_leaves_queued_ones_to_their_own():
    from common.benchmarks import validate_harness as vh

    eager, _ = vh.mlp_cases()
    x = torch.randn(64, 64, device="cuda")
    own = bench.measure(eager, measure_ms=200)
    assert own.host_paced
    before = bench.kernel_pass_cost()
    with bench.shared_kernel_session():
        h = bench.measure(vh.matmul_case(4096), measure_ms=200)  # its queue builds up: read right after its loop
        e = bench.measure(eager, measure_ms=200)
        v = bench.measure(lambda: x.t(), measure_ms=50)          # a view: launches nothing
        assert h.kernel is not None and not h.host_paced and e.kernel is None and e.kernel_note == bench.PENDING_NOTE
    after = bench.kernel_pass_cost()
    assert after["shared_measurements"] - before["shared_measurements"] == 2, e.kernel_note
    assert after["passes"] - before["passes"] == 2               # the GEMM's own session and the shared one
    assert e.kernel.activities_per_iter == own.kernel.activities_per_iter
    assert e.kernel_ms == pytest.approx(own.kernel_ms, rel=0.15)
    assert v.kernel is None and v.kernel_note == bench.NO_DEVICE_WORK


def test_the_kernel_pass_runs_right_after_the_timed_loop_before_it_drains(monkeypatch):
    """Queued behind the loop, before the stream is synchronised: the GPU does not idle between them
    (an idle GPU comes back at its boost clock, faster than the power-limited loop)."""
    import contextlib

    import torch

    calls = []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            self.t = 0.0

        def record(self, stream=None):
            self.t = len(calls)

        def elapsed_time(self, other):
            return 1.0

        def query(self):
            calls.append("query")
            return False

    class FakeStream:
        def synchronize(self):
            calls.append("sync")

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda.nvtx, "range", lambda name: contextlib.nullcontext())
    m = bench._measure_cuda(lambda: calls.append("call"), "n", "b", 1, FakeStream(), 0.0, 0.0, 5, 5, {},
                            after_loop=lambda per_call_ms, caught_up: calls.append(("pass", per_call_ms > 0, caught_up)))
    assert calls[:4] == ["call", "sync", "call", "sync"]          # the warm-up: at least two calls
    assert calls[4:9] == ["call"] * 5 and m.iterations == 5       # the timed loop, no sync inside
    # then whether the GPU has caught up (an event query, no wait), the pass, then the one sync
    assert calls[9:] == ["query", ("pass", True, False), "sync"]
    assert m.wall_ms_per_iter == pytest.approx(1.0 / 5)           # the loop's span over its iterations


def test_several_streams_are_flagged_in_the_note(monkeypatch):
    kt = bench.KernelTime(union_ms=0.12, sum_ms=0.2, copy_ms=0.0, activities_per_iter=2, iterations=3, streams=2)
    monkeypatch.setattr(bench, "_cupti_problem", lambda: "")
    monkeypatch.setattr(bench, "_cuda_stream", lambda s: s)

    def fake_measure_cuda(fn, *args, after_loop=None, **kwargs):
        after_loop(0.1, False)
        return _measurement(0.1)

    monkeypatch.setattr(bench, "_measure_cuda", fake_measure_cuda)
    monkeypatch.setattr(bench, "measure_kernel_time", lambda fn, stream, n: (kt, ""))
    m = bench.measure(lambda: None, device="cuda", kernel_time=True)
    assert m.kernel is kt and "2 streams" in m.kernel_note and m.gpu_busy == pytest.approx(1.2)


def _measurement(event_ms):
    s = bench.Stats.of([event_ms])
    return bench.Measurement(name="n", backend="b", device="cuda", batch_size=1, latency_ms=s, host_ms=s,
                             wall_ms_per_iter=event_ms, iterations=1, warmup_ms=0.0, timer="cuda-events")


def test_the_pass_cost_leaves_out_the_loops_own_queued_work(monkeypatch):
    """A pass that starts while the loop's work still runs waits for it: that wait is the loop's."""
    monkeypatch.setattr(bench, "_PASS_COST", {"pass_seconds": 0.0, "passes": 0, "cupti_start_seconds": 0.0,
                                              "loop_tail_seconds": 0.0, "shared_measurements": 0})
    kt = bench.KernelTime(union_ms=0.2, sum_ms=0.2, copy_ms=0.0, activities_per_iter=1, iterations=50)

    def fake_measure_cuda(fn, *args, after_loop=None, **kwargs):
        after_loop(0.2, False)
        s, host = bench.Stats.of([0.2]), bench.Stats.of([0.01])
        return bench.Measurement(name="n", backend="b", device="cuda", batch_size=1, latency_ms=s, host_ms=host,
                                 wall_ms_per_iter=0.2, iterations=100, warmup_ms=0.0, timer="cuda-events")

    def fake_pass(fn, stream, n):
        bench._PASS_COST["pass_seconds"] += 0.030     # 19 ms of the loop's queue, then 11 ms of its own
        bench._PASS_COST["passes"] += 1
        return kt, ""

    monkeypatch.setattr(bench, "_measure_cuda", fake_measure_cuda)
    monkeypatch.setattr(bench, "_cupti_problem", lambda: "")
    monkeypatch.setattr(bench, "_cuda_stream", lambda s: s)
    monkeypatch.setattr(bench, "measure_kernel_time", fake_pass)
    bench.measure(lambda: None, device="cuda", kernel_time=True)
    cost = bench.kernel_pass_cost()
    assert cost["loop_tail_seconds"] == pytest.approx(0.019) and cost["pass_seconds"] == pytest.approx(0.011)


# -- one shared session per pass for host-paced loops -------------------------------------------

def _fake_loops(monkeypatch, caught_up: dict, adjacent: list):
    """measure() on a fake GPU: each fn's loop reports `caught_up[fn]`; an own session records its fn."""
    monkeypatch.setattr(bench, "_cupti_problem", lambda: "")
    monkeypatch.setattr(bench, "_cuda_stream", lambda s: s)
    monkeypatch.setattr(bench, "_PASS_COST", {"pass_seconds": 0.0, "passes": 0, "cupti_start_seconds": 0.0,
                                              "loop_tail_seconds": 0.0, "shared_measurements": 0})

    def fake_measure_cuda(fn, *args, after_loop=None, **kwargs):
        after_loop(0.1, caught_up[fn])
        return _measurement(0.1)

    def own_session(fn, stream, n):
        adjacent.append(fn)
        return bench.KernelTime(union_ms=0.09, sum_ms=0.09, copy_ms=0.0, activities_per_iter=1, iterations=n), ""

    monkeypatch.setattr(bench, "_measure_cuda", fake_measure_cuda)
    monkeypatch.setattr(bench, "measure_kernel_time", own_session)


def test_a_loop_that_left_work_queued_gets_the_shorter_window(monkeypatch):
    def host_paced(): pass
    def queued(): pass
    _fake_loops(monkeypatch, {host_paced: True, queued: False}, [])   # its own sessions profile `n` iterations
    windows = [(fn, bench.measure(fn, device="cuda", kernel_time=True).kernel.iterations)   # 0.1 ms per call
               for fn in (host_paced, queued)]                                               # no shared block
    assert bench.QUEUED_KERNEL_TIME_BUDGET_MS < bench.KERNEL_TIME_BUDGET_MS
    assert windows == [(host_paced, bench.kernel_iterations(0.1, bench.KERNEL_TIME_BUDGET_MS)),
                       (queued, bench.kernel_iterations(0.1, bench.QUEUED_KERNEL_TIME_BUDGET_MS))]
    assert windows[0][1] > windows[1][1] >= 1


def test_host_paced_loops_in_a_shared_block_are_read_together_at_its_end(monkeypatch):
    def host_paced(): pass
    def view(): pass
    def queued(): pass
    adjacent, shared = [], []
    _fake_loops(monkeypatch, {host_paced: True, view: True, queued: False}, adjacent)
    kt = bench.KernelTime(union_ms=0.01, sum_ms=0.01, copy_ms=0.0, activities_per_iter=1, iterations=30)

    def one_session(items):
        shared.append([fn for fn, _, _ in items])
        return [(kt, ""), (None, bench.NO_DEVICE_WORK)]

    monkeypatch.setattr(bench, "_profile_shared", one_session)
    with bench.shared_kernel_session():
        a = bench.measure(host_paced, device="cuda", kernel_time=True)
        b = bench.measure(queued, device="cuda", kernel_time=True)     # the queue built up: its own session, now
        c = bench.measure(view, device="cuda", kernel_time=True)
        assert adjacent == [queued] and b.kernel is not None
        assert a.kernel is None and a.kernel_note == bench.PENDING_NOTE and not shared
    assert shared == [[host_paced, view]]                               # one session, in the order measured
    assert a.kernel is kt and a.kernel_note == ""
    assert c.kernel is None and c.kernel_note == bench.NO_DEVICE_WORK   # no retry: the session saw work
    cost = bench.kernel_pass_cost()
    assert cost["passes"] == 1 and cost["shared_measurements"] == 2     # the fake own session is not counted


def test_outside_a_block_a_host_paced_loop_gets_its_own_session(monkeypatch):
    def host_paced(): pass
    adjacent = []
    _fake_loops(monkeypatch, {host_paced: True}, adjacent)
    monkeypatch.setattr(bench, "_profile_shared", lambda items: pytest.fail("no shared session outside a block"))
    m = bench.measure(host_paced, device="cuda", kernel_time=True)
    assert adjacent == [host_paced] and m.kernel is not None


def test_a_shared_session_that_cannot_be_split_falls_back_to_own_sessions(monkeypatch):
    def f(): pass
    def g(): pass
    adjacent = []
    _fake_loops(monkeypatch, {f: True, g: True}, adjacent)
    monkeypatch.setattr(bench, "_profile_shared", lambda items: None)
    with bench.shared_kernel_session():
        with bench.shared_kernel_session():   # nested: the outer block's session takes them
            m = bench.measure(f, device="cuda", kernel_time=True)
        assert m.kernel_note == bench.PENDING_NOTE
        n = bench.measure(g, device="cuda", kernel_time=True)
    assert adjacent == [f, g] and m.kernel is not None and n.kernel is not None


def test_a_block_that_raises_says_its_measurements_were_not_read(monkeypatch):
    def f(): pass
    _fake_loops(monkeypatch, {f: True}, [])
    monkeypatch.setattr(bench, "_profile_shared", lambda items: pytest.fail("no session after an error"))
    with pytest.raises(KeyError):
        with bench.shared_kernel_session():
            m = bench.measure(f, device="cuda", kernel_time=True)
            raise KeyError("x")
    assert m.kernel is None and "raised" in m.kernel_note and not bench._SHARED


def test_each_window_owns_the_records_that_ran_wholly_inside_it():
    from torch.autograd import DeviceType

    k = lambda s, e: ("kernel", _Event("k", DeviceType.CUDA, "kernel", s, e))
    windows = [(100, 200), (210, 400), (410, 500)]
    split = bench.split_by_windows([k(105, 150), k(220, 260), k(300, 399), k(410, 500)], windows)
    assert [[ev.start_ns() for _, ev in w] for w in split] == [[105], [220, 300], [410]]
    assert bench.split_by_windows([k(105, 150), k(190, 205)], windows) is None    # ends after its window
    assert bench.split_by_windows([k(50, 60)], windows) is None                   # before every window
    assert bench.split_by_windows([k(202, 208)], windows) is None                 # between two windows
    assert bench.split_by_windows([], windows) is None                            # nothing recorded
    assert [len(w) for w in bench.split_by_windows([k(420, 430)], windows)] == [0, 0, 1]


def test_passes_after_the_first_run_last_passes_host_paced_configurations_first_in_one_block():
    """Pass 0 in the given order, each read after its own loop; later passes: what the host paced in the
    pass before first, inside one shared block (so its session follows light work), then the rest."""
    paced = {"a": [False, False, False], "b": [True, True, True], "c": [False, True, False], "d": [True, True, True]}
    seen = []

    def one(key, p):
        seen.append((p, key, len(bench._SHARED)))
        m = _measurement(0.1)
        m.host_paced = paced[key][p]
        return m

    runs = bench.interleaved_passes(list("abcd"), 3, one)
    assert seen == [(0, "a", 0), (0, "b", 0), (0, "c", 0), (0, "d", 0),
                    (1, "b", 1), (1, "d", 1), (1, "a", 0), (1, "c", 0),
                    (2, "b", 1), (2, "c", 1), (2, "d", 1), (2, "a", 0)]
    assert {k: len(v) for k, v in runs.items()} == {k: 3 for k in "abcd"}
    seen.clear()
    bench.interleaved_passes(list("abcd"), 2, one, share=False)   # kernel time in the first pass only: as given
    assert seen == [(p, k, 0) for p in range(2) for k in "abcd"]


def test_case_sweeps_and_interleaved_measurements_order_passes_alike(monkeypatch):
    from common import cases

    calls = []
    real = bench.interleaved_passes
    monkeypatch.setattr(bench, "interleaved_passes", lambda keys, passes, one, **kw: calls.append((keys, passes, kw))
                        or real(keys, passes, one, **kw))
    ran = []
    c = [cases.Case(label=x, precision="fp32", fn=lambda x=x: ran.append(x), flops=1) for x in "xy"]
    runs = cases.measure_cases(c, device="cpu", passes=2, warmup_ms=0, measure_ms=0, progress=False)
    assert calls[0][:2] == (["x", "y"], 2) and [len(runs[k]) for k in "xy"] == [2, 2]
    bench.measure_interleaved({"a": {"fn": lambda: None}}, passes=2, device="cpu", warmup_ms=0, measure_ms=0,
                              kernel_every_pass=False)
    assert calls[1][:2] == (["a"], 2) and calls[1][2] == {"share": False}
