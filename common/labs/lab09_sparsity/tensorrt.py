"""Lab 09 (2:4 structured sparsity): the TensorRT study, one FP16 model built dense and with
``BuildConfig(sparse_weights=True)``.

What the builder says it did is read by the pure parsers of :mod:`common.trt.sparsity` (the build
log's "(Sparsity)" lines, the inspector's sparse weights and kernels). The builder chooses a sparse
tactic per layer, at build time, by timing it against the dense ones: the engine pays no per-call
set-up for it, and a layer whose sparse kernel loses keeps its dense one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from common import bench, checks, env, trt
from common.trt.sparsity import layer_sparsity, parse_build_log

from .gemms import device_compare, relative_error

#: The two engines of the study, by name: whether the builder may use sparse kernels.
ENGINES = {"dense": False, "sparse_weights": True}


def onnx_name(tag: str) -> str:
    """The FP16 ONNX file a model tag exports to: "DigitsCNN(32)" -> "digitscnn_32_fp16.onnx"."""
    return f"{tag.lower().replace('(', '_').rstrip(')')}_fp16.onnx"


def engine_configs(sample: tuple[int, ...], batch: int) -> dict[str, trt.BuildConfig]:
    """The dense and the SPARSE_WEIGHTS build of a model whose input "input" has per-item shape `sample`,
    for batches 1 to `batch` (optimised for `batch`)."""
    profile = trt.batch_profile("input", sample, 1, batch, batch)
    return {name: trt.BuildConfig(profiles=(profile,), sparse_weights=sparse) for name, sparse in ENGINES.items()}


def trtexec_commands(onnx_path: str | Path, sample: tuple[int, ...], batch: int) -> dict[str, str]:
    """Per engine, the trtexec command that builds and times it: ``--sparsity=enable`` for the sparse one,
    ``--verbose`` so that the log carries the "(Sparsity)" lines, the layer information exported."""
    stem = Path(onnx_path).stem
    return {name: trt.trtexec_command(onnx_path, config, shapes={"input": (batch, *sample)},
                                      extra=["--verbose", f"--exportLayerInfo={stem}_{name}_layers.json"])
            for name, config in engine_configs(sample, batch).items()}


def tensorrt_sparsity_study(onnx_path: Path, images: torch.Tensor, *, warmup_ms: float = 20,
                            measure_ms: float = 60, passes: int = bench.PASSES) -> dict:
    """Build the FP16 ONNX at `onnx_path` dense and with ``sparse_weights=True``; per engine: the build
    log's "(Sparsity)" lines, the inspector's view of each layer, an output check against the dense
    engine, each engine's predicted classes, and `passes` interleaved timing passes, compared on kernel
    time. `images` (FP16, NCHW, on the GPU) is the batch it runs.

    Needs TensorRT and a GPU. Built without the engine cache so that the build log is there to read.
    """
    env.require("tensorrt")
    batch, sample = images.shape[0], tuple(images.shape[1:])
    result: dict[str, Any] = {"backend": f"TensorRT {trt.version()}", "batch": batch, "engines": {},
                              "trtexec": trtexec_commands(onnx_path, sample, batch)}
    outputs, timed = {}, {}
    with contextlib.ExitStack() as stack:
        for name, config in engine_configs(sample, batch).items():
            build = trt.build_engine(onnx_path, config, cache=False, verbose=True)
            runner = trt.EngineRunner(build.engine)
            stack.callback(runner.close)
            outputs[name] = runner.run({"input": images})["output"].float()
            info = trt.inspect_engine(build.engine, runner.context(0))
            result["engines"][name] = {"build_s": build.build_seconds,
                                       "log": parse_build_log(text for _, text in build.log.records),
                                       "layers": layer_sparsity(info)}
            timed[name] = {"fn": lambda runner=runner: runner.enqueue(0), "name": f"TensorRT {name}",
                           "stream": runner.stream(0)}
        runs = bench.measure_interleaved(timed, passes=passes, backend=result["backend"], batch_size=batch,
                                         device="cuda", warmup_ms=warmup_ms, measure_ms=measure_ms)
    result["predictions"] = {name: out.argmax(dim=1).cpu() for name, out in outputs.items()}
    # the same FP16 network twice, only the kernels differ: one operation's FP16 bound
    result["relative_error"] = checks.verify(
        outputs["sparse_weights"], outputs["dense"], "the sparse engine's output against the dense engine's",
        precision="fp16", scope="op", error=relative_error(outputs["sparse_weights"], outputs["dense"]))
    result["runs"] = runs
    result["comparison"] = device_compare(runs["dense"], runs["sparse_weights"])
    return result
