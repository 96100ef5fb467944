"""Dataset: decoded images as uint8 tensors in memory, with their fingerprint and channel statistics."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class Dataset:
    """Decoded images as uint8 N x C x H x W tensors, int64 labels, and what the model needs to know."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    fingerprint: str
    mean: list[float]
    std: list[float]
    # What the loader did that the user should know (e.g. images resized to the common size).
    notes: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        c, h, w = self.input_shape
        return (f"{self.name}: {len(self.train_y):,} train / {len(self.test_y):,} test images, "
                f"{c}x{h}x{w}, {self.num_classes} classes")


def _finish(name: str, train_x, train_y, test_x, test_y, classes: list[str], notes: list[str] | None = None
            ) -> Dataset:
    """Contiguous tensors, fingerprint and per-channel statistics."""
    train_x, test_x = train_x.contiguous(), test_x.contiguous()
    train_y, test_y = train_y.to(torch.int64).contiguous(), test_y.to(torch.int64).contiguous()
    mean, std = channel_stats(train_x)
    return Dataset(name, train_x, train_y, test_x, test_y, list(classes),
                   fingerprint(train_x, train_y, test_x, test_y, classes), mean, std, list(notes or []))


def fingerprint(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                classes: list[str]) -> str:
    """A stable hash of the decoded content (not of paths or times): same images -> same fingerprint."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update("\n".join(classes).encode())
    for tensor in (train_x, train_y, test_x, test_y):
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], in chunks (no float copy of everything)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for chunk in x.split(4096):
        chunk = chunk.to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return [round(float(m) / 255, 6) for m in mean], [max(round(float(s) / 255, 6), 1e-3) for s in std]
