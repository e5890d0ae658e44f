"""EngineRunner against a stand-in engine whose "inference" is a real device copy y = x.

The stand-in context enqueues ``cudaMemcpyAsync(y, x)`` on the stream TensorRT would get, so buffers,
addresses, streams, profiles and CUDA-graph capture/replay are exercised on a GPU without TensorRT.
"""

import enum
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from common import env
from common.trt.buffers import ShapeError

API = json.loads((Path(__file__).parent / "data" / "tensorrt-11.4-python-api.json").read_text())
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_runner_needs_a_gpu():
    from common.trt.run import EngineRunner

    with pytest.raises(env.RequirementError, match="GPU"):
        EngineRunner(object())


def fake_tensorrt():
    trt = types.ModuleType("tensorrt")
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", API["classes"]["TensorIOMode"]["enum_values"])
    trt.DataType = enum.IntEnum("DataType", API["classes"]["DataType"]["enum_values"])
    trt.Dims = tuple
    return trt


PROFILES = [((1, 4), (4, 4), (8, 4)), ((8, 4), (16, 4), (32, 4))]


class Engine:  # ICudaEngine members used by EngineRunner (all in the 11.4 listing)
    num_io_tensors = 2
    num_optimization_profiles = 2
    device_memory_size_v2 = 4096

    def __init__(self, trt):
        self.trt, self.executions = trt, 0

    def get_tensor_name(self, index):
        return ["x", "y"][index]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "x" else self.trt.TensorIOMode.OUTPUT

    def is_shape_inference_io(self, name):
        return False

    def get_tensor_dtype(self, name):
        return self.trt.DataType.FLOAT

    def get_tensor_shape(self, name):
        return (-1, 4)

    def get_tensor_profile_shape(self, name, profile_index):
        return list(PROFILES[profile_index])

    def get_device_memory_size_for_profile_v2(self, profile_index):
        return 1024 * (profile_index + 1)

    def create_execution_context(self):
        return Context(self)


class Context:  # IExecutionContext members used by EngineRunner
    def __init__(self, engine):
        self.engine, self.shape, self.addresses, self.profile = engine, None, {}, 0

    def set_optimization_profile_async(self, profile_index, stream_handle):
        self.profile = profile_index
        return True

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return True

    def infer_shapes(self):
        return [] if self.shape else ["x"]

    def get_tensor_shape(self, name):
        return self.shape

    def set_tensor_address(self, name, memory):
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle):
        from cuda.bindings import runtime as cudart

        self.engine.executions += 1
        nbytes = 4 * self.shape[0] * self.shape[1]
        err, = cudart.cudaMemcpyAsync(self.addresses["y"], self.addresses["x"], nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream_handle)
        return int(err) == 0


@pytest.fixture
def runner_parts(monkeypatch):
    pytest.importorskip("cuda.bindings")
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return Engine(trt)


@needs_gpu
def test_run_copies_in_and_out(runner_parts):
    from common.trt.run import EngineRunner

    runner = EngineRunner(runner_parts)
    assert runner.input_names == ["x"] and runner.output_names == ["y"]
    assert runner.specs["x"].profile_shapes == tuple(PROFILES) and runner.specs["y"].dtype == "FLOAT"
    assert runner.stream().cuda_stream != 0 and runner.device_memory_bytes == 4096
    x = torch.randn(3, 4, device="cuda")
    out = runner.run({"x": x})
    assert torch.equal(out["y"], x)
    assert out["y"].data_ptr() != runner.outputs()["y"].data_ptr()  # a copy, not the live buffer
    with pytest.raises(TypeError, match="convert it first"):
        runner.run({"x": x.half()})
    with pytest.raises(KeyError, match="lacks inputs"):
        runner.run({})


@needs_gpu
def test_shapes_are_checked_against_the_active_profile(runner_parts):
    from common.trt.run import EngineRunner

    runner = EngineRunner(runner_parts)
    with pytest.raises(RuntimeError, match="set_input_shapes first"):
        runner.enqueue()
    with pytest.raises(ShapeError, match=r"'x'.*outside profile 0.*max \(8, 4\)"):
        runner.set_input_shapes({"x": (16, 4)})
    runner.set_optimization_profile(0, 1)
    runner.set_input_shapes({"x": (16, 4)})
    assert runner.context().profile == 1 and runner.outputs()["y"].shape == (16, 4)
    with pytest.raises(IndexError, match="the engine has 2"):
        runner.set_optimization_profile(0, 2)


@needs_gpu
def test_buffers_grow_only(runner_parts):
    from common.trt.run import EngineRunner

    runner = EngineRunner(runner_parts)
    runner.set_input_shapes({"x": (2, 4)})
    small = runner.inputs()["x"].data_ptr()
    runner.set_input_shapes({"x": (8, 4)})
    big = runner.inputs()["x"].data_ptr()
    runner.set_input_shapes({"x": (4, 4)})
    assert runner.inputs()["x"].data_ptr() == big and big != small
    assert runner.io_buffer_bytes() == 2 * 8 * 4 * 4
    assert runner.context().addresses["x"] == big


@needs_gpu
def test_graphs_replay_and_recapture_on_shape_change(runner_parts):
    from common.trt.run import EngineRunner

    engine = runner_parts
    runner = EngineRunner(engine)
    runner.set_input_shapes({"x": (4, 4)})
    stream = runner.stream()
    with torch.cuda.stream(stream):
        runner.inputs()["x"].copy_(torch.arange(16.0, device="cuda").view(4, 4))
    assert runner.enqueue_graph() is True  # warm-up + capture, then replay
    assert engine.executions == 2
    with torch.cuda.stream(stream):
        runner.inputs()["x"].fill_(5.0)
    assert runner.enqueue_graph() is False  # replay only: no execute_async_v3 call
    runner.synchronize()
    assert engine.executions == 2 and torch.all(runner.outputs()["y"] == 5.0)
    runner.set_input_shapes({"x": (4, 4)})  # same shapes: the graph stays
    assert runner.enqueue_graph() is False
    runner.set_input_shapes({"x": (2, 4)})  # new shapes: the old graph is dropped
    assert len(runner.graphs()) == 0
    assert runner.enqueue_graph() is True and engine.executions == 4
    assert sum(runner.graphs().captures.values()) == 2


@needs_gpu
def test_several_contexts_have_their_own_streams(runner_parts):
    from common.trt.run import EngineRunner

    runner = EngineRunner(runner_parts, num_contexts=2)
    assert runner.stream(0).cuda_stream != runner.stream(1).cuda_stream
    runner.set_input_shapes({"x": (2, 4)}, ctx_index=0)
    runner.set_input_shapes({"x": (6, 4)}, ctx_index=1)
    assert runner.context_for_shapes({"x": (6, 4)}) == 1 and runner.context_for_shapes({"x": (5, 4)}) is None
    a = runner.run({"x": torch.ones(6, 4, device="cuda")}, ctx_index=1)
    assert torch.all(a["y"] == 1) and runner.input_shapes(0) == {"x": (2, 4)}
    with pytest.raises(IndexError, match="has 2"):
        runner.enqueue(2)
