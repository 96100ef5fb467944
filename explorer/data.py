"""Data sources -> uint8 tensors in memory (N x C x H x W); batched augmentation with tensor ops.

Sources (one string picks one, used by the app, the CLI and tests):
- "synthetic" (2,000 train / 500 test) or "synthetic:N" (N train, N/4 test): a generated, learnable
  10-class 32x32 RGB task (class = shape + colour, random position, size and noise). Works offline.
- "cifar10": torchvision's CIFAR-10 in `data_dir` (downloaded on first use).
- "cifar10:DIR": a copy on disk (DIR holds cifar-10-batches-py, the archive, or a train/ + test/ image folder).
- "folder:PATH": PATH/train/<class>/* and PATH/test/<class>/* (no test/: a seeded 10 % hold-out per class).

Images are decoded once; the decoded arrays are cached on disk beside the data (or under `data_dir/cache`
or ~/.cache/explorer when that folder is read-only), keyed by the file listing, so the next start reads
one file instead of decoding every image again. Loaded datasets are also kept in memory (the two most recent).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from explorer.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
CACHE_VERSION = 1  # bump when the decoded layout changes: old caches are then ignored
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 2000, 500
SYNTHETIC_CLASSES = ["disk", "square", "ring", "cross", "triangle", "h-stripes", "v-stripes", "diamond",
                     "x-mark", "checker"]
# One distinct colour per class (RGB in [0, 1]); jitter makes colours overlap so shapes matter too.
SYNTHETIC_COLORS = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.9, 0.9, 0.1), (0.9, 0.1, 0.9),
                    (0.1, 0.9, 0.9), (0.95, 0.55, 0.1), (0.55, 0.1, 0.9), (0.95, 0.95, 0.95), (0.4, 0.6, 0.3)]
HALF = (0.5, 0.5)


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


# ---------------------------------------------------------------- loading


_MEMO: dict[tuple, Dataset] = {}
_MEMO_LOCK = threading.Lock()
_MEMO_SIZE = 2


def load_dataset(source: str, data_dir: str | Path = "data") -> Dataset:
    """The dataset `source` names (see the module docstring); DataError says what is wrong and what to use."""
    kind, arg = _parse_source(source)
    source = source.strip()
    if kind == "synthetic":
        return _memoized((source,), lambda: _synthetic(source, arg))
    if kind == "cifar10" and not arg:
        return _memoized((source, str(Path(data_dir).resolve())), lambda: _cifar10_download(source, Path(data_dir)))
    if kind == "cifar10":
        return _cifar10_dir(source, Path(arg).expanduser(), Path(data_dir))
    return _folder(source, Path(arg).expanduser(), Path(data_dir))


def check_source(source: str, data_dir: str | Path = "data") -> None:
    """Raise DataError for a source that cannot load, without decoding anything (quick: for forms and jobs)."""
    kind, arg = _parse_source(source)
    if kind == "synthetic" and arg:
        _synthetic_sizes(source, arg)
    elif kind == "folder":
        path = Path(arg).expanduser()
        if not path.is_dir():
            raise DataError(f"{source}: the folder {path} does not exist. Give a folder with train/<class>/ images.")
    elif kind == "cifar10" and arg and not Path(arg).expanduser().is_dir():
        raise DataError(f"{source}: the folder {arg} does not exist. {_alternatives()}")


def _parse_source(source: str) -> tuple[str, str]:
    if not isinstance(source, str) or not source.strip():
        raise DataError("no data source given; use synthetic, cifar10, cifar10:DIR or folder:PATH.")
    kind, _, arg = source.strip().partition(":")
    if kind in ("synthetic", "cifar10") or (kind == "folder" and arg):
        return kind, arg
    raise DataError(f"unknown data source {source!r}; use synthetic, synthetic:N, cifar10, cifar10:DIR or folder:PATH.")


def _memoized(key: tuple, build) -> Dataset:
    with _MEMO_LOCK:
        if key in _MEMO:
            return _MEMO[key]
    dataset = build()
    with _MEMO_LOCK:
        _MEMO[key] = dataset
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
    return dataset


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


# ---------------------------------------------------------------- synthetic


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


def _synthetic(source: str, arg: str) -> Dataset:
    n_train, n_test = _synthetic_sizes(source, arg)
    x, y = synthetic_images(n_train + n_test, seed=0)
    return _finish(source, x[:n_train], y[:n_train], x[n_train:], y[n_train:], SYNTHETIC_CLASSES)


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


# ---------------------------------------------------------------- CIFAR-10 (torchvision)


def _alternatives() -> str:
    return ("Use cifar10:DIR for a copy already on disk, folder:PATH for an image folder "
            "(train/<class>/*, test/<class>/*, e.g. the JPEG CIFAR-10), or synthetic (built in, offline).")


def _cifar10_download(source: str, data_dir: Path) -> Dataset:
    if not (data_dir / "cifar-10-batches-py").is_dir():
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"cannot create the data folder {data_dir}: {err.strerror}. {_alternatives()}") from None
    return _torchvision_cifar(source, data_dir, download=True)


def _cifar10_dir(source: str, path: Path, data_dir: Path) -> Dataset:
    if (path / "cifar-10-batches-py").is_dir() or (path / "cifar-10-python.tar.gz").is_file():
        key = (source, str(path.resolve()))
        return _memoized(key, lambda: _torchvision_cifar(source, path, download=False))
    if path.name == "cifar-10-batches-py" and path.is_dir():
        return _memoized((source, str(path.resolve())), lambda: _torchvision_cifar(source, path.parent, False))
    if (path / "train").is_dir():
        return _folder(source, path, data_dir)
    raise DataError(f"{path} holds no CIFAR-10 copy (expected cifar-10-batches-py/, cifar-10-python.tar.gz, "
                    f"or train/<class>/ image folders). {_alternatives()}")


def _torchvision_cifar(source: str, root: Path, download: bool) -> Dataset:
    import torchvision  # only this source needs it

    has_archive = (root / "cifar-10-python.tar.gz").is_file()
    try:
        # download=True with the archive present only checks and extracts it (no network).
        parts = [torchvision.datasets.CIFAR10(str(root), train=train, download=download or has_archive)
                 for train in (True, False)]
    except (OSError, RuntimeError) as err:
        what = "could not be downloaded" if download else "is missing or corrupted"
        raise DataError(f"CIFAR-10 in {root} {what} ({err}). {_alternatives()}") from None
    xs = [torch.from_numpy(p.data).permute(0, 3, 1, 2) for p in parts]  # N x H x W x C -> N x C x H x W
    ys = [torch.tensor(p.targets) for p in parts]
    return _finish(source, xs[0], ys[0], xs[1], ys[1], list(parts[0].classes))


# ---------------------------------------------------------------- image folders


def _folder(source: str, path: Path, data_dir: Path) -> Dataset:
    if not path.is_dir():
        raise DataError(f"{source}: the folder {path} does not exist. Give a folder with train/<class>/ images.")
    splits = _list_splits(path)
    signature = _listing_signature(splits)
    key = hashlib.blake2b(signature.encode(), digest_size=8).hexdigest()
    return _memoized((source, str(path.resolve()), key), lambda: _folder_cached(source, path, data_dir, splits, key))


def _list_splits(path: Path) -> dict[str, dict[str, list[Path]]]:
    """{"train": {class: [files]}, "test": {...}} (test may be absent); DataError on a layout we cannot use."""
    if (path / "train").is_dir():
        splits = {"train": _list_classes(path / "train")}
        if (path / "test").is_dir():
            splits["test"] = _list_classes(path / "test")
            _check_same_classes(path, splits)
    elif any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        splits = {"train": _list_classes(path)}  # PATH/<class>/* : everything is training data, hold out a part
    else:
        raise DataError(f"{path} has no train/ folder. Expected {path}/train/<class>/*.png|jpg "
                        f"(and optionally {path}/test/<class>/*).")
    return splits


def _list_classes(split_dir: Path) -> dict[str, list[Path]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{split_dir} has {len(classes)} class folder(s); a classifier needs at least 2 "
                        f"(one sub-folder per class, e.g. {split_dir}/cat/, {split_dir}/dog/).")
    listing = {}
    for name in classes:
        files = sorted(e.path for e in os.scandir(split_dir / name)
                       if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {split_dir / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}). "
                            f"Add images or remove the folder.")
        listing[name] = [Path(f) for f in files]
    return listing


def _check_same_classes(path: Path, splits: dict) -> None:
    train, test = set(splits["train"]), set(splits["test"])
    if train != test:
        only_train, only_test = sorted(train - test), sorted(test - train)
        raise DataError(f"{path}: train/ and test/ have different class folders "
                        f"(only in train: {', '.join(only_train) or 'none'}; "
                        f"only in test: {', '.join(only_test) or 'none'}). Make both hold the same class names.")


def _listing_signature(splits: dict) -> str:
    """Relative names, sizes and modification times: any change to the files gives a new cache key."""
    lines = [f"v{CACHE_VERSION} holdout {HOLDOUT_FRACTION} {HOLDOUT_SEED}"]
    for split, classes in splits.items():
        for name, files in classes.items():
            for f in files:
                st = f.stat()
                lines.append(f"{split}/{name}/{f.name} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(lines)


def _cache_candidates(path: Path, data_dir: Path, key: str) -> list[Path]:
    fallback_name = f"folder-{path.name}-{key}.pt"
    return [path / f".explorer-cache-{key}.pt", data_dir / "cache" / fallback_name,
            Path.home() / ".cache" / "explorer" / fallback_name]


def _folder_cached(source: str, path: Path, data_dir: Path, splits: dict, key: str) -> Dataset:
    candidates = _cache_candidates(path, data_dir, key)
    for cache in candidates:
        if cache.is_file():
            try:
                saved = torch.load(cache, weights_only=True)
                return Dataset(name=source, **saved)
            except Exception:  # a damaged or foreign cache file is only a missed shortcut: decode again
                continue
    dataset = _decode_folder(source, splits)
    _write_cache(dataset, candidates)
    return dataset


def _write_cache(dataset: Dataset, candidates: list[Path]) -> None:
    payload = {k: getattr(dataset, k) for k in ("train_x", "train_y", "test_x", "test_y", "classes",
                                                  "fingerprint", "mean", "std", "notes")}
    for cache in candidates:
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(payload, tmp)
            os.replace(tmp, cache)  # atomic: a reader never sees half a cache
            return
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    dataset.notes.append("could not write a decoded-image cache anywhere; the next start decodes again")


def _decode_folder(source: str, splits: dict) -> Dataset:
    classes = list(splits["train"])
    decoded = {split: _decode_split(listing) for split, listing in splits.items()}
    arrays = [a for images, _ in decoded.values() for a in images]
    size, notes = _common_size(arrays)
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    tensors = {split: (_stack(images, size, channels), torch.tensor(labels))
               for split, (images, labels) in decoded.items()}
    train_x, train_y = tensors["train"]
    if "test" in tensors:
        test_x, test_y = tensors["test"]
    else:
        train_x, train_y, test_x, test_y = holdout_split(train_x, train_y, HOLDOUT_FRACTION, HOLDOUT_SEED)
    if "test" not in splits:
        notes.append(f"no test/ folder: {len(test_y):,} training images ({HOLDOUT_FRACTION:.0%} per class, "
                     f"seed {HOLDOUT_SEED}) held out for testing")
    return _finish(source, train_x, train_y, test_x, test_y, classes, notes)


def _decode_split(listing: dict[str, list[Path]]) -> tuple[list[np.ndarray], list[int]]:
    files = [f for fs in listing.values() for f in fs]
    labels = [i for i, fs in enumerate(listing.values()) for _ in fs]
    # PIL releases the GIL while decoding, so threads use every core without worker processes.
    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1)) as pool:
        images = list(pool.map(_decode_image, files, chunksize=256))
    return images, labels


def _decode_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
            return np.asarray(image.convert("L" if grey else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}. Remove or replace the file.") from None


def _common_size(arrays: list[np.ndarray]) -> tuple[tuple[int, int], list[str]]:
    """The most common (H, W), and a note saying how many images are resized to it."""
    sizes = Counter(a.shape[:2] for a in arrays)
    (size, count), = sizes.most_common(1)
    notes = []
    if len(sizes) > 1:
        notes.append(f"{len(arrays) - count:,} of {len(arrays):,} images are not {size[0]}x{size[1]} "
                     f"(the most common size); they were resized to it")
    return size, notes


def _stack(images: list[np.ndarray], size: tuple[int, int], channels: int) -> torch.Tensor:
    """uint8 N x C x H x W; greyscale images in an RGB set are repeated over three channels."""
    from PIL import Image

    out = np.empty((len(images), size[0], size[1], channels), dtype=np.uint8)
    for i, a in enumerate(images):
        if a.shape[:2] != size:
            a = np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BILINEAR))
        out[i] = a[..., None] if a.ndim == 2 else a if channels == 3 else a[..., :1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def holdout_split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """A seeded, per-class hold-out: `fraction` of each class (at least one image when it has two) for test."""
    gen = torch.Generator().manual_seed(seed)
    test_idx = []
    for k in torch.unique(y).tolist():
        idx = (y == k).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = max(round(len(idx) * fraction), 1) if len(idx) >= 2 else 0
        test_idx.append(idx[:n_test])
    test_idx = torch.cat(test_idx).sort().values
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[test_idx] = False
    return x[keep], y[keep], x[test_idx], y[test_idx]


# ---------------------------------------------------------------- what can be picked


def available_sources(data_dir: str | Path = "data") -> list[dict]:
    """What the user can pick: name (the source string), label, available, why; synthetic is always there."""
    data_dir = Path(data_dir)
    sources = [{"name": "synthetic", "label": "Synthetic shapes (built in, 2,000 images)", "available": True,
                "why": "generated on the fly, works offline", "kind": "synthetic"}]
    has_cifar = (data_dir / "cifar-10-batches-py").is_dir()
    sources.append({"name": "cifar10", "label": "CIFAR-10 (torchvision)", "available": has_cifar, "kind": "cifar10",
                    "why": f"found in {data_dir}" if has_cifar else
                    f"not in {data_dir}; downloaded (~170 MB) on first use, needs internet"})
    for folder in _candidate_folders(data_dir):
        sources.append({"name": f"folder:{folder}", "label": f"Image folder {folder.name}", "available": True,
                        "why": f"train/<class>/ folders in {folder}", "kind": "folder"})
    return sources


def _candidate_folders(data_dir: Path) -> list[Path]:
    roots = [data_dir] + [p for p in (os.environ.get("EXPLORER_DATA_FOLDERS") or "").split(os.pathsep) if p]
    found = []
    for root in map(Path, roots):
        if (root / "train").is_dir():
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if p.is_dir() and (p / "train").is_dir()))
    return found


# ---------------------------------------------------------------- normalization and augmentation


def normalization(dataset: Dataset, mode: str) -> tuple[list[float], list[float]]:
    """(mean, std) per channel for uint8/255 input: the training data's ("dataset") or the study's 0.5/0.5."""
    if mode == "half":
        return [HALF[0]] * dataset.input_shape[0], [HALF[1]] * dataset.input_shape[0]
    return list(dataset.mean), list(dataset.std)


def augment_batch(x: torch.Tensor, flip: bool, crop_padding: int, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Per-sample random horizontal flip and random crop (zero padding + random offsets) of a B x C x H x W batch.

    Both are one gather each (rows, then columns with the flip folded into the column index), so the cost does
    not depend on the batch's randomness and the batch stays on its device.
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
        flipped = torch.rand(b, 1, generator=generator, device=device) < 0.5
        cols = torch.where(flipped, w - 1 - cols, cols)
    cols = cols + dx  # b x w, column of the padded image each output column reads
    if p:
        rows = torch.arange(h, device=device).expand(b, h) + dy  # b x h
        x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, x.shape[3]))
    return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))
