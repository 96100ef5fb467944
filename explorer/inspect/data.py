"""A look at the training data: images per class, sample images, the trainer's normalization, and its
augmentation applied to fixed images. Pure functions over an explorer.engine Dataset (no Streamlit).

The augmentation preview calls the trainer's own `augment_batch` with the settings the trainer derives from a
TrainConfig (`trainer_augmentation`, the same rule as explorer.engine.train), on the CPU with a seeded
generator: what a user sees is what a training batch gets (on a GPU the random draws differ, not their kind).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from explorer.engine.augment import Augmentation, normalization
from explorer.engine.config import TrainConfig
from explorer.engine.dataset import Dataset

TILE_MIN = 56  # small images are enlarged by a whole factor (nearest neighbour: pixels stay sharp) to this
TILE_MAX = 128  # large images are shrunk to this longest side
GAP = 2  # pixels between tiles (transparent)
LABEL_COLOR = (128, 128, 128, 255)  # mid grey reads on the light and the dark theme


@dataclass(frozen=True)
class ClassCount:
    name: str
    train: int
    test: int


def class_counts(dataset: Dataset) -> list[ClassCount]:
    """Images per class in the training and the test split, in class order."""
    n = dataset.num_classes
    train = torch.bincount(dataset.train_y, minlength=n).tolist()
    test = torch.bincount(dataset.test_y, minlength=n).tolist()
    return [ClassCount(name, int(a), int(b)) for name, a, b in zip(dataset.classes, train, test)]


def _split(dataset: Dataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (dataset.train_x, dataset.train_y) if split == "train" else (dataset.test_x, dataset.test_y)


def sample_indices(labels: torch.Tensor, num_classes: int, per_class: int) -> list[list[int]]:
    """Up to `per_class` indices of each class, spread evenly over the class's images (deterministic, and not
    only the first files of a folder, which are often near-duplicates)."""
    rows = []
    for k in range(num_classes):
        idx = (labels == k).nonzero().flatten()
        if len(idx) > per_class:
            idx = idx[torch.linspace(0, len(idx) - 1, per_class).round().long()]
        rows.append(idx.tolist())
    return rows


def tile_scale(h: int, w: int, smallest: int = TILE_MIN) -> float:
    """How much a tile is scaled: a whole factor up to `smallest` for small images, down to TILE_MAX for big
    ones."""
    side = max(h, w)
    if side < smallest:
        return float(math.ceil(smallest / side))
    return min(1.0, max(TILE_MAX, smallest) / side)


def _rgba_tiles(images: torch.Tensor, scale: float) -> np.ndarray:
    """N x C x H x W uint8 -> N x h x w x 4 uint8 (grey repeated over RGB), scaled by `scale`."""
    x = images if images.shape[1] == 3 else images[:, :1].expand(-1, 3, -1, -1)
    if scale >= 1:
        s = int(scale)
        x = x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
    else:
        size = (max(1, round(images.shape[2] * scale)), max(1, round(images.shape[3] * scale)))
        x = torch.nn.functional.interpolate(x.float(), size=size, mode="area").round().clamp(0, 255).byte()
    rgb = x.permute(0, 2, 3, 1).numpy()
    alpha = np.full(rgb.shape[:3] + (1,), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=3)


def tile_grid(images: torch.Tensor, columns: int, smallest: int = TILE_MIN,
              rows: list[list[int]] | None = None) -> np.ndarray:
    """The images as one RGBA picture: `rows` (lists of indices into `images`, a row each; default: `columns`
    per row in order), tiles `GAP` pixels apart on a transparent background, scaled by tile_scale."""
    _, _, h, w = images.shape
    scale = tile_scale(h, w, smallest)
    tiles = _rgba_tiles(images, scale) if len(images) else np.zeros((0, 1, 1, 4), np.uint8)
    th, tw = tiles.shape[1:3] if len(images) else (round(h * scale), round(w * scale))
    rows = rows if rows is not None else [list(range(i, min(i + columns, len(images))))
                                          for i in range(0, len(images), columns)]
    grid = np.zeros((len(rows) * (th + GAP) - GAP, columns * (tw + GAP) - GAP, 4), dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, i in enumerate(row[:columns]):
            y, x = r * (th + GAP), c * (tw + GAP)
            grid[y:y + th, x:x + tw] = tiles[i]
    return grid


def _label_column(names: list[str], row_height: int) -> np.ndarray:
    """Class names, one per grid row, right-aligned, grey on transparent."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    width = 12 + max(int(font.getlength(name)) for name in names)
    image = Image.new("RGBA", (width, max(1, len(names) * row_height - GAP)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for r, name in enumerate(names):
        draw.text((width - 8, r * row_height + (row_height - GAP) / 2), name, fill=LABEL_COLOR, font=font,
                  anchor="rm")
    return np.asarray(image)


def sample_grid(dataset: Dataset, per_class: int = 8, split: str = "train", labels: bool = True,
                max_classes: int | None = None) -> np.ndarray:
    """One RGBA picture: a row of up to `per_class` images for each class (the first `max_classes` classes;
    empty cells where a class has fewer images), the class names on the left when `labels`."""
    x, y = _split(dataset, split)
    shown = min(dataset.num_classes, max_classes or dataset.num_classes)
    rows = sample_indices(y, shown, per_class)
    flat = [i for row in rows for i in row]
    picked = x[flat] if flat else x[:0]
    positions, start = [], 0
    for row in rows:
        positions.append(list(range(start, start + len(row))))
        start += len(row)
    grid = tile_grid(picked, per_class, rows=positions)
    if not labels:
        return grid
    row_height = (grid.shape[0] + GAP) // max(1, len(rows))
    names = _label_column(dataset.classes[:shown], row_height)
    return np.concatenate([names, grid[:names.shape[0]]], axis=1)


def trainer_augmentation(cfg: TrainConfig) -> Augmentation:
    """What the trainer does to a batch under `cfg` (the engine's one rule)."""
    return Augmentation.of(cfg)


def preview_indices(labels: torch.Tensor, num_classes: int, n: int) -> list[int]:
    """`n` training images taking the classes in turn (class 0, 1, ..., then each class's next image)."""
    per_class = sample_indices(labels, num_classes, math.ceil(n / max(1, num_classes)))
    picked = []
    for depth in range(max((len(r) for r in per_class), default=0)):
        picked += [row[depth] for row in per_class if depth < len(row)]
    return picked[:n]


def augmentation_preview(dataset: Dataset, train_cfg: TrainConfig, seed: int, n: int = 16
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(original, augmented) uint8 n x C x H x W: the same training images before and after the trainer's
    per-batch augmentation, drawn from a CPU generator seeded with `seed` (mixup/cutmix weights from a numpy
    generator seeded with seed + 2: the trainer's, when `seed` is the trainer's augmentation seed). Mixup and
    cutmix are shown at their full alpha, as after their ramp."""
    idx = preview_indices(dataset.train_y, dataset.num_classes, n)
    original = dataset.train_x[idx]
    augmentation = trainer_augmentation(train_cfg)
    generator = torch.Generator().manual_seed(seed)
    augmented = augmentation.images(original, generator)
    if augmentation.mixes:
        # Mixing pixels equals mixing the normalized images (an affine map; the weights sum to 1).
        epoch = max(1, augmentation.mix_ramp_epochs)
        augmented, _ = augmentation.mix(augmented.float(), dataset.train_y[idx], dataset.num_classes, epoch,
                                        np.random.default_rng(seed + 2), generator)
    if augmented.dtype != torch.uint8:
        augmented = augmented.round().clamp(0, 255).to(torch.uint8)
    return original, augmented


@dataclass(frozen=True)
class ChannelStats:
    channel: str
    data_mean: float  # of the training images, in [0, 1]
    data_std: float
    mean: float  # what the trainer subtracts (x / 255 - mean) / std
    std: float


def normalization_stats(dataset: Dataset, train_cfg: TrainConfig) -> list[ChannelStats]:
    """Per channel: the training data's mean and std, and the mean and std the trainer normalizes with under
    train_cfg.normalization ("dataset": the data's own, "half": 0.5 / 0.5)."""
    mean, std = normalization(dataset, train_cfg.normalization)
    c = dataset.input_shape[0]
    names = {1: ["grey"], 3: ["red", "green", "blue"]}.get(c, [f"channel {i}" for i in range(c)])
    return [ChannelStats(name, dm, ds, m, s)
            for name, dm, ds, m, s in zip(names, dataset.mean, dataset.std, mean, std)]
