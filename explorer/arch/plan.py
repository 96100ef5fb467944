"""The shape plan: every layer of every conv block with its input and output shape, derived once from a config.

The model builder (explorer.arch.model), the cost model (explorer.arch.cost) and through it the summary and the
diagram all read this plan, so a block type is described in exactly one place: the `_<type>` functions below.
A block is a main path, an optional shortcut (None: no skip; empty: identity; else a 1x1 projection) whose
output is added to the main path's, and the layers after the sum (activation, pooling).

Layer names are the cost table's row names: the block's first conv is the block itself ("conv2"), every other
layer is "<block>.<module>" where <module> is the attribute that holds it in the block's nn.Module.
Imports no torch and, at run time, nothing of the config (only its attributes are read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explorer.errors import ConfigError

if TYPE_CHECKING:
    from explorer.arch.config import ArchConfig, ConvBlock

Shape = tuple[int, int, int]
# What a design's input may be: validation, the sidebar's widgets and a link's decoder all read these.
MAX_INPUT_CHANNELS = 64
MAX_INPUT_SIZE = 1024  # pixels, height and width
GROUPNORM_GROUPS = 8  # GroupNorm splits the channels into gcd(C, 8) groups: 8 where C allows, else fewer


@dataclass(frozen=True)
class LayerPlan:
    """One layer: what it is (op), which module holds it, its shapes and, for a conv, its geometry."""

    name: str
    module: str  # attribute in the block's nn.Module; "" for the residual add
    op: str  # conv, norm, act, pool, se, add
    in_shape: Shape
    out_shape: Shape
    variant: str = ""  # norm: batch/layer/group; act: relu/...; pool: max/avg
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    hidden: int = 0  # se: width of the squeeze


@dataclass(frozen=True)
class BlockPlan:
    """One conv block: shapes in, before pooling (conv_shape) and out, and its layers by path."""

    name: str
    block: str
    in_shape: Shape
    conv_shape: Shape
    out_shape: Shape
    main: tuple[LayerPlan, ...]
    shortcut: tuple[LayerPlan, ...] | None
    post: tuple[LayerPlan, ...]

    @property
    def layers(self) -> tuple[LayerPlan, ...]:
        """Every layer in the order it runs (shortcut after the main path, the add, then the rest)."""
        add = () if self.shortcut is None else (
            LayerPlan(f"{self.name}.add", "", "add", self.conv_shape, self.conv_shape),)
        return self.main + (self.shortcut or ()) + add + self.post

    @property
    def projected(self) -> bool:
        return bool(self.shortcut)


def norm_groups(channels: int) -> int:
    """GroupNorm's number of groups for `channels`."""
    return math.gcd(channels, GROUPNORM_GROUPS)


class _Path:
    """Appends layers to one path of a block, tracking the shape as it changes."""

    def __init__(self, block: str, shape: Shape, input_size: str) -> None:
        self.block, self.shape, self.input_size, self.layers = block, shape, input_size, []
        self.where = block

    def _name(self, module: str) -> str:
        return self.block if module == "conv" else f"{self.block}.{module}"

    def add(self, module: str, op: str, out_shape: Shape | None = None, **geometry: Any) -> _Path:
        out = out_shape or self.shape
        self.layers.append(LayerPlan(self._name(module), module, op, self.shape, out, **geometry))
        self.shape = out
        return self

    def conv(self, module: str, out_ch: int, kernel: int = 1, stride: int = 1, pad: int = 0, dilation: int = 1,
             groups: int = 1, bias: bool = True) -> _Path:
        c, h, w = self.shape
        reach = dilation * (kernel - 1) + 1  # the span a dilated kernel covers
        if h + 2 * pad < reach or w + 2 * pad < reach:
            raise ConfigError(
                f"{self.where}: the {h}x{w} feature map is smaller than its {kernel}x{kernel} kernel"
                + (f" (dilated to {reach}x{reach})" if dilation > 1 else "")
                + f" (input {self.input_size}). Use padding 'same', a smaller kernel or dilation, "
                  f"fewer stride-2/pooling steps before it, or fewer conv blocks.")
        _check_groups(self.where, c, out_ch, groups)
        out = (out_ch, (h + 2 * pad - reach) // stride + 1, (w + 2 * pad - reach) // stride + 1)
        return self.add(module, "conv", out, kernel=kernel, stride=stride, pad=pad, dilation=dilation,
                        groups=groups, bias=bias)

    def norm(self, module: str, norm: str) -> _Path:
        c, h, w = self.shape
        if norm == "group" and c // norm_groups(c) * h * w < 2:
            raise ConfigError(f"{self.block} norm: GroupNorm of a {c}x{h}x{w} map has one value per group to "
                              f"normalize; use batch or layer, or fewer stride/pooling steps before {self.block}.")
        return self.add(module, "norm", variant=norm) if norm != "none" else self

    def act(self, module: str, activation: str) -> _Path:
        return self.add(module, "act", variant=activation)

    def se(self, ratio: float) -> _Path:
        return self.add("se", "se", hidden=max(1, round(self.shape[0] * ratio))) if ratio > 0 else self

    def pool(self, pool: str) -> _Path:
        """2x2 pooling with stride 2; ConfigError when the map is too small to pool."""
        c, h, w = self.shape
        if h < 2 or w < 2:
            raise ConfigError(f"{self.block}: {pool}-pooling a {h}x{w} map leaves nothing (0 pixels). Remove the "
                              f"pooling on {self.block}, use padding 'same', or use fewer blocks.")
        return self.add("pool", "pool", (c, h // 2, w // 2), variant=pool)


def _check_groups(where: str, in_ch: int, out_ch: int, groups: int) -> None:
    if in_ch % groups or out_ch % groups:
        fits = [g for g in range(1, in_ch + 1) if in_ch % g == 0 and out_ch % g == 0]
        raise ConfigError(
            f"{where} groups: {groups} groups do not divide the k×k conv's {in_ch} input and {out_ch} output "
            f"channels; use one of {', '.join(map(str, fits[-6:]))}"
            + (" or 'depthwise' with as many output channels as input" if out_ch != in_ch else "")
            + ", or change the widths.")


def norm_of(cfg: ArchConfig, block: ConvBlock) -> str:
    """The block's norm with 'auto' resolved: the net's BatchNorm toggle (convnext blocks: LayerNorm)."""
    if block.norm != "auto":
        return block.norm
    if block.block == "convnext":
        return "layer"
    return "batch" if cfg.batchnorm else "none"


def groups_of(block: ConvBlock, in_ch: int) -> int:
    """The k x k conv's groups: 0 ('depthwise') means one group per input channel."""
    return in_ch if block.groups == 0 else block.groups


def _pad(block: ConvBlock) -> int:
    return block.dilation * (block.kernel // 2) if block.padding == "same" else 0


def _kxk(block: ConvBlock, path: _Path, module: str, out_ch: int, stride: int, groups: int, bias: bool) -> _Path:
    return path.conv(module, out_ch, block.kernel, stride, _pad(block), block.dilation, groups, bias)


def _plain(cfg: ArchConfig, block: ConvBlock, main: _Path, norm: str) -> tuple[Shape | None, bool]:
    """conv -> [norm] -> act -> [SE] (pool first: conv -> pool -> [norm] -> act). The norm module is 'bn' for
    every norm: the name of the BatchNorm it always was, so old checkpoints' state-dict keys still match."""
    _kxk(block, main, "conv", block.out_channels, block.stride, groups_of(block, main.shape[0]), True)
    if cfg.pools_first(block):
        main.pool(block.pool)
    main.norm("bn", norm).act("act", cfg.activation).se(block.se)
    return (main.shape if block.plain_residual else None), False


def _basic(cfg: ArchConfig, block: ConvBlock, main: _Path, norm: str) -> tuple[Shape | None, bool]:
    """conv k x k (stride) -> norm -> act -> conv k x k -> norm -> [SE]; skip; act after the sum."""
    bias = norm == "none"
    _kxk(block, main, "conv", block.out_channels, block.stride, groups_of(block, main.shape[0]), bias)
    main.norm("norm", norm).act("act", cfg.activation)
    _kxk(block, main, "conv2", block.out_channels, 1, groups_of(block, main.shape[0]), bias)
    main.norm("norm2", norm).se(block.se)
    return main.shape, True


def _bottleneck(cfg: ArchConfig, block: ConvBlock, main: _Path, norm: str) -> tuple[Shape | None, bool]:
    """1x1 reduce to out/expand -> norm -> act -> k x k (stride) -> norm -> act -> 1x1 expand -> norm -> [SE]."""
    bias = norm == "none"
    mid = max(1, block.out_channels // block.expand)
    main.conv("conv", mid, bias=bias).norm("norm", norm).act("act", cfg.activation)
    _kxk(block, main, "conv2", mid, block.stride, groups_of(block, mid), bias)
    main.norm("norm2", norm).act("act2", cfg.activation)
    main.conv("conv3", block.out_channels, bias=bias).norm("norm3", norm).se(block.se)
    return main.shape, True


def _inverted(cfg: ArchConfig, block: ConvBlock, main: _Path, norm: str) -> tuple[Shape | None, bool]:
    """MobileNetV2: 1x1 expand by `expand` -> norm -> act -> depthwise k x k (stride) -> norm -> act -> [SE] ->
    1x1 project -> norm (linear: no activation); identity skip only when the shape is kept."""
    bias = norm == "none"
    in_shape, hidden = main.shape, main.shape[0] * block.expand
    main.conv("conv", hidden, bias=bias).norm("norm", norm).act("act", cfg.activation)
    _kxk(block, main, "conv2", hidden, block.stride, hidden, bias)
    main.norm("norm2", norm).act("act2", cfg.activation).se(block.se)
    main.conv("conv3", block.out_channels, bias=bias).norm("norm3", norm)
    return (main.shape if main.shape == in_shape else None), False


def _convnext(cfg: ArchConfig, block: ConvBlock, main: _Path, norm: str) -> tuple[Shape | None, bool]:
    """ConvNeXt: depthwise k x k (stride) -> norm -> 1x1 expand by `expand` -> act -> 1x1 project -> [SE]; skip."""
    in_ch = main.shape[0]
    _kxk(block, main, "conv", in_ch, block.stride, in_ch, True)
    main.norm("norm", norm).conv("conv2", in_ch * block.expand).act("act", cfg.activation)
    main.conv("conv3", block.out_channels).se(block.se)
    return main.shape, False


BLOCK_PLANS = {"plain": _plain, "basic": _basic, "bottleneck": _bottleneck, "inverted": _inverted,
               "convnext": _convnext}


def _shortcut(name: str, in_shape: Shape, out_shape: Shape, stride: int, norm: str) -> tuple[LayerPlan, ...]:
    """Identity when the shape is kept, else a 1x1 conv (with the block's stride) and its norm."""
    if in_shape == out_shape:
        return ()
    path = _Path(name, in_shape, "")
    path.conv("proj", out_shape[0], stride=stride, bias=norm == "none").norm("proj_norm", norm)
    if path.shape != out_shape:
        raise ConfigError(f"{name}: the projection gives {path.shape}, the block {out_shape}; use padding 'same'.")
    return tuple(path.layers)


def _block_plan(cfg: ArchConfig, block: ConvBlock, name: str, shape: Shape, input_size: str) -> BlockPlan:
    norm = norm_of(cfg, block)
    main = _Path(name, shape, input_size)
    skip_shape, act_after = BLOCK_PLANS[block.block](cfg, block, main, norm)
    shortcut = None if skip_shape is None else _shortcut(name, shape, main.shape, block.stride, norm)
    post = _Path(name, main.shape, input_size)
    if act_after:
        post.act("act_out", cfg.activation)
    if block.pool != "none" and not cfg.pools_first(block):
        post.pool(block.pool)
    # conv_shape: the map before pooling (with pool first, the conv's own output)
    conv_shape = main.layers[0].out_shape if cfg.pools_first(block) else main.shape
    return BlockPlan(name, block.block, shape, conv_shape, post.shape, tuple(main.layers), shortcut,
                     tuple(post.layers))


def layer_shapes(cfg: ArchConfig, input_shape: tuple[int, int, int]) -> list[BlockPlan]:
    """The plan of every conv block; ConfigError names the first block the map cannot pass and the fix."""
    shape = _check_input_shape(input_shape)
    plans = []
    for i, block in enumerate(cfg.conv, 1):
        name = f"conv{i}"
        if block.plain_residual and i == 1 and shape[0] != block.out_channels:
            raise ConfigError(
                f"{name}: a residual block needs as many input as output channels ({shape[0]} in, "
                f"{block.out_channels} out). Turn residual off on the first block.")
        plan = _block_plan(cfg, block, name, shape, f"{input_shape[1]}x{input_shape[2]}")
        plans.append(plan)
        shape = plan.out_shape
    return plans


def _check_input_shape(input_shape: Any) -> Shape:
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


__all__ = ["BlockPlan", "LayerPlan", "layer_shapes", "head_features", "norm_of", "norm_groups", "BLOCK_PLANS"]
