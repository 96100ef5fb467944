"""The study's networks, a modern one, and budget-optimal ones, by name; training recipes by name."""

from __future__ import annotations

from explorer import schema
from explorer.arch.config import ArchConfig, ConvBlock


def _study_net(c1: int, c2: int, f1: int, f2: int, **toggles) -> ArchConfig:
    """The tutorial's shape: two 5x5 valid convs each followed by 2x2 max-pool, then two hidden FC layers."""
    conv = (ConvBlock(c1, kernel=5, padding="valid", pool="max"), ConvBlock(c2, kernel=5, padding="valid", pool="max"))
    return ArchConfig(conv=conv, fc=(f1, f2), **toggles)


def _vgg_like(widths: tuple[int, ...], pools: tuple[int, ...], **options) -> ArchConfig:
    """3x3 same-padding convs; a 2x2 max-pool after the blocks whose 0-based index is in `pools`."""
    blocks = tuple(ConvBlock(w, kernel=3, padding="same", pool="max" if i in pools else "none")
                   for i, w in enumerate(widths))
    return ArchConfig(conv=blocks, batchnorm=True, **options)


PRESETS: dict[str, ArchConfig] = {
    # The PyTorch tutorial net the study started from: 62,006 params, 54 % after 2 epochs.
    "tutorial": _study_net(6, 16, 120, 84),
    # Study 2-1: widths 32/64/128/64 - 267,530 params, over the 256k budget.
    "study-wide": _study_net(32, 64, 128, 64),
    # Study 2-2: widths 25/50/100/50 - 163,860 params.
    "study-2-2": _study_net(25, 50, 100, 50),
    # Study 3: 2-2 with BatchNorm after every conv and hidden FC - 164,310 params, 73-74 % (the final net).
    "study-bn": _study_net(25, 50, 100, 50, batchnorm=True),
    # Study 3 with Dropout 0.2 on the hidden FC layers - same params.
    "study-bn-dropout": _study_net(25, 50, 100, 50, batchnorm=True, dropout=0.2),
    # A modern plain net: 3x3 convs, BatchNorm, global average pooling, no hidden FC.
    "modern": _vgg_like((32, 32, 64, 64, 128), pools=(1, 3, 4), head="avgpool"),
    # Budget-optimal, quickest to the study's accuracy on a CPU: one 3x3 conv per resolution, pooling right
    # after each so most convs run on small maps (20 MFLOPs), widths doubling, global max-pool; pool first
    # (BatchNorm and GELU on the pooled map): 1.6x the images/s, the same accuracy per epoch (82.3 vs 82.1 % at 8).
    "fast": ArchConfig(conv=(ConvBlock(26, pool="max"), ConvBlock(52, pool="max"), ConvBlock(103, pool="max"),
                             ConvBlock(206)), batchnorm=True, activation="gelu", head="maxpool", pool_first=True),
    # Budget-optimal for longer training: two residual 3x3 blocks at 16x16 and at 8x8 (ResNet-style skips
    # between same-width convs), 30 MFLOPs, 254,631 params.
    "best": ArchConfig(
        conv=(ConvBlock(21, pool="max"), ConvBlock(42), ConvBlock(42, pool="max", residual=True), ConvBlock(85),
              ConvBlock(85, pool="max", residual=True), ConvBlock(170)),
        batchnorm=True, activation="gelu", head="maxpool", pool_first=True),
}

DEFAULT_PRESET = "study-bn"


def preset_label(name: str | None, arch: ArchConfig | dict | None) -> str:
    """How a network is named to the user: 'fast', 'fast (edited: conv1.out_channels)', or 'custom' when it
    started from no preset (or from one this version does not have). `arch` may be its to_dict (a run record)."""
    if name not in PRESETS or arch is None:
        return "custom"
    return schema.edited_name(name, PRESETS[name], arch)
