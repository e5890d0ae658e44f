"""Lab 08 (low precision): one model as TensorRT engines of several precisions, built strongly typed
from AutoCast and Q/DQ ONNX graphs, scored, timed, and read back layer by layer from the engine
inspector.

TensorRT 11 has no precision flags: ``build_engine`` makes the same strongly typed network for every
graph, and each engine runs in the types its ONNX carries (FP16/BF16 tensors from AutoCast, INT8/FP8
from Q/DQ pairs). What each layer finally computes in is read from the inspector by the pure parsers
of :mod:`common.trt.precision`.
"""

from __future__ import annotations

import functools
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from common import bench, env, trt
from common.trt import buffers
from common.trt.precision import layer_rows, precision_counts

from . import quantization

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .precision import AutocastResult


def engine_config(sample_shape: tuple[int, ...], opt_batch: int, max_batch: int, input_name: str = "input") -> trt.BuildConfig:
    """The one BuildConfig every precision is built with: a batch profile and detailed inspector
    output. No precision appears in it; the graph decides."""
    profile = trt.batch_profile(input_name, sample_shape, 1, opt_batch, max(opt_batch, max_batch))
    return trt.BuildConfig(profiles=(profile,), profiling_verbosity="detailed")


def tensorrt_graphs(fp32_onnx: Path, casts: Mapping[str, "AutocastResult"], qat_int8: "nn.Module",
                    calibration: "torch.Tensor", example: "torch.Tensor", cache: Path, *, bf16: bool,
                    fp8: bool) -> dict[str, Path]:
    """The graphs lab 08 builds as engines, by label: FP32, the AutoCast FP16 (and BF16 where `bf16`)
    graphs, INT8 Q/DQ from ModelOpt's ONNX PTQ and from the PyTorch QAT model, and FP8 Q/DQ where
    `fp8`. The Q/DQ graphs keep ModelOpt's default ``high_precision_dtype="fp16"``, as for a deployment."""
    from common import onnx as onnx_tools

    qat_int8_onnx = onnx_tools.export(qat_int8, example, cache / "torch_qat_int8.onnx")
    graphs = {"FP32": fp32_onnx, "FP16 (AutoCast)": casts["fp16"].path}
    if bf16:
        graphs["BF16 (AutoCast)"] = casts["bf16"].path
    graphs["INT8 Q/DQ (ONNX PTQ)"] = quantization.onnx_ptq(fp32_onnx, cache / "trt_int8.onnx", "int8", calibration,
                                                           high_precision="fp16")
    graphs["INT8 Q/DQ (PyTorch QAT)"] = qat_int8_onnx
    if fp8:
        graphs["FP8 Q/DQ (ONNX PTQ)"] = quantization.onnx_ptq(fp32_onnx, cache / "trt_fp8.onnx", "fp8", calibration,
                                                              high_precision="fp16")
    return graphs


def tensorrt_study(onnx_paths: Mapping[str, str | Path], images: "torch.Tensor", labels: "torch.Tensor", *,
                   batch: int, warmup_ms: float = 50.0, measure_ms: float = 200.0, passes: int = 2) -> dict[str, Any]:
    """Build each graph, score it on `images` (fed in the engine's input type), inspect it, and time
    it at `batch` in interleaved passes on each runner's own stream. Needs TensorRT and a GPU.

    A graph TensorRT refuses to parse or build gets a row with its `error` and is not timed.
    """
    from common.training import accuracy_of

    env.require("tensorrt")
    backend = f"TensorRT {env.detect().tensorrt}"
    rows: dict[str, dict[str, Any]] = {}
    runners: dict[str, trt.EngineRunner] = {}
    configs: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[bench.Measurement]] = {}
    repeats = -(-batch // len(images))
    try:
        for label, path in onnx_paths.items():
            try:
                build = trt.build_engine(path, engine_config(tuple(images.shape[1:]), batch, max(batch, len(images))))
            except (trt.EngineBuildError, trt.OnnxParseError) as exc:
                rows[label] = {"engine": label, "error": str(exc).splitlines()[0]}
                continue
            runner = runners[label] = trt.EngineRunner(build.engine)
            dtype = buffers.torch_dtype(runner.specs["input"].dtype)
            logits = next(iter(runner.run({"input": images.to("cuda", dtype)}).values())).float().cpu()
            info = trt.inspect_engine(build.engine, runner.context(0))
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
