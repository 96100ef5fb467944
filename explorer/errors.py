"""Typed errors. Every message says what is wrong and what to do about it."""


class ExplorerError(Exception):
    """Base of every error the package raises on purpose (UI and CLI show the message, no traceback)."""


class ConfigError(ExplorerError, ValueError):
    """An architecture or training configuration that cannot be built."""


class DataError(ExplorerError):
    """A dataset that cannot be found, read or used."""


class TrainingError(ExplorerError):
    """A run that cannot continue (NaN loss, device missing, ...)."""


class CheckpointError(ExplorerError):
    """A checkpoint file that is refused (not ours, corrupted, mismatching, unsafe)."""
