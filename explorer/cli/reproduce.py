"""`reproduce-study`: the study's steps as sweeps with seeds; its reported accuracy beside ours, each conclusion
confirmed, within noise or reversed.

python -m explorer reproduce-study --data SOURCE [--repeat N] [--scale-epochs F] [--workers K] [--short-only]
    [--report-only] [--json]

The sweeps are named PREFIX-short and PREFIX-long (--name, default study-replay) in the runs folder; running
the same command again resumes them and only trains what is missing. --report-only prints the table of what
is done without training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce-study", help="replay the study's steps with seeds; verdict of each conclusion")
    p.add_argument("--data", required=True, metavar="SOURCE", help="synthetic:N, cifar10, cifar10:DIR, folder:PATH")
    p.add_argument("--repeat", type=int, default=3, help="seeds per step (default 3)")
    p.add_argument("--scale-epochs", type=float, default=1.0,
                   help="multiply the study's epochs (2, and 12 for its long runs) by this, e.g. 0.5 (default 1)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--name", default="study-replay", help="prefix of the two sweeps' names (default study-replay)")
    p.add_argument("--short-only", action="store_true",
                   help="leave out the study's long runs (BatchNorm with and without Dropout, 12 epochs x scale)")
    p.add_argument("--report-only", action="store_true", help="print the table of the runs done so far; train none")
    p.add_argument("--runs-dir", type=Path, help="where runs go (default $EXPLORER_RUNS_DIR or checkpoints)")
    p.add_argument("--data-dir", type=Path, help="where cifar10 is found (default $EXPLORER_DATA_DIR or data)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    from explorer.search import study_replay
    from explorer.search.control import check_name
    from explorer.search.study import default_storage

    sweeps = study_replay.prepare(args.data, args.repeat, args.scale_epochs,
                                  lambda name: default_storage(check_name(name), args.runs_dir), args.name,
                                  args.data_dir, args.short_only)
    if not args.report_only:
        study_replay.run(sweeps, args.workers, args.runs_dir, args.data_dir)
    result = study_replay.report(sweeps)
    if args.json:
        print_json(result)
    else:
        print_tables(result)
    return 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ours(row: dict) -> str:
    if not row["n"]:
        return "not run yet"
    if row["low"] is None:
        return f"{row['mean']:.1%} (n = 1)"
    return f"{row['mean']:.1%} ± {(row['high'] - row['low']) / 2:.1%} (n = {row['n']})"


def print_tables(result: dict) -> None:
    print(f"{'step':<56} {'study':>6}  ours (mean ± 95 % interval)")
    for row in result["steps"]:
        print(f"{row['label']:<56} {_pct(row['reported']):>6}  {_ours(row)}")
    print()
    print(f"{'conclusion':<54} {'study':>13}  {'ours: A - B [95 % interval]':<30} verdict")
    for row in result["conclusions"]:
        study = f"{_pct(row['reported_a'])} v {_pct(row['reported_b'])}"
        ours = "—" if row["diff"] is None else \
            f"{row['diff']:+.1%} [{row['low']:+.1%}, {row['high']:+.1%}]"
        print(f"{row['conclusion']:<54} {study:>13}  {ours:<30} {row['verdict']}")
