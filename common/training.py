"""Training and scoring loops for the labs that trade accuracy against speed.

Introduced in lab 08 (low precision); lab 09 (sparsity) fine-tunes with the same loop. The loops are
plain PyTorch: seeded, full-batch evaluation, no data augmentation, so a run on the same machine
gives the same accuracy. `train` returns the loss per epoch so a lab can show convergence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from common.datasets import Split


@dataclass
class TrainResult:
    epochs: int
    seconds: float
    loss_per_epoch: list[float] = field(default_factory=list)


def train(model: nn.Module, data: Split, epochs: int, lr: float = 3e-3, batch_size: int = 64,
          seed: int = 0, device: str = "cpu", weight_decay: float = 0.0,
          after_step=None) -> TrainResult:
    """Train `model` in place with Adam and cross-entropy; returns the mean loss of each epoch.

    `after_step(model)` runs after every optimiser step: sparsity fine-tuning uses it to keep
    pruned weights at zero when the pruning library does not.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    torch.manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    result = TrainResult(epochs=epochs, seconds=0.0)
    start = time.perf_counter()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for x, y in data.batches(batch_size, shuffle_seed=seed * 1000 + epoch):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(y)
            count += len(y)
        sched.step()
        result.loss_per_epoch.append(total / count)
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


@torch.no_grad()
def predict(model: nn.Module, data: Split, device: str = "cpu", dtype: torch.dtype | None = None,
            batch_size: int = 512) -> torch.Tensor:
    """Predicted class of every sample (under autocast to `dtype` when given)."""
    model.to(device).eval()
    preds = []
    for x, _ in data.batches(batch_size):
        x = x.to(device)
        if dtype is None:
            logits = model(x)
        else:
            with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
                logits = model(x)
        preds.append(logits.argmax(dim=1).cpu())
    return torch.cat(preds)


def accuracy(model: nn.Module, data: Split, device: str = "cpu", dtype: torch.dtype | None = None) -> float:
    """Top-1 accuracy in percent on `data`."""
    return accuracy_of(predict(model, data, device, dtype), data.labels)


def accuracy_of(predictions, labels) -> float:
    """Top-1 accuracy in percent of predicted classes against labels (tensors or arrays)."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    return 100.0 * (predictions == labels).float().mean().item()


def standard_error_points(acc_percent: float, n: int) -> float:
    """One binomial standard error of an accuracy measured on `n` samples, in points."""
    p = acc_percent / 100.0
    return 100.0 * (p * (1 - p) / n) ** 0.5
