"""Lab 08 (low precision): one model as TensorRT engines of several precisions, built strongly typed
from AutoCast and Q/DQ ONNX graphs, scored, cross-checked against ONNX Runtime with Polygraphy, timed,
profiled layer by layer, and read back from the engine inspector; each with its trtexec command.

TensorRT 11 has no precision flags: ``build_engine`` makes the same strongly typed network for every
graph, and each engine runs in the types its ONNX carries (FP16/BF16 tensors from AutoCast, INT8/FP8
from Q/DQ pairs). What each layer finally computes in is read from the inspector by the pure parsers
of :mod:`common.trt.precision`.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from common import bench, checks, env, trt
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


#: The ONNX file each engine is built from, by label (in ``cache``; FP32 and AutoCast graphs come from
#: the lab's earlier cells), and the precision whose tolerance its outputs are checked with.
ENGINE_FILES = {"FP32": ("digits_fp32.onnx", "fp32"), "FP16 (AutoCast)": ("digits_fp16.onnx", "fp16"),
                "BF16 (AutoCast)": ("digits_bf16.onnx", "bf16"), "INT8 Q/DQ (ONNX PTQ)": ("trt_int8.onnx", "int8"),
                "INT8 Q/DQ (PyTorch QAT)": ("torch_qat_int8.onnx", "int8"), "FP8 Q/DQ (ONNX PTQ)": ("trt_fp8.onnx", "fp8")}


def engine_labels(*, bf16: bool, fp8: bool) -> list[str]:
    """The engines lab 08 builds, in order: BF16 where `bf16`, FP8 where `fp8`."""
    return [label for label in ENGINE_FILES if (bf16 or "BF16" not in label) and (fp8 or "FP8" not in label)]


def trtexec_commands(sample_shape: tuple[int, ...], batch: int, *, bf16: bool, fp8: bool, max_batch: int = 0,
                     names: Mapping[str, str | Path] | None = None) -> dict[str, str]:
    """Per engine, the trtexec command that builds it as :func:`tensorrt_study` does (no precision flag:
    the graph decides; batches up to max(`batch`, `max_batch`)) and runs it at `batch`, with the
    per-layer profile and layer information exported. `names` maps a label to its ONNX path (default:
    the file names of :data:`ENGINE_FILES`)."""
    config = engine_config(sample_shape, batch, max(batch, max_batch))
    commands = {}
    for label in engine_labels(bf16=bf16, fp8=fp8):
        onnx_path = Path((names or {}).get(label, ENGINE_FILES[label][0]))
        commands[label] = trt.trtexec_command(onnx_path, config, shapes={"input": (batch, *sample_shape)},
                                              extra=["--dumpProfile", f"--exportLayerInfo={onnx_path.stem}_layers.json"])
    return commands


def polygraphy_command(onnx_path: str | Path, precision: str, batch: int, sample_shape: tuple[int, ...]) -> str:
    """``polygraphy run --trt --onnxrt``: the same graph through TensorRT and ONNX Runtime on the same
    seeded inputs in [0, 1], outputs compared within the precision's whole-model tolerance (median error)."""
    tol = checks.tolerance(precision, "model")
    dims = ",".join(str(d) for d in (batch, *sample_shape))
    return shlex.join(["polygraphy", "run", str(onnx_path), "--trt", "--onnxrt", "--strongly-typed",
                       "--input-shapes", f"input:[{dims}]", "--val-range", "input:[0,1]", "--seed", "0",
                       "--atol", f"{tol:g}", "--rtol", f"{tol:g}", "--check-error-stat", "median"])


def polygraphy_check(command: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run a :func:`polygraphy_command` (needs TensorRT and ONNX Runtime): whether it passed, and its
    verdict line (Polygraphy prints PASSED or FAILED last)."""
    words = shlex.split(command)
    if shutil.which(words[0]) is None:
        return {"passed": None, "summary": f"{words[0]} is not on the PATH"}
    try:
        done = subprocess.run(words, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"passed": None, "summary": f"no verdict within {timeout_s:.0f} s"}
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    verdict = next((line for line in reversed(lines) if "PASSED" in line or "FAILED" in line), lines[-1] if lines else "")
    return {"passed": done.returncode == 0, "summary": verdict[:300]}


def slowest_layers(times: Any, layer_info: list[dict[str, Any]], top: int = 5) -> list[dict[str, Any]]:
    """The `top` layers of a per-layer profile (:class:`common.trt.profile.LayerTimes`) by time, each with
    its share and the type it computes in (from the inspector's `layer_info` rows)."""
    computes_in = {row["layer"]: row["computes_in"] for row in layer_info}
    return [{**row, "computes_in": computes_in.get(row["layer"], "?")} for row in times.table(top=top)]


def tensorrt_graphs(fp32_onnx: Path, casts: Mapping[str, "AutocastResult"], qat_int8: "nn.Module",
                    calibration: "torch.Tensor", example: "torch.Tensor", cache: Path, *, bf16: bool,
                    fp8: bool) -> dict[str, Path]:
    """The graphs lab 08 builds as engines, by label: FP32, the AutoCast FP16 (and BF16 where `bf16`)
    graphs, INT8 Q/DQ from ModelOpt's ONNX PTQ and from the PyTorch QAT model, and FP8 Q/DQ where
    `fp8`. The Q/DQ graphs keep ModelOpt's default ``high_precision_dtype="fp16"``, as for a deployment."""
    from common import onnx as onnx_tools

    qat_int8_onnx = onnx_tools.export(qat_int8, example, cache / ENGINE_FILES["INT8 Q/DQ (PyTorch QAT)"][0])
    graphs = {"FP32": fp32_onnx, "FP16 (AutoCast)": casts["fp16"].path}
    if bf16:
        graphs["BF16 (AutoCast)"] = casts["bf16"].path
    graphs["INT8 Q/DQ (ONNX PTQ)"] = quantization.onnx_ptq(fp32_onnx, cache / ENGINE_FILES["INT8 Q/DQ (ONNX PTQ)"][0],
                                                           "int8", calibration, high_precision="fp16")
    graphs["INT8 Q/DQ (PyTorch QAT)"] = qat_int8_onnx
    if fp8:
        graphs["FP8 Q/DQ (ONNX PTQ)"] = quantization.onnx_ptq(fp32_onnx, cache / ENGINE_FILES["FP8 Q/DQ (ONNX PTQ)"][0],
                                                              "fp8", calibration, high_precision="fp16")
    return graphs


def tensorrt_study(onnx_paths: Mapping[str, str | Path], images: "torch.Tensor", labels: "torch.Tensor", *,
                   batch: int, warmup_ms: float = 20.0, measure_ms: float = 60.0, passes: int = bench.PASSES,
                   cross_check: bool = True) -> dict[str, Any]:
    """Build each graph, score it on `images` (fed in the engine's input type), inspect it, profile its
    layers and time it at `batch` in `passes` interleaved passes on each runner's own stream; where
    `cross_check`, also run ``polygraphy run --trt --onnxrt`` on it. Needs TensorRT and a GPU.

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
            rows[label]["slowest"] = slowest_layers(trt.profile_layers(runner), rows[label]["layer_rows"])
            precision = ENGINE_FILES.get(label, ("", "fp16"))[1]
            rows[label]["polygraphy_command"] = polygraphy_command(Path(path).name, precision, batch,
                                                                   tuple(images.shape[1:]))
            if cross_check:
                rows[label]["polygraphy"] = polygraphy_check(polygraphy_command(path, precision, batch,
                                                                                tuple(images.shape[1:])))
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
        rows[label].update(bench.kernel_fields(measurements))
    return {"backend": backend, "rows": list(rows.values()), "runs": runs}
