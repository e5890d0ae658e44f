"""Matrix products and tensor-core alignment: shapes, precisions, padding (in PyTorch and in the ONNX graph).

Introduced in lab 07 (MatMul and tensor-core alignment). Tensor cores read their operands in 16-byte
pieces, so a GEMM runs at full rate only when its inner dimensions are multiples of 16 bytes' worth of
elements: 4 in TF32/FP32, 8 in FP16/BF16, 16 in FP8/INT8. This module builds the cases (random data,
checked against an FP32 reference before timing), times them in interleaved passes, expresses rates as
a share of the machine's measured matrix ceiling, and pads a misaligned ``MatMul``/``Gemm`` in an ONNX
graph with onnx-graphsurgeon so that TensorRT sees aligned shapes.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import bench
from .onnx import max_relative_error, portable

if TYPE_CHECKING:
    from .ceilings import Ceilings

#: Elements per 16 bytes: the multiple each precision's inner dimensions need on tensor cores.
ALIGNMENT = {"fp32": 4, "tf32": 4, "fp16": 8, "bf16": 8, "fp8": 16, "int8": 16}

#: Largest relative error (‖out − ref‖/‖ref‖) accepted against the FP32 product of the same
#: (already rounded) inputs: what remains is the accumulation and the output's rounding.
TOLERANCE = {"fp32": 1e-5, "tf32": 5e-3, "fp16": 5e-3, "bf16": 2e-2, "fp8": 2e-2}

_TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """FP32 matrix products and convolutions in TF32 (`enabled`) or in full FP32, restored on exit."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def alignment_of(k: int) -> int:
    """The largest of 1, 2, 4, 8, 16 that divides `k` (what a K of this size is aligned to)."""
    return max(m for m in (1, 2, 4, 8, 16) if k % m == 0)


def padded(k: int, multiple: int) -> int:
    """`k` rounded up to a multiple of `multiple`."""
    return -(-k // multiple) * multiple


def random_tensor(shape: Sequence[int], *, device: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Seeded normal data: zeros would let a kernel skip work and prove nothing about correctness."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(tuple(shape), device=device, generator=gen).to(dtype)


# -- cases: one timed operation with its reference check -----------------------------------------

@dataclass
class Case:
    """One operation to time: `fn` enqueues it, `flops` counts it, `error` is its checked accuracy."""

    label: str
    precision: str
    fn: Callable[[], Any]
    flops: int
    error: float = float("nan")
    params: dict = field(default_factory=dict)


def checked(case: Case, out: torch.Tensor, reference: torch.Tensor, tolerance: float | None = None,
            error: Callable[[torch.Tensor, torch.Tensor], float] | None = None) -> Case:
    """Record `case`'s relative error against the FP32 `reference` and refuse to time a wrong case.

    `tolerance` defaults to the case's precision's; `error` to ‖out − ref‖/‖ref‖ on the CPU in float64
    (labs 08 and 09 pass their own for model outputs and for large GEMMs kept on the GPU).
    """
    tolerance = TOLERANCE[case.precision] if tolerance is None else tolerance
    case.error = (error or max_relative_error)(out.float(), reference.float())
    if not case.error <= tolerance:
        raise AssertionError(f"{case.label}: relative error {case.error:.3g} against the FP32 reference exceeds "
                             f"{tolerance:g} for {case.precision}: do not time it")
    return case


def gemm_case(m: int, k: int, n: int, precision: str, *, device: str, seed: int = 0) -> Case:
    """(m, k) @ (k, n) in `precision` ("fp32", "tf32", "fp16", "bf16") on random data, checked first."""
    a = random_tensor((m, k), device=device, dtype=_TORCH_DTYPE[precision], seed=seed)
    b = random_tensor((k, n), device=device, dtype=_TORCH_DTYPE[precision], seed=seed + 1)
    tf32 = precision == "tf32"

    def run() -> torch.Tensor:
        torch.backends.cuda.matmul.allow_tf32 = tf32   # per call: cases of both kinds interleave
        return a @ b

    with tf32_mode(False):
        reference = a.float() @ b.float()
        out = run()
    case = Case(f"{precision} {m}x{k}x{n}", precision, run, 2 * m * k * n, params={"m": m, "k": k, "n": n})
    return checked(case, out, reference)


def fp8_operands(m: int, k: int, n: int, *, device: str, seed: int = 0):
    """FP8 (e4m3) operands for ``torch._scaled_mm``: A row-major (m, k), B column-major (k, n), unit scales."""
    a = random_tensor((m, k), device=device, dtype=torch.float32, seed=seed).to(torch.float8_e4m3fn)
    b = random_tensor((n, k), device=device, dtype=torch.float32, seed=seed + 1).to(torch.float8_e4m3fn).t()
    one = torch.ones((), device=device)
    return a, b, one


def fp8_case(m: int, k: int, n: int, *, device: str, seed: int = 0) -> Case:
    """An FP8 GEMM through ``torch._scaled_mm`` (FP16 output), checked against FP32 on the same FP8 values."""
    a, b, one = fp8_operands(m, k, n, device=device, seed=seed)
    run = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16)  # noqa: E731
    with tf32_mode(False):
        reference = a.float() @ b.float()
    case = Case(f"fp8 {m}x{k}x{n}", "fp8", run, 2 * m * k * n, params={"m": m, "k": k, "n": n})
    return checked(case, run(), reference)


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
    dtype = _TORCH_DTYPE[precision]
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
    dtype = _TORCH_DTYPE[precision]
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
    dtype = _TORCH_DTYPE[precision]
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


# -- timing -----------------------------------------------------------------------------------------

def measure_cases(cases: Sequence[Case], *, device: str, passes: int = 2, warmup_ms: float = 40.0,
                  measure_ms: float = 60.0, progress: bool = True, desc: str = "cases") -> dict[str, list[bench.Measurement]]:
    """Time every case in `passes` interleaved passes (so that drift hits all cases alike)."""
    stream = torch.cuda.Stream() if device == "cuda" else None
    runs: dict[str, list[bench.Measurement]] = {c.label: [] for c in cases}
    steps = [c for _ in range(passes) for c in cases]
    try:
        for case in tqdm(steps, desc=desc, disable=not progress, mininterval=2.0):
            runs[case.label].append(bench.measure(case.fn, name=case.label, backend=f"PyTorch {case.precision}",
                                                  device=device, stream=stream, warmup_ms=warmup_ms,
                                                  measure_ms=measure_ms))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False   # PyTorch's default, whatever the last case set
    return runs


def result_rows(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]],
                ceilings: "Ceilings | None" = None) -> list[dict]:
    """Per case: median latency over passes, TFLOP/s = flops / latency, % of the measured ceiling."""
    rows = []
    for case in cases:
        medians = [m.latency_ms.median for m in runs[case.label]]
        latency_ms = statistics.median(medians)
        tflops = case.flops / (latency_ms / 1e3) / 1e12
        row = {"case": case.label, "precision": case.precision, **case.params, "latency_ms": latency_ms,
               "tflop_per_s": tflops, "spread_pct": bench.spread_pct(medians) if len(medians) > 1 else float("nan"),
               "rel_error": case.error}
        if "k" in case.params:
            row["k_aligned_to"] = alignment_of(case.params["k"])
        ceiling_key = "fp32" if ceilings is not None and ceilings.device == "cpu" else case.precision
        if ceilings is not None and case.flops and ceiling_key in ceilings.matmul_tflops:
            row["pct_of_ceiling"] = ceilings.pct_of_matmul(tflops, ceiling_key)
        rows.append(row)
    return rows


def versus(runs: dict[str, list[bench.Measurement]], baseline: str, other: str) -> bench.Comparison:
    """`other` against `baseline` (speedup = baseline / other), judged against the run-to-run spread."""
    return bench.compare(runs[baseline], runs[other])


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


# -- TensorRT ---------------------------------------------------------------------------------------

def tensorrt_padding_study(original: Path, padded_path: Path, *, batch: int, in_features: int) -> dict:
    """Build the original and the padded ONNX (FP16) with TensorRT; per engine: reformat layers from
    the inspector, output check against the original engine, and two timing passes each.

    Needs TensorRT and a GPU. Returns plain values for the notebook to print.
    """
    from . import env
    from . import trt as trt_tools

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
    result["relative_error"] = max_relative_error(outputs["padded"], outputs["original"])
    if not result["relative_error"] <= TOLERANCE["fp16"]:
        raise AssertionError(f"the padded engine's output differs from the original's: {result['relative_error']:.3g}")
    result["comparison"] = bench.compare(runs["original"], runs["padded"])
    return result
