"""`predict`: the top classes, with probabilities, a checkpoint gives each image file."""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.cli.common import load_named, print_json


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a checkpoint: top classes and probabilities")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .safetensors checkpoint, a run folder, or a run id in the runs folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, GIF, WebP, BMP or TIFF files")
    p.add_argument("--top", type=_positive, default=5, metavar="K", help="how many classes to list per image")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation: default as trained (the checkpoint's flip/translate TTA, as "
                        "evaluate and the app use); --no-tta: one view (what an exported model does); --tta: flip on")
    p.add_argument("--runs-dir", help="the runs folder a run id is looked up in (default: $EXPLORER_RUNS_DIR or "
                                      "./checkpoints)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    # Imported here so `python -m explorer stats` does not pay for torch.
    import torch

    from explorer.engine.evaluate import model_device
    from explorer.store.runs import resolve_checkpoint

    path, _ = resolve_checkpoint(args.checkpoint, args.runs_dir)
    loaded = load_named(path)
    inputs = [_read_image(Path(name), loaded.input_shape) for name in args.images]  # every file before any output
    policy = loaded.policy.with_tta(args.tta)  # the checkpoint's, as evaluate and the app's pages use it
    pixels = torch.stack([image.pixels for image in inputs])
    probabilities = policy.probabilities(loaded.model, pixels, loaded.mean, loaded.std)
    top = min(args.top, len(loaded.classes))
    results = [_top(name, probs, loaded.classes, top, image.notes)
               for name, probs, image in zip(args.images, probabilities, inputs)]
    if args.json:
        print_json({"checkpoint": str(path), "classes": loaded.classes, "top": top, "tta_flip": policy.tta_flip,
                    "tta_translate": policy.tta_translate, "policy": policy.describe(model_device(loaded.model)),
                    "predictions": results})
        return 0
    for result in results:
        _print_result(result)
    return 0


def _read_image(path: Path, input_shape: tuple[int, int, int]):
    from explorer.errors import DataError
    from explorer.files import MAX_IMAGE_BYTES, read_regular
    from explorer.inspect.images import load_image

    try:
        data = read_regular(path, MAX_IMAGE_BYTES, DataError)  # never /dev/zero, a FIFO or past the size rule
    except DataError as err:
        raise DataError(f"cannot read the image: {err}") from None
    try:
        return load_image(data, input_shape)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None


def _top(name: str, probabilities, classes: list[str], k: int, notes: list[str]) -> dict:
    values, indices = probabilities.topk(k)
    return {"image": name, "top": [{"class": classes[i], "index": int(i), "probability": float(p)}
                                   for p, i in zip(values.tolist(), indices.tolist())], "notes": list(notes)}


def _print_result(result: dict) -> None:
    print(result["image"])
    width = max(len(entry["class"]) for entry in result["top"])
    for entry in result["top"]:
        print(f"  {entry['class']:<{width}}  {entry['probability']:7.2%}")
    for note in result["notes"]:
        print(f"  note: {note}")
