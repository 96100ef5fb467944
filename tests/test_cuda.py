"""The CUDA paths (bf16/fp16 autocast, fused optimizers, channels_last, cudnn.benchmark, on-device augmentation,
evaluation and checkpoints of a GPU run on the CPU). They run wherever a CUDA GPU is present and are skipped
elsewhere; the CPU paths are covered by the rest of the suite."""

from __future__ import annotations

import pytest
import torch

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.engine.config import TrainConfig
from explorer.engine.evaluate import evaluate_model, predict_logits
from explorer.engine.train import autocast_dtype, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True,
                  head="maxpool", pool_first=True)
CFG = TrainConfig(epochs=3, batch_size=32, test_batch_size=200, optimizer="nesterov", lr=0.05, momentum=0.9,
                  weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1, augment=("flip", "crop"),
                  tta_flip=True, device="cuda", log_every=5)


def test_autocast_is_bf16_or_fp16_on_cuda():
    dtype = autocast_dtype("auto", torch.device("cuda"))
    assert dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert autocast_dtype("fp32", torch.device("cuda")) is None


@pytest.mark.parametrize("optimizer", ["nesterov", "adamw", "adagrad"])
def test_a_cuda_run_learns_with_each_fused_optimizer(tiny_dataset, optimizer):
    cfg = CFG.replace(optimizer=optimizer, lr=0.05 if optimizer == "nesterov" else 3e-3)
    events = []
    result = train(TINY, cfg, tiny_dataset, events.append)
    started = events[0]
    assert started["device"].startswith("cuda") and started["amp"] in ("bfloat16", "float16")
    assert result.status == "finished" and result.metrics["test_accuracy"] > 0.5  # chance 0.1
    assert next(result.model.parameters()).device.type == "cuda"


def test_the_recipe_switches_run_on_cuda(tiny_dataset):
    cfg = CFG.replace(whiten=True, dirac_init=True, bn_frozen_scale=True, bn_bias_lr=8.0, alternate_flips=True,
                      tta_translate=1, ema=0.99)
    result = train(TINY, cfg, tiny_dataset)
    assert result.metrics["test_accuracy"] > 0.5
    assert torch.equal(result.model.features[0].bn.weight.cpu(), torch.ones(16))


def test_cuda_evaluation_matches_the_cpu_on_the_same_weights(tiny_dataset):
    result = train(TINY, CFG.replace(epochs=1), tiny_dataset)
    norm = result.normalization
    on_gpu = predict_logits(result.model, tiny_dataset.test_x, norm["mean"], norm["std"], device="cuda")
    on_cpu = predict_logits(result.model.cpu(), tiny_dataset.test_x, norm["mean"], norm["std"], device="cpu")
    assert torch.allclose(on_gpu, on_cpu, atol=1e-3)
    cpu_eval = evaluate_model(result.model, tiny_dataset.test_x, tiny_dataset.test_y, norm["mean"], norm["std"],
                              device="cpu")
    # The run evaluated in float32 (the inference policy) on the GPU, where convolutions may use TF32.
    assert abs(cpu_eval["accuracy"] - result.metrics["test_accuracy"]) < 0.02
