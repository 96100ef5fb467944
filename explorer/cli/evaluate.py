"""`evaluate`: a saved checkpoint's accuracy, per-class accuracy and confusion matrix on a dataset."""

from __future__ import annotations

import argparse

from explorer.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint (.safetensors file or run folder) on a dataset")
    p.add_argument("checkpoint", help="a .safetensors checkpoint or a run folder holding model.safetensors")
    p.add_argument("--data", help="synthetic, cifar10, cifar10:DIR or folder:PATH (default: the data it was "
                                  "trained on)")
    p.add_argument("--data-dir", help="where cifar10 is downloaded/cached (default: $EXPLORER_DATA_DIR or data)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation: default as trained (the checkpoint's flip/translate TTA); "
                        "--no-tta: none, one view per image (what an exported model does); --tta: flip on too")
    p.add_argument("--misclassified", type=int, default=20, metavar="N", help="list the N most confident mistakes")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    # Imported here so `python -m explorer stats` does not pay for torch data loading.
    from explorer.engine.data import load_dataset
    from explorer.engine.device import resolve_device
    from explorer.engine.evaluate import evaluate_checkpoint
    from explorer.errors import DataError
    from explorer.store.checkpoint import load_checkpoint
    from explorer.store.settings import default_data_dir

    device = resolve_device(args.device)  # --device cuda without a GPU: one line, exit 2, before any work
    loaded = load_checkpoint(args.checkpoint, device="cpu", with_optimizer=False)
    source = args.data or loaded.meta.get("data")
    if not source:
        raise DataError("the checkpoint does not say which data it was trained on; pass --data SOURCE.")
    dataset = load_dataset(source, args.data_dir or default_data_dir())
    evaluation = evaluate_checkpoint(loaded, dataset, args.batch_size, device, args.tta, args.misclassified)
    if args.json:
        print_json(evaluation.to_dict() | {"checkpoint": str(loaded.path or args.checkpoint)})
        return 0
    _print_report(evaluation)
    return 0


def _print_report(evaluation) -> None:
    print(f"{evaluation.data}: accuracy {evaluation.accuracy:.2%} ({evaluation.correct:,}/{evaluation.count:,}), "
          f"loss {evaluation.loss:.4f}  ({evaluation.policy})")
    width = max(len(c) for c in evaluation.classes)
    for name, acc in evaluation.per_class.items():
        print(f"  {name:<{width}}  {'-' if acc is None else f'{acc:.2%}':>8}")
    if evaluation.most_confused:
        print("most confused (true -> predicted):")
        for pair in evaluation.most_confused[:5]:
            share = f"{pair['fraction']:.1%} of {pair['true']}"
            print(f"  {pair['true']} -> {pair['predicted']}: {pair['count']} ({share})")
    for note in evaluation.notes:
        print(f"note: {note}")
