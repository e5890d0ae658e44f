"""common.streams (lab 02): fork-join timing on streams, its CPU counterpart with threads, overlap
arithmetic, the multi-branch network, and the timeline figure. GPU tests use sleep kernels, whose
duration is known, so what overlaps is decided by the streams alone."""

import time

import pytest
import torch

from common import env, models, plots, streams
from common import onnx as onnx_tools

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def sleeper(seconds):
    return lambda: time.sleep(seconds)   # releases the GIL, as PyTorch's operators do


# -- the multi-branch network ---------------------------------------------------------------------

def test_multibranch_exports_four_branches_into_one_concat(tmp_path):
    model = streams.build_multibranch("small")
    x = streams.multibranch_input(3, "small")
    assert model(x).shape == (3, 1000)
    assert len(model.branches) == streams.BRANCHES == 4
    paths, error = streams.export_multibranch("small", tmp_path)
    assert error <= 1e-4
    assert streams.concat_fan_in(paths["fp32"]) == [4]
    assert onnx_tools.io_shapes(paths["fp32"])["input"] == ["batch", *streams.multibranch_sample_shape("small")]


def test_multibranch_weights_depend_on_the_seed_only():
    a, b, c = (streams.build_multibranch("small", seed=s) for s in (0, 0, 1))
    x = streams.multibranch_input(1, "small")
    with torch.inference_mode():
        assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))


# -- overlap arithmetic -------------------------------------------------------------------------------

def test_overlap_fraction_is_one_when_hidden_and_zero_when_serial():
    assert streams.overlap_fraction(2.0, 1.0, 2.0) == pytest.approx(1.0)
    assert streams.overlap_fraction(2.0, 1.0, 3.0) == pytest.approx(0.0)
    assert streams.overlap_fraction(2.0, 1.0, 2.5) == pytest.approx(0.5)
    assert streams.overlap_fraction(2.0, 1.0, 3.5) < 0   # together cost more than one after the other
    with pytest.raises(ValueError, match="positive"):
        streams.overlap_fraction(0.0, 1.0, 1.0)


def test_busy_overlap_merges_each_lane_before_intersecting():
    spans = [streams.Span("a", "x", 0, 2), streams.Span("a", "y", 1, 3),   # lane a busy 0..3
             streams.Span("b", "z", 2, 5), streams.Span("c", "w", 10, 11)]
    assert streams.busy_overlap_ms(spans, "a", "b") == pytest.approx(1.0)
    assert streams.busy_overlap_ms(spans, "a", "c") == 0
    assert spans[2].duration_ms == 3
    assert [s.lane for s in streams.with_lane_prefix(spans[:2], "2 streams")] == ["2 streams: a"] * 2


# -- ThreadFork (the CPU counterpart) -----------------------------------------------------------------

def test_thread_fork_runs_pieces_at_once_or_one_after_the_other():
    works = [sleeper(0.05), sleeper(0.05)]
    with streams.ThreadFork(works, 2, labels=["m0", "m1"]) as together, streams.ThreadFork(works, 1) as serial:
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
    assert streams.busy_overlap_ms(spans, "thread 0", "thread 1") > 40
    assert {s.lane for s in serial_spans} == {"thread 0"}
    assert serial_spans[1].start_ms >= serial_spans[0].end_ms


def test_thread_fork_sets_intra_op_threads_per_thread_and_restores_the_caller():
    before = torch.get_num_threads()
    seen = []
    with streams.ThreadFork([lambda: seen.append(torch.get_num_threads())] * 2, 2, intra_op_threads=1) as fork:
        fork.run()
    assert seen == [1, 1]
    with streams.ThreadFork([lambda: seen.append(torch.get_num_threads())], 1, intra_op_threads=1) as fork:
        fork.run()   # runs in this very thread
    assert seen[-1] == 1 and torch.get_num_threads() == before


def test_thread_fork_reraises_what_a_piece_raised():
    def broken():
        raise KeyError("from a worker thread")

    with streams.ThreadFork([sleeper(0), broken], 2) as fork, pytest.raises(KeyError, match="worker"):
        fork.run()


def test_fork_arguments_are_checked():
    with pytest.raises(ValueError, match="no work"):
        streams.ThreadFork([], 2)
    with pytest.raises(ValueError, match="at least one thread"):
        streams.ThreadFork([sleeper(0)], 0)
    with pytest.raises(ValueError, match="labels"):
        streams.ThreadFork([sleeper(0)], 1, labels=["a", "b"])
    with pytest.raises(ValueError, match="no work"):
        streams.ForkJoin([], 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_fork_join_says_it_needs_a_gpu():
    with pytest.raises(env.RequirementError, match="GPU"):
        streams.ForkJoin([sleeper(0)], 1)


def test_compare_concurrent_sees_twice_the_speed_of_two_waits():
    works = [sleeper(0.004), sleeper(0.004)]
    with streams.ThreadFork(works, 1) as one, streams.ThreadFork(works, 2) as two:
        result = streams.compare_concurrent(one, two, experiment="2 waits", tag="2x", one_label="1 thread",
                                            concurrent_label="2 threads", items=2, warmup_ms=20, measure_ms=80)
    row = result.row()
    assert 1.5 < row["speedup"] < 2.3 and row["significant"]
    assert row["concurrent_items_per_s"] == pytest.approx(2 / (row["concurrent_ms"] / 1e3))
    assert {s.lane for s in result.spans} == {"1 thread: thread 0", "2 threads: thread 0", "2 threads: thread 1"}


def test_models_in_threads_match_their_reference():
    runners = streams.model_runners("resnet18", 2, "small", device="cpu")
    with streams.ThreadFork([r.run for r in runners], 2, intra_op_threads=1) as fork:
        fork.run()
    assert all(e <= 1e-4 for e in streams.reference_errors(runners, "resnet18", "small"))
    # each runner has its own seed: the two models differ
    assert not torch.equal(runners[0].output(), runners[1].output())
    with pytest.raises(ValueError, match="kind"):
        streams.model_runners("resnet18", 1, "small", kind="compiled", device="cpu")


def test_timeline_plot_writes_a_fixed_size_png_and_the_spans_as_csv(tmp_path):
    panels = {"one": [streams.Span("stream 0", "m0", 0.0, 1.0), streams.Span("stream 1", "m1", 0.2, 1.1)],
              "two": [streams.Span("thread 0", "copy", 0.0, 2.0)]}
    png = streams.timeline_plot(panels, title="t", path=tmp_path / "timeline", show=False)
    from PIL import Image

    w, h = streams.TIMELINE_FIGSIZE
    assert Image.open(png).size == (int(w * plots.DPI), int(h * plots.DPI))
    lines = (tmp_path / "timeline.csv").read_text().splitlines()
    assert lines[0] == "panel,lane,label,start_ms,end_ms" and len(lines) == 4
    with pytest.raises(ValueError, match="no timeline"):
        streams.timeline_plot({}, title="t", path=tmp_path / "empty", show=False)


# -- on a GPU -------------------------------------------------------------------------------------------

def sleep_kernel(cycles=4_000_000):
    return lambda: torch.cuda._sleep(cycles)   # one block that spins: about 2 ms at 2 GHz


@needs_gpu
def test_fork_join_puts_work_i_on_stream_i_mod_n():
    seen = []
    fork = streams.ForkJoin([lambda: seen.append(torch.cuda.current_stream().cuda_stream)] * 3, 2)
    fork.run()
    torch.cuda.synchronize()
    handles = [s.cuda_stream for s in fork.streams]
    assert seen == [handles[0], handles[1], handles[0]] and fork.main.cuda_stream not in handles


@needs_gpu
def test_two_sleep_kernels_on_two_streams_take_half_the_time():
    works = [sleep_kernel(), sleep_kernel()]
    one, two = streams.ForkJoin(works, 1), streams.ForkJoin(works, 2)
    result = streams.compare_concurrent(one, two, experiment="sleep", tag="2x", one_label="1 stream",
                                        concurrent_label="2 streams", items=2, warmup_ms=20, measure_ms=100)
    assert 1.7 < result.comparison.speedup < 2.2
    lanes = sorted({s.lane for s in result.concurrent_spans})
    shortest_ms = min(s.duration_ms for s in result.concurrent_spans)
    assert streams.busy_overlap_ms(result.concurrent_spans, *lanes) > 0.8 * shortest_ms


@needs_gpu
def test_legacy_default_stream_waits_for_blocking_streams_only():
    legacy, blocking = torch.cuda.default_stream(), streams.blocking_stream()
    assert legacy.cuda_stream == 0 and blocking.cuda_stream not in (0, torch.cuda.Stream().cuda_stream)
    copy, compute = sleep_kernel(), sleep_kernel()
    cases = [streams.OverlapCase(name, (copy, compute), (first, legacy), ("copy", "compute"), ("a", "b"))
             for name, first in (("non-blocking", torch.cuda.Stream()), ("blocking", blocking))]
    study = streams.overlap_study(cases, warmup_ms=20, measure_ms=100)
    assert study.row("non-blocking")["timeline_overlap"] > 0.8 and study.row("non-blocking")["overlap"] > 0.7
    assert study.row("blocking")["timeline_overlap"] < 0.05 and study.row("blocking")["overlap"] < 0.2
    assert study.compare("blocking", "non-blocking").speedup > 1.5


@needs_gpu
def test_copy_bandwidth_rows_and_pinned_against_pageable():
    rows, comparisons = streams.copy_bandwidth_study(16 * streams.MiB, warmup_ms=20, measure_ms=100)
    assert [(r["direction"], r["host memory"]) for r in rows] == [
        ("host to device", "pageable"), ("host to device", "pinned"),
        ("device to host", "pageable"), ("device to host", "pinned")]
    assert all(r["GB_per_s"] == pytest.approx(16 * streams.MiB / (r["median_ms"] / 1e3) / 1e9) for r in rows)
    assert set(comparisons) == {"host to device", "device to host"}


@needs_gpu
def test_graph_replays_side_by_side_match_their_reference():
    runners = streams.model_runners("resnet18", 2, "small", kind="graph")
    streams.ForkJoin([r.run for r in runners], 2).run()
    assert all(e <= streams.FP16_TOLERANCE for e in streams.reference_errors(runners, "resnet18", "small"))
    assert models.spec("resnet18", "small").unit == "img"
