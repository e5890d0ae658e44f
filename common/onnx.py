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

from . import checks

DEFAULT_OPSET = 17
#: IR version of the graphs the course builds itself (ONNX 1.16's). onnx 1.23 stamps new models with
#: IR 14, which ONNX Runtime 1.30 refuses to load; IR 10 is read by ONNX Runtime 1.17+ and TensorRT.
PORTABLE_IR_VERSION = 10


def portable(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower `model`'s IR version to :data:`PORTABLE_IR_VERSION` (in place) and return it."""
    model.ir_version = min(model.ir_version, PORTABLE_IR_VERSION)
    return model


_EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


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
    dtype = _EXPORT_DTYPES.get(str(precision).lower())
    if dtype is None:
        raise ValueError(f"precision must be one of {', '.join(map(repr, _EXPORT_DTYPES))}, got {precision!r}")
    precision = str(precision).lower()
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


def load(path_or_model) -> onnx.ModelProto:
    """The model at `path_or_model` (or the model itself); a file that holds no ONNX graph (empty,
    truncated, not ONNX) is a ValueError naming it, not an empty model."""
    if isinstance(path_or_model, onnx.ModelProto):
        model, where = path_or_model, "the model"
    else:
        where = str(path_or_model)
        try:
            model = onnx.load(where)
        except FileNotFoundError:
            raise
        except Exception as exc:   # protobuf's DecodeError and friends: the bytes are not a model
            raise ValueError(f"{where} is not an ONNX model ({type(exc).__name__}: {exc}); export it again") from None
    if not model.graph.node and not model.graph.output:
        raise ValueError(f"{where} holds no ONNX graph (no nodes, no outputs): the file is empty or was cut "
                         "short; export it again")
    return model


def node_counts(path_or_model) -> dict[str, int]:
    """How many nodes of each op type the graph has, most frequent first."""
    model = load(path_or_model)
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return dict(counts.most_common())


def io_shapes(path_or_model) -> dict[str, list]:
    """Input and output shapes, with symbolic dimensions by name (e.g. ['batch', 3, 224, 224])."""
    model = load(path_or_model)
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_param if d.dim_param else d.dim_value for d in dims]
    return shapes


def polygraphy_inspect(path_or_model, *, show_layers: bool = False) -> str:
    """What ``polygraphy inspect model X.onnx --model-type=onnx [--show layers]`` prints for the graph,
    from Polygraphy's own formatter (it needs no TensorRT); labs 05 and 07 read their rewrites with it."""
    from polygraphy.backend.onnx import util as polygraphy_onnx

    return polygraphy_onnx.str_from_onnx(load(path_or_model), show_layers=show_layers)


def polygraphy_inspect_command(path: str | Path, *, show_layers: bool = False) -> str:
    """The command line :func:`polygraphy_inspect` stands for, naming the file only (no directory)."""
    return f"polygraphy inspect model {Path(path).name} --model-type=onnx" + (" --show layers" if show_layers else "")


#: ONNX Runtime's graph optimization levels by short name (fusion, reduce and builder labs use them).
ORT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def ort_session(path: str | Path | bytes, *, level: str = "all", threads: int | None = None,
                optimized_path: str | Path | None = None, providers: list[str] | None = None):
    """An ONNX Runtime session of the model at `path` (or of a serialized model); CPU unless
    `providers` says otherwise.

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
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, sess_options=options, providers=providers or ["CPUExecutionProvider"])


#: ONNX Runtime's input type names and the NumPy dtype each takes.
ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def ort_run(path_or_session, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Run the single-input graph on `x` with ONNX Runtime and return the first output.

    `x` is converted to the type the graph's input declares (an FP16 graph gets FP16), not to FP32."""
    session = path_or_session if hasattr(path_or_session, "run") else ort_session(path_or_session)
    declared = session.get_inputs()[0]
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()   # NumPy has no bfloat16
    want = ORT_DTYPES.get(declared.type)
    if want is not None and x.dtype != want:
        x = x.astype(want)
    return session.run(None, {declared.name: x})[0]


def max_relative_error(out: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (:func:`common.checks.relative_error`, under the name lab 01 used)."""
    return checks.relative_error(out, ref)

def check_export(model: torch.nn.Module, path: str | Path, x: torch.Tensor, rtol: float = 1e-4) -> float:
    """Assert that ONNX Runtime on the exported graph matches PyTorch FP32 on `x`; return the error."""
    with torch.inference_mode():
        ref = model.eval().cpu().float()(x.cpu().float())
    err = max_relative_error(ort_run(path, x), ref)
    if not err <= rtol:
        raise AssertionError(f"ONNX Runtime output differs from PyTorch: relative error {err:.3g} > {rtol:g}")
    return err


def export_pair(model: torch.nn.Module, example: torch.Tensor, out_dir: str | Path,
                stem: str) -> tuple[dict[str, Path], float]:
    """`model` as ``<stem>_fp32.onnx`` with a dynamic batch and, on a GPU, ``<stem>_fp16.onnx`` (TensorRT 11
    takes an engine's precision from the graph); and ONNX Runtime's relative error against PyTorch FP32
    on the FP32 file (:func:`check_export` raises above 1e-4).

    Introduced in lab 01 (batching); lab 02 (streams) exports its networks with it too.
    """
    from . import env

    out_dir = Path(out_dir)
    paths = {"fp32": export(model, example, out_dir / f"{stem}_fp32.onnx")}
    error = check_export(model, paths["fp32"], example, rtol=1e-4)
    if env.has("gpu"):
        paths["fp16"] = export(model, example, out_dir / f"{stem}_fp16.onnx", precision="fp16")
    return paths, error


def export_zoo_pair(name: str, scale: str, out_dir: str | Path) -> tuple[dict[str, Path], float]:
    """:func:`export_pair` of zoo model `name` (seed 0) at `scale`: ``<name>_<scale>_fp32.onnx``, and FP16 on a GPU."""
    from . import models

    return export_pair(models.build(name, scale), models.example_input(name, 2, scale), out_dir, f"{name}_{scale}")
