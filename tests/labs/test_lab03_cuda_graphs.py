"""Lab 03 (CUDA graphs): the MLP and its allocation-free enqueue, measurement and overhead arithmetic
and every claim on CPU; captures, what a graph freezes, one graph per shape, stream order and
EngineRunner's graph drops on a GPU."""

import contextlib
import enum
import json
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from common import bench, checks, report
from common.labs import lab03_cuda_graphs as lab
from common.trt.graphs import GraphCache


def test_build_mlp_is_seeded_inference_only_and_keeps_the_signal():
    a = lab.build_mlp(64, depth=20, seed=0)
    b = lab.build_mlp(64, depth=20, seed=0)
    c = lab.build_mlp(64, depth=20, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    assert not any(p.requires_grad for p in a.parameters())
    assert a.ops_per_forward == 40 and a.flops_per_layer(8) == 2 * 8 * 64 * 64
    x1 = lab.example_input(8, 64, seed=1)
    x2 = lab.example_input(8, 64, seed=2)
    y1, y2 = a(x1), a(x2)
    assert y1.shape == (8, 64)
    # He initialisation: after 20 ReLU layers the output still has the input's scale and depends on it.
    assert 0.05 < y1.norm() / x1.norm() < 20
    assert checks.relative_error(y2, y1) > 0.1


def test_static_mlp_matches_the_module_and_writes_only_its_own_buffers():
    model = lab.build_mlp(32, depth=5)
    static = lab.StaticMLP(model, max_batch=8)
    buffers = {static.input.data_ptr(), *(t.data_ptr() for t in static._activations)}
    x = lab.example_input(8, 32)
    static.input.copy_(x)
    out = static.enqueue(8)
    assert checks.relative_error(out, model(x)) <= 1e-6
    assert out.data_ptr() in buffers and out.data_ptr() == static.output(8).data_ptr()
    assert static.enqueue(8).data_ptr() == out.data_ptr()   # same buffers every call
    small = static.enqueue(3)
    assert small.shape == (3, 32) and checks.relative_error(small, model(x[:3])) <= 1e-6
    assert static.buffer_bytes == 3 * 8 * 32 * 4
    with pytest.raises(ValueError, match="outside 1..8"):
        static.enqueue(9)


def test_timed_verify_measure_and_compare_on_cpu():
    model = lab.build_mlp(16, depth=4)
    x = lab.example_input(4, 16)
    static = lab.StaticMLP(model, 4)
    static.input.copy_(x)
    slow = lab.Timed(lambda: (time.sleep(0.002), model(x))[1])
    timed = {"eager": lab.Timed(lambda: model(x)),
             "static": lab.Timed(lambda: static.enqueue(4)),
             "slow": slow}
    checks = lab.verify(timed, model(x))
    assert checks["eager"] == (0.0, True) and checks["static"][0] <= 1e-6 and checks["slow"][1]
    runs = bench.measure_interleaved(lab.bench_configs(timed), device="cpu", batch_size=4, warmup_ms=5,
                                    measure_ms=20)
    assert all(len(ms) == 2 and ms[0].backend == label for label, ms in runs.items())
    rows = {r["backend"]: r for r in lab.comparison_rows(runs, "eager", depth=4)}
    assert rows["eager"]["speedup"] == 1.0 and rows["eager"]["verdict"] == "baseline"
    assert rows["slow"]["speedup"] < 0.5 and rows["slow"]["significant"]
    assert rows["slow"]["per_layer_us"] == pytest.approx(rows["slow"]["latency_ms"] * 1e3 / 4)
    assert rows["eager"]["throughput_per_s"] == pytest.approx(4 / (rows["eager"]["latency_ms"] / 1e3))
    assert rows["eager"]["interval"] == "-" and rows["slow"]["interval"].count("-") == 1
    assert rows["slow"]["host_ms"] >= 2.0 and rows["slow"]["regime"] == "cpu"   # a CPU has no kernel time


def test_launch_overhead_per_kernel():
    assert lab.launch_overhead_us(0.4, 0.08, 40) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="positive"):
        lab.launch_overhead_us(1.0, 0.5, 0)


def test_width_sweep_on_cpu_rows_carry_spread_and_flops():
    rows = lab.width_sweep([8, 32], 4, device="cpu", dtype=torch.float32, with_graph=False, depth=3,
                           warmup_ms=2, measure_ms=6, progress=False)
    assert [r["width"] for r in rows] == [8, 32]
    assert {r["backend"] for r in rows} == {"PyTorch eager (cpu, fp32)"}
    for r in rows:
        assert len(r["pass_medians_ms"]) == bench.PASSES and r["spread_pct"] >= 0 and r["regime"] == "cpu"
        assert r["gflop_per_layer"] == pytest.approx(2 * 4 * r["width"] ** 2 / 1e9)
        assert r["per_layer_us"] == pytest.approx(r["latency_ms"] * 1e3 / 3)


def _rows(times_us, widths, batch=8, backend="b"):
    return [{"width": w, "backend": backend, "per_layer_us": t, "gflop_per_layer": 2 * batch * w * w / 1e9,
             "spread_pct": 1.0} for w, t in zip(widths, times_us)]


def test_cpu_overhead_model_recovers_overhead_and_rate():
    widths = [16, 64, 256, 1024]
    overhead_us, mflop_per_us = 10.0, 50.0     # 50 MFLOP/us = 50,000 GFLOP/s
    times = [overhead_us + 2 * 8 * w * w / 1e6 / mflop_per_us for w in widths]
    model = lab.cpu_overhead_model(_rows(times, widths) + _rows([1.0], [16], backend="other"), "b")
    assert model.overhead_us_per_layer == pytest.approx(overhead_us)
    assert model.gflops == pytest.approx(mflop_per_us * 1e3)
    assert [r["width"] for r in model.rows] == widths
    for r, t in zip(model.rows, times):
        assert r["model_us_per_layer"] == pytest.approx(t)
        assert r["overhead_share_pct"] == pytest.approx(overhead_us / t * 100)
    with pytest.raises(ValueError, match="wider"):
        lab.cpu_overhead_model(_rows([10.0, 9.0], [16, 32]), "b")
    with pytest.raises(ValueError, match="two widths"):
        lab.cpu_overhead_model(_rows([10.0], [16]), "b")


def test_graph_overhead_rows():
    rows = _rows([10.0, 12.0], [256, 512], backend="eager") + _rows([2.0, 9.0], [256, 512], backend="graph")
    out = lab.graph_overhead_rows(rows, "eager", "graph")
    assert [(r["width"], r["overhead_us_per_layer"]) for r in out] == [(256, 8.0), (512, 3.0)]
    assert out[0]["overhead_share_pct"] == pytest.approx(80.0)


def test_default_stream_refusal_is_clear_and_needs_no_gpu():
    message = lab.default_stream_refusal()
    assert message.startswith("ValueError: cannot capture a CUDA graph on the legacy default stream (handle 0)")
    assert "torch.cuda.Stream()" in message


def test_backend_label_names_device_and_precision():
    assert lab.backend_label(lab.TORCH_GRAPH, "cuda", torch.float16) == \
        "torch.cuda.CUDAGraph replay (cuda, fp16)"


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _gpu_model(width=64, depth=6):
    return lab.build_mlp(width, depth, device="cuda", dtype=torch.float16)


@needs_gpu
def test_torch_graph_replays_eager_output_and_follows_its_static_input():
    model = _gpu_model()
    x = lab.example_input(8, 64, device="cuda", dtype=torch.float16)
    graph = lab.capture_torch_graph(model, x, torch.cuda.Stream())
    assert graph.capture_seconds > 0 and graph.pool_bytes > 0
    out = lab.Timed(graph.replay, graph.stream).run_once()
    assert torch.equal(out, model(x))   # the same kernels on the same data
    x2 = lab.example_input(8, 64, device="cuda", dtype=torch.float16, seed=5)
    graph.static_input.copy_(x2)
    assert torch.equal(lab.Timed(graph.replay, graph.stream).run_once(), model(x2))
    m = bench.measure(graph.replay, stream=graph.stream, warmup_ms=5, measure_ms=20)
    assert m.timer == "cuda-events" and m.latency_ms.median > 0


@needs_gpu
def test_cuda_python_capture_of_the_static_enqueue():
    pytest.importorskip("cuda.bindings")
    model = _gpu_model(depth=6)
    x = lab.example_input(8, 64, device="cuda", dtype=torch.float16)
    static = lab.StaticMLP(model, 8)
    static.input.copy_(x)
    stream = torch.cuda.Stream()
    with lab.capture_static(static, 8, stream) as graph:
        nodes = lab.graph_node_types(graph)
        assert nodes.get("kernel", 0) >= model.ops_per_forward   # a GEMM and a ReLU per layer, at least
        out = lab.Timed(graph.replay, stream, output=lambda: static.output(8)).run_once()
        assert torch.equal(out, model(x))


@needs_gpu
def test_a_graph_freezes_the_input_address_and_the_shape():
    pytest.importorskip("cuda.bindings")
    model = _gpu_model()
    stale = lab.stale_input_demo(model, 8, torch.cuda.Stream())
    assert list(stale.values()) == [False, True, True, True]
    frozen = lab.frozen_shape_demo(model, 8, 16, torch.cuda.Stream())
    assert list(frozen.values()) == [16, 8, 16, True]


@needs_gpu
def test_warmup_rule_rows_show_a_lazy_cudamalloc_breaking_the_capture():
    pytest.importorskip("cuda.bindings")
    model = _gpu_model()
    x = lab.example_input(8, 64, device="cuda", dtype=torch.float16)
    rows = lab.warmup_rule_rows(model, x)
    assert [(r["warm_up"]) for r in rows] == ["no", "yes", "no", "yes"]
    lazy_cold, lazy_warm = rows[2], rows[3]
    assert lazy_cold["outcome"].startswith("CudaError: cudaMalloc") and lazy_cold["replay_matches_eager"] == "-"
    assert lazy_warm["outcome"].startswith("captured") and lazy_warm["replay_matches_eager"] is True
    assert rows[1]["replay_matches_eager"] is True
    # The stream still works after the abandoned capture.
    assert torch.equal(lab.Timed(lambda: model(x), torch.cuda.Stream()).run_once(), model(x))


@needs_gpu
def test_shape_graphs_capture_once_per_shape():
    model = _gpu_model()
    shapes = lab.ShapeGraphs(model, torch.cuda.Stream())
    captured = []
    for batch in [4, 1, 4, 16, 1]:
        x = lab.example_input(batch, 64, device="cuda", dtype=torch.float16, seed=batch)
        out, now = shapes.serve(x)
        captured.append(now)
        assert torch.equal(out, model(x))
    assert captured == [True, True, False, True, False]
    assert shapes.cache.hits == 2 and len(shapes.cache) == 3
    rows = shapes.rows()
    assert [r["shape"] for r in rows] == ["(4, 64)", "(1, 64)", "(16, 64)"]
    assert all(r["captures"] == 1 and r["capture_s"] > 0 for r in rows)


# -- stream order ----------------------------------------------------------------------------------

def test_copy_into_waits_for_the_current_stream_before_copying(monkeypatch):
    events = []
    current = object()

    class Stream:
        def wait_stream(self, other):
            events.append(("wait", other))

    class Target:
        def copy_(self, source):
            events.append(("copy", source))

    @contextlib.contextmanager
    def on(stream):
        events.append(("enter", stream))
        yield
        events.append(("exit", stream))

    monkeypatch.setattr(torch.cuda, "current_stream", lambda: current)
    monkeypatch.setattr(torch.cuda, "stream", on)
    stream, source = Stream(), object()
    lab.copy_into(stream, Target(), source)
    assert events == [("wait", current), ("enter", stream), ("copy", source), ("exit", stream)]


@needs_gpu
def test_copy_into_reads_the_source_only_once_the_current_stream_wrote_it():
    stream = torch.cuda.Stream()
    target = torch.zeros(256, 256, device="cuda")
    torch.cuda.synchronize()
    torch.cuda._sleep(50_000_000)          # keep the current stream busy before it writes the source
    source = torch.full((256, 256), 7.0, device="cuda")
    lab.copy_into(stream, target, source)
    stream.synchronize()                   # only the copy's stream: the order must come from copy_into
    assert torch.all(target == 7.0)


# -- EngineRunner's graphs on a stand-in engine ----------------------------------------------------------

TRT_API = json.loads((Path(__file__).parents[1] / "data" / "tensorrt-11.4-python-api.json").read_text())
STAND_IN_PROFILE = ((1, 4), (4, 4), (8, 4))


class StandInEngine:
    """The ICudaEngine members EngineRunner uses; two identical profiles, as the lab's engine has."""

    num_io_tensors, num_optimization_profiles, device_memory_size_v2 = 2, 2, 4096

    def __init__(self, trt):
        self.trt, self.executions = trt, 0

    def get_tensor_name(self, index):
        return ["input", "output"][index]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "input" else self.trt.TensorIOMode.OUTPUT

    def is_shape_inference_io(self, name):
        return False

    def get_tensor_dtype(self, name):
        return self.trt.DataType.FLOAT

    def get_tensor_shape(self, name):
        return (-1, 4)

    def get_tensor_profile_shape(self, name, profile_index):
        return list(STAND_IN_PROFILE)

    def create_execution_context(self):
        return StandInContext(self)


class StandInContext:
    """Like TensorRT's context it keeps no graph: only shapes, addresses, and a copy output = input."""

    def __init__(self, engine):
        self.engine, self.shape, self.addresses = engine, None, {}

    def set_optimization_profile_async(self, profile_index, stream_handle):
        return True

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return True

    def infer_shapes(self):
        return [] if self.shape else ["input"]

    def get_tensor_shape(self, name):
        return self.shape

    def set_tensor_address(self, name, memory):
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle):
        from cuda.bindings import runtime as cudart

        self.engine.executions += 1
        err, = cudart.cudaMemcpyAsync(self.addresses["output"], self.addresses["input"], 4 * self.shape[0] * 4,
                                      cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream_handle)
        return int(err) == 0


@needs_gpu
def test_engine_runner_drops_its_graph_on_a_shape_or_profile_change_and_recaptures(monkeypatch):
    pytest.importorskip("cuda.bindings")
    trt = types.ModuleType("tensorrt")
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", TRT_API["classes"]["TensorIOMode"]["enum_values"])
    trt.DataType = enum.IntEnum("DataType", TRT_API["classes"]["DataType"]["enum_values"])
    trt.Dims = tuple
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    from common.trt.run import EngineRunner

    engine = StandInEngine(trt)
    runner = EngineRunner(engine)
    drops = lab.engine_runner_graph_drops(runner, {"input": (4, 4)}, {"input": (2, 4)}, other_profile=1)
    assert drops == {lab.tensorrt_path.SHAPE_DROPS: True, lab.tensorrt_path.SHAPE_RECAPTURES: True,
                     lab.tensorrt_path.PROFILE_DROPS: True, lab.tensorrt_path.PROFILE_RECAPTURES: True}
    # EngineRunner's own cache did it: three captures, each a warm-up enqueue and a captured one.
    assert sum(runner.graphs().captures.values()) == 3 and engine.executions == 6
    with torch.cuda.stream(runner.stream()):
        runner.inputs()["input"].fill_(3.0)
    assert runner.enqueue_graph() is False and engine.executions == 6   # a replay: TensorRT is not called
    runner.synchronize()
    assert runner.outputs()["output"].shape == (4, 4) and torch.all(runner.outputs()["output"] == 3.0)
    runner.close()


# -- what one launch costs ------------------------------------------------------------------------

def test_ptx_target_picks_the_oldest_target_the_device_runs_and_refuses_older_gpus():
    assert lab.ptx_target(9, 0) == ("7.0", "sm_80") and lab.ptx_target(12, 0) == ("7.0", "sm_80")
    assert lab.ptx_target(7, 5) == ("6.3", "sm_75") and lab.ptx_target(7, 0) == ("6.0", "sm_70")
    with pytest.raises(ValueError, match="older than"):
        lab.ptx_target(6, 1)


def test_empty_kernel_ptx_is_an_entry_without_parameters_nul_terminated():
    ptx = lab.empty_kernel_ptx(9, 0)
    assert ptx.endswith(b"\0") and ptx.count(b"\0") == 1
    text = ptx.decode().rstrip("\0")
    assert ".target sm_80" in text and ".version 7.0" in text and ".address_size 64" in text
    assert f".visible .entry {lab.launches.EMPTY_KERNEL}()" in text and "ret;" in text


def test_loop_launches_count_times_and_refuses_zero():
    calls = []
    lab.launches.loop(lambda: calls.append(1), 40)()
    assert len(calls) == 40
    with pytest.raises(ValueError, match="at least 1"):
        lab.launches.loop(lambda: None, 0)


def test_available_methods_say_why_not_on_a_cpu(monkeypatch):
    assert set(lab.available_methods(has_gpu=False).values()) == {"needs an NVIDIA GPU: nothing is launched on a CPU"}
    monkeypatch.setattr(lab.launches.env, "has_triton", lambda: False)
    monkeypatch.setattr(lab.launches.env, "has", lambda what: what == "cuda-bindings")
    methods = lab.available_methods(has_gpu=True)
    assert methods[lab.launches.DRIVER] == "" and "Triton" in methods[lab.launches.TRITON]


def _launch_runs(host_ms: dict, count=40, event_ms=None, kernel_ms=None):
    """Five passes per method with the given host time per call (ms), `count` kernels per call."""
    def measurement(name, host):
        stats = bench.Stats.of([host])
        event = bench.Stats.of([(event_ms or {}).get(name, host)])
        kernel = None if kernel_ms is None else bench.KernelTime(kernel_ms[name], kernel_ms[name], 0.0, count, 5)
        return bench.Measurement(name, name, "cuda", 1, event, stats, host, 10, 1.0, "cuda-events",
                                 extra={"kernels": count}, kernel=kernel)

    return {name: [measurement(name, h * (1 + 0.01 * k)) for k in range(5)] for name, h in host_ms.items()}


def test_launch_cost_rows_divide_by_the_kernels_per_call():
    runs = _launch_runs({lab.launches.EAGER_FORWARD: 0.8, lab.launches.DRIVER: 0.12},
                        kernel_ms={lab.launches.EAGER_FORWARD: 0.04, lab.launches.DRIVER: 0.04})
    rows = {r["method"]: r for r in lab.launch_cost_rows(runs)}
    driver = rows[lab.launches.DRIVER]
    assert lab.kernels_per_call(runs[lab.launches.DRIVER]) == 40 and driver["kernels_per_call"] == 40
    assert driver["host_us_per_kernel"] == pytest.approx(0.12 * 1.02 * 1e3 / 40)
    assert driver["host_range_us"] == f"{0.12e3 / 40:.2f}-{0.12 * 1.04e3 / 40:.2f}"
    assert driver["kernel_us_per_kernel"] == pytest.approx(1.0)
    assert rows[lab.launches.EAGER_FORWARD]["regime"] == "host-bound"


def test_trtexec_commands_build_the_studys_engine_with_and_without_a_graph():
    commands = lab.trtexec_commands("mlp_20x256_fp16.onnx", 256, 8, max_batch=64)
    assert len(commands) == 2 and commands[1] == commands[0] + " --noCudaGraph"
    for option in ("--onnx=mlp_20x256_fp16.onnx", "--profile=0", "--profile=1", "--minShapes=input:1x256",
                   "--optShapes=input:8x256", "--maxShapes=input:64x256", "--useProfile=0", "--shapes=input:8x256"):
        assert option in commands[0]
    config = lab.engine_config(256, 8, 64)
    assert len(config.profiles) == 2 and config.profiles[0] == config.profiles[1]


@pytest.mark.skipif(not torch.cuda.is_available() or lab.available_methods(has_gpu=True)[lab.launches.DRIVER] != "",
                    reason="needs a CUDA GPU and cuda-python")
def test_driver_launcher_launches_the_empty_kernel_on_its_stream():
    stream = torch.cuda.Stream()
    launch = lab.driver_launcher(stream)
    lab.launches.loop(launch, 100)()
    stream.synchronize()
    m = bench.measure(lab.launches.loop(launch, 40), stream=stream, warmup_ms=5, measure_ms=20)
    assert m.kernel is None or m.kernel.activities_per_iter == 40   # CUPTI sees every launch


@pytest.mark.skipif(not torch.cuda.is_available() or lab.available_methods(has_gpu=True)[lab.launches.TRITON] != "",
                    reason="needs a CUDA GPU and Triton")
def test_triton_launch_writes_its_value_and_the_launch_study_runs():
    stream = torch.cuda.Stream()
    assert float(lab.check_triton_launch(stream).item()) == 1.0
    model = _gpu_model(width=32, depth=4)
    x = lab.example_input(8, 32, device="cuda", dtype=torch.float16)
    graph = lab.capture_torch_graph(model, x, torch.cuda.Stream())
    configs = lab.launch_configs(lambda: model(x), torch.cuda.Stream(), graph.replay, graph.stream,
                                 torch.zeros_like(x), 8, methods=lab.available_methods(has_gpu=True))
    runs = bench.measure_interleaved(configs, passes=2, warmup_ms=5, measure_ms=10)
    assert lab.launches.TRITON in runs and {lab.kernels_per_call(ms) for ms in runs.values()} == {8}
    rows = lab.launch_cost_rows(runs)
    assert all(r["host_us_per_kernel"] > 0 for r in rows)


# -- claims ----------------------------------------------------------------------------------------

def _label(kind, device="cuda", dtype=torch.float16):
    return lab.backend_label(kind, device, dtype)


def _runs(medians_ms: dict, batch=8, kernel_ms: dict | None = None) -> dict:
    """One measurement per pass median given, with kernel time per configuration (ms; None: not measured)."""
    def measurement(name, ms):
        stats = bench.Stats.of([ms])
        k = (kernel_ms or {}).get(name)
        kernel = None if k is None else bench.KernelTime(k, k, 0.0, 40, 5)
        return bench.Measurement(name, name, "cuda", batch, stats, stats, ms, 10, 1.0, "cuda-events", kernel=kernel,
                                 kernel_note="" if k is not None else "switched off")

    return {name: [measurement(name, ms) for ms in passes] for name, passes in medians_ms.items()}


FIVE = (1.0, 1.01, 1.02, 0.99, 1.0)   # five pass medians, relative


def _passes(ms):
    return tuple(ms * f for f in FIVE)


LAUNCH_BOUND = {_label(lab.EAGER): 0.82, _label(lab.STATIC_EAGER): 0.71, _label(lab.TORCH_GRAPH): 0.080,
                _label(lab.CUDA_PYTHON_GRAPH): 0.079, _label(lab.COMPILE): 0.155}
KERNELS = {_label(lab.EAGER): 0.072, _label(lab.TORCH_GRAPH): 0.072}


def _launch_bound(**changes):
    medians = {**LAUNCH_BOUND, **changes.pop("medians", {})}
    return _runs({k: _passes(v) for k, v in medians.items()}, kernel_ms={**KERNELS, **changes.pop("kernels", {})})


STALE_OK = {"replay after reallocating the input computes the NEW input": False,
            "replay after reallocating the input computes the OLD input": True,
            "fix 1, copy into the captured buffer: replay computes the new input": True,
            "fix 2, recapture on the new tensor: replay follows the new tensor": True}
FROZEN_OK = {"rows in the input": 16, "rows the batch-8 graph computes": 8, "rows the batch-16 graph computes": 16,
             "computed rows match eager": True}
WARMUP_OK = [{"outcome": "captured: {'kernel': 40}", "replay_matches_eager": True},
             {"outcome": "captured: {'kernel': 40}", "replay_matches_eager": True},
             {"outcome": "CudaError: cudaMalloc of 1048576 bytes of scratch failed: cudaErrorStreamCaptureUnsupported",
              "replay_matches_eager": "-"},
             {"outcome": "captured: {'memset': 1, 'kernel': 40}", "replay_matches_eager": True}]
REQUESTS = [8, 1, 8, 64, 1, 4096, 8, 64, 4096, 8]
LAUNCHES = {lab.launches.EAGER_FORWARD: 0.80, lab.launches.TORCH_OP: 0.30, lab.launches.TRITON: 0.40,
            lab.launches.DRIVER: 0.12, lab.launches.GRAPH: 0.01}
BOTH_METHODS = {lab.launches.TRITON: "", lab.launches.DRIVER: ""}


def _shape_cache(requests=REQUESTS, capture_s=0.008):
    cache = GraphCache(lambda: None, lambda key: object())
    for batch in requests:
        cache.get_or_capture((batch, 256))
    cache.capture_seconds = {key: capture_s for key in cache.capture_seconds}
    return cache


def _gpu_results(**changes) -> lab.Results:
    fields = dict(
        device="cuda", dtype=torch.float16, has_cuda_python=True, width=256, batch=8, big_width=4096, big_batch=4096,
        runs=_launch_bound(), kernels=40, compile_seconds=4.7, big_eager_tflop_per_s=606.0,
        big_runs=_runs({_label(lab.EAGER): _passes(4.5), _label(lab.TORCH_GRAPH): _passes(4.4)}, batch=4096),
        launch_runs=_launch_runs(LAUNCHES), launch_methods=BOTH_METHODS,
        requests=REQUESTS, shape_cache=_shape_cache(), stale=STALE_OK, frozen=FROZEN_OK, warmup_rows=WARMUP_OK)
    fields.update(changes)
    return lab.Results(**fields)


def _by_claim(lab_report):
    return {c.claim: c for c in lab_report.claims}


ORDER = ("speedup", "per_kernel", "eager_host_bound", "graph_device_bound", "bare_triton", "bare_driver", "compile",
         "compute_bound", "per_shape", "capture_cost", "cuda_python", "same_graph", "address", "shape", "warmup",
         "cpu_small", "cpu_large")


def test_claims_on_a_gpu_with_cuda_python_all_hold():
    results = _gpu_results()
    texts = lab.claim_texts(results)
    got = _by_claim(lab.claims(results))
    assert list(got) == [texts[k] for k in ORDER]
    assert texts["speedup"] == ("launch-bound (20 x 256, batch 8): CUDA graph replay is at least 3x faster than "
                                "eager launches")
    statuses = {k: got[texts[k]].status for k in texts}
    assert statuses == {**{k: report.HOLDS for k in texts}, "cpu_small": report.NOT_APPLICABLE,
                        "cpu_large": report.NOT_APPLICABLE}
    assert got[texts["speedup"]].measured.startswith("10.25x [") and got[texts["speedup"]].interval is not None
    assert got[texts["per_kernel"]].measured == "18.50 us/op"
    assert got[texts["eager_host_bound"]].measured.startswith("9% [")
    assert got[texts["graph_device_bound"]].measured.startswith("90% [")
    assert got[texts["bare_driver"]].measured.startswith("6.67x [")
    assert "40 launches against one forward of 40 operations; judged on host time" in got[texts["bare_driver"]].why
    assert got[texts["compute_bound"]].measured.startswith("1.023x [")
    assert "judged on event time over 5 passes" in got[texts["speedup"]].why
    assert got[texts["per_shape"]].why == "10 requests, 4 shapes"
    assert got[texts["shape"]].why == "the batch-16 graph computed 16"
    assert got[texts["warmup"]].why == WARMUP_OK[2]["outcome"]   # the whole message, not cut
    assert got[texts["cpu_small"]].why == "the CPU counterpart runs without a GPU; here the graph measures the overhead"
    assert "PyTorch's cost per operator, not CUDA's per launch" in texts["per_kernel"]


@pytest.mark.parametrize("key, changes", [
    ("speedup", {"runs": _launch_bound(medians={_label(lab.EAGER): 0.20})}),
    ("per_kernel", {"kernels": 400}),
    ("eager_host_bound", {"runs": _launch_bound(kernels={_label(lab.EAGER): 0.70})}),
    ("graph_device_bound", {"runs": _launch_bound(kernels={_label(lab.TORCH_GRAPH): 0.030})}),
    ("bare_triton", {"launch_runs": _launch_runs({**LAUNCHES, lab.launches.TRITON: 1.2})}),
    ("bare_driver", {"launch_runs": _launch_runs({**LAUNCHES, lab.launches.DRIVER: 0.95})}),
    ("compile", {"runs": _launch_bound(medians={_label(lab.COMPILE): 0.86})}),
    ("compute_bound", {"big_runs": _runs({_label(lab.EAGER): _passes(4.5), _label(lab.TORCH_GRAPH): _passes(4.0)})}),
    ("per_shape", {"shape_cache": _shape_cache(REQUESTS + [2])}),
    ("capture_cost", {"shape_cache": _shape_cache(capture_s=0.0005)}),
    ("cuda_python", {"runs": _launch_bound(medians={_label(lab.STATIC_EAGER): 0.145})}),
    ("same_graph", {"runs": _launch_bound(medians={_label(lab.CUDA_PYTHON_GRAPH): 0.100})}),
    ("address", {"stale": {**STALE_OK, "fix 1, copy into the captured buffer: replay computes the new input": False}}),
    ("shape", {"frozen": {**FROZEN_OK, "rows the batch-8 graph computes": 16}}),
    ("warmup", {"warmup_rows": WARMUP_OK[:2] + [{"outcome": "captured: {'memset': 1, 'kernel': 40}",
                                                 "replay_matches_eager": True}, WARMUP_OK[3]]}),
])
def test_each_gpu_claim_fails_on_its_own(key, changes):
    results = _gpu_results(**changes)
    texts = lab.claim_texts(results)
    got = _by_claim(lab.claims(results))
    failed = {k for k in texts if got[texts[k]].status == report.FAILS}
    assert failed == {key}
    assert got[texts[key]].why   # every claim that does not hold says why


NOISY = (0.6, 1.4, 1.0, 0.7, 1.3)   # pass medians spread wider than the effect


@pytest.mark.parametrize("key, changes", [
    ("speedup", {"runs": {**_launch_bound(), **_runs({_label(lab.EAGER): tuple(0.24 * f for f in NOISY)},
                                                     kernel_ms=KERNELS)}}),
    ("compile", {"runs": {**_launch_bound(), **_runs({_label(lab.COMPILE): tuple(0.82 * f for f in NOISY)})}}),
    ("bare_driver", {"launch_runs": {**_launch_runs(LAUNCHES), **_launch_runs({lab.launches.DRIVER: 0.8})}}),
])
def test_noise_makes_a_claim_inconclusive_not_false(key, changes):
    if key == "bare_driver":   # host times spread around the eager forward's
        runs = changes["launch_runs"]
        runs[lab.launches.DRIVER] = [
            bench.Measurement(m.name, m.backend, "cuda", 1, m.latency_ms, bench.Stats.of([0.8 * f]), 0.8, 10, 1.0,
                              "cuda-events", extra=m.extra) for m, f in zip(runs[lab.launches.DRIVER], NOISY)]
    results = _gpu_results(**changes)
    texts = lab.claim_texts(results)
    claim = _by_claim(lab.claims(results))[texts[key]]
    assert claim.status == report.INCONCLUSIVE and "straddles" in claim.why


def test_regime_and_bare_launch_claims_say_why_when_not_measured():
    runs = _runs({k: _passes(v) for k, v in LAUNCH_BOUND.items()})   # no kernel time (CUPTI off)
    methods = {lab.launches.TRITON: "needs Triton (it ships with PyTorch's CUDA wheels)", lab.launches.DRIVER: ""}
    launch_runs = _launch_runs({k: v for k, v in LAUNCHES.items() if k != lab.launches.TRITON})
    results = _gpu_results(runs=runs, launch_runs=launch_runs, launch_methods=methods)
    texts = lab.claim_texts(results)
    got = _by_claim(lab.claims(results))
    for key in ("eager_host_bound", "graph_device_bound"):
        assert got[texts[key]].status == report.NOT_APPLICABLE
        assert got[texts[key]].why == "kernel time not measured: switched off"
    assert got[texts["bare_triton"]].status == report.NOT_APPLICABLE
    assert got[texts["bare_triton"]].why == methods[lab.launches.TRITON]
    assert got[texts["bare_driver"]].status == report.HOLDS
    no_study = _by_claim(lab.claims(_gpu_results(launch_runs=None, launch_methods=None)))
    assert no_study[texts["bare_driver"]].why == "the launch-cost study did not run"


def test_busy_interval_is_kernel_over_event_time_over_passes():
    runs = _launch_bound()[_label(lab.EAGER)]
    busy, (lo, hi) = lab.busy_interval(runs)
    assert busy == pytest.approx(0.072 / 0.82) and lo <= busy <= hi


def test_claims_on_a_gpu_without_cuda_python():
    results = _gpu_results(has_cuda_python=False, stale=None, frozen=None, warmup_rows=None)
    texts = lab.claim_texts(results)
    got = _by_claim(lab.claims(results))
    for key in ("cuda_python", "same_graph", "address", "shape", "warmup"):
        assert got[texts[key]].status == report.NOT_APPLICABLE
        assert got[texts[key]].why == "needs cuda-python (pip install cuda-bindings)"
    assert got[texts["speedup"]].status == report.HOLDS


def _cpu_results(narrow_share, wide_share):
    rows = [{"width": 16, "overhead_share_pct": narrow_share, "measured_us_per_layer": 12.0},
            {"width": 2048, "overhead_share_pct": wide_share, "measured_us_per_layer": 410.0}]
    return lab.Results(device="cpu", dtype=torch.float32, has_cuda_python=False, runs={}, width=256, batch=8,
                       big_width=4096, big_batch=4096, cpu_model=lab.CpuOverheadModel(9.5, 40.0, rows))


@pytest.mark.parametrize("narrow_share, wide_share, small, large", [
    (80.0, 2.3, report.HOLDS, report.HOLDS), (40.0, 30.0, report.FAILS, report.FAILS)])
def test_claims_on_a_cpu(narrow_share, wide_share, small, large):
    results = _cpu_results(narrow_share, wide_share)
    texts = lab.claim_texts(results)
    got = _by_claim(lab.claims(results))
    assert (got[texts["cpu_small"]].status, got[texts["cpu_large"]].status) == (small, large)
    assert got[texts["cpu_small"]].measured == f"{narrow_share:.0f}%"
    assert got[texts["cpu_small"]].why == "width 16: 9.5 us overhead per layer"
    assert got[texts["cpu_large"]].measured == f"{wide_share:.1f}%"
    assert got[texts["cpu_large"]].why == "width 2048: 410 us per layer"
    others = [got[texts[k]] for k in texts if not k.startswith("cpu")]
    assert len(others) == 15 and all(c.status == report.NOT_APPLICABLE for c in others)
    assert {c.why for c in others} == {"CUDA graphs need an NVIDIA GPU", "needs an NVIDIA GPU: nothing is launched on a CPU",
                                       "kernel time needs a GPU (CUPTI); on a CPU the host does all the work"}
    assert got[texts["bare_driver"]].why == "needs an NVIDIA GPU: nothing is launched on a CPU"
    assert got[texts["eager_host_bound"]].why.startswith("kernel time needs a GPU (CUPTI)")
    assert list(got)[-2:] == [texts["cpu_small"], texts["cpu_large"]]


def _trt_study(enqueue_ms=0.30, graph_ms=0.05, drops=(True, True, True, True), noise=FIVE):
    keys = (lab.tensorrt_path.SHAPE_DROPS, lab.tensorrt_path.SHAPE_RECAPTURES,
            lab.tensorrt_path.PROFILE_DROPS, lab.tensorrt_path.PROFILE_RECAPTURES)
    return {"runs": _runs({"TensorRT 11.4 execute_async_v3": tuple(enqueue_ms * f for f in FIVE),
                           "TensorRT 11.4 CUDA graph replay": tuple(graph_ms * f for f in noise)}),
            "engine_runner_graphs": dict(zip(keys, drops))}


@pytest.mark.parametrize("installed, why", [(False, "needs TensorRT: not installed"), (True, "needs TensorRT: no GPU")])
def test_tensorrt_claims_not_applicable_without_the_study(installed, why):
    got = lab.tensorrt_claims(None, tensorrt_installed=installed).claims
    assert [(c.claim, c.status, c.why) for c in got] == [
        (lab.TRT_SPEEDUP_CLAIM, report.NOT_APPLICABLE, why), (lab.TRT_INVALIDATION_CLAIM, report.NOT_APPLICABLE, why)]


@pytest.mark.parametrize("study, speedup, invalidation", [
    (_trt_study(), (report.HOLDS, "6.00x"), (report.HOLDS, "1")),
    (_trt_study(graph_ms=0.40), (report.FAILS, "0.75x"), (report.HOLDS, "1")),
    (_trt_study(graph_ms=0.30, noise=NOISY), (report.INCONCLUSIVE, "1.00x"), (report.HOLDS, "1")),
    (_trt_study(drops=(True, True, False, True)), (report.HOLDS, "6.00x"), (report.FAILS, "0")),
])
def test_tensorrt_claims(study, speedup, invalidation):
    lab_report = report.LabReport(lab.LAB)
    assert lab.tensorrt_claims(study, tensorrt_installed=True, lab_report=lab_report) is lab_report
    got = _by_claim(lab_report)
    assert (got[lab.TRT_SPEEDUP_CLAIM].status, got[lab.TRT_SPEEDUP_CLAIM].measured.split(" [")[0]) == speedup
    assert (got[lab.TRT_INVALIDATION_CLAIM].status, got[lab.TRT_INVALIDATION_CLAIM].measured) == invalidation
    if invalidation[0] == report.FAILS:
        assert got[lab.TRT_INVALIDATION_CLAIM].why == "kept: " + lab.tensorrt_path.PROFILE_DROPS


def test_the_graph_drop_claim_is_engine_runners_not_tensorrts():
    assert lab.TRT_INVALIDATION_CLAIM.startswith("EngineRunner: ")
    assert "TensorRT keeps no graph" in lab.TRT_INVALIDATION_CLAIM
