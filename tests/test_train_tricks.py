"""The fast-training switches: whitened frozen first layer, identity init, BatchNorm scale/shift, alternating flips,
translate TTA. Each is checked for what it does to the numbers, not only that training runs with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.model import build_model
from explorer.engine.augment import augment_batch
from explorer.engine.config import TrainConfig
from explorer.engine.evaluate import predict_logits
from explorer.engine.init import dirac_init, patch_covariance, whitening_filters
from explorer.engine.train import _Session, train, tta_passes
from explorer.errors import ConfigError

TINY = ArchConfig(conv=(ConvBlock(24, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
CFG = TrainConfig(epochs=1, batch_size=32, test_batch_size=200, optimizer="nesterov", lr=0.05, momentum=0.9,
                  weight_decay=5e-4, log_every=5, device="cpu")


def correlated_images(n: int = 200) -> torch.Tensor:
    """Images whose channels and neighbouring pixels are strongly correlated (like photos)."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(n, 1, 16, 16, generator=gen)
    smooth = nn.functional.avg_pool2d(nn.functional.pad(base, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return torch.cat([smooth, 0.8 * smooth + 0.2 * torch.randn_like(smooth), -smooth], dim=1)


def test_whitening_filters_decorrelate_patches():
    images = correlated_images()
    filters = whitening_filters(images, kernel=2, out_channels=24)  # d = 3*2*2 = 12 -> 12 +/- pairs
    assert filters.shape == (24, 3, 2, 2)
    assert torch.allclose(filters[1::2], -filters[0::2])
    positive = filters[0::2].reshape(12, -1).double()
    whitened_cov = positive @ patch_covariance(images, 2) @ positive.T
    off_diagonal = whitened_cov - torch.diag(whitened_cov.diagonal())
    assert off_diagonal.abs().max() < 1e-6  # every direction decorrelated
    # unit variance, up to eigenvalue / (eigenvalue + epsilon) for directions with variance near the epsilon
    assert (whitened_cov.diagonal() <= 1).all() and (whitened_cov.diagonal() > 0.9).sum() >= 6


def test_whitening_with_fewer_filters_than_patch_dimensions_keeps_the_strongest():
    images = correlated_images()
    few = whitening_filters(images, kernel=3, out_channels=5)  # d = 27
    assert few.shape == (5, 3, 3, 3)
    all_filters = whitening_filters(images, kernel=3, out_channels=54)
    assert torch.allclose(few, all_filters[:5])


def test_whitened_first_layer_is_frozen_and_the_rest_trains(tiny_dataset):
    result = train(TINY, CFG.replace(whiten=True), tiny_dataset)
    session = _Session(TINY, CFG.replace(whiten=True), tiny_dataset)
    first = result.model.features[0].conv.weight
    assert torch.equal(first, session.model.features[0].conv.weight.to(first))  # same seed: same filters, untrained
    assert not torch.allclose(result.model.features[1].conv.weight,
                              session.model.features[1].conv.weight.to(first))
    assert all(p is not session.model.features[0].conv.weight
               for group in session.optimizer.param_groups for p in group["params"])
    assert result.metrics["test_accuracy"] > 0.3  # 10 classes: chance 0.1


def test_dirac_init_passes_the_input_channels_through():
    net = build_model(ArchConfig(conv=(ConvBlock(8), ConvBlock(12), ConvBlock(6))), (3, 8, 8), 2)
    dirac_init(net)
    x = torch.randn(2, 8, 8, 8)
    second, third = net.features[1].conv, net.features[2].conv
    out = nn.functional.conv2d(x, second.weight, padding=1)
    assert torch.allclose(out[:, :8], x)  # 8 -> 12: the first 8 filters are the identity
    narrowing = nn.functional.conv2d(torch.randn(2, 12, 8, 8), third.weight, padding=1)
    assert narrowing.shape[1] == 6
    y = torch.randn(2, 12, 8, 8)
    assert torch.allclose(nn.functional.conv2d(y, third.weight, padding=1), y[:, :6])  # 12 -> 6: first 6 kept


def test_frozen_bn_scale_stays_one_and_shift_lr_is_scaled(tiny_dataset):
    cfg = CFG.replace(bn_frozen_scale=True, bn_bias_lr=8.0)
    session = _Session(TINY, cfg, tiny_dataset)
    groups = session.optimizer.param_groups
    assert len(groups) == 2 and groups[1]["lr_scale"] == 8.0
    assert groups[1]["weight_decay"] == pytest.approx(5e-4 / 8)
    session.step(session.permutation()[:32], lr=0.01)
    assert groups[0]["lr"] == pytest.approx(0.01) and groups[1]["lr"] == pytest.approx(0.08)
    result = train(TINY, cfg, tiny_dataset)
    for block in result.model.features:
        assert torch.equal(block.bn.weight, torch.ones_like(block.bn.weight))
        assert block.bn.bias.abs().max() > 0  # the shift trained


def test_plain_recipe_keeps_one_parameter_group(tiny_dataset):
    assert len(_Session(TINY, CFG, tiny_dataset).optimizer.param_groups) == 1


def test_alternating_flips_mirror_each_image_on_every_other_epoch(tiny_dataset):
    cfg = CFG.replace(augment=("flip",), alternate_flips=True)
    session = _Session(TINY, cfg, tiny_dataset)
    idx = torch.arange(64)
    first, _, _ = session.batch(idx)
    session.epoch = 2
    second, _, _ = session.batch(idx)
    session.epoch = 3
    third, _, _ = session.batch(idx)
    assert torch.allclose(second, first.flip(3)) and torch.allclose(third, first)
    plain = session.train_x[:64].float()
    mirrored = [not torch.equal(a, b) for a, b in zip(augment_batch(session.train_x[:64], True, 0, None,
                                                                    session.flip_bits[:64]).float(), plain)]
    assert 16 < sum(mirrored) < 48  # the first epoch's flips are random


def test_alternating_flips_need_the_flip_augmentation():
    with pytest.raises(ConfigError, match="alternate_flips needs the flip augmentation"):
        TrainConfig(augment=("crop",), alternate_flips=True)


def test_translate_tta_is_the_weighted_mean_of_shifted_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randint(0, 256, (6, 3, 10, 10), dtype=torch.uint8)
    model(x.float())
    mean, std = [0.0] * 3, [1 / 255] * 3  # normalization = identity on the 0..255 values
    got = predict_logits(model, x, mean, std, tta_translate=1)
    padded = nn.functional.pad(x.float(), (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[:, :, 2:12, 2:12], padded[:, :, 0:10, 0:10]
    assert torch.equal(up_left[:, :, 0, 0], x.float()[:, :, 1, 1])
    with torch.no_grad():
        expected = model(x.float()) / 2 + (model(up_left) + model(down_right)) / 4
    assert torch.allclose(got, expected, atol=1e-4)
    both = predict_logits(model, x, mean, std, tta_flip=True, tta_translate=1)
    assert not torch.allclose(both, got)
    assert tta_passes(TrainConfig(tta_flip=True, tta_translate=1)) == 6


def test_resume_with_changed_groups_restarts_momentum(tiny_dataset):
    first = train(TINY, CFG, tiny_dataset)
    state = {"model": first.model.state_dict(), "optimizer": first.optimizer_state, "epochs_done": 1}
    resumed = train(TINY, CFG.replace(bn_bias_lr=4.0), tiny_dataset, init_state=state)
    assert resumed.epochs_done == 2 and resumed.metrics["test_accuracy"] > 0.3
