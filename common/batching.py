"""Lab 01 (batching): which backends to sweep, and TensorRT's optimization-profile study.

The sweep compares every backend this machine has at one precision: FP16 on a GPU (PyTorch eager,
`torch.compile`, and TensorRT from an FP16 ONNX where installed), FP32 on a CPU (PyTorch eager and
ONNX Runtime, the CPU counterpart of an engine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from . import bench, env, models
from . import onnx as onnx_tools
from .runners import OnnxRuntimeRunner, Runner, TensorRTRunner, TorchCompileRunner, TorchEagerRunner


def export_pair(name: str, scale: str, out_dir: Path) -> tuple[dict[str, Path], float]:
    """The zoo model `name` as FP32 ONNX and, on a GPU, FP16; and ONNX Runtime's relative error
    against PyTorch FP32 on the FP32 file (export_pair raises if it exceeds 1e-4)."""
    model = models.build(name, scale)
    x = models.example_input(name, 2, scale)
    paths = {"fp32": onnx_tools.export(model, x, out_dir / f"{name}_{scale}_fp32.onnx")}
    ort_error = onnx_tools.check_export(model, paths["fp32"], x, rtol=1e-4)
    if env.has("gpu"):
        paths["fp16"] = onnx_tools.export(model, x, out_dir / f"{name}_{scale}_fp16.onnx", precision="fp16")
    return paths, ort_error


def make_runners(name: str, scale: str, onnx_paths: dict[str, Path], *, with_compile: bool = True) -> list[Runner]:
    """The backends this machine has, all at one precision (FP16 on a GPU, FP32 on a CPU)."""
    model = models.build(name, scale)

    def make_input(batch: int) -> torch.Tensor:
        return models.example_input(name, batch, scale)

    if not env.has("gpu"):
        threads = env.detect().cpu_count
        return [TorchEagerRunner(model, make_input, device="cpu", precision="fp32"),
                OnnxRuntimeRunner(onnx_paths["fp32"], make_input, intra_op_threads=threads)]
    runners: list[Runner] = [TorchEagerRunner(model, make_input, device="cuda", precision="fp16")]
    if with_compile:
        runners.append(TorchCompileRunner(models.build(name, scale), make_input, device="cuda", precision="fp16"))
    if "CUDAExecutionProvider" in env.detect().ort_providers:
        runners.append(OnnxRuntimeRunner(onnx_paths["fp16"], make_input,
                                         providers=["CUDAExecutionProvider", "CPUExecutionProvider"]))
    if env.has("tensorrt"):
        from .trt import BuildConfig, batch_profile

        sample = models.spec(name, scale).sample_shape
        config = BuildConfig(profiles=(batch_profile("input", sample, 1, 64, 256),))
        runners.append(TensorRTRunner(onnx_paths["fp16"], make_input, config, precision="fp16"))
    return runners


def check_outputs(runners: list[Runner], name: str, scale: str, batch: int = 2) -> dict[str, float]:
    """Each runner's relative error against PyTorch FP32 on the CPU, on the same input."""
    reference_model = models.build(name, scale)
    x = models.example_input(name, batch, scale)
    with torch.inference_mode():
        reference = reference_model(x)
    errors = {}
    for runner in runners:
        runner.prepare(batch)
        runner.run()
        errors[runner.label] = onnx_tools.max_relative_error(runner.output(), reference)
    return errors


def tolerance(precision: str) -> float:
    """Relative-error tolerance against the FP32 reference: FP16 storage rounds at about 1e-3."""
    return {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}[precision]


def opt_profile_study(name: str, scale: str, onnx_fp16: Path, batches: list[int], max_batch: int,
                      wide_opt: int, make_input: Callable[[int], torch.Tensor] | None = None) -> list[dict]:
    """TensorRT: one engine whose profile spans 1..max_batch (opt=wide_opt) against, per batch, an
    engine whose profile's opt equals that batch. Each measured twice; returns one row per batch."""
    from .trt import BuildConfig, batch_profile

    env.require("tensorrt")
    sample = models.spec(name, scale).sample_shape
    make_input = make_input or (lambda b: models.example_input(name, b, scale))

    def engine(opt: int) -> TensorRTRunner:
        config = BuildConfig(profiles=(batch_profile("input", sample, 1, opt, max_batch),))
        return TensorRTRunner(onnx_fp16, make_input, config, precision="fp16")

    wide = engine(wide_opt)
    rows = []
    for batch in batches:
        matched = engine(batch)
        runs_wide = [wide.measure(batch, name=f"opt={wide_opt}") for _ in range(2)]
        runs_matched = [matched.measure(batch, name=f"opt={batch}") for _ in range(2)]
        cmp = bench.compare(runs_wide, runs_matched)
        rows.append({"batch": batch, "wide_opt_ms": cmp.median_a_ms, "matched_opt_ms": cmp.median_b_ms,
                     "speedup": cmp.speedup, "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows
