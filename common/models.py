"""The small model zoo the labs share, built in PyTorch and seeded.

Introduced in lab 01 (batching). `resnet(depth)` is a ResNet-style CNN (basic blocks for 18/34,
bottlenecks for 50); `TransformerBlock` is a pre-norm encoder block written with plain MatMul,
Softmax and LayerNorm so that its ONNX graph is the textbook one TensorRT fuses. `build(name)`
returns a model with deterministic weights and `example_input(name, batch)` a matching input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .env import Scale, as_scale


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.shortcut = _shortcut(in_ch, ch * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * 4)
        self.shortcut = _shortcut(in_ch, ch * 4, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


_RESNET_LAYOUT = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """ResNet-style image classifier on NCHW input (ImageNet layout: 7x7 stem, 4 stages)."""

    def __init__(self, depth: int = 18, num_classes: int = 1000, width: int = 64):
        super().__init__()
        if depth not in _RESNET_LAYOUT:
            raise ValueError(f"depth must be one of {sorted(_RESNET_LAYOUT)}, got {depth}")
        block, counts = _RESNET_LAYOUT[depth]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, in_ch = [], width
        for i, count in enumerate(counts):
            ch = width * 2**i
            for j in range(count):
                stages.append(block(in_ch, ch, 2 if (j == 0 and i > 0) else 1))
                in_ch = ch * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block on (batch, seq, d_model): attention then MLP."""

    def __init__(self, d_model: int = 768, n_heads: int = 12, d_ff: int = 3072):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, s, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head))
        attn = torch.matmul(torch.softmax(scores, dim=-1), v)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, s, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class DigitsCNN(nn.Module):
    """A small CNN for the 8x8 digits of `common.datasets` (labs 08 and 09).

    Three 3x3 convolutions (width, 2*width, 4*width channels) with BatchNorm and ReLU, one 2x2
    max-pool, global average pooling and a linear classifier. `width` scales every layer, so the
    same architecture serves the accuracy runs (narrow) and the speed runs (wide).
    """

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


@dataclass(frozen=True)
class ModelSpec:
    """How to build a zoo model and what one input sample looks like (without the batch dim)."""

    name: str
    sample_shape: tuple[int, ...]
    kwargs: dict
    unit: str   # what one batch item is, for throughput ("img", "seq")


def _specs(full: bool) -> dict[str, ModelSpec]:
    # Full scale is what labs use on a GPU; the small scale keeps CPU runs in CI to seconds.
    res = 224 if full else 64
    seq, d = (128, 768) if full else (32, 128)
    return {
        "resnet18": ModelSpec("resnet18", (3, res, res), {"depth": 18, "width": 64 if full else 16}, "img"),
        "resnet50": ModelSpec("resnet50", (3, res, res), {"depth": 50, "width": 64 if full else 16}, "img"),
        "transformer": ModelSpec("transformer", (seq, d),
                                 {"d_model": d, "n_heads": 12 if full else 4, "d_ff": 4 * d}, "seq"),
    }


def spec(name: str, scale: "Scale | str" = "full") -> ModelSpec:
    specs = _specs(as_scale(scale) is Scale.FULL)
    if name not in specs:
        raise KeyError(f"unknown model {name!r}; the zoo has {sorted(specs)}")
    return specs[name]


def build(name: str, scale: str = "full", seed: int = 0) -> nn.Module:
    """A zoo model in eval mode with weights drawn from `seed` (same weights on every machine)."""
    s = spec(name, scale)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(**s.kwargs) if name.startswith("resnet") else TransformerBlock(**s.kwargs)
        for m in model.modules():   # non-trivial BatchNorm statistics, as a trained model has
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def example_input(name: str, batch_size: int, scale: str = "full", seed: int = 0,
                  device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A seeded random input for `name` with the given batch size."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *spec(name, scale).sample_shape), generator=gen)
    return x.to(device=device, dtype=dtype)


def forward_with_hooks(model: nn.Module, x: torch.Tensor, hooks) -> torch.Tensor:
    """`model(x)` without gradients, with forward hooks — (module, hook) pairs — registered for that call only."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for handle in handles:
            handle.remove()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
