"""build_model(cfg, input_shape, num_classes) -> nn.Module. Imports nothing from training."""

from __future__ import annotations

import torch
from torch import nn

from explorer.arch.config import ArchConfig
from explorer.arch.cost import buildable_cost
from explorer.arch.plan import BlockPlan, LayerPlan, head_features, layer_shapes, norm_groups
from explorer.errors import ConfigError

ACTIVATION_MODULES = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU, "mish": nn.Mish}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels at every position (ConvNeXt's channels-last LayerNorm) of an N x C x H x W map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: each channel scaled by sigmoid(expand(relu(reduce(its mean over H x W))))."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return LayerNorm2d(channels)
    return nn.GroupNorm(norm_groups(channels), channels)


def layer_module(layer: LayerPlan) -> nn.Module:
    """The nn.Module of one planned layer."""
    if layer.op == "conv":
        return nn.Conv2d(layer.in_shape[0], layer.out_shape[0], layer.kernel, layer.stride, layer.pad,
                         layer.dilation, layer.groups, layer.bias)
    if layer.op == "norm":
        return _norm(layer.variant, layer.out_shape[0])
    if layer.op == "act":
        return ACTIVATION_MODULES[layer.variant]()
    if layer.op == "pool":
        return nn.MaxPool2d(2, 2) if layer.variant == "max" else nn.AvgPool2d(2, 2)
    return SqueezeExcite(layer.out_shape[0], layer.hidden)


class ConvUnit(nn.Module):
    """One conv block as its plan describes it: main path, [+ shortcut (identity or projection)], the layers
    after the sum, [dropout]. Each layer is the attribute its plan names (a plain block: conv, bn, act, pool),
    so the state-dict keys of a plain block are those it always had."""

    def __init__(self, plan: BlockPlan, cfg: ArchConfig) -> None:
        super().__init__()
        for layer in plan.layers:
            if layer.module:
                self.add_module(layer.module, layer_module(layer))
        if plan.block == "plain":  # the module tree a plain block always had: no norm or pool is an Identity
            for absent in ("bn", "pool"):
                if not hasattr(self, absent):
                    self.add_module(absent, nn.Identity())
        self.main = [layer.module for layer in plan.main]
        self.shortcut = None if plan.shortcut is None else [layer.module for layer in plan.shortcut]
        self.post = [layer.module for layer in plan.post]
        self.pool_first = "pool" in self.main  # conv -> pool -> [norm] -> act (ArchConfig.pool_first)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout_conv and cfg.dropout > 0 else nn.Identity()

    def _run(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._run(self.main, x)
        if self.shortcut is not None:
            y = y + self._run(self.shortcut, x)
        return self.drop(self._run(self.post, y))


class Net(nn.Module):
    """The network an ArchConfig describes. Keeps its config so checkpoints can rebuild it."""

    def __init__(self, cfg: ArchConfig, input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10):
        super().__init__()
        plans = layer_shapes(cfg, input_shape)  # raises ConfigError naming the layer
        self.cfg, self.input_shape, self.num_classes = cfg, tuple(input_shape), num_classes
        self.features = nn.Sequential(*(ConvUnit(plan, cfg) for plan in plans))
        heads = {"flatten": nn.Flatten, "avgpool": lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                 "maxpool": lambda: nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())}
        self.head = heads[cfg.head]()
        layers: list[nn.Module] = []
        width = head_features(cfg, input_shape)
        for units in cfg.fc:
            layers.append(nn.Linear(width, units))
            if cfg.batchnorm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(ACTIVATION_MODULES[cfg.activation]())
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = units
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


def build_model(cfg: ArchConfig, input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10) -> Net:
    """The nn.Module for `cfg`; ConfigError when the input cannot pass through it, TooLargeToBuild (a
    ConfigError) when the network is over the build limits of explorer.arch.cost."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be a whole number of at least 2, got {num_classes!r}.")
    buildable_cost(cfg, tuple(input_shape), num_classes)  # costed first: a too-large design is never allocated
    return Net(cfg, tuple(input_shape), num_classes)
