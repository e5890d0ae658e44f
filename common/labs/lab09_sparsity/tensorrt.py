"""Lab 09 (2:4 structured sparsity): the TensorRT study, one FP16 model built dense and with
``BuildConfig(sparse_weights=True)``.

What the builder says it did is read by the pure parsers of :mod:`common.trt.sparsity` (the build
log's "(Sparsity)" lines, the inspector's sparse weights and kernels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from common import bench, checks, env, trt
from common.trt.sparsity import layer_sparsity, parse_build_log

from .gemms import relative_error


def tensorrt_sparsity_study(onnx_path: Path, images: torch.Tensor, *, warmup_ms: float = 50,
                            measure_ms: float = 150) -> dict:
    """Build the FP16 ONNX at `onnx_path` dense and with ``sparse_weights=True``; per engine: the build
    log's "(Sparsity)" lines, the inspector's view of each layer, an output check against the dense
    engine, each engine's predicted classes, and two timing passes. `images` (FP16, NCHW, on the GPU) is
    the batch it runs.

    Needs TensorRT and a GPU. Built without the engine cache so that the build log is there to read.
    """
    env.require("tensorrt")
    batch, sample = images.shape[0], tuple(images.shape[1:])
    result: dict[str, Any] = {"backend": f"TensorRT {trt.version()}", "batch": batch, "engines": {}}
    outputs, runs = {}, {}
    for name, sparse in (("dense", False), ("sparse_weights", True)):
        config = trt.BuildConfig(profiles=(trt.batch_profile("input", sample, 1, batch, batch),), sparse_weights=sparse)
        build = trt.build_engine(onnx_path, config, cache=False, verbose=True)
        runner = trt.EngineRunner(build.engine)
        try:
            outputs[name] = runner.run({"input": images})["output"].float()
            info = trt.inspect_engine(build.engine, runner.context(0))
            result["engines"][name] = {
                "build_s": build.build_seconds,
                "log": parse_build_log(text for _, text in build.log.records),
                "layers": layer_sparsity(info),
            }
            runs[name] = [bench.measure(lambda: runner.enqueue(0), name=f"TensorRT {name}", backend=result["backend"],
                                        batch_size=batch, device="cuda", stream=runner.stream(0),
                                        warmup_ms=warmup_ms, measure_ms=measure_ms) for _ in range(2)]
        finally:
            runner.close()
    result["predictions"] = {name: out.argmax(dim=1).cpu() for name, out in outputs.items()}
    # the same FP16 network twice, only the kernels differ: one operation's FP16 bound
    result["relative_error"] = checks.verify(
        outputs["sparse_weights"], outputs["dense"], "the sparse engine's output against the dense engine's",
        precision="fp16", scope="op", error=relative_error(outputs["sparse_weights"], outputs["dense"]))
    result["comparison"] = bench.compare(runs["dense"], runs["sparse_weights"])
    return result
