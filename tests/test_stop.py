"""A stop keeps weights equal to their numbers (issue 19 item 1).

Mid-epoch after a whole epoch: the last whole epoch's weights, EMA and optimizer state, with its metrics, so
`evaluate` gives exactly the recorded accuracy and `train --resume` continues at the next epoch. In the run's
first epoch: the partial epoch, evaluated at the stop and marked "partial epoch" in the record. Every stop is
driven by an event (the step callback sets the flag), never by a sleep.
"""

from __future__ import annotations

import json
import threading

import pytest
import torch

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.cli import main
from explorer.engine.config import TrainConfig
from explorer.engine.train import train
from explorer.store.checkpoint import load_checkpoint
from explorer.store.events import fold
from explorer.store.runner import RunProcess, RunSpec, resume_state

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
# 200 training images at batch 32: 7 batches per epoch; one batch event per batch.
LONG = TrainConfig(epochs=50, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=1,
                   device="cpu", tta_flip=True, tta_translate=1)
DATA = "synthetic:200"


def stop_at(epoch: int, batch: int):
    """An on_event that stops the RunProcess once `batch` batches of `epoch` have run."""
    holder: dict = {}

    def on_event(event) -> None:
        if event.type == "batch" and (event.epoch, event.batch) == (epoch, batch):
            holder["process"].stop.set()  # what SIGTERM/SIGINT do

    return holder, on_event


def run_until(spec: RunSpec, epoch: int, batch: int) -> dict:
    holder, on_event = stop_at(epoch, batch)
    holder["process"] = RunProcess(spec, on_event=on_event)
    return holder["process"].run()


def evaluate_json(path, capsys) -> dict:
    assert main(["evaluate", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def events_of(runs_dir, run_id) -> list[dict]:
    return [json.loads(line) for line in (runs_dir / run_id / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_a_stop_mid_epoch_2_keeps_epoch_1_equal_to_its_numbers(runs_dir, capsys, ema):
    record = run_until(RunSpec(TINY, LONG.replace(ema=ema), DATA), epoch=2, batch=3)
    assert record["status"] == "stopped" and record["checkpoint_kind"] == "epoch"
    assert record["partial_epoch"] is None and record["summary"]["epochs_done"] == 1
    events = events_of(runs_dir, record["id"])
    epoch_1 = next(e for e in events if e["type"] == "epoch")
    # One checkpoint only, the one saved after epoch 1: the partial epoch 2 is dropped, not saved over it.
    assert [e["type"] for e in events].count("checkpoint") == 1
    evaluation = evaluate_json(runs_dir / record["id"] / "model.safetensors", capsys)
    assert evaluation["accuracy"] == record["summary"]["final_test_accuracy"] == epoch_1["test_accuracy"]
    assert evaluation["loss"] == pytest.approx(epoch_1["test_loss"], rel=1e-6, abs=1e-7)
    assert (evaluation["tta_flip"], evaluation["tta_translate"]) == (True, 1)
    meta = load_checkpoint(runs_dir / record["id"]).meta
    assert meta["epochs_done"] == 1 and meta["metrics"]["test_accuracy"] == epoch_1["test_accuracy"]
    assert "partial_epoch" not in meta


def test_the_engine_rolls_weights_ema_and_optimizer_back_to_the_last_whole_epoch(tiny_dataset):
    stop, kept = threading.Event(), {}

    def on_epoch_end(snapshot) -> None:
        kept["model"] = {k: v.clone() for k, v in snapshot.model.state_dict().items()}
        kept["raw"] = {k: v.clone() for k, v in snapshot.optimizer_state["model"].items()}
        kept["steps"] = {i: s["step"].clone() for i, s in snapshot.optimizer_state["state_dict"]["state"].items()}

    def on_event(event) -> None:
        if event["type"] == "batch" and event["epoch"] == 2 and event["batch"] == 4:
            stop.set()

    result = train(TINY, LONG.replace(ema=0.9, tta_translate=0), tiny_dataset, on_event, stop=stop,
                   on_epoch_end=on_epoch_end)
    assert result.status == "stopped" and result.epochs_done == 1 and result.partial_epoch is None
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, kept["model"][name]), name  # the averaged weights of epoch 1
    for name, tensor in result.optimizer_state["model"].items():
        assert torch.equal(tensor, kept["raw"][name]), name  # the raw weights a resume trains on
    steps = {i: s["step"] for i, s in result.optimizer_state["state_dict"]["state"].items()}
    assert steps == kept["steps"] and all(int(s) == 19 for s in steps.values())  # 600 images / 32: 19 steps
    assert result.metrics["test_accuracy"] == result.epochs[-1]["test_accuracy"]


def test_resuming_a_run_stopped_mid_epoch_continues_at_the_next_epoch(runs_dir):
    first = run_until(RunSpec(TINY, LONG, DATA), epoch=2, batch=5)
    state = resume_state(first["id"], runs_dir)
    assert state["epochs_done"] == 1
    saved = load_checkpoint(runs_dir / first["id"], with_optimizer=True)
    assert all(int(s["step"]) == 7 for s in saved.optimizer_state["state_dict"]["state"].values())
    record = RunProcess(RunSpec(TINY, LONG.replace(epochs=1), DATA, resume_from=first["id"])).run()
    history = fold(events_of(runs_dir, record["id"]))
    assert record["status"] == "finished" and history.epochs == [2] and record["summary"]["epochs_done"] == 2


def test_a_stop_in_epoch_1_keeps_the_partial_epoch_evaluated_and_marked(runs_dir, capsys):
    record = run_until(RunSpec(TINY, LONG, DATA), epoch=1, batch=3)
    assert record["status"] == "stopped" and record["checkpoint"] == "model.safetensors"
    assert record["checkpoint_kind"] == "partial epoch" and record["summary"]["epochs_done"] == 0
    partial = record["partial_epoch"]
    assert (partial["epoch"], partial["batches"], partial["steps_per_epoch"]) == (1, 3, 7)
    events = events_of(runs_dir, record["id"])
    assert [e["type"] for e in events][-3:] == ["partial_epoch", "checkpoint", "stopped"]
    history = fold(events)
    assert history.partial_epoch.batches == 3 and history.epochs == []
    assert history.latest_metrics()["test_accuracy"] == partial["test_accuracy"]  # the CLI's final line
    evaluation = evaluate_json(runs_dir / record["id"] / "model.safetensors", capsys)
    assert evaluation["accuracy"] == partial["test_accuracy"]
    assert evaluation["loss"] == pytest.approx(partial["test_loss"], rel=1e-6, abs=1e-7)
    meta = load_checkpoint(runs_dir / record["id"]).meta
    assert meta["partial_epoch"]["batches"] == 3 and meta["epochs_done"] == 0
    # Resuming starts epoch 1 again, from the partial weights.
    resumed = RunProcess(RunSpec(TINY, LONG.replace(epochs=1), DATA, resume_from=record["id"])).run()
    assert fold(events_of(runs_dir, resumed["id"])).epochs == [1] and resumed["checkpoint_kind"] == "epoch"


def test_a_stop_before_any_batch_keeps_nothing(tiny_dataset):
    stop = threading.Event()

    def on_event(event) -> None:
        if event["type"] == "baseline":
            stop.set()

    events = []
    result = train(TINY, LONG, tiny_dataset, lambda e: (events.append(e), on_event(e)), stop=stop)
    assert result.status == "stopped" and result.partial_epoch is None
    assert [e["type"] for e in events] == ["started", "baseline", "stopped"]
