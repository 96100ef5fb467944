"""Normalization statistics and batched per-sample augmentation done with tensor ops on the device: flip, crop,
rotation, colour jitter, sharpening, cutout, and the batch mixes mixup and cutmix (soft targets)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from explorer.engine.config import TrainConfig
from explorer.engine.dataset import Dataset

HALF = (0.5, 0.5)


def normalization(dataset: Dataset, mode: str) -> tuple[list[float], list[float]]:
    """(mean, std) per channel for uint8/255 input: the training data's ("dataset") or the study's 0.5/0.5."""
    if mode == "half":
        return [HALF[0]] * dataset.input_shape[0], [HALF[1]] * dataset.input_shape[0]
    return list(dataset.mean), list(dataset.std)


def flip_and_padding(augment: tuple[str, ...], crop_padding: int) -> tuple[bool, int]:
    """(flip, crop padding) as the trainer applies a TrainConfig's `augment` and `crop_padding`: the padding
    counts only while "crop" is among the augmentations."""
    return "flip" in augment, crop_padding if "crop" in augment else 0


def augment_batch(x: torch.Tensor, flip: bool, crop_padding: int, generator: torch.Generator | None = None,
                  flips: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample random horizontal flip and random crop (zero padding + random offsets) of a B x C x H x W batch.

    Both are one gather each (rows, then columns with the flip folded into the column index), so the cost does
    not depend on the batch's randomness and the batch stays on its device. `flips` (B bools, with `flip`)
    says which images to mirror instead of drawing it (alternating flips).
    """
    if not flip and not crop_padding:
        return x
    b, c, h, w = x.shape
    p = crop_padding
    device = x.device
    if p:
        x = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=device)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=device)
    else:
        dy = dx = torch.zeros(b, 1, dtype=torch.long, device=device)
    cols = torch.arange(w, device=device).expand(b, w)
    if flip:
        flipped = (torch.rand(b, 1, generator=generator, device=device) < 0.5 if flips is None
                   else flips.view(b, 1).to(device))
        cols = torch.where(flipped, w - 1 - cols, cols)
    cols = cols + dx  # b x w, column of the padded image each output column reads
    if p:
        rows = torch.arange(h, device=device).expand(b, h) + dy  # b x h
        x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, x.shape[3]))
    return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


# --- the per-image additions (rotation, colour jitter, sharpening, cutout) and the batch mixes (mixup, cutmix) ---
# All per-sample: each image of the batch draws its own angle, factors, square or partner, with tensor ops on the
# batch's device (transforms.v2 on a batch would draw one set of parameters for the whole batch).

SHARPEN_KERNEL = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))  # torchvision's adjust_sharpness smoothing
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class Augmentation:
    """Everything the trainer does to a training batch, read once from a TrainConfig (the preview reads it too)."""

    flip: bool = False
    crop_padding: int = 0
    rotate: float = 0.0
    color_jitter: float = 0.0
    sharpen: float = 0.0
    cutout: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_ramp_epochs: int = 0

    @classmethod
    def of(cls, cfg: TrainConfig) -> Augmentation:
        flip, padding = flip_and_padding(cfg.augment, cfg.crop_padding)
        return cls(flip, padding, cfg.rotate, cfg.color_jitter, cfg.sharpen, cfg.cutout, cfg.mixup, cfg.cutmix,
                   cfg.mix_ramp_epochs)

    def names(self) -> list[str]:
        """What is on, in words, in the order it is applied."""
        parts = [("horizontal flip", self.flip), (f"crop ±{self.crop_padding} px", self.crop_padding),
                 (f"rotation ±{self.rotate:g}°", self.rotate),
                 (f"colour jitter {self.color_jitter:g}", self.color_jitter),
                 (f"sharpening ×{1 + self.sharpen:g}", self.sharpen), (f"cutout {self.cutout} px", self.cutout),
                 (f"mixup α {self.mixup:g}", self.mixup), (f"cutmix α {self.cutmix:g}", self.cutmix)]
        return [text for text, on in parts if on]

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)

    def images(self, x: torch.Tensor, generator: torch.Generator | None = None,
               flips: torch.Tensor | None = None) -> torch.Tensor:
        """The per-image augmentations of a uint8 B x C x H x W batch: uint8 when only flip/crop are on (they move
        pixels), else float pixels in [0, 255]."""
        x = augment_batch(x, self.flip, self.crop_padding, generator, flips)
        if not (self.rotate or self.color_jitter or self.sharpen or self.cutout):
            return x
        x = x.float()
        if self.rotate:
            x = rotate_batch(x, self.rotate, generator)
        if self.color_jitter:
            x = jitter_batch(x, self.color_jitter, generator)
        if self.sharpen:
            x = sharpen_batch(x, self.sharpen, generator)
        if self.cutout:
            x = cutout_batch(x, self.cutout, generator)
        return x

    def alpha(self, value: float, epoch: int) -> float:
        """A mix's alpha at `epoch` (1-based): ramped linearly from alpha / N to alpha over the first N epochs."""
        return value * min(1.0, epoch / self.mix_ramp_epochs) if self.mix_ramp_epochs else value

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, epoch: int, rng: np.random.Generator,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed batch, soft targets B x classes summing to 1): mixup or cutmix (half the batches each when both
        are on) with a partner from a permutation of the batch and a mixing weight per image."""
        use_cutmix = bool(self.cutmix) and (not self.mixup or rng.random() < 0.5)
        alpha = self.alpha(self.cutmix if use_cutmix else self.mixup, epoch)
        lam = torch.from_numpy(rng.beta(alpha, alpha, len(y))).float().to(x.device)
        partner = torch.randperm(len(y), generator=generator, device=x.device)
        if use_cutmix:
            x, lam = cutmix_batch(x, x[partner], lam, generator)
        else:
            weight = lam.view(-1, 1, 1, 1)
            x = x * weight + x[partner] * (1 - weight)
        one_hot = nn.functional.one_hot(y, num_classes).float()
        return x, one_hot * lam.view(-1, 1) + one_hot[partner] * (1 - lam.view(-1, 1))


def _uniform(b: int, low: float, high: float, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(b, generator=generator, device=x.device)


def rotate_batch(x: torch.Tensor, degrees: float, generator: torch.Generator | None = None,
                 angles: torch.Tensor | None = None) -> torch.Tensor:
    """Each image rotated about its centre by its own angle in ±`degrees` (or the given `angles`, in degrees),
    bilinear, the corners filled with 0."""
    b = x.shape[0]
    theta = (angles if angles is not None else _uniform(b, -degrees, degrees, x, generator)).to(x) * math.pi / 180
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # b x 2 x 3
    grid = nn.functional.affine_grid(matrix, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jitter_batch(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness, contrast and (colour images) saturation, each scaled by its own factor in 1 ± `strength` per
    image; pixels in [0, 255]."""
    b, c = x.shape[:2]
    factor = [_uniform(b, max(0.0, 1 - strength), 1 + strength, x, generator).view(b, 1, 1, 1) for _ in range(3)]
    x = x * factor[0]
    gray = _gray(x)
    x = (x - gray.mean((2, 3), keepdim=True)) * factor[1] + gray.mean((2, 3), keepdim=True)
    if c == 3:
        gray = _gray(x)
        x = (x - gray) * factor[2] + gray
    return x.clamp(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    return (x * torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


def sharpen_batch(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Half the images (at random) sharpened as torchvision's adjust_sharpness with factor 1 + `strength`: the
    image pushed away from its 3x3 smoothing (the border pixels kept as they are)."""
    b, c = x.shape[:2]
    kernel = torch.tensor(SHARPEN_KERNEL, device=x.device, dtype=x.dtype) / 13
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = nn.functional.conv2d(x, kernel.expand(c, 1, 3, 3), groups=c)
    chosen = torch.rand(b, generator=generator, device=x.device) < 0.5
    factor = torch.where(chosen, 1 + strength, 1.0).view(b, 1, 1, 1).to(x)
    return (smooth + factor * (x - smooth)).clamp(0, 255)


def cutout_batch(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A `size` x `size` square (at most the image) set to 0 at a random place inside each image."""
    b, _, h, w = x.shape
    sh, sw = min(size, h), min(size, w)
    top = torch.randint(0, h - sh + 1, (b, 1), generator=generator, device=x.device)
    left = torch.randint(0, w - sw + 1, (b, 1), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device).expand(b, h)
    cols = torch.arange(w, device=x.device).expand(b, w)
    inside = (((rows >= top) & (rows < top + sh)).view(b, 1, h, 1)
              & ((cols >= left) & (cols < left + sw)).view(b, 1, 1, w))
    return x.masked_fill(inside, 0)


def cutmix_batch(x: torch.Tensor, other: torch.Tensor, lam: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image gets a box of its partner covering about 1 - lam of it (CutMix); returns the mixed batch and
    the share of each image that is still its own (lam corrected to the box as cut, clipped at the border)."""
    b, _, h, w = x.shape
    side = (1 - lam).sqrt()
    box_h, box_w = (side * h).round().long().view(b, 1), (side * w).round().long().view(b, 1)
    cy = torch.randint(0, h, (b, 1), generator=generator, device=x.device)
    cx = torch.randint(0, w, (b, 1), generator=generator, device=x.device)
    top, bottom = (cy - box_h // 2).clamp(0, h), (cy - box_h // 2 + box_h).clamp(0, h)
    left, right = (cx - box_w // 2).clamp(0, w), (cx - box_w // 2 + box_w).clamp(0, w)
    rows = torch.arange(h, device=x.device).expand(b, h)
    cols = torch.arange(w, device=x.device).expand(b, w)
    inside = (((rows >= top) & (rows < bottom)).view(b, 1, h, 1) & ((cols >= left) & (cols < right)).view(b, 1, 1, w))
    own = 1 - ((bottom - top) * (right - left)).view(b).float() / (h * w)
    return torch.where(inside, other, x), own
