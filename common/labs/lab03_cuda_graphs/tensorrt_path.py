"""Lab 03 (CUDA graphs): the TensorRT path, run only where TensorRT is installed.

An engine built from the MLP's FP16 ONNX, ``execute_async_v3`` against CUDA-graph replay, one
context (and graph) per shape (:func:`tensorrt_study`; :func:`trtexec_commands` prints the same
engine as trtexec builds it), and what the course's
:class:`common.trt.EngineRunner` does with a context's graph when its shapes or profile change
(:func:`engine_runner_graph_drops`). TensorRT itself keeps no graph: a graph captured around
``execute_async_v3`` belongs to the caller, and replaying it after ``set_input_shape`` or a profile
switch would replay the old shapes' work. Dropping it is the caller's job, here EngineRunner's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from common import bench, checks, env

from .experiments import MLP, Timed, bench_configs, example_input, matches

#: What engine_runner_graph_drops records, in order.
SHAPE_DROPS = "EngineRunner.set_input_shapes with a new shape drops the context's graph"
SHAPE_RECAPTURES = "the next EngineRunner.enqueue_graph captures again (shape)"
PROFILE_DROPS = "EngineRunner.set_optimization_profile drops the context's graph"
PROFILE_RECAPTURES = "the next EngineRunner.enqueue_graph captures again (profile)"


def copy_into(stream: "torch.cuda.Stream", target: torch.Tensor, source: torch.Tensor) -> None:
    """Copy `source` into `target` on `stream`, ordered after the work queued so far on the current
    stream, which may still be computing `source` (as ``EngineRunner.run`` orders its feed)."""
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        target.copy_(source)


def engine_runner_graph_drops(runner: Any, shapes: Mapping[str, Sequence[int]],
                              other_shapes: Mapping[str, Sequence[int]], other_profile: int,
                              ctx_index: int = 0) -> dict[str, bool]:
    """What EngineRunner does with context `ctx_index`'s CUDA graph on a shape and a profile change.

    Captures a graph at `shapes`, sets `other_shapes` and records whether EngineRunner dropped the
    graph and whether ``enqueue_graph`` captured anew; then switches to `other_profile`, records the
    same, and comes back to `shapes`. EngineRunner keys its graphs by profile, shapes and buffer
    addresses; TensorRT would not notice a stale graph, so this is EngineRunner's behaviour.
    """
    runner.set_input_shapes(shapes, ctx_index)
    runner.capture_graph(ctx_index)
    result = {}
    runner.set_input_shapes(other_shapes, ctx_index)
    result[SHAPE_DROPS] = len(runner.graphs(ctx_index)) == 0
    result[SHAPE_RECAPTURES] = runner.enqueue_graph(ctx_index)
    runner.set_optimization_profile(ctx_index, other_profile)
    result[PROFILE_DROPS] = len(runner.graphs(ctx_index)) == 0
    runner.set_input_shapes(shapes, ctx_index)
    result[PROFILE_RECAPTURES] = runner.enqueue_graph(ctx_index)
    runner.synchronize(ctx_index)
    return result


def engine_config(width: int, batch: int, max_batch: int) -> Any:
    """The engine's ``BuildConfig``: two identical profiles (batch 1..`max_batch`, opt `batch`), so that a
    profile change can be shown on its own. Pure configuration: needs no TensorRT."""
    from common.trt import BuildConfig, batch_profile

    profile = batch_profile("input", (width,), 1, batch, max_batch)
    return BuildConfig(profiles=(profile, profile))


def trtexec_commands(onnx_name: str, width: int, batch: int, max_batch: int) -> list[str]:
    """The trtexec commands that build the study's engine and time it at `batch` as the study does:
    with CUDA-graph replay (trtexec 11's default) and with a plain enqueue per inference
    (``--noCudaGraph``). Printed on any machine: they need no TensorRT here."""
    from common.trt import trtexec_command

    config = engine_config(width, batch, max_batch)
    shapes = {"input": (batch, width)}
    return [trtexec_command(onnx_name, config, shapes=shapes, use_profile=0),
            trtexec_command(onnx_name, config, shapes=shapes, use_profile=0, cuda_graph=False)]


def tensorrt_study(model: MLP, x: torch.Tensor, onnx_path: Path, *, other_batches: Sequence[int],
                   passes: int = bench.PASSES, warmup_ms: float = 20.0, measure_ms: float = 80.0) -> dict:
    """The TensorRT path: an engine built from the MLP's FP16 ONNX (:func:`engine_config`), enqueue
    against graph replay (`passes` interleaved passes; the host time of each call shows what one
    ``execute_async_v3`` costs the host against one graph launch), one context (and graph) per shape,
    and what makes EngineRunner drop a context's graph.

    Needs TensorRT and a GPU. Returns plain values for the notebook to print.
    """
    from common import trt as trt_tools

    env.require("tensorrt")
    batch, width = x.shape
    batches = [batch, *other_batches]
    build = trt_tools.build_engine(onnx_path, engine_config(width, batch, max(batches)))
    runner = trt_tools.EngineRunner(build.engine, num_contexts=len(batches))
    backend = f"TensorRT {trt_tools.version()}"
    result: dict[str, Any] = {"backend": backend, "build_s": build.build_seconds}
    try:
        reference = model(x)
        out = runner.run({"input": x}, 0)["output"]
        result["enqueue_matches"] = matches(out, reference)
        graph = runner.capture_graph(0)
        stream = runner.stream(0)
        with torch.cuda.stream(stream):
            runner.outputs(0)["output"].zero_()
        graph.replay()
        runner.synchronize(0)
        result["graph_matches"] = matches(runner.outputs(0)["output"], reference)
        if not (result["enqueue_matches"] and result["graph_matches"]):
            raise checks.VerificationError(f"{backend} disagrees with PyTorch eager: {result}; do not time it")
        timed = {f"{backend} execute_async_v3": Timed(lambda: runner.enqueue(0), stream),
                 f"{backend} CUDA graph replay": Timed(graph.replay, stream)}
        result["runs"] = bench.measure_interleaved(bench_configs(timed), passes=passes, device="cuda",
                                                   batch_size=batch, warmup_ms=warmup_ms, measure_ms=measure_ms)
        per_shape = []
        for i, b in enumerate(batches[1:], start=1):   # context i serves batch b with its own graph
            xb = example_input(b, width, device="cuda", dtype=x.dtype, seed=3)
            runner.set_input_shapes({"input": (b, width)}, i)
            shape_graph = runner.capture_graph(i)
            copy_into(runner.stream(i), runner.inputs(i)["input"], xb)
            shape_graph.replay()
            runner.synchronize(i)
            per_shape.append({"batch": b, "context": i,
                              "capture_s": sum(runner.graphs(i).capture_seconds.values()),
                              "context_mib": runner.device_memory_bytes / 2**20,
                              "io_kib": runner.io_buffer_bytes(i) / 2**10,
                              "matches": matches(runner.outputs(i)["output"], model(xb))})
        result["per_shape"] = per_shape
        result["engine_runner_graphs"] = engine_runner_graph_drops(
            runner, {"input": (batch, width)}, {"input": (batches[1], width)}, other_profile=1)
    finally:
        runner.close()
    return result
