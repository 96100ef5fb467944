"""The one device resolver, used by training, evaluation, the CLI and the app.

"auto" picks CUDA when there is a GPU, else the CPU; "cuda" without a GPU is a DeviceError (the CLI exits 2 with
its one line, the app shows it with st.error) rather than a silent fall-back to a slower device.
"""

from __future__ import annotations

import torch

from explorer.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ConfigError):
    """A device that was asked for but is not there (or does not exist)."""


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device `name` picks; DeviceError says what to pick instead."""
    if isinstance(name, torch.device):
        name = name.type
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda.")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but no CUDA GPU is available here; "
                          "use --device auto (or cpu).")
    return torch.device(name)


__all__ = ["DEVICES", "DeviceError", "resolve_device"]
