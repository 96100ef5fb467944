"""Time to accuracy: train a preset with a recipe, evaluate after every epoch, and record the training wall time
(evaluation excluded) at which each target test accuracy was first reached. Prints a table; with --json a last
JSON line with time_to_target, final_accuracy, params, flops, device, epochs.

    python benchmarks/accuracy.py --preset fast --recipe fast --data folder:/tmp/cifar10-jpeg \
        --targets 0.74,0.85,0.90 --time-limit 120 --json

With --time-limit and no --epochs, the recipe's schedule is fitted to the limit: the epochs are the ones a
measured estimate says fit, so a one-cycle schedule ends when the time does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
from explorer import schema  # noqa: E402
from explorer.arch.cost import model_cost  # noqa: E402
from explorer.cli.common import add_arch_arguments, arch_from_args  # noqa: E402
from explorer.engine.config import TrainConfig  # noqa: E402
from explorer.engine.data import load_dataset  # noqa: E402
from explorer.engine.recipes import RECIPES  # noqa: E402
from explorer.engine.train import estimate_epoch_seconds, train  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arch_arguments(p)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="fast")
    p.add_argument("--data", required=True, help="synthetic | cifar10 | cifar10:DIR | folder:PATH")
    p.add_argument("--targets", default="0.74,0.85,0.90", help="comma-separated test accuracies (fractions)")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds of training")
    p.add_argument("--json", action="store_true")
    # Every TrainConfig field overrides the recipe, as in `python -m explorer train` (--epochs, --lr, ...).
    schema.add_arguments(p.add_argument_group("training settings (override the recipe)"), TrainConfig)
    return p.parse_args(argv)


def fitted_epochs(arch, cfg, dataset, time_limit: float) -> int:
    """How many epochs of this recipe fit the time limit (at least 1), from a measured estimate.

    The limit counts training time only (evaluation excluded), so the estimate does too."""
    seconds = estimate_epoch_seconds(arch, cfg, dataset, batches=8, include_eval=False)
    # A few timed batches run ~5 % faster than a whole epoch (permutation, cache effects): keep a margin so
    # the schedule's last, lowest-learning-rate epoch happens inside the limit.
    return max(1, math.floor(time_limit / (seconds * 1.06)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = sorted(float(t) for t in args.targets.split(","))
    arch = arch_from_args(args)
    dataset = load_dataset(args.data)
    cfg = TrainConfig.from_dict(RECIPES[args.recipe].to_dict() | schema.values_from_args(args, TrainConfig))
    if args.time_limit and not args.epochs:
        cfg = cfg.replace(epochs=fitted_epochs(arch, cfg, dataset, args.time_limit))
    cost = model_cost(arch, dataset.input_shape, dataset.num_classes)
    stop = threading.Event()
    reached: dict[float, float | None] = dict.fromkeys(targets)
    rows: list[dict] = []
    clock = {"train_seconds": 0.0, "device": None}

    def on_event(event: dict) -> None:
        if event["type"] == "started":
            clock["device"] = event["device"]
        if event["type"] != "epoch":
            return
        clock["train_seconds"] += event["train_seconds"]
        accuracy = event["test_accuracy"]
        for target in targets:
            if reached[target] is None and accuracy >= target:
                reached[target] = clock["train_seconds"]
        rows.append({"epoch": event["epoch"], "train_seconds": round(clock["train_seconds"], 1),
                     "test_accuracy": accuracy, "train_loss": event["train_loss"]})
        print(f"epoch {event['epoch']:>3}  train {clock['train_seconds']:7.1f}s  test {accuracy:.2%}", flush=True)
        if args.time_limit and clock["train_seconds"] >= args.time_limit:
            stop.set()

    result = train(arch, cfg, dataset, on_event, stop)
    print(f"\n{args.preset or args.config} / recipe {args.recipe} on {dataset.name} ({clock['device']}): "
          f"{cost.params:,} params, {cost.flops / 1e6:.1f} MFLOPs, {cfg.epochs} epochs scheduled")
    print(f"{'target':>8}{'train seconds':>15}")
    for target in targets:
        seconds = reached[target]
        print(f"{target:>8.0%}{'not reached' if seconds is None else f'{seconds:.1f}':>15}")
    final = result.metrics["test_accuracy"]
    print(f"final test accuracy {final:.2%} after {clock['train_seconds']:.1f}s of training")
    if args.json:
        print(json.dumps({
            "benchmark": "accuracy", "preset": args.preset, "recipe": args.recipe, "data": dataset.name,
            "time_to_target": {str(t): (None if s is None else round(s, 1)) for t, s in reached.items()},
            "final_accuracy": final, "params": cost.params, "flops": cost.flops, "device": clock["device"],
            "epochs": rows, "epochs_scheduled": cfg.epochs, "train": cfg.to_dict(),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
