"""Lab 10's two models, an MLP and a small CNN, sized by scale, with their seeded inputs and FP32
references."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from common import env
from common.cases import tf32_mode
from common.models import DigitsCNN

DTYPE = {"fp16": torch.float16, "fp32": torch.float32}

#: The lab's models per scale: full on a GPU (large enough that kernels, not launches, set the run
#: time), small on a CPU (and for ONNX Runtime, which runs on the CPU everywhere).
SIZES = {
    env.Scale.FULL: {"mlp": {"width": 2048, "depth": 4, "batch": 2048},
                     "convnet": {"width": 64, "hw": 64, "batch": 64}},
    env.Scale.SMALL: {"mlp": {"width": 256, "depth": 4, "batch": 64},
                      "convnet": {"width": 16, "hw": 32, "batch": 16}},
}


def sizes(name: str, scale: "env.Scale | str") -> dict[str, int]:
    """The sizes of the lab model `name` at `scale` (validated: a wrong scale or name says what exists)."""
    at_scale = SIZES[env.as_scale(scale)]
    if name not in at_scale:
        raise KeyError(f"unknown lab model {name!r}; the lab has {sorted(at_scale)}")
    return dict(at_scale[name])


def mlp(width: int, depth: int = 4, seed: int = 0) -> nn.Sequential:
    """`depth` x (Linear(width, width) + GELU), seeded, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.GELU()]
        return nn.Sequential(*layers).eval()


def convnet(width: int, seed: int = 0) -> DigitsCNN:
    """Lab 08's CNN (three 3x3 convolutions with BatchNorm and ReLU, a pool, a classifier) on RGB
    input, seeded, with the non-trivial BatchNorm statistics a trained model has."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN(width, in_channels=3)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@dataclass
class LabModel:
    """One of the lab's models: the FP32 module on the CPU (what exports and references come from),
    its batch and one sample's shape."""

    name: str
    module: nn.Module
    batch: int
    sample_shape: tuple[int, ...]
    description: str

    def example(self, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
        """A seeded input batch (the same values on every machine, before the cast)."""
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((self.batch, *self.sample_shape), generator=gen).to(device=device, dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last(device) else x

    def channels_last(self, device: str) -> bool:
        """Convolutions on a GPU run in channels-last (NHWC), the layout tensor-core kernels use."""
        return device == "cuda" and len(self.sample_shape) == 3

    def on(self, device: str, precision: str) -> nn.Module:
        """A copy of the module on `device` in `precision` (channels-last for the CNN on a GPU)."""
        module = copy.deepcopy(self.module).to(device=device, dtype=DTYPE[precision]).eval()
        return module.to(memory_format=torch.channels_last) if self.channels_last(device) else module

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The FP32 output for `x`'s values (after its rounding to x's precision), TF32 off, on the CPU."""
        module = self.on(x.device.type, "fp32")
        with torch.inference_mode(), tf32_mode(False):
            return module(x.float()).float().cpu()


def lab_model(name: str, scale: "env.Scale | str", **overrides: int) -> LabModel:
    """The lab's "mlp" or "convnet" at `scale` ("full" or "small"); see :data:`SIZES`. `overrides`
    replace sizes (``depth=8`` gives a deeper MLP of the same layers: a related model)."""
    size = {**sizes(name, scale), **overrides}
    if name == "mlp":
        return LabModel(name, mlp(size["width"], size["depth"]), size["batch"], (size["width"],),
                        f"{size['depth']} x (Linear {size['width']} + GELU), batch {size['batch']}")
    hw = size["hw"]
    return LabModel(name, convnet(size["width"]), size["batch"], (3, hw, hw),
                    f"3 conv3x3 + BN + ReLU (width {size['width']}), {hw}x{hw} RGB, batch {size['batch']}")
