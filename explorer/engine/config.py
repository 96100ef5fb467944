"""TrainConfig: a frozen dataclass that describes a training run completely (validated on creation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from explorer.arch.config import _check_bool, _check_choice, _check_float, _check_int, _known_keys
from explorer.errors import ConfigError

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "adagrad")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
LOSSES = ("cross_entropy", "nll")
AUGMENTATIONS = ("flip", "crop")
NORMALIZATIONS = ("dataset", "half")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about how a network is trained. The study's recipe is SGD lr 0.001 momentum 0.9 batch 8."""

    epochs: int = 2
    batch_size: int = 128
    test_batch_size: int = 1000
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()
    crop_padding: int = 4
    normalization: str = "dataset"
    # Exponential moving average of the weights (0 = off); evaluation uses the averaged weights.
    ema: float = 0.0
    tta_flip: bool = False
    seed: int = 0
    device: str = "auto"
    # Autocast for the training step: auto = bf16 where the chip computes it natively (CUDA; CPUs with
    # AVX512-BF16/AMX: 1.5-1.9x faster steps here), else fp32. Weights and the loss stay fp32.
    precision: str = "auto"
    log_every: int = 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", tuple(self.augment))
        _check_int("epochs", self.epochs, 1, 1000)
        _check_int("batch_size", self.batch_size, 1, 65536)
        _check_int("test_batch_size", self.test_batch_size, 1, 65536)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_float("lr", self.lr, 1e-8, 100.0)
        _check_float("momentum", self.momentum, 0.0, 0.999)
        _check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_float("warmup_epochs", self.warmup_epochs, 0.0, float(self.epochs))
        _check_choice("loss", self.loss, LOSSES)
        _check_float("label_smoothing", self.label_smoothing, 0.0, 0.5)
        if self.loss == "nll" and self.label_smoothing:
            raise ConfigError("label_smoothing needs the cross_entropy loss; set it to 0 or use cross_entropy.")
        for aug in self.augment:
            _check_choice("augment", aug, AUGMENTATIONS)
        _check_int("crop_padding", self.crop_padding, 0, 16)
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_float("ema", self.ema, 0.0, 0.99999)
        _check_bool("tta_flip", self.tta_flip)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_int("log_every", self.log_every, 1, 100000)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"augment": list(self.augment)}

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        return cls(**_known_keys(cls, data, "training config"))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (None values are ignored, so CLI flags can be passed as they are)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["TrainConfig"]
