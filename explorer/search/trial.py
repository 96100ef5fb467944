"""One trial: sample, check the budget analytically, train on the validation split as a normal run record.

Order inside `Objective.__call__`:
1. stamp the trial with its worker (pid, start time, host) so a worker that dies can be recognised (worker.py);
2. sample (ArchConfig, TrainConfig) from the space; a sample that cannot be built, or whose model_cost is over
   the parameter / FLOPs budget, is *rejected*: user attr `rejected` (why) and constraints (> 0: by how much,
   for the sampler), then TrialPruned - nothing is loaded or trained (milliseconds); so is a net too slow for
   one epoch in --trial-seconds (after a few timed batches);
3. train with RunProcess (a normal run folder whose run.json carries `search`: name, trial, storage, validation
   split) on a seeded validation split carved from the training set: the epochs' "test" accuracy in that record
   is the *validation* accuracy, reported to the pruner after every epoch (one objective only);
4. evaluate the final weights once on the real test set: user attr `test_accuracy`, never optimized.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from explorer.arch.cost import buildable_cost
from explorer.engine.dataset import Dataset, channel_stats, fingerprint
from explorer.errors import ExplorerError, TrainingError
from explorer.search.space import sample
from explorer.store.runner import RunProcess, RunSpec
from explorer.store.runs import this_process

_SPLITS: dict[tuple, tuple[Dataset, Dataset]] = {}
# Time-budgeted trials train at least this many epochs (on a subset when whole epochs do not fit) over at least
# this many batches each; fewer makes the one-cycle schedule meaningless.
MIN_TRIAL_EPOCHS, MIN_TRIAL_BATCHES = 2, 10
_SPLITS_LOCK = threading.Lock()


class WorkerStopped(ExplorerError):
    """SIGTERM / SIGINT reached the worker during a trial: the trial is failed and queued again."""


def validation_split(source: str, data_dir: Path, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(search data, full data): the search data trains on the training set minus a seeded `fraction` of it and
    evaluates ("test") on that fraction; the full data keeps the real test set for the test accuracy."""
    from explorer.engine.data import load_dataset

    key = (source, str(data_dir), fraction, seed)
    with _SPLITS_LOCK:
        if key in _SPLITS:
            return _SPLITS[key]
    full = load_dataset(source, data_dir)
    n = len(full.train_y)
    n_val = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, keep = order[:n_val].sort().values, order[n_val:].sort().values
    train_x, train_y = full.train_x[keep].contiguous(), full.train_y[keep].contiguous()
    val_x, val_y = full.train_x[val].contiguous(), full.train_y[val].contiguous()
    mean, std = channel_stats(train_x)
    search = Dataset(f"{source} (validation split {fraction:g}, seed {seed})", train_x, train_y, val_x, val_y,
                     list(full.classes), fingerprint(train_x, train_y, val_x, val_y, full.classes), mean, std,
                     list(full.notes))
    with _SPLITS_LOCK:
        _SPLITS[key] = (search, full)
    return search, full


def training_subset(dataset: Dataset, images: int, seed: int) -> Dataset:
    """The first `images` of a seeded shuffle of the training images (validation images unchanged): the same
    subset for every trial of a search that needs one of this size."""
    order = torch.randperm(len(dataset.train_y), generator=torch.Generator().manual_seed(seed))
    keep = order[:images].sort().values
    return dataclasses.replace(dataset, name=f"{dataset.name}, {images:,} training images",
                               train_x=dataset.train_x[keep].contiguous(), train_y=dataset.train_y[keep].contiguous(),
                               fingerprint=f"{dataset.fingerprint}-{images}-{seed}")


class TrialRun(RunProcess):
    """A RunProcess that trains on the validation split, labels its record with the search, keeps its weights."""

    def __init__(self, spec: RunSpec, dataset: Dataset, search: dict,
                 on_folder: Callable[[str], None] | None = None, **kwargs: Any):
        super().__init__(spec, **kwargs)
        self.search_dataset, self.search, self.on_folder = dataset, search, on_folder
        self.last_snapshot = None

    def _create_folder(self) -> None:
        super()._create_folder()
        if self.on_folder is not None:
            self.on_folder(self.run_id)  # before it may queue for a slot: the page can say why the trial waits

    def _initial_record(self) -> dict:
        return super()._initial_record() | {"search": self.search}

    def _load_dataset(self) -> Dataset:
        return self.search_dataset

    def _save_epoch(self, snapshot) -> None:
        super()._save_epoch(snapshot)
        self.last_snapshot = snapshot


def rejection(trial: Any, reason: str, over: list[float]) -> Exception:
    """Record why the trial is never trained (and by how much it breaks the budget, so the sampler learns from
    it); the exception to raise ends it as PRUNED."""
    import optuna

    trial.set_user_attr("rejected", reason)
    set_constraints(trial, over)
    return optuna.TrialPruned(reason)


CONSTRAINTS = ("params", "flops", "seconds")


def set_constraints(trial: Any, over: list[float]) -> None:
    """How far over the parameter, FLOPs and time budgets (<= 0: within; always all three, so every trial has
    the same constraints): Optuna 5's samplers read them from trial.set_constraint; 4.x's TPE from the
    `constraint` user attr through its constraints_func (study.py)."""
    over = [float(v) for v in over] + [0.0] * (len(CONSTRAINTS) - len(over))
    trial.set_user_attr("constraint", over)
    if hasattr(trial, "set_constraint"):
        for key, value in zip(CONSTRAINTS, over):
            trial.set_constraint(key, value)


def fitted_epochs(arch, cfg, dataset: Dataset, seconds: float) -> tuple[int, float]:
    """(epochs of this schedule that fit `seconds` of training, estimated seconds per epoch), from a measured
    estimate (as benchmarks/accuracy.py does), so a one-cycle schedule ends when the time does. 0 epochs: not
    even one fits."""
    from explorer.engine.train import estimate_epoch_seconds

    per_epoch = estimate_epoch_seconds(arch, cfg, dataset, batches=8, include_eval=False) * 1.06
    return math.floor(min(1000.0, seconds / per_epoch)), per_epoch


class Objective:
    """Called by study.optimize in a worker: one trial, returns [validation accuracy, (params), (flops)]."""

    def __init__(self, name: str, storage_url: str, settings: dict, runs_dir: Path, data_dir: Path):
        self.name, self.storage_url, self.settings = name, storage_url, settings
        self.runs_dir, self.data_dir = Path(runs_dir), Path(data_dir)

    def __call__(self, trial: Any) -> Any:
        trial.set_user_attr("worker", this_process() | {"trial": trial.number})
        arch, cfg, cost, over = self._sample_within_budget(trial)
        search, full = validation_split(self.settings["data"], self.data_dir, self.settings["validation"]["fraction"],
                                        self.settings["validation"]["seed"])
        if self.settings["trial_epochs"]:
            epochs = self.settings["trial_epochs"]
        else:
            epochs, search = self._fit_to_time(trial, arch, cfg, search, over)
        set_constraints(trial, over)  # within every budget (a trial's constraints are set once)
        cfg = cfg.replace(epochs=epochs, warmup_epochs=min(cfg.warmup_epochs, epochs))
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("config", {"arch": arch.to_dict(), "train": cfg.to_dict()})  # with the fitted epochs
        process, pruned = self._train(trial, arch, cfg, search)
        snapshot = process.last_snapshot
        summary = process.record.get("summary") or {}
        self._upload_checkpoint(trial, process)
        trial.set_user_attr("train_seconds", summary.get("wall_seconds"))
        if snapshot is None:
            raise TrainingError(f"trial {trial.number} trained no epoch (run {process.run_id}).")
        val_accuracy = snapshot.metrics["test_accuracy"]
        trial.set_user_attr("val_accuracy", val_accuracy)
        trial.set_user_attr("test_accuracy", self._test_accuracy(snapshot, full, cfg))
        if pruned:
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {snapshot.epochs_done}")
        values = {"accuracy": val_accuracy, "params": cost.params, "flops": cost.flops}
        out = [values[k] for k in self.settings["objectives"]]
        return out[0] if len(out) == 1 else out

    def _fit_to_time(self, trial: Any, arch, cfg, dataset: Dataset, over: list[float]) -> tuple[int, Dataset]:
        """(epochs, training data) that fit the trial's seconds. When fewer than MIN_TRIAL_EPOCHS whole epochs
        fit (a big dataset, a slow net, one core per worker), the trial trains MIN_TRIAL_EPOCHS epochs over a
        seeded subset of the training split that fits, so every trial still gets the same seconds and the pruner
        more than one report; a net too slow for even MIN_TRIAL_BATCHES batches (or a quarter of a small training
        set) is rejected (a few timed batches, not a whole epoch, are spent on it)."""
        seconds = self.settings["trial_seconds"]
        epochs, per_epoch = fitted_epochs(arch, cfg, dataset, seconds)
        trial.set_user_attr("epoch_seconds_estimate", per_epoch)
        if epochs >= MIN_TRIAL_EPOCHS:
            return epochs, dataset
        available = len(dataset.train_y)
        images = math.floor(available * seconds / (MIN_TRIAL_EPOCHS * per_epoch))
        fewest = min(MIN_TRIAL_BATCHES * cfg.batch_size, available // 4)  # a small dataset: a quarter of it
        if images < fewest:
            raise rejection(trial, f"too slow: {MIN_TRIAL_EPOCHS} epochs of {fewest:,} images take more than the "
                                   f"trial's {seconds:g} s (a whole epoch: about {per_epoch:.0f} s)",
                            [*over, per_epoch - seconds])
        trial.set_user_attr("train_images", images)
        return MIN_TRIAL_EPOCHS, training_subset(dataset, images, self.settings["validation"]["seed"])

    def _sample_within_budget(self, trial: Any):
        settings = self.settings
        try:
            arch, cfg = sample(trial, settings["space"])
            cost = buildable_cost(arch, tuple(settings["input_shape"]), settings["num_classes"])
        except ExplorerError as err:
            raise rejection(trial, f"cannot be built: {err}", [1.0, 1.0, 0.0]) from None
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("flops", cost.flops)
        trial.set_user_attr("config", {"arch": arch.to_dict(), "train": cfg.to_dict()})
        budget, flops_budget = settings["budget"], settings["flops_budget"]
        over = [cost.params - budget if budget else 0.0, cost.flops - flops_budget if flops_budget else 0.0]
        if over[0] > 0:
            raise rejection(trial, f"{cost.params:,} parameters, over the budget of {budget:,}", over)
        if over[1] > 0:
            raise rejection(trial, f"{cost.flops:,} FLOPs per image, over the budget of {flops_budget:,.0f}", over)
        return arch, cfg, cost, over

    def _train(self, trial: Any, arch, cfg, dataset: Dataset) -> tuple[TrialRun, bool]:
        single = len(self.settings["objectives"]) == 1
        state = {"pruned": False}
        spec = RunSpec(arch, cfg, self.settings["data"], name=f"search {self.name} trial {trial.number}")
        search = {"name": self.name, "trial": trial.number, "storage": self.storage_url,
                  "validation": self.settings["validation"], "evaluated_on": "validation split"}

        def on_event(event) -> None:
            if event.type != "epoch" or not single or event.test_accuracy is None:
                return
            trial.report(event.test_accuracy, event.epoch)
            if trial.should_prune():
                state["pruned"] = True
                process.stop.set()

        process = TrialRun(spec, dataset, search, on_folder=lambda run_id: trial.set_user_attr("run_id", run_id),
                           runs_dir=self.runs_dir, data_dir=self.data_dir, on_event=on_event)
        started = time.monotonic()
        try:
            process.run()  # TrainingError when training failed: the trial is FAIL
        except TrainingError as err:
            trial.set_user_attr("failed_because", str(err))  # the trials table says why
            raise
        finally:
            if process.run_id:
                trial.set_user_attr("run_id", process.run_id)
        trial.set_user_attr("seconds", time.monotonic() - started)
        if process.signal:
            raise WorkerStopped(f"trial {trial.number} stopped by signal {process.signal}")
        return process, state["pruned"]

    def _upload_checkpoint(self, trial: Any, process: TrialRun) -> None:
        """The weights into the search's artifact store, so the app can fetch trials trained on other machines."""
        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        from explorer.search.study import artifact_dir

        folder = artifact_dir(self.settings, self.storage_url)
        if folder is None or not process.record.get("checkpoint"):
            return
        folder.mkdir(parents=True, exist_ok=True)
        artifact = upload_artifact(artifact_store=FileSystemArtifactStore(folder), study_or_trial=trial,
                                   file_path=str(process.dir / process.record["checkpoint"]))
        trial.set_user_attr("checkpoint_artifact", artifact)

    @staticmethod
    def _test_accuracy(snapshot, full: Dataset, cfg) -> float:
        from explorer.engine.evaluate import InferencePolicy, evaluate_model

        norm = snapshot.normalization
        result = evaluate_model(snapshot.model, full.test_x, full.test_y, norm["mean"], norm["std"],
                                cfg.test_batch_size, policy=InferencePolicy.of(cfg))  # the run's one policy
        return result["accuracy"]


__all__ = ["Objective", "TrialRun", "validation_split", "fitted_epochs", "rejection", "WorkerStopped",
           "training_subset"]
