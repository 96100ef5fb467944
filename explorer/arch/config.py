"""ArchConfig / ConvBlock: frozen dataclasses that describe a network completely.

Everything else (model, cost table, summary, widgets, checkpoints, run records) is derived from them.
Validation raises ConfigError with a message that names the field or layer and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from explorer import schema
from explorer.errors import ConfigError
from explorer.schema import setting

KERNELS = (1, 3, 5, 7)
PADDINGS = ("valid", "same")
STRIDES = (1, 2)
POOLS = ("none", "max", "avg")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")
HEADS = ("flatten", "avgpool", "maxpool")
MAX_CONV_BLOCKS = 8
MAX_FC_LAYERS = 4
MAX_CHANNELS = 1024
MAX_UNITS = 4096
# What a design's input may be: validation, the sidebar's widgets and a link's decoder all read these.
MAX_INPUT_CHANNELS = 64
MAX_INPUT_SIZE = 1024  # pixels, height and width
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
                             help="Adds the block's input to its output; needs equal widths, stride 1, padding "
                                  "'same'.")

    def __post_init__(self) -> None:
        self.check("conv block")

    def check(self, where: str) -> None:
        schema.check(self, where + " ")

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding == "same" else 0


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
                              labels={"relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU"})
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

    def _check_residuals(self) -> None:
        for i, block in enumerate(self.conv, 1):
            in_ch = self.conv[i - 2].out_channels if i > 1 else None
            if block.residual and (block.stride != 1 or block.padding != "same"):
                raise ConfigError(
                    f"conv{i}: a residual block must keep the shape (stride 1, padding 'same'); "
                    f"it has stride {block.stride}, padding {block.padding!r}. Turn residual off or change them."
                )
            if block.residual and in_ch is not None and in_ch != block.out_channels:
                raise ConfigError(
                    f"conv{i}: a residual block needs as many input as output channels "
                    f"({in_ch} in, {block.out_channels} out). Set its width to {in_ch} or turn residual off."
                )

    def pools_first(self, block: ConvBlock) -> bool:
        """Whether `block` runs conv -> pool -> [BN] -> act: pool_first on, a pooling, and no skip to add after."""
        return self.pool_first and block.pool != "none" and not block.residual

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
        """Every conv and FC width multiplied by `factor` (at least 1); residual widths stay equal."""
        blocks = tuple(dataclasses.replace(b, out_channels=max(1, min(MAX_CHANNELS, round(b.out_channels * factor))))
                       for b in self.conv)
        fc = tuple(max(1, min(MAX_UNITS, round(u * factor))) for u in self.fc)
        return dataclasses.replace(self, conv=blocks, fc=fc)


@dataclass(frozen=True)
class LayerShape:
    """The feature map after one conv block: used by validation, the cost model and the model builder."""

    name: str
    in_shape: tuple[int, int, int]
    conv_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


def _conv_out(size: int, block: ConvBlock) -> int:
    return (size + 2 * block.pad - block.kernel) // block.stride + 1


def layer_shapes(cfg: ArchConfig, input_shape: tuple[int, int, int]) -> list[LayerShape]:
    """Shapes (C, H, W) through each conv block; ConfigError names the first block the map cannot pass."""
    c, h, w = _check_input_shape(input_shape)
    shapes = []
    for i, block in enumerate(cfg.conv, 1):
        name = f"conv{i}"
        if block.padding == "valid" and (h < block.kernel or w < block.kernel):
            raise ConfigError(
                f"{name}: the {h}x{w} feature map is smaller than its {block.kernel}x{block.kernel} kernel "
                f"(input {input_shape[1]}x{input_shape[2]}). Use padding 'same', a smaller kernel, "
                f"fewer stride-2/pooling steps before it, or fewer conv blocks."
            )
        if block.residual and i == 1 and c != block.out_channels:
            raise ConfigError(
                f"{name}: a residual block needs as many input as output channels ({c} in, "
                f"{block.out_channels} out). Turn residual off on the first block."
            )
        ch, cw = _conv_out(h, block), _conv_out(w, block)
        oh, ow = (ch // 2, cw // 2) if block.pool != "none" else (ch, cw)
        if oh < 1 or ow < 1:
            raise ConfigError(
                f"{name}: {block.pool}-pooling a {ch}x{cw} map leaves nothing (0 pixels). "
                f"Remove the pooling on {name}, use padding 'same', or use fewer blocks."
            )
        shapes.append(LayerShape(name, (c, h, w), (block.out_channels, ch, cw), (block.out_channels, oh, ow)))
        c, h, w = block.out_channels, oh, ow
    return shapes


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    if len(tuple(input_shape)) != 3 or not all(isinstance(v, int) and v >= 1 for v in input_shape):
        raise ConfigError(f"input shape {input_shape!r}: expected three positive whole numbers C,H,W, e.g. 3,32,32.")
    c, h, w = input_shape
    if c > MAX_INPUT_CHANNELS or h > MAX_INPUT_SIZE or w > MAX_INPUT_SIZE:
        raise ConfigError(f"input shape {c}x{h}x{w} is too large; use at most {MAX_INPUT_CHANNELS} channels and "
                          f"{MAX_INPUT_SIZE}x{MAX_INPUT_SIZE} pixels.")
    return c, h, w


def head_features(cfg: ArchConfig, input_shape: tuple[int, int, int]) -> int:
    """Number of features the head hands to the first linear layer."""
    c, h, w = layer_shapes(cfg, input_shape)[-1].out_shape
    return c * h * w if cfg.head == "flatten" else c


__all__ = ["ArchConfig", "ConvBlock", "LayerShape", "layer_shapes", "head_features"]
