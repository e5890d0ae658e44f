"""One model as TensorRT engines of several precisions: built strongly typed from AutoCast and Q/DQ
ONNX graphs, scored, timed, and read back layer by layer from the engine inspector.

Introduced in lab 08 (low precision). TensorRT 11 has no precision flags: ``build_engine`` makes the
same strongly typed network for every graph, and each engine runs in the types its ONNX carries
(FP16/BF16 tensors from AutoCast, INT8/FP8 from Q/DQ pairs). What each layer finally computes in is
read from the inspector: :func:`compute_dtype` and :func:`precision_counts` are pure parsing,
tested without TensorRT.
"""

from __future__ import annotations

import functools
import statistics
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .config import BuildConfig, batch_profile
from .inspect import EngineInfo, LayerInfo

if TYPE_CHECKING:
    import torch

#: Data types of layers that compute in a quantized format.
QUANTIZED_DTYPES = ("INT8", "FP8", "INT4", "FP4")


def compute_dtype(layer: LayerInfo) -> str:
    """The type a layer computes in, as the inspector reports it: its first input's (the activation;
    a Quantize layer's input is the higher-precision tensor, so it reports its output's type), else
    its first output's; "?" when the inspector says neither."""
    if layer.layer_type not in ("Quantize", "Reformat") and layer.inputs and layer.inputs[0].dtype:
        return layer.inputs[0].dtype
    if layer.outputs and layer.outputs[0].dtype:
        return layer.outputs[0].dtype
    return layer.inputs[0].dtype if layer.inputs and layer.inputs[0].dtype else "?"


def precision_counts(info: EngineInfo) -> dict[str, int]:
    """Engine layers per compute type (e.g. {"INT8": 4, "HALF": 2, "FLOAT": 1}), most frequent first."""
    return dict(Counter(compute_dtype(layer) for layer in info.layers).most_common())


def layer_rows(info: EngineInfo) -> list[dict[str, Any]]:
    """One row per engine layer: name, type, compute type, inputs and outputs as TYPE[dims]."""
    return [{"layer": layer.name, "type": layer.layer_type or "?", "computes_in": compute_dtype(layer),
             "inputs": ", ".join(t.short() for t in layer.inputs),
             "outputs": ", ".join(t.short() for t in layer.outputs)} for layer in info.layers]


def engine_config(sample_shape: tuple[int, ...], opt_batch: int, max_batch: int, input_name: str = "input") -> BuildConfig:
    """The one BuildConfig every precision is built with: a batch profile and detailed inspector
    output. No precision appears in it; the graph decides."""
    profile = batch_profile(input_name, sample_shape, 1, opt_batch, max(opt_batch, max_batch))
    return BuildConfig(profiles=(profile,), profiling_verbosity="detailed")


def study(onnx_paths: Mapping[str, str | Path], images: "torch.Tensor", labels: "torch.Tensor", *, batch: int,
          warmup_ms: float = 50.0, measure_ms: float = 200.0, passes: int = 2) -> dict[str, Any]:
    """Build each graph, score it on `images` (fed in the engine's input type), inspect it, and time
    it at `batch` in interleaved passes on each runner's own stream. Needs TensorRT and a GPU.

    A graph TensorRT refuses to parse or build gets a row with its `error` and is not timed.
    """
    from common import bench, env
    from common.training import accuracy_of

    from . import buffers
    from .build import EngineBuildError, OnnxParseError, build_engine
    from .inspect import inspect_engine
    from .run import EngineRunner

    env.require("tensorrt")
    backend = f"TensorRT {env.detect().tensorrt}"
    rows: dict[str, dict[str, Any]] = {}
    runners: dict[str, EngineRunner] = {}
    configs: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[bench.Measurement]] = {}
    repeats = -(-batch // len(images))
    try:
        for label, path in onnx_paths.items():
            try:
                build = build_engine(path, engine_config(tuple(images.shape[1:]), batch, max(batch, len(images))))
            except (EngineBuildError, OnnxParseError) as exc:
                rows[label] = {"engine": label, "error": str(exc).splitlines()[0]}
                continue
            runner = runners[label] = EngineRunner(build.engine)
            dtype = buffers.torch_dtype(runner.specs["input"].dtype)
            logits = next(iter(runner.run({"input": images.to("cuda", dtype)}).values())).float().cpu()
            info = inspect_engine(build.engine, runner.context(0))
            rows[label] = {"engine": label, "accuracy_pct": accuracy_of(logits.argmax(1), labels),
                           "input_type": runner.specs["input"].dtype, "layers": len(info.layers),
                           "precisions": precision_counts(info), "build_s": build.build_seconds,
                           "layer_rows": layer_rows(info), "logits": logits}
            timed = images.repeat(repeats, 1, 1, 1)[:batch].to("cuda", dtype)
            runner.run({"input": timed})   # binds the timing shape and fills the input buffer
            configs[label] = {"fn": functools.partial(runner.enqueue, 0), "name": label, "stream": runner.stream(0)}
        if configs:
            runs = bench.measure_interleaved(configs, passes=passes, backend=backend, batch_size=batch, device="cuda",
                                             warmup_ms=warmup_ms, measure_ms=measure_ms)
    finally:
        for runner in runners.values():
            runner.close()
    for label, measurements in runs.items():
        medians = [m.latency_ms.median for m in measurements]
        rows[label]["latency_ms"] = statistics.median(medians)
        rows[label]["img_per_s"] = batch / (rows[label]["latency_ms"] / 1e3)
        rows[label]["spread_pct"] = bench.spread_pct(medians) if len(medians) > 1 else float("nan")
    return {"backend": backend, "rows": list(rows.values()), "runs": runs}
