"""ONNX export with a dynamic batch, graph facts, and the ONNX Runtime reference run.

Introduced in lab 01 (batching). TensorRT builds from the ONNX file this module writes, so the
export is checked against PyTorch with ONNX Runtime before any engine is built.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

DEFAULT_OPSET = 17
#: IR version of the graphs the course builds itself (ONNX 1.16's). onnx 1.23 stamps new models with
#: IR 14, which ONNX Runtime 1.30 refuses to load; IR 10 is read by ONNX Runtime 1.17+ and TensorRT.
PORTABLE_IR_VERSION = 10


def portable(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower `model`'s IR version to :data:`PORTABLE_IR_VERSION` (in place) and return it."""
    model.ir_version = min(model.ir_version, PORTABLE_IR_VERSION)
    return model


def export(model: torch.nn.Module, example: torch.Tensor, path: str | Path, *, dynamic_batch: bool = True,
           precision: str = "fp32", opset: int = DEFAULT_OPSET, input_name: str = "input",
           output_name: str = "output") -> Path:
    """Export `model` to ONNX (TorchScript exporter) with the batch dimension dynamic.

    The batch dimension is named "batch" so that an optimization profile can range over it.
    `precision="fp16"` writes FP16 weights and I/O: TensorRT 11 networks are strongly typed, so the
    precision an engine runs in is the one its ONNX carries (lab 08 does this with ModelOpt AutoCast).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    device = "cuda" if precision == "fp16" and torch.cuda.is_available() else "cpu"
    model = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # the exporter's deprecation notices say nothing about the model
        torch.onnx.export(model, (example.to(device=device, dtype=dtype),), str(path), dynamo=False,
                          opset_version=opset, input_names=[input_name], output_names=[output_name],
                          dynamic_axes=axes)
    onnx.checker.check_model(str(path))
    return path


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def node_counts(path_or_model) -> dict[str, int]:
    """How many nodes of each op type the graph has, most frequent first."""
    model = onnx.load(str(path_or_model)) if not isinstance(path_or_model, onnx.ModelProto) else path_or_model
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return dict(counts.most_common())


def io_shapes(path_or_model) -> dict[str, list]:
    """Input and output shapes, with symbolic dimensions by name (e.g. ['batch', 3, 224, 224])."""
    model = onnx.load(str(path_or_model)) if not isinstance(path_or_model, onnx.ModelProto) else path_or_model
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_param if d.dim_param else d.dim_value for d in dims]
    return shapes


#: ONNX Runtime's graph optimization levels by short name (fusion, reduce and builder labs use them).
ORT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def ort_session(path: str | Path, *, level: str = "all", threads: int | None = None,
                optimized_path: str | Path | None = None, providers: list[str] | None = None):
    """An ONNX Runtime session of the model at `path`; CPU unless `providers` says otherwise.

    `level` is a key of :data:`ORT_LEVELS` (or ONNX Runtime's own name): "disabled" runs the graph as
    written, "basic" removes no-ops and folds constants, "all" adds ONNX Runtime's own fusions.
    `optimized_path` writes the graph ONNX Runtime really runs after optimizing it.
    """
    import onnxruntime as ort

    names = {**ORT_LEVELS, **{v: v for v in ORT_LEVELS.values()}}
    if level not in names:
        raise ValueError(f"level must be one of {sorted(ORT_LEVELS)}, got {level!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, names[level])
    options.log_severity_level = 3   # the layout optimizer's "hardware-specific model" notice is expected
    if threads:
        options.intra_op_num_threads = threads
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"])


def ort_run(path_or_session, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Run the single-input graph on `x` with ONNX Runtime and return the first output."""
    session = path_or_session if hasattr(path_or_session, "run") else ort_session(path_or_session)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


def max_relative_error(out: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64."""
    out64 = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    ref64 = np.asarray(ref.detach().cpu() if isinstance(ref, torch.Tensor) else ref, dtype=np.float64)
    if out64.shape != ref64.shape:
        raise ValueError(f"shapes differ: {out64.shape} vs reference {ref64.shape}")
    if not np.all(np.isfinite(out64)):
        return float("inf")
    return float(np.linalg.norm(out64 - ref64) / max(np.linalg.norm(ref64), 1e-30))


def check_export(model: torch.nn.Module, path: str | Path, x: torch.Tensor, rtol: float = 1e-4) -> float:
    """Assert that ONNX Runtime on the exported graph matches PyTorch FP32 on `x`; return the error."""
    with torch.inference_mode():
        ref = model.eval().cpu().float()(x.cpu().float())
    err = max_relative_error(ort_run(path, x), ref)
    if not err <= rtol:
        raise AssertionError(f"ONNX Runtime output differs from PyTorch: relative error {err:.3g} > {rtol:g}")
    return err
