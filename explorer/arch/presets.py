"""The study's networks, a modern one, budget-optimal ones and the published anchors' nets, by name.

ANCHORS holds, for each preset that reproduces a published net, that net's published figures (the README's
"Best in budget" table shows them beside ours, and tests/test_presets_anchors.py checks the table against them).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _resnet(widths: tuple[int, int, int], se: float = 0.0, **options) -> ArchConfig:
    """ResNet-20's layout: a 3x3 stem conv, then 3 stages of 3 basic blocks; the first block of stages 2 and 3
    halves the map with stride 2 (its skip a 1x1 projection, as the width changes there); global average pool."""
    blocks = tuple(ConvBlock(width, block="basic", stride=2 if stage and not i else 1, se=se)
                   for stage, width in enumerate(widths) for i in range(3))
    return ArchConfig(conv=(ConvBlock(widths[0]), *blocks), batchnorm=True, head="avgpool", **options)


def _tiniest() -> ArchConfig:
    """ConvNeXt-like at 48 channels on 32x32, one downsampling, 80 channels on 16x16 (xvel/cifar10-tiniest's
    widths). Its blocks run 3x3, 7x7 and dilated 7x7 depthwise branches side by side and gate their 1x1 MLP; here
    the kernels follow one another in single-branch ConvNeXt blocks (expand 2, GELU, no gate)."""
    def cnx(width: int, kernel: int, dilation: int = 1, stride: int = 1) -> ConvBlock:
        return ConvBlock(width, kernel=kernel, dilation=dilation, stride=stride, block="convnext", expand=2)

    return ArchConfig(conv=(ConvBlock(48, norm="layer"), cnx(48, 3), cnx(48, 7),
                            cnx(80, 3, stride=2), cnx(80, 7, dilation=2), cnx(80, 3)),
                      activation="gelu", head="avgpool")


@dataclass(frozen=True)
class Anchor:
    """A published CIFAR-10 net a preset reproduces: its name, parameters and test accuracy as published."""

    net: str
    params: str
    accuracy: str


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
    # ResNet-20 (16/32/64, 272,474 params published) trimmed to the budget: the last stage 60 channels wide
    # instead of 64 (-23,696 params: its 3x3 convs are most of the net), projection shortcuts (1x1 conv + BN)
    # where the width changes; 248,794 params, 78.6 MFLOPs.
    "resnet20": _resnet((16, 32, 60)),
    # xvel/cifar10-tiniest's shape in this vocabulary (see _tiniest): 97,882 params, 83.2 MFLOPs.
    "tiniest": _tiniest(),
    # SE-MXResNet20's ingredients on resnet20: squeeze-excitation (ratio 1/16, SENet's reduction 16) in every
    # basic block and Mish; 251,059 params, 78.6 MFLOPs (the published net is ~270k with an XResNet stem).
    "se-resnet": _resnet((16, 32, 60), se=0.0625, activation="mish"),
}

# The published figures of the nets the last three presets reproduce (issue 18; DESIGN.md's records table).
ANCHORS: dict[str, Anchor] = {
    "resnet20": Anchor("ResNet-20", "272,474", "91.7–92.6 % (200 epochs)"),
    "tiniest": Anchor("xvel/cifar10-tiniest", "97,530", "94.4 % (mean of 5, 200 epochs)"),
    "se-resnet": Anchor("SE-MXResNet20", "~270k", "93.1 % (180 epochs)"),
}

DEFAULT_PRESET = "study-bn"


def preset_label(name: str | None, arch: ArchConfig | dict | None) -> str:
    """How a network is named to the user: 'fast', 'fast (edited: conv1.out_channels)', or 'custom' when it
    started from no preset (or from one this version does not have). `arch` may be its to_dict (a run record)."""
    if name not in PRESETS or arch is None:
        return "custom"
    return schema.edited_name(name, PRESETS[name], arch)
