"""Lab 09 (2:4 structured sparsity) exercises: the pattern checker, magnitude pruning to 2:4, and where
the sparse kernel's crossover."""

from __future__ import annotations

import torch

from common.exercises import Exercise, close
from common.labs import lab09_sparsity as lab


def _conv_2_4_along_channels_only() -> torch.Tensor:
    """2:4 along C_in at every kernel position, but 3 or 4 non-zeros along the kernel in memory order."""
    w = torch.zeros(2, 4, 3, 3)
    w[:, 0] = 1.5
    w[:, 2] = -0.5
    return w


def _conv_2_4_in_memory_order_only() -> torch.Tensor:
    """2:4 along the flattened (C_in * 3 * 3) axis, but 4 non-zeros along C_in at some kernel positions."""
    w = torch.zeros(2, 4, 2, 2)
    w[:, :, 0, 0] = 1.0                       # memory groups are (c, 0:2, 0:2): 2 non-zeros each
    w[:, :, 1, 1] = 2.0
    return w


def _check_is_2_4(fn) -> str | None:
    g = torch.Generator().manual_seed(9)
    dense = torch.randn(8, 16, generator=g)
    broken = lab.prune_2_4(dense).clone()
    broken[3, 5] = broken[3, 4] = broken[3, 6] = broken[3, 7] = -1.0      # one group of 4 with 4 non-zeros
    cases = [
        ("a 2:4-pruned Linear weight (8 x 16)", lab.prune_2_4(dense), True),
        ("the same weight with one group of 4 full", broken, False),
        ("a dense Linear weight", dense, False),
        ("a Conv2d weight 2:4 along its input channels (not in memory order)", _conv_2_4_along_channels_only(), True),
        ("a Conv2d weight 2:4 in memory order only", _conv_2_4_in_memory_order_only(), False),
        ("a 2:4-pruned Conv2d weight (8 x 16 x 3 x 3)", lab.prune_2_4(torch.randn(8, 16, 3, 3, generator=g)), True),
    ]
    for what, weight, want in cases:
        got = fn(weight.clone())
        if got is None:
            raise NotImplementedError
        if bool(got) != want:
            return (f"{what}: expected {want}, got {got}. For a convolution (out, in, kh, kw), the groups of 4 run "
                    "along the input channels at each kernel position, not along the weight's memory order.")
    return None


def _check_prune(fn) -> str | None:
    g = torch.Generator().manual_seed(11)
    for weight in (torch.randn(16, 32, generator=g), torch.randn(8, 16, 3, 3, generator=g)):
        got = fn(weight.clone())
        if got is None:
            raise NotImplementedError
        got = torch.as_tensor(got)
        if got.shape != weight.shape:
            return f"a weight of shape {tuple(weight.shape)} came back as {tuple(got.shape)}"
        if not lab.is_2_4(got):
            return (f"the {tuple(weight.shape)} weight is not 2:4 along its input dimension: "
                    f"{lab.check_2_4(got).violating_groups} groups of 4 keep more than 2 non-zeros")
        want = lab.prune_2_4(weight)
        if not torch.equal(got != 0, want != 0):
            return (f"the {tuple(weight.shape)} weight keeps other weights than the 2 largest magnitudes "
                    "of each group (keep |w|, not w, and keep the kept values unchanged)")
        if not torch.equal(got, want):
            return "the kept weights changed value: pruning only zeroes weights"
    return None


def _check_crossover(fn) -> str | None:
    def rows(points):
        return [{"gflop": g, "speedup": s} for g, s in points]

    cases = [
        ([(1, 0.5), (10, 0.9), (100, 1.1), (1000, 1.2)], 100.0),
        ([(1, 0.5), (10, 1.05), (100, 0.95), (1000, 1.2)], 1000.0),   # a win below a loss is not the crossover
        ([(1000, 1.3), (1, 0.4), (100, 1.02), (10, 0.8)], 100.0),     # rows in any order
        ([(1, 0.3), (10, 0.6), (100, 0.9)], None),                    # sparse never pays
        ([(1, 1.1), (10, 1.2)], 1.0),
    ]
    for points, want in cases:
        got = fn(rows(points))
        if want is None:
            if got is not None:
                return f"speedups {points}: sparse never pays at the largest size, expected None, got {got}"
            continue
        if got is None or not close(float(got), want):
            return (f"speedups (GFLOP, x) {points}: expected {want} GFLOP, got {got}. The crossover is the "
                    "smallest size from which sparse is at least as fast at every larger measured size.")
    return None


def _first_crossing(rows):
    for row in rows:
        if row["speedup"] >= 1:
            return row["gflop"]
    return None


EXERCISES = [
    Exercise("09.1", "guided",
             "is_2_4(weight): whether every group of 4 consecutive weights along the input dimension "
             "(in_features; input channels at each kernel position of a convolution) has at most 2 non-zeros.",
             _check_is_2_4,
             counterexample=lambda w: bool(((w.reshape(-1, 4) != 0).sum(dim=1) <= 2).all())),
    Exercise("09.2", "practice",
             "prune_2_4(weight): zero the 2 smallest-magnitude weights of every group of 4 along the input "
             "dimension, keeping the other weights unchanged.",
             _check_prune,
             counterexample=lambda w: w * (w.abs() >= w.abs().flatten().median())),
    Exercise("09.3", "open",
             "crossover_gflop(rows): the smallest GEMM size (GFLOP) from which sparse is at least as fast as "
             "dense at every larger measured size, or None.",
             _check_crossover, counterexample=_first_crossing),
]
