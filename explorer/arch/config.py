"""ArchConfig / ConvBlock: frozen dataclasses that describe a network completely.

Everything else (model, cost table, summary, widgets, checkpoints, run records) is derived from them.
Validation raises ConfigError with a message that names the field or layer and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from explorer import schema
from explorer.arch.plan import MAX_INPUT_CHANNELS, MAX_INPUT_SIZE, BlockPlan, head_features, layer_shapes
from explorer.errors import ConfigError
from explorer.schema import setting

KERNELS = (1, 3, 5, 7)
PADDINGS = ("valid", "same")
STRIDES = (1, 2)
POOLS = ("none", "max", "avg")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "mish")
BLOCKS = ("plain", "basic", "bottleneck", "inverted", "convnext")
NORMS = ("auto", "batch", "layer", "group", "none")
DILATIONS = (1, 2, 3)
MAX_EXPAND = 8
HEADS = ("flatten", "avgpool", "maxpool")
MAX_CONV_BLOCKS = 12  # ResNet-20: a stem and 3 stages of 3 basic blocks (the resnet20 preset)
MAX_FC_LAYERS = 4
MAX_CHANNELS = 1024
MAX_UNITS = 4096
# MAX_INPUT_CHANNELS and MAX_INPUT_SIZE, what a design's input may be, are declared in plan.py beside the check.
CLASSES_RANGE = (2, 1000)  # what the sidebar and a link may set (a checkpoint may carry more: cost.py)


@dataclass(frozen=True)
class ConvBlock:
    """conv -> [BatchNorm] -> activation -> [+ input if residual] -> [pool] -> [dropout if dropout_conv].

    With ArchConfig.pool_first, a pooled block without a skip runs conv -> pool -> [BatchNorm] -> activation ->
    [dropout] instead (the same shapes out, BatchNorm and the activation on the 4x smaller map).
    """

    out_channels: int = setting(label="Out channels", low=1, high=MAX_CHANNELS, step=1, scale="log",
                                help="filters of the convolution, e.g. 32")
    kernel: int = setting(3, searchable=True, label="Kernel (k×k)", choices=KERNELS, widget="segmented_control")
    padding: str = setting("same", searchable=True, label="Padding", choices=PADDINGS, widget="segmented_control",
                           help="'same' keeps H×W (pads k//2); 'valid' shrinks the map by k−1.")
    stride: int = setting(1, searchable=True, label="Stride", choices=STRIDES, widget="segmented_control")
    pool: str = setting("none", searchable=True, label="Pooling after (2×2)", choices=POOLS, widget="segmented_control")
    # Identity skip around the block (ResNet style); needs same width, stride 1 and 'same' padding.
    residual: bool = setting(False, searchable=True, label="Residual (identity skip)",
                             help="Plain blocks: adds the block's input to its output; needs equal widths, stride 1, "
                                  "padding 'same'. The other block types have their own skip (this switch does not "
                                  "change them).")
    # The block types of the best small nets; every default is the plain block of before, so old records,
    # checkpoints and links describe the same network.
    block: str = setting("plain", searchable=True, label="Block type", choices=BLOCKS,
                         labels={"plain": "plain (conv → norm → act)", "basic": "basic (ResNet, 2 convs + skip)",
                                 "bottleneck": "bottleneck (1×1 → k×k → 1×1 + skip)",
                                 "inverted": "inverted (MobileNetV2)", "convnext": "ConvNeXt"},
                         help="basic and bottleneck add a skip with a 1×1 projection when widths or strides differ; "
                              "inverted skips only when the shape is kept; convnext always skips.")
    groups: int = setting(1, searchable=True, search_range=(0, 4),
                          label="Groups of the k×k conv (0 = depthwise)", low=0, high=MAX_CHANNELS, step=1,
                          named={"depthwise": 0}, labels={0: "depthwise"},
                          help="Splits the k×k conv's channels into groups (fewer parameters); 0 or 'depthwise': one "
                               "group per input channel. Must divide its input and output channels. inverted and "
                               "convnext blocks: their k×k conv is depthwise whatever this says.")
    dilation: int = setting(1, searchable=True, label="Dilation", choices=DILATIONS, widget="segmented_control",
                            help="Spaces the kernel's taps: a 3×3 kernel with dilation 2 sees 5×5.")
    expand: int = setting(4, searchable=True, search_range=(1, 6), label="Expansion", low=1, high=MAX_EXPAND, step=1,
                          help="inverted and convnext: hidden width = input × expand; bottleneck: its k×k conv "
                               "has out_channels ÷ expand channels.")
    se: float = setting(0.0, searchable=True, search_range=(0.0, 0.5),
                        label="Squeeze-excitation ratio (0 = off)", low=0.0, high=1.0, step=0.0625, fmt="%g",
                        help="Gates each channel by a 2-layer MLP of the channel means, hidden width = channels × "
                             "ratio, e.g. 0.25.")
    norm: str = setting("auto", searchable=True, label="Norm", choices=NORMS,
                        labels={"auto": "auto (the BatchNorm toggle; convnext: layer)", "batch": "BatchNorm",
                                "layer": "LayerNorm (channels)", "group": "GroupNorm", "none": "none"})

    def __post_init__(self) -> None:
        if self.groups == "depthwise":  # the word is a value of its own; stored as 0
            object.__setattr__(self, "groups", 0)
        self.check("conv block")

    def check(self, where: str) -> None:
        schema.check(self, where + " ")

    @property
    def plain_residual(self) -> bool:
        """A plain block with the identity skip (the other block types have their own skip)."""
        return self.block == "plain" and self.residual


@dataclass(frozen=True)
class ArchConfig:
    """A whole network: conv stage, head, FC stage, and the global toggles."""

    conv: tuple[ConvBlock, ...] = setting(
        label="Conv blocks", min_items=1, max_items=MAX_CONV_BLOCKS, item_label="conv{i}", items_word="blocks",
        cli=False, group="conv", help='a list of blocks, e.g. [{"out_channels": 32}]')
    fc: tuple[int, ...] = setting(
        (), label="Hidden FC layers", low=1, high=MAX_UNITS, step=1, scale="log", max_items=MAX_FC_LAYERS,
        item_label="fc{i} units", items_word="hidden layers", group="classifier",
        help="widths of the hidden fully connected layers, e.g. 120,84")
    batchnorm: bool = setting(False, searchable=True, label="BatchNorm after every conv and hidden FC", widget="toggle",
                              group="layers")
    dropout: float = setting(0.0, searchable=True, search_range=(0.0, 0.3), label="Dropout rate (hidden FC layers)",
                             low=0.0, high=0.9, step=0.05,
                             fmt="%.2f", widget="slider", group="layers")
    dropout_conv: bool = setting(False, searchable=True, label="Dropout on conv blocks too", group="layers")
    activation: str = setting("relu", searchable=True, label="Activation", choices=ACTIVATIONS, group="layers",
                              labels={"relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU",
                                      "mish": "Mish"})
    # Max-pool commutes with BatchNorm (positive scale) and a monotone activation, so pooling first is nearly
    # the same function; BN and the activation dominate a CPU training step at full resolution.
    pool_first: bool = setting(
        False, searchable=True, label="Pool right after the conv", widget="toggle", group="layers",
        help="conv → pool → BatchNorm → activation: BatchNorm and the activation run on a 4× smaller map, "
             "~1.7× faster training on a CPU. Blocks with a residual skip keep pooling after the sum.")
    head: str = setting("flatten", searchable=True, label="Head", choices=HEADS, group="classifier",
                        labels={"flatten": "flatten", "avgpool": "global avg pool", "maxpool": "global max pool"},
                        help="flatten keeps every position; global pooling keeps one value per channel.")

    def __post_init__(self) -> None:
        schema.freeze_lists(self)  # lists from JSON or widgets; tuples keep the config hashable
        schema.check(self)
        self._check_residuals()
        self._check_block_types()

    def _check_block_types(self) -> None:
        for i, block in enumerate(self.conv, 1):
            if block.block == "plain":
                continue
            if block.padding != "same":
                raise ConfigError(f"conv{i} padding: a {block.block} block needs padding 'same' (its skip adds "
                                  f"maps of one size); set padding to same.")
            if block.block == "convnext" and block.norm == "none":
                raise ConfigError(f"conv{i} norm: a convnext block needs a norm after its depthwise conv; use "
                                  f"layer (or auto), batch or group.")

    def _check_residuals(self) -> None:
        for i, block in enumerate(self.conv, 1):
            in_ch = self.conv[i - 2].out_channels if i > 1 else None
            if block.plain_residual and (block.stride != 1 or block.padding != "same"):
                raise ConfigError(
                    f"conv{i}: a residual block must keep the shape (stride 1, padding 'same'); "
                    f"it has stride {block.stride}, padding {block.padding!r}. Turn residual off or change them."
                )
            if block.plain_residual and in_ch is not None and in_ch != block.out_channels:
                raise ConfigError(
                    f"conv{i}: a residual block needs as many input as output channels "
                    f"({in_ch} in, {block.out_channels} out). Set its width to {in_ch} or turn residual off."
                )

    def pools_first(self, block: ConvBlock) -> bool:
        """Whether `block` runs conv -> pool -> [BN] -> act: pool_first on, a pooling, and no skip to add after."""
        return self.pool_first and block.pool != "none" and block.block == "plain" and not block.residual

    def validate(self, input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        """Raise ConfigError if the feature map cannot go through every layer for this input shape."""
        layer_shapes(self, input_shape)

    def to_dict(self) -> dict:
        return schema.to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ArchConfig:
        return schema.from_dict(cls, data, "architecture")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise ConfigError(f"architecture JSON is not valid JSON: {err}.") from None

    def scaled(self, factor: float) -> ArchConfig:
        """Every conv and FC width multiplied by `factor` (at least 1); residual widths stay equal, widths stay
        multiples of the groups that split them, and a depthwise block keeps its multiple of its input width."""
        blocks: list[ConvBlock] = []
        for i, block in enumerate(self.conv):
            step = _width_step(block, self.conv[i + 1] if i + 1 < len(self.conv) else None)
            width = max(step, min(MAX_CHANNELS, round(block.out_channels * factor / step) * step))
            if block.groups == 0 and block.block in ("plain", "basic") and i:  # out = in x multiplier
                width = blocks[-1].out_channels * max(1, block.out_channels // self.conv[i - 1].out_channels)
            blocks.append(dataclasses.replace(block, out_channels=width))
        fc = tuple(max(1, min(MAX_UNITS, round(u * factor))) for u in self.fc)
        return dataclasses.replace(self, conv=tuple(blocks), fc=fc)


def _width_step(block: ConvBlock, following: ConvBlock | None) -> int:
    """What a block's width must be a multiple of: the groups of its own k x k conv (times the bottleneck's
    reduction) and of the next block's, which takes it as input."""
    step = 1
    if block.groups > 1 and block.block in ("plain", "basic", "bottleneck"):
        step = math.lcm(step, block.groups * (block.expand if block.block == "bottleneck" else 1))
    if following is not None and following.groups > 1 and following.block == "plain":
        step = math.lcm(step, following.groups)
    return step


__all__ = ["ArchConfig", "ConvBlock", "BlockPlan", "layer_shapes", "head_features", "MAX_INPUT_CHANNELS",
           "MAX_INPUT_SIZE"]
