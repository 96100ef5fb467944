"""Reading files a user names (an image to predict, a checkpoint, an image in a training folder).

Two rules, one place: only regular files are read (a device such as /dev/zero never ends, a FIFO blocks until
someone writes to it, a socket cannot be read), and never more than a stated number of bytes. The path is opened
without blocking (a FIFO opens at once) and checked on the open descriptor, so it cannot be swapped in between.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from explorer.errors import ExplorerError

# The largest image file the 64-Mpixel rule lets through: 64 M pixels of 8-bit RGBA stored uncompressed
# (4 bytes a pixel, the deepest common photo layout) plus 1 MiB of headers and metadata.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 4 * MAX_IMAGE_PIXELS + 2**20
KINDS = {stat.S_ISDIR: "a folder", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
         stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket"}


def _kind(mode: int) -> str:
    return next((name for test, name in KINDS.items() if test(mode)), "not a regular file")


def _refusal(path: str | os.PathLike) -> str | None:
    """Why `path` is not read when opening it failed (a socket cannot be opened at all), if it is not a file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _not_regular(path, mode)


def _not_regular(path: str | os.PathLike, mode: int) -> str:
    return f"{path} is {_kind(mode)}, not a regular file; only files are read."


def open_regular(path: str | os.PathLike, max_bytes: int | None, error: type[ExplorerError]) -> BinaryIO:
    """`path` opened for reading; `error` (one line naming the path) for a missing or unreadable path, anything
    but a regular file, or a file over `max_bytes` (None: no size rule)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file; check the path.") from None
    except OSError as err:
        raise error(_refusal(path) or f"{path}: cannot open it ({err.strerror or err}); give a regular file.") \
            from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(_not_regular(path, info.st_mode))
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(f"{path} is {info.st_size:,} bytes, over the limit of {max_bytes:,} bytes; "
                        "nothing was read.")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, max_bytes: int, error: type[ExplorerError]) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes` of them (see open_regular for the refusals)."""
    with open_regular(path, max_bytes, error) as handle:
        try:
            data = handle.read(max_bytes + 1)  # +1: a file that grew since fstat is still caught
        except OSError as err:
            raise error(f"{path}: cannot read it ({err.strerror or err}).") from None
    if len(data) > max_bytes:
        raise error(f"{path} grew past the limit of {max_bytes:,} bytes while it was read; nothing was used.")
    return data


__all__ = ["MAX_IMAGE_PIXELS", "MAX_IMAGE_BYTES", "open_regular", "read_regular"]
