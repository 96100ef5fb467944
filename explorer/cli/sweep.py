"""`sweep`: a grid of settings, each point trained with several seeds, on the search's workers and storage.

python -m explorer sweep create NAME --set train.batch_size=4,8,16,32 [--set arch.batchnorm=true,false]
    [--repeat 3] --data SOURCE [--epochs N | --trial-seconds S] [--preset P] [--recipe R] [--storage URL]
python -m explorer sweep run NAME [--workers K] [--storage URL]
python -m explorer sweep status NAME [--storage URL] [--json]      one row per grid point: n, mean, 95 % interval

Errors (a setting that does not exist, a value out of its range, an empty list, a grid over 500 runs) exit 2
with one line, before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.arch.presets import DEFAULT_PRESET, PRESETS
from explorer.cli.common import add_name_and_storage, print_json, storage_of
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="a grid of settings x seeds: create, run, status")
    commands = p.add_subparsers(dest="sweep_command", required=True, parser_class=type(p))

    c = commands.add_parser("create", help="create a sweep: the settings to vary, their values, the repeats")
    add_name_and_storage(c, "sweep")
    c.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=V1,V2",
                   help="a setting and its values, e.g. train.batch_size=4,8,16 or arch.batchnorm=true,false "
                        "(list settings join items with +: train.augment=flip+crop,none); repeatable")
    c.add_argument("--repeat", type=int, default=3, help="seeds per grid point (default 3)")
    c.add_argument("--data", required=True, metavar="SOURCE", help="synthetic:N, cifar10, cifar10:DIR, folder:PATH")
    per_run = c.add_mutually_exclusive_group()
    per_run.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    per_run.add_argument("--trial-seconds", type=float, help="training seconds per run instead (the schedule is "
                                                               "fitted to them)")
    c.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                   help=f"the network the settings change (default {DEFAULT_PRESET})")
    c.add_argument("--recipe", default=DEFAULT_RECIPE, choices=list(RECIPES),
                   help=f"the training settings they change (default {DEFAULT_RECIPE})")
    c.add_argument("--data-dir", type=Path, help="where cifar10 is found (default $EXPLORER_DATA_DIR or data)")
    c.set_defaults(handler=run_create)

    r = commands.add_parser("run", help="train the sweep's missing runs with K local worker processes")
    add_name_and_storage(r, "sweep")
    r.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    r.add_argument("--data-dir", type=Path, help="where the data is found (default $EXPLORER_DATA_DIR or data)")
    r.set_defaults(handler=run_run)

    s = commands.add_parser("status", help="one row per grid point: settings, n, mean, 95 % interval")
    add_name_and_storage(s, "sweep")
    s.set_defaults(handler=run_status)


def run_create(args: argparse.Namespace) -> int:
    from explorer.search.sweep import create_sweep, grid, parse_set, sweep_settings

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: use at least 1.")
    storage = storage_of(args)
    points = grid([parse_set(text) for text in args.sets])
    settings = sweep_settings(points, args.data, args.repeat, args.preset, args.recipe, args.epochs,
                              args.trial_seconds, args.data_dir)
    create_sweep(args.name, storage, settings)
    out = {"name": args.name, "storage": storage, "points": len(points), "repeat": args.repeat,
           "runs": len(points) * args.repeat}
    print_json(out) if args.json else print(f"created sweep {args.name} in {storage}: {len(points)} points x "
                                            f"{args.repeat} repeats = {out['runs']} runs")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from explorer.search.sweep import load_sweep, run_sweep, sweep_status

    storage = storage_of(args)
    outcome = run_sweep(args.name, storage, args.workers, args.runs_dir, args.data_dir)
    study, settings = load_sweep(args.name, storage)
    return print_status(sweep_status(study, settings) | {"run": outcome}, args.json)


def run_status(args: argparse.Namespace) -> int:
    from explorer.search.sweep import load_sweep, sweep_status

    study, settings = load_sweep(args.name, storage_of(args))
    return print_status(sweep_status(study, settings), args.json)


def _interval(row: dict) -> str:
    if row["mean"] is None:
        return "no complete run yet"
    if row["low"] is None:
        return f"{row['mean']:.1%} (n = 1: no interval)"
    return f"{row['mean']:.1%}  [{row['low']:.1%}, {row['high']:.1%}]"


def _value(value: object) -> str:
    return "+".join(map(str, value)) or "none" if isinstance(value, list) else str(value)


def print_status(summary: dict, as_json: bool) -> int:
    if as_json:
        print_json(summary)
        return 0
    print(f"sweep {summary['name']}: {summary['complete']} of {summary['runs']} runs complete "
          f"(test accuracy, mean and 95 % interval)")
    for row in summary["points"]:
        label = ", ".join(f"{k}={_value(v)}" for k, v in row["settings"].items()) or "base design"
        print(f"  {label:<48} n={row['n']}  {_interval(row)}")
    return 0
