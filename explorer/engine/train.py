"""The training loop: preloaded uint8 tensors, batched augmentation on the device, events through a callback.

No DataLoader and no worker processes: each epoch slices the in-memory images with a seeded random permutation,
augments the batch with tensor ops (explorer.engine.augment.augment_batch), normalizes it, and takes one optimizer step.
The loop never imports streamlit; it reports through `on_event(dict)` (docs/run-record.md lists every event;
explorer.store.events parses them):
started -> baseline -> (batch every log_every batches)* -> epoch per epoch -> finished | stopped | failed.

Knobs and why:
- Losses are summed on the device and read every `log_every` batches, except on the CPU where reading a
  scalar is free and lets the NaN guard name the exact batch without extra tensor ops.
- The optimizer uses its fused implementation: at batch 8 per-step overhead matters.
- channels_last everywhere (measured faster on the CPU too); on CUDA bf16 autocast (fp16 + GradScaler where
  bf16 is missing).
- CPU threads never exceed the cores we may run on (oversubscribed OpenMP threads spin and crawl), and small
  steps (under SMALL_STEP_FLOPS, e.g. the study's batch 8) train on one thread: splitting tiny kernels over
  threads costs more in barriers than it gains, and on a busy machine it is several times slower. The thread
  count follows from the config alone, so the same seed gives the same numbers (EXPLORER_THREADS overrides).
  A `thread_budget` callable (the runner's: cores // runs training at once) caps it, re-read at every logged
  batch, so two runs side by side never ask for more threads than there are cores.
- `on_epoch_end` gets a Snapshot after every epoch (the runner saves a checkpoint from it, so a killed run
  keeps its last epoch).
- A stop keeps weights equal to their numbers. Mid-epoch, once this run has finished an epoch, the model,
  EMA and optimizer go back to the end of that epoch (a copy is kept at every epoch end): the result, its
  metrics and a resume all describe the last whole epoch, and the partial epoch's batches are dropped. Before
  this run's first epoch ends there is no whole epoch to go back to: the partial epoch is kept, evaluated at the
  stop (a "partial_epoch" event), because after a long first epoch (the study's batch 8 takes minutes) users
  want the weights to look at and resume rather than nothing. A stop before any batch keeps nothing.
- Evaluation follows the one InferencePolicy (explorer.engine.evaluate): the recipe's TTA, float32 always (no
  autocast, on the GPU too), so `evaluate` of a checkpoint gives exactly the recorded numbers.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from explorer.arch.config import ArchConfig
from explorer.arch.cost import model_cost
from explorer.arch.model import Net, build_model
from explorer.engine.augment import Augmentation, normalization
from explorer.engine.config import TrainConfig
from explorer.engine.dataset import Dataset
from explorer.engine.device import resolve_device
from explorer.engine.evaluate import InferencePolicy
from explorer.engine.evaluate import evaluate_model as _evaluate
from explorer.engine.init import WHITEN_IMAGES, bn_shifts, convs, dirac_init, freeze_bn_scales, whiten_first_conv
from explorer.errors import ConfigError, TrainingError

EventCallback = Callable[[dict], None]
ThreadBudget = Callable[[], int]
SMALL_STEP_FLOPS = 5e8  # forward FLOPs of one training batch below which one CPU thread is faster


@dataclass
class TrainResult:
    """What a finished (or stopped) run hands back. `model` holds the evaluated weights (EMA when ema > 0)."""

    model: Net
    status: str  # "finished" or "stopped"
    metrics: dict  # the last evaluation: test_loss, test_accuracy, per_class, train_loss, train_accuracy
    epochs: list[dict]  # every "epoch" event
    baseline: dict
    summary: dict
    images_per_second: float
    epochs_done: int
    normalization: dict  # {"mean": [...], "std": [...]} the model expects for uint8/255 input
    device: str
    optimizer_state: dict | None = None  # {"optimizer": name, "state_dict": ..., "model": raw weights if EMA}
    events: list[dict] = field(default_factory=list)
    # Stopped before this run's first epoch ended: {"epoch", "batches", "steps_per_epoch"} of the partial epoch
    # the model holds (its metrics are `metrics`); None when the model is the last whole epoch's.
    partial_epoch: dict | None = None


@dataclass
class Snapshot:
    """The state after an epoch, for a checkpoint: evaluated weights (EMA when on), optimizer state, metrics."""

    model: Net
    optimizer_state: dict
    epochs_done: int
    normalization: dict
    metrics: dict


# ---------------------------------------------------------------- small public helpers


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def limit_cpu_threads() -> int:
    """Never more intra-op threads than usable cores (EXPLORER_THREADS overrides); returns the count in use."""
    wanted = int(os.environ.get("EXPLORER_THREADS") or 0) or min(torch.get_num_threads(), available_cores())
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def evaluate_model(model: nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, mean: list[float], std: list[float],
                   batch_size: int, device: torch.device | str | None = None, tta_flip: bool = False,
                   classes: list[str] | None = None, tta_translate: int = 0) -> dict:
    """Loss, accuracy and per-class accuracy (explorer.engine.evaluate does the work)."""
    return _evaluate(model, x_uint8, y, mean, std, batch_size, device, tta_flip, classes, tta_translate)


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`.

    Warm-up: linear from lr/total_warmup to lr over warmup_epochs. Then constant; step (x0.1 at 50 % and 75 %);
    cosine to 0; or one-cycle: linear up from lr/10 over the warm-up (25 % of training when warmup_epochs is 0),
    then linear down to 0.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        warmup = warmup or round(0.25 * total_steps)
        if step < warmup:
            return cfg.lr * (0.1 + 0.9 * step / warmup)
        return cfg.lr * max(total_steps - step, 0) / max(total_steps - warmup, 1)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(total_steps - warmup, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** ((progress >= 0.5) + (progress >= 0.75)))
    return cfg.lr


def make_optimizer(cfg: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    # Fused kernels (one call updates every tensor; ~1.6x faster than foreach on this CPU at batch 8, where the
    # step's overhead matters); Adagrad has fused kernels on the CPU only, foreach on CUDA.
    speed = {"foreach": True} if device.type == "cuda" and cfg.optimizer == "adagrad" else {"fused": True}
    if cfg.optimizer in ("sgd", "nesterov"):
        if cfg.optimizer == "nesterov" and cfg.momentum <= 0:
            raise ConfigError("optimizer 'nesterov' needs momentum > 0; set momentum (e.g. 0.9) or use 'sgd'.")
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.optimizer == "nesterov", **speed)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **speed)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **speed)
    return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **speed)


# A cross-entropy this large means logits in the thousands: the run has diverged even if it is still finite
# (in bf16 a diverging run often comes back to finite values instead of overflowing to inf).
DIVERGED_LOSS = 1e4


def diverged(loss: float) -> bool:
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The training step's autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On the CPU bf16 only pays where the chip has bf16 instructions; elsewhere it is emulated and slower.
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if precision == "bf16" or native else None


def memory_format_for(arch: ArchConfig, device: torch.device) -> torch.memory_format:
    """The layout the step runs in. NHWC lets oneDNN (CPU) and cuDNN (GPU) skip layout reorders: on a quiet 2-core
    AMX CPU (benchmarks/throughput.py --vocabulary) `fast` trains 1.41x faster, `resnet20` 1.23x, `tiniest` 1.08x.
    Squeeze-excitation is the exception on the CPU: `se-resnet` ran 0.89x as fast in NHWC (its per-block channel
    means and rescale reorder the map), so nets with SE blocks stay NCHW there."""
    if device.type == "cpu" and any(block.se > 0 for block in arch.conv):
        return torch.contiguous_format
    return torch.channels_last


def batch_count(n: int, batch_size: int) -> int:
    """Batches per epoch: a last batch of a single image is dropped (BatchNorm cannot train on one sample)."""
    full, rest = divmod(n, batch_size)
    return full + (rest > 1) if full else 1


# ---------------------------------------------------------------- the session: everything one run needs


class _Session:
    """Model, optimizer, data on the device and the one-batch step; shared by train() and the estimate."""

    def __init__(self, arch: ArchConfig, cfg: TrainConfig, dataset: Dataset, init_state: dict | None = None,
                 thread_budget: ThreadBudget | None = None):
        self.cfg, self.dataset = cfg, dataset
        self.thread_budget = thread_budget
        self.device = resolve_device(cfg.device)
        arch.validate(dataset.input_shape)
        self.eval_threads = self.train_threads = torch.get_num_threads()
        if self.device.type == "cpu":
            self.eval_threads = limit_cpu_threads()
            step_flops = model_cost(arch, dataset.input_shape, dataset.num_classes).flops * cfg.batch_size
            small = step_flops < SMALL_STEP_FLOPS and not os.environ.get("EXPLORER_THREADS")
            self.train_threads = 1 if small else self.eval_threads
        torch.manual_seed(cfg.seed)  # model init (and dropout) draw from the global generator
        self.model = build_model(arch, dataset.input_shape, dataset.num_classes)
        self.mean, self.std = normalization(dataset, cfg.normalization)
        # x/255 normalized = (x - 255 mean) / (255 std); on the CPU first, for the whitening's patches
        self.shift = torch.tensor(self.mean).view(1, -1, 1, 1) * 255
        self.scale = torch.tensor(self.std).view(1, -1, 1, 1) * 255
        self._init_tricks(fresh=not init_state)
        self.model.to(self.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels once
        self.memory_format = memory_format_for(arch, self.device)
        self.model.to(memory_format=self.memory_format)
        self.random_init_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.optimizer = make_optimizer(cfg, self._param_groups(), self.device)
        self.epochs_done = 0
        self.ema = _Ema(self.model, cfg.ema) if cfg.ema > 0 else None
        if init_state:
            self._resume(init_state)
        self.shift, self.scale = self.shift.to(self.device), self.scale.to(self.device)
        self.train_x = dataset.train_x.to(self.device)
        self.train_y = dataset.train_y.to(self.device)
        self.test_x = dataset.test_x.to(self.device)
        self.test_y = dataset.test_y.to(self.device)
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.augment_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.augmentation = Augmentation.of(cfg)
        self.flip, self.pad = self.augmentation.flip, self.augmentation.crop_padding
        self.mix_rng = np.random.default_rng(cfg.seed + 3)  # mixup/cutmix weights (Beta: numpy draws it seeded)
        self.epoch = 1  # the loop sets it; alternating flips mirror an image on every other epoch
        self.flip_bits = (torch.rand(len(self.train_y), generator=torch.Generator().manual_seed(cfg.seed + 2)) < 0.5
                          ).to(self.device) if cfg.alternate_flips else None
        self.autocast = self._autocast()
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.steps_per_epoch = batch_count(len(self.train_y), cfg.batch_size)

    def _init_tricks(self, fresh: bool) -> None:
        """The recipe's initialisation switches (explorer.engine.init); a resumed run only re-freezes."""
        cfg = self.cfg
        if cfg.dirac_init and fresh:
            dirac_init(self.model)
        if cfg.bn_frozen_scale:
            freeze_bn_scales(self.model, reset=fresh)
        if cfg.whiten and fresh:
            chosen = torch.randperm(len(self.dataset.train_y), generator=torch.Generator().manual_seed(cfg.seed))
            images = self.dataset.train_x[chosen[:WHITEN_IMAGES]].float()
            whiten_first_conv(self.model, (images - self.shift) / self.scale)
        elif cfg.whiten:
            convs(self.model)[0].weight.requires_grad_(False)

    def _param_groups(self) -> list:
        """Trainable parameters; BatchNorm shifts in a group of their own when their LR is scaled (the same
        decay per step: weight decay divided by the scale)."""
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        shifts = {id(p) for p in bn_shifts(self.model) if p.requires_grad}
        if self.cfg.bn_bias_lr == 1 or not shifts:
            return trainable
        scale = self.cfg.bn_bias_lr
        return [{"params": [p for p in trainable if id(p) not in shifts]},
                {"params": [p for p in trainable if id(p) in shifts], "lr_scale": scale,
                 "weight_decay": self.cfg.weight_decay / scale}]

    def _autocast(self):
        self.autocast_dtype = autocast_dtype(self.cfg.precision, self.device)
        if self.autocast_dtype is None:
            return nullcontext
        return lambda: torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _resume(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as err:
            raise TrainingError(f"cannot resume: the saved weights do not fit this architecture ({err}).") from None
        self.epochs_done = int(state.get("epochs_done", 0))
        saved = state.get("optimizer") or {}
        if saved.get("optimizer") == self.cfg.optimizer and saved.get("state_dict"):
            self._load_optimizer(saved["state_dict"])
        if self.ema is not None:
            self.ema.reset(self.model)
            if state.get("averaged"):  # the average goes on from the saved one, at its full decay
                self.ema.model.load_state_dict(state["averaged"])
                self.ema.updates = self.epochs_done * batch_count(len(self.dataset.train_y), self.cfg.batch_size)

    def _load_optimizer(self, state_dict: dict) -> None:
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(state_dict)
        except ValueError:  # the frozen/grouped parameters changed with the recipe: momentum starts afresh
            return
        for group, settings in zip(self.optimizer.param_groups, fresh):
            group.update(settings)  # the new config's lr, momentum, weight decay win over the saved ones

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss against labels (B longs) or, with mixup/cutmix, soft targets (B x classes, rows sum to 1)."""
        logits = logits.float()
        if self.cfg.loss == "nll":
            return nn.functional.nll_loss(nn.functional.log_softmax(logits, dim=1), y)
        return nn.functional.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The augmented, normalized batch (float, on the device), its labels and the loss's targets (the labels,
        or soft targets when mixup/cutmix blend the images)."""
        x = self.train_x.index_select(0, idx)
        y = self.train_y.index_select(0, idx)
        flips = None if self.flip_bits is None else self.flip_bits.index_select(0, idx) ^ (self.epoch % 2 == 0)
        x = self.augmentation.images(x, self.augment_gen, flips)
        x = x.to(torch.float32, memory_format=self.memory_format).sub_(self.shift).div_(self.scale)
        if not self.augmentation.mixes:
            return x, y, y
        x, targets = self.augmentation.mix(x, y, self.dataset.num_classes, self.epoch, self.mix_rng, self.augment_gen)
        return x.contiguous(memory_format=self.memory_format), y, targets

    def step(self, idx: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the images `idx`; returns (loss, number right) as device tensors (no sync)."""
        x, y, targets = self.batch(idx)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with self.autocast():
            logits = self.model(x)
        loss = self.loss(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def eval_model(self) -> Net:
        return self.ema.model if self.ema is not None else self.model

    def use_threads(self, count: int) -> None:
        """`count` intra-op threads on the CPU, capped by the thread budget (runs sharing the cores)."""
        if self.device.type != "cpu":
            return
        if self.thread_budget is not None:
            count = max(1, min(count, self.thread_budget()))
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    def evaluate(self, model: nn.Module | None = None) -> dict:
        self.use_threads(self.eval_threads)
        # The one inference policy (float32, the recipe's TTA): re-evaluating the checkpoint gives these numbers.
        result = _evaluate(model or self.eval_model(), self.test_x, self.test_y, self.mean, self.std,
                           self.cfg.test_batch_size, self.device, classes=self.dataset.classes,
                           policy=InferencePolicy.of(self.cfg))
        return {"test_loss": result["loss"], "test_accuracy": result["accuracy"], "per_class": result["per_class"]}

    def evaluate_random_init(self) -> dict:
        """The random-init baseline (the seed's initial weights, whatever was resumed)."""
        current = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.random_init_state)
        try:
            return self.evaluate(self.model)
        finally:
            self.model.load_state_dict(current)

    def permutation(self) -> torch.Tensor:
        return torch.randperm(len(self.train_y), generator=self.order_gen).to(self.device)

    def optimizer_state(self) -> dict:
        state = {"optimizer": self.cfg.optimizer, "state_dict": self.optimizer.state_dict()}
        if self.ema is not None:  # the checkpoint holds the averaged weights; resuming needs the raw ones too
            state["model"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return state

    def keep(self) -> dict:
        """A copy of everything training changes (weights, EMA, optimizer), for `restore` after a stop."""
        kept = {"model": _cloned(self.model.state_dict()), "optimizer": copy.deepcopy(self.optimizer.state_dict())}
        if self.ema is not None:
            kept |= {"ema": _cloned(self.ema.model.state_dict()), "ema_updates": self.ema.updates}
        return kept

    def restore(self, kept: dict) -> None:
        self.model.load_state_dict(kept["model"])
        self.optimizer.load_state_dict(kept["optimizer"])
        if self.ema is not None:
            self.ema.model.load_state_dict(kept["ema"])
            self.ema.updates = kept["ema_updates"]


def _cloned(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


class _Ema:
    """Exponential moving average of every float tensor of the model (weights and BatchNorm statistics)."""

    def __init__(self, model: Net, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.reset(model)

    def reset(self, model: Net) -> None:
        self.model.load_state_dict(model.state_dict())
        self.targets = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        self.sources = [t for t in model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def update(self, model: Net) -> None:
        self.updates += 1
        # Short runs: the average warms up instead of staying near the random init for 1/(1-decay) steps.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.targets, self.sources, 1 - decay)


# ---------------------------------------------------------------- the loop


def train(arch: ArchConfig, train_cfg: TrainConfig, dataset: Dataset, on_event: EventCallback | None = None,
          stop: threading.Event | None = None, init_state: dict | None = None,
          thread_budget: ThreadBudget | None = None,
          on_epoch_end: Callable[[Snapshot], None] | None = None) -> TrainResult:
    """Train `arch` on `dataset`; every event goes to `on_event`. Returns the result (finished or stopped).

    `init_state` resumes: {"model": state dict, "optimizer": {"optimizer", "state_dict"} (optional),
    "averaged": the EMA's state dict (optional), "epochs_done": int}; the run then trains `train_cfg.epochs` more
    epochs, numbered after the ones done, on the schedule of all of them (its learning rate at the step it stopped).
    `thread_budget()` caps the CPU threads (re-read at every logged batch); `on_epoch_end(snapshot)` runs after
    every epoch. A NaN/inf loss or any other failure emits "failed" and raises (TrainingError for the NaN guard).
    """
    emit = _Emitter(on_event)
    threads = torch.get_num_threads()
    try:
        loop = _Loop(arch, train_cfg, dataset, emit, stop or threading.Event(), init_state, thread_budget)
        loop.on_epoch_end = on_epoch_end
        return loop.run()
    except Exception as err:
        emit("failed", error=str(err) if str(err) else type(err).__name__)
        raise
    finally:
        torch.set_num_threads(threads)  # the caller's setting, whatever the run used


class _Emitter:
    def __init__(self, on_event: EventCallback | None):
        self.on_event, self.events = on_event, []

    def __call__(self, kind: str, **payload) -> dict:
        event = {"type": kind, "time": time.time(), **payload}
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event


class _Loop:
    def __init__(self, arch, cfg, dataset, emit, stop, init_state, thread_budget=None):
        self.arch, self.cfg, self.dataset, self.emit, self.stop = arch, cfg, dataset, emit, stop
        self.session = _Session(arch, cfg, dataset, init_state, thread_budget)
        self.on_epoch_end: Callable[[Snapshot], None] | None = None
        self.first_epoch = self.session.epochs_done + 1
        self.total_steps = self.session.steps_per_epoch * cfg.epochs
        # A resumed run takes the learning rate where the schedule of all its epochs (those done and these) is:
        # resuming an interrupted run gives the rates the whole run would have had, with no second warm-up.
        self.schedule_offset = self.session.epochs_done * self.session.steps_per_epoch
        self.epochs: list[dict] = []
        self.step = 0
        self.train_images, self.train_seconds = 0, 0.0
        self.kept: dict | None = None  # the state at the end of this run's last whole epoch (Session.keep)
        self.progress: dict = {}  # the epoch in progress when stopped: batches, images seen, loss sum, right

    def run(self) -> TrainResult:
        start = time.perf_counter()
        self._started()
        baseline = self.session.evaluate_random_init()
        self.emit("baseline", **baseline)
        status, partial = "finished", None
        for epoch in range(self.first_epoch, self.first_epoch + self.cfg.epochs):
            if not self._epoch(epoch):
                status, partial = "stopped", self._after_stop(epoch)
                break
        summary = self._summary(baseline, time.perf_counter() - start)
        self.emit(status, summary=summary)
        return self._result(status, baseline, summary, partial)

    def _after_stop(self, epoch: int) -> dict | None:
        """Weights equal to their numbers: back to the last whole epoch, or the partial first epoch evaluated
        ("partial_epoch" event; returned with its metrics), or nothing trained at all (None)."""
        if self.kept is not None:
            self.session.restore(self.kept)
            return None
        batches = self.progress.get("batches", 0)
        if not batches:
            return None
        seen = self.progress["seen"]
        metrics = self.session.evaluate()
        event = self.emit("partial_epoch", epoch=epoch, batches=batches, steps_per_epoch=self.session.steps_per_epoch,
                          train_loss=float(self.progress["loss_sum"]) / seen,
                          train_accuracy=int(self.progress["correct"]) / seen, **metrics)
        return {k: v for k, v in event.items() if k not in ("type", "time")}

    def _started(self) -> None:
        s = self.session
        cost = model_cost(self.arch, self.dataset.input_shape, self.dataset.num_classes)
        self.emit("started", config={"arch": self.arch.to_dict(), "train": self.cfg.to_dict()},
                  params=cost.params, flops=cost.flops, device=str(s.device),
                  input_shape=list(self.dataset.input_shape), classes=list(self.dataset.classes),
                  total_steps=self.total_steps, steps_per_epoch=s.steps_per_epoch,
                  epochs=self.cfg.epochs, first_epoch=self.first_epoch, data=self.dataset.name,
                  train_images=len(self.dataset.train_y), test_images=len(self.dataset.test_y),
                  normalization={"mean": s.mean, "std": s.std}, amp=_dtype_name(s.autocast_dtype),
                  threads=s.train_threads if s.device.type == "cpu" else None)

    def _epoch(self, epoch: int) -> bool:
        """Train one epoch, evaluate, emit "epoch"; False when stopped (the partial epoch is not evaluated)."""
        s, cfg = self.session, self.cfg
        s.model.train()
        s.use_threads(s.train_threads)
        s.epoch = epoch
        perm = s.permutation()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=s.device)
        correct = torch.zeros((), dtype=torch.int64, device=s.device)
        window_sum, window_start, seen = loss_sum.clone(), 0, 0
        check_each_batch = not s.cuda  # on the CPU a scalar read costs nothing
        lr = cfg.lr
        for b in range(s.steps_per_epoch):
            if self.stop.is_set():
                self.progress = {"batches": b, "seen": seen, "loss_sum": loss_sum, "correct": correct}
                return False
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            lr = lr_at(cfg, self.schedule_offset + self.step, self.schedule_offset + self.total_steps,
                       s.steps_per_epoch)
            loss, right = s.step(idx, lr)
            self.step += 1
            seen += len(idx)
            loss_sum += loss * len(idx)
            correct += right
            window_sum += loss
            if check_each_batch and diverged(loss.item()):
                self._nan(epoch, b + 1, b + 1)
            if (b + 1) % cfg.log_every == 0 or b + 1 == s.steps_per_epoch:
                mean_loss = float(window_sum) / (b + 1 - window_start)
                if diverged(mean_loss):
                    self._nan(epoch, window_start + 1, b + 1)
                self.emit("batch", epoch=epoch, batch=b + 1, step=self.step, loss=mean_loss, lr=lr,
                          threads=torch.get_num_threads() if not s.cuda else None)
                window_sum.zero_()
                window_start = b + 1
                s.use_threads(s.train_threads)  # re-read the budget: another run may have started or ended
        if s.cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        self.train_images += seen
        self.train_seconds += train_seconds
        metrics = s.evaluate()
        seconds = time.perf_counter() - t0
        event = self.emit("epoch", epoch=epoch, train_loss=float(loss_sum) / seen, train_accuracy=int(correct) / seen,
                          **metrics, seconds=seconds, train_seconds=train_seconds, eval_seconds=seconds - train_seconds,
                          images_per_second=seen / train_seconds, lr=lr)
        self.epochs.append(event)
        self.kept = s.keep()
        if self.on_epoch_end is not None:
            self.on_epoch_end(Snapshot(model=s.eval_model(), optimizer_state=s.optimizer_state(),
                                       epochs_done=epoch, normalization={"mean": s.mean, "std": s.std},
                                       metrics=metrics | {"train_loss": event["train_loss"],
                                                          "train_accuracy": event["train_accuracy"]}))
        return True

    def _nan(self, epoch: int, first_batch: int, last_batch: int) -> None:
        where = f"batch {first_batch}" if first_batch == last_batch else f"batches {first_batch}-{last_batch}"
        # Log the steps run before failing (loss None: not finite), so the progress does not read "step 0".
        self.emit("batch", epoch=epoch, batch=last_batch, step=self.step, loss=None)
        raise TrainingError(f"the training loss became NaN, infinite or exploded (> {DIVERGED_LOSS:g}) "
                            f"in epoch {epoch}, {where}; training stopped. "
                            f"Lower the learning rate (now {self.cfg.lr:g}, try {self.cfg.lr / 10:g}), add warm-up "
                            f"or BatchNorm.")

    def _summary(self, baseline: dict, wall_seconds: float) -> dict:
        accuracies = [e["test_accuracy"] for e in self.epochs]
        return {"final_test_accuracy": accuracies[-1] if accuracies else None,
                "best_test_accuracy": max(accuracies) if accuracies else None,
                "epochs_done": self.session.epochs_done + len(self.epochs),
                "wall_seconds": wall_seconds,
                "images_per_second": self.train_images / self.train_seconds if self.train_seconds else None,
                "baseline_test_accuracy": baseline["test_accuracy"]}

    def _result(self, status: str, baseline: dict, summary: dict, partial: dict | None = None) -> TrainResult:
        s = self.session
        last = partial or (self.epochs[-1] if self.epochs else {})
        metrics = {k: last.get(k, baseline.get(k)) for k in ("test_loss", "test_accuracy", "per_class")}
        metrics |= {"train_loss": last.get("train_loss"), "train_accuracy": last.get("train_accuracy")}
        model = s.eval_model().to(memory_format=torch.contiguous_format).eval()
        return TrainResult(model=model, status=status, metrics=metrics, epochs=list(self.epochs), baseline=baseline,
                           summary=summary, images_per_second=summary["images_per_second"] or 0.0,
                           epochs_done=summary["epochs_done"], normalization={"mean": s.mean, "std": s.std},
                           device=str(s.device), optimizer_state=s.optimizer_state(), events=self.emit.events,
                           partial_epoch={k: partial[k] for k in ("epoch", "batches", "steps_per_epoch")}
                           if partial else None)


# ---------------------------------------------------------------- the estimate shown before training


def estimate_epoch_seconds(arch: ArchConfig, train_cfg: TrainConfig, dataset: Dataset, batches: int = 5,
                           include_eval: bool = True) -> float:
    """Seconds one epoch (training + evaluation) should take on the configured device, from a few timed batches.

    One warm-up batch first (allocations, kernel selection), then `batches` timed ones, scaled to the epoch;
    the evaluation is timed on one test batch and scaled to the test set (twice with flip TTA).
    """
    threads = torch.get_num_threads()
    try:
        return _estimate(_Session(arch, train_cfg, dataset), train_cfg, dataset, batches, include_eval)
    finally:
        torch.set_num_threads(threads)


def _estimate(s: _Session, train_cfg: TrainConfig, dataset: Dataset, batches: int, include_eval: bool) -> float:
    s.model.train()
    s.use_threads(s.train_threads)
    perm = s.permutation()
    size = train_cfg.batch_size
    batches = max(1, min(batches, s.steps_per_epoch - 1)) if s.steps_per_epoch > 1 else 1
    s.step(perm[:size], train_cfg.lr)
    _sync(s.device)
    t0 = time.perf_counter()
    for b in range(1, batches + 1):
        loss, _ = s.step(perm[(b % s.steps_per_epoch) * size:][:size], train_cfg.lr)
    float(loss)
    _sync(s.device)
    train_seconds = (time.perf_counter() - t0) / batches * s.steps_per_epoch
    if not include_eval:
        return train_seconds
    n_eval = min(train_cfg.test_batch_size, len(dataset.test_y))
    s.use_threads(s.eval_threads)
    evaluate_model(s.model, s.test_x[:n_eval], s.test_y[:n_eval], s.mean, s.std, n_eval, s.device, False)
    t1 = time.perf_counter()
    evaluate_model(s.model, s.test_x[:n_eval], s.test_y[:n_eval], s.mean, s.std, n_eval, s.device, False)
    eval_seconds = (time.perf_counter() - t1) * len(dataset.test_y) / n_eval * tta_passes(train_cfg)
    return train_seconds + eval_seconds


def tta_passes(cfg: TrainConfig) -> int:
    """Forward passes per test image: x2 with flip TTA, x3 with translate TTA."""
    return (2 if cfg.tta_flip else 1) * (3 if cfg.tta_translate else 1)


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
