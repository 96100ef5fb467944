"""The training vocabulary: rotation, colour jitter, sharpening, cutout, mixup and cutmix (soft targets), their
ramp, the loss on soft targets, warm-up + cosine with AdamW, and learning with each one on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.engine.augment import (
    Augmentation,
    cutmix_batch,
    cutout_batch,
    jitter_batch,
    rotate_batch,
    sharpen_batch,
)
from explorer.engine.config import TrainConfig
from explorer.engine.train import _Session, lr_at, train
from explorer.errors import ConfigError

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
FAST = TrainConfig(epochs=2, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=5,
                   device="cpu", precision="fp32")


def pixels(b: int = 6, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed)).float()


def test_rotation_by_zero_is_identity_and_by_90_turns_the_image() -> None:
    x = pixels(h=9, w=9)
    assert torch.allclose(rotate_batch(x, 0.0, angles=torch.zeros(6)), x, atol=1e-4)
    turned = rotate_batch(x, 0.0, angles=torch.full((6,), 90.0))
    # A square image turned by 90 degrees is a pixel permutation: torch.rot90 one way or the other.
    assert min((turned - torch.rot90(x, k, (2, 3))).abs().max() for k in (1, -1)) < 1e-3
    drawn = rotate_batch(x, 30.0, torch.Generator().manual_seed(1))
    assert drawn.shape == x.shape and not torch.allclose(drawn, x)


def test_cutout_zeroes_exactly_the_stated_square_in_every_image() -> None:
    x = pixels() + 1  # no zero pixel before
    out = cutout_batch(x, 4, torch.Generator().manual_seed(2))
    zero = out == 0
    assert out.shape == x.shape
    assert zero.sum((1, 2, 3)).tolist() == [3 * 4 * 4] * 6  # every channel of a 4 x 4 square
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)
    assert rows.sum(1).tolist() == [4] * 6 and cols.sum(1).tolist() == [4] * 6  # one contiguous square
    assert torch.equal(out[~zero], x[~zero])
    assert (cutout_batch(x, 50) == 0).all()  # larger than the image: all of it


def test_jitter_and_sharpen_keep_the_range_and_do_nothing_at_strength_zero() -> None:
    x = pixels()
    assert torch.allclose(jitter_batch(x, 0.0), x, atol=1e-4)
    jittered = jitter_batch(x, 0.5, torch.Generator().manual_seed(0))
    assert jittered.min() >= 0 and jittered.max() <= 255 and not torch.allclose(jittered, x)
    flat = torch.full((4, 3, 8, 8), 100.0)
    assert torch.allclose(sharpen_batch(flat, 3.0, torch.Generator().manual_seed(0)), flat)  # nothing to sharpen
    sharpened = sharpen_batch(x, 2.0, torch.Generator().manual_seed(0))
    assert sharpened.min() >= 0 and sharpened.max() <= 255
    changed = (sharpened != x).flatten(1).any(1)
    assert torch.equal(changed, torch.rand(6, generator=torch.Generator().manual_seed(0)) < 0.5)  # a coin per image
    assert torch.equal(sharpened[:, :, 0], x[:, :, 0])  # border rows kept, as torchvision does


def _class_images(labels: torch.Tensor, h: int = 8, w: int = 8) -> torch.Tensor:
    """Each image a constant 10 x its class: a mix's pixels reveal how much of each class it holds."""
    return (labels.float() * 10).view(-1, 1, 1, 1).expand(-1, 3, h, w).clone()


@pytest.mark.parametrize("mix", [{"mixup": 1.0}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 2.0}])
def test_mixes_keep_the_label_mass_and_match_the_pixels(mix) -> None:
    labels = torch.arange(16) % 5
    augmentation = Augmentation(**mix)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    for _ in range(4):
        x, targets = augmentation.mix(_class_images(labels), labels, 5, 1, rng, gen)
        assert x.shape == (16, 3, 8, 8) and targets.shape == (16, 5)
        assert torch.allclose(targets.sum(1), torch.ones(16))  # soft labels sum to 1
        assert (targets >= 0).all()
        # The mean pixel of a mixed image is the targets' weighted class value: the labels follow the pixels.
        assert torch.allclose(x.mean((1, 2, 3)), targets @ (torch.arange(5).float() * 10), atol=1e-3)
    assert not torch.equal(x, _class_images(labels))


def test_cutmix_box_share_is_the_target_weight() -> None:
    x, other = torch.zeros(8, 1, 10, 10), torch.ones(8, 1, 10, 10)
    mixed, own = cutmix_batch(x, other, torch.full((8,), 0.75), torch.Generator().manual_seed(3))
    assert torch.allclose(1 - mixed.mean((1, 2, 3)), own)
    assert (own >= 0.75 - 1e-6).all()  # a box clipped at the border takes less of the partner


def test_the_ramp_grows_alpha_over_the_first_epochs() -> None:
    ramped = Augmentation(mixup=1.0, mix_ramp_epochs=4)
    assert [ramped.alpha(1.0, e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert Augmentation(mixup=1.0).alpha(1.0, 1) == 1.0


def test_mixing_with_a_hard_label_loss_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="mixup and cutmix blend the targets.*use the cross_entropy loss"):
        TrainConfig(loss="nll", mixup=0.2)
    with pytest.raises(ConfigError, match="cutout: 65 is out of range"):
        TrainConfig.from_dict({"cutout": 65})


def test_the_loss_takes_soft_targets_and_equals_hard_ones_when_one_hot(tiny_dataset) -> None:
    session = _Session(TINY, FAST.replace(label_smoothing=0.1, mixup=0.5), tiny_dataset)
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 9, 2, 2])
    hard = session.loss(logits, y)
    assert torch.allclose(session.loss(logits, torch.nn.functional.one_hot(y, 10).float()), hard)
    x, labels, targets = session.batch(torch.arange(32))
    assert targets.shape == (32, 10) and torch.allclose(targets.sum(1), torch.ones(32))
    assert torch.equal(labels, tiny_dataset.train_y[:32])  # train accuracy still counts the image's own class


def test_warmup_then_cosine_with_adamw() -> None:
    cfg = TrainConfig(epochs=10, optimizer="adamw", lr=0.02, weight_decay=0.05, schedule="cosine", warmup_epochs=2)
    lrs = [lr_at(cfg, step, 100, 10) for step in range(100)]
    assert lrs[0] == pytest.approx(0.001) and lrs[19] == pytest.approx(0.02)  # linear warm-up over 20 steps
    assert all(a < b for a, b in zip(lrs[:19], lrs[1:20]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:])) and lrs[-1] < 0.0002  # cosine down to ~0


VOCABULARY = [{"rotate": 15.0}, {"color_jitter": 0.4}, {"sharpen": 2.0}, {"cutout": 8}, {"mixup": 0.4},
              {"cutmix": 1.0}, {"mixup": 0.4, "mix_ramp_epochs": 2},
              {"optimizer": "adamw", "schedule": "cosine", "warmup_epochs": 0.5, "weight_decay": 0.05}]


@pytest.mark.parametrize("setting", VOCABULARY, ids=lambda s: "+".join(s))
def test_synthetic_data_still_learns_with_each_on(tiny_dataset, setting) -> None:
    cfg = FAST.replace(epochs=3, **setting)
    result = train(TINY, cfg, tiny_dataset)
    assert result.status == "finished"
    assert result.metrics["test_accuracy"] > 0.6  # 10 classes: chance is 0.1


def test_whitening_a_depthwise_first_conv_is_refused_with_the_fix(tiny_dataset) -> None:
    arch = ArchConfig(conv=(ConvBlock(6, groups="depthwise"), ConvBlock(8, block="convnext")), head="avgpool")
    with pytest.raises(ConfigError, match="whiten needs a first conv that sees every input channel"):
        _Session(arch, FAST.replace(whiten=True), tiny_dataset)
    inverted = ArchConfig(conv=(ConvBlock(8, block="inverted", expand=2),), head="avgpool")
    session = _Session(inverted, FAST.replace(whiten=True), tiny_dataset)  # its first conv is a full 1x1
    assert not session.model.features[0].conv.weight.requires_grad
