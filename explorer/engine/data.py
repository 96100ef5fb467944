"""Data sources -> uint8 tensors in memory (N x C x H x W); batched augmentation with tensor ops.

Sources (one string picks one, used by the app, the CLI and tests):
- "synthetic" (2,000 train / 500 test) or "synthetic:N" (N train, N/4 test): a generated, learnable
  10-class 32x32 RGB task (class = shape + colour, random position, size and noise). Works offline.
- "cifar10": torchvision's CIFAR-10 in `data_dir` (downloaded on first use).
- "cifar10:DIR": a copy on disk (DIR holds cifar-10-batches-py, the archive, or a train/ + test/ image folder).
- "folder:PATH": PATH/train/<class>/* and PATH/test/<class>/* (no test/: a seeded 10 % hold-out per class).

Images are decoded once; the decoded arrays are cached on disk beside the data when the folder is this
user's own and writable (else under `data_dir/cache`, else ~/.cache/explorer), keyed by the file listing, so
the next start reads one file instead of decoding every image again. Loaded datasets are also kept in
memory (the two most recent).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import torch

from explorer.engine.dataset import Dataset, _finish
from explorer.engine.folders import _folder_cached, list_folder
from explorer.engine.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_TRAIN, _synthetic_sizes, synthetic_images
from explorer.errors import DataError

_MEMO: dict[tuple, Dataset] = {}
_MEMO_LOCK = threading.Lock()
_MEMO_SIZE = 2


def canonical_source(source: Any) -> Any:
    """One name for one dataset: "synthetic:2000" (the default size) and " synthetic" are "synthetic",
    "synthetic:0500" is "synthetic:500". Records are written and read through it, so runs of one dataset group
    together in the Runs table and its Pareto fronts, older records included. A non-string is returned as is."""
    if not isinstance(source, str):
        return source
    text = source.strip()
    kind, _, arg = text.partition(":")
    if kind != "synthetic":
        return text
    if not arg.strip():
        return "synthetic"
    try:
        size = int(arg)
    except ValueError:
        return text  # not a valid source: loading it says why
    return "synthetic" if size == SYNTHETIC_TRAIN else f"synthetic:{size}"


def load_dataset(source: str, data_dir: str | Path = "data") -> Dataset:
    """The dataset `source` names (see the module docstring); DataError says what is wrong and what to use."""
    kind, arg = _parse_source(source)
    source = canonical_source(source)
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
            raise not_a_folder(source, path)
    elif kind == "cifar10" and arg and not Path(arg).expanduser().is_dir():
        raise DataError(f"{source}: the folder {arg} does not exist. {_alternatives()}")


def not_a_folder(source: str, path: Path) -> DataError:
    """The error for a folder source whose path is not a folder: say what is there and what is expected."""
    expected = "Give the folder that holds train/<class>/ images (one sub-folder per class)."
    if path.is_file():
        return DataError(f"{source}: {path} is a file, not a folder. {expected} Its folder is {path.parent}.")
    if path.exists():
        return DataError(f"{source}: {path} exists but is not a folder. {expected}")
    return DataError(f"{source}: the folder {path} does not exist (nothing is at that path). {expected}")


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


def _synthetic(source: str, arg: str) -> Dataset:
    n_train, n_test = _synthetic_sizes(source, arg)
    x, y = synthetic_images(n_train + n_test, seed=0)
    return _finish(source, x[:n_train], y[:n_train], x[n_train:], y[n_train:], SYNTHETIC_CLASSES)


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


def _folder(source: str, path: Path, data_dir: Path) -> Dataset:
    if not path.is_dir():
        raise not_a_folder(source, path)
    splits, signature = list_folder(path)
    key = hashlib.blake2b(signature.encode(), digest_size=8).hexdigest()
    return _memoized((source, str(path.resolve()), key), lambda: _folder_cached(source, path, data_dir, splits, key))


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
