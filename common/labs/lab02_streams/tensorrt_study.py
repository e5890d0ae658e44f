"""Lab 02 (streams), with TensorRT: auxiliary streams inside one context, several execution contexts of
one engine, TensorRT's enqueue beside a kernel on a blocking stream, and what an enqueue on the legacy
default stream costs the host (the extra synchronisation ``execute_async_v3``'s documentation warns of).

Every engine's output is checked against PyTorch FP32 (``checks.verify``, FP16 at model scope) before
anything is timed. Each study needs TensorRT and says so (``env.require``) where it is missing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from common import bench, checks, env, models
from common.runners import Runner, TensorRTRunner

from .experiments import MiB, build_multibranch, multibranch_input, multibranch_sample_shape
from .timing import (
    Concurrency, ForkJoin, OverlapCase, OverlapStudy, Work, compare_concurrent, default_stream_host_cost, overlap_study,
)


def aux_build_config(scale: str, batches: Sequence[int], max_aux_streams: int):
    """The BuildConfig of the four-branch network's engine with ``max_aux_streams`` (batch min..max of `batches`)."""
    from common.trt import BuildConfig, batch_profile

    profile = batch_profile("input", multibranch_sample_shape(scale), 1, min(batches), max(batches))
    return BuildConfig(profiles=(profile,), max_aux_streams=max_aux_streams)


def contexts_build_config(name: str, scale: str, batch_size: int):
    """The BuildConfig of the engine whose contexts :func:`contexts_study` runs side by side: one fixed
    batch, no auxiliary streams (the contexts are the only concurrency)."""
    from common.trt import BuildConfig, batch_profile

    sample = models.spec(name, scale).sample_shape
    return BuildConfig(profiles=(batch_profile("input", sample, 1, batch_size, batch_size),), max_aux_streams=0)


def trtexec_commands(name: str, scale: str, *, batch: int, big_batch: int, aux_counts: Sequence[int] = (0, 1, 2, 4),
                     context_counts: Sequence[int] = (1, 2, 4)) -> list[str]:
    """The trtexec commands that build (and run) every engine of lab 02's TensorRT studies from the FP16
    ONNX files the lab exports (named as :func:`common.onnx.export_pair` names them): one per
    ``max_aux_streams`` run at `batch`, and the zoo model `name`'s engine run with each context count
    (``--infStreams``: trtexec's own contexts-on-streams run). Needs no TensorRT."""
    from common.trt import trtexec_command

    commands = [trtexec_command(f"multibranch_{scale}_fp16.onnx", aux_build_config(scale, (batch, big_batch), n),
                                shapes={"input": (batch, *multibranch_sample_shape(scale))}) for n in aux_counts]
    sample = models.spec(name, scale).sample_shape
    commands += [trtexec_command(f"{name}_{scale}_fp16.onnx", contexts_build_config(name, scale, batch),
                                 shapes={"input": (batch, *sample)}, infer_streams=n) for n in context_counts]
    return commands


def aux_stream_study(onnx_path: str | Path, scale: str, *, batches: Sequence[int],
                     aux_counts: Sequence[int] = (0, 1, 2, 4), passes: int = bench.PASSES, **bench_kwargs) -> list[dict]:
    """TensorRT: the multi-branch network built with ``max_aux_streams=n`` for each n, checked against
    PyTorch FP32, then timed at each batch size (`passes` interleaved passes) against n=0, with the 95%
    interval of each speedup (event time: the latency a request sees); and the engine that uses
    the most auxiliary streams run again with streams the user supplies (``set_aux_streams``).
    """
    env.require("tensorrt")
    make_input = functools.partial(multibranch_input, scale=scale)
    with torch.inference_mode():
        reference = build_multibranch(scale)(make_input(min(batches)))
    engines: dict[str, TensorRTRunner] = {}
    num_aux: dict[str, int] = {}
    for n in aux_counts:
        runner = TensorRTRunner(onnx_path, make_input, aux_build_config(scale, batches, n), precision="fp16")
        runner.prepare(min(batches))
        runner.run()
        checks.verify(runner.output(), reference, f"engine with max_aux_streams={n}", precision="fp16")
        engines[str(n)], num_aux[str(n)] = runner, int(runner.build.engine.num_aux_streams)
    most = max(engines, key=lambda k: num_aux[k])
    runs_of: dict[str, Callable[[int], bench.Measurement]] = {
        k: functools.partial(_measure_runner, r, **bench_kwargs) for k, r in engines.items()}
    if num_aux[most] > 0:
        user = f"{most}, user streams"
        runs_of[user] = _user_aux_streams(onnx_path, make_input, engines[most].build.config, num_aux[most],
                                          bench_kwargs)
        num_aux[user] = num_aux[most]
    rows = []
    for batch in batches:
        runs: dict[str, list[bench.Measurement]] = {k: [] for k in runs_of}
        for _ in range(passes):
            for key, measure in runs_of.items():
                runs[key].append(measure(batch))
        for key, measured in runs.items():
            versus = bench.compare(runs[str(aux_counts[0])], measured)
            lo, hi = versus.interval
            rows.append({"max_aux_streams": key, "num_aux_streams": num_aux[key], "batch": batch,
                         "latency_ms": versus.median_b_ms, "spread_pct": bench.spread_pct(
                             m.latency_ms.median for m in measured),
                         f"speedup_vs_{aux_counts[0]}": versus.speedup, "interval_lo": lo, "interval_hi": hi,
                         "significant": versus.significant, **bench.kernel_fields(measured)})
    return rows


def _measure_runner(runner: Runner, batch: int, **bench_kwargs) -> bench.Measurement:
    return runner.measure(batch, name=runner.label, **bench_kwargs)


def _user_aux_streams(onnx_path, make_input, config, count: int,
                      bench_kwargs: dict) -> Callable[[int], bench.Measurement]:
    """A second context of the same (cached) engine, run with `count` auxiliary streams of our own."""
    runner = TensorRTRunner(onnx_path, make_input, config, precision="fp16")
    aux = [torch.cuda.Stream() for _ in range(count)]
    handles = [s.cuda_stream for s in aux]
    context = runner.engine_runner.context(0)

    def enqueue() -> None:
        # The listing says the streams apply to "the next execute_async_v3() call": set them every time.
        context.set_aux_streams(handles)
        runner.run()

    def measure(batch: int) -> bench.Measurement:
        if runner.batch_size != batch:
            runner.prepare(batch)
        return bench.measure(enqueue, name=f"{runner.label}, user aux streams", batch_size=batch, device="cuda",
                             stream=runner.stream, **bench_kwargs)

    return measure


def enqueue_on_current_stream(engine_runner, ctx_index: int = 0) -> Work:
    """A piece of work that enqueues a TensorRT context on whatever stream is current (as ForkJoin sets
    it), so one engine can be enqueued on the legacy default stream or a created one alike."""
    context = engine_runner.context(ctx_index)

    def enqueue() -> None:
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"execute_async_v3 failed on context {ctx_index}; see TensorRT's log")

    return enqueue


@dataclass
class ContextsStudy:
    """Rows per context count, the comparisons behind them, and the EngineRunner that ran them."""

    rows: list[dict]
    results: list[Concurrency]
    engine_runner: object


def contexts_study(onnx_path: str | Path, name: str, scale: str, *, batch_size: int,
                   counts: Sequence[int] = (1, 2, 4), passes: int = bench.PASSES, **bench_kwargs) -> ContextsStudy:
    """TensorRT: one engine of zoo model `name`, N execution contexts each on its own stream, against
    the same N inferences of one context on one stream. Every context is checked against PyTorch FP32
    first. The engine is built with ``max_aux_streams=0`` so the only concurrency is between contexts.
    Rows carry each context's activation memory (the weights are shared by all contexts)."""
    from common.trt import EngineRunner, build_engine

    env.require("tensorrt")
    built = build_engine(onnx_path, contexts_build_config(name, scale, batch_size))
    runner = EngineRunner(built.engine, num_contexts=max(counts))
    x = models.example_input(name, batch_size, scale)
    with torch.inference_mode():
        reference = models.build(name, scale)(x)
    for i in range(runner.num_contexts):
        out = runner.run({"input": x.to(device="cuda", dtype=torch.float16)}, ctx_index=i)
        checks.verify(next(iter(out.values())), reference, f"context {i}", precision="fp16")
    rows, results = [], []
    for n in counts:
        one = ForkJoin([functools.partial(runner.enqueue, 0)] * n, [runner.stream(0)],
                       labels=[f"inference {i}" for i in range(n)], lane_names=["context 0"])
        many = ForkJoin([functools.partial(runner.enqueue, i) for i in range(n)], [runner.stream(i) for i in range(n)],
                        labels=[f"inference {i}" for i in range(n)], lane_names=[f"context {i}" for i in range(n)])
        result = compare_concurrent(one, many, experiment=f"{n} x {name} batch {batch_size}, TensorRT",
                                    tag=f"TensorRT {n} contexts", one_label="1 context, 1 stream",
                                    concurrent_label=f"{n} contexts, {n} streams", items=n * batch_size,
                                    passes=passes, **bench_kwargs)
        results.append(result)
        rows.append({**result.row(), "contexts": n, "activation_MiB_per_context": runner.device_memory_bytes / MiB,
                     "activation_MiB_total": n * runner.device_memory_bytes / MiB,
                     "engine_plan_MiB_shared": built.plan_size_bytes / MiB})
    return ContextsStudy(rows, results, runner)


def tensorrt_default_stream_study(engine_runner, spin: Work, blocking: torch.cuda.Stream,
                                  **bench_kwargs) -> OverlapStudy:
    """TensorRT's enqueue (context 0) beside `spin` (:func:`spin_kernel`) on the `blocking` stream, the
    spin issued first: the inference on a created stream, then on the legacy default stream."""
    enqueue = enqueue_on_current_stream(engine_runner, 0)
    cases = [OverlapCase(f"TensorRT: {name}", (spin, enqueue), (blocking, stream), ("spin", "inference"),
                         ("spin", "inference"))
             for name, stream in (("created | blocking spin", torch.cuda.Stream()),
                                  ("default | blocking spin", torch.cuda.default_stream()))]
    return overlap_study(cases, **bench_kwargs)


def tensorrt_host_cost_study(engine_runner, **bench_kwargs) -> bench.Comparison:
    """What one ``execute_async_v3`` costs the host on the legacy default stream against a created stream
    (host time per call; speedup = default's / created's): the extra synchronisation TensorRT's
    documentation of ``execute_async_v3`` warns of shows here, not in the device time."""
    return default_stream_host_cost(enqueue_on_current_stream(engine_runner, 0), **bench_kwargs)
