"""build_model(cfg, input_shape, num_classes) -> nn.Module. Imports nothing from training."""

from __future__ import annotations

import torch
from torch import nn

from explorer.arch.config import ArchConfig, ConvBlock, head_features, layer_shapes
from explorer.arch.cost import buildable_cost
from explorer.errors import ConfigError

ACTIVATION_MODULES = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class ConvUnit(nn.Module):
    """One conv block: conv -> [BN] -> act -> [+x] -> [pool] -> [dropout], or with cfg.pool_first (pooled, no
    skip) conv -> pool -> [BN] -> act -> [dropout]. Same module names either way: state_dict keys do not change."""

    def __init__(self, block: ConvBlock, in_channels: int, cfg: ArchConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, block.out_channels, block.kernel, block.stride, block.pad)
        self.bn = nn.BatchNorm2d(block.out_channels) if cfg.batchnorm else nn.Identity()
        self.act = ACTIVATION_MODULES[cfg.activation]()
        self.residual = block.residual
        self.pool_first = cfg.pools_first(block)
        pools = {"none": nn.Identity, "max": lambda: nn.MaxPool2d(2, 2), "avg": lambda: nn.AvgPool2d(2, 2)}
        self.pool = pools[block.pool]()
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout_conv and cfg.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_first:
            return self.drop(self.act(self.bn(self.pool(self.conv(x)))))
        y = self.act(self.bn(self.conv(x)))
        if self.residual:
            y = y + x
        return self.drop(self.pool(y))


class Net(nn.Module):
    """The network an ArchConfig describes. Keeps its config so checkpoints can rebuild it."""

    def __init__(self, cfg: ArchConfig, input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10):
        super().__init__()
        shapes = layer_shapes(cfg, input_shape)  # raises ConfigError naming the layer
        self.cfg, self.input_shape, self.num_classes = cfg, tuple(input_shape), num_classes
        in_ch = [input_shape[0]] + [s.out_shape[0] for s in shapes[:-1]]
        self.features = nn.Sequential(*(ConvUnit(b, c, cfg) for b, c in zip(cfg.conv, in_ch)))
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
