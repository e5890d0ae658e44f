"""Lab 08 (low precision): INT8, FP8 and INT4 quantization with NVIDIA ModelOpt: PTQ, QAT, per-layer
sensitivity, Q/DQ export.

ModelOpt (`nvidia-modelopt`) is the successor of pytorch-quantization. `modelopt.torch.quantization`
("mtq") puts a quantizer on each layer's input and weight; post-training quantization (PTQ)
calibrates their ranges on a few images, quantization-aware training (QAT) fine-tunes through them,
and an ONNX export turns them into Quantize / DequantizeLinear pairs that TensorRT 11 builds into
INT8/FP8 layers (it has no calibrators of its own any more). `modelopt.onnx.quantization` does PTQ on an ONNX file directly. The last part of
this module reads a Q/DQ graph back: how many pairs, and which ops they reach.

All of it runs on the CPU, on every machine: ModelOpt's fake quantization of a CUDA tensor first
compiles a CUDA extension (about a minute), and the lab's model is small. The GPU is kept for speed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from common.datasets import Split
from common.training import TrainResult, accuracy, train

from .precision import FP8_MAX, captured_modelopt_output

#: The formats the lab compares: ModelOpt's INT8 and FP8 presets, and a deliberately harsh one, 4-bit
#: weights (per output channel) with 3-bit activations (per tensor), where PTQ visibly loses accuracy
#: on this easy dataset and QAT has something to win back. TensorRT deploys no 3-bit type: it stands
#: in for what INT8 PTQ does to harder models.
FORMATS = ("int8", "fp8", "w4a3")
#: Largest quantized magnitude per ONNX PTQ mode: a Q node's scale times it is the calibrated range.
QUANT_MAX = {"int8": 127.0, "fp8": FP8_MAX}

DQ_OPS = ("DequantizeLinear", "TRT_FP8DequantizeLinear")
#: Quantize / dequantize ops: ONNX's own, and the TensorRT custom ops ModelOpt exports FP8 as.
QDQ_OPS = ("QuantizeLinear", "TRT_FP8QuantizeLinear") + DQ_OPS

_MTQ: list[Any] = []


def mtq() -> Any:
    """`modelopt.torch.quantization`, imported on first use: importing it takes seconds (about 20 s
    on the course's GPU machine), so the lab pays for it once, where it first quantizes (the course
    runner's kernels import it while they wait for their turn)."""
    if not _MTQ:
        import modelopt.torch.quantization as module

        _MTQ.append(module)
    return _MTQ[0]


def config(fmt: str) -> dict[str, Any]:
    """The ModelOpt config of `fmt`: its INT8 or FP8 preset, or the INT8 preset's rules with 4-bit
    weights (per output channel) and 3-bit activations (per tensor) for "w4a3"."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {FORMATS}")
    if fmt == "fp8":
        return copy.deepcopy(mtq().FP8_DEFAULT_CFG)
    cfg = copy.deepcopy(mtq().INT8_DEFAULT_CFG)
    if fmt == "w4a3":
        bits: dict[str, dict[str, Any]] = {"*weight_quantizer": {"num_bits": 4, "axis": 0},
                                           "*input_quantizer": {"num_bits": 3, "axis": None}}
        for rule in cfg["quant_cfg"]:
            if rule.get("quantizer_name") in bits and "cfg" in rule:
                rule["cfg"] = dict(rule["cfg"], **bits[rule["quantizer_name"]])
    return cfg


def ptq(model: nn.Module, fmt: str, calibration: torch.Tensor, batch_size: int = 512) -> nn.Module:
    """A fake-quantized copy of `model` (CPU, FP32), its ranges calibrated on `calibration` ("max":
    the largest |value| each quantizer sees)."""
    model = copy.deepcopy(model).cpu().float().eval()

    def forward_loop(m: nn.Module) -> None:
        with torch.no_grad():
            for start in range(0, len(calibration), batch_size):
                m(calibration[start:start + batch_size].cpu().float())

    with contextlib.redirect_stdout(io.StringIO()):   # it prints "Inserted N quantizers"
        return mtq().quantize(model, config(fmt), forward_loop)


def qat(quantized: nn.Module, data: Split, epochs: int = 10, lr: float = 3e-3, seed: int = 0) -> TrainResult:
    """Fine-tune a PTQ model through its quantizers (straight-through gradients), in place, on the CPU."""
    return train(quantized, data, epochs=epochs, lr=lr, seed=seed, device="cpu")


def quantizers(model: nn.Module) -> dict[str, Any]:
    """The model's ModelOpt quantizers by module name (e.g. 'features.3.weight_quantizer')."""
    kind = mtq().nn.TensorQuantizer
    return {name: m for name, m in model.named_modules() if isinstance(m, kind)}


def quantized_layers(model: nn.Module) -> list[str]:
    """Modules with at least one enabled quantizer, in model order ('features.0', ..., 'classifier')."""
    layers: dict[str, None] = {}
    for name, q in quantizers(model).items():
        if q.is_enabled:
            layers.setdefault(name.rpartition(".")[0], None)
    return list(layers)


def quantizer_summary(model: nn.Module) -> list[dict[str, Any]]:
    """One row per enabled quantizer: layer, role, bits and what the calibrated range is."""
    rows = []
    for name, q in quantizers(model).items():
        if not q.is_enabled:
            continue
        layer, _, role = name.rpartition(".")
        amax = q.amax
        rng = "-" if amax is None else (f"{float(amax):.3g}" if amax.numel() == 1 else
                                        f"{float(amax.min()):.3g}..{float(amax.max()):.3g} ({amax.numel()} channels)")
        bits = q.num_bits
        rows.append({"layer": layer, "quantizer": role.replace("_quantizer", ""),
                     "format": f"E{bits[0]}M{bits[1]}" if isinstance(bits, (tuple, list)) else f"INT{bits}",
                     "amax": rng})
    return rows


@contextlib.contextmanager
def quantized_only(model: nn.Module, layers: Sequence[str]) -> Iterator[nn.Module]:
    """Within the block, only the quantizers of `layers` act; the others pass values through in
    full precision (calibrated ranges are kept, so nothing is recalibrated)."""
    enabled = {name: q for name, q in quantizers(model).items() if q.is_enabled}
    keep = set(layers)
    try:
        for name, q in enabled.items():
            if name.rpartition(".")[0] not in keep:
                q.disable()
        yield model
    finally:
        for q in enabled.values():
            q.enable()


def sensitivity(quantized: nn.Module, split: Split, reference_pct: float) -> list[dict[str, Any]]:
    """Per quantized layer: accuracy with only that layer quantized, and with every layer but it.

    The first says how much that layer alone costs; the second how much keeping it in high
    precision would win back."""
    layers = quantized_layers(quantized)
    rows = []
    for layer in layers:
        with quantized_only(quantized, [layer]):
            alone = accuracy(quantized, split)
        with quantized_only(quantized, [other for other in layers if other != layer]):
            all_but = accuracy(quantized, split)
        rows.append({"layer": layer, "only_this_pct": alone, "drop_alone_pts": reference_pct - alone,
                     "all_but_this_pct": all_but})
    return rows


def mixed_precision_plan(quantized: nn.Module, split: Split, rows: Sequence[dict[str, Any]], reference_pct: float,
                         budget_pts: float = 1.0) -> list[dict[str, Any]]:
    """Keep layers in high precision one at a time, the costliest alone first, until the quantized
    model is within `budget_pts` of `reference_pct`; one row per step (step 0: none kept)."""
    layers = quantized_layers(quantized)
    order = [r["layer"] for r in sorted(rows, key=lambda r: (-r["drop_alone_pts"], -r["all_but_this_pct"]))]
    steps, kept = [], []
    for layer in [None, *order]:
        if layer is not None:
            kept.append(layer)
        with quantized_only(quantized, [x for x in layers if x not in kept]):
            acc = accuracy(quantized, split)
        steps.append({"kept_high_precision": ", ".join(kept) or "(none)", "accuracy_pct": acc,
                      "loss_pts": reference_pct - acc})
        if reference_pct - acc <= budget_pts:
            break
    return steps


# -- ModelOpt's ONNX PTQ ---------------------------------------------------------------------------

def onnx_ptq(onnx_path: str | Path, out_path: str | Path, mode: str, calibration: torch.Tensor, *,
             method: str = "max", high_precision: str = "fp32") -> Path:
    """`modelopt.onnx.quantization.quantize` on a file: INT8 or FP8 Q/DQ inserted where ModelOpt's
    rules place them, ranges calibrated with `method` ("max" or "entropy") on `calibration`.

    `high_precision` is the type of everything left unquantized: "fp32" to score the graph with ONNX
    Runtime on the CPU, "fp16" (ModelOpt's default) for a TensorRT deployment.
    """
    from modelopt.onnx.quantization import quantize

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.unlink(missing_ok=True)
    with captured_modelopt_output(logging.WARNING) as said:
        quantize(str(onnx_path), quantize_mode=mode, calibration_data=calibration.cpu().numpy().astype(np.float32),
                 calibration_method=method, calibration_eps=["cpu"], high_precision_dtype=high_precision,
                 output_path=str(out_path), log_level="WARNING")
    if not out_path.is_file():
        raise RuntimeError(f"ModelOpt wrote no quantized model for {onnx_path} ({mode}, {method}); it said:\n"
                           + "\n".join((said.messages + said.text.splitlines())[-20:]))
    return out_path


def activation_ranges(model: onnx.ModelProto, mode: str) -> dict[str, float]:
    """The range (scale x largest quantized value: what the Q/DQ pair represents before it saturates) of
    each quantized activation, by tensor."""
    return {tensor: scale * QUANT_MAX[mode] for tensor, scale in activation_scales(model).items()}


def activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """The per-tensor scale of each quantized activation (its QuantizeLinear's scale), by tensor."""
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scales = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in initializers:
            scale = initializers.get(node.input[1])
            if scale is not None and scale.size == 1:
                scales[node.input[0]] = float(scale)
    return scales


#: ModelOpt's ONNX FP8 PTQ calibrates in INT8 (ONNX Runtime's calibrators, scale = amax / 127) and then
#: multiplies every scale by 448 / 127 (``int8_to_fp8`` in ``modelopt/onnx/quantization/fp8.py``).
ONNX_FP8_SCALE_FACTOR = QUANT_MAX["fp8"] / QUANT_MAX["int8"]


def fp8_scale_check(int8_graph: onnx.ModelProto, fp8_graph: onnx.ModelProto, tensor: str) -> dict[str, float]:
    """One activation in ModelOpt's ONNX INT8 and FP8 graphs (same calibration method and images):
    the calibrated amax (INT8 scale x 127), both scales, their ratio (448 / 127 if both come from the
    same amax), the largest |value| the FP8 pair represents before saturating (scale x 448), and what
    the calibrated amax becomes in E4M3 (amax / FP8 scale; 448 for a scale of amax / 448)."""
    int8_scale, fp8_scale = activation_scales(int8_graph)[tensor], activation_scales(fp8_graph)[tensor]
    amax = int8_scale * QUANT_MAX["int8"]
    return {"amax": amax, "int8_scale": int8_scale, "fp8_scale": fp8_scale, "ratio": fp8_scale / int8_scale,
            "fp8_saturates_at": fp8_scale * QUANT_MAX["fp8"], "amax_in_e4m3": amax / fp8_scale}


# -- Q/DQ graphs: where the quantization landed ------------------------------------------------

def qdq_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Quantize / dequantize nodes by op type (ONNX's own and TensorRT's FP8 custom ops)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def qdq_placement(model: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """For every node reading a dequantized tensor, and every Conv/Gemm/MatMul: its op, and whether
    its activation input and its weight come through Q/DQ. A weight is a Q/DQ pair whose quantize
    reads an initializer or a Constant node's output."""
    producer = {o: n for n in model.graph.node for o in n.output}
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}

    def dequantized(name: str) -> str | None:
        """'weight' or 'activation' when `name` is a DQ output, else None."""
        dq = producer.get(name)
        if dq is None or dq.op_type not in DQ_OPS:
            return None
        q = producer.get(dq.input[0])
        source = q.input[0] if q is not None else dq.input[0]
        return "weight" if source in constants else "activation"

    placement = {}
    for node in model.graph.node:
        if node.op_type in QDQ_OPS or node.op_type == "Constant":
            continue
        kinds = [dequantized(i) for i in node.input]
        if any(kinds) or node.op_type in ("Conv", "Gemm", "MatMul"):
            placement[node.name] = {"op": node.op_type, "activation": "activation" in kinds, "weight": "weight" in kinds}
    return placement


def placement_table(graphs: Mapping[str, onnx.ModelProto]) -> list[dict[str, str]]:
    """One row per node that any of `graphs` quantizes (or that is a Conv/Gemm/MatMul), one column per
    graph: 'act+weight', 'act', 'weight' or '-' for what reaches the node through Q/DQ."""
    placements = {label: qdq_placement(model) for label, model in graphs.items()}
    order: dict[str, str] = {}
    for placement in placements.values():
        for name, info in placement.items():
            order.setdefault(name, info["op"])
    rows = []
    for name, op in order.items():
        row = {"node": name, "op": op}
        for label, placement in placements.items():
            info = placement.get(name, {"activation": False, "weight": False})
            row[label] = "+".join(k for k, key in (("act", "activation"), ("weight", "weight")) if info[key]) or "-"
        rows.append(row)
    return rows
