"""2:4 structured sparsity: the pattern, pruning with ModelOpt, fine-tuning, and sparse GEMMs against dense.

Introduced in lab 09 (2:4 structured sparsity). Sparse tensor cores (compute capability 8.0+) skip
half of a weight matrix when every group of 4 consecutive weights along the *input* dimension holds
at most 2 non-zeros: along ``in_features`` for a linear layer, along the input channels at each
kernel position for a convolution. This module

- checks that pattern (:func:`check_2_4`) and prunes to it by magnitude (:func:`prune_2_4`), the
  reference the lab's exercises and tests compare ModelOpt against;
- prunes a model with NVIDIA ModelOpt (``modelopt.torch.sparsity``: ``sparse_magnitude`` or
  ``sparsegpt``), imported on first use only because the import is slow; ModelOpt keeps its mask
  applied while the model is fine-tuned with :func:`common.training.train`, and
  :func:`export_sparse` bakes it into plain ``nn`` modules. The digits model is tiny, so all of
  this runs on the CPU on every machine;
- writes a convolution as the GEMM a sparse kernel computes (K = kh * kw * C_in with the channels
  innermost, so ModelOpt's groups along C_in stay groups of 4 consecutive weights);
- builds checked dense and sparse (``torch.sparse.to_sparse_semi_structured``, cuSPARSELt or
  CUTLASS backend, ``W @ X`` or ``F.linear(x, W)`` orientation) FP16 products on a GPU, timed with
  ``common.matmul_alignment.measure_cases`` (interleaved passes of ``common.bench``), and the CPU
  counterpart, a dense product with and without 50% zeros;
- runs the TensorRT study (dense engine against ``BuildConfig(sparse_weights=True)``), reading
  TensorRT's answer with :mod:`common.trt.sparsity`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import bench, plots, training
from .matmul_alignment import Case, checked, random_tensor, tf32_mode

if TYPE_CHECKING:
    from .datasets import Split

GROUP, KEEP = 4, 2            # 2:4: at most KEEP non-zeros in every GROUP consecutive weights
#: ‖out − ref‖ / ‖ref‖ accepted for an FP16 product, dense or 2:4 sparse, against the FP32 product of
#: the same FP16 values: what remains is the order of the FP32 accumulation and the output's rounding.
FP16_TOLERANCE = 5e-3
BACKENDS = ("cuSPARSELt", "CUTLASS")
FORMS = ("W @ X", "F.linear(x, W)")


# -- the 2:4 pattern --------------------------------------------------------------------------------

def groups_along_input(weight: torch.Tensor) -> torch.Tensor:
    """The weight as rows of 4 consecutive weights along the input dimension, shape (groups, 4).

    Linear (out, in): along ``in``. Convolution (out, in, *kernel): along ``in`` at each kernel position.
    That is TensorRT's rule (Developer Guide, "Structured Sparsity": for weights [K, C, R, S], every 4
    input channels of each (k, r, s) hold at least two zeros), and ModelOpt's magnitude pruning.
    """
    if weight.dim() < 2:
        raise ValueError(f"a weight of shape {tuple(weight.shape)} has no input dimension (need 2-D or more)")
    w = weight.detach()
    if w.dim() > 2:
        w = w.movedim(1, -1)                     # (out, *kernel, in): input channels innermost
    if w.shape[-1] % GROUP:
        raise ValueError(f"input dimension {w.shape[-1]} is not a multiple of {GROUP}: 2:4 groups cannot tile it")
    return w.reshape(-1, GROUP)


def groups_in_memory_order(weight: torch.Tensor) -> torch.Tensor:
    """Rows of 4 consecutive weights in the weight's memory order (a convolution flattened to
    (out, in * kh * kw), kernel positions innermost): the *wrong* grouping for a convolution, shown
    in lab 09 because a pruner that uses it produces masks sparse convolution kernels cannot use."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % GROUP:
        raise ValueError(f"{flat.shape[1]} weights per output are not a multiple of {GROUP}")
    return flat.reshape(-1, GROUP)


@dataclass(frozen=True)
class PatternCheck:
    """How a weight fares against the 2:4 rule."""

    groups: int
    violating_groups: int       # groups of 4 with more than 2 non-zeros
    zero_fraction: float

    @property
    def ok(self) -> bool:
        return self.violating_groups == 0


def check_2_4(weight: torch.Tensor, along: str = "input") -> PatternCheck:
    """Count the groups of 4 that hold more than 2 non-zeros: along the input dimension (the rule sparse
    kernels follow) or, with ``along="memory"``, in memory order (see :func:`groups_in_memory_order`)."""
    if along not in ("input", "memory"):
        raise ValueError(f"along must be 'input' or 'memory', got {along!r}")
    groups = groups_along_input(weight) if along == "input" else groups_in_memory_order(weight)
    nonzeros = (groups != 0).sum(dim=1)
    return PatternCheck(groups=groups.shape[0], violating_groups=int((nonzeros > KEEP).sum()),
                        zero_fraction=float((groups == 0).float().mean()))


def is_2_4(weight: torch.Tensor) -> bool:
    """Whether every group of 4 consecutive weights along the input dimension has at most 2 non-zeros."""
    return check_2_4(weight).ok


def magnitude_mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest-magnitude weights of every group of 4 along the input dimension."""
    groups = groups_along_input(weight)
    keep = groups.abs().topk(KEEP, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    if weight.dim() > 2:
        moved = weight.movedim(1, -1).shape
        return mask.reshape(moved).movedim(-1, 1)
    return mask.reshape(weight.shape)


def prune_2_4(weight: torch.Tensor) -> torch.Tensor:
    """`weight` with the 2 smallest-magnitude weights of every group of 4 (along the input) set to zero."""
    return weight * magnitude_mask_2_4(weight)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """The model's linear and convolution layers, by name: what 2:4 sparsity can apply to."""
    found: list[tuple[str, nn.Linear | nn.Conv2d]] = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            found.append((name, module))
    return found


def _broken_groups(weight: torch.Tensor, along: str) -> int | str:
    try:
        return check_2_4(weight, along).violating_groups
    except ValueError:                          # a dimension groups of 4 cannot tile
        return "-"


def pattern_rows(model: nn.Module) -> list[dict]:
    """Per weight layer: shape, share of zeros, groups of 4 holding more than 2 non-zeros (along the
    input dimension, and in memory order), and whether the layer is pruned to 2:4 along its input.

    With a ModelOpt-sparsified model, ``module.weight`` is the masked weight (ModelOpt applies the mask
    on every access), so this reads what the layer computes with.
    """
    rows = []
    for name, module in weight_layers(model):
        weight = module.weight.detach()
        zeros = float((weight == 0).float().mean())
        broken = _broken_groups(weight, "input")
        rows.append({"layer": name, "type": type(module).__name__.replace("Sparse", ""),
                     "weight_shape": "x".join(str(d) for d in weight.shape),
                     "zeros_pct": round(100.0 * zeros, 1),
                     "broken_along_input": broken,
                     "broken_in_memory_order": _broken_groups(weight, "memory"),
                     "pruned_2_4": broken == 0 and zeros >= 0.5})
    return rows


def pruned_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose weights are 2:4 sparse (at least half zeros, no group broken)."""
    return [row["layer"] for row in pattern_rows(model) if row["pruned_2_4"]]


# -- ModelOpt ------------------------------------------------------------------------------------------

def _modelopt_sparsity():
    """``modelopt.torch.sparsity``, imported on first use: the import takes seconds."""
    import modelopt.torch.sparsity as mts

    return mts


@dataclass
class Pruned:
    """A ModelOpt-sparsified copy of a model (mask enforced on every forward) and what ModelOpt skipped."""

    model: nn.Module
    mode: str
    seconds: float
    skipped: list[str] = field(default_factory=list)   # ModelOpt's own "Skipping ..." messages


def modelopt_sparsify(model: nn.Module, mode: str = "sparse_magnitude", calibration: "Split | None" = None,
                      batch_size: int = 64) -> Pruned:
    """Prune a CPU copy of `model` to 2:4 with ModelOpt (`mode` "sparse_magnitude" or "sparsegpt").

    SparseGPT updates the kept weights from the layer inputs' statistics, gathered by a forward pass
    over `calibration` (required for it). ModelOpt's progress lines are kept off the notebook; the
    layers it leaves dense (it needs out % 8 == 0 and in % 16 == 0) come back in ``skipped``.
    """
    if mode not in ("sparse_magnitude", "sparsegpt"):
        raise ValueError(f"mode must be 'sparse_magnitude' or 'sparsegpt', got {mode!r}")
    if mode == "sparsegpt" and calibration is None:
        raise ValueError("SparseGPT needs calibration data: pass calibration=dataset.calib")
    mts = _modelopt_sparsity()
    pruned = copy.deepcopy(model).cpu().eval()
    config: dict[str, Any] = {}
    if calibration is not None and mode == "sparsegpt":
        def forward_loop(m: nn.Module) -> None:
            with torch.no_grad():
                for images, _ in calibration.batches(batch_size):
                    m(images)
        config["forward_loop"] = forward_loop
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        with bench.wall_timer() as timer:
            pruned = mts.sparsify(pruned, mode, config=config or None)
    skipped = list(dict.fromkeys(str(w.message) for w in caught if "Skipping" in str(w.message)))
    return Pruned(pruned.eval(), mode, timer.seconds, skipped)


def export_sparse(model: nn.Module) -> nn.Module:
    """ModelOpt's ``mts.export``: the mask baked into the weights, plain ``nn`` modules again.

    After this, training would no longer keep the zeros: export after fine-tuning.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        return _modelopt_sparsity().export(model)


def accuracy_row(stage: str, model: nn.Module, split: "Split") -> dict:
    """Test accuracy of `model` on `split` with its sample size and one binomial standard error."""
    acc = training.accuracy(model, split)
    n = len(split)
    return {"stage": stage, "accuracy_pct": acc, "n": n, "std_error_pts": training.standard_error_points(acc, n)}


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
    handles = [modules[n].register_forward_hook(lambda m, args, out, n=n: seen.__setitem__(n, args[0].detach()))
               for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
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
            cases.append(checked(case, _as_tokens_by_outputs(form, out), reference, FP16_TOLERANCE, relative_error))
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
    tolerance = FP16_TOLERANCE if dtype == torch.float16 else 1e-5
    cases = []
    for label, w in (("random weight", weight), ("2:4-pruned weight (50% zeros)", prune_2_4(weight))):
        w_run, x_run = w.to(dtype), x.to(dtype)
        with tf32_mode(False):
            reference = F.linear(x_run.float(), w_run.float())
        case = Case(f"{shape.label} dense, {label}", precision, functools.partial(F.linear, x_run, w_run),
                    shape.flops, params={"gemm": shape.label, "n": shape.n, "k": shape.k, "m": shape.m,
                                         "weight": label})
        cases.append(checked(case, case.fn(), reference, tolerance, relative_error))
    return cases


def speedup_rows(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]]) -> list[dict]:
    """Each sparse case against the dense case of the same GEMM and orientation: speedup = dense / sparse
    median latency, judged against the run-to-run spread."""
    dense = {(c.params["gemm"], c.params["form"]): c for c in cases if c.params.get("backend") == "dense"}
    rows = []
    for case in cases:
        backend = case.params.get("backend")
        if backend in (None, "dense"):
            continue
        base = dense[(case.params["gemm"], case.params["form"])]
        cmp = bench.compare(runs[base.label], runs[case.label])
        rows.append({"gemm": case.params["gemm"], "gflop": case.flops / 1e9, "variant": f"{backend}, {case.params['form']}",
                     "dense_ms": cmp.median_a_ms, "sparse_ms": cmp.median_b_ms, "speedup": cmp.speedup,
                     "noise_pct": cmp.noise_pct, "significant": cmp.significant,
                     "sparse_tflop_per_s": case.flops / (cmp.median_b_ms / 1e3) / 1e12})
    return rows


def best_against_best(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]], gemm: str) -> bench.Comparison:
    """The fastest sparse case of GEMM `gemm` against its fastest dense case (either orientation)."""
    def median(case: Case) -> float:
        return bench.median_latency_ms(runs[case.label])

    mine = [c for c in cases if c.params.get("gemm") == gemm]
    dense_cases = [c for c in mine if c.params["backend"] == "dense"]
    sparse_cases = [c for c in mine if c.params["backend"] != "dense"]
    if not dense_cases or not sparse_cases:
        raise ValueError(f"GEMM {gemm!r} needs a dense and a sparse case; it has {[c.label for c in mine]}")
    dense, sparse = min(dense_cases, key=median), min(sparse_cases, key=median)
    return bench.compare(runs[dense.label], runs[sparse.label])


def zeros_rows(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]]) -> list[dict]:
    """For each GEMM of :func:`zeros_cases`: the pruned weight's speed over the random one's (dense kernel)."""
    rows = []
    for random_case, pruned_case in zip(cases[0::2], cases[1::2]):
        cmp = bench.compare(runs[random_case.label], runs[pruned_case.label])
        rows.append({"gemm": random_case.params["gemm"], "gflop": random_case.flops / 1e9,
                     "variant": f"dense kernel, 50% zeros ({random_case.precision.upper()})",
                     "dense_ms": cmp.median_a_ms, "sparse_ms": cmp.median_b_ms, "speedup": cmp.speedup,
                     "noise_pct": cmp.noise_pct, "significant": cmp.significant})
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


# -- figures ----------------------------------------------------------------------------------------

def speedup_plot(rows: Sequence[dict], *, title: str, path: str | Path, ylabel: str,
                 points: Sequence[dict] = ()) -> Path:
    """Speedup against GEMM size (GFLOP, log scale): one line per variant of `rows` (a sweep), unconnected
    markers per variant of `points` (single layers), and the break-even line at 1."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        xy = sorted((r["gflop"], r["speedup"]) for r in rows if r["variant"] == variant)
        ax.plot([p[0] for p in xy], [p[1] for p in xy], marker="o", label=variant)
    for variant, marker in zip(dict.fromkeys(r["variant"] for r in points), "XPD*"):
        xy = [(r["gflop"], r["speedup"]) for r in points if r["variant"] == variant]
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], marker=marker, s=60, label=variant, zorder=3)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="break-even (dense = 1.0x)")
    ax.set_xscale("log")
    ax.set(title=title, xlabel="GEMM size: GFLOP per product (2·N·K·M, log scale)", ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return plots.finish_figure(fig, [*rows, *points], path)


# -- TensorRT ---------------------------------------------------------------------------------------

def tensorrt_sparsity_study(onnx_path: Path, images: torch.Tensor, *, warmup_ms: float = 50,
                            measure_ms: float = 150) -> dict:
    """Build the FP16 ONNX at `onnx_path` dense and with ``sparse_weights=True``; per engine: the build
    log's "(Sparsity)" lines, the inspector's view of each layer, an output check against the dense
    engine, each engine's predicted classes, and two timing passes. `images` (FP16, NCHW, on the GPU) is
    the batch it runs.

    Needs TensorRT and a GPU. Built without the engine cache so that the build log is there to read.
    """
    from . import env
    from . import trt as trt_tools
    from .trt import sparsity as trt_sparsity

    env.require("tensorrt")
    batch, sample = images.shape[0], tuple(images.shape[1:])
    result: dict[str, Any] = {"backend": f"TensorRT {trt_tools.version()}", "batch": batch, "engines": {}}
    outputs, runs = {}, {}
    for name, sparse in (("dense", False), ("sparse_weights", True)):
        config = trt_tools.BuildConfig(profiles=(trt_tools.batch_profile("input", sample, 1, batch, batch),),
                                       sparse_weights=sparse)
        build = trt_tools.build_engine(onnx_path, config, cache=False, verbose=True)
        runner = trt_tools.EngineRunner(build.engine)
        try:
            outputs[name] = runner.run({"input": images})["output"].float()
            info = trt_tools.inspect_engine(build.engine, runner.context(0))
            result["engines"][name] = {
                "build_s": build.build_seconds,
                "log": trt_sparsity.parse_build_log(text for _, text in build.log.records),
                "layers": trt_sparsity.layer_sparsity(info),
            }
            runs[name] = [bench.measure(lambda: runner.enqueue(0), name=f"TensorRT {name}", backend=result["backend"],
                                        batch_size=batch, device="cuda", stream=runner.stream(0),
                                        warmup_ms=warmup_ms, measure_ms=measure_ms) for _ in range(2)]
        finally:
            runner.close()
    result["predictions"] = {name: out.argmax(dim=1).cpu() for name, out in outputs.items()}
    result["relative_error"] = relative_error(outputs["sparse_weights"], outputs["dense"])
    if not result["relative_error"] <= FP16_TOLERANCE:
        raise AssertionError(f"the sparse engine's output differs from the dense engine's: {result['relative_error']:.3g}")
    result["comparison"] = bench.compare(runs["dense"], runs["sparse_weights"])
    return result
