"""Lab 08 (low precision): FP16/BF16 graphs from ModelOpt AutoCast, graphs scored with ONNX Runtime,
and where FP8/INT8 pays on a GPU and where it does not.

TensorRT 11 networks are strongly typed: an engine runs in the precision its ONNX says, so FP16/BF16
come from AutoCast (`modelopt.onnx.autocast`), which inserts Cast nodes and keeps in FP32 the nodes
its rules flag, and INT8/FP8 from explicit Quantize / DequantizeLinear (Q/DQ) pairs
(:mod:`.quantization`, which also reads where they landed). This module converts with AutoCast and
says which nodes stayed FP32 and why, scores graphs with ONNX Runtime on the CPU, and builds the
PyTorch measurements of the lab: one model at FP32/TF32/FP16/BF16, FP8 and INT8 matrix products
against FP16, FP8 linear layers with their quantize step, and Q/DQ-wrapped convolutions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F

from common import bench, cases, checks
from common.cases import TORCH_DTYPE, Case, int8_case  # noqa: F401  (lab 08 shows the shared INT8 case)
from common.datasets import Split
from common.models import forward_with_hooks
from common.onnx import ort_session
from common.training import accuracy_of, standard_error_points

#: Largest finite FP8 E4M3 value: a quantize step scales amax onto it and clamps (saturates).
FP8_MAX = 448.0


# -- ModelOpt's ONNX tools talk to stdout; keep what they say ------------------------------------

@dataclass
class ToolOutput:
    """What ModelOpt logged (messages) and printed (text) while a `captured_modelopt_output` block ran."""

    messages: list[str] = field(default_factory=list)
    text: str = ""


class _Collector(logging.Handler):
    def __init__(self, output: ToolOutput) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        self.output.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_modelopt_output(level: int = logging.INFO) -> Iterator[ToolOutput]:
    """Collect ModelOpt's ONNX log records and prints instead of letting them into the notebook.

    Its loggers write to stdout through handlers that every `quantize` call re-creates, and it
    prints progress; both are kept in the returned :class:`ToolOutput`. The loggers' handlers,
    levels and propagation are restored afterwards.
    """
    output = ToolOutput()
    names = {"modelopt.onnx"} | {n for n in logging.root.manager.loggerDict if n.startswith("modelopt.onnx")}
    loggers = [logging.getLogger(n) for n in sorted(names)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    top = logging.getLogger("modelopt.onnx")
    buffer = io.StringIO()
    try:
        for lg in loggers:
            lg.handlers = [_Collector(output)] if lg is top else []
            lg.setLevel(level)
        top.propagate = False
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield output
    finally:
        for lg, handlers, lvl, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(lvl)
        output.text = buffer.getvalue()


# -- AutoCast: FP16 / BF16 graphs ----------------------------------------------------------------

def write_calibration_npz(images: torch.Tensor, path: str | Path, input_name: str = "input") -> Path:
    """Images as the NPZ file AutoCast's reference run reads (`calibration_data`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {input_name: images.detach().cpu().numpy().astype(np.float32)}
    np.savez(path, **arrays)
    return path


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def fp32_compute_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes (other than Cast) whose first input is FP32 after type inference: what still runs in FP32."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = _elem_types(inferred)
    return [node.name for node in inferred.graph.node
            if node.op_type != "Cast" and node.input and types.get(node.input[0]) == onnx.TensorProto.FLOAT]


@dataclass
class AutocastResult:
    """One AutoCast conversion: where it wrote the graph, what it kept in FP32 and why."""

    path: Path
    low_precision: str
    nodes: int                       # nodes of the source graph
    kept_fp32: dict[str, str]        # node -> the rule that kept it, as AutoCast logged it
    cast_nodes: int
    messages: list[str] = field(repr=False, default_factory=list)

    @property
    def converted(self) -> int:
        return self.nodes - len(self.kept_fp32)


_SKIPPED = re.compile(r"^Skipping node (.+?): (.*)$")


def autocast(onnx_path: str | Path, out_path: str | Path, low_precision: str, calibration_npz: str | Path,
             **options: Any) -> AutocastResult:
    """`modelopt.onnx.autocast.convert_to_mixed_precision` from file to file, with its reasons.

    `options` go to AutoCast (`data_max`, `max_depth_of_reduction`, `op_types_to_exclude`, ...).
    The FP32 nodes are read from the converted graph; the reason for each from AutoCast's log.
    """
    from modelopt.onnx.autocast import convert_to_mixed_precision

    if low_precision not in ("fp16", "bf16"):
        raise ValueError(f"AutoCast converts to 'fp16' or 'bf16', got {low_precision!r}")
    with captured_modelopt_output() as said:
        model = convert_to_mixed_precision(str(onnx_path), low_precision_type=low_precision,
                                           calibration_data=str(calibration_npz), providers=["cpu"], **options)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    reasons: dict[str, str] = {}
    for message in said.messages:
        skipped = _SKIPPED.match(message)
        if skipped:
            reasons[skipped.group(1)] = skipped.group(2)
    kept = {name: reasons.get(name, "(no reason logged)") for name in fp32_compute_nodes(model)}
    source_nodes = len(onnx.load(str(onnx_path)).graph.node)
    casts = sum(node.op_type == "Cast" for node in model.graph.node)
    return AutocastResult(out_path, low_precision, source_nodes, kept, casts, said.messages)


def node_output_absmax(onnx_path: str | Path, images: torch.Tensor) -> dict[str, float]:
    """Largest |value| each node writes on `images` (ONNX Runtime, CPU): what AutoCast's `data_max`
    rule compares against (FP16's spacing is 0.5 at 512, its default limit)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    known = {o.name for o in model.graph.output}
    wanted = {o: n.name for n in model.graph.node for o in n.output}
    model.graph.output.extend(v for v in model.graph.value_info if v.name in wanted and v.name not in known)
    session = ort_session(model.SerializeToString(), level="basic")
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, {session.get_inputs()[0].name: images.numpy().astype(np.float32)})
    absmax: dict[str, float] = {}
    for name, value in zip(names, values):
        node = wanted.get(name)
        if node is not None and np.issubdtype(np.asarray(value).dtype, np.floating):
            absmax[node] = max(absmax.get(node, 0.0), float(np.abs(value).max()))
    return absmax


# -- ONNX Runtime on the CPU: scoring graphs -----------------------------------------------------

def ort_logits(onnx_path: str | Path, images: torch.Tensor, *, optimization: str = "basic") -> np.ndarray:
    """Logits of the graph on `images` with ONNX Runtime on the CPU, fed in the graph's input type.

    `optimization` "basic" keeps Q/DQ nodes as they are, so the graph runs as written (quantize,
    dequantize, FP32 op): the accuracy of the quantized model. "all" lets ONNX Runtime fuse Q/DQ
    into its own quantized kernels, a different computation (lab 08 compares the two).
    """
    import ml_dtypes

    session = ort_session(onnx_path, level=optimization)
    graph_input = session.get_inputs()[0]
    feed_dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                  "tensor(bfloat16)": ml_dtypes.bfloat16}.get(graph_input.type)
    if feed_dtype is None:
        raise TypeError(f"{onnx_path}: input type {graph_input.type} is not one this lab feeds")
    out = session.run(None, {graph_input.name: images.detach().cpu().numpy().astype(feed_dtype)})[0]
    return np.asarray(out, dtype=np.float32)


def score(label: str, backend: str, logits: np.ndarray | torch.Tensor, split: Split,
          reference: np.ndarray | torch.Tensor | None = None) -> dict[str, Any]:
    """Accuracy (with its standard error and sample size) of `logits` on `split`; against the FP32
    `reference` logits, also the relative error and the share of predictions that agree."""
    logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    acc = accuracy_of(logits.argmax(1), split.labels)
    row = {"model": label, "backend": backend, "accuracy_pct": acc,
           "std_error_pts": standard_error_points(acc, len(split)), "n": len(split)}
    if reference is not None:
        ref = torch.as_tensor(np.asarray(reference, dtype=np.float32))
        row["rel_error_vs_fp32"] = checks.relative_error(logits, ref)
        row["agree_with_fp32_pct"] = 100.0 * float((logits.argmax(1) == ref.argmax(1)).float().mean())
    return row


# -- PyTorch: one model at several precisions ----------------------------------------------------

#: The two memory layouts a convolution can run in: NCHW (PyTorch's default) and channels-last (NHWC).
LAYOUTS = ("nchw", "channels_last")
_MEMORY_FORMAT = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def model_case(model: nn.Module, images: torch.Tensor, precision: str, *, device: str, label: str = "",
               reference_model: nn.Module | None = None, tolerance: float | None = None,
               layout: str | None = None) -> Case:
    """`model` cast to `precision` ("fp32", "tf32", "fp16", "bf16") on `images`, checked against FP32
    (`reference_model` in FP32, default `model` itself) within `tolerance` (default: the precision's
    whole-model tolerance of :data:`common.checks.TOLERANCE`; for FP32 the one-operation bound, 1e-5:
    the same network computed twice in FP32 differs only in its summation order).

    `layout` is "nchw" or "channels_last" (default: channels-last on a GPU, the tensor-core layout;
    NCHW on a CPU). cuDNN picks different kernels per layout and precision, and its FP32
    channels-last convolutions can be far slower than its NCHW ones: lab 08 measures both. TF32 is
    switched per call for both cuBLAS and cuDNN: PyTorch allows TF32 in cuDNN convolutions by
    default, so an "FP32" convolution there is TF32 unless told otherwise.
    """
    layout = layout or ("channels_last" if device == "cuda" else "nchw")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    dtype, memory_format = TORCH_DTYPE[precision], _MEMORY_FORMAT[layout]
    net = copy.deepcopy(model).to(device=device, dtype=dtype).eval().to(memory_format=memory_format)
    x = images.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)
    tf32 = precision == "tf32"

    @torch.inference_mode()
    def run() -> torch.Tensor:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        return net(x)

    with cases.tf32_mode(False), torch.inference_mode():
        fp32 = copy.deepcopy(reference_model if reference_model is not None else model)
        reference = fp32.to(device=device, dtype=torch.float32).eval()(images.to(device))
    if tolerance is None:
        tolerance = checks.tolerance(precision, "op" if precision == "fp32" else "model")
    case = Case(label or precision, precision, run, 0, params={"batch": len(images), "layout": layout})
    return cases.checked(case, run(), reference, tolerance)


def precision_cases(models: dict[str, tuple[nn.Module, torch.Tensor]], precisions: Sequence[str], *, device: str,
                    layouts: Sequence[str] = LAYOUTS) -> list[Case]:
    """Every (model, precision, layout): `models` maps a name to (model, the images it runs on). Labels
    are "name precision layout"; params carry model, precision, layout and batch."""
    found = []
    for name, (model, images) in models.items():
        for precision in precisions:
            for layout in layouts:
                case = model_case(model, images, precision, device=device, layout=layout,
                                  label=f"{name} {precision} {layout}")
                case.params.update(model=name)
                found.append(case)
    return found


@torch.inference_mode()
def autocast_logits(model: nn.Module, images: torch.Tensor, precision: str, *, device: str) -> torch.Tensor:
    """Logits of the FP32 `model` under `torch.autocast` to FP16 or BF16: PyTorch picks a type per op
    (convolutions and products in low precision, reductions such as BatchNorm's kept FP32) and
    casts on every call, where a cast model (or an AutoCast graph) converts once."""
    net = copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()
    with torch.autocast(device_type=device, dtype=TORCH_DTYPE[precision]):
        return net(images.to(device)).float().cpu()


@contextlib.contextmanager
def gpu_math_defaults() -> Iterator[None]:
    """cuDNN autotuning on while measuring; TF32 flags and autotuning restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = saved


def judged_on(*runs: Sequence[bench.Measurement]) -> str:
    """"kernel" where every run carries the GPU's own kernel time (a device effect is judged on it),
    else "event" (on a CPU: host time)."""
    measured = all(not math.isnan(m.kernel_ms) for side in runs for m in side)
    return "kernel" if measured and runs and all(runs) else "event"


def device_compare(runs_a: Sequence[bench.Measurement], runs_b: Sequence[bench.Measurement]) -> bench.Comparison:
    """B against A on kernel time where it was measured (precision is a device effect), else event time."""
    return bench.compare(runs_a, runs_b, on=judged_on(runs_a, runs_b))


def with_kernel_fields(rows: Sequence[dict], runs: dict[str, list[bench.Measurement]], key: str = "case") -> list[dict]:
    """`rows` with each row's kernel time, GPU busy share and regime (bench.kernel_fields of runs[row[key]])."""
    return [{**row, **bench.kernel_fields(runs[row[key]])} for row in rows]


def speed_rows(timed: Sequence[Case], runs: dict[str, list[bench.Measurement]], unit: str = "img") -> list[dict]:
    """Per case: median latency over the passes, throughput = batch / median latency, spread, error, and
    the kernels' own time, busy share and regime."""
    rows = []
    for row, case in zip(cases.result_rows(timed, runs), timed):
        batch = case.params.get("batch", 1)
        rows.append({"case": case.label, "model": case.params.get("model", ""), "precision": case.precision,
                     "layout": case.params.get("layout", ""), "batch": batch, "latency_ms": row["latency_ms"],
                     f"{unit}_per_s": batch / (row["latency_ms"] / 1e3), "spread_pct": row["spread_pct"],
                     "rel_error": case.error, **bench.kernel_fields(runs[case.label])})
    return rows


def _time_of(row: dict) -> float:
    return row["latency_ms"] if math.isnan(row.get("kernel_ms", float("nan"))) else row["kernel_ms"]


def best_layouts(speed: Sequence[dict]) -> dict[tuple[str, str], str]:
    """Per (model, precision): the layout whose run was faster (kernel time where measured)."""
    best: dict[tuple[str, str], dict] = {}
    for row in speed:
        key = (row["model"], row["precision"])
        if key not in best or _time_of(row) < _time_of(best[key]):
            best[key] = row
    return {key: row["layout"] for key, row in best.items()}


def layout_comparisons(speed: Sequence[dict], runs: dict[str, list[bench.Measurement]]
                       ) -> dict[tuple[str, str], bench.Comparison]:
    """Per (model, precision) measured in both layouts: NCHW against channels-last (speedup > 1: NCHW faster)."""
    label = {(row["model"], row["precision"], row["layout"]): row["case"] for row in speed}
    return {(model, precision): device_compare(runs[label[(model, precision, "channels_last")]], runs[case])
            for (model, precision, layout), case in label.items()
            if layout == "nchw" and (model, precision, "channels_last") in label}


def precision_speedups(speed: Sequence[dict], runs: dict[str, list[bench.Measurement]]
                       ) -> dict[tuple[str, str], bench.Comparison]:
    """Per (model, precision) other than FP32: that precision in its faster layout against FP32 in its
    faster layout, on the same model (kernel time where measured)."""
    layouts = best_layouts(speed)
    label = {(row["model"], row["precision"]): row["case"] for row in speed
             if row["layout"] == layouts[(row["model"], row["precision"])]}
    return {(model, precision): device_compare(runs[label[(model, "fp32")]], runs[case])
            for (model, precision), case in label.items() if precision != "fp32"}


def ceiling_ratios(measured: Any) -> dict[str, float]:
    """Per precision (FP16, BF16, TF32): its measured matrix ceiling over FP32's, from lab 00's
    :class:`common.ceilings.Ceilings` of this GPU (`measured`); empty without them. A model cannot gain
    more from a precision than this, unless its FP32 run is slower than FP32's own ceiling allows."""
    if measured is None or measured.device != "cuda" or not measured.matmul_tflops.get("fp32"):
        return {}
    rates = measured.matmul_tflops
    return {p: rates[p] / rates["fp32"] for p in ("fp16", "bf16", "tf32") if p in rates}


def model_flops(model: "torch.nn.Module", sample: "torch.Tensor") -> int:
    """Multiply-adds x 2 of one forward pass of `model` on `sample` (its convolutions and linear layers:
    the arithmetic a matrix ceiling bounds), counted from the layers' output shapes."""
    import torch

    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += 2 * output.numel() * module.in_features

    param = next(model.parameters(), None)
    if param is not None:   # the sample where the model lives, in its dtype
        sample = sample.to(param.device, param.dtype)
    forward_with_hooks(model, sample, [(m, count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    return total


#: The precisions whose runs lab 00's matrix ceiling of the same name bounds ("fp32" with TF32 off).
CEILING_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def ceiling_shares(speed: Sequence[dict], flops_per_image: Mapping[str, int], measured: Any) -> dict[tuple[str, str], dict]:
    """Per (model, precision), in its faster layout: the arithmetic rate on event time (as lab 00 measured
    its ceilings) and its share of that precision's matrix ceiling; empty without ceilings. Where a
    precision gains more over FP32 than the ceilings' ratio, these shares say which run fell short."""
    if measured is None or measured.device != "cuda":
        return {}
    layouts = best_layouts(speed)
    out = {}
    for row in speed:
        key = (row["model"], row["precision"])
        dtype = row["precision"]
        if (layouts.get(key) != row["layout"] or row["model"] not in flops_per_image or dtype not in CEILING_PRECISIONS
                or dtype not in measured.matmul_tflops):
            continue
        tflops = flops_per_image[row["model"]] * row["batch"] / (row["latency_ms"] / 1e3) / 1e12
        ceiling = measured.matmul_tflops[dtype]
        out[key] = {"tflops": tflops, "ceiling_tflops": ceiling, "pct_of_ceiling": min(100.0, 100 * tflops / ceiling),
                    "layout": row["layout"]}
    return out


def throughput_plot(rows: Sequence[dict], *, title: str, path: str | Path, value: str = "img_per_s",
                    ylabel: str = "images / s (batch / median latency), log scale") -> Path:
    """Bars of `value` per row's "case" on a logarithmic axis: rates that differ by orders of magnitude
    (a wide FP32 model beside a small FP16 one) stay readable."""
    import matplotlib.pyplot as plt

    from common import plots

    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    labels, values = [str(r["case"]) for r in rows], [r[value] for r in rows]
    bars = ax.bar(labels, values, color="#76b900")
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:,.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=7)
    ax.set_yscale("log")
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return plots.finish_figure(fig, [{"case": r["case"], value: r[value]} for r in rows], path)


# -- FP8 and INT8 on the GPU: products, layers, and Q/DQ around convolutions ---------------------

def fp8_fake_quantize(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Quantize to FP8 E4M3 with a per-tensor `scale` (saturating) and dequantize back to x's type:
    what a Q/DQ pair computes when no FP8 kernel absorbs it: five elementwise passes over x."""
    return (x / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(x.dtype) * scale


class _QDQConv(nn.Module):
    scale: torch.Tensor

    def __init__(self, conv: nn.Conv2d, input_amax: float) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("scale", torch.tensor(max(input_amax, 1e-12) / FP8_MAX))
        with torch.no_grad():   # weights are constants: their Q/DQ is folded once, as a builder does
            w_scale = conv.weight.abs().amax() / FP8_MAX
            conv.weight.copy_(fp8_fake_quantize(conv.weight, w_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(fp8_fake_quantize(x, self.scale.to(x.dtype)))


def qdq_wrapped(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """A copy of `model` whose convolutions read FP8-Q/DQ'd inputs (per-tensor scale from the largest
    |input| over `calibration`) and use FP8-rounded weights; everything still computes in the
    model's own precision. Lab 08 times it against the plain model."""
    model = copy.deepcopy(model).float().eval()
    amax: dict[str, float] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: amax.__setitem__(
        name, max(amax.get(name, 0.0), float(args[0].abs().max()))))
        for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(calibration.float())
    for hook in hooks:
        hook.remove()
    for name, value in amax.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _QDQConv(getattr(parent, child), value))
    return model


def linear_stack(width: int, layers: int, *, seed: int = 0) -> nn.Sequential:
    """`layers` x (Linear(width, width, bias=False) + ReLU), seeded, FP32 on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width, bias=False), nn.ReLU())]).eval()


def fp8_linear_stack_fn(stack: nn.Sequential, calibration: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stack with every Linear as an FP8 `torch._scaled_mm`, on the stack's device: weights
    quantized once (per-tensor scale), and each activation quantized on every call with a static
    scale calibrated on `calibration` (scale, saturate, cast: the Q of a Q/DQ pair, as separate
    kernels). FP16 in and out."""
    linears = [m for m in stack if isinstance(m, nn.Linear)]
    device = linears[0].weight.device
    amax, x = [], calibration.to(device=device, dtype=torch.float32)
    with torch.no_grad():
        for lin in linears:
            amax.append(float(x.abs().max()))
            x = F.relu(lin(x))
    plan = []
    for lin, a in zip(linears, amax):
        w = lin.weight.detach().float()
        w_scale = (w.abs().amax() / FP8_MAX).float()
        w8 = (w / w_scale).to(torch.float8_e4m3fn)          # (out, in), row-major
        # The quantize step multiplies by an FP16 1/scale; dequantizing with its exact inverse keeps the pair consistent.
        inv = torch.tensor(FP8_MAX / max(a, 1e-12), device=device, dtype=torch.float16)
        plan.append((w8.t(), w_scale, 1.0 / inv.float(), inv))   # w8.t(): column-major, as _scaled_mm wants

    def run(x: torch.Tensor) -> torch.Tensor:
        for w8t, w_scale, x_scale, inv in plan:
            x8 = (x * inv).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            x = torch.relu(torch._scaled_mm(x8, w8t, scale_a=x_scale, scale_b=w_scale, out_dtype=torch.float16))
        return x

    return run


def linear_stack_cases(batch: int, width: int, layers: int, *, device: str, seed: int = 0) -> list[Case]:
    """The same stack in FP16 and with FP8 layers (quantize step included), both checked against FP32."""
    stack = linear_stack(width, layers, seed=seed).to(device)
    x = cases.random_tensor((batch, width), device=device, dtype=torch.float32, seed=seed + 1)
    calibration = cases.random_tensor((batch, width), device=device, dtype=torch.float32, seed=seed + 2)
    with cases.tf32_mode(False), torch.inference_mode():
        reference = stack(x)
    fp16 = copy.deepcopy(stack).to(torch.float16)
    x16 = x.to(torch.float16)
    fp8 = fp8_linear_stack_fn(stack, calibration)
    flops = 2 * batch * width * width * layers
    params = {"batch": batch, "width": width, "layers": layers}
    name = f"{layers} x Linear({width}) at batch {batch}"
    stack_cases = []
    for precision, fn in (("fp16", lambda: fp16(x16)), ("fp8", lambda: fp8(x16))):
        case = Case(f"{name}, {precision}", precision, torch.inference_mode()(fn), flops, params=params)
        stack_cases.append(cases.checked(case, case.fn(), reference, checks.tolerance(precision, "model")))
    return stack_cases
