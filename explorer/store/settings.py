"""Where things live and how many runs train at once: one place for the environment settings.

EXPLORER_RUNS_DIR (default ./checkpoints): the run folders. EXPLORER_DATA_DIR (default ./data): where CIFAR-10 is
downloaded and image folders are looked for. EXPLORER_MAX_RUNS (default 2): runs that train at once across every
process using the same runs folder. The CLI, the app and the runner all read them here.

The app (not the CLI, whose user can read what they like anyway) only reads data folders under the allowed data
roots: the data folder, every folder in EXPLORER_DATA_FOLDERS and every root in EXPLORER_DATA_ROOTS (both lists
separated by os.pathsep). A path typed in a browser must not reach /etc or someone's home folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from explorer.errors import ConfigError, DataError

RUNS_DIR_ENV, DEFAULT_RUNS_DIR = "EXPLORER_RUNS_DIR", "checkpoints"
DATA_DIR_ENV, DEFAULT_DATA_DIR = "EXPLORER_DATA_DIR", "data"
MAX_RUNS_ENV, DEFAULT_MAX_RUNS = "EXPLORER_MAX_RUNS", 2
DATA_FOLDERS_ENV, DATA_ROOTS_ENV = "EXPLORER_DATA_FOLDERS", "EXPLORER_DATA_ROOTS"


def default_runs_dir() -> Path:
    """`$EXPLORER_RUNS_DIR`, else `checkpoints` in the current directory."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def default_data_dir() -> Path:
    """`$EXPLORER_DATA_DIR`, else `data` in the current directory."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def max_runs() -> int:
    """`$EXPLORER_MAX_RUNS` (at least 1), else 2."""
    text = os.environ.get(MAX_RUNS_ENV) or str(DEFAULT_MAX_RUNS)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_RUNS_ENV}={text!r} is not a whole number >= 1; unset it or set e.g. 2.")
    return value


def check_runs_dir(path: str | os.PathLike) -> Path:
    """The runs folder, created if missing; ConfigError (with what to do) when it cannot be created or written."""
    path = Path(path)
    fix = f"set {RUNS_DIR_ENV} (or --runs-dir) to a folder you can write."
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the runs folder {path}: {err.strerror or err}; {fix}") from None
    # access() also answers False on a read-only file system, for root too.
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"the runs folder {path} is read-only: runs cannot be recorded there; {fix}")
    return path


def allowed_data_roots() -> list[Path]:
    """The folders under which the app may read data: the data folder, EXPLORER_DATA_FOLDERS, EXPLORER_DATA_ROOTS."""
    listed = [p for env in (DATA_FOLDERS_ENV, DATA_ROOTS_ENV) for p in (os.environ.get(env) or "").split(os.pathsep)]
    roots = [default_data_dir(), *(Path(p) for p in listed if p.strip())]
    return [root.expanduser().resolve() for root in roots]


def check_app_source(source: str) -> None:
    """DataError when a data source typed in the app names a folder outside the allowed data roots.

    Symlinks are resolved first, so a link inside a root that points elsewhere is refused too."""
    kind, _, arg = str(source).strip().partition(":")
    if kind not in ("folder", "cifar10") or not arg:
        return  # synthetic, or torchvision's CIFAR-10 in the data folder
    path = Path(arg).expanduser().resolve()
    roots = allowed_data_roots()
    if not any(path.is_relative_to(root) for root in roots):
        raise DataError(f"{arg} is not under an allowed data root ({', '.join(map(str, roots))}). Put the data "
                        f"in one of them, or list its parent folder in {DATA_ROOTS_ENV} before starting the app.")


__all__ = ["default_runs_dir", "default_data_dir", "max_runs", "check_runs_dir", "allowed_data_roots",
           "check_app_source", "RUNS_DIR_ENV", "DATA_DIR_ENV", "MAX_RUNS_ENV", "DATA_FOLDERS_ENV", "DATA_ROOTS_ENV"]
