"""A generated, learnable 10-class 32x32 RGB task (class = shape + colour, random position, size, noise)."""

from __future__ import annotations

import torch

from explorer.errors import DataError

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 2000, 500
SYNTHETIC_CLASSES = ["disk", "square", "ring", "cross", "triangle", "h-stripes", "v-stripes", "diamond",
                     "x-mark", "checker"]
# One distinct colour per class (RGB in [0, 1]); jitter makes colours overlap so shapes matter too.
SYNTHETIC_COLORS = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.9, 0.9, 0.1), (0.9, 0.1, 0.9),
                    (0.1, 0.9, 0.9), (0.95, 0.55, 0.1), (0.55, 0.1, 0.9), (0.95, 0.95, 0.95), (0.4, 0.6, 0.3)]


def _synthetic_sizes(source: str, arg: str) -> tuple[int, int]:
    if not arg:
        return SYNTHETIC_TRAIN, SYNTHETIC_TEST
    try:
        n_train = int(arg)
    except ValueError:
        raise DataError(f"{source!r}: expected synthetic:N with N a whole number of training images.") from None
    if not 20 <= n_train <= 200_000:
        raise DataError(f"{source!r}: use from 20 to 200,000 training images.")
    return n_train, max(n_train // 4, 10)


def synthetic_images(count: int, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` images (uint8 count x 3 x size x size) of 10 coloured shapes on noisy backgrounds, balanced."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(count) % 10)[torch.randperm(count, generator=gen)]
    background = torch.rand(count, 3, 1, 1, generator=gen) * 0.5 + 0.1
    images = background + 0.12 * torch.randn(count, 3, size, size, generator=gen)
    centre = torch.rand(count, 2, generator=gen) * (size * 0.4) + size * 0.3
    radius = torch.rand(count, generator=gen) * (size * 0.12) + size * 0.16
    jitter = (torch.rand(count, 3, generator=gen) - 0.5) * 0.5
    coords = torch.arange(size, dtype=torch.float32)
    for k in range(10):
        idx = (labels == k).nonzero().flatten()
        if len(idx) == 0:
            continue
        # dx, dy: n x size x size offsets of every pixel from the shape's centre
        dx = coords.view(1, 1, size) - centre[idx, 0].view(-1, 1, 1)
        dy = coords.view(1, size, 1) - centre[idx, 1].view(-1, 1, 1)
        mask = _shape_mask(k, dx, dy, radius[idx].view(-1, 1, 1)).unsqueeze(1)
        colour = (torch.tensor(SYNTHETIC_COLORS[k]) + jitter[idx]).clamp(0, 1).view(-1, 3, 1, 1)
        images[idx] = torch.where(mask, colour + 0.05 * images[idx], images[idx])
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def _shape_mask(k: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    ax, ay, dist = dx.abs(), dy.abs(), (dx.square() + dy.square()).sqrt()
    box = torch.maximum(ax, ay) < r
    masks = {
        0: lambda: dist < r,
        1: lambda: torch.maximum(ax, ay) < r * 0.85,
        2: lambda: (dist < r) & (dist > r * 0.55),
        3: lambda: ((ax < r / 3.5) & (ay < r)) | ((ay < r / 3.5) & (ax < r)),
        4: lambda: (dy > -r) & (dy < r) & (ax < (dy + r) / 2),
        5: lambda: box & ((dy / 2).floor() % 2 == 0),
        6: lambda: box & ((dx / 2).floor() % 2 == 0),
        7: lambda: ax + ay < r,
        8: lambda: box & (((dx - dy).abs() < 1.8) | ((dx + dy).abs() < 1.8)),
        9: lambda: box & (((dx / 3).floor() + (dy / 3).floor()) % 2 == 0),
    }
    return masks[k]()
