"""Lab 09 (2:4 structured sparsity): the pattern, pruning to it with ModelOpt, and fine-tuning.

Sparse tensor cores (compute capability 8.0+) skip half of a weight matrix when every group of 4
consecutive weights along the *input* dimension holds at most 2 non-zeros: along ``in_features`` for a
linear layer, along the input channels at each kernel position for a convolution. This module checks
that pattern (:func:`check_2_4`) and prunes to it by magnitude (:func:`prune_2_4`), the reference the
lab's exercises and tests compare ModelOpt against; and prunes a model with NVIDIA ModelOpt
(``modelopt.torch.sparsity``: ``sparse_magnitude`` or ``sparsegpt``), imported on first use only because
the import is slow. ModelOpt keeps its mask applied while the model is fine-tuned with
:func:`common.training.train`, and :func:`export_sparse` bakes it into plain ``nn`` modules. The digits
model is tiny, so all of this runs on the CPU on every machine.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from common import bench, training

if TYPE_CHECKING:
    from common.datasets import Split

GROUP, KEEP = 4, 2            # 2:4: at most KEEP non-zeros in every GROUP consecutive weights


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

MODELOPT_SPARSITY = "modelopt.torch.sparsity"


def _modelopt_sparsity():
    """``modelopt.torch.sparsity``, imported on first use: the import takes seconds."""
    import modelopt.torch.sparsity as mts

    return mts


def modelopt_imported() -> bool:
    """Whether this process has imported ``modelopt.torch.sparsity`` already (the course runner's
    kernels import it while they wait for their turn), so that a first call's time says what it holds."""
    import sys

    return MODELOPT_SPARSITY in sys.modules


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
