"""Image folders (train/<class>/*, test/<class>/*): listing, decoding with PIL threads, the decode cache."""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from explorer.atomic import atomic_write
from explorer.engine.dataset import Dataset, _finish
from explorer.errors import DataError
from explorer.files import MAX_IMAGE_BYTES, open_regular

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
CACHE_VERSION = 1  # bump when the decoded layout changes: old caches are then ignored
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
# What a damaged, truncated or foreign cache file raises when read: a missed shortcut, decoded again quietly.
# Anything else (e.g. a cache whose fields no longer match Dataset) is a bug that makes every start slow: logged.
EXPECTED_CACHE_ERRORS = (OSError, EOFError, RuntimeError, pickle.UnpicklingError)
LOG = logging.getLogger(__name__)
_LOGGED: set[str] = set()  # cache files already logged once in this process


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
        raise DataError(f"{path} has no train/ folder and no class sub-folders; it holds {_found(path)}. Expected "
                        f"{path}/train/<class>/<image> (one sub-folder per class; images {_suffixes()}), and "
                        f"optionally {path}/test/<class>/<image>.")
    return splits


def _suffixes() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES)[:6]) + ", …"


def _found(path: Path, shown: int = 3) -> str:
    """What a folder holds, briefly: 'nothing', or '12 files (a.png, b.png, c.png, …)'."""
    names = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    if not names:
        return "nothing"
    more = ", …" if len(names) > shown else ""
    return f"{len(names)} file(s) ({', '.join(names[:shown])}{more})"


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
    shared = [data_dir / "cache" / fallback_name, Path.home() / ".cache" / "explorer" / fallback_name]
    return ([path / f".explorer-cache-{key}.pt"] if _ours_and_writable(path) else []) + shared


def _ours_and_writable(path: Path) -> bool:
    """Whether a cache may live beside the images: only in a folder this user owns and may write. Someone
    else's folder gets no file of ours, and a cache planted there is never read."""
    try:
        return path.stat().st_uid == os.geteuid() and os.access(path, os.W_OK)
    except OSError:
        return False


def _folder_cached(source: str, path: Path, data_dir: Path, splits: dict, key: str) -> Dataset:
    candidates = _cache_candidates(path, data_dir, key)
    for cache in candidates:
        if cache.is_file():
            dataset = _read_cache(source, cache)
            if dataset is not None:
                return dataset
    dataset = _decode_folder(source, splits)
    _write_cache(dataset, candidates)
    return dataset


def _read_cache(source: str, cache: Path) -> Dataset | None:
    """The dataset a cache file holds; None (decode again) when it cannot be used."""
    try:
        return Dataset(name=source, **torch.load(cache, weights_only=True))
    except EXPECTED_CACHE_ERRORS:
        return None
    except Exception as err:  # anything else: the images are decoded again, and the cause said once
        if str(cache) not in _LOGGED:
            _LOGGED.add(str(cache))
            LOG.warning("the decoded-image cache %s cannot be used (%s: %s); decoding the images again. A cache "
                        "from another version is replaced; if this repeats, report it.", cache,
                        type(err).__name__, err)
        return None


def _write_cache(dataset: Dataset, candidates: list[Path]) -> None:
    payload = {k: getattr(dataset, k) for k in ("train_x", "train_y", "test_x", "test_y", "classes",
                                                  "fingerprint", "mean", "std", "notes")}
    for cache in candidates:
        try:
            atomic_write(cache, lambda handle: torch.save(payload, handle))  # a reader never sees half a cache
            return
        except (OSError, RuntimeError):
            # A read-only or full folder: OSError from Python, RuntimeError from torch.save's own writer. Try the next.
            continue
    dataset.notes.append("could not write a decoded-image cache anywhere; the next start decodes again")


def list_folder(path: Path) -> tuple[dict[str, dict[str, list[Path]]], str]:
    """The splits of an image folder and their listing signature; DataError names a file that cannot be read
    (a symlink loop, a folder without permission such as those under /proc)."""
    try:
        splits = _list_splits(path)
        return splits, _listing_signature(splits)
    except OSError as err:
        name = err.filename or path
        raise DataError(f"cannot read {name} in the image folder {path}: {err.strerror or err}. Fix or remove it, "
                        "or pick a folder that holds only train/<class>/ images.") from None


def _has_train_folder(source: str) -> bool:
    return (Path(source.partition(":")[2].strip()).expanduser() / "train").is_dir()


def _first_names(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f", … {len(names) - shown:,} more" if len(names) > shown else "")


def _decode_folder(source: str, splits: dict) -> Dataset:
    classes = list(splits["train"])
    decoded = {split: _decode_split(listing) for split, listing in splits.items()}
    skipped = [f for split in decoded.values() for f in split[2]]
    arrays = [a for images, _, _ in decoded.values() for a in images]
    if not arrays:
        raise DataError(f"{source}: every image is over Pillow's decompression-bomb limit; nothing to load.")
    size, notes = _common_size(arrays)
    if skipped:
        notes.append(_bomb_note(skipped))
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    tensors = {split: (_stack(images, size, channels), torch.tensor(labels, dtype=torch.long))
               for split, (images, labels, _) in decoded.items()}
    train_x, train_y = tensors["train"]
    if "test" in tensors:
        test_x, test_y = tensors["test"]
    else:
        train_x, train_y, test_x, test_y = holdout_split(train_x, train_y, HOLDOUT_FRACTION, HOLDOUT_SEED)
    if "test" not in splits and not _has_train_folder(source):
        notes.append(f"no train/ folder: its {len(classes):,} sub-folders ({_first_names(classes)}) are taken as "
                     "the classes, every image in them as training data")
    if "test" not in splits:
        notes.append(f"no test/ folder: {len(test_y):,} training images ({HOLDOUT_FRACTION:.0%} per class, "
                     f"seed {HOLDOUT_SEED}) held out for testing")
    return _finish(source, train_x, train_y, test_x, test_y, classes, notes)


def _decode_split(listing: dict[str, list[Path]]) -> tuple[list[np.ndarray], list[int], list[Path]]:
    """Decoded images and their labels, and the files skipped as decompression bombs."""
    from PIL import Image

    files = [f for fs in listing.values() for f in fs]
    labels = [i for i, fs in enumerate(listing.values()) for _ in fs]
    # PIL releases the GIL while decoding, so threads use every core without worker processes.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1)) as pool:
        # Set here, not in the threads (the filters are global): images past Pillow's limit are skipped and
        # named in the dataset's notes; its raw DecompressionBombWarning would only repeat that, without the name.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        images = list(pool.map(_decode_image, files, chunksize=256))
    kept = [(image, label) for image, label in zip(images, labels) if image is not None]
    skipped = [f for f, image in zip(files, images) if image is None]
    return [image for image, _ in kept], [label for _, label in kept], skipped


def _bomb_note(skipped: list[Path]) -> str:
    from PIL import Image

    names = ", ".join(str(f) for f in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return (f"skipped {len(skipped)} image(s) over Pillow's decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels (not decoded): {names}")


def _decode_image(path: Path) -> np.ndarray | None:
    """The image as H x W (grey) or H x W x 3; None for a decompression bomb (too many pixels to decode safely)."""
    from PIL import Image, UnidentifiedImageError

    # A regular file within the size rule (a FIFO or device dropped in after the listing never blocks a decode).
    with open_regular(path, MAX_IMAGE_BYTES, DataError) as handle:
        try:
            with Image.open(handle) as image:
                # Only the header is read so far: refuse a huge image before its pixels are decoded.
                if Image.MAX_IMAGE_PIXELS and image.size[0] * image.size[1] > Image.MAX_IMAGE_PIXELS:
                    return None
                grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
                return np.asarray(image.convert("L" if grey else "RGB"))
        except Image.DecompressionBombError:
            return None
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
