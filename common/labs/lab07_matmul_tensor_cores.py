"""Lab 07 (MatMul and tensor-core alignment): shapes, precisions, padding (in PyTorch and in the ONNX graph).

Tensor cores read their operands in 16-byte
pieces, so a GEMM runs at full rate only when its inner dimensions are multiples of 16 bytes' worth of
elements: 4 in TF32/FP32, 8 in FP16/BF16, 16 in FP8/INT8. The timed cases, their check against an
FP32 reference before timing, the interleaved passes and the rates as a share of the machine's
measured matrix ceiling are :mod:`common.cases` (shared with labs 08-10, with the plain GEMM cases
``gemm_case`` and ``fp8_case``). This module adds the lab's own cases — padding K in PyTorch, a
convolution's channels, batched products, FP8's refusal — pads a misaligned ``MatMul``/``Gemm`` in
an ONNX graph with onnx-graphsurgeon so that TensorRT sees aligned shapes, builds both graphs with
TensorRT where it is installed, and holds the lab's claims (:func:`claims`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
import torch.nn.functional as F

from .. import bench, checks, report
from ..cases import TORCH_DTYPE, Case, checked, fp8_operands, padded, random_tensor, tf32_mode
from ..onnx import portable

def fp8_misaligned_error(m: int, k: int, n: int, *, device: str) -> str:
    """What ``torch._scaled_mm`` says for a shape that is not a multiple of 16 (first line)."""
    a, b, one = fp8_operands(m, k, n, device=device)
    try:
        torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16)
    except RuntimeError as exc:
        return str(exc).strip().splitlines()[0]
    raise AssertionError(f"torch._scaled_mm accepted {m}x{k}x{n}: this PyTorch no longer requires multiples of 16")


@dataclass
class PaddedMatmul:
    """y = x @ w with K padded to a multiple: the weight padded with zero rows once, the
    activation padded on every call (that pad is part of the timed work)."""

    weight: torch.Tensor          # (k_padded, n), zero rows at the end
    k: int

    @classmethod
    def from_weight(cls, weight: torch.Tensor, multiple: int) -> "PaddedMatmul":
        k = weight.shape[0]
        return cls(F.pad(weight, (0, 0, 0, padded(k, multiple) - k)).contiguous(), k)

    @property
    def pad(self) -> int:
        return self.weight.shape[0] - self.k

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, self.pad))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.pad_input(x) @ self.weight


def padding_cases(m: int, k: int, n: int, precision: str, *, device: str, multiple: int, seed: int = 0) -> list[Case]:
    """Unpadded K, padded K (pad + GEMM), the pad alone and the aligned GEMM alone, all checked."""
    dtype = TORCH_DTYPE[precision]
    x = random_tensor((m, k), device=device, dtype=dtype, seed=seed)
    w = random_tensor((k, n), device=device, dtype=dtype, seed=seed + 1)
    padder = PaddedMatmul.from_weight(w, multiple)
    x_padded = padder.pad_input(x)
    kp = padder.weight.shape[0]
    with tf32_mode(False):
        reference = x.float() @ w.float()
    cases = [
        checked(Case(f"K={k} unpadded", precision, lambda: x @ w, 2 * m * k * n), x @ w, reference),
        checked(Case(f"K={k} padded to {kp} (pad + GEMM)", precision, lambda: padder(x), 2 * m * k * n),
                 padder(x), reference),
        checked(Case(f"GEMM alone, K={kp} (input padded beforehand)", precision, lambda: x_padded @ padder.weight,
                      2 * m * k * n), x_padded @ padder.weight, reference),
    ]
    pad_only = Case(f"activation pad alone ({m}x{k} -> {m}x{kp})", precision, lambda: padder.pad_input(x), 0)
    pad_only.error = float(not torch.equal(padder.pad_input(x)[:, :k], x))
    return cases + [pad_only]


def conv_case(c_in: int, c_out: int, batch: int, hw: int, precision: str, *, device: str, seed: int = 0) -> Case:
    """3x3 convolution, stride 1, padding 1, in channels_last, checked against FP32."""
    dtype = TORCH_DTYPE[precision]
    x = random_tensor((batch, c_in, hw, hw), device=device, dtype=dtype, seed=seed).to(
        memory_format=torch.channels_last)
    w = random_tensor((c_out, c_in, 3, 3), device=device, dtype=dtype, seed=seed + 1).to(
        memory_format=torch.channels_last) * (1.0 / (9 * c_in) ** 0.5)
    run = lambda: F.conv2d(x, w, padding=1)  # noqa: E731
    with tf32_mode(False):
        reference = F.conv2d(x.float(), w.float(), padding=1)
        out = run()
    flops = 2 * batch * hw * hw * c_out * c_in * 9
    case = Case(f"conv3x3 C_in={c_in}", precision, run, flops, params={"c_in": c_in})
    return checked(case, out, reference)


def batched_cases(shape: dict, precision: str, *, device: str, seed: int = 0) -> list[Case]:
    """The same products as 4-D/3-D and flattened: (B,H,S,D)@(B,H,D,S) vs a (B*H,S,D) bmm, and
    (B,S,K)@(K,N) vs (B*S,K)@(K,N). `shape` has B, H, S, D (attention) and S2, K, N (linear)."""
    dtype = TORCH_DTYPE[precision]
    b, h, s, d = shape["B"], shape["H"], shape["S"], shape["D"]
    q = random_tensor((b, h, s, d), device=device, dtype=dtype, seed=seed)
    kt = random_tensor((b, h, d, s), device=device, dtype=dtype, seed=seed + 1)
    q3, kt3 = q.reshape(b * h, s, d), kt.reshape(b * h, d, s)        # views: no copy
    s2, k, n = shape["S2"], shape["K"], shape["N"]
    x = random_tensor((b, s2, k), device=device, dtype=dtype, seed=seed + 2)
    w = random_tensor((k, n), device=device, dtype=dtype, seed=seed + 3)
    x2 = x.reshape(b * s2, k)
    with tf32_mode(False):
        ref_attn = q.float() @ kt.float()
        ref_lin = x.float() @ w.float()
    attn_flops, lin_flops = 2 * b * h * s * s * d, 2 * b * s2 * k * n
    return [
        checked(Case(f"4-D matmul ({b},{h},{s},{d})@({b},{h},{d},{s})", precision, lambda: q @ kt, attn_flops),
                 q @ kt, ref_attn),
        checked(Case(f"3-D bmm ({b * h},{s},{d})@({b * h},{d},{s})", precision, lambda: torch.bmm(q3, kt3),
                      attn_flops), torch.bmm(q3, kt3).reshape(b, h, s, s), ref_attn),
        checked(Case(f"3-D x 2-D ({b},{s2},{k})@({k},{n})", precision, lambda: x @ w, lin_flops), x @ w, ref_lin),
        checked(Case(f"2-D GEMM ({b * s2},{k})@({k},{n})", precision, lambda: x2 @ w, lin_flops),
                 (x2 @ w).reshape(b, s2, n), ref_lin),
    ]


# -- the same padding in the ONNX graph, with onnx-graphsurgeon ---------------------------------------

def linear_onnx(path: str | Path, in_features: int, out_features: int, *, seed: int = 0, as_gemm: bool = True,
                dtype: Any = np.float32) -> Path:
    """A one-layer ONNX graph y = x W (+ b) with a constant weight and a dynamic batch: a ``Gemm``
    with transB=1 (what ``torch.nn.Linear`` exports) or a ``MatMul`` followed by an ``Add``."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(in_features)
    w = (rng.standard_normal((in_features, out_features)) * scale).astype(dtype)
    bias = (rng.standard_normal(out_features) * scale).astype(dtype)
    x = gs.Variable("input", dtype=dtype, shape=("batch", in_features))
    y = gs.Variable("output", dtype=dtype, shape=("batch", out_features))
    if as_gemm:
        nodes = [gs.Node("Gemm", "linear", attrs={"transB": 1}, inputs=[x, gs.Constant("weight", np.ascontiguousarray(w.T)),
                                                                         gs.Constant("bias", bias)], outputs=[y])]
    else:
        product = gs.Variable("product", dtype=dtype)
        nodes = [gs.Node("MatMul", "matmul", inputs=[x, gs.Constant("weight", w)], outputs=[product]),
                 gs.Node("Add", "add_bias", inputs=[product, gs.Constant("bias", bias)], outputs=[y])]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[y], opset=17)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = portable(gs.export_onnx(graph))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _weight_k_axis(node: gs.Node) -> int | None:
    """Which axis of the node's constant weight is K, or None when this node is not a padding candidate."""
    if len(node.inputs) < 2 or not isinstance(node.inputs[1], gs.Constant):
        return None
    if node.op == "MatMul":
        return 0 if node.inputs[1].values.ndim == 2 else None
    if node.op == "Gemm":
        if node.attrs.get("transA", 0):
            raise NotImplementedError(f"{node.name}: Gemm with transA=1 transposes the activation; pad before "
                                      "the transpose instead")
        return 1 if node.attrs.get("transB", 0) else 0
    return None


def pad_inner_dimension(model: onnx.ModelProto, multiple: int = 8) -> tuple[onnx.ModelProto, list[str]]:
    """Pad K of every MatMul/Gemm with a constant 2-D weight up to a multiple of `multiple`.

    The activation gets a ``Pad`` node (zeros at the end of its last axis), the weight zero rows
    along K: the padded products add 0 x 0, so the outputs are unchanged. Returns the new model
    and the names of the nodes it padded.
    """
    graph = gs.import_onnx(model)
    changed = []
    for node in list(graph.nodes):
        axis = _weight_k_axis(node)
        if axis is None:
            continue
        weight: gs.Constant = node.inputs[1]
        k = weight.values.shape[axis]
        extra = padded(k, multiple) - k
        if extra == 0:
            continue
        activation = node.inputs[0]
        rank = len(activation.shape) if activation.shape is not None else None
        if rank is None:
            raise ValueError(f"{node.name}: the rank of {activation.name!r} is unknown; run shape inference "
                             "(onnx.shape_inference.infer_shapes) before padding")
        widths = [(0, 0)] * weight.values.ndim
        widths[axis] = (0, extra)
        node.inputs[1] = gs.Constant(f"{weight.name}_padded_k{k + extra}", np.pad(weight.values, widths))
        pads = np.zeros(2 * rank, dtype=np.int64)
        pads[2 * rank - 1] = extra                         # [begins..., ends...]: only the end of the last axis
        padded_activation = gs.Variable(f"{activation.name}_padded_k{k + extra}", dtype=activation.dtype)
        graph.nodes.append(gs.Node("Pad", f"{node.name}_pad_k", attrs={"mode": "constant"},
                                   inputs=[activation, gs.Constant(f"{node.name}_pads", pads)],
                                   outputs=[padded_activation]))
        node.inputs[0] = padded_activation
        changed.append(node.name)
    graph.cleanup().toposort()
    out = portable(gs.export_onnx(graph))
    onnx.checker.check_model(out)
    return out, changed


def pad_onnx_file(src: str | Path, dst: str | Path, multiple: int = 8) -> tuple[Path, list[str]]:
    """:func:`pad_inner_dimension` from file to file."""
    model, changed = pad_inner_dimension(onnx.shape_inference.infer_shapes(onnx.load(str(src))), multiple)
    onnx.save(model, str(dst))
    return Path(dst), changed


def weight_shapes(path_or_model) -> dict[str, tuple[int, ...]]:
    """Shapes of the graph's constant weights (initializers) by name."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


def fp16_padded_graphs(directory: str | Path, in_features: int, out_features: int) -> tuple[Path, Path]:
    """The FP16 linear graph (a ``Gemm``) that TensorRT builds, and its twin with K padded to a multiple of 8."""
    directory = Path(directory)
    src = linear_onnx(directory / f"linear_fp16_{in_features}.onnx", in_features, out_features, dtype=np.float16)
    dst, _ = pad_onnx_file(src, directory / f"linear_fp16_{in_features}_padded.onnx")
    return src, dst


# -- TensorRT ---------------------------------------------------------------------------------------

def tensorrt_padding_study(original: Path, padded_path: Path, *, batch: int, in_features: int) -> dict:
    """Build the original and the padded ONNX (FP16) with TensorRT; per engine: reformat layers from
    the inspector, output check against the original engine, and two timing passes each.

    Needs TensorRT and a GPU. Returns plain values for the notebook to print.
    """
    from .. import env
    from .. import trt as trt_tools

    env.require("tensorrt")
    x = random_tensor((batch, in_features), device="cuda", dtype=torch.float16, seed=7)
    result: dict[str, Any] = {"backend": f"TensorRT {trt_tools.version()}", "engines": {}}
    outputs, runs = {}, {}
    for name, path in (("original", original), ("padded", padded_path)):
        profile = trt_tools.batch_profile("input", (in_features,), 1, batch, batch)
        build = trt_tools.build_engine(path, trt_tools.BuildConfig(profiles=(profile,)))
        runner = trt_tools.EngineRunner(build.engine)
        try:
            outputs[name] = runner.run({"input": x})["output"].float().clone()
            info = trt_tools.inspect_engine(build.engine, runner.context(0))
            result["engines"][name] = {"build_s": build.build_seconds, "layers": info.count_by_type(),
                                       "reformat_layers": [layer.name for layer in info.reformat_layers()]}
            runs[name] = [bench.measure(lambda: runner.enqueue(0), name=f"TensorRT {name}", backend=result["backend"],
                                        batch_size=batch, device="cuda", stream=runner.stream(0),
                                        warmup_ms=50, measure_ms=150) for _ in range(2)]
        finally:
            runner.close()
    result["relative_error"] = checks.verify(outputs["padded"], outputs["original"],
                                             "the padded engine's output against the original's", precision="fp16",
                                             scope="op")
    result["comparison"] = bench.compare(runs["original"], runs["padded"])
    return result


# -- the claims -------------------------------------------------------------------------------------

@dataclass
class AlignmentResults:
    """What the lab measured, for :func:`claims`."""

    base: int                                   # M = N = base; K swept around it
    main: str                                   # the precision of the K and N sweeps
    rows: list[dict]                            # :func:`common.cases.result_rows` of the sweep
    onnx_results: Mapping[str, tuple[float, bool]]   # per graph kind: relative difference, bitwise equal
    onnx_equal: bool                            # every padded graph within the FP32 tolerance
    pad_comparison: bench.Comparison            # K padded (pad + GEMM) against K unpadded
    pad_share_pct: float                        # the activation's pad, as a share of the padded call
    fp8_error: str | None                       # what torch._scaled_mm said for a K not a multiple of 16
    conv_comparison: bench.Comparison           # C_in = 64 against C_in = 63
    attention_comparison: bench.Comparison      # the flattened 3-D bmm against the 4-D matmul
    trt_study: dict | None                      # :func:`tensorrt_padding_study`; None without TensorRT

    def ratio(self, precision: str, k: int, n: int | None = None) -> float:
        """Rate of the (k, n) product over the aligned (base, base) one, same precision."""
        by = {(r["precision"], r["k"], r["n"]): r for r in self.rows}
        return by[(precision, k, n or self.base)]["tflop_per_s"] / by[(precision, self.base, self.base)]["tflop_per_s"]


CLAIMS = {
    "odd_k": "FP16 K = 4095 reaches less than half the rate of K = 4096",
    "aligned_k": "FP16 K = 4104 (a multiple of 8) runs within 10% of K = 4096",
    "odd_n": "FP16 N = 4095 is also slow (< half of N = 4096)",
    "bf16": "BF16 K = 4095 reaches less than half the rate of K = 4096",
    "tf32": "TF32 K = 4092 (multiple of 4) runs within 10% of K = 4096",
    "pad_torch": "padding K 4095 -> 4096 in PyTorch, pad included, is significantly faster",
    "fp8": "FP8 (torch._scaled_mm) refuses K not a multiple of 16",
    "conv": "FP16 conv with C_in = 64 is significantly faster than C_in = 63 (channels_last)",
    "batched": "4-D matmul and the flattened 3-D bmm run at the same speed (within 5% or the noise)",
    "cpu": "on a CPU, K = 511 keeps at least 70% of K = 512's FP32 rate (alignment matters far less)",
    "onnx": "graphsurgeon padding (Pad + zero weight rows) leaves the outputs unchanged (ONNX Runtime)",
    "trt": "TensorRT builds the padded graph without reformat layers around the GEMM",
}


def claims(results: AlignmentResults, *, has_gpu: bool, has_fp8: bool,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """The lab's claims: misaligned K and N per precision, padding, FP8, convolution, batching, TensorRT."""
    r, lab_report = results, lab_report or report.LabReport("07_matmul_tensor_cores")
    base, main = r.base, r.main
    lab_report.check(CLAIMS["onnx"], max(e for e, _ in r.onnx_results.values()), r.onnx_equal, fmt="{:.1e}",
                     why="max relative difference, Gemm and MatMul graphs")
    if has_gpu:
        for key, precision, k, n, least, fmt in (
                ("odd_k", main, base - 1, base, None, "{:.2f}x of K=4096"),
                ("aligned_k", main, base + 8, base, 0.9, "{:.2f}x of K=4096"),
                ("odd_n", main, base, base - 1, None, "{:.2f}x of N=4096"),
                ("bf16", "bf16", base - 1, base, None, "{:.2f}x of K=4096"),
                ("tf32", "tf32", base - 4, base, 0.9, "{:.2f}x of K=4096")):
            ratio = r.ratio(precision, k, n)
            lab_report.check(CLAIMS[key], ratio, ratio < 0.5 if least is None else ratio >= least, fmt=fmt)
        pad = r.pad_comparison
        lab_report.check(CLAIMS["pad_torch"], pad.speedup, pad.significant and pad.speedup > 1, fmt="{:.2f}x",
                         why=f"pad is {r.pad_share_pct:.0f}% of the padded call; spread {pad.noise_pct:.1f}%")
        if has_fp8 and r.fp8_error is not None:
            refused = "16" in r.fp8_error
            lab_report.check(CLAIMS["fp8"], float(refused), refused, fmt="{:.0f}", why=r.fp8_error[:48])
        else:
            lab_report.not_applicable(CLAIMS["fp8"], "FP8 tensor cores need compute capability 8.9+")
        conv = r.conv_comparison
        lab_report.check(CLAIMS["conv"], conv.speedup, conv.significant and conv.speedup > 1, fmt="{:.2f}x",
                         why=f"spread {conv.noise_pct:.1f}%")
        lab_report.not_applicable(CLAIMS["cpu"], "measured on the CPU run of this lab")
    else:
        for key in ("odd_k", "aligned_k", "odd_n", "bf16", "tf32", "pad_torch", "fp8", "conv"):
            lab_report.not_applicable(CLAIMS[key], "tensor cores need an NVIDIA GPU; the CPU sweeps run in FP32 instead")
        ratio = r.ratio("fp32", base - 1)
        lab_report.check(CLAIMS["cpu"], ratio, ratio >= 0.7, fmt="{:.2f}x of K=512")
    attention = r.attention_comparison
    lab_report.check(CLAIMS["batched"], attention.speedup, abs(attention.difference_pct) <= max(5.0, attention.noise_pct),
                     fmt="{:.2f}x", why=f"spread {attention.noise_pct:.1f}%")
    if r.trt_study is not None:
        reformats = len(r.trt_study["engines"]["padded"]["reformat_layers"])
        lab_report.check(CLAIMS["trt"], reformats, reformats == 0, fmt="{:.0f} reformat layers",
                         why=f"original engine: {len(r.trt_study['engines']['original']['reformat_layers'])}")
    else:
        lab_report.not_applicable(CLAIMS["trt"], "needs TensorRT (not installed); padding measured in PyTorch")
    return lab_report
