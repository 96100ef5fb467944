"""`search`: architecture search with Optuna (docs/search.md).

python -m explorer search space --preset NAME [--recipe NAME]            a space (JSON) around a preset
python -m explorer search create NAME --space FILE --data SOURCE [--storage URL] [--trial-seconds S |
    --trial-epochs N] [--budget P] [--flops-budget F] [--objectives accuracy[,params|flops]]
python -m explorer search run NAME [--storage URL] [--workers K] [--trials N] [--timeout S]
python -m explorer search status|best NAME [--storage URL] [--json]
python -m explorer search export NAME [--storage URL] [--output FILE.csv]

--storage: journal:PATH or a SQLAlchemy URL; default journal:<runs-dir>/searches/NAME/journal.log. A worker on
another machine runs `search run` with the same (database) URL. A storage is checked before anything is created
(explorer.search.storage); a journal's torn last line is repaired. Errors exit 2 with one line.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from explorer.cli.common import add_name_and_storage, print_json, storage_of
from explorer.errors import ConfigError

CSV_COLUMNS = ("number", "state", "val_accuracy", "test_accuracy", "params", "flops", "epochs", "seconds", "run_id",
               "retry_of", "rejected", "config")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="architecture search (Optuna): space, create, run, status, best, export")
    commands = p.add_subparsers(dest="search_command", required=True, parser_class=type(p))

    s = commands.add_parser("space", help="print a search space (JSON) around a preset")
    s.add_argument("--preset", required=True, help="the preset the space is centred on, e.g. fast")
    s.add_argument("--recipe", help="the training recipe the space starts from (default fast)")
    s.add_argument("--json", action="store_true", help="(the output is always JSON)")
    s.set_defaults(handler=run_space)

    c = commands.add_parser("create", help="create a search: space, data, budget, time per trial, objectives")
    add_name_and_storage(c, "search")
    c.add_argument("--space", type=Path, required=True, help="the space JSON file (`search space` writes one)")
    c.add_argument("--data", required=True, metavar="SOURCE", help="synthetic:N, cifar10, cifar10:DIR, folder:PATH")
    per_trial = c.add_mutually_exclusive_group()
    per_trial.add_argument("--trial-seconds", type=float, help="training time per trial; the schedule is fitted "
                                                               "to it (default 60)")
    per_trial.add_argument("--trial-epochs", type=int, help="a fixed number of epochs per trial instead")
    c.add_argument("--budget", type=int, default=256_000, help="parameter budget (default 256000)")
    c.add_argument("--flops-budget", type=float, help="FLOPs-per-image budget (default none)")
    c.add_argument("--objectives", default="accuracy", help="accuracy, accuracy,params or accuracy,flops")
    c.add_argument("--validation-fraction", type=float, default=0.1,
                   help="share of the training set held out (seeded) to measure the objective (default 0.1)")
    c.add_argument("--data-dir", type=Path, help="where cifar10 is found (default $EXPLORER_DATA_DIR or data)")
    c.add_argument("--artifacts", help="a folder every worker can reach where trials upload their checkpoints "
                                       "(default: artifacts/ beside a journal file; none for a database)")
    c.add_argument("--baseline", metavar="PRESET", help="train this preset as trial 0 under the same rules, to read "
                                                        "the search's results against (e.g. fast)")
    c.set_defaults(handler=run_create)

    for command, help_text in (("run", "start K local worker processes and wait for them"),
                               ("worker", "one worker in this process (what `run` starts)")):
        r = commands.add_parser(command, help=help_text)
        add_name_and_storage(r, "search")
        if command == "run":
            r.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
        r.add_argument("--trials", type=int, help="the search ends with exactly this many complete or pruned trials "
                                                  "(all workers; a failed trial's retry replaces it)")
        r.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
        r.add_argument("--data-dir", type=Path, help="where the data is found (default $EXPLORER_DATA_DIR or data)")
        r.set_defaults(handler=run_run if command == "run" else run_worker)

    for command, handler, help_text in (("status", run_status, "trial counts and the Pareto front"),
                                        ("best", run_best, "the best trial (validation accuracy)"),
                                        ("export", run_export, "every trial as CSV")):
        q = commands.add_parser(command, help=help_text)
        add_name_and_storage(q, "search")
        if command == "export":
            q.add_argument("--output", type=Path, help="write the CSV here (default stdout)")
        q.set_defaults(handler=handler)


def run_space(args: argparse.Namespace) -> int:
    from explorer.search.space import space_around

    print(json.dumps(space_around(args.preset, args.recipe), indent=2))
    return 0


def run_create(args: argparse.Namespace) -> int:
    from explorer.search.space import load_space
    from explorer.search.study import create_search, make_settings

    try:
        text = args.space.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read space file {args.space}: {err.strerror}.") from None
    settings = make_settings(load_space(text, f"space file {args.space}"), args.data, args.trial_seconds,
                             args.trial_epochs, args.budget, args.flops_budget, args.objectives,
                             args.validation_fraction, data_dir=args.data_dir, artifacts=args.artifacts)
    storage = storage_of(args)
    create_search(args.name, storage, settings, args.baseline)
    out = {"name": args.name, "storage": storage} | {k: v for k, v in settings.items() if k != "space"}
    print_json(out) if args.json else print(f"created search {args.name} in {storage}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from explorer.search.study import load_search, status
    from explorer.search.worker import run_search

    storage = storage_of(args)
    outcome = run_search(args.name, storage, args.workers, args.trials, args.timeout, args.runs_dir, args.data_dir)
    study, settings = load_search(args.name, storage)
    return _print_status(status(study, settings) | {"run": outcome}, args.json)


def run_worker(args: argparse.Namespace) -> int:
    from explorer.search.worker import run_worker as work

    outcome = work(args.name, storage_of(args), args.trials, args.timeout, args.runs_dir, args.data_dir)
    print_json(outcome)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from explorer.search.study import load_search, status

    study, settings = load_search(args.name, storage_of(args))
    return _print_status(status(study, settings), args.json)


def _print_status(summary: dict, as_json: bool) -> int:
    from explorer.search.study import STATES

    if as_json:
        print_json(summary)
        return 0
    counts = ", ".join(f"{summary[k]} {k}" for k in STATES if summary[k] or k != "skipped")
    print(f"search {summary['name']}: {summary['trials']} trials ({counts})")
    for row in summary["pareto"]:
        print(f"  pareto: trial {row['number']:>4}  {row['params']:>9,} params  {row['flops'] / 1e6:8.2f} MFLOPs  "
              f"val {row['val_accuracy']:.1%}  test {row['test_accuracy']:.1%}")
    return 0


def run_best(args: argparse.Namespace) -> int:
    from explorer.search.study import best, cost_keys, load_search, rows

    study, settings = load_search(args.name, storage_of(args))
    row = best(rows(study), cost_keys(settings))
    if row is None:
        raise ConfigError(f"search {args.name} has no complete trial yet; run it with `search run {args.name}`.")
    if args.json:
        print_json(row)
    else:
        print(f"trial {row['number']}: val {row['val_accuracy']:.1%}, test {row['test_accuracy']:.1%}, "
              f"{row['params']:,} params, run {row['run_id']}")
        print(json.dumps(row["config"]))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from explorer.search.study import load_search, rows

    study, _ = load_search(args.name, storage_of(args))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows(study):
        writer.writerow(row | {"config": json.dumps(row["config"]) if row["config"] else ""})
    if args.output is None:
        sys.stdout.write(buffer.getvalue())
        return 0
    try:
        args.output.write_text(buffer.getvalue())
    except OSError as err:
        raise ConfigError(f"cannot write {args.output}: {err.strerror}.") from None
    print_json({"output": str(args.output)}) if args.json else print(f"wrote {args.output}")
    return 0
