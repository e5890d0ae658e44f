"""Stream ordering of TensorRTRunner's input copy, and EngineRunner's profile switch, without TensorRT.

TensorRTRunner used to copy its input on the current stream and enqueue on its own stream with
nothing ordering the two. The CPU test records the calls on stand-in streams; the GPU test makes the
race real (the current stream is kept busy, then the runner's "engine" reads its input buffer).
"""

import contextlib
import types

import pytest
import torch

from common.runners import TensorRTRunner
from common.trt.run import EngineRunner, TensorSpec, _Slot

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class FakeEngineRunner:
    """EngineRunner's surface that TensorRTRunner uses; its "inference" is y = x on `stream`."""

    def __init__(self, stream, device):
        self.stream, self.device, self.tensors = stream, device, {}

    def set_input_shapes(self, shapes, ctx_index=0):
        shape = shapes["input"]
        self.tensors = {"input": torch.zeros(shape, device=self.device),
                        "output": torch.zeros(shape, device=self.device)}

    def inputs(self, ctx_index=0):
        return {"input": self.tensors["input"]}

    def outputs(self, ctx_index=0):
        return {"output": self.tensors["output"]}

    def enqueue(self, ctx_index=0):
        with torch.cuda.stream(self.stream) if self.device == "cuda" else contextlib.nullcontext():
            self.tensors["output"].copy_(self.tensors["input"], non_blocking=True)


def bare_runner(stream, make_input, device):
    runner = TensorRTRunner.__new__(TensorRTRunner)   # no build: the engine is a stand-in
    runner.stream, runner.batch_size, runner.prepare_seconds = stream, 0, {}
    runner.make_input, runner.input_name = make_input, "input"
    runner.engine_runner = FakeEngineRunner(stream, device)
    return runner


def test_prepare_copies_on_the_runner_stream_after_the_current_stream(monkeypatch):
    log = []

    class Stream:
        depth = 0

        def wait_stream(self, other):
            log.append(("wait_stream", other))

        def synchronize(self):
            log.append(("synchronize",))

    stream = Stream()

    @contextlib.contextmanager
    def on(s):
        log.append(("enter", s))
        s.depth += 1
        yield
        s.depth -= 1

    monkeypatch.setattr(torch.cuda, "current_stream", lambda: "the current stream")
    monkeypatch.setattr(torch.cuda, "stream", on)
    runner = bare_runner(stream, lambda n: torch.full((n, 4), 7.0), "cpu")
    copy_ = torch.Tensor.copy_

    def recorded_copy(self, src, non_blocking=False):
        if self is runner.engine_runner.tensors.get("input"):
            log.append(("copy on the runner stream" if stream.depth else "copy on the current stream",))
        return copy_(self, src, non_blocking=non_blocking)

    monkeypatch.setattr(torch.Tensor, "copy_", recorded_copy)
    runner.prepare(2)
    assert log[:3] == [("wait_stream", "the current stream"), ("enter", stream), ("copy on the runner stream",)]
    assert torch.equal(runner.engine_runner.tensors["input"], torch.full((2, 4), 7.0))


@needs_gpu
def test_on_a_gpu_the_engine_reads_the_input_the_current_stream_computed():
    stream = torch.cuda.Stream()

    def make_input(n):
        torch.cuda._sleep(50_000_000)   # keeps the current stream busy (~tens of ms) before x is written
        return torch.full((n, 1024), 3.0, device="cuda")

    runner = bare_runner(stream, make_input, "cuda")
    runner._prepare(64)                 # without prepare()'s synchronize: run() follows at once
    runner.run()
    stream.synchronize()
    assert torch.equal(runner.engine_runner.tensors["output"].cpu(), torch.full((64, 1024), 3.0))


def test_a_refused_profile_switch_says_which_and_keeps_the_old_profile():
    class Context:
        def set_optimization_profile_async(self, profile_index, stream_handle):
            raise RuntimeError("Error in set optimization profile async.")   # what the binding raises

    runner = EngineRunner.__new__(EngineRunner)   # no GPU needed for the switch itself
    runner.engine = types.SimpleNamespace(num_optimization_profiles=2)
    runner.specs = {"x": TensorSpec("x", True, "FLOAT", (-1, 4), (((1, 4),) * 3,) * 2)}
    runner._slots = [_Slot(Context(), types.SimpleNamespace(cuda_stream=1234))]
    with pytest.raises(RuntimeError, match=r"refused to switch context 0 to profile 1 \(Error in set "
                                           r"optimization profile async.\); the context keeps profile 0"):
        runner.set_optimization_profile(0, 1)
    assert runner._slots[0].profile_index == 0
