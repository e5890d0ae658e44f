"""Worked solutions to lab 09's exercises (checked by tests/test_exercises.py)."""

import torch


def _groups(weight: torch.Tensor) -> torch.Tensor:
    # (out, in, kh, kw) -> (out, kh, kw, in): the input channels become the innermost axis,
    # so consecutive groups of 4 are 4 input channels at one kernel position
    if weight.dim() > 2:
        weight = weight.movedim(1, -1)
    return weight.reshape(-1, 4)


def exercise_1(weight: torch.Tensor) -> bool:
    nonzeros_per_group = (_groups(weight) != 0).sum(dim=1)
    return bool((nonzeros_per_group <= 2).all())


def exercise_2(weight: torch.Tensor) -> torch.Tensor:
    groups = _groups(weight)
    keep = groups.abs().topk(2, dim=1).indices                  # the 2 largest magnitudes of each group
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    if weight.dim() > 2:                                        # back to (out, in, kh, kw)
        mask = mask.reshape(weight.movedim(1, -1).shape).movedim(-1, 1)
    return weight * mask.reshape(weight.shape)


def exercise_3(rows: list[dict]) -> float | None:
    # walk from the largest size down; the crossover is where the winning streak ends
    crossover = None
    for row in sorted(rows, key=lambda r: r["gflop"], reverse=True):
        if row["speedup"] < 1:
            break
        crossover = row["gflop"]
    return crossover
