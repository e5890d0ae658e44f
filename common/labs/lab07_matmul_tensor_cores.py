"""Lab 07 (MatMul and tensor-core alignment): shapes, precisions, padding (in PyTorch and in the ONNX graph).

Tensor cores read their operands in 16-byte
pieces, so a GEMM runs at full rate only when its inner dimensions are multiples of 16 bytes' worth of
elements: 4 in TF32/FP32, 8 in FP16/BF16, 16 in FP8/INT8. The timed cases, their check against an
FP32 reference before timing and the interleaved passes are :mod:`common.cases` (shared with labs
08-10, with the plain GEMM cases ``gemm_case``, ``fp8_case`` and ``int8_case``). This module adds the
lab's own cases — padding K in PyTorch, a convolution's channels, batched products, FP8's and INT8's
refusals (:func:`int8_cases`) — the rates on kernel time with their intervals (:func:`rate_ratio`),
the share of the measured matrix ceiling that never reads above 100 (:func:`pct_of_ceilings`), the
tile and wave quantization arithmetic of the residuals left after alignment (:func:`quantization`,
:func:`residual_rows`, from the kernels' names :func:`gemm_kernels`), pads a misaligned
``MatMul``/``Gemm`` in an ONNX graph with onnx-graphsurgeon, builds the graphs with TensorRT where it
is installed (:func:`tensorrt_padding_study`: inspector, per-layer profile, kernel time; their
trtexec commands print everywhere, :func:`trtexec_commands`), and holds the lab's claims (:func:`claims`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
import torch.nn.functional as F

from .. import bench, checks, report
from ..cases import TORCH_DTYPE, Case, checked, fp8_operands, int8_case, padded, random_tensor, tf32_mode
from ..onnx import portable

def fp8_misaligned_error(m: int, k: int, n: int, *, device: str) -> str:
    """What ``torch._scaled_mm`` says for a shape that is not a multiple of 16 (first line)."""
    a, b, one = fp8_operands(m, k, n, device=device)
    try:
        torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16)
    except RuntimeError as exc:
        return str(exc).strip().splitlines()[0]
    raise AssertionError(f"torch._scaled_mm accepted {m}x{k}x{n}: this PyTorch no longer requires multiples of 16")


def int8_cases(m: int, n: int, ks: Sequence[int], *, device: str) -> tuple[list[Case], dict[int, str]]:
    """The INT8 K sweep through ``torch._int_mm``: the cases it accepts (checked exact) and, by K, the
    first line of what it said for each K it refuses (as the FP8 path records its refusal)."""
    accepted, refused = [], {}
    for k in ks:
        try:
            accepted.append(int8_case(m, k, n, device=device))
        except RuntimeError as exc:
            refused[k] = str(exc).strip().splitlines()[0]
    return accepted, refused


# -- rates, ratios and ceilings ------------------------------------------------------------------------

def timed_on(runs: Sequence[bench.Measurement]) -> str:
    """"kernel" where every run carries CUPTI's kernel time (a GPU), else "event" (a CPU: the host's clock)."""
    return "kernel" if runs and all(m.kernel is not None for m in runs) else "event"


def rate_ratio(runs_a: Sequence[bench.Measurement], runs_b: Sequence[bench.Measurement], flops_a: int,
               flops_b: int) -> tuple[float, tuple[float, float], str]:
    """B's rate over A's, (flops_b / t_b) / (flops_a / t_a), on kernel time where measured, with the 95%
    interval over passes of :func:`common.bench.compare` scaled alike, and the time it was judged on."""
    on = timed_on([*runs_a, *runs_b])
    comparison = bench.compare(runs_a, runs_b, on=on)
    scale = flops_b / flops_a
    lo, hi = comparison.interval
    return comparison.speedup * scale, (lo * scale, hi * scale), on


def rows_ratio(runs: Mapping[str, list[bench.Measurement]], a: Mapping[str, Any],
               b: Mapping[str, Any]) -> tuple[float, tuple[float, float], str]:
    """:func:`rate_ratio` of two :func:`sweep_rows` rows (each an (m x k) @ (k x n) product, by its "case")."""
    return rate_ratio(runs[a["case"]], runs[b["case"]], 2 * a["m"] * a["k"] * a["n"], 2 * b["m"] * b["k"] * b["n"])


def sweep_rows(cases: Sequence[Case], runs: Mapping[str, list[bench.Measurement]], ceilings: Any = None) -> list[dict]:
    """:func:`common.cases.result_rows` with the kernel time, busy share and regime of each case, and its
    share of the measured matrix ceiling of its precision, which never reads above 100
    (:func:`pct_of_ceilings`)."""
    from ..cases import result_rows

    rows = result_rows(cases, runs)
    for row in rows:
        row.update(bench.kernel_fields(runs[row["case"]]))
    if ceilings is not None:
        pct_of_ceilings(rows, ceilings)
    return rows


def pct_of_ceilings(rows: list[dict], ceilings: Any) -> list[dict]:
    """Set each row's ``pct_of_ceiling`` (and ``note``): its TFLOP/s as a % of the measured ceiling of its
    precision (FP32 on a CPU), never above 100.

    Per precision the fastest row is offered to the ceiling first: up to
    :data:`common.ceilings.LIFT_LIMIT` above it, the ceiling was measured low this run (clocks, a shape
    the sweep did not have) and is raised to that figure (``ceilings.lifted`` records it, the notebook
    says so), so every row of the precision is read against the same raised ceiling; further above, the
    row says why and shows no %.
    """
    def key(row):
        return "fp32" if ceilings.device == "cpu" else row["precision"]

    for row in rows:
        row.setdefault("note", "")
    for precision in {key(r) for r in rows if key(r) in ceilings.matmul_tflops}:
        measured = [r for r in rows if key(r) == precision and r["tflop_per_s"] > 0]
        note = (f"above the measured {precision} ceiling by more than the noise: re-measure it "
                "(ceilings.get_ceilings(refresh=True))")
        for row, (pct, why) in zip(measured, ceilings.pcts_of([r["tflop_per_s"] for r in measured], precision, note)):
            row["pct_of_ceiling"] = pct
            if why:
                row["note"] = why
    return rows


# -- tile and wave quantization --------------------------------------------------------------------------

#: Tile sizes in the kernel names of cuBLAS/CUTLASS: "tilesize128x256x64" (sm90 kernels), or the CUTLASS
#: "_128x256_64x3_" form (M x N tile, K step x stages).
_TILE_PATTERNS = (re.compile(r"tilesize(\d+)x(\d+)x(\d+)"), re.compile(r"_(\d+)x(\d+)_(\d+)x\d+_"))


def tile_of(kernel_name: str) -> tuple[int, int, int] | None:
    """The (M, N, K) tile a GEMM kernel's name declares, or None where its name does not say."""
    for pattern in _TILE_PATTERNS:
        found = pattern.search(kernel_name)
        if found:
            return tuple(int(v) for v in found.groups())  # type: ignore[return-value]
    return None


def first_tile(kernel_names: Sequence[str]) -> tuple[str | None, tuple[int, int, int] | None]:
    """The first of `kernel_names` that declares a tile (:func:`tile_of`), with that tile; (None, None) if none does."""
    for name in kernel_names:
        tile = tile_of(name)
        if tile:
            return name, tile
    return None, None


def gemm_kernels(fn: Callable[[], Any]) -> list[str]:
    """The names of the GPU kernels one call of `fn` launches (CUPTI; `fn` runs once before)."""
    return [ev.name() for kind, ev in bench.device_records_of_call(fn) if kind == "kernel"]


def quantization(m: int, n: int, k: int, tile: tuple[int, int, int], sms: int) -> dict:
    """Tile and wave quantization of an (m x k) @ (k x n) product computed in `tile`s on `sms` SMs, one
    CTA per output tile and one CTA per SM at a time: the share of the work done on padding.

    - K: ceil(k / tile_k) steps of tile_k; the last one partly empty (``k_efficiency``);
    - M, N: ceil(m / tile_m) x ceil(n / tile_n) CTAs, edge tiles partly empty (``tile_efficiency``);
    - waves: CTAs / SMs rounded up; the last wave partly idle (``wave_efficiency``).
    ``predicted`` is their product: the rate a kernel that sustained its peak per step would reach.
    """
    tile_m, tile_n, tile_k = tile
    k_steps = math.ceil(k / tile_k)
    ctas = math.ceil(m / tile_m) * math.ceil(n / tile_n)
    waves = math.ceil(ctas / sms)
    k_eff = k / (k_steps * tile_k)
    tile_eff = (m * n) / (ctas * tile_m * tile_n)
    wave_eff = ctas / (waves * sms)
    return {"tile": "x".join(map(str, tile)), "k_steps": k_steps, "k_efficiency": k_eff, "ctas": ctas, "sms": sms,
            "waves": ctas / sms, "full_waves": waves, "tile_efficiency": tile_eff, "wave_efficiency": wave_eff,
            "predicted": k_eff * tile_eff * wave_eff}


def residual_rows(pairs: Sequence[tuple[str, str]], rows: Sequence[dict], runs: Mapping[str, list[bench.Measurement]],
                  kernels: Mapping[str, Sequence[str]], sms: int) -> list[dict]:
    """Each (aligned case, other case) pair of labels: the other's measured rate over the aligned one's
    (:func:`rate_ratio`), the GEMM kernel each ran and its tile (from `kernels`, names by label), and the
    ratio tile and wave quantization predict from those tiles (:func:`quantization`). Where the
    prediction matches the measurement, quantization explains the residual; where the kernels' tiles are
    the same and the measurement is lower, the rest is the kernel's own cost of the shape."""
    by = {row["case"]: row for row in rows}
    out = []
    for aligned, other in pairs:
        a, b = by[aligned], by[other]
        ratio, interval, on = rows_ratio(runs, a, b)
        row = {"case": other, "vs": aligned, "measured": ratio, "interval": interval, "on": on}
        found = {}
        for label, r in ((aligned, a), (other, b)):
            name, tile = first_tile(kernels.get(label, ()))
            found[label] = (name, quantization(r["m"], r["n"], r["k"], tile, sms)) if tile else (None, None)
        (kernel_a, q_a), (kernel_b, q_b) = found[aligned], found[other]
        row.update({f"aligned_{k}": v for k, v in (q_a or {}).items()})
        row.update(q_b or {})
        row.update(kernel=kernel_b, same_kernel=kernel_a == kernel_b,
                   predicted=q_b["predicted"] / q_a["predicted"] if q_a and q_b else float("nan"))
        out.append(row)
    return out


def fp8_probe_ks(base: int) -> tuple[int, ...]:
    """FP8 K values (multiples of 16) that tell apart two causes of an aligned K's residual: base - 16 and
    base - 32 end in a partial K step of a 128-deep tile, base - 128 does not; rows of base - 16 bytes
    start 16 bytes into a 32-byte memory sector on every other row, the other two are sector-aligned."""
    return (base - 16, base - 32, base - 128)


def row_pitch(k: int, element_bytes: int) -> dict:
    """A K-contiguous operand's row pitch in bytes, and where its rows start inside 32-byte sectors and
    128-byte lines (0: every row starts on a boundary)."""
    pitch = k * element_bytes
    sector, line = pitch % 32, pitch % 128
    step = math.gcd(pitch, 32)   # rows start at multiples of this inside a sector
    off = ("every other row starts 16 bytes into a 32-byte sector" if step == 16 else
           f"rows start at multiples of {step} bytes inside 32-byte sectors")
    text = f"rows of {pitch} bytes: " + (off if sector else "every row starts on a 32-byte sector"
                                          + ("" if line else " and a 128-byte line"))
    return {"pitch_bytes": pitch, "sector_offset": sector, "line_offset": line, "text": text}


def residual_reading(ratios: Mapping[int, tuple[float, tuple[float, float]]], tile_k: int, element_bytes: int,
                     near: float = 0.97) -> str:
    """Which cause the measured rate ratios (K -> (rate over the aligned base's, its 95% interval)) follow.

    A K is slow when its whole interval lies below `near`, as fast as the base when it lies at or above,
    unresolved when it straddles `near`.
    - rows' alignment: exactly the K whose rows are off 32-byte sectors are slow, the sector-aligned ones
      are not (a tile's load of a misaligned row touches one sector more);
    - the last K step: exactly the K that are not multiples of `tile_k` are slow, the multiples are not;
    otherwise the reading says what is unresolved, or that neither explains it.
    """
    if not ratios:
        return "no FP8 K probe ran"
    off_sector = {k for k in ratios if row_pitch(k, element_bytes)["sector_offset"]}
    partial = {k for k in ratios if k % tile_k}
    slow = {k for k, (_, (_, hi)) in ratios.items() if hi < near}
    fast = {k for k, (_, (lo, _)) in ratios.items() if lo >= near}
    listed = ", ".join(f"K = {k}: {r:.2f}x [{lo:.2f}x, {hi:.2f}x]" for k, (r, (lo, hi)) in
                       sorted(ratios.items(), reverse=True))
    if off_sector == partial:
        return (f"{listed}: these K end in a partial K step exactly where their rows start off a sector: the "
                f"two causes cannot be told apart here")
    if off_sector and slow == off_sector and fast == set(ratios) - off_sector:
        return (f"{listed}: only the K whose rows start off a 32-byte sector is slow ({sorted(off_sector)}; "
                f"{row_pitch(min(off_sector), element_bytes)['text']}, so a tile's load of each such row touches "
                f"one sector more); a partial last K step alone costs nothing measurable: the residual follows "
                f"the rows' alignment in memory, not tile quantization")
    if partial and slow == partial and fast == set(ratios) - partial:
        return (f"{listed}: every K that is not a multiple of the {tile_k}-deep K step is slow, the multiple is "
                f"not: the residual follows the partial last K step (more than its padding predicts)")
    unresolved = sorted(set(ratios) - slow - fast)
    if unresolved:
        return (f"{listed}: the interval of K = {unresolved} straddles {near:.2f}x, so the run-to-run noise "
                f"decides between the rows' alignment and the partial last K step: open question")
    return (f"{listed}: neither the rows' alignment nor the last K step alone explains the residual (slow: "
            f"{sorted(slow) or 'none'}): open question")


def fp8_probe(rows: Sequence[dict], runs: Mapping[str, list[bench.Measurement]], base: int,
              kernel_names: Sequence[str]) -> str:
    """:func:`residual_reading` of the FP8 probe Ks (:func:`fp8_probe_ks`) measured in the sweep, against
    FP8 K = `base`, with the K step of the tile the aligned product's kernel declares (128 if none)."""
    by = {(r["precision"], r["k"], r["n"]): r for r in rows}
    a = by[("fp8", base, base)]
    ratios = {}
    for k in fp8_probe_ks(base):
        b = by.get(("fp8", k, base))
        if b is not None:
            ratio, interval, _ = rows_ratio(runs, a, b)
            ratios[k] = (ratio, interval)
    _, tile = first_tile(kernel_names)
    return residual_reading(ratios, tile[2] if tile else 128, element_bytes=1)


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

def batched_matmul_onnx(path: str | Path, b: int, h: int, s: int, d: int, *, flatten: bool) -> Path:
    """An FP16 graph q (B, H, S, D) @ kt (B, H, D, S): one 4-D ``MatMul``, or (``flatten``) the same product
    with both operands reshaped to (B*H, ...) first and the result reshaped back, as PyTorch's
    flattened bmm computes it."""
    q = gs.Variable("q", dtype=np.float16, shape=(b, h, s, d))
    kt = gs.Variable("kt", dtype=np.float16, shape=(b, h, d, s))
    y = gs.Variable("scores", dtype=np.float16, shape=(b, h, s, s))
    if flatten:
        q3, k3, y3 = (gs.Variable(name, dtype=np.float16) for name in ("q3", "kt3", "scores3"))
        nodes = [gs.Node("Reshape", "q_flat", inputs=[q, gs.Constant("q_shape", np.array([b * h, s, d], np.int64))], outputs=[q3]),
                 gs.Node("Reshape", "kt_flat", inputs=[kt, gs.Constant("kt_shape", np.array([b * h, d, s], np.int64))], outputs=[k3]),
                 gs.Node("MatMul", "bmm", inputs=[q3, k3], outputs=[y3]),
                 gs.Node("Reshape", "unflat", inputs=[y3, gs.Constant("y_shape", np.array([b, h, s, s], np.int64))], outputs=[y])]
    else:
        nodes = [gs.Node("MatMul", "matmul_4d", inputs=[q, kt], outputs=[y])]
    model = portable(gs.export_onnx(gs.Graph(nodes=nodes, inputs=[q, kt], outputs=[y], opset=17)))
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


#: What trtexec adds to show what the study reads: the engine's layers and the per-layer profile.
TRTEXEC_EXTRA = ("--dumpLayerInfo", "--dumpProfile")


def padding_build_config(in_features: int, batch: int):
    """The BuildConfig of the linear graphs' engines: one profile, batch 1 to `batch`."""
    from .. import trt as trt_tools

    return trt_tools.BuildConfig(profiles=(trt_tools.batch_profile("input", (in_features,), 1, batch, batch),))


def trtexec_commands(linear_paths: Sequence[Path], batched_paths: Sequence[Path], *, batch: int,
                     in_features: int) -> list[str]:
    """The trtexec command of every engine :func:`tensorrt_padding_study` builds (file names only);
    printed also where TensorRT is missing."""
    from .. import trt as trt_tools

    config = padding_build_config(in_features, batch)
    linear = [trt_tools.trtexec_command(Path(p).name, config, shapes={"input": (batch, in_features)}, extra=TRTEXEC_EXTRA)
              for p in linear_paths]
    return linear + [trt_tools.trtexec_command(Path(p).name, trt_tools.BuildConfig(), extra=TRTEXEC_EXTRA)
                     for p in batched_paths]


def _engine_facts(build, runner) -> dict:
    from .. import trt as trt_tools
    from ..trt.profile import profile_layers, share_pct

    info = trt_tools.inspect_engine(build.engine, runner.context(0))
    times = profile_layers(runner)
    reformats = [layer.name for layer in info.reformat_layers()]
    return {"build_s": build.build_seconds, "layers": info.count_by_type(), "layer_count": len(info.layers),
            "reformat_layers": reformats, "reformat_share_pct": share_pct(times, reformats),
            "profiled_ms": times.median_run_ms(), "slowest_layers": [(r["layer"], round(r["share_pct"], 1))
                                                                     for r in times.table(top=3)]}


def tensorrt_padding_study(original: Path, padded_path: Path, batched: Mapping[str, Path], *, batch: int,
                           in_features: int, batched_shape: Mapping[str, int], passes: int = bench.PASSES) -> dict:
    """Build the original and the padded linear ONNX (FP16), and the 4-D and flattened batched MatMul
    graphs, with TensorRT. Per engine: its layers and reformat layers (inspector), the per-layer
    profile (total, slowest layers, the reformat layers' share), and interleaved passes of event and
    kernel time; the padded engine's output is checked against the original's, the flattened one's
    against the 4-D one's. Needs TensorRT and a GPU; returns plain values for the notebook to print."""
    from .. import env
    from .. import trt as trt_tools

    env.require("tensorrt")
    b, h, s, d = (batched_shape[key] for key in ("B", "H", "S", "D"))
    feeds = {"original": {"input": random_tensor((batch, in_features), device="cuda", dtype=torch.float16, seed=7)}}
    feeds["padded"] = feeds["original"]
    feeds["4-D MatMul"] = {"q": random_tensor((b, h, s, d), device="cuda", dtype=torch.float16, seed=8),
                           "kt": random_tensor((b, h, d, s), device="cuda", dtype=torch.float16, seed=9)}
    feeds["flattened MatMul"] = feeds["4-D MatMul"]
    paths = {"original": original, "padded": padded_path, **batched}
    result: dict[str, Any] = {"backend": f"TensorRT {trt_tools.version()}", "engines": {}}
    outputs, runners = {}, {}
    try:
        for name, path in paths.items():
            config = padding_build_config(in_features, batch) if name in ("original", "padded") else trt_tools.BuildConfig()
            build = trt_tools.build_engine(path, config)
            runners[name] = trt_tools.EngineRunner(build.engine)
            outputs[name] = next(iter(runners[name].run(feeds[name]).values())).float().clone()
            result["engines"][name] = _engine_facts(build, runners[name])
        runs = bench.measure_interleaved(
            {name: {"fn": runner.enqueue, "name": f"TensorRT {name}", "stream": runner.stream(0)}
             for name, runner in runners.items()},
            passes=passes, device="cuda", backend=result["backend"], warmup_ms=20, measure_ms=60)
    finally:
        for runner in runners.values():
            runner.close()
    for name, ms in runs.items():
        result["engines"][name].update(latency_ms=bench.median_latency_ms(ms), **bench.kernel_fields(ms))
    result["relative_error"] = checks.verify(outputs["padded"], outputs["original"],
                                             "the padded engine's output against the original's", precision="fp16",
                                             scope="op")
    result["batched_error"] = checks.verify(outputs["flattened MatMul"], outputs["4-D MatMul"],
                                            "the flattened MatMul's output against the 4-D one's", precision="fp16",
                                            scope="op")
    result["comparison"] = bench.compare(runs["original"], runs["padded"], on="kernel")
    result["batched_comparison"] = bench.compare(runs["4-D MatMul"], runs["flattened MatMul"], on="kernel")
    return result


# -- the claims -------------------------------------------------------------------------------------

@dataclass
class AlignmentResults:
    """What the lab measured, for :func:`claims`."""

    base: int                                   # M = N = base; K swept around it
    main: str                                   # the precision of the K and N sweeps
    rows: list[dict]                            # :func:`sweep_rows` of the sweep
    runs: Mapping[str, list[bench.Measurement]]  # the sweep's measurements, by case label
    onnx_results: Mapping[str, tuple[float, bool]]   # per graph kind: relative difference, bitwise equal
    onnx_equal: bool                            # every padded graph within the FP32 tolerance
    pad_comparison: bench.Comparison            # K padded (pad + GEMM) against K unpadded
    pad_share_pct: float                        # the activation's pad, as a share of the padded call
    fp8_error: str | None                       # what torch._scaled_mm said for a K not a multiple of 16
    int8_refused: Mapping[int, str]             # what torch._int_mm said, by K it refused
    conv_comparison: bench.Comparison           # C_in = 64 against C_in = 63
    attention_comparison: bench.Comparison      # the flattened 3-D bmm against the 4-D matmul
    trt_study: dict | None                      # :func:`tensorrt_padding_study`; None without TensorRT

    def ratio(self, precision: str, k: int, n: int | None = None) -> tuple[float, tuple[float, float], str]:
        """Rate of the (k, n) product over the aligned (base, base) one, same precision, with its
        interval and the time it was judged on (:func:`rate_ratio`)."""
        by = {(r["precision"], r["k"], r["n"]): r for r in self.rows}
        a, b = by[(precision, self.base, self.base)], by[(precision, k, n or self.base)]
        return rows_ratio(self.runs, a, b)


CLAIMS = {
    "odd_k": "FP16 K = 4095 reaches less than half the rate of K = 4096",
    "aligned_k": "FP16 K = 4104 (a multiple of 8) runs within 10% of K = 4096",
    "odd_n": "FP16 N = 4095 is also slow (< half of N = 4096)",
    "bf16": "BF16 K = 4095 reaches less than half the rate of K = 4096",
    "tf32": "TF32 K = 4092 (multiple of 4) runs within 10% of K = 4096",
    "int8": "INT8 (torch._int_mm) refuses K not a multiple of 8, and K = 4088 (8, not 16) keeps 80% of K = 4096",
    "pad_torch": "padding K 4095 -> 4096 in PyTorch, pad included, is faster (kernel time)",
    "fp8": "FP8 (torch._scaled_mm) refuses K not a multiple of 16",
    "conv": "FP16 conv with C_in = 64 is faster than C_in = 63 (channels_last, kernel time)",
    "batched": "PyTorch: the flattened 3-D bmm is no more than 5% faster than the 4-D matmul (the same kernels)",
    "cpu": "on a CPU, K = 511 keeps at least 70% of K = 512's FP32 rate (alignment matters far less)",
    "onnx": "graphsurgeon padding (Pad + zero weight rows) leaves the outputs unchanged (ONNX Runtime)",
    "trt": "TensorRT builds the padded graph without reformat layers around the GEMM",
    "trt_gain": "TensorRT: padding K in the graph gains under 25% (kernel time): the engine pads or reformats "
                "misaligned K itself",
    "trt_batched": "TensorRT runs the 4-D MatMul in no more layers than its flattened twin (batch dimensions "
                   "are the MatrixMultiply layer's own)",
}


def _labels(base: int) -> dict[str, str]:
    return {key: CLAIMS[key].replace("4095", str(base - 1)).replace("4096", str(base)).replace("4104", str(base + 8))
            .replace("4092", str(base - 4)).replace("4088", str(base - 8)) for key in CLAIMS}


def _gpu_claims(r: AlignmentResults, claims_text: dict[str, str], has_fp8: bool, lab_report: report.LabReport) -> None:
    base, main = r.base, r.main
    for key, precision, k, n, threshold, above in (
            ("odd_k", main, base - 1, base, 0.5, False), ("aligned_k", main, base + 8, base, 0.9, True),
            ("odd_n", main, base, base - 1, 0.5, False), ("bf16", "bf16", base - 1, base, 0.5, False),
            ("tf32", "tf32", base - 4, base, 0.9, True)):
        ratio, interval, on = r.ratio(precision, k, n)
        lab_report.check_ratio(claims_text[key], ratio, interval, threshold=threshold, above=above,
                               fmt="{:.2f}x", why=f"rate over the aligned shape's, {on} time")
    int8_ks = {row["k"] for row in r.rows if row["precision"] == "int8"}
    if base in int8_ks and base - 8 in int8_ks:
        ratio, interval, on = r.ratio("int8", base - 8)
        refused = sorted(r.int8_refused)
        why = f"refused K: {refused or 'none'}; K = {base - 8} over K = {base}, {on} time"
        if (base - 8) % 16 and ratio < 0.8:   # accepted, but not at INT8's own alignment
            why += (f"; K = {base - 8} is a multiple of 8 but not of 16, INT8's tensor-core alignment: accepted, it "
                    "runs through a slower kernel")
        if refused and all(k % 8 for k in refused):
            lab_report.check_ratio(claims_text["int8"], ratio, interval, threshold=0.8, fmt="{:.2f}x", why=why)
        else:
            lab_report.check(claims_text["int8"], ratio, False, fmt="{:.2f}x",
                             why=why + ("; no K was refused" if not refused else "; a multiple of 8 was refused"))
    else:
        lab_report.not_applicable(claims_text["int8"], "torch._int_mm did not run here: "
                                  + ("; ".join(r.int8_refused.values()) or "no INT8 cases"))
    lab_report.check_comparison(claims_text["pad_torch"], r.pad_comparison, threshold=1.0,
                                why=f"pad is {r.pad_share_pct:.0f}% of the padded call")
    if has_fp8 and r.fp8_error is not None:
        refused = "16" in r.fp8_error
        lab_report.check(claims_text["fp8"], float(refused), refused, fmt="{:.0f}", why=r.fp8_error)
    else:
        lab_report.not_applicable(claims_text["fp8"], "FP8 tensor cores need compute capability 8.9+")
    lab_report.check_comparison(claims_text["conv"], r.conv_comparison, threshold=1.0)
    lab_report.not_applicable(claims_text["cpu"], "measured on the CPU run of this lab")


def _tensorrt_claims(r: AlignmentResults, lab_report: report.LabReport) -> None:
    if r.trt_study is None:
        for key in ("trt", "trt_gain", "trt_batched"):
            lab_report.not_applicable(CLAIMS[key], "needs TensorRT (not installed); padding and the 4-D MatMul "
                                                   "measured in PyTorch instead")
        return
    engines = r.trt_study["engines"]
    reformats = len(engines["padded"]["reformat_layers"])
    lab_report.check(CLAIMS["trt"], reformats, reformats == 0, fmt="{:.0f} reformat layers",
                     why=f"original engine: {len(engines['original']['reformat_layers'])}, "
                         f"{engines['original']['reformat_share_pct']:.0f}% of its profiled time")
    lab_report.check_comparison(CLAIMS["trt_gain"], r.trt_study["comparison"], threshold=1.25, above=False,
                                why=f"per-layer profile {engines['original']['profiled_ms']:.3f} vs "
                                    f"{engines['padded']['profiled_ms']:.3f} ms")
    four, flat = engines["4-D MatMul"]["layer_count"], engines["flattened MatMul"]["layer_count"]
    lab_report.check(CLAIMS["trt_batched"], four, four <= flat, fmt="{:.0f} layers",
                     why=f"flattened: {flat} layers; {r.trt_study['batched_comparison'].verdict()}")


def claims(results: AlignmentResults, *, has_gpu: bool, has_fp8: bool,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """The lab's claims: misaligned K and N per precision, INT8, padding, FP8, convolution, batching,
    TensorRT. Alignment is a device effect: judged on kernel time on a GPU (the host's clock on a CPU),
    each ratio with its 95% interval over passes."""
    r, lab_report = results, lab_report or report.LabReport("07_matmul_tensor_cores")
    claims_text = _labels(r.base) if r.base != 4096 else dict(CLAIMS)
    lab_report.check(CLAIMS["onnx"], max(e for e, _ in r.onnx_results.values()), r.onnx_equal, fmt="{:.1e}",
                     why="max relative difference, Gemm and MatMul graphs")
    if has_gpu:
        _gpu_claims(r, claims_text, has_fp8, lab_report)
    else:
        for key in ("odd_k", "aligned_k", "odd_n", "bf16", "tf32", "int8", "pad_torch", "fp8", "conv"):
            lab_report.not_applicable(claims_text[key], "tensor cores need an NVIDIA GPU; the CPU sweeps run in FP32 instead")
        ratio, interval, on = r.ratio("fp32", r.base - 1)
        lab_report.check_ratio(claims_text["cpu"], ratio, interval, threshold=0.7, fmt="{:.2f}x",
                               why=f"rate over K = {r.base}'s, {on} time (a CPU has no kernel time)")
    lab_report.check_comparison(CLAIMS["batched"], r.attention_comparison, threshold=1.05, above=False)
    _tensorrt_claims(r, lab_report)
    return lab_report
