"""common.labs.lab02_streams: fork-join timing on streams, its CPU counterpart with threads, overlap
arithmetic, the multi-branch network, the timeline figure, and every claim driven through its branches
with synthetic results. GPU tests use sleep kernels, whose duration is known, so what overlaps is
decided by the streams alone."""

import statistics
import time
from types import SimpleNamespace

import pytest
import torch

from common import bench, checks, env, models, plots, report
from common import onnx as onnx_tools
from common.labs import lab02_streams as lab

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def sleeper(seconds):
    return lambda: time.sleep(seconds)   # releases the GIL, as PyTorch's operators do


# -- the multi-branch network ---------------------------------------------------------------------

def test_multibranch_exports_four_branches_into_one_concat(tmp_path):
    model = lab.build_multibranch("small")
    x = lab.multibranch_input(3, "small")
    assert model(x).shape == (3, 1000)
    assert len(model.branches) == lab.BRANCHES == 4
    paths, error = lab.export_multibranch("small", tmp_path)
    assert error <= 1e-4
    assert lab.concat_fan_in(paths["fp32"]) == [4]
    assert onnx_tools.io_shapes(paths["fp32"])["input"] == ["batch", *lab.multibranch_sample_shape("small")]


def test_multibranch_scale_is_checked():
    assert lab.multibranch_sample_shape("full") == (3, 112, 112)
    with pytest.raises(ValueError, match="'full', 'small'"):
        lab.build_multibranch("ful")


def test_multibranch_weights_depend_on_the_seed_only():
    a, b, c = (lab.build_multibranch("small", seed=s) for s in (0, 0, 1))
    x = lab.multibranch_input(1, "small")
    with torch.inference_mode():
        assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))


# -- overlap arithmetic -------------------------------------------------------------------------------

def test_overlap_fraction_is_one_when_hidden_and_zero_when_serial():
    assert lab.overlap_fraction(2.0, 1.0, 2.0) == pytest.approx(1.0)
    assert lab.overlap_fraction(2.0, 1.0, 3.0) == pytest.approx(0.0)
    assert lab.overlap_fraction(2.0, 1.0, 2.5) == pytest.approx(0.5)
    assert lab.overlap_fraction(2.0, 1.0, 3.5) < 0   # together cost more than one after the other
    with pytest.raises(ValueError, match="positive"):
        lab.overlap_fraction(0.0, 1.0, 1.0)


def test_busy_overlap_merges_each_lane_before_intersecting():
    spans = [lab.Span("a", "x", 0, 2), lab.Span("a", "y", 1, 3),   # lane a busy 0..3
             lab.Span("b", "z", 2, 5), lab.Span("c", "w", 10, 11)]
    assert lab.busy_overlap_ms(spans, "a", "b") == pytest.approx(1.0)
    assert lab.busy_overlap_ms(spans, "a", "c") == 0
    assert spans[2].duration_ms == 3
    assert [s.lane for s in lab.with_lane_prefix(spans[:2], "2 streams")] == ["2 streams: a"] * 2


# -- ThreadFork (the CPU counterpart) -----------------------------------------------------------------

def test_thread_fork_runs_pieces_at_once_or_one_after_the_other():
    works = [sleeper(0.05), sleeper(0.05)]
    with lab.ThreadFork(works, 2, labels=["m0", "m1"]) as together, lab.ThreadFork(works, 1) as serial:
        t0 = time.perf_counter()
        together.run()
        together_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        serial.run()
        serial_s = time.perf_counter() - t0
        spans = together.timeline()
        serial_spans = serial.timeline()
    assert together_s < 0.09 <= 0.1 <= serial_s
    assert sorted(s.lane for s in spans) == ["thread 0", "thread 1"] and {s.label for s in spans} == {"m0", "m1"}
    assert lab.busy_overlap_ms(spans, "thread 0", "thread 1") > 40
    assert {s.lane for s in serial_spans} == {"thread 0"}
    assert serial_spans[1].start_ms >= serial_spans[0].end_ms


def test_thread_fork_sets_intra_op_threads_per_thread_and_restores_the_caller():
    before = torch.get_num_threads()
    seen = []
    with lab.ThreadFork([lambda: seen.append(torch.get_num_threads())] * 2, 2, intra_op_threads=1) as fork:
        fork.run()
    assert seen == [1, 1]
    with lab.ThreadFork([lambda: seen.append(torch.get_num_threads())], 1, intra_op_threads=1) as fork:
        fork.run()   # runs in this very thread
    assert seen[-1] == 1 and torch.get_num_threads() == before


def test_thread_fork_reraises_what_a_piece_raised():
    def broken():
        raise KeyError("from a worker thread")

    with lab.ThreadFork([sleeper(0), broken], 2) as fork, pytest.raises(KeyError, match="worker"):
        fork.run()


def test_fork_arguments_are_checked():
    with pytest.raises(ValueError, match="no work"):
        lab.ThreadFork([], 2)
    with pytest.raises(ValueError, match="at least one thread"):
        lab.ThreadFork([sleeper(0)], 0)
    with pytest.raises(ValueError, match="labels"):
        lab.ThreadFork([sleeper(0)], 1, labels=["a", "b"])
    with pytest.raises(ValueError, match="no work"):
        lab.ForkJoin([], 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_fork_join_says_it_needs_a_gpu():
    with pytest.raises(env.RequirementError, match="GPU"):
        lab.ForkJoin([sleeper(0)], 1)


def test_compare_concurrent_sees_twice_the_speed_of_two_waits():
    works = [sleeper(0.004), sleeper(0.004)]
    with lab.ThreadFork(works, 1) as one, lab.ThreadFork(works, 2) as two:
        result = lab.compare_concurrent(one, two, experiment="2 waits", tag="2x", one_label="1 thread",
                                            concurrent_label="2 threads", items=2, warmup_ms=20, measure_ms=80)
    row = result.row()
    assert 1.5 < row["speedup"] < 2.3 and row["significant"]
    assert row["concurrent_items_per_s"] == pytest.approx(2 / (row["concurrent_ms"] / 1e3))
    assert {s.lane for s in result.spans} == {"1 thread: thread 0", "2 threads: thread 0", "2 threads: thread 1"}


def test_in_threads_times_the_runners_one_after_the_other_then_side_by_side():
    runners = [SimpleNamespace(run=sleeper(0.004)) for _ in range(2)]
    result = lab.in_threads(runners, model="m", batch=3, warmup_ms=20, measure_ms=80)
    assert (result.experiment, result.tag, result.one, result.concurrent, result.items) == (
        "2 x m batch 3, PyTorch eager (CPU)", "2x threads", "1 thread", "2 threads", 6)
    assert 1.5 < result.comparison.speedup < 2.3
    assert {s.label for s in result.concurrent_spans} == {"m #0", "m #1"}


def test_models_in_threads_match_their_reference():
    runners = lab.model_runners("resnet18", 2, "small", device="cpu")
    with lab.ThreadFork([r.run for r in runners], 2, intra_op_threads=1) as fork:
        fork.run()
    assert all(e <= 1e-4 for e in lab.reference_errors(runners, "resnet18", "small"))
    # each runner has its own seed: the two models differ
    assert not torch.equal(runners[0].output(), runners[1].output())
    with pytest.raises(ValueError, match="kind"):
        lab.model_runners("resnet18", 1, "small", kind="compiled", device="cpu")


def test_timeline_plot_writes_a_fixed_size_png_and_the_spans_as_csv(tmp_path):
    panels = {"one": [lab.Span("stream 0", "m0", 0.0, 1.0), lab.Span("stream 1", "m1", 0.2, 1.1)],
              "two": [lab.Span("thread 0", "copy", 0.0, 2.0)]}
    png = lab.timeline_plot(panels, title="t", path=tmp_path / "timeline", show=False)
    from PIL import Image

    w, h = lab.TIMELINE_FIGSIZE
    assert Image.open(png).size == (int(w * plots.DPI), int(h * plots.DPI))
    lines = (tmp_path / "timeline.csv").read_text().splitlines()
    assert lines[0] == "panel,lane,label,start_ms,end_ms" and len(lines) == 4
    with pytest.raises(ValueError, match="no timeline"):
        lab.timeline_plot({}, title="t", path=tmp_path / "empty", show=False)


# -- on a GPU -------------------------------------------------------------------------------------------

def sleep_kernel(cycles=4_000_000):
    return lambda: torch.cuda._sleep(cycles)   # one block that spins: about 2 ms at 2 GHz


@needs_gpu
def test_fork_join_puts_work_i_on_stream_i_mod_n():
    seen = []
    fork = lab.ForkJoin([lambda: seen.append(torch.cuda.current_stream().cuda_stream)] * 3, 2)
    fork.run()
    torch.cuda.synchronize()
    handles = [s.cuda_stream for s in fork.streams]
    assert seen == [handles[0], handles[1], handles[0]] and fork.main.cuda_stream not in handles


@needs_gpu
def test_on_streams_names_its_experiment_and_overlaps_the_pieces():
    result = lab.on_streams([SimpleNamespace(run=sleep_kernel()) for _ in range(2)], model="m", batch=1,
                            backend="sleep", tag="2x sleep", warmup_ms=20, measure_ms=100)
    assert (result.experiment, result.one, result.concurrent, result.items) == (
        "2 x m batch 1, sleep", "1 stream", "2 streams", 2)
    assert 1.7 < result.comparison.speedup < 2.2


@needs_gpu
def test_two_sleep_kernels_on_two_streams_take_half_the_time():
    works = [sleep_kernel(), sleep_kernel()]
    one, two = lab.ForkJoin(works, 1), lab.ForkJoin(works, 2)
    result = lab.compare_concurrent(one, two, experiment="sleep", tag="2x", one_label="1 stream",
                                        concurrent_label="2 streams", items=2, warmup_ms=20, measure_ms=100)
    assert 1.7 < result.comparison.speedup < 2.2
    lanes = sorted({s.lane for s in result.concurrent_spans})
    shortest_ms = min(s.duration_ms for s in result.concurrent_spans)
    assert lab.busy_overlap_ms(result.concurrent_spans, *lanes) > 0.8 * shortest_ms


@needs_gpu
def test_legacy_default_stream_waits_for_blocking_streams_only():
    legacy, blocking = torch.cuda.default_stream(), lab.blocking_stream()
    assert legacy.cuda_stream == 0 and blocking.cuda_stream not in (0, torch.cuda.Stream().cuda_stream)
    copy, compute = sleep_kernel(), sleep_kernel()
    cases = [lab.OverlapCase(name, (copy, compute), (first, legacy), ("copy", "compute"), ("a", "b"))
             for name, first in (("non-blocking", torch.cuda.Stream()), ("blocking", blocking))]
    study = lab.overlap_study(cases, warmup_ms=20, measure_ms=100)
    assert study.row("non-blocking")["timeline_overlap"] > 0.8 and study.row("non-blocking")["overlap"] > 0.7
    assert study.row("blocking")["timeline_overlap"] < 0.05 and study.row("blocking")["overlap"] < 0.2
    assert study.compare("blocking", "non-blocking").speedup > 1.5


@needs_gpu
def test_copy_bandwidth_rows_and_pinned_against_pageable():
    rows, comparisons = lab.copy_bandwidth_study(16 * lab.MiB, warmup_ms=20, measure_ms=100)
    assert [(r["direction"], r["host memory"]) for r in rows] == [
        ("host to device", "pageable"), ("host to device", "pinned"),
        ("device to host", "pageable"), ("device to host", "pinned")]
    assert all(r["GB_per_s"] == pytest.approx(16 * lab.MiB / (r["median_ms"] / 1e3) / 1e9) for r in rows)
    assert set(comparisons) == {"host to device", "device to host"}


@needs_gpu
def test_graph_replays_side_by_side_match_their_reference():
    runners = lab.model_runners("resnet18", 2, "small", kind="graph")
    lab.ForkJoin([r.run for r in runners], 2).run()
    assert all(e <= checks.tolerance("fp16", "model") for e in lab.reference_errors(runners, "resnet18", "small"))
    assert models.spec("resnet18", "small").unit == "img"


class StandInContext:
    """Enqueues a sleep kernel on the stream it is given, where TensorRT's context would enqueue an engine;
    on the legacy default stream it also synchronises, as TensorRT documents that it does there."""

    def execute_async_v3(self, stream_handle):
        assert stream_handle == torch.cuda.current_stream().cuda_stream
        torch.cuda._sleep(2_000_000)
        if stream_handle == 0:
            torch.cuda.current_stream().synchronize()
        return True


@needs_gpu
def test_tensorrt_default_stream_study_puts_the_enqueue_on_a_created_then_the_default_stream():
    engine_runner = SimpleNamespace(context=lambda index: StandInContext())
    study = lab.tensorrt_default_stream_study(engine_runner, sleep_kernel(), lab.blocking_stream(),
                                              warmup_ms=20, measure_ms=100)
    assert [r["case"] for r in study.rows] == ["TensorRT: created | blocking spin", "TensorRT: default | blocking spin"]
    assert study.row("TensorRT: default | blocking spin")["timeline_overlap"] < 0.05
    assert study.row("TensorRT: created | blocking spin")["timeline_overlap"] > 0.8


@needs_gpu
def test_spin_kernel_waits_about_as_long_as_asked():
    m = bench.measure(lab.spin_kernel(0.5), name="spin", warmup_ms=20, measure_ms=50, kernel_time=False)
    assert 0.3 < m.latency_ms.median < 0.75   # calibrated once: the SM clock may move a little since
    with pytest.raises(ValueError, match="positive"):
        lab.spin_kernel(0)


@needs_gpu
def test_host_cost_on_the_default_stream_shows_a_synchronising_call_only():
    plain = lab.default_stream_host_cost(sleep_kernel(), warmup_ms=20, measure_ms=60)
    assert plain.on == "host" and plain.passes == bench.PASSES and plain.speedup < 1.5
    engine_runner = SimpleNamespace(context=lambda index: StandInContext())
    synchronising = lab.tensorrt_host_cost_study(engine_runner, warmup_ms=20, measure_ms=60)
    assert synchronising.label_a == "call on the legacy default stream" and synchronising.speedup > 3


@pytest.mark.skipif(env.has("tensorrt"), reason="checks the message on machines without TensorRT")
def test_tensorrt_studies_say_they_need_tensorrt(tmp_path):
    with pytest.raises(env.RequirementError, match="TensorRT"):
        lab.aux_stream_study(tmp_path / "missing.onnx", "small", batches=[1, 8])
    with pytest.raises(env.RequirementError, match="TensorRT"):
        lab.contexts_study(tmp_path / "missing.onnx", "resnet18", "small", batch_size=1)


def test_trtexec_commands_rebuild_every_engine_of_the_tensorrt_studies():
    commands = lab.trtexec_commands("resnet18", "small", batch=1, big_batch=8)
    assert len(commands) == 7 and all(c.startswith("trtexec --onnx=") for c in commands)
    assert commands[0].startswith("trtexec --onnx=multibranch_small_fp16.onnx --minShapes=input:1x3x32x32 "
                                  "--optShapes=input:1x3x32x32 --maxShapes=input:8x3x32x32 --maxAuxStreams=0")
    assert [c.split("--maxAuxStreams=")[1].split()[0] for c in commands] == ["0", "1", "2", "4", "0", "0", "0"]
    assert commands[-1].startswith("trtexec --onnx=resnet18_small_fp16.onnx") and commands[-1].endswith("--infStreams=4")


# -- the claims, on synthetic results ------------------------------------------------------------------

def comparison(speedup, noise_pct=1.0, on="event"):
    """B against A over five passes: A's pass medians spread by `noise_pct`, B's `speedup` times faster."""
    a = [1.0 + noise_pct / 100 * i / 4 for i in (0, 2, 4, 1, 3)]
    b = [x / speedup for x in reversed(a)]
    return bench.Comparison("one", "concurrent", statistics.median(a), statistics.median(b), noise_pct, noise_pct,
                            tuple(a), tuple(b), on=on)


def concurrency(tag, speedup, noise_pct=1.0, items=2):
    return lab.Concurrency(f"experiment {tag}", tag, "one", "concurrent", items, comparison(speedup, noise_pct), [], [])


def together(name, medians_ms):
    stats = [bench.Stats.of([ms]) for ms in medians_ms]
    return [bench.Measurement(name=name, backend="test", device="cuda", batch_size=1, latency_ms=s, host_ms=s,
                              wall_ms_per_iter=s.median, iterations=1, warmup_ms=0.0, timer="cuda-events")
            for s in stats]


def overlap_study(cases):
    """cases: name -> (row fields, the medians of the two pieces together in each pass)."""
    return lab.OverlapStudy([{"case": name, **row} for name, (row, _) in cases.items()], {},
                            {name: together(name, medians) for name, (_, medians) in cases.items()})


def outcome(lab_report):
    return [(c.claim, c.measured, c.status, c.why) for c in lab_report.claims]


def statuses(lab_report):
    return [(c.claim, c.status) for c in lab_report.claims]


CLAIM_2X = "two independent resnet18 (batch 1) on two streams are at least 1.3x faster than on one ({})"
SOONER = "inference and spin kernel together finish sooner as '{}' than as 'default | blocking spin'"
PINNED = "{}: pinned host memory copies faster than pageable"
FOUR = "4 CUDA graphs on 4 streams beat them on one stream"
BIG = "at batch 64, where one model fills the GPU, two streams gain less than at batch 1"
PINNED_OVERLAP = "a pinned upload overlaps an inference on another stream (overlap at least 0.5)"
PAGEABLE_OVERLAP = "a pageable upload overlaps less than a pinned one (on the GPU's timeline)"


def gpu_results(eager, graph, four, big):
    return [concurrency("2x eager", *eager), concurrency("4x eager", 1.0), concurrency("2x graph", *graph),
            concurrency("4x graph", *four), concurrency("2x graph b64", *big, items=128)]


def gpu_studies(blocking_overlap, created_ms, non_blocking_ms, host_cost, pinned_overlap, pageable_overlap, bandwidth):
    blocking_ms = [1.0, 1.002, 1.001, 1.003, 1.0]
    default_stream = overlap_study({
        "created | blocking spin": ({"timeline_overlap": 0.97}, created_ms),
        "default | non-blocking spin": ({"timeline_overlap": 0.96}, non_blocking_ms),
        "default | blocking spin": ({"timeline_overlap": blocking_overlap, "together_ms": 0.70, "sum_ms": 0.71},
                                    blocking_ms),
    })
    # the medians' overlap of a noisy pageable copy can read above 1: the claim reads the timeline
    uploads = overlap_study({"pageable upload": ({"overlap": 1.16, "timeline_overlap": pageable_overlap,
                                                  "spread_pct": 113.3}, [10.7] * 5),
                             "pinned upload": ({"overlap": pinned_overlap, "timeline_overlap": pinned_overlap,
                                                "spread_pct": 3.174}, [1.26] * 5)})
    return lab.GpuStudies(default_stream, comparison(*host_cost, on="host"),
                          {"host to device": comparison(*bandwidth), "device to host": comparison(4.33, 2.3)}, uploads)


def test_streams_claims_on_a_gpu_where_everything_holds():
    results = gpu_results(eager=(1.6, 2.0), graph=(1.714, 0.8), four=(2.937, 0.2), big=(1.17, 0.2))
    studies = gpu_studies(blocking_overlap=0.0, created_ms=[0.52, 0.521, 0.522, 0.52, 0.521],
                          non_blocking_ms=[0.53, 0.531, 0.53, 0.532, 0.53], host_cost=(1.02, 3.0),
                          pinned_overlap=0.9666, pageable_overlap=0.1236, bandwidth=(7.1, 28.55))
    lab_report = lab.streams_claims(results, studies, model="resnet18", batch=1, big_batch=64, count=4)
    assert statuses(lab_report) == [
        (CLAIM_2X.format("PyTorch eager"), report.HOLDS), (CLAIM_2X.format("CUDA graphs"), report.HOLDS),
        (FOUR, report.HOLDS), (BIG, report.HOLDS), (lab.DEFAULT_CLAIM, report.HOLDS),
        (SOONER.format("created | blocking spin"), report.HOLDS),
        (SOONER.format("default | non-blocking spin"), report.HOLDS), (lab.HOST_CLAIM, report.HOLDS),
        (PINNED.format("host to device"), report.HOLDS), (PINNED.format("device to host"), report.HOLDS),
        (PINNED_OVERLAP, report.HOLDS), (PAGEABLE_OVERLAP, report.HOLDS),
    ]
    got = {c.claim: c for c in lab_report.claims}
    graphs = got[CLAIM_2X.format("CUDA graphs")]
    lo, hi = results[2].comparison.interval
    assert graphs.measured == f"1.71x [{lo:.2f}x, {hi:.2f}x]" and graphs.why == "judged on event time over 5 passes"
    assert got[lab.DEFAULT_CLAIM].measured == "0% of the shorter overlapped"
    assert got[lab.DEFAULT_CLAIM].why == "together 0.7 ms, sum alone 0.71 ms"
    assert got[lab.HOST_CLAIM].why.endswith("judged on host time over 5 passes")
    assert got[BIG].why.startswith("at batch 1: 1.71x")
    assert got[PAGEABLE_OVERLAP].measured == "12% of the shorter overlapped"
    assert got[PAGEABLE_OVERLAP].why.endswith("(from the medians: overlap 1.16, spread 113%)")


def test_streams_claims_that_do_not_hold_or_are_inconclusive_on_a_gpu():
    # a gain inside the noise, graphs that gain too little, more at the large batch, a default stream that
    # overlaps, a created stream that is slower, a replay that costs the host more on the default stream,
    # copies within the noise, uploads that hardly overlap
    results = gpu_results(eager=(1.35, 60.0), graph=(1.1, 1.0), four=(0.95, 1.0), big=(1.3, 1.0))
    studies = gpu_studies(blocking_overlap=0.3, created_ms=[1.05, 1.051, 1.052, 1.05, 1.051],
                          non_blocking_ms=[0.95, 1.05, 1.0, 1.01, 0.99], host_cost=(3.0, 1.0),
                          pinned_overlap=0.4, pageable_overlap=0.5, bandwidth=(1.01, 5.0))
    lab_report = lab.streams_claims(results, studies, model="resnet18", batch=1, big_batch=64, count=4)
    assert [status for _, status in statuses(lab_report)] == [
        report.INCONCLUSIVE, report.FAILS, report.FAILS, report.FAILS, report.FAILS, report.FAILS,
        report.INCONCLUSIVE, report.FAILS, report.INCONCLUSIVE, report.HOLDS, report.FAILS, report.FAILS]
    assert lab_report.unexplained() == []
    eager = lab_report.claims[0]
    assert "straddles 1.30x" in eager.why and "the host launches every kernel" in eager.why
    assert lab_report.claims[4].measured == "30% of the shorter overlapped"


def test_streams_claims_on_a_cpu_judge_the_threads_only():
    claims = outcome(lab.streams_claims([concurrency("2x threads", 1.6, 5.0)], None, model="resnet18", batch=1,
                                        big_batch=8, count=2))
    reason = "needs a GPU: CUDA streams and host-device copies exist only there"
    cpu_claim = ("CPU: two models in two threads (one intra-op thread each) are at least 1.3x faster than one after "
                 "the other in one thread")
    assert [c[:3] for c in claims[:-1]] == [
        (CLAIM_2X.format("PyTorch eager"), "-", report.NOT_APPLICABLE),
        (CLAIM_2X.format("CUDA graphs"), "-", report.NOT_APPLICABLE),
        ("at a batch that fills the GPU, two streams gain less than at batch 1", "-", report.NOT_APPLICABLE),
        (lab.DEFAULT_CLAIM, "-", report.NOT_APPLICABLE), (lab.HOST_CLAIM, "-", report.NOT_APPLICABLE),
        ("pinned host memory copies faster than pageable, and overlaps compute", "-", report.NOT_APPLICABLE),
    ]
    assert all(c[3] == reason for c in claims[:-1])
    assert claims[-1][0] == cpu_claim and claims[-1][2] == report.HOLDS
    assert claims[-1][3] == "PyTorch eager on the CPU: host time is the only time; judged on event time over 5 passes"

    def cpu_status(speedup, noise_pct):
        return lab.streams_claims([concurrency("2x threads", speedup, noise_pct)], None, model="resnet18", batch=1,
                                  big_batch=8, count=2).claims[-1].status

    assert cpu_status(1.1, 5.0) == report.FAILS
    assert cpu_status(1.35, 50.0) == report.INCONCLUSIVE


def aux_row(max_aux, used, batch, speedup, interval):
    return {"max_aux_streams": max_aux, "num_aux_streams": used, "batch": batch, "speedup_vs_0": speedup,
            "interval_lo": interval[0], "interval_hi": interval[1]}


def test_aux_stream_claims_hold_fail_are_inconclusive_and_need_tensorrt():
    rows = [aux_row("0", 0, 1, 1.0, (0.99, 1.01)), aux_row("4", 3, 1, 1.25, (1.2, 1.3)),
            aux_row("4, user streams", 3, 1, 1.2, (1.15, 1.25)),
            aux_row("0", 0, 64, 1.0, (0.99, 1.01)), aux_row("4", 3, 64, 1.02, (1.0, 1.04))]
    assert outcome(lab.aux_stream_claims(rows, batch=1, big_batch=64)) == [
        (lab.AUX_CLAIMS[0], "1.25x [1.20x, 1.30x]", report.HOLDS, "max_aux_streams=4, 3 used; event time"),
        (lab.AUX_CLAIMS[1], "1.02x [1.00x, 1.04x]", report.HOLDS,
         "batch 64, best of the engines; at batch 1: 1.25x"),
    ]
    no_gain = [aux_row("0", 0, 1, 1.0, (0.99, 1.01)), aux_row("2", 0, 1, 0.97, (0.95, 0.99)),
               aux_row("0", 0, 64, 1.0, (0.99, 1.01)), aux_row("2", 0, 64, 0.99, (0.9, 1.1))]
    got = lab.aux_stream_claims(no_gain, batch=1, big_batch=64).claims
    assert [(c.measured, c.status) for c in got] == [("1.00x [0.99x, 1.01x]", report.INCONCLUSIVE),
                                                      ("1.00x [0.99x, 1.01x]", report.INCONCLUSIVE)]
    losing = [aux_row("0", 0, 1, 1.0, (0.99, 1.01)), aux_row("2", 2, 1, 0.9, (0.88, 0.92)),
              aux_row("0", 0, 64, 1.0, (0.99, 1.01)), aux_row("2", 2, 64, 1.2, (1.1, 1.3))]
    assert [c.status for c in lab.aux_stream_claims(losing, batch=1, big_batch=64).claims] == [report.FAILS] * 2
    lab_report = report.LabReport("02_streams")
    assert lab.aux_stream_claims(None, batch=1, big_batch=64, lab_report=lab_report) is lab_report
    assert [(c.status, c.why.split(":")[0]) for c in lab_report.claims] == [(report.NOT_APPLICABLE, "needs TensorRT")] * 2


def test_contexts_claims_hold_fail_and_need_tensorrt():
    claims = ["two execution contexts on two streams give at least 1.3x the throughput of one at batch 1 (TensorRT)",
              "TensorRT's enqueue on the legacy default stream does not overlap a spin kernel on a blocking stream",
              lab.TRT_HOST_CLAIM]

    def run(two_contexts, timeline_overlap, host_cost):
        contexts = lab.ContextsStudy([], [concurrency("1", 1.0, items=1), concurrency("2", *two_contexts, items=2),
                                          concurrency("4", 2.5, items=4)], engine_runner=None)
        trt_default = overlap_study({"TensorRT: default | blocking spin": (
            {"timeline_overlap": timeline_overlap, "together_ms": 0.5, "sum_ms": 0.45}, [0.5, 0.501])})
        return lab.contexts_claims(contexts, trt_default, comparison(*host_cost, on="host"), batch=1)

    holding = run((1.8, 2.0), 0.0, (6.0, 5.0))
    assert statuses(holding) == [(claim, report.HOLDS) for claim in claims]
    assert holding.claims[1].measured == "0% of the shorter overlapped"
    assert holding.claims[2].why == "host time per call, default stream over created stream; judged on host time over 5 passes"
    assert [c.status for c in run((1.2, 2.0), 0.5, (0.98, 1.0)).claims] == [report.FAILS] * 3
    assert [c.status for c in run((1.4, 50.0), 0.0, (1.0, 10.0)).claims] == [
        report.INCONCLUSIVE, report.HOLDS, report.INCONCLUSIVE]
    for contexts in (None, lab.ContextsStudy([], [], None)):   # no study, or one without its default-stream parts
        got = lab.contexts_claims(contexts, None, None, batch=1)
        assert outcome(got) == [(claim, "-", report.NOT_APPLICABLE, "needs TensorRT: execution contexts belong to an engine")
                                for claim in claims]
