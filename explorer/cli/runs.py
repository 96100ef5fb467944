"""`runs`: the run history (every run folder under the runs directory), as a table, JSON or CSV.

A run that needs attention (unreadable record, bad event line, interrupted) keeps its row and gets a message:
the "message" field in --json/--csv, a line under the table otherwise."""

from __future__ import annotations

import argparse
import math
import sys

from explorer.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list past runs: params, FLOPs, accuracy, time, status; rename or delete one")
    p.add_argument("--runs-dir", help="the runs folder (default: $EXPLORER_RUNS_DIR or ./checkpoints)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON list of run rows")
    out.add_argument("--csv", action="store_true", help="the comparison table as CSV")
    p.add_argument("--filter", default="", help="only runs whose id, name, preset, recipe or data contain this")
    p.add_argument("--groups", action="store_true",
                   help="one row per group of seeds (train --repeat N): n, mean, std and 95 %% interval of the final "
                        "test accuracy, mean images/s")
    p.add_argument("--rename", nargs=2, metavar=("RUN_ID", "NAME"), help="give a run a new name")
    p.add_argument("--delete", metavar="RUN_ID", help="delete a run folder (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm --delete")
    p.set_defaults(handler=run_runs)


def run_runs(args: argparse.Namespace) -> int:
    from explorer.store.runs import RunError, delete_run, list_runs, rename_run
    from explorer.store.tables import filter_runs, metrics_csv, runs_table

    if args.rename is not None:
        record = rename_run(args.rename[0], args.rename[1], args.runs_dir)
        print(f"renamed {record['id']} to {record['name']!r}", file=sys.stderr)
    if args.delete is not None:  # an empty id is refused by delete_run, not skipped
        if not args.yes:
            raise RunError(f"deleting {args.delete} removes its checkpoint and metrics; add --yes to confirm.")
        delete_run(args.delete, args.runs_dir)
        print(f"deleted {args.delete}", file=sys.stderr)
    if args.groups:
        return _print_groups(args)
    table = filter_runs(runs_table(list_runs(args.runs_dir)), args.filter)
    if args.json:
        print_json([{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")])
    elif args.csv:
        sys.stdout.write(metrics_csv(table))
    else:
        _print_table(table)
    return 0


def _plain(value):
    """NaN -> None so the JSON is standard."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _fmt(value, spec: str) -> str:
    value = _plain(value)
    return "-" if value is None else format(value, spec)


def _print_table(table) -> None:
    if table.empty:
        print("no runs yet (train one with `python -m explorer train` or in the app)")
        return
    print(f"{'id':<24}{'name':<22}{'status':<10}{'params':>10}{'MFLOPs':>9}{'best':>8}{'final':>8}"
          f"{'epochs':>7}{'time s':>9}  device")
    for row in table.to_dict(orient="records"):
        flops = _plain(row["flops"])
        print(f"{str(row['id'])[:23]:<24}{str(row['name'])[:21]:<22}{str(row['status']):<10}"
              f"{_fmt(row['params'], ',.0f'):>10}{'-' if flops is None else f'{flops / 1e6:.2f}':>9}"
              f"{_fmt(row['best_test_accuracy'], '.2%'):>8}{_fmt(row['final_test_accuracy'], '.2%'):>8}"
              f"{_fmt(row['epochs'], '.0f'):>7}{_fmt(row['wall_seconds'], '.1f'):>9}  {row['device'] or '-'}")
    for row in table.to_dict(orient="records"):
        if _plain(row["message"]) is not None:
            print(f"! {row['id']}: {row['message']}")


def _print_groups(args: argparse.Namespace) -> int:
    """`runs --groups`: one row per group (as CSV too), then a line for each group that has no interval yet."""
    from explorer.store.groups import group_summaries

    rows = [g.to_dict() for g in group_summaries(args.runs_dir)]
    text = args.filter.lower()
    rows = [r for r in rows if text in f"{r['id']} {r['name']} {r['data']}".lower()]
    if args.json:
        print_json(rows)
    elif args.csv:
        import pandas as pd

        sys.stdout.write(pd.DataFrame(rows).drop(columns=["run_ids", "counted"], errors="ignore").to_csv(index=False))
    elif not rows:
        print("no groups yet (train one with `python -m explorer train ... --repeat 3`)")
    else:
        _print_group_table(rows)
    return 0


def _print_group_table(rows: list[dict]) -> None:
    print(f"{'group':<34}{'name':<24}{'n':>5}{'mean':>9}{'std':>8}{'95 % interval':>19}{'img/s':>9}  data")
    for row in rows:
        interval = "-" if row["low"] is None else f"{row['low']:.2%} to {row['high']:.2%}"
        print(f"{row['id'][:33]:<34}{str(row['name'])[:23]:<24}{row['n']:>2}/{row['runs']:<2}"
              f"{_fmt(row['mean'], '.2%'):>9}{_fmt(row['std'], '.2%'):>8}{interval:>19}"
              f"{_fmt(row['images_per_second'], ',.0f'):>9}  {row['data']}")
    for row in rows:
        if row["n"] < 2:
            print(f"! {row['id']}: {row['n']} finished run(s), no interval: train more seeds into it with "
                  f"`python -m explorer train ... --group {row['id']}`")
