"""Lab 03's module: the MLP and its allocation-free enqueue, measurement and overhead arithmetic on
CPU; captures, what a graph freezes and one graph per shape on a GPU."""

import time

import pytest
import torch

from common import bench, cudagraphs
from common.onnx import max_relative_error


def test_build_mlp_is_seeded_inference_only_and_keeps_the_signal():
    a = cudagraphs.build_mlp(64, depth=20, seed=0)
    b = cudagraphs.build_mlp(64, depth=20, seed=0)
    c = cudagraphs.build_mlp(64, depth=20, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    assert not any(p.requires_grad for p in a.parameters())
    assert a.ops_per_forward == 40 and a.flops_per_layer(8) == 2 * 8 * 64 * 64
    x1 = cudagraphs.example_input(8, 64, seed=1)
    x2 = cudagraphs.example_input(8, 64, seed=2)
    y1, y2 = a(x1), a(x2)
    assert y1.shape == (8, 64)
    # He initialisation: after 20 ReLU layers the output still has the input's scale and depends on it.
    assert 0.05 < y1.norm() / x1.norm() < 20
    assert max_relative_error(y2, y1) > 0.1


def test_static_mlp_matches_the_module_and_writes_only_its_own_buffers():
    model = cudagraphs.build_mlp(32, depth=5)
    static = cudagraphs.StaticMLP(model, max_batch=8)
    buffers = {static.input.data_ptr(), *(t.data_ptr() for t in static._activations)}
    x = cudagraphs.example_input(8, 32)
    static.input.copy_(x)
    out = static.enqueue(8)
    assert max_relative_error(out, model(x)) <= 1e-6
    assert out.data_ptr() in buffers and out.data_ptr() == static.output(8).data_ptr()
    assert static.enqueue(8).data_ptr() == out.data_ptr()   # same buffers every call
    small = static.enqueue(3)
    assert small.shape == (3, 32) and max_relative_error(small, model(x[:3])) <= 1e-6
    assert static.buffer_bytes == 3 * 8 * 32 * 4
    with pytest.raises(ValueError, match="outside 1..8"):
        static.enqueue(9)


def test_timed_verify_measure_and_compare_on_cpu():
    model = cudagraphs.build_mlp(16, depth=4)
    x = cudagraphs.example_input(4, 16)
    static = cudagraphs.StaticMLP(model, 4)
    static.input.copy_(x)
    slow = cudagraphs.Timed(lambda: (time.sleep(0.002), model(x))[1])
    timed = {"eager": cudagraphs.Timed(lambda: model(x)),
             "static": cudagraphs.Timed(lambda: static.enqueue(4)),
             "slow": slow}
    checks = cudagraphs.verify(timed, model(x))
    assert checks["eager"] == (0.0, True) and checks["static"][0] <= 1e-6 and checks["slow"][1]
    runs = cudagraphs.measure_passes(timed, device="cpu", batch_size=4, warmup_ms=5, measure_ms=20)
    assert all(len(ms) == 2 and ms[0].backend == label for label, ms in runs.items())
    rows = {r["backend"]: r for r in cudagraphs.comparison_rows(runs, "eager", depth=4)}
    assert rows["eager"]["speedup"] == 1.0 and rows["eager"]["verdict"] == "baseline"
    assert rows["slow"]["speedup"] < 0.5 and rows["slow"]["significant"]
    assert rows["slow"]["per_layer_us"] == pytest.approx(rows["slow"]["latency_ms"] * 1e3 / 4)
    assert rows["eager"]["throughput_per_s"] == pytest.approx(4 / (rows["eager"]["latency_ms"] / 1e3))


def test_launch_overhead_per_kernel():
    assert cudagraphs.launch_overhead_us(0.4, 0.08, 40) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="positive"):
        cudagraphs.launch_overhead_us(1.0, 0.5, 0)


def test_width_sweep_on_cpu_rows_carry_spread_and_flops():
    rows = cudagraphs.width_sweep([8, 32], 4, device="cpu", dtype=torch.float32, with_graph=False, depth=3,
                                  warmup_ms=5, measure_ms=15, progress=False)
    assert [r["width"] for r in rows] == [8, 32]
    assert {r["backend"] for r in rows} == {"PyTorch eager (cpu, fp32)"}
    for r in rows:
        assert len(r["pass_medians_ms"]) == 2 and r["spread_pct"] >= 0
        assert r["gflop_per_layer"] == pytest.approx(2 * 4 * r["width"] ** 2 / 1e9)
        assert r["per_layer_us"] == pytest.approx(r["latency_ms"] * 1e3 / 3)


def _rows(times_us, widths, batch=8, backend="b"):
    return [{"width": w, "backend": backend, "per_layer_us": t, "gflop_per_layer": 2 * batch * w * w / 1e9,
             "spread_pct": 1.0} for w, t in zip(widths, times_us)]


def test_cpu_overhead_model_recovers_overhead_and_rate():
    widths = [16, 64, 256, 1024]
    overhead_us, mflop_per_us = 10.0, 50.0     # 50 MFLOP/us = 50,000 GFLOP/s
    times = [overhead_us + 2 * 8 * w * w / 1e6 / mflop_per_us for w in widths]
    model = cudagraphs.cpu_overhead_model(_rows(times, widths) + _rows([1.0], [16], backend="other"), "b")
    assert model.overhead_us_per_layer == pytest.approx(overhead_us)
    assert model.gflops == pytest.approx(mflop_per_us * 1e3)
    assert [r["width"] for r in model.rows] == widths
    for r, t in zip(model.rows, times):
        assert r["model_us_per_layer"] == pytest.approx(t)
        assert r["overhead_share_pct"] == pytest.approx(overhead_us / t * 100)
    with pytest.raises(ValueError, match="wider"):
        cudagraphs.cpu_overhead_model(_rows([10.0, 9.0], [16, 32]), "b")
    with pytest.raises(ValueError, match="two widths"):
        cudagraphs.cpu_overhead_model(_rows([10.0], [16]), "b")


def test_graph_overhead_rows():
    rows = _rows([10.0, 12.0], [256, 512], backend="eager") + _rows([2.0, 9.0], [256, 512], backend="graph")
    out = cudagraphs.graph_overhead_rows(rows, "eager", "graph")
    assert [(r["width"], r["overhead_us_per_layer"]) for r in out] == [(256, 8.0), (512, 3.0)]
    assert out[0]["overhead_share_pct"] == pytest.approx(80.0)


def test_default_stream_refusal_is_clear_and_needs_no_gpu():
    message = cudagraphs.default_stream_refusal()
    assert message.startswith("ValueError: cannot capture a CUDA graph on the legacy default stream (handle 0)")
    assert "torch.cuda.Stream()" in message


def test_backend_label_names_device_and_precision():
    assert cudagraphs.backend_label(cudagraphs.TORCH_GRAPH, "cuda", torch.float16) == \
        "torch.cuda.CUDAGraph replay (cuda, fp16)"


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _gpu_model(width=64, depth=6):
    return cudagraphs.build_mlp(width, depth, device="cuda", dtype=torch.float16)


@needs_gpu
def test_torch_graph_replays_eager_output_and_follows_its_static_input():
    model = _gpu_model()
    x = cudagraphs.example_input(8, 64, device="cuda", dtype=torch.float16)
    graph = cudagraphs.capture_torch_graph(model, x, torch.cuda.Stream())
    assert graph.capture_seconds > 0 and graph.pool_bytes > 0
    out = cudagraphs.Timed(graph.replay, graph.stream).run_once()
    assert torch.equal(out, model(x))   # the same kernels on the same data
    x2 = cudagraphs.example_input(8, 64, device="cuda", dtype=torch.float16, seed=5)
    graph.static_input.copy_(x2)
    assert torch.equal(cudagraphs.Timed(graph.replay, graph.stream).run_once(), model(x2))
    m = bench.measure(graph.replay, stream=graph.stream, warmup_ms=5, measure_ms=20)
    assert m.timer == "cuda-events" and m.latency_ms.median > 0


@needs_gpu
def test_cuda_python_capture_of_the_static_enqueue():
    pytest.importorskip("cuda.bindings")
    model = _gpu_model(depth=6)
    x = cudagraphs.example_input(8, 64, device="cuda", dtype=torch.float16)
    static = cudagraphs.StaticMLP(model, 8)
    static.input.copy_(x)
    stream = torch.cuda.Stream()
    with cudagraphs.capture_static(static, 8, stream) as graph:
        nodes = cudagraphs.graph_node_types(graph)
        assert nodes.get("kernel", 0) >= model.ops_per_forward   # a GEMM and a ReLU per layer, at least
        out = cudagraphs.Timed(graph.replay, stream, output=lambda: static.output(8)).run_once()
        assert torch.equal(out, model(x))


@needs_gpu
def test_a_graph_freezes_the_input_address_and_the_shape():
    pytest.importorskip("cuda.bindings")
    model = _gpu_model()
    stale = cudagraphs.stale_input_demo(model, 8, torch.cuda.Stream())
    assert list(stale.values()) == [False, True, True, True]
    frozen = cudagraphs.frozen_shape_demo(model, 8, 16, torch.cuda.Stream())
    assert list(frozen.values()) == [16, 8, 16, True]


@needs_gpu
def test_warmup_rule_rows_show_a_lazy_cudamalloc_breaking_the_capture():
    pytest.importorskip("cuda.bindings")
    model = _gpu_model()
    x = cudagraphs.example_input(8, 64, device="cuda", dtype=torch.float16)
    rows = cudagraphs.warmup_rule_rows(model, x)
    assert [(r["warm_up"]) for r in rows] == ["no", "yes", "no", "yes"]
    lazy_cold, lazy_warm = rows[2], rows[3]
    assert lazy_cold["outcome"].startswith("CudaError: cudaMalloc") and lazy_cold["replay_matches_eager"] == "-"
    assert lazy_warm["outcome"].startswith("captured") and lazy_warm["replay_matches_eager"] is True
    assert rows[1]["replay_matches_eager"] is True
    # The stream still works after the abandoned capture.
    assert torch.equal(cudagraphs.Timed(lambda: model(x), torch.cuda.Stream()).run_once(), model(x))


@needs_gpu
def test_shape_graphs_capture_once_per_shape():
    model = _gpu_model()
    shapes = cudagraphs.ShapeGraphs(model, torch.cuda.Stream())
    captured = []
    for batch in [4, 1, 4, 16, 1]:
        x = cudagraphs.example_input(batch, 64, device="cuda", dtype=torch.float16, seed=batch)
        out, now = shapes.serve(x)
        captured.append(now)
        assert torch.equal(out, model(x))
    assert captured == [True, True, False, True, False]
    assert shapes.cache.hits == 2 and len(shapes.cache) == 3
    rows = shapes.rows()
    assert [r["shape"] for r in rows] == ["(4, 64)", "(1, 64)", "(16, 64)"]
    assert all(r["captures"] == 1 and r["capture_s"] > 0 for r in rows)
