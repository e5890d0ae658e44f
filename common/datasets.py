"""The real dataset the precision and sparsity labs measure accuracy on.

Introduced in lab 08 (low precision). `digits()` loads the handwritten-digits set that ships in
`data/digits.csv.gz` (1,797 images of 8x8 pixels, 10 classes; see `data/README.md` for its source
and licence), checks its SHA-256 so that every run scores the same bytes, and splits it into
train / calibration / test parts with a fixed seed, stratified by class. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common import env

DIGITS_FILE = "data/digits.csv.gz"
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
PIXEL_MAX = 16.0  # each pixel counts the "on" bits of a 4x4 block: 0..16


class DatasetError(RuntimeError):
    """The shipped dataset is missing or is not the file the course was checked with."""


@dataclass(frozen=True)
class Split:
    """One part of a dataset: images NCHW float32 in [0, 1] and integer labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, shuffle_seed: int | None = None):
        """Yield (images, labels) batches; shuffled with `shuffle_seed` when given."""
        order = torch.arange(len(self))
        if shuffle_seed is not None:
            order = torch.randperm(len(self), generator=torch.Generator().manual_seed(shuffle_seed))
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            yield self.images[idx], self.labels[idx]


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    calib: Split
    test: Split
    num_classes: int
    image_shape: tuple[int, int, int]

    def summary(self) -> str:
        c, h, w = self.image_shape
        return (f"{self.name}: {self.num_classes} classes, {c}x{h}x{w} images; "
                f"train {len(self.train)}, calibration {len(self.calib)}, held-out test {len(self.test)}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DatasetError(f"{path} is missing: it ships with the course; restore it with "
                           f"`git checkout -- {DIGITS_FILE}`.")
    digest = sha256(path)
    if digest != DIGITS_SHA256:
        raise DatasetError(f"{path} has SHA-256 {digest}, expected {DIGITS_SHA256}: the file was changed. "
                           f"Restore it with `git checkout -- {DIGITS_FILE}`.")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :64].reshape(-1, 1, 8, 8), table[:, 64]


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Index arrays, one per fraction, each holding that share of every class (the last takes the rest)."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, bounds)):
            parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def digits(seed: int = 0, path: Path | None = None) -> Dataset:
    """The digits set split 60% train / 10% calibration / 30% held-out test, stratified by class.

    The calibration part is kept apart from both others: PTQ calibrates on it, so neither the
    training accuracy nor the test score sees the calibration images.
    """
    images, labels = _read_digits(path or env.project_root() / DIGITS_FILE)
    x = torch.from_numpy(images.astype(np.float32) / PIXEL_MAX)
    y = torch.from_numpy(labels)
    train, calib, test = stratified_split(labels, (0.6, 0.1, 0.3), seed)
    return Dataset("digits (UCI optical recognition of handwritten digits)",
                   Split(x[train], y[train]), Split(x[calib], y[calib]), Split(x[test], y[test]),
                   num_classes=10, image_shape=(1, 8, 8))
