"""ArchConfig / ConvBlock: frozen dataclasses that describe a network completely.

Everything else (model, cost table, summary, widgets, checkpoints, run records) is derived from them.
Validation raises ConfigError with a message that names the field or layer and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

from explorer.errors import ConfigError

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



def _check_choice(where: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}.")


def _check_int(where: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {type(value).__name__} {value!r}.")
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value} is out of range; use a value from {low} to {high}.")


def _check_float(where: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}.")
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value} is out of range; use a value from {low} to {high}.")


def _check_bool(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}.")


def _known_keys(cls: type, data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}.")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(sorted(names))}.")
    return data


@dataclass(frozen=True)
class ConvBlock:
    """conv -> [BatchNorm] -> activation -> [+ input if residual] -> [pool] -> [dropout if dropout_conv]."""

    out_channels: int
    kernel: int = 3
    padding: str = "same"
    stride: int = 1
    pool: str = "none"
    # Identity skip around the block (ResNet style); needs same width, stride 1 and 'same' padding.
    residual: bool = False

    def __post_init__(self) -> None:
        self.check("conv block")

    def check(self, where: str) -> None:
        _check_int(f"{where} out_channels", self.out_channels, 1, MAX_CHANNELS)
        _check_choice(f"{where} kernel", self.kernel, KERNELS)
        _check_choice(f"{where} padding", self.padding, PADDINGS)
        _check_choice(f"{where} stride", self.stride, STRIDES)
        _check_choice(f"{where} pool", self.pool, POOLS)
        _check_bool(f"{where} residual", self.residual)

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding == "same" else 0


@dataclass(frozen=True)
class ArchConfig:
    """A whole network: conv stage, head, FC stage, and the global toggles."""

    conv: tuple[ConvBlock, ...]
    fc: tuple[int, ...] = ()
    batchnorm: bool = False
    dropout: float = 0.0
    dropout_conv: bool = False
    activation: str = "relu"
    head: str = "flatten"

    def __post_init__(self) -> None:
        # Accept lists (from JSON or widgets) but store tuples so the config stays hashable.
        object.__setattr__(self, "conv", tuple(self.conv))
        object.__setattr__(self, "fc", tuple(self.fc))
        if not 1 <= len(self.conv) <= MAX_CONV_BLOCKS:
            raise ConfigError(f"conv: {len(self.conv)} blocks; use 1 to {MAX_CONV_BLOCKS} conv blocks.")
        for i, block in enumerate(self.conv, 1):
            if not isinstance(block, ConvBlock):
                raise ConfigError(f"conv{i}: expected a ConvBlock, got {type(block).__name__}.")
        if len(self.fc) > MAX_FC_LAYERS:
            raise ConfigError(f"fc: {len(self.fc)} hidden layers; use 0 to {MAX_FC_LAYERS}.")
        for i, units in enumerate(self.fc, 1):
            _check_int(f"fc{i} units", units, 1, MAX_UNITS)
        _check_bool("batchnorm", self.batchnorm)
        _check_float("dropout", self.dropout, 0.0, 0.9)
        _check_bool("dropout_conv", self.dropout_conv)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("head", self.head, HEADS)
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

    def validate(self, input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        """Raise ConfigError if the feature map cannot go through every layer for this input shape."""
        layer_shapes(self, input_shape)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"conv": [dataclasses.asdict(b) for b in self.conv], "fc": list(self.fc)}

    @classmethod
    def from_dict(cls, data: Any) -> ArchConfig:
        data = dict(_known_keys(cls, data, "architecture"))
        if "conv" not in data:
            raise ConfigError("architecture: missing key 'conv' (a list of blocks, e.g. [{\"out_channels\": 32}]).")
        if not isinstance(data["conv"], (list, tuple)):
            raise ConfigError("architecture conv: expected a list of conv blocks.")
        blocks = []
        for i, raw in enumerate(data["conv"], 1):
            raw = _known_keys(ConvBlock, raw, f"conv{i}")
            if "out_channels" not in raw:
                raise ConfigError(f"conv{i}: missing key 'out_channels'.")
            try:
                blocks.append(ConvBlock(**raw))
            except ConfigError as err:
                raise ConfigError(str(err).replace("conv block", f"conv{i}", 1)) from None
        data["conv"] = tuple(blocks)
        if "fc" in data and not isinstance(data["fc"], (list, tuple)):
            raise ConfigError("architecture fc: expected a list of hidden-layer widths, e.g. [120, 84].")
        return cls(**data)

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
    if c > 64 or h > 1024 or w > 1024:
        raise ConfigError(f"input shape {c}x{h}x{w} is too large; use at most 64 channels and 1024x1024 pixels.")
    return c, h, w


def head_features(cfg: ArchConfig, input_shape: tuple[int, int, int]) -> int:
    """Number of features the head hands to the first linear layer."""
    c, h, w = layer_shapes(cfg, input_shape)[-1].out_shape
    return c * h * w if cfg.head == "flatten" else c


__all__ = ["ArchConfig", "ConvBlock", "LayerShape", "layer_shapes", "head_features"]
