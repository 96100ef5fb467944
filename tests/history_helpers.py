"""Run folders made by hand (run.json, events.jsonl, model.safetensors) for the history/checkpoint tests,
so they do not depend on the training engine."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import model_cost
from explorer.arch.model import build_model
from explorer.engine.config import TrainConfig
from explorer.engine.data import load_dataset
from explorer.engine.evaluate import evaluate_model
from explorer.store.checkpoint import save_checkpoint
from explorer.store.runs import this_process

SYNTHETIC_CLASSES = ["disk", "square", "ring", "cross", "triangle", "h-stripes", "v-stripes", "diamond", "x-mark",
                     "checker"]
SMALL = ArchConfig(conv=(ConvBlock(4, pool="max"), ConvBlock(8, pool="max")), head="avgpool")
LARGE = ArchConfig(conv=(ConvBlock(8, pool="max"), ConvBlock(16, pool="max")), fc=(16,), head="avgpool")


def make_run(runs_dir: Path, run_id: str, *, name: str | None = None, arch: ArchConfig = SMALL,
             accuracies: tuple[float, ...] = (0.3, 0.5), status: str = "finished", preset: str | None = None,
             created: str = "2024-01-01T00:00:00", data: str = "synthetic:40", checkpoint: bool = True,
             resumed_from: str | None = None, first_epoch: int = 1, lr: float = 0.01, seed: int = 0,
             mean: list[float] | None = None, std: list[float] | None = None, fit_steps: int = 0) -> Path:
    """A run folder as a run process writes it: record, one epoch event per accuracy, and (optionally) a checkpoint.

    With `fit_steps` the model is really trained (Adam, full-batch steps on `data`) and the last accuracy is the
    one it measures on the test split, as training would record it."""
    folder = runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    train = TrainConfig(epochs=len(accuracies), lr=lr)
    torch.manual_seed(seed)
    model = build_model(arch, (3, 32, 32), 10)
    fingerprint = None
    if fit_steps:
        dataset = load_dataset(data)
        mean, std, fingerprint = dataset.mean, dataset.std, dataset.fingerprint
        accuracies = (*accuracies[:-1], fit(model, dataset, fit_steps))
    cost = model_cost(arch, (3, 32, 32), 10)
    epochs = list(range(first_epoch, first_epoch + len(accuracies)))
    events = [{"type": "started", "time": 1.0, "config": arch.to_dict(), "params": cost.params, "flops": cost.flops}]
    for epoch, acc in zip(epochs, accuracies):
        events.append({"type": "epoch", "time": 1.0 + epoch, "epoch": epoch, "train_loss": 2.0 - acc,
                       "train_accuracy": acc + 0.05, "test_loss": 2.1 - acc, "test_accuracy": acc,
                       "per_class": {}, "seconds": 1.5, "images_per_second": 100.0, "lr": lr})
    summary = {"final_test_accuracy": accuracies[-1] if accuracies else None,
               "best_test_accuracy": max(accuracies) if accuracies else None,
               "epochs_done": epochs[-1] if epochs else 0, "wall_seconds": 1.5 * len(accuracies),
               "images_per_second": 100.0}
    if status in ("finished", "stopped"):
        events.append({"type": status, "time": 99.0, "summary": summary})
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if checkpoint:
        meta = {"classes": SYNTHETIC_CLASSES, "normalization": {"mean": mean or [0.5] * 3, "std": std or [0.25] * 3},
                "train": train, "data": data, "data_fingerprint": fingerprint, "metrics": summary}
        save_checkpoint(folder, model, meta)
    record = {"id": run_id, "name": name, "status": status, "created": created, "finished": created,
              "preset": preset, "recipe": None, "arch": arch.to_dict(), "train": train.to_dict(), "data": data,
              "data_fingerprint": fingerprint, "input_shape": [3, 32, 32], "num_classes": 10,
              "classes": SYNTHETIC_CLASSES,
              "params": cost.params, "flops": cost.flops, "device": "cpu", "error": None, "summary": summary,
              "checkpoint": "model.safetensors" if checkpoint else None, "resumed_from": resumed_from,
              # An active run is owned by a live process (this one), else it would read as interrupted.
              "owner": this_process() if status in ("queued", "running") else None}
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def fit(model: torch.nn.Module, dataset, steps: int) -> float:
    """A few full-batch Adam steps on the training split; returns the test accuracy evaluate_model measures."""
    scale = torch.tensor(dataset.std).view(1, -1, 1, 1) * 255
    shift = torch.tensor(dataset.mean).view(1, -1, 1, 1) * 255
    x = (dataset.train_x.float() - shift) / scale
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), dataset.train_y).backward()
        optimizer.step()
    model.eval()
    return evaluate_model(model, dataset.test_x, dataset.test_y, dataset.mean, dataset.std)["accuracy"]
