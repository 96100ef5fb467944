"""`train`: train an architecture on a data source in the background-run machinery, printing progress.

python -m explorer train (--preset NAME | --config FILE.json) --data SOURCE [--recipe NAME] [flags] [--json]

The recipe gives every training setting; the individual flags override it. The run is recorded like an app
run (`<runs-dir>/<run_id>/`: run.json, events.jsonl, model.safetensors). A progress line per epoch; with
--json one JSON object per event and a last line with run_dir, checkpoint, test_accuracy, per_class, epochs
and images_per_second. A failed run exits with code 2 and its reason; Ctrl-C stops the run cleanly (130).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explorer.cli.common import add_arch_arguments, arch_from_args, print_json
from explorer.engine.config import (
    AUGMENTATIONS,
    DEVICES,
    LOSSES,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
)
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import TrainingError

POLL_SECONDS = 0.1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an architecture and record the run (weights, metrics, events)")
    add_arch_arguments(p)
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="synthetic, synthetic:N, cifar10, cifar10:DIR or folder:PATH")
    p.add_argument("--data-dir", default="data", help="where cifar10 is downloaded and caches may go (data)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help=f"training recipe the flags below override (default {DEFAULT_RECIPE}, or the 'train' "
                        f"settings of a run record given with --config)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--test-batch-size", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--loss", choices=LOSSES)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", type=_augmentations, metavar="flip,crop", help="comma list, or 'none'")
    p.add_argument("--crop-padding", type=int)
    p.add_argument("--normalization", choices=NORMALIZATIONS)
    p.add_argument("--ema", type=float, help="weight averaging decay, e.g. 0.999 (0 = off)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="flip test-time augmentation")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=PRECISIONS, help="autocast of the training step (auto: bf16 where native)")
    p.add_argument("--log-every", type=int)
    p.add_argument("--name", help="a name for the run record")
    p.add_argument("--resume", metavar="RUN_ID", help="continue this run's weights and optimizer state")
    p.add_argument("--runs-dir", type=Path, help="where run folders go (default $EXPLORER_RUNS_DIR or checkpoints)")
    p.add_argument("--json", action="store_true", help="one JSON object per event, then a summary line")
    p.set_defaults(handler=run_train)


def _augmentations(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {', '.join(bad)}; use {','.join(AUGMENTATIONS)}")
    return names


def train_config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """The recipe (or a run record's settings) with the given flags applied; and the recipe's name."""
    recipe = args.recipe
    base = RECIPES[recipe] if recipe else None
    if base is None and args.config is not None:
        base = _train_from_record(args.config)
    if base is None:
        recipe = DEFAULT_RECIPE
        base = RECIPES[recipe]
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "test_batch_size": args.test_batch_size,
             "optimizer": args.optimizer, "lr": args.lr, "momentum": args.momentum,
             "weight_decay": args.weight_decay, "schedule": args.schedule, "warmup_epochs": args.warmup_epochs,
             "loss": args.loss, "label_smoothing": args.label_smoothing, "augment": args.augment,
             "crop_padding": args.crop_padding, "normalization": args.normalization, "ema": args.ema,
             "tta_flip": args.tta, "seed": args.seed, "device": args.device, "log_every": args.log_every,
             "precision": args.precision}
    return TrainConfig.from_dict(base.to_dict() | {k: v for k, v in flags.items() if v is not None}), recipe


def _train_from_record(path: Path) -> TrainConfig | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        return TrainConfig.from_dict(data["train"])
    return None


def run_train(args: argparse.Namespace) -> int:
    from explorer.store.jobs import JobManager

    arch = arch_from_args(args)
    cfg, recipe = train_config_from_args(args)
    manager = JobManager(args.runs_dir, data_dir=args.data_dir, max_parallel=1)
    run_id = manager.start(arch, cfg, args.data, name=args.name, preset=args.preset, recipe=recipe,
                           resume_from=args.resume)
    printer = _JsonPrinter() if args.json else _ProgressPrinter(cfg)
    interrupted = False
    seen = 0
    while True:
        try:
            record = manager.wait(run_id, timeout=POLL_SECONDS)
        except KeyboardInterrupt:
            interrupted = True
            manager.stop(run_id)
            record = manager.wait(run_id)
        events = manager.events(run_id, since=seen)
        seen += len(events)
        for event in events:
            printer.event(event)
        if record["status"] not in ("queued", "running"):
            break
    run_dir = manager.runs_dir / run_id
    if record["status"] == "failed":
        raise TrainingError(f"run {run_id} failed: {record['error']} (record in {run_dir})")
    printer.finish(_final_line(run_id, run_dir, record, manager.events(run_id)))
    return 130 if interrupted else 0


def _final_line(run_id: str, run_dir: Path, record: dict, events: list[dict]) -> dict:
    epochs = [e for e in events if e.get("type") == "epoch"]
    last = epochs[-1] if epochs else next((e for e in events if e.get("type") == "baseline"), {})
    checkpoint = str(run_dir / record["checkpoint"]) if record.get("checkpoint") else None
    return {"run_id": run_id, "status": record["status"], "run_dir": str(run_dir), "checkpoint": checkpoint,
            "test_accuracy": last.get("test_accuracy"), "per_class": last.get("per_class"), "epochs": epochs,
            "images_per_second": record["summary"].get("images_per_second"), "params": record.get("params"),
            "flops": record.get("flops"), "device": record.get("device"),
            "wall_seconds": record["summary"].get("wall_seconds")}


class _JsonPrinter:
    def event(self, event: dict) -> None:
        print_json(event)
        sys.stdout.flush()

    def finish(self, final: dict) -> None:
        print_json(final)


class _ProgressPrinter:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.last_epoch = cfg.epochs

    def event(self, event: dict) -> None:
        kind = event["type"]
        if kind == "loading":
            print(f"loading {event['data']} ...", flush=True)
        elif kind == "started":
            self.last_epoch = event["first_epoch"] + event["epochs"] - 1
            print(f"training {event['params']:,} params ({event['flops'] / 1e6:.2f} MFLOPs/image) on "
                  f"{event['device']}: {event['train_images']:,} train / {event['test_images']:,} test images "
                  f"{'x'.join(map(str, event['input_shape']))}, {event['epochs']} epochs of "
                  f"{event['steps_per_epoch']} batches", flush=True)
        elif kind == "baseline":
            print(f"random init: test loss {event['test_loss']:.3f}, accuracy {event['test_accuracy']:.1%}",
                  flush=True)
        elif kind == "epoch":
            print(f"epoch {event['epoch']}/{self.last_epoch}  train loss {event['train_loss']:.3f} "
                  f"acc {event['train_accuracy']:.1%}  test loss {event['test_loss']:.3f} "
                  f"acc {event['test_accuracy']:.1%}  {event['seconds']:.1f} s  "
                  f"{event['images_per_second']:,.0f} img/s", flush=True)
        elif kind == "stopped":
            print("stopped", flush=True)

    def finish(self, final: dict) -> None:
        accuracy = final["test_accuracy"]
        print(f"{final['status']}: test accuracy {accuracy:.1%}" if accuracy is not None else final["status"])
        print(f"run folder: {final['run_dir']}")
        if final["checkpoint"]:
            print(f"checkpoint: {final['checkpoint']}")
