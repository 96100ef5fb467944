"""Command line: every subcommand lives in its own module and registers itself here.

Errors the package raises on purpose (ExplorerError) end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from explorer.cli import compare, evaluate, export, predict, runs, schema, search, stats, train
from explorer.errors import ExplorerError

SUBCOMMANDS = (stats, train, evaluate, runs, compare, schema, search, export, predict)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like ExplorerError
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m explorer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except ExplorerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
