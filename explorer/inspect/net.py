"""Inside a trained net: predictions, the activations of every conv block, the first layer's filters, and
Grad-CAM / gradient saliency heat maps for one image.

Every function takes the uint8 C×H×W image and the net's own normalization (mean/std from its checkpoint), runs on
the model's device, and leaves the model as it found it (train/eval mode). Predictions follow the checkpoint's
InferencePolicy (its recipe's TTA, float32: the numbers `evaluate` and `predict` give); Grad-CAM and the feature
maps explain one forward pass of the image itself. Activations are collected with forward
hooks on the conv blocks (`model.features`); each call registers its hooks, runs one forward pass under a lock and
removes them, so two app sessions sharing one cached model never see each other's activations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explorer.engine.evaluate import NO_TTA, InferencePolicy, model_device
from explorer.errors import DataError

_FORWARD_LOCK = threading.Lock()  # hooks live on the (shared, cached) module: one hooked pass at a time


@dataclass(frozen=True)
class Prediction:
    index: int
    probability: float


@dataclass(frozen=True)
class HeatMap:
    """An H×W map in [0, 1] over the input image and how it was made ("Grad-CAM on conv4" or "gradient
    saliency" when the last block has no spatial map to weight)."""

    heat: torch.Tensor
    method: str
    class_index: int


def block_names(model: nn.Module) -> list[str]:
    """The conv blocks' names as the cost table and the Architecture page call them: conv1, conv2, ..."""
    return [f"conv{i}" for i in range(1, len(_blocks(model)) + 1)]


def _blocks(model: nn.Module) -> list[nn.Module]:
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential) or len(features) == 0:
        raise DataError("this model has no conv blocks (model.features) to look inside; pick an explorer checkpoint.")
    return list(features)


def normalized(pixels: torch.Tensor, mean: list[float], std: list[float], device: torch.device) -> torch.Tensor:
    """1×C×H×W float input as training saw it: (x/255 - mean) / std."""
    if pixels.dtype != torch.uint8 or pixels.dim() != 3:
        raise DataError(f"expected a uint8 C×H×W image, got {pixels.dtype} {tuple(pixels.shape)}.")
    if len(mean) != pixels.shape[0] or len(std) != pixels.shape[0]:
        raise DataError(f"the image has {pixels.shape[0]} channel(s) but the normalization has {len(mean)}.")
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)
    return ((pixels.to(device).float() / 255.0 - m) / s).unsqueeze(0)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def _hooked(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Every conv block's output, in order, for the forward passes run inside the block."""
    outputs: list[torch.Tensor] = []
    with _FORWARD_LOCK, _eval_mode(model):
        handles = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for block in _blocks(model)]
        try:
            yield outputs
        finally:
            for handle in handles:
                handle.remove()


def _check_input(model: nn.Module, pixels: torch.Tensor) -> None:
    want = tuple(getattr(model, "input_shape", ()) or ())
    if want and tuple(pixels.shape) != want:
        raise DataError(f"the image is {'×'.join(map(str, pixels.shape))} but the net takes "
                        f"{'×'.join(map(str, want))}; convert it first (explorer.inspect.images.load_image).")


def probabilities(model: nn.Module, pixels: torch.Tensor, mean: list[float], std: list[float],
                  policy: InferencePolicy = NO_TTA) -> torch.Tensor:
    """Softmax over the classes (float32, CPU) for one image, under `policy` (a checkpoint's: `loaded.policy`)."""
    _check_input(model, pixels)
    return policy.probabilities(model, pixels.unsqueeze(0), mean, std)[0]


def top_k(model: nn.Module, pixels: torch.Tensor, mean: list[float], std: list[float], k: int = 5,
          policy: InferencePolicy = NO_TTA) -> list[Prediction]:
    """The k most probable classes, most probable first."""
    probs = probabilities(model, pixels, mean, std, policy)
    values, indices = probs.topk(min(k, len(probs)))
    return [Prediction(int(i), float(v)) for v, i in zip(values, indices)]


def feature_maps(model: nn.Module, pixels: torch.Tensor, mean: list[float], std: list[float]
                 ) -> list[tuple[str, torch.Tensor]]:
    """(block name, its output C×H×W on the CPU) for every conv block: after activation, skip and pooling, in the
    block's own order (pool first or last), so the shapes are the cost table's last row of each block."""
    _check_input(model, pixels)
    with _hooked(model) as outputs, torch.inference_mode():
        model(normalized(pixels, mean, std, model_device(model)))
    return [(name, out[0].detach().float().cpu()) for name, out in zip(block_names(model), outputs)]


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """The first convolution's weights, out_channels × in_channels × k × k (float32, CPU)."""
    conv = getattr(_blocks(model)[0], "conv", None)
    if not isinstance(conv, nn.Conv2d):
        raise DataError("the first block has no Conv2d (block.conv); pick an explorer checkpoint.")
    return conv.weight.detach().float().cpu().clone()


def grad_cam(model: nn.Module, pixels: torch.Tensor, mean: list[float], std: list[float], class_index: int
             ) -> torch.Tensor:
    """H×W heat map in [0, 1]: where the image makes the net say `class_index` (see `heat_map`)."""
    return heat_map(model, pixels, mean, std, class_index).heat


def heat_map(model: nn.Module, pixels: torch.Tensor, mean: list[float], std: list[float], class_index: int
             ) -> HeatMap:
    """Grad-CAM on the last conv block (gradient-weighted channels, ReLU, resized to the image); gradient
    saliency (|d score / d pixel|, largest over channels) when that block's map is 1×1 and has nothing to place."""
    _check_input(model, pixels)
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and not 0 <= int(class_index) < num_classes:
        raise DataError(f"class index {class_index} is not one of the net's {num_classes} classes.")
    x = normalized(pixels, mean, std, model_device(model))
    last = block_names(model)[-1]
    with _hooked(model) as outputs, torch.enable_grad():
        x.requires_grad_(True)
        score = model(x)[0, int(class_index)]
        activation = outputs[-1]
        if activation.shape[-1] * activation.shape[-2] > 1:
            grads = torch.autograd.grad(score, activation)[0]
            cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True))
            heat = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            method = f"Grad-CAM on {last}"
        else:
            heat = torch.autograd.grad(score, x)[0][0].abs().amax(dim=0)
            method = f"gradient saliency ({last} is 1×1)"
    return HeatMap(_unit(heat.detach().float().cpu()), method, int(class_index))


def _unit(heat: torch.Tensor) -> torch.Tensor:
    """Scaled to [0, 1] by its maximum (all zeros stays all zeros: nothing speaks for the class)."""
    heat = heat.clamp(min=0)
    top = float(heat.max())
    return heat / top if top > 0 else torch.zeros_like(heat)


# ----------------------------------------------------------------------------------------------- pictures
# Composed into one uint8 image each, so a page draws one st.image per block instead of hundreds.

# Anchors of the 'inferno' colour map (dark → purple → orange → pale yellow), interpolated linearly.
_INFERNO = torch.tensor([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                         [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=torch.float32)


def colormap(values: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3) colours for values in [0, 1] (clipped)."""
    scaled = values.float().clamp(0, 1) * (len(_INFERNO) - 1)
    low = scaled.floor().long().clamp(max=len(_INFERNO) - 2)
    frac = (scaled - low).unsqueeze(-1)
    return (_INFERNO[low] * (1 - frac) + _INFERNO[low + 1] * frac).round().to(torch.uint8)


def enlarge(image: torch.Tensor, factor: int) -> torch.Tensor:
    """H×W(×C) repeated `factor` times along H and W (nearest neighbour: pixels stay visible as pixels)."""
    return image.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


def _grid(tiles: list[torch.Tensor], columns: int, pad: int, fill: int) -> torch.Tensor:
    """uint8 tiles (h×w×3, all one size) laid out in rows with `pad` pixels of `fill` between them."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    out = torch.full((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), fill, dtype=torch.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = tile
    return out


def _columns(n: int, most: int = 16) -> int:
    return max(1, min(most, round(n ** 0.5 + 0.49)))


def map_grid(maps: torch.Tensor, max_maps: int = 64, min_tile: int = 28, pad: int = 2
             ) -> tuple[torch.Tensor, list[int]]:
    """One uint8 H×W×3 picture of a block's feature maps (C×H×W) and the channels shown in it: the `max_maps`
    most active channels (largest mean), strongest first, on one colour scale for the whole block so a
    dead channel stays dark."""
    strength = maps.flatten(1).mean(dim=1)
    shown = strength.argsort(descending=True)[:max_maps].tolist()
    chosen = maps[shown]
    low, high = float(chosen.min()), float(chosen.max())
    scaled = (chosen - low) / (high - low) if high > low else torch.zeros_like(chosen)
    factor = max(1, -(-min_tile // max(maps.shape[-2:])))
    tiles = [enlarge(colormap(tile), factor) for tile in scaled]
    return _grid(tiles, _columns(len(tiles)), pad, 255), shown


def filter_grid(weights: torch.Tensor, tile: int = 36, pad: int = 2) -> torch.Tensor:
    """The first layer's filters (out×in×k×k) as uint8 tiles: RGB when they read 3 channels, else grey (the mean
    over input channels). Each filter is scaled on its own, 0 at mid-grey, so its pattern shows whatever its
    magnitude."""
    if weights.shape[1] != 3:
        weights = weights.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    bound = weights.flatten(1).abs().amax(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
    pixels = ((weights / bound + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    factor = max(1, tile // weights.shape[-1])
    return _grid([enlarge(p, factor) for p in pixels], _columns(len(pixels)), pad, 255)


def show_image(pixels: torch.Tensor, size: int = 192) -> torch.Tensor:
    """A uint8 C×H×W image as H'×W'×3, enlarged (nearest) to about `size` pixels on its longer side."""
    rgb = pixels.permute(1, 2, 0)
    rgb = rgb.expand(-1, -1, 3) if rgb.shape[-1] == 1 else rgb
    return enlarge(rgb.contiguous(), max(1, size // max(pixels.shape[-2:])))


def overlay(pixels: torch.Tensor, heat: torch.Tensor, size: int = 192, opacity: float = 0.55) -> torch.Tensor:
    """The heat map, coloured, laid over the image (both enlarged to about `size` pixels): uint8 H'×W'×3."""
    image = show_image(pixels, size).float()
    factor = image.shape[0] // heat.shape[0]
    smooth = F.interpolate(heat[None, None].float(), scale_factor=factor, mode="bilinear", align_corners=False)[0, 0]
    colours = colormap(smooth).float()
    return (image * (1 - opacity) + colours * opacity).round().clamp(0, 255).to(torch.uint8)
