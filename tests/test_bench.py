import json
import time

import pytest
import torch

from common import bench


def test_stats_quantiles_match_numpy():
    np = pytest.importorskip("numpy")
    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0]
    s = bench.Stats.of(xs)
    assert s.median == pytest.approx(np.median(xs))
    assert s.p10 == pytest.approx(np.quantile(xs, 0.10))
    assert s.p90 == pytest.approx(np.quantile(xs, 0.90))
    assert s.p99 == pytest.approx(np.quantile(xs, 0.99))
    assert (s.min, s.max, s.n) == (1.0, 10.0, 7)
    with pytest.raises(ValueError):
        bench.Stats.of([])


def test_cpu_measure_times_a_sleep_and_warms_up_first():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    m = bench.measure(fn, device="cpu", batch_size=4, warmup_ms=20, measure_ms=60, min_iters=5)
    assert m.timer == "perf_counter" and m.device == "cpu"
    assert 1.9 <= m.latency_ms.median < 10
    assert m.warmup_ms >= 20 and len(calls) >= m.iterations + 2
    assert m.throughput_per_s == pytest.approx(4 / (m.latency_ms.median / 1e3))
    assert "batch 4" in m.throughput_formula() and "/ median latency" in m.throughput_formula()


def test_iteration_count_fills_the_budget_within_limits():
    assert bench._iterations(1.0, 100, 10, 1000) == 100
    assert bench._iterations(50.0, 100, 10, 1000) == 10
    assert bench._iterations(0.001, 100, 10, 1000) == 1000


def test_measurement_round_trips_through_json(tmp_path):
    m = bench.measure(lambda: sum(range(100)), device="cpu", warmup_ms=5, measure_ms=10, name="sum")
    path = tmp_path / "m.json"
    bench.save_measurements([m], path)
    (back,) = bench.load_measurements(path)
    assert back == m
    assert json.loads(path.read_text())[0]["throughput_per_s"] == pytest.approx(m.throughput_per_s)


def test_comparison_calls_differences_inside_the_spread_noise():
    def fake(name, median):
        s = bench.Stats.of([median])
        return bench.Measurement(name, "x", "cpu", 1, s, s, median, 1, 0.0, "perf_counter")

    noisy = bench.compare([fake("a", 1.00), fake("a", 1.10)], [fake("b", 0.98), fake("b", 1.0)])
    assert not noisy.significant and "noise" in noisy.verdict()
    real = bench.compare([fake("a", 2.0), fake("a", 2.02)], [fake("b", 1.0), fake("b", 1.01)])
    assert real.significant and real.speedup == pytest.approx(2.01 / 1.005)
    with pytest.raises(ValueError, match="two runs"):
        bench.spread_pct([1.0])


def test_gc_is_paused_while_timing_and_restored():
    import gc

    seen = []
    bench.measure(lambda: seen.append(gc.isenabled()), device="cpu", warmup_ms=1, measure_ms=2, min_iters=3)
    assert gc.isenabled()
    assert seen[-1] is False   # the timed calls ran with the collector off


def test_default_stream_is_refused():
    if not torch.cuda.is_available():
        with pytest.raises(TypeError):
            bench._cuda_stream(object())
        return
    with pytest.raises(ValueError, match="default stream"):
        bench._cuda_stream(torch.cuda.default_stream())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA events need a GPU")
def test_cuda_measure_agrees_with_a_bare_event_loop():
    # A device-bound kernel of fixed length: both loops must read the same time.
    sleep = lambda: torch.cuda._sleep(50_000)  # noqa: E731
    m = bench.measure(sleep, warmup_ms=50, measure_ms=100)
    bare = bench.Stats.of(bench.bare_event_loop(sleep, iterations=2000)).median
    assert m.timer == "cuda-events"
    assert m.latency_ms.median == pytest.approx(bare, rel=0.05)


def test_measure_interleaved_alternates_configurations():
    order = []
    configs = {"a": {"fn": lambda: order.append("a"), "name": "a"}, "b": {"fn": lambda: order.append("b"), "name": "b"}}
    runs = bench.measure_interleaved(configs, passes=2, device="cpu", warmup_ms=1, measure_ms=2, min_iters=3)
    assert [len(v) for v in runs.values()] == [2, 2] and runs["b"][0].name == "b"
    # a's calls, then b's, then a's again: never one configuration's two passes back to back
    switches = [x for i, x in enumerate(order) if i == 0 or order[i - 1] != x]
    assert switches == ["a", "b", "a", "b"]


def test_median_of_repeated_runs_takes_each_runs_median():
    def run(latency_ms, host_ms):
        return bench.Measurement("m", "x", "cpu", 1, bench.Stats.of(latency_ms), bench.Stats.of(host_ms),
                                 0.0, len(latency_ms), 0.0, "perf_counter")

    runs = [run([1.0, 2.0, 9.0], [0.1]), run([3.0, 4.0, 5.0], [0.3]), run([6.0], [0.2])]
    assert bench.median_latency_ms(runs) == 4.0   # medians 2, 4, 6
    assert bench.median_host_ms(runs) == 0.2


def _passes(name, medians):
    def one(median):
        s = bench.Stats.of([median])
        return bench.Measurement(name, "x", "cpu", 1, s, s, median, 1, 0.0, "perf_counter")

    return [one(x) for x in medians]


def test_comparisons_take_five_passes_and_carry_a_bootstrap_interval():
    assert bench.PASSES == 5
    a, b = _passes("a", [1.00, 1.02, 0.99, 1.01, 1.00]), _passes("b", [0.50, 0.52, 0.49, 0.50, 0.51])
    c = bench.compare(a, b)
    lo, hi = c.interval
    assert lo < c.speedup < hi and 1.9 < lo and hi < 2.1 and c.significant and c.passes == 5
    assert "95% interval" in c.verdict() and "0.99-1.02 ms" in c.spread_text()
    assert bench.compare(a, b).interval == (lo, hi)                      # seeded: the same every time
    noisy = bench.compare(_passes("a", [1.0, 1.3, 0.9, 1.1, 1.2]), _passes("b", [1.0, 1.2, 0.95, 1.1, 1.05]))
    assert not noisy.significant and "noise" in noisy.verdict()
    two = bench.compare(a[:2], b[:2])                                    # any number of passes from two
    assert two.passes == 2 and two.interval[0] <= two.speedup <= two.interval[1]


def test_ratio_interval_resamples_each_side_independently():
    lo, hi = bench.ratio_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert lo == hi == 2.0
    lo, hi = bench.ratio_interval([1.0, 2.0], [1.0, 1.0])
    assert lo == 1.0 and hi == 2.0                                       # every resample of A's two passes
    with pytest.raises(ValueError, match="two passes"):
        bench.ratio_interval([1.0], [1.0, 2.0])


def test_compare_on_kernel_or_host_time():
    def run(name, event, kernel, host):
        s, h = bench.Stats.of([event]), bench.Stats.of([host])
        kt = bench.KernelTime(kernel, kernel, 0.0, 1, 1)
        return bench.Measurement(name, "x", "cuda", 1, s, h, event, 1, 0.0, "cuda-events", kernel=kt)

    a = [run("a", 1.0, 0.9, 0.1), run("a", 1.0, 0.91, 0.1)]
    b = [run("b", 1.0, 0.3, 0.2), run("b", 1.0, 0.31, 0.2)]
    assert bench.compare(a, b, on="kernel").speedup == pytest.approx(3.0, rel=0.02)
    assert bench.compare(a, b, on="host").speedup == pytest.approx(0.5)
    assert bench.compare(a, b).on == "event"
    with pytest.raises(ValueError, match="on must be"):
        bench.compare(a, b, on="wall")
    with pytest.raises(ValueError, match="no kernel time"):
        bench.compare(_passes("a", [1.0, 1.0]), _passes("b", [1.0, 1.0]), on="kernel")


def test_nvtx_range_names_the_measurement():
    assert bench.nvtx_label("resnet50", "PyTorch eager", 8) == "bench: resnet50 [PyTorch eager] batch 8"
    assert bench.nvtx_label("", "", 1) == "bench: unnamed batch 1"
