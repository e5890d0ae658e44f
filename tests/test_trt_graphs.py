"""GraphCache logic and CUDA-graph helpers on CPU; real capture of PyTorch kernels on a GPU."""

import enum
import time

import pytest
import torch

from common.trt.graphs import CudaError, CudaGraph, GraphCache, GraphCaptureError, _check


class FakeGraph:
    def __init__(self, key):
        self.key, self.closed = key, False

    def close(self):
        self.closed = True


def make_cache(state):
    def capture(key):
        time.sleep(0.002)  # a capture takes time; the cache must record it
        state["captured"].append(key)
        return FakeGraph(key)
    return GraphCache(lambda: state["shape"], capture)


def test_capture_once_then_hit():
    state = {"shape": (8, 3), "captured": []}
    cache = make_cache(state)
    g1, new1 = cache.get_or_capture()
    g2, new2 = cache.get_or_capture()
    assert new1 and not new2 and g1 is g2
    assert state["captured"] == [(8, 3)] and cache.captures == {(8, 3): 1} and cache.hits == 1
    assert cache.capture_seconds[(8, 3)] >= 0.002
    assert (8, 3) in cache and len(cache) == 1


def test_one_graph_per_key():
    state = {"shape": (8, 3), "captured": []}
    cache = make_cache(state)
    a, _ = cache.get_or_capture()
    state["shape"] = (16, 3)
    b, new = cache.get_or_capture()
    assert new and a is not b and b.key == (16, 3)
    c, new = cache.get_or_capture((8, 3))  # an explicit key overrides make_key
    assert c is a and not new
    assert len(cache) == 2


def test_invalidate_closes_and_recaptures():
    state = {"shape": (1,), "captured": []}
    cache = make_cache(state)
    old, _ = cache.get_or_capture()
    cache.invalidate()
    assert old.closed and len(cache) == 0
    new, captured_now = cache.get_or_capture()
    assert captured_now and new is not old and not new.closed
    assert cache.captures[(1,)] == 2  # stats survive invalidation


def test_invalidate_tolerates_graphs_without_close():
    cache = GraphCache(lambda: "k", lambda key: object())
    cache.get_or_capture()
    cache.invalidate()
    assert len(cache) == 0


class Err(enum.IntEnum):  # stands in for cuda-bindings' cudaError_t
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


def test_check_unpacks_results():
    assert _check((Err.cudaSuccess,)) is None
    assert _check((Err.cudaSuccess, "graph")) == "graph"
    assert _check((Err.cudaSuccess, 1, 2)) == (1, 2)
    with pytest.raises(CudaError, match="cudaGraphLaunch failed: cudaErrorInvalidValue"):
        _check((Err.cudaErrorInvalidValue, None), "cudaGraphLaunch")
    with pytest.raises(TypeError, match="tuple"):
        _check(Err.cudaSuccess)


@pytest.mark.parametrize("handle", [0, 1])
def test_refuses_the_legacy_default_stream(handle):
    calls = []
    with pytest.raises(ValueError, match="legacy default stream"):
        CudaGraph.capture(handle, lambda: calls.append(1))
    assert calls == []  # refused before anything ran


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_gpu
def test_capture_and_replay_pytorch_kernels():
    pytest.importorskip("cuda.bindings")
    stream = torch.cuda.Stream()
    a = torch.arange(1024, device="cuda", dtype=torch.float32)
    b = torch.empty_like(a)
    c = torch.empty_like(a)
    torch.cuda.synchronize()
    launches = []

    def enqueue():
        launches.append(1)
        with torch.cuda.stream(stream):
            torch.mul(a, 2, out=b)
            torch.add(b, 1, out=c)

    graph = CudaGraph.capture(stream.cuda_stream, enqueue)
    try:
        assert len(launches) == 2  # warm-up, then the captured call
        assert graph.capture_seconds > 0 and graph.warmup_seconds > 0
        with torch.cuda.stream(stream):
            c.zero_()
        graph.replay()
        stream.synchronize()
        assert torch.equal(c, a * 2 + 1)
        with torch.cuda.stream(stream):
            a.fill_(3.0)  # in place: same address, new data
        graph.replay()
        stream.synchronize()
        assert torch.all(c == 7.0)
        assert graph.replays == 2 and len(launches) == 2  # replays ran no Python
    finally:
        graph.close()
    graph.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        graph.replay()


@needs_gpu
def test_failed_enqueue_during_capture_is_reported_and_leaves_the_stream_usable():
    pytest.importorskip("cuda.bindings")
    stream = torch.cuda.Stream()
    x = torch.ones(16, device="cuda")
    calls = []

    def enqueue():
        calls.append(1)
        with torch.cuda.stream(stream):
            x.mul_(2)
        return len(calls) == 1  # succeeds in the warm-up, "fails" inside the capture

    with pytest.raises(GraphCaptureError, match="without CUDA graphs"):
        CudaGraph.capture(stream, enqueue)
    with torch.cuda.stream(stream):
        x.add_(1)  # not capturing any more: runs normally
    stream.synchronize()
    assert torch.all(x == 3.0)
