"""Worked solutions to lab 06's exercises (checked by tests/test_exercises.py)."""

import torch


def exercise_1(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        # memory order is N, H, W, C: the permuted view is contiguous, and H, W are adjacent in it
        return x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return x.reshape(n, c, h * w)          # NCHW: H and W are already adjacent; a view


def exercise_2(channels: int, groups: int) -> torch.Tensor:
    # The shuffle reads input channel g * (C / groups) + i into output channel i * groups + g:
    # one 1 per output row, at the input channel it copies.
    per_group = channels // groups
    weight = torch.zeros(channels, channels, 1, 1)
    for g in range(groups):
        for i in range(per_group):
            weight[i * groups + g, g * per_group + i] = 1.0
    return weight


def exercise_3(shape: tuple[int, ...], strides: tuple[int, ...], new_shape: tuple[int, ...]) -> bool:
    # Walk both shapes from the last dimension. The old dimensions form chunks in which each
    # dimension's stride is the next one's stride times its size (one contiguous run of memory);
    # the new dimensions must cover each chunk exactly, never straddle two. Size-1 dimensions
    # never matter. (This is the rule torch's view follows.)
    numel = 1
    for size in shape:
        numel *= size
    new_numel = 1
    for size in new_shape:
        new_numel *= size
    if numel != new_numel:
        return False
    if numel == 0 or not shape:
        return True
    view_d = len(new_shape) - 1
    chunk_base_stride = strides[-1]
    tensor_numel, view_numel = 1, 1
    for tensor_d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[tensor_d]
        chunk_ends = tensor_d == 0 or (shape[tensor_d - 1] != 1
                                       and strides[tensor_d - 1] != tensor_numel * chunk_base_stride)
        if chunk_ends:
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return False
            if tensor_d > 0:
                chunk_base_stride = strides[tensor_d - 1]
                tensor_numel, view_numel = 1, 1
    return view_d == -1
