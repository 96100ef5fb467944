"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from explorer.arch.config import ArchConfig
from explorer.arch.presets import PRESETS
from explorer.errors import ConfigError


def add_arch_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The architecture: a preset, a JSON file, or inline JSON (every ArchConfig / ConvBlock field goes
    through --arch or --config: a list of blocks does not fit flags; `python -m explorer schema` lists them)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--preset", choices=sorted(PRESETS), help="a named architecture")
    group.add_argument("--config", type=Path, help="an architecture JSON file (ArchConfig.to_dict())")
    group.add_argument("--arch", metavar="JSON",
                       help='inline architecture JSON, e.g. \'{"conv": [{"out_channels": 32}]}\'')


def arch_from_args(args: argparse.Namespace) -> ArchConfig:
    if args.preset:
        return PRESETS[args.preset]
    if getattr(args, "arch", None) is not None:
        return ArchConfig.from_json(args.arch)
    try:
        text = args.config.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {args.config}: {err.strerror}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {args.config} is not valid JSON: {err}.") from None
    if isinstance(data, dict) and "arch" in data:  # a run record or checkpoint metadata holds it under "arch"
        data = data["arch"]
    return ArchConfig.from_dict(data)


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not C,H,W (e.g. 3,32,32)") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not C,H,W with three positive numbers (e.g. 3,32,32)")
    return values


def print_json(obj: object) -> None:
    print(json.dumps(obj))


def load_named(path: Path):
    """load_checkpoint on the CPU without optimizer state; a refusal names the file (the CLI shows one line)."""
    from explorer.errors import CheckpointError
    from explorer.store.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path, device="cpu", with_optimizer=False)
    except CheckpointError as err:
        message = str(err)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from None


def add_name_and_storage(p: argparse.ArgumentParser, noun: str) -> None:
    """The arguments every `search` and `sweep` subcommand shares: a name, its storage, the runs folder, --json."""
    p.add_argument("name", help=f"the {noun}'s name")
    p.add_argument("--storage", help="journal:PATH or a SQLAlchemy URL (default journal:<runs-dir>/searches/NAME/"
                                     "journal.log)")
    p.add_argument("--runs-dir", type=Path, help="where runs go (default $EXPLORER_RUNS_DIR or checkpoints)")
    p.add_argument("--json", action="store_true", help="one JSON object")


def storage_of(args: argparse.Namespace) -> str:
    """--storage, or the default journal of a checked name under the runs folder."""
    from explorer.search.control import check_name
    from explorer.search.study import default_storage

    return args.storage or default_storage(check_name(args.name), args.runs_dir)
