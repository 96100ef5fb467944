"""Initialisation tricks of the fastest CIFAR-10 trainers (airbench, hlb-CIFAR10), as TrainConfig switches.

- `whiten_first_conv`: the first conv's filters become the whitening (PCA) filters of the training images'
  k x k patches, in +/- pairs so a ReLU-like activation passes both signs, and are frozen. Later layers then start
  from decorrelated inputs with unit variance, which is worth several epochs on a short schedule.
- `dirac_init`: every later conv starts as the identity on its input channels (plus its random filters), so a
  deep stack passes the signal through from the first step.
- `freeze_bn_scales`: BatchNorm's scale stays 1; only its shift trains.
"""

from __future__ import annotations

import torch
from torch import nn

from explorer.errors import ConfigError

WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues: keeps near-zero directions from exploding
WHITEN_IMAGES = 5000  # enough patches for a stable 27 x 27 (3x3 RGB) covariance; a fraction of a second


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def patch_covariance(images: torch.Tensor, kernel: int, chunk: int = 500) -> torch.Tensor:
    """The covariance (d x d, d = C k k) of every k x k patch (no padding) of normalized float images."""
    d = images.shape[1] * kernel * kernel
    total, outer, count = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
    for part in images.split(chunk):
        patches = nn.functional.unfold(part.float(), kernel).transpose(1, 2).reshape(-1, d).double()
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    return outer / count - torch.outer(mean, mean)


@torch.no_grad()
def whitening_filters(images: torch.Tensor, kernel: int, out_channels: int) -> torch.Tensor:
    """min(out_channels, 2 d) filters (n x C x k x k): the covariance's eigenvectors scaled by 1/sqrt(eigenvalue),
    strongest first, each followed by its negative."""
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images, kernel))
    order = eigenvalues.argsort(descending=True)
    scaled = (eigenvectors[:, order] / (eigenvalues[order].clamp_min(0) + WHITEN_EPS).sqrt()).T  # d x d
    paired = torch.stack([scaled, -scaled], dim=1).reshape(-1, scaled.shape[1])  # w1, -w1, w2, -w2, ...
    used = paired[:out_channels]
    return used.reshape(len(used), images.shape[1], kernel, kernel).float()


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor) -> None:
    """Set the first conv's weights to whitening filters of `images` (normalized floats) and freeze them."""
    conv = convs(model)[0]
    if conv.groups != 1:
        raise ConfigError("whiten needs a first conv that sees every input channel; this net's first conv is "
                          "grouped or depthwise. Turn whiten off or use groups 1 on the first block.")
    filters = whitening_filters(images, conv.kernel_size[0], conv.out_channels)
    conv.weight[:len(filters)] = filters.to(conv.weight)  # filters beyond 2 d keep their random init
    conv.weight.requires_grad_(False)


@torch.no_grad()
def dirac_init(model: nn.Module) -> None:
    """Every conv after the first starts as the identity on its first min(in, out) channels."""
    for conv in convs(model)[1:]:
        if conv.kernel_size[0] % 2 and conv.groups == 1:  # an odd kernel has a centre tap
            shared = min(conv.in_channels, conv.out_channels)
            conv.weight[:shared].zero_()
            nn.init.dirac_(conv.weight[:shared, :shared])


def freeze_bn_scales(model: nn.Module, reset: bool = True) -> None:
    """BatchNorm scales stop training; `reset` sets them to 1 first (a fresh run, not a resumed one)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
            if reset:
                with torch.no_grad():
                    module.weight.fill_(1.0)
            module.weight.requires_grad_(False)


def bn_shifts(model: nn.Module) -> list[nn.Parameter]:
    return [m.bias for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None]
