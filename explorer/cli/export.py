"""`export`: a checkpoint as ONNX or TorchScript, checked against PyTorch, with a Markdown model card beside it."""

from __future__ import annotations

import argparse
import sys

from explorer.cli.common import load_named, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript with a model card")
    p.add_argument("checkpoint", metavar="RUN_ID|CHECKPOINT",
                   help="a run id in the runs folder, a .safetensors checkpoint or a run folder")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="the file format")
    p.add_argument("--out", help="the exported file (default: beside the checkpoint, model.onnx or "
                                 "model.torchscript.pt); the model card goes to OUT.md")
    p.add_argument("--runs-dir", help="the runs folder RUN_ID is looked up in (default: $EXPLORER_RUNS_DIR or "
                                      "./checkpoints)")
    p.add_argument("--data-dir", help="where cifar10 is cached (default: $EXPLORER_DATA_DIR or data)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    # Imported here so `python -m explorer stats` does not pay for torch and the exporter.
    from pathlib import Path

    from explorer.inspect.export import (
        check_format,
        check_images,
        default_output,
        export_model,
        write_export,
    )
    from explorer.store.runs import resolve_checkpoint
    from explorer.store.settings import default_data_dir

    fmt = check_format(args.format)  # a wrong format: one line before anything is loaded
    path, record = resolve_checkpoint(args.checkpoint, args.runs_dir)
    loaded = load_named(path)
    out = Path(args.out) if args.out else default_output(path, fmt)
    if not args.json:
        print(f"exporting {path} to {fmt}…", file=sys.stderr)
    images = check_images(loaded, args.data_dir or default_data_dir())
    result = export_model(loaded, fmt, images, out.name, record, str(path))
    model_path, card_path = write_export(result, out)
    if args.json:
        print_json(result.to_dict() | {"checkpoint": str(path), "file": str(model_path), "card": str(card_path)})
        return 0
    check = result.check
    print(f"wrote {model_path} ({len(result.data) / 1024:,.0f} KiB) and its model card {card_path}")
    print(f"check: same top class on {check.agree}/{check.images} images, max |Δlogit| {check.max_abs_diff:.3g}, "
          f"batch sizes {', '.join(map(str, check.batch_sizes))} ran")
    if not check.from_data:
        print(f"note: checked on {check.description}")
    return 0
