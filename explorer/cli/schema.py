"""`schema`: every setting of an architecture and a training run, from their one declaration.

python -m explorer schema          a table: field, type, allowed values, default, flag
python -m explorer schema --json   a JSON Schema (draft 2020-12) document of {"arch": ..., "train": ...}
"""

from __future__ import annotations

import argparse

from explorer import schema
from explorer.arch.config import ArchConfig
from explorer.cli.common import print_json
from explorer.engine.config import TrainConfig

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# How each class reaches the command line (ArchConfig as a whole: its conv list does not fit flags).
CLI = {"ArchConfig": "--preset NAME | --config FILE | --arch JSON",
       "ConvBlock": "inside --arch / --config (the 'conv' list)",
       "TrainConfig": "train: --recipe NAME, then one flag per field (x-flag)"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="every setting: type, range or choices, default, help, flag")
    p.add_argument("--json", action="store_true", help="print a JSON Schema document")
    p.set_defaults(handler=run_schema)


def settings_schema() -> dict:
    """The JSON Schema of a run's settings: {"arch": ArchConfig, "train": TrainConfig}."""
    classes = [*schema.nested_classes(ArchConfig), TrainConfig]
    defs = {cls.__name__: schema.json_schema(cls) | {"x-cli": CLI[cls.__name__]} for cls in classes}
    for name in ("ArchConfig", "ConvBlock"):  # no flag of their own: drop the per-field flag names
        for prop in defs[name]["properties"].values():
            prop.pop("x-flag", None)
    return {
        "$schema": DIALECT,
        "title": "Architecture Explorer settings",
        "description": "A network (arch) and how it is trained (train), as run records and checkpoints hold them.",
        "type": "object",
        "properties": {"arch": {"$ref": "#/$defs/ArchConfig"}, "train": {"$ref": "#/$defs/TrainConfig"}},
        "additionalProperties": True,
        "$defs": defs,
    }


def run_schema(args: argparse.Namespace) -> int:
    if args.json:
        print_json(settings_schema())
        return 0
    for cls in (*schema.nested_classes(ArchConfig), TrainConfig):
        print(f"{cls.__name__}  ({CLI[cls.__name__]})")
        for spec in schema.specs(cls):
            default = "required" if spec.required else repr(spec.default)
            flag = f"  {spec.flag}" if cls is TrainConfig else ""
            print(f"  {spec.name:<17}{spec.kind:<14}{schema.describe(spec):<44}{default:<16}{flag}")
        print()
    return 0
