"""The training loop: learning, events, stop, NaN guard, determinism, schedules, optimizers, EMA, resume."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.presets import PRESETS
from explorer.engine import train as train_module
from explorer.engine.config import TrainConfig
from explorer.engine.device import DeviceError
from explorer.engine.train import (
    batch_count,
    estimate_epoch_seconds,
    evaluate_model,
    lr_at,
    make_optimizer,
    resolve_device,
    train,
)
from explorer.errors import ConfigError, TrainingError

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
FAST = TrainConfig(epochs=2, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=5,
                   device="cpu")


def run(cfg=FAST, dataset=None, arch=TINY, **kwargs):
    events = []
    result = train(arch, cfg, dataset, events.append, **kwargs)
    return result, events


def test_synthetic_trains_well_above_chance(tiny_dataset):
    result, _ = run(FAST.replace(augment=("flip", "crop")), tiny_dataset)
    assert result.status == "finished"
    assert result.baseline["test_accuracy"] < 0.25
    assert result.metrics["test_accuracy"] > 0.6  # 10 classes: chance is 0.1
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]


def test_events_order_and_contents(tiny_dataset):
    result, events = run(FAST, tiny_dataset)
    types = [e["type"] for e in events]
    steps = batch_count(600, 32)  # 19
    batches_per_epoch = math.ceil(steps / 5)  # every 5th batch and the last one
    assert types == ["started", "baseline"] + (["batch"] * batches_per_epoch + ["epoch"]) * 2 + ["finished"]
    assert all(isinstance(e["time"], float) for e in events)
    started = events[0]
    assert started["config"]["train"] == FAST.to_dict() and started["config"]["arch"] == TINY.to_dict()
    assert started["params"] == sum(p.numel() for p in result.model.parameters())
    assert started["device"] == "cpu" and started["input_shape"] == [3, 32, 32]
    assert started["classes"] == tiny_dataset.classes and started["total_steps"] == 2 * steps
    baseline = events[1]
    assert set(baseline["per_class"]) == set(tiny_dataset.classes) and 0 <= baseline["test_accuracy"] <= 1
    batch_events = [e for e in events if e["type"] == "batch"]
    assert [(e["epoch"], e["batch"]) for e in batch_events[:5]] == [(1, 5), (1, 10), (1, 15), (1, 19), (2, 5)]
    assert [e["step"] for e in batch_events[:5]] == [5, 10, 15, 19, 24]
    assert all(e["loss"] > 0 and e["lr"] == FAST.lr for e in batch_events)
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert 0 <= e["train_accuracy"] <= 1 and 0 <= e["test_accuracy"] <= 1
        assert set(e["per_class"]) == set(tiny_dataset.classes)
        assert e["seconds"] > 0 and e["images_per_second"] > 0 and e["seconds"] >= e["train_seconds"]
    finished = events[-1]["summary"]
    assert finished["epochs_done"] == 2 and finished["final_test_accuracy"] == epochs[-1]["test_accuracy"]
    assert finished["best_test_accuracy"] == max(e["test_accuracy"] for e in epochs)
    assert result.epochs == epochs and result.summary == finished


def test_stop_takes_effect_within_one_batch(tiny_dataset):
    stop = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if event["type"] == "batch":
            stop.set()

    result = train(TINY, FAST.replace(log_every=1), tiny_dataset, on_event, stop=stop)
    # Stopped in epoch 1: the partial epoch (one batch) is evaluated and kept.
    assert [e["type"] for e in events] == ["started", "baseline", "batch", "partial_epoch", "stopped"]
    assert result.status == "stopped" and result.epochs_done == 0 and result.epochs == []
    assert result.partial_epoch == {"epoch": 1, "batches": 1, "steps_per_epoch": 19}
    assert events[-1]["summary"]["epochs_done"] == 0


def test_nan_guard_names_epoch_and_batch(tiny_dataset):
    # The study's tutorial net (no BatchNorm) with SGD at lr 10 diverges within the first epoch.
    events = []
    with pytest.raises(TrainingError, match=r"epoch 1, batch \d+.*Lower the learning rate") as err:
        train(PRESETS["tutorial"], FAST.replace(optimizer="sgd", lr=10.0), tiny_dataset, events.append)
    assert events[-1]["type"] == "failed" and events[-1]["error"] == str(err.value)
    assert "epoch" not in [e["type"] for e in events]


def test_nan_guard_on_a_forced_infinite_loss(tiny_dataset, monkeypatch):
    real_loss = train_module._Session.loss
    calls = {"n": 0}

    def loss(self, logits, y):
        calls["n"] += 1
        value = real_loss(self, logits, y)
        return value * math.inf if calls["n"] == 23 else value  # epoch 2, batch 4 (19 batches per epoch)

    monkeypatch.setattr(train_module._Session, "loss", loss)
    with pytest.raises(TrainingError, match=r"epoch 2, batch 4;"):
        run(FAST, tiny_dataset)


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_dataset):
    cfg = FAST.replace(epochs=1, augment=("flip", "crop"), log_every=2)

    def numbers(events):
        return [e.get("loss") or e.get("test_accuracy") for e in events if e["type"] in ("batch", "epoch")]

    first = numbers(run(cfg, tiny_dataset)[1])
    assert first == numbers(run(cfg, tiny_dataset)[1])
    assert first != numbers(run(cfg.replace(seed=1), tiny_dataset)[1])


def test_lr_schedules():
    cfg = TrainConfig(epochs=4, lr=1.0)
    total, per_epoch = 400, 100
    assert [lr_at(cfg, s, total, per_epoch) for s in (0, 399)] == [1.0, 1.0]
    step = cfg.replace(schedule="step")
    assert [lr_at(step, s, total, per_epoch) for s in (0, 199, 200, 300, 399)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.01])
    cosine = cfg.replace(schedule="cosine", warmup_epochs=1.0)
    assert lr_at(cosine, 0, total, per_epoch) == pytest.approx(0.01)
    assert lr_at(cosine, 99, total, per_epoch) == pytest.approx(1.0)
    assert lr_at(cosine, 250, total, per_epoch) == pytest.approx(0.5)
    assert lr_at(cosine, 399, total, per_epoch) < 1e-3
    onecycle = cfg.replace(schedule="onecycle")  # warm-up = 25 % of the steps by default
    assert lr_at(onecycle, 0, total, per_epoch) == pytest.approx(0.1)
    assert lr_at(onecycle, 100, total, per_epoch) == pytest.approx(1.0)
    assert lr_at(onecycle, 250, total, per_epoch) == pytest.approx(0.5)
    assert lr_at(onecycle, 400, total, per_epoch) == 0


def test_schedule_reaches_the_batch_events(tiny_dataset):
    _, events = run(FAST.replace(schedule="cosine", epochs=1, log_every=1), tiny_dataset)
    lrs = [e["lr"] for e in events if e["type"] == "batch"]
    assert lrs[0] == pytest.approx(FAST.lr) and lrs == sorted(lrs, reverse=True) and lrs[-1] < FAST.lr * 0.05


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("nesterov", torch.optim.SGD),
                                        ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                        ("adagrad", torch.optim.Adagrad)])
def test_every_optimizer_trains(tiny_dataset, name, kind):
    cfg = FAST.replace(optimizer=name, lr=0.05 if "sgd" in name or name == "nesterov" else 0.01, epochs=1,
                       weight_decay=1e-4)
    opt = make_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))], torch.device("cpu"))
    assert isinstance(opt, kind) and opt.param_groups[0]["weight_decay"] == 1e-4
    assert opt.param_groups[0].get("nesterov", False) == (name == "nesterov")
    result, _ = run(cfg, tiny_dataset)
    assert result.metrics["test_accuracy"] > 0.15


def test_nesterov_without_momentum_is_refused(tiny_dataset):
    with pytest.raises(ConfigError, match="momentum"):
        run(FAST.replace(optimizer="nesterov", momentum=0.0), tiny_dataset)


def test_nll_and_label_smoothing_losses(tiny_dataset):
    nll, _ = run(FAST.replace(loss="nll", epochs=1), tiny_dataset)
    smooth, _ = run(FAST.replace(label_smoothing=0.3, epochs=1), tiny_dataset)
    plain, _ = run(FAST.replace(epochs=1), tiny_dataset)
    # NLL of log-softmax is cross-entropy: same numbers; smoothing raises the training loss floor.
    assert nll.epochs[0]["train_loss"] == pytest.approx(plain.epochs[0]["train_loss"], rel=1e-4)
    assert smooth.epochs[0]["train_loss"] > plain.epochs[0]["train_loss"]


def test_ema_weights_are_evaluated(tiny_dataset):
    result, _ = run(FAST.replace(ema=0.9), tiny_dataset)
    raw = result.optimizer_state["model"]
    averaged = result.model.state_dict()
    assert not torch.equal(raw["features.0.conv.weight"], averaged["features.0.conv.weight"])
    check = evaluate_model(result.model, tiny_dataset.test_x, tiny_dataset.test_y, result.normalization["mean"],
                           result.normalization["std"], 200, "cpu", classes=tiny_dataset.classes)
    assert check["accuracy"] == result.metrics["test_accuracy"]
    assert "model" not in run(FAST.replace(epochs=1), tiny_dataset)[0].optimizer_state


def test_flip_tta_changes_evaluation(tiny_dataset):
    plain, _ = run(FAST.replace(epochs=1), tiny_dataset)
    tta, _ = run(FAST.replace(epochs=1, tta_flip=True), tiny_dataset)
    assert plain.epochs[0]["train_loss"] == tta.epochs[0]["train_loss"]  # same training
    assert plain.epochs[0]["test_loss"] != tta.epochs[0]["test_loss"]


def test_half_normalization(tiny_dataset):
    result, events = run(FAST.replace(epochs=1, normalization="half"), tiny_dataset)
    assert events[0]["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert result.normalization == {"mean": [0.5] * 3, "std": [0.5] * 3}


def test_resume_continues_epoch_numbers_and_weights(tiny_dataset):
    first, _ = run(FAST.replace(optimizer="sgd", lr=0.05, epochs=1), tiny_dataset)
    state = {"model": first.model.state_dict(), "optimizer": first.optimizer_state, "epochs_done": 1}
    second, events = run(FAST.replace(optimizer="sgd", lr=0.05, epochs=1), tiny_dataset, init_state=state)
    assert events[0]["first_epoch"] == 2 and [e["epoch"] for e in second.epochs] == [2]
    assert second.epochs_done == 2 and second.summary["epochs_done"] == 2
    assert second.epochs[0]["train_loss"] < first.epochs[0]["train_loss"]
    with pytest.raises(TrainingError, match="do not fit"):
        run(FAST, tiny_dataset, arch=PRESETS["tutorial"], init_state=state)


def test_a_resumed_run_goes_on_with_the_schedule_and_the_average_where_it_stopped(tiny_dataset):
    cfg = FAST.replace(epochs=4, optimizer="sgd", lr=0.05, schedule="cosine", warmup_epochs=1.0, ema=0.9)
    _, whole = run(cfg, tiny_dataset)
    stop = threading.Event()
    first, _ = run(cfg, tiny_dataset, stop=stop, on_epoch_end=lambda snap: snap.epochs_done == 2 and stop.set())
    assert first.status == "stopped" and first.epochs_done == 2
    state = {"model": first.optimizer_state["model"], "averaged": first.model.state_dict(),
             "optimizer": first.optimizer_state, "epochs_done": 2}
    _, resumed = run(cfg.replace(epochs=2), tiny_dataset, init_state=state)

    def rates(events):
        return [(e["epoch"], e["batch"], e["lr"]) for e in events if e["type"] == "batch" and e["epoch"] > 2]
    assert rates(resumed) == rates(whole)  # no second warm-up: the cosine's last half, as in the whole run
    assert rates(resumed)[0][2] > 0.5 * cfg.lr
    session = train_module._Session(TINY, cfg.replace(epochs=2), tiny_dataset, state)
    averaged = session.ema.model.state_dict()
    assert all(torch.equal(averaged[k], v) for k, v in first.model.state_dict().items())
    assert session.ema.updates == 2 * batch_count(600, 32)


def test_resolve_device_and_batch_count():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="use auto, cpu or cuda"):
        resolve_device("tpu")
    assert [batch_count(10, 3), batch_count(11, 3), batch_count(1, 8), batch_count(16, 8)] == [3, 4, 1, 2]


def test_estimate_epoch_seconds(tiny_dataset):
    seconds = estimate_epoch_seconds(TINY, FAST, tiny_dataset, batches=2)
    assert 0 < seconds < 60


def test_other_input_shapes(image_folder_factory):
    from explorer.engine.data import load_dataset

    root = image_folder_factory(per_class=8, size=(28, 28), mode="L")
    result, events = run(FAST.replace(epochs=1, batch_size=8), load_dataset(f"folder:{root}"))
    assert events[0]["input_shape"] == [1, 28, 28] and result.model.num_classes == 3


def test_thread_budget_caps_threads_and_is_read_at_every_logged_batch(tiny_dataset):
    calls = []

    def budget() -> int:
        calls.append(1)
        return 1

    _, events = run(FAST.replace(epochs=1, log_every=5), tiny_dataset, thread_budget=budget)
    batches = [e for e in events if e["type"] == "batch"]
    assert len(calls) >= len(batches) == 4  # 19 batches: logged at 5, 10, 15 and 19
    assert all(e["threads"] == 1 for e in batches)


def test_a_snapshot_after_every_epoch(tiny_dataset):
    snapshots = []
    result = train(TINY, FAST.replace(ema=0.9), tiny_dataset, on_epoch_end=snapshots.append)
    assert [s.epochs_done for s in snapshots] == [1, 2]
    assert [s.metrics["test_accuracy"] for s in snapshots] == [e["test_accuracy"] for e in result.epochs]
    assert snapshots[-1].normalization == result.normalization
    assert "model" in snapshots[-1].optimizer_state  # EMA: the raw weights travel with the optimizer state
    last = {k: v.contiguous() for k, v in snapshots[-1].model.state_dict().items()}
    assert all(torch.equal(last[k], v) for k, v in result.model.state_dict().items())


def test_squeeze_excitation_nets_run_nchw_on_the_cpu_and_the_rest_nhwc():
    # Measured with benchmarks/throughput.py --vocabulary: NHWC made se-resnet slower on the CPU, the rest faster.
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train_module.memory_format_for(PRESETS["se-resnet"], cpu) == torch.contiguous_format
    assert train_module.memory_format_for(PRESETS["se-resnet"], cuda) == torch.channels_last
    for name in ("fast", "resnet20", "tiniest"):
        assert train_module.memory_format_for(PRESETS[name], cpu) == torch.channels_last
    one_se_block = ArchConfig(conv=(ConvBlock(out_channels=8), ConvBlock(out_channels=8, block="basic", se=0.25)))
    assert train_module.memory_format_for(one_se_block, cpu) == torch.contiguous_format
