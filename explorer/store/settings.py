"""Where things live and how many runs train at once: one place for the environment settings.

EXPLORER_RUNS_DIR (default ./checkpoints): the run folders. EXPLORER_DATA_DIR (default ./data): where CIFAR-10 is
downloaded and image folders are looked for. EXPLORER_MAX_RUNS (default 2): runs that train at once across every
process using the same runs folder. The CLI, the app and the runner all read them here.
"""

from __future__ import annotations

import os
from pathlib import Path

from explorer.errors import ConfigError

RUNS_DIR_ENV, DEFAULT_RUNS_DIR = "EXPLORER_RUNS_DIR", "checkpoints"
DATA_DIR_ENV, DEFAULT_DATA_DIR = "EXPLORER_DATA_DIR", "data"
MAX_RUNS_ENV, DEFAULT_MAX_RUNS = "EXPLORER_MAX_RUNS", 2


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


__all__ = ["default_runs_dir", "default_data_dir", "max_runs", "RUNS_DIR_ENV", "DATA_DIR_ENV", "MAX_RUNS_ENV"]
