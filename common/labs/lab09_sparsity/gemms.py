"""Lab 09 (2:4 structured sparsity): a convolution as the GEMM a sparse kernel computes, and dense
against 2:4 sparse FP16 products on a GPU.

A convolution is written as its implicit GEMM (K = kh * kw * C_in with the channels innermost, so
ModelOpt's groups along C_in stay groups of 4 consecutive weights). The products are checked dense
and sparse (``torch.sparse.to_sparse_semi_structured``, cuSPARSELt or CUTLASS backend, ``W @ X`` or
``F.linear(x, W)`` orientation) FP16 cases, timed with :func:`common.cases.measure_cases`
(interleaved passes of :mod:`common.bench`); the CPU counterpart is a dense product with and without
50% zeros.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common import bench, plots
from common.cases import Case, checked, measure_cases, random_tensor, tf32_mode
from common.models import forward_with_hooks

from .pattern import is_2_4, prune_2_4

BACKENDS = ("cuSPARSELt", "CUTLASS")
FORMS = ("W @ X", "F.linear(x, W)")


# -- a convolution as the GEMM a (sparse) kernel computes ------------------------------------------

def conv_weight_as_gemm(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, kh, kw) -> (C_out, kh * kw * C_in), input channels innermost.

    With that order, 4 consecutive entries of a row are 4 consecutive input channels at one kernel
    position, so a weight that is 2:4 along C_in (ModelOpt, TensorRT) is 2:4 along the GEMM's K.
    """
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1).contiguous()


def im2col_channels_innermost(x: torch.Tensor, kernel_size: tuple[int, int],
                              padding: int | tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B * H_out * W_out, kh * kw * C): each output pixel's receptive field, in the
    order of :func:`conv_weight_as_gemm` (stride 1)."""
    b, c = x.shape[:2]
    kh, kw = kernel_size
    cols = F.unfold(x, kernel_size, padding=padding)              # (B, C * kh * kw, L), C outermost
    return cols.reshape(b, c, kh * kw, -1).permute(0, 3, 2, 1).reshape(-1, kh * kw * c).contiguous()


def conv_as_gemm(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`conv(x)` computed as im2col @ W^T (what an implicit-GEMM kernel does), NCHW output."""
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or isinstance(conv.padding, str):
        raise NotImplementedError("conv_as_gemm covers stride 1, dilation 1, one group, numeric padding")
    kh, kw = conv.kernel_size
    cols = im2col_channels_innermost(x, (kh, kw), (conv.padding[0], conv.padding[1]))
    out = cols @ conv_weight_as_gemm(conv.weight.detach()).t()
    if conv.bias is not None:
        out = out + conv.bias.detach()
    b, _, h, w = x.shape
    h_out, w_out = h + 2 * conv.padding[0] - kh + 1, w + 2 * conv.padding[1] - kw + 1
    return out.reshape(b, h_out, w_out, -1).permute(0, 3, 1, 2)


def layer_inputs(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each named layer receives when `model` runs on `x` (forward hooks, no grad)."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    forward_with_hooks(model, x, [(modules[n], lambda m, args, out, n=n: seen.__setitem__(n, args[0].detach()))
                                  for n in names])
    return seen


# -- dense and sparse products on a GPU ------------------------------------------------------------

@dataclass(frozen=True)
class GemmShape:
    """out = W (n x k) @ X (k x m): a layer with k inputs and n outputs applied to m tokens or pixels."""

    n: int
    k: int
    m: int

    @property
    def flops(self) -> int:
        return 2 * self.n * self.k * self.m

    @property
    def label(self) -> str:
        return f"{self.n}x{self.k}x{self.m}"


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖, computed on the tensors' device in FP32 (large GEMM outputs stay on the GPU)."""
    if out.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(out.shape)} vs reference {tuple(ref.shape)}")
    ref32 = ref.detach().float()
    return float(torch.linalg.vector_norm(out.detach().float() - ref32) / torch.linalg.vector_norm(ref32).clamp_min(1e-30))


@contextlib.contextmanager
def force_cutlass(enabled: bool) -> Iterator[None]:
    """``to_sparse_semi_structured`` on the CUTLASS backend (`enabled`) or on cuSPARSELt, restored on exit."""
    cls = torch.sparse.SparseSemiStructuredTensor
    saved = cls._FORCE_CUTLASS
    cls._FORCE_CUTLASS = enabled
    try:
        yield
    finally:
        cls._FORCE_CUTLASS = saved


def to_semi_structured(weight: torch.Tensor, backend: str) -> torch.Tensor:
    """The 2:4 weight compressed for `backend` ("cuSPARSELt" or "CUTLASS"): half the values plus index metadata."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    with force_cutlass(backend == "CUTLASS"):
        return torch.sparse.to_sparse_semi_structured(weight)


def _products(weight: torch.Tensor, x: torch.Tensor, xt: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The two orientations of one layer: W (n,k) @ X (k,m) -> (n,m), and F.linear(x (m,k), W) -> (m,n)."""
    return {"W @ X": lambda: torch.mm(weight, xt), "F.linear(x, W)": lambda: F.linear(x, weight)}


def _as_tokens_by_outputs(form: str, out: torch.Tensor) -> torch.Tensor:
    """Either orientation's output as (m, n), to compare with one reference."""
    return out.t() if form == "W @ X" else out


def case_label(gemm: str, backend: str, form: str) -> str:
    """The label :func:`gemm_cases` gives the product of GEMM `gemm` on `backend` ("dense" too) in `form`."""
    return f"{gemm} {backend}, {form}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:160]


def backend_status(device: str) -> dict[str, str | None]:
    """Per backend: None where a tiny 2:4 product runs on this GPU, else the error it raises.

    The CUTLASS kernels PyTorch ships are built for compute capability 8.x; on other GPUs they refuse.
    """
    weight = prune_2_4(random_tensor((64, 128), device=device, dtype=torch.float16, seed=0))
    x = random_tensor((64, 128), device=device, dtype=torch.float16, seed=1)
    status: dict[str, str | None] = {}
    for backend in BACKENDS:
        try:
            F.linear(x, to_semi_structured(weight, backend))
            torch.cuda.synchronize()
            status[backend] = None
        except (RuntimeError, NotImplementedError) as exc:
            status[backend] = _first_line(exc)
    return status


def gemm_cases(shape: GemmShape, *, device: str, backends: Sequence[str], forms: Sequence[str] = FORMS,
               seed: int = 0, weight: torch.Tensor | None = None, x: torch.Tensor | None = None,
               name: str | None = None) -> tuple[list[Case], dict[str, str]]:
    """Dense FP16 products of a 2:4-pruned weight and, per backend, the same products with the weight
    compressed by ``to_sparse_semi_structured``; every product checked against FP32 before timing.

    Random seeded data unless `weight` (n, k) and activations `x` (m, k) are given (a real layer).
    Every case carries ``params`` = {gemm, n, k, m, form, backend} for :func:`speedup_rows`. Returns
    the cases and, per backend that refused this shape, its error (e.g. a K the backend cannot tile).
    """
    name = name or shape.label
    if weight is None:
        weight = prune_2_4(random_tensor((shape.n, shape.k), device=device, dtype=torch.float32, seed=seed)) \
            * shape.k ** -0.5
    if x is None:
        x = random_tensor((shape.m, shape.k), device=device, dtype=torch.float32, seed=seed + 1)
    weight = weight.to(device=device, dtype=torch.float16).contiguous()
    x = x.to(device=device, dtype=torch.float16).contiguous()
    if not is_2_4(weight):
        raise ValueError(f"{name}: the weight is not 2:4 sparse along its input dimension; prune it first")
    xt = x.t().contiguous()
    with tf32_mode(False):
        reference = F.linear(x.float(), weight.float())           # (m, n), from the same FP16 values
    params = {"gemm": name, "n": shape.n, "k": shape.k, "m": shape.m}
    variants: list[tuple[str, dict[str, Callable[[], torch.Tensor]]]] = [("dense", _products(weight, x, xt))]
    refused: dict[str, str] = {}
    for backend in backends:
        try:
            variants.append((backend, _products(to_semi_structured(weight, backend), x, xt)))
        except (RuntimeError, NotImplementedError) as exc:
            refused[backend] = _first_line(exc)
    cases = []
    for backend, products in variants:
        for form in forms:
            case = Case(case_label(name, backend, form), "fp16", products[form], shape.flops,
                        params={**params, "form": form, "backend": backend})
            try:
                out = products[form]()
            except (RuntimeError, NotImplementedError) as exc:
                refused[f"{backend}, {form}"] = _first_line(exc)
                continue
            cases.append(checked(case, _as_tokens_by_outputs(form, out), reference, error=relative_error))
    return cases, refused


def sweep_cases(shapes: Sequence[GemmShape], *, device: str, backends: Sequence[str]
                ) -> tuple[list[Case], dict[str, str]]:
    """:func:`gemm_cases` for every shape (random data), refusals keyed by "shape backend"."""
    cases: list[Case] = []
    refused: dict[str, str] = {}
    for shape in shapes:
        found, problems = gemm_cases(shape, device=device, backends=backends)
        cases += found
        refused.update({f"{shape.label} {what}": why for what, why in problems.items()})
    return cases, refused


def zeros_cases(shape: GemmShape, *, device: str, dtype: torch.dtype, seed: int = 0) -> list[Case]:
    """A dense product with a random weight and with the same weight 2:4-pruned (50% zeros), both dense
    kernels, both checked against FP32: what zeros alone buy a kernel that does not know about them."""
    precision = {torch.float16: "fp16", torch.float32: "fp32"}[dtype]
    weight = random_tensor((shape.n, shape.k), device=device, dtype=torch.float32, seed=seed) * shape.k ** -0.5
    x = random_tensor((shape.m, shape.k), device=device, dtype=torch.float32, seed=seed + 1)
    cases = []
    for label, w in (("random weight", weight), ("2:4-pruned weight (50% zeros)", prune_2_4(weight))):
        w_run, x_run = w.to(dtype), x.to(dtype)
        with tf32_mode(False):
            reference = F.linear(x_run.float(), w_run.float())
        case = Case(f"{shape.label} dense, {label}", precision, functools.partial(F.linear, x_run, w_run),
                    shape.flops, params={"gemm": shape.label, "n": shape.n, "k": shape.k, "m": shape.m,
                                         "weight": label})
        cases.append(checked(case, case.fn(), reference, error=relative_error))
    return cases


def judged_on(*runs: Sequence[bench.Measurement]) -> str:
    """"kernel" where every run carries the GPU's own kernel time (a device effect is judged on it),
    else "event" (on a CPU: host time; there is no kernel time there)."""
    measured = all(not math.isnan(m.kernel_ms) for side in runs for m in side)
    return "kernel" if measured and runs and all(runs) else "event"


def device_compare(runs_a: Sequence[bench.Measurement], runs_b: Sequence[bench.Measurement]) -> bench.Comparison:
    """B against A on kernel time where it was measured (the kernels' own speed), else on event time."""
    return bench.compare(runs_a, runs_b, on=judged_on(runs_a, runs_b))


def speedup_rows(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]]) -> list[dict]:
    """Each sparse case against the dense case of the same GEMM and orientation, on both clocks.

    Per call (CUDA events around the call: what a PyTorch user waits for) and per kernel (CUPTI: the
    GPU's own time). ``setup_ms`` is what a sparse call costs beyond its kernels (sparse event minus
    sparse kernel time: host work the GPU waits for); ``speedup`` is judged on kernel time where it was
    measured (``on``), with its 95% interval over passes, and ``call_speedup`` is the per-call figure.
    """
    dense = {(c.params["gemm"], c.params["form"]): c for c in cases if c.params.get("backend") == "dense"}
    rows = []
    for case in cases:
        backend = case.params.get("backend")
        if backend in (None, "dense"):
            continue
        base_runs, sparse_runs = runs[dense[(case.params["gemm"], case.params["form"])].label], runs[case.label]
        cmp = device_compare(base_runs, sparse_runs)
        call = bench.compare(base_runs, sparse_runs, on="event")
        fields = bench.kernel_fields(sparse_runs)
        lo, hi = cmp.interval
        rows.append({"gemm": case.params["gemm"], "gflop": case.flops / 1e9, "variant": f"{backend}, {case.params['form']}",
                     "dense_ms": call.median_a_ms, "sparse_ms": call.median_b_ms,
                     "dense_kernel_ms": bench.median_kernel_ms(base_runs), "sparse_kernel_ms": fields["kernel_ms"],
                     "setup_ms": call.median_b_ms - fields["kernel_ms"], "gpu_busy": fields["gpu_busy"],
                     "regime": fields["regime"], "call_speedup": call.speedup, "speedup": cmp.speedup,
                     "interval": f"{lo:.2f}-{hi:.2f}x", "on": cmp.on, "significant": cmp.significant,
                     "verdict": _verdict(cmp),
                     "sparse_tflop_per_s": case.flops / (cmp.median_b_ms / 1e3) / 1e12})
    return rows


def _verdict(cmp: bench.Comparison) -> str:
    return ("faster" if cmp.speedup > 1 else "slower") if cmp.significant else "noise"


def best_against_best(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]], gemm: str,
                      on: str | None = None) -> bench.Comparison:
    """The fastest sparse case of GEMM `gemm` against its fastest dense case (either orientation), both
    picked and compared on `on` ("kernel" where kernel time was measured, else "event", by default)."""
    mine = [c for c in cases if c.params.get("gemm") == gemm]
    dense_cases = [c for c in mine if c.params["backend"] == "dense"]
    sparse_cases = [c for c in mine if c.params["backend"] != "dense"]
    if not dense_cases or not sparse_cases:
        raise ValueError(f"GEMM {gemm!r} needs a dense and a sparse case; it has {[c.label for c in mine]}")
    on = on or judged_on(*(runs[c.label] for c in mine))
    pick = bench.COMPARED_ON[on]

    def median(case: Case) -> float:
        return statistics.median(pick(m) for m in runs[case.label])

    dense, sparse = min(dense_cases, key=median), min(sparse_cases, key=median)
    return bench.compare(runs[dense.label], runs[sparse.label], on=on)


def per_call_of(runs: dict[str, list[bench.Measurement]], cmp: bench.Comparison) -> bench.Comparison:
    """The same two cases as `cmp` (picked on kernel time, say), compared per call (event time)."""
    return bench.compare(runs[cmp.label_a], runs[cmp.label_b], on="event")


def crossover_gflop(rows: Sequence[Mapping]) -> float | None:
    """The crossover: the smallest GEMM size (``gflop``) from which sparse is at least as fast as dense
    (``speedup`` >= 1) at every larger measured size; None where it loses at the largest."""
    crossover = None
    for row in sorted(rows, key=lambda r: r["gflop"], reverse=True):
        if row["speedup"] < 1:
            break
        crossover = row["gflop"]
    return crossover


def headline_rows(best: Mapping[str, bench.Comparison], per_call: Mapping[str, bench.Comparison],
                  gflop: Mapping[str, float]) -> list[dict]:
    """Per GEMM, the fastest sparse case against the fastest dense one: their kernels' time, speedup and
    interval (``on`` kernel time where measured), the same two cases per call, and the sparse call's
    busy share and regime (its kernel time over its time per call)."""
    rows = []
    for gemm, cmp in best.items():
        call = per_call[gemm]
        lo, hi = cmp.interval
        busy = cmp.median_b_ms / call.median_b_ms if cmp.on == "kernel" else float("nan")
        rows.append({"gemm": gemm, "gflop": gflop[gemm], "dense": cmp.label_a.split(" ", 1)[-1],
                     "sparse": cmp.label_b.split(" ", 1)[-1], f"dense_{cmp.on}_ms": cmp.median_a_ms,
                     f"sparse_{cmp.on}_ms": cmp.median_b_ms, "speedup": cmp.speedup, "interval": f"{lo:.2f}-{hi:.2f}x",
                     "on": cmp.on, "verdict": _verdict(cmp), "sparse_call_ms": call.median_b_ms,
                     "call_speedup": call.speedup, "gpu_busy": busy, "regime": bench.regime_of(busy)})
    return rows


def crossover_text(rows: Sequence[Mapping]) -> str:
    """One line on the crossover of `rows` (gemm, gflop, speedup): where it lies, and the size below it."""
    crossover = crossover_gflop(rows)
    ordered = sorted(rows, key=lambda r: r["gflop"])
    if crossover is None:
        return (f"no crossover in the sweep: sparse loses at the largest GEMM ({ordered[-1]['gemm']}, "
                f"{ordered[-1]['speedup']:.2f}x)")
    at = next(r for r in ordered if r["gflop"] == crossover)
    below = [r for r in ordered if r["gflop"] < crossover]
    loses = (f"; below it, {below[-1]['gemm']} ({below[-1]['gflop']:,.0f} GFLOP) at {below[-1]['speedup']:.2f}x"
             if below else "; sparse wins at every size of the sweep")
    return f"crossover: {crossover:,.0f} GFLOP ({at['gemm']}, {at['speedup']:.2f}x){loses}"


def zeros_rows(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]]) -> list[dict]:
    """For each GEMM of :func:`zeros_cases`: the pruned weight's speed over the random one's (dense kernel),
    on kernel time where measured (on a CPU: host time)."""
    rows = []
    for random_case, pruned_case in zip(cases[0::2], cases[1::2]):
        cmp = device_compare(runs[random_case.label], runs[pruned_case.label])
        lo, hi = cmp.interval
        rows.append({"gemm": random_case.params["gemm"], "gflop": random_case.flops / 1e9,
                     "variant": f"dense kernel, 50% zeros ({random_case.precision.upper()})",
                     "dense_ms": cmp.median_a_ms, "sparse_ms": cmp.median_b_ms, "speedup": cmp.speedup,
                     "interval": f"{lo:.2f}-{hi:.2f}x", "on": cmp.on, "significant": cmp.significant,
                     "verdict": _verdict(cmp)})
    return rows


def conv_layer_gemms(model: nn.Module, names: Sequence[str], images: torch.Tensor, *, device: str
                     ) -> list[tuple[str, GemmShape, torch.Tensor, torch.Tensor, float]]:
    """The named convolutions of `model` on `images` as GEMMs: (name, shape, weight (n, k), im2col
    activations (m, k), relative error of the GEMM against the convolution itself), on `device`.

    The model runs in FP32 on `device`; the GEMM's weight keeps ModelOpt's 2:4 groups (channels innermost).
    """
    model = copy.deepcopy(model).to(device).float().eval()
    inputs = layer_inputs(model, names, images.to(device))
    modules = dict(model.named_modules())
    layers = []
    for name in names:
        conv = modules[name]
        x = inputs[name]
        kh, kw = conv.kernel_size
        weight = conv_weight_as_gemm(conv.weight.detach())
        cols = im2col_channels_innermost(x, (kh, kw), (conv.padding[0], conv.padding[1]))
        with torch.no_grad(), tf32_mode(False):
            error = relative_error(conv_as_gemm(x, conv), conv(x))
        layers.append((name, GemmShape(weight.shape[0], weight.shape[1], cols.shape[0]), weight, cols, error))
    return layers


def model_layer_cases(model: nn.Module, names: Sequence[str], images: torch.Tensor, *, device: str,
                      backends: Sequence[str], tag: str) -> tuple[list[Case], dict[str, str], dict[str, float]]:
    """The named pruned convolutions of `model` on `images`, as dense and sparse FP16 GEMMs with their real
    weights and activations (see :func:`conv_layer_gemms`): cases, refusals, and each GEMM's relative
    error against the convolution it stands for. Case names are "`tag` layer"."""
    cases: list[Case] = []
    refused: dict[str, str] = {}
    conv_errors: dict[str, float] = {}
    for name, shape, weight, cols, conv_error in conv_layer_gemms(model, names, images, device=device):
        label = f"{tag} {name} ({shape.label})"
        found, problems = gemm_cases(shape, device=device, backends=backends, weight=weight, x=cols, name=label)
        cases += found
        refused.update({f"{label} {what}": why for what, why in problems.items()})
        conv_errors[label] = conv_error
    return cases, refused, conv_errors


@dataclass
class LayerStudy:
    """The pruned convolutions of one or more models as dense and sparse GEMMs, timed together."""

    cases: list[Case]
    refused: dict[str, dict[str, str]]     # per model tag: what a backend refused, and why
    conv_errors: dict[str, float]          # per GEMM: its relative error against the convolution
    runs: dict[str, list[bench.Measurement]]
    speed: list[dict] = field(default_factory=list)            # speedup_rows, variant "digits CNN layers, ..."
    best: dict[str, bench.Comparison] = field(default_factory=dict)   # per GEMM: best sparse vs best dense (kernel)
    per_call: dict[str, bench.Comparison] = field(default_factory=dict)   # the same two cases, per call (event)
    flops: dict[str, int] = field(default_factory=dict)        # per GEMM


def layer_study(models: Mapping[str, tuple[nn.Module, torch.Tensor]], names: Sequence[str], *, device: str,
                backends: Sequence[str], warmup_ms: float, measure_ms: float, passes: int = bench.PASSES) -> LayerStudy:
    """:func:`model_layer_cases` for each (model, images) by tag, all cases timed in the same `passes`
    interleaved passes; per GEMM the speedup rows and the fastest sparse case against the fastest dense
    one (on kernel time where measured), and the same two cases per call."""
    cases: list[Case] = []
    refused: dict[str, dict[str, str]] = {}
    conv_errors: dict[str, float] = {}
    for tag, (model, images) in models.items():
        found, refused[tag], errors = model_layer_cases(model, names, images, device=device, backends=backends, tag=tag)
        cases += found
        conv_errors.update(errors)
    runs = measure_cases(cases, device=device, passes=passes, warmup_ms=warmup_ms, measure_ms=measure_ms, desc="layers")
    speed = speedup_rows(cases, runs)
    for row in speed:
        row["variant"] = f"digits CNN layers, {row['variant']}"
    flops = {c.params["gemm"]: c.flops for c in cases if c.params["backend"] != "dense"}
    best = {gemm: best_against_best(cases, runs, gemm) for gemm in flops}
    per_call = {gemm: per_call_of(runs, cmp) for gemm, cmp in best.items()}
    return LayerStudy(cases, refused, conv_errors, runs, speed, best, per_call, flops)


# -- figures ----------------------------------------------------------------------------------------

def speedup_plot(rows: Sequence[dict], *, title: str, path: str | Path, ylabel: str,
                 points: Sequence[dict] = (), crossover: float | None = None) -> Path:
    """Speedup against GEMM size (GFLOP, log scales): one solid line per variant of `rows` (a sweep, its
    ``speedup``: kernel time where measured), the same variant per call dashed where rows carry
    ``call_speedup``, unconnected markers per variant of `points` (single layers), the line at 1 and,
    if given, the crossover size."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["gflop"])
        on = mine[0].get("on", "event")
        line, = ax.plot([r["gflop"] for r in mine], [r["speedup"] for r in mine], marker="o",
                        label=f"{variant} ({'kernel time' if on == 'kernel' else 'time per call'})")
        if on == "kernel" and all("call_speedup" in r for r in mine):
            ax.plot([r["gflop"] for r in mine], [r["call_speedup"] for r in mine], marker=".", linestyle=":",
                    color=line.get_color(), label=f"{variant} (per call, events)")
    for variant, marker in zip(dict.fromkeys(r["variant"] for r in points), "XPD*"):
        xy = [(r["gflop"], r["speedup"]) for r in points if r["variant"] == variant]
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], marker=marker, s=60, label=variant, zorder=3)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="dense = 1.0x")
    if crossover is not None:
        ax.axvline(crossover, color="black", linestyle="-.", linewidth=1, label=f"crossover ({crossover:,.0f} GFLOP)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title=title, xlabel="GEMM size: GFLOP per product (2·N·K·M, log scale)", ylabel=f"{ylabel}, log scale")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return plots.finish_figure(fig, [*rows, *points], path)
