"""`compare A B`: is A more accurate than B beyond the seed's noise? Each side is a run id or a group id
(`train --repeat N` makes groups; `runs --groups` lists them).

Prints both samples (n, mean and 95 % interval of the final test accuracy), the difference of means with its 95 %
Welch interval, Welch's t-test p-value and a verdict: "A better", "B better" or "within noise" (the interval
contains 0). A side with fewer than 2 finished runs, two datasets, or an unknown id: one line saying what to
change, exit 2."""

from __future__ import annotations

import argparse

from explorer.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="difference of two groups (or runs) of seeds: interval, p-value, verdict")
    p.add_argument("a", metavar="A", help="a group id (or a run id)")
    p.add_argument("b", metavar="B", help="a group id (or a run id)")
    p.add_argument("--runs-dir", help="the runs folder (default: $EXPLORER_RUNS_DIR or ./checkpoints)")
    p.add_argument("--json", action="store_true", help="one JSON object: a, b, diff, low, high, p_value, verdict")
    p.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from explorer.store.groups import compare

    first, second, result = compare(args.a, args.b, args.runs_dir)
    if args.json:
        print_json(result.to_dict() | {"a": first.to_dict(), "b": second.to_dict(), "metric": "final_test_accuracy"})
        return 0
    for side, sample in (("A", first), ("B", second)):
        summary = sample.summary
        print(f"{side}  {sample.id}  {sample.name}  ({sample.data[0]}): n {summary.n}, mean {summary.mean:.2%}, "
              f"std {summary.std:.2%}, 95 % interval {summary.low:.2%} to {summary.high:.2%}")
    print(f"A - B  {result.diff * 100:+.2f} points, 95 % interval {result.low * 100:+.2f} to {result.high * 100:+.2f}, "
          f"Welch p = {result.p_value:.3g}: {result.verdict}")
    return 0
