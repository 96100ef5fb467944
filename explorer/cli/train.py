"""`train`: train an architecture on a data source in this process, recording the run and printing progress.

python -m explorer train (--preset NAME | --config FILE.json | --arch JSON) --data SOURCE [--recipe NAME] [flags]
    [--json]

The recipe gives every training setting; the individual flags override it. The run is recorded like an app
run (`<runs-dir>/<run_id>/`: run.json, events.jsonl, model.safetensors). A progress line per epoch; with
--json one JSON object per event and a last line with run_dir, checkpoint, test_accuracy, per_class, epochs
and images_per_second. A failed run exits with code 2 and its reason; Ctrl-C (SIGINT) or SIGTERM stops the run
cleanly (checkpoint, "stopped") with exit code 130 or 143. `--resume RUN_ID` alone continues a run (e.g. an
interrupted one) with its network, settings and data for the epochs it had left, its learning rate where the
schedule was (any resume runs on the schedule of all its epochs, those done and the new ones). The app runs
exactly this command in a child process (explorer.store.runner). `--repeat N` trains N runs with the seeds seed,
seed + 1, ... as one group (store.groups): each prints as above, then a last line (JSON: "type": "group") with the
group's n, mean, std and 95 % interval of the final test accuracy; a stop signal ends the current run
and starts no more.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from explorer import schema
from explorer.cli.common import add_arch_arguments, arch_from_args, print_json
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an architecture and record the run (weights, metrics, events)")
    add_arch_arguments(p, required=False)  # `--resume RUN_ID` alone takes the network from the run
    p.add_argument("--data", metavar="SOURCE",
                   help="synthetic, synthetic:N, cifar10, cifar10:DIR or folder:PATH (with --resume alone: the "
                        "resumed run's)")
    p.add_argument("--data-dir", type=Path, help="where cifar10 is downloaded and caches may go "
                                                 "(default $EXPLORER_DATA_DIR or data)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help=f"training recipe the flags below override (default {DEFAULT_RECIPE}, or the 'train' "
                        f"settings of a run record given with --config)")
    # One flag per TrainConfig field, from its declaration (explorer.schema): --epochs ... --tta-flip (--tta).
    schema.add_arguments(p.add_argument_group("training settings (override the recipe)"), TrainConfig)
    p.add_argument("--name", help="a name for the run record")
    p.add_argument("--resume", metavar="RUN_ID", help="continue this run's weights and optimizer state")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="train the same design N times with the seeds seed, seed+1, ..., one after the other, as "
                        "one group (`runs --groups`, `compare`)")
    p.add_argument("--group", metavar="GROUP_ID", help="record the run(s) in this group (--repeat N makes a new one)")
    p.add_argument("--runs-dir", type=Path, help="where run folders go (default $EXPLORER_RUNS_DIR or checkpoints)")
    p.add_argument("--json", action="store_true", help="one JSON object per event, then a summary line")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # the app names the run it starts, to find its folder
    p.set_defaults(handler=run_train)


def train_config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """The recipe (or a run record's settings) with the given flags applied; and the recipe's name."""
    recipe = args.recipe
    base = RECIPES[recipe] if recipe else None
    if base is None and args.config is not None:
        base = _train_from_record(args.config)
    if base is None:
        recipe = DEFAULT_RECIPE
        base = RECIPES[recipe]
    flags = schema.values_from_args(args, TrainConfig)
    return TrainConfig.from_dict(base.to_dict() | flags), recipe


def _train_from_record(path: Path) -> TrainConfig | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        return TrainConfig.from_dict(data["train"])
    return None


def run_train(args: argparse.Namespace) -> int:
    """Train in this process (what the app's run processes run too); exit 128 + signal when stopped by one.

    With --repeat N the N seeds train one after the other in this process: on a CPU two runs side by side only
    share the same cores, and one process keeps Ctrl-C meaning "stop this and start no more"."""
    from explorer.store.groups import repeat_specs
    from explorer.store.runner import RunProcess

    if args.repeat != 1 and (args.run_id or args.resume):
        raise ConfigError("--repeat trains new runs: it cannot be combined with --resume (resume each run alone).")
    specs = repeat_specs(_spec_from_args(args), args.repeat, args.group)
    printer = _JsonPrinter() if args.json else _ProgressPrinter()
    for spec in specs:
        process = RunProcess(spec, runs_dir=args.runs_dir, data_dir=args.data_dir, run_id=args.run_id,
                             on_event=printer.event)
        printer.data_notes = lambda process=process: process.record.get("data_notes") or []  # once loaded
        process.run()  # TrainingError (exit 2, one line) when the run failed
        printer.finish(_final_line(process))
        if process.signal:
            return 128 + process.signal
    if len(specs) > 1:
        printer.group(_group_line(specs[0].group, args.runs_dir))
    return 0


def _group_line(group_id: str, runs_dir: Path | None) -> dict:
    from explorer.store.groups import resolve

    return resolve(group_id, runs_dir).to_dict()


def _spec_from_args(args: argparse.Namespace):
    from explorer.store.runner import RunSpec

    if args.resume and not (args.preset or args.config or getattr(args, "arch", None)):
        return _resume_spec(args)
    if not (args.preset or args.config or getattr(args, "arch", None)):
        raise ConfigError("the network is needed: --preset NAME, --config FILE or --arch JSON (only --resume RUN_ID "
                          "alone takes it from the run it continues).")
    if not args.data:
        raise ConfigError("--data SOURCE is needed (synthetic, cifar10, cifar10:DIR or folder:PATH); only "
                          "--resume RUN_ID alone takes it from the run it continues.")
    cfg, recipe = train_config_from_args(args)
    return RunSpec(arch_from_args(args), cfg, args.data, name=args.name, preset=args.preset, recipe=recipe,
                   resume_from=args.resume, group=args.group)


def _resume_spec(args: argparse.Namespace):
    """`train --resume RUN_ID` alone: that run's network, settings and data, for the epochs it had left."""
    from explorer.arch.config import ArchConfig
    from explorer.store.runner import RunSpec
    from explorer.store.runs import read_history, read_run

    record = read_run(args.resume, args.runs_dir)
    planned = TrainConfig.from_dict(record.get("train") or {})
    history = read_history(args.resume, args.runs_dir)
    trained = history.epochs_done - (history.first_epoch - 1)
    remaining = max(planned.epochs - trained, 1)
    cfg = TrainConfig.from_dict(planned.to_dict() | {"epochs": remaining} | schema.values_from_args(args, TrainConfig))
    return RunSpec(ArchConfig.from_dict(record.get("arch")), cfg, args.data or record.get("data"),
                   name=args.name or f"{record.get('name') or args.resume} (resumed)", preset=record.get("preset"),
                   recipe=record.get("recipe"), resume_from=args.resume)


def _final_line(process) -> dict:
    history, record = process.history, process.record
    checkpoint = str(process.dir / record["checkpoint"]) if record.get("checkpoint") else None
    summary = history.summary
    return {"run_id": process.run_id, "status": record["status"], "run_dir": str(process.dir),
            "checkpoint": checkpoint, "checkpoint_kind": record.get("checkpoint_kind"),
            "test_accuracy": history.latest_metrics()["test_accuracy"],
            "per_class": history.latest_metrics()["per_class"], "epochs": [e.to_dict() for e in history.epoch_events],
            "images_per_second": summary["images_per_second"], "params": record.get("params"),
            "flops": record.get("flops"), "device": record.get("device"), "wall_seconds": summary["wall_seconds"],
            "data_notes": record.get("data_notes") or []}


class _JsonPrinter:
    def event(self, event) -> None:
        print_json(event.to_dict())
        sys.stdout.flush()

    def finish(self, final: dict) -> None:
        print_json(final)

    def group(self, line: dict) -> None:
        print_json({"type": "group"} | line)


class _ProgressPrinter:
    def __init__(self) -> None:
        self.last_epoch = 0
        self.data_notes: Callable[[], list[str]] = list

    def event(self, event) -> None:
        handler = getattr(self, f"_{event.type}", None)
        if handler is not None:
            handler(event)
            sys.stdout.flush()

    def _queued(self, event) -> None:
        print(f"queued: waiting for one of {event.slots} training slots (EXPLORER_MAX_RUNS) ...")

    def _loading(self, event) -> None:
        print(f"loading {event.data} ...")

    def _started(self, event) -> None:
        self.last_epoch = event.first_epoch + event.epochs - 1
        threads = f", {event.threads} thread(s)" if event.threads else ""
        print(f"training {event.params:,} params ({event.flops / 1e6:.2f} MFLOPs/image) on {event.device}{threads}: "
              f"{event.train_images:,} train / {event.test_images:,} test images "
              f"{'x'.join(map(str, event.input_shape))}, {event.epochs} epochs of {event.steps_per_epoch} batches")
        for note in self.data_notes():  # what loading changed or skipped (e.g. a decompression bomb), by name
            print(f"data note: {note}")

    def _baseline(self, event) -> None:
        print(f"random init: test loss {event.test_loss:.3f}, accuracy {event.test_accuracy:.1%}")

    def _epoch(self, event) -> None:
        print(f"epoch {event.epoch}/{self.last_epoch}  train loss {event.train_loss:.3f} "
              f"acc {event.train_accuracy:.1%}  test loss {event.test_loss:.3f} acc {event.test_accuracy:.1%}  "
              f"{event.seconds:.1f} s  {event.images_per_second:,.0f} img/s")

    def _stopped(self, event) -> None:
        print("stopped")

    def finish(self, final: dict) -> None:
        accuracy = final["test_accuracy"]
        print(f"{final['status']}: test accuracy {accuracy:.1%}" if accuracy is not None else final["status"])
        print(f"run folder: {final['run_dir']}")
        if final["checkpoint"]:
            kind = " (a partial epoch, evaluated at the stop)" if final["checkpoint_kind"] == "partial epoch" else ""
            print(f"checkpoint: {final['checkpoint']}{kind}")

    def group(self, line: dict) -> None:
        spread = "" if line["std"] is None else \
            f", std {line['std']:.2%}, 95 % interval {line['low']:.2%} to {line['high']:.2%}"
        mean = "-" if line["mean"] is None else f"{line['mean']:.2%}"
        print(f"group {line['id']}: {line['n']} of {line['runs']} runs finished, final test accuracy mean {mean}"
              f"{spread}")
