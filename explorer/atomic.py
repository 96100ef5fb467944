"""The one atomic-write helper: readers see the old file or the new one, never half of one, even after a crash.

Write a temporary file in the same folder, flush and fsync it, os.replace it over the target, then fsync the
folder so the rename itself is on disk. Used for run records, checkpoints, optimizer state and the decoded-image
cache. It sits at the bottom of the package (beside errors) because both the engine (the decode cache) and the
store (records, checkpoints) need it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(handle)` on a temporary file beside `path`, then move it over `path` durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`data` to `path`, atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def json_safe(value: Any) -> Any:
    """NaN/inf become null (strict JSON readers refuse them); tuples become lists; tensors become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # tensors, numpy arrays and scalars
        return json_safe(value.tolist())
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented, strict JSON (NaN -> null), atomically."""
    return atomic_write_bytes(path, json.dumps(json_safe(obj), indent=2).encode())


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "fsync_folder", "json_safe"]
