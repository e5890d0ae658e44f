"""Lab 11 (plugins) exercises: a format's index arithmetic, choosing a tactic, and a plugin body for HWC8."""

from __future__ import annotations

import torch

from common.labs.lab11_plugins import kernels
from common.exercises import Exercise

# Shapes whose channel count is, and is not, a multiple of HWC8's vector width.
_SHAPES = ((2, 12, 3, 5), (1, 8, 2, 2), (3, 5, 2, 3))


def _check_channel_of(fn) -> str | None:
    for shape in _SHAPES:
        for layout, channels_last in (("LINEAR", False), ("HWC8", True)):
            for index in range(kernels.storage_elements(shape, channels_last, 8)):
                got = fn(index, shape, layout)
                want = kernels.channel_of(index, shape, channels_last, 8)
                if got != want:
                    return (f"{layout} storage of an {shape} tensor, element {index}: expected channel {want}, got {got}. "
                            + ("HWC8 pads C up to a multiple of 8: the padding lanes belong to no channel (None)."
                               if channels_last else "LINEAR is N, C, H, W in order: a channel spans H*W elements."))
    return None


def _check_pick_tactic(fn) -> str | None:
    # {tactic: repeated timings in ms}, and the tactic a builder should keep.
    cases = (
        ({1: [0.30, 0.31, 0.30, 0.32], 2: [0.20, 0.21, 0.20, 0.22], 3: [0.25, 0.25, 0.26, 0.25]}, 2),
        # tactic 4 was once very fast (a lucky sample), but it is usually the slowest
        ({4: [0.10, 0.40, 0.41, 0.40, 0.42], 5: [0.21, 0.22, 0.21, 0.22, 0.21]}, 5),
        # tactic 6 is usually the fastest, but one slow sample drags its mean up
        ({6: [0.15, 0.15, 0.16, 0.15, 0.90], 7: [0.20, 0.20, 0.21, 0.20, 0.20]}, 6),
    )
    for timings, want in cases:
        got = fn({k: list(v) for k, v in timings.items()})
        if got != want:
            return (f"timings {timings}: expected tactic {want}, got {got}. One lucky or unlucky sample should "
                    "not decide: judge each tactic by a statistic that ignores outliers.")
    return None


def _check_hwc8_body(fn) -> str | None:
    for shape in _SHAPES:
        x, bias = kernels.make_inputs(shape, device="cpu", dtype=torch.float32, seed=sum(shape))
        storage = kernels.to_channel_last_storage(x, vector=8)
        got = fn(storage.clone(), bias.clone(), shape)   # the reference below uses the untouched inputs
        if not isinstance(got, torch.Tensor) or got.shape != storage.shape:
            return (f"for an {shape} tensor the HWC8 storage has {storage.numel()} elements; return a flat tensor of "
                    f"that size, got {getattr(got, 'shape', type(got).__name__)}")
        values = kernels.from_channel_last_storage(got, shape, vector=8)
        error = (values - kernels.reference(x, bias)).abs().max().item()
        if error > 1e-5:
            return (f"{shape}: the real channels differ from GELU(x + bias) by up to {error:.3g}. In HWC8 storage "
                    f"each pixel holds {kernels.channel_pitch(shape[1], 8)} values, the first {shape[1]} being the channels.")
    return None


def _bias_by_flat_index(storage: torch.Tensor, bias: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    # Reads the storage as unpadded N, H, W, C: right when C is a multiple of 8, wrong otherwise.
    channel = torch.arange(storage.numel()) % shape[1]
    return torch.nn.functional.gelu(storage + bias[channel])


EXERCISES = [
    Exercise("11.1", "guided",
             "channel_of(index, shape, layout): the channel of storage element `index` of an N x C x H x W "
             "tensor stored in TensorRT's LINEAR or HWC8 format; None for an HWC8 padding element.",
             _check_channel_of,
             counterexample=lambda index, shape, layout: (index % shape[1] if layout == "HWC8"
                                                          else (index // (shape[2] * shape[3])) % shape[1])),
    Exercise("11.2", "practice",
             "pick_tactic(timings_ms): given repeated timings of each tactic, the tactic a builder should keep.",
             _check_pick_tactic,
             counterexample=lambda timings: min(timings, key=lambda t: min(timings[t]))),
    Exercise("11.3", "open",
             "bias_gelu_hwc8(storage, bias, shape): the plugin's body for HWC8 input, in PyTorch: GELU(x + bias) "
             "on flat HWC8 storage (channels padded to a multiple of 8), returned as flat storage of the same size.",
             _check_hwc8_body, counterexample=_bias_by_flat_index),
]
