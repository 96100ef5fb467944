"""Architecture search against a hand-made preset, at the same training time: a search around the preset (the
preset itself is trial 0, trained under the same rules), then the best net found and the preset each trained
with a longer schedule on the whole training set and measured on the test set, side by side in one run.
Prints a table; with --json a last JSON line.

    python benchmarks/search.py --data folder:/tmp/cifar10-jpeg --minutes 30 --workers 2 --trial-seconds 60 --json

Trials optimize validation accuracy (a seeded 10 % of the training set); test accuracy is recorded beside it,
never optimized. "Trials per hour" counts every trial the workers finished (rejected ones included) and, apart,
the trained ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
from explorer.arch.config import ArchConfig  # noqa: E402
from explorer.arch.cost import DEFAULT_BUDGET, model_cost  # noqa: E402
from explorer.arch.presets import PRESETS  # noqa: E402
from explorer.engine.config import TrainConfig  # noqa: E402
from explorer.engine.data import load_dataset  # noqa: E402
from explorer.engine.recipes import RECIPES  # noqa: E402
from explorer.engine.train import train  # noqa: E402
from explorer.search.space import space_around  # noqa: E402
from explorer.search.study import best, create_search, load_search, make_settings, rows, status  # noqa: E402
from explorer.search.trial import fitted_epochs  # noqa: E402
from explorer.search.worker import run_search  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder:PATH | cifar10 | synthetic:N")
    p.add_argument("--minutes", type=float, default=30.0, help="stop starting trials after this long (default 30)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    p.add_argument("--trial-seconds", type=float, default=60.0, help="training time per trial (default 60)")
    p.add_argument("--final-seconds", type=float, default=120.0,
                   help="training time of the final comparison on the whole training set (default 120)")
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS), help="the hand-made net (default fast)")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="parameter budget (default 256000)")
    p.add_argument("--runs-dir", type=Path, help="where trial runs and the journal go (default: a temp folder)")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def run_the_search(args: argparse.Namespace, runs_dir: Path) -> tuple[list[dict], dict, float]:
    """(trial rows, status, wall seconds) of a search around the preset with the preset as trial 0."""
    name = time.strftime("bench-%Y%m%d-%H%M%S")
    storage = f"journal:{runs_dir / 'searches' / name / 'journal.log'}"
    settings = make_settings(space_around(args.preset), args.data, trial_seconds=args.trial_seconds,
                             budget=args.budget)
    create_search(name, storage, settings, baseline=args.preset)
    started = time.monotonic()
    run_search(name, storage, args.workers, timeout=args.minutes * 60, runs_dir=runs_dir)
    wall = time.monotonic() - started
    study, settings = load_search(name, storage)
    return rows(study), status(study, settings), wall


def train_for(arch: ArchConfig, cfg: TrainConfig, dataset, seconds: float) -> dict:
    """Test accuracy of `arch` trained with `cfg`'s settings, its schedule fitted to `seconds` of training."""
    epochs, _ = fitted_epochs(arch, cfg, dataset, seconds)
    cfg = cfg.replace(epochs=max(1, epochs), warmup_epochs=min(cfg.warmup_epochs, max(1, epochs)))
    clock = {"train_seconds": 0.0}

    def on_event(event: dict) -> None:
        if event["type"] == "epoch":
            clock["train_seconds"] += event["train_seconds"]

    result = train(arch, cfg, dataset, on_event, threading.Event())
    return {"test_accuracy": result.metrics["test_accuracy"], "epochs": cfg.epochs,
            "train_seconds": round(clock["train_seconds"], 1)}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="search-bench-"))
    trial_rows, summary, wall = run_the_search(args, runs_dir)
    finished = [r for r in trial_rows if r["state"] in ("complete", "pruned", "rejected")]
    trained = [r for r in finished if r["state"] != "rejected"]
    top, baseline = best(trial_rows), next((r for r in trial_rows if r.get("baseline")), None)
    dataset = load_dataset(args.data)
    final = {}
    for label, row in (("search best", top), (args.preset, baseline)):
        if row and row.get("config"):
            arch, cfg = ArchConfig.from_dict(row["config"]["arch"]), TrainConfig.from_dict(row["config"]["train"])
            final[label] = train_for(arch, cfg, dataset, args.final_seconds)
    if args.preset not in final:  # the baseline trial did not complete: train the preset with its recipe
        final[args.preset] = train_for(PRESETS[args.preset], RECIPES["fast"], dataset, args.final_seconds)
    hours = wall / 3600
    print(f"\nsearch around {args.preset} on {args.data}: {args.workers} workers, {args.trial_seconds:g} s per trial, "
          f"{wall / 60:.1f} min, {len(finished)} trials ({summary['complete']} complete, {summary['pruned']} "
          f"pruned, {summary['rejected']} rejected, {summary['failed']} failed)")
    print(f"trials per hour: {len(finished) / hours:.0f} (trained: {len(trained) / hours:.0f})\n")
    print(f"{'net':<14}{'params':>10}{'MFLOPs':>9}{f'val {args.trial_seconds:g}s':>10}"
          f"{f'test {args.trial_seconds:g}s':>11}{f'test {args.final_seconds:g}s':>11}")
    for label, row in (("search best", top), (args.preset, baseline)):
        if row is None:
            continue
        print(f"{label:<14}{row['params']:>10,}{row['flops'] / 1e6:>9.1f}{_pct(row['val_accuracy']):>10}"
              f"{_pct(row['test_accuracy']):>11}{_pct(final.get(label, {}).get('test_accuracy')):>11}")
    if top:
        cost = model_cost(ArchConfig.from_dict(top["config"]["arch"]), dataset.input_shape, dataset.num_classes)
        print(f"\nbest trial {top['number']}: {cost.params:,} params, config {json.dumps(top['config'])}")
    if args.json:
        print(json.dumps({
            "benchmark": "search", "data": args.data, "preset": args.preset, "workers": args.workers,
            "trial_seconds": args.trial_seconds, "final_seconds": args.final_seconds, "wall_seconds": round(wall),
            "trials": len(finished), "trials_per_hour": round(len(finished) / hours, 1),
            "trained_per_hour": round(len(trained) / hours, 1),
            "counts": {k: summary[k] for k in ("complete", "pruned", "rejected", "failed")},
            "best": top and {k: top[k] for k in ("number", "params", "flops", "val_accuracy", "test_accuracy",
                                                 "config")},
            "baseline": baseline and {k: baseline[k] for k in ("number", "params", "flops", "val_accuracy",
                                                               "test_accuracy", "state")},
            "final": final, "runs_dir": str(runs_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
