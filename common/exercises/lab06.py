"""Lab 06 (reduce and shuffle) exercises: a spatial sum over one long axis without a copy, the channel
shuffle as a 1x1 convolution, and when a reshape can be a view."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.labs import lab06_reduce_shuffle
from common.exercises import Exercise


def _check_spatial_view(fn) -> str | None:
    for shape, channels_last in (((2, 8, 5, 7), False), ((3, 16, 4, 4), False), ((2, 8, 5, 7), True)):
        x = lab06_reduce_shuffle.make_input(shape, device="cpu", dtype=torch.float32)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        n, c, h, w = shape
        layout = "channels-last" if channels_last else "contiguous NCHW"
        before = x.clone()   # an answer that writes into x must not pass by changing what it is compared with
        got = fn(x)
        if got is None:
            raise NotImplementedError
        if not torch.equal(x, before):
            return f"{layout} input {tuple(shape)}: your function changed its input in place; leave x as it is"
        want_shape, axis = ((n, h * w, c), 1) if channels_last else ((n, c, h * w), 2)
        if tuple(got.shape) != want_shape:
            return f"{layout} input {tuple(shape)}: expected a tensor of shape {want_shape}, got {tuple(got.shape)}"
        if not lab06_reduce_shuffle.shares_storage(x, got):
            return (f"{layout} input {tuple(shape)}: your tensor does not share the input's storage: a copy ran. "
                    "Reshape in the order the elements already sit in memory.")
        if not torch.allclose(got.double().sum(dim=axis), x.double().sum(dim=(2, 3)), rtol=1e-9, atol=1e-9):
            return (f"{layout} input {tuple(shape)}: summing your tensor over axis {axis} does not give the sum over "
                    "H and W: the elements are not where they should be")
    return None


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    case = next(c for c in lab06_reduce_shuffle.shuffle_cases(groups) if c.name.startswith("channel shuffle"))
    return case.make(x)


def _check_shuffle_conv(fn) -> str | None:
    for channels, groups in ((12, 3), (8, 2), (16, 4), (24, 8)):
        weight = fn(channels, groups)
        if weight is None:
            raise NotImplementedError
        if tuple(weight.shape) != (channels, channels, 1, 1):
            return f"{channels} channels: expected a weight of shape {(channels, channels, 1, 1)}, got {tuple(weight.shape)}"
        x = lab06_reduce_shuffle.make_input((2, channels, 3, 5), device="cpu", dtype=torch.float32, seed=channels)
        got = F.conv2d(x, weight.to(torch.float32))
        want = _shuffle(x, groups)
        if not torch.allclose(got, want, rtol=0, atol=1e-6):
            return (f"{channels} channels in {groups} groups: conv2d(x, weight) is not the channel shuffle. Output "
                    "channel j must copy the one input channel the shuffle puts at j (check with a small x whose "
                    "channel i holds the value i).")
    return None


def _view_strides(shape, strides, new_shape) -> bool:
    try:
        torch.empty_strided(tuple(shape), tuple(strides)).view(tuple(new_shape))
    except RuntimeError:
        return False
    return True


def _view_cases() -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(shape, strides, new shape) of tensors made the ways models make them, with reshapes to try."""
    base = torch.empty(2, 3, 4, 5)
    tensors = [
        base, base.permute(0, 2, 3, 1), base.transpose(2, 3), base.permute(1, 0, 2, 3), base[:, :, ::2],
        base[:, 1:], base[..., :4], base.reshape(6, 20).t(), torch.empty(4, 1, 6).transpose(0, 1),
        torch.empty(3, 1, 1, 8)[:, :, :, ::2], torch.empty(5, 1).expand(5, 4), torch.empty(1, 6).expand(3, 6),
        torch.empty(2, 3, 4).permute(2, 0, 1), torch.empty(6, 4)[::2], torch.empty(2, 1, 3, 1).transpose(1, 3),
    ]
    cases = []
    for t in tensors:
        n = t.numel()
        targets = {(n,), tuple(t.shape[::-1]), (1, *t.shape), (*t.shape, 1)}
        if t.dim() >= 2:
            targets.add((t.shape[0] * t.shape[1], *t.shape[2:]))
            targets.add((*t.shape[:-2], t.shape[-2] * t.shape[-1]))
            targets.add((t.shape[0], n // t.shape[0]))
        last = t.shape[-1]
        for split in (2, 3):
            if last % split == 0 and last > split:
                targets.add((*t.shape[:-1], split, last // split))
        first = t.shape[0]
        if first % 2 == 0 and first > 2:
            targets.add((2, first // 2, *t.shape[1:]))
        cases += [(tuple(t.shape), tuple(t.stride()), target) for target in sorted(targets)]
    return cases


def _check_can_view(fn) -> str | None:
    for shape, strides, new_shape in _view_cases():
        got = fn(shape, strides, new_shape)
        if got is None:
            raise NotImplementedError
        want = _view_strides(shape, strides, new_shape)
        if bool(got) != want:
            verdict = "can" if want else "cannot"
            return (f"a tensor of shape {shape} and strides {strides} {verdict} be viewed as {new_shape} (ask "
                    f"torch: torch.empty_strided({shape}, {strides}).view({new_shape})), your answer was {got}. "
                    "Dimensions can merge only where their strides chain; dimensions of size 1 never matter.")
    return None


def _contiguous_only(shape, strides, new_shape) -> bool:
    """The counterexample: a view exactly when the tensor is contiguous."""
    return torch.empty_strided(tuple(shape), tuple(strides)).is_contiguous()


EXERCISES = [
    Exercise("06.1", "guided",
             "spatial_view(x): x's H and W as one axis, as a view (no copy), for NCHW and channels-last x.",
             _check_spatial_view, counterexample=lambda x: x.reshape(x.shape[0], x.shape[1], -1)),
    Exercise("06.2", "practice",
             "shuffle_weight(channels, groups): the 1x1 convolution weight that computes the channel shuffle.",
             _check_shuffle_conv,
             counterexample=lambda c, g: torch.eye(c).reshape(c // g, g, c).transpose(0, 1).reshape(c, c, 1, 1)),
    Exercise("06.3", "open",
             "can_view(shape, strides, new_shape): whether a tensor can be reshaped to new_shape without a copy.",
             _check_can_view, counterexample=_contiguous_only),
]
