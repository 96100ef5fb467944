"""TrainConfig: a frozen dataclass that describes a training run completely (validated on creation).

Every field is declared once with `setting(...)` (explorer.schema): its range or choices, default, label, help,
scale and format drive validation, the Train tab's widgets, the `train` flags and the JSON Schema.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from explorer import schema
from explorer.errors import ConfigError
from explorer.schema import setting

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "adagrad")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
LOSSES = ("cross_entropy", "nll")
AUGMENTATIONS = ("flip", "crop")
NORMALIZATIONS = ("dataset", "half")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
MAX_EPOCHS = 1000


@dataclass(frozen=True)
class TrainConfig:
    """Everything about how a network is trained. The study's recipe is SGD lr 0.001 momentum 0.9 batch 8."""

    epochs: int = setting(2, label="Epochs", low=1, high=MAX_EPOCHS, step=1, group="optimization")
    batch_size: int = setting(128, searchable=True, label="Batch size", low=1, high=65536, step=8, scale="log",
                              group="optimization")
    test_batch_size: int = setting(1000, label="Test batch size", low=1, high=65536, step=100, scale="log",
                                   group="run", help="Images per batch when evaluating (memory only).")
    optimizer: str = setting("sgd", searchable=True, label="Optimizer", choices=OPTIMIZERS, group="optimization",
                             labels={"sgd": "SGD", "nesterov": "SGD + Nesterov", "adam": "Adam", "adamw": "AdamW",
                                     "adagrad": "Adagrad"})
    lr: float = setting(0.01, searchable=True, label="Learning rate", low=1e-8, high=100.0, step=0.001, fmt="%g",
                        scale="log",
                        group="optimization", help="Peak learning rate (one-cycle and warm-up ramp up to it).")
    momentum: float = setting(0.9, searchable=True, label="Momentum", low=0.0, high=0.999, step=0.05, fmt="%g",
                              group="optimization", help="SGD momentum; Adam's beta1.")
    weight_decay: float = setting(0.0, searchable=True, label="Weight decay", low=0.0, high=1.0, step=1e-4, fmt="%g",
                                  group="optimization")
    schedule: str = setting("constant", searchable=True, label="LR schedule", choices=SCHEDULES, group="optimization",
                            labels={"constant": "constant", "step": "step", "cosine": "cosine",
                                    "onecycle": "one-cycle"})
    warmup_epochs: float = setting(0.0, searchable=True, label="Warm-up epochs", low=0.0, high=float(MAX_EPOCHS),
                                   step=0.5,
                                   fmt="%g", group="optimization", help="At most the number of epochs.")
    # The fast-training tricks of airbench / hlb-CIFAR10, each a switch so its gain can be measured (README table).
    whiten: bool = setting(False, searchable=True, label="Whitened first layer (frozen)", group="optimization",
                           help="Set the first conv's filters to whitening (PCA) filters of the training images' "
                                "patches, kept fixed: later layers start from decorrelated pixels.")
    dirac_init: bool = setting(False, searchable=True, label="Identity init of convs", group="optimization",
                               help="Start each conv after the first as a pass-through of its input channels "
                                    "(dirac), the rest of its filters random.")
    bn_frozen_scale: bool = setting(False, searchable=True, label="BatchNorm scale frozen at 1", group="optimization",
                                    help="Train only BatchNorm's shift: fewer knobs for the optimizer to fight "
                                         "weight decay with.")
    bn_bias_lr: float = setting(1.0, searchable=True, label="BatchNorm shift LR multiplier", low=0.01, high=100.0,
                                step=0.5,
                                fmt="%g", scale="log", group="optimization",
                                help="BatchNorm shifts learn this many times faster than the weights, without "
                                     "weight decay when above 1.")
    loss: str = setting("cross_entropy", searchable=True, label="Loss", choices=LOSSES, group="regularization",
                        labels={"cross_entropy": "cross-entropy", "nll": "NLL (log-softmax)"})
    label_smoothing: float = setting(0.0, searchable=True, search_range=(0.0, 0.3), label="Label smoothing", low=0.0,
                                     high=0.5, step=0.05, fmt="%g",
                                     group="regularization", help="Needs the cross-entropy loss.")
    augment: tuple[str, ...] = setting((), searchable=True, label="Augmentation", choices=AUGMENTATIONS,
                                       group="regularization",
                                       labels={"flip": "horizontal flip", "crop": "random crop"},
                                       items_word="augmentations", max_items=len(AUGMENTATIONS))
    alternate_flips: bool = setting(False, searchable=True, label="Alternating flips", group="regularization",
                                    help="Mirror each image every other epoch (at random only in the first) "
                                         "instead of at random: each pair of epochs sees both sides. Needs flip.")
    crop_padding: int = setting(4, searchable=True, label="Crop padding (pixels)", low=0, high=16, step=1,
                                group="regularization",
                                help="How far a random crop may shift the image.")
    # The augmentations of the best small nets (xvel/cifar10-tiniest, SE-MXResNet): each per image on the device,
    # 0 = off, so a record without them trains as before.
    rotate: float = setting(0.0, searchable=True, search_range=(0.0, 20.0),
                            label="Rotation (± degrees)", low=0.0, high=180.0, step=5.0, fmt="%g",
                            group="regularization", help="Each image turned by its own random angle, e.g. 15.")
    color_jitter: float = setting(0.0, searchable=True, search_range=(0.0, 0.4),
                                  label="Colour jitter strength", low=0.0, high=1.0, step=0.05, fmt="%g",
                                  group="regularization",
                                  help="Brightness, contrast and saturation each scaled by 1 ± this, per image.")
    sharpen: float = setting(0.0, searchable=True, search_range=(0.0, 2.0),
                             label="Sharpening", low=0.0, high=4.0, step=0.5, fmt="%g", group="regularization",
                             help="Half the images sharpened with factor 1 + this (torchvision's adjust_sharpness).")
    cutout: int = setting(0, searchable=True, search_range=(0, 16),
                          label="Cutout square (pixels)", low=0, high=64, step=1, group="regularization",
                          help="A square this size blacked out at a random place in each image, e.g. 8.")
    mixup: float = setting(0.0, searchable=True, search_range=(0.0, 1.0),
                           label="Mixup α", low=0.0, high=4.0, step=0.1, fmt="%g", group="regularization",
                           help="Blend each image with another of the batch (weight ~ Beta(α, α)); the targets blend "
                                "alike. Needs the cross-entropy loss.")
    cutmix: float = setting(0.0, searchable=True, search_range=(0.0, 1.0),
                            label="CutMix α", low=0.0, high=4.0, step=0.1, fmt="%g", group="regularization",
                            help="Paste a box of another image (area ~ Beta(α, α)); with mixup on too, half the "
                                 "batches each. Needs the cross-entropy loss.")
    mix_ramp_epochs: int = setting(0, label="Mixup/CutMix ramp (epochs)", low=0, high=MAX_EPOCHS, step=1,
                                   group="regularization",
                                   help="Grow α linearly to its value over the first N epochs (0 = from the start).")
    normalization: str = setting("dataset", searchable=True, label="Normalization", choices=NORMALIZATIONS,
                                 group="regularization",
                                 labels={"dataset": "per-channel (from the data)", "half": "0.5 / 0.5 (the study's)"})
    # Exponential moving average of the weights (0 = off); evaluation uses the averaged weights.
    ema: float = setting(0.0, searchable=True, label="Weight EMA (0 = off)", low=0.0, high=0.99999, step=0.001,
                         fmt="%g",
                         group="regularization",
                         help="Evaluate an exponential moving average of the weights, e.g. 0.999.")
    tta_flip: bool = setting(False, searchable=True, label="Flip test-time augmentation", aliases=("--tta",),
                             group="regularization",
                             help="Average the prediction of the image and its mirror.")
    tta_translate: int = setting(0, searchable=True, label="Translate TTA (pixels)", low=0, high=4, step=1,
                                 group="regularization",
                                 help="Also average the predictions of the image shifted N pixels up-left and "
                                      "down-right (weights 1/2, 1/4, 1/4): 3x the evaluation passes.")
    seed: int = setting(0, label="Seed", low=0, high=2**31 - 1, step=1, group="run")
    device: str = setting("auto", label="Device", choices=DEVICES, widget="segmented_control", group="run",
                          help="auto picks CUDA when there is a GPU, else the CPU.")
    # Autocast for the training step: auto = bf16 where the chip computes it natively (CUDA; CPUs with
    # AVX512-BF16/AMX: 1.5-1.9x faster steps here), else fp32. Weights and the loss stay fp32.
    precision: str = setting("auto", searchable=True, label="Precision", choices=PRECISIONS,
                             widget="segmented_control", group="run",
                             help="Autocast of the training step. auto: bf16 where the chip has bf16 instructions "
                                  "(CUDA, recent CPUs: 1.5-1.9x faster), else fp32. Evaluation on the CPU is fp32.")
    log_every: int = setting(50, label="Log loss every N batches", low=1, high=100000, step=10, group="run")

    def __post_init__(self) -> None:
        schema.freeze_lists(self)
        schema.check(self)
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.warmup_epochs > self.epochs:
            warmup = schema.number_text(self.warmup_epochs)  # 1000, not 1000.0
            raise ConfigError(f"warmup_epochs: {warmup} is more than epochs ({self.epochs}); "
                              f"use at most {self.epochs} warm-up epochs or train longer.")
        if self.loss == "nll" and self.label_smoothing:
            raise ConfigError("label_smoothing needs the cross_entropy loss; set it to 0 or use cross_entropy.")
        if self.alternate_flips and "flip" not in self.augment:
            raise ConfigError("alternate_flips needs the flip augmentation; add flip to augment or turn it off.")
        if self.loss == "nll" and (self.mixup or self.cutmix):
            raise ConfigError("mixup and cutmix blend the targets, which the nll loss cannot take (it needs one "
                              "class per image); set mixup and cutmix to 0 or use the cross_entropy loss.")
        if len(set(self.augment)) != len(self.augment):
            raise ConfigError(f"augment: {', '.join(self.augment)} names one augmentation twice; list each once.")

    def to_dict(self) -> dict:
        return schema.to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        return schema.from_dict(cls, data, "training config")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (None values are ignored, so CLI flags can be passed as they are)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["TrainConfig"]
