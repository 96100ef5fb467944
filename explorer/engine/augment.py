"""Normalization statistics and batched per-sample augmentation (flip, crop) done with tensor ops on the device."""

from __future__ import annotations

import torch

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
