"""The GPU benchmark, one prepared script for a lent device (under 5 minutes on a modern GPU):

    python benchmarks/gpu.py --data folder:/path/to/cifar10-jpeg [--tarball cifar10-jpeg.tar.gz] --json

1. the study's final net (164,310 params) trained on the whole training set: one epoch's time (training and
   evaluation), the second of two so start-up is not counted (goal < 1 s), with the fast recipe at batch 256
   and at 512;
2. the `best` preset with the `best` recipe for `--epochs` epochs: the training time at which test accuracy
   first reached 90 % (each epoch evaluated), and the final accuracy;
3. the device, the CUDA paths in use (autocast dtype, fused optimizer, channels_last) and a matmul ceiling in
   the training precision, so the hardware fraction is reported beside the images/s.

`--tarball` extracts the JPEG CIFAR-10 tarball first (the device has no network; the tarball travels with the
working tree). `--allow-cpu` runs it on the CPU with `--epochs 1` and a data subset, as a smoke test of the
script itself. Prints a table and, with --json, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
from explorer.arch.cost import model_cost  # noqa: E402
from explorer.arch.presets import PRESETS  # noqa: E402
from explorer.engine.data import load_dataset  # noqa: E402
from explorer.engine.dataset import Dataset  # noqa: E402
from explorer.engine.recipes import RECIPES  # noqa: E402
from explorer.engine.train import autocast_dtype, train  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder:PATH | cifar10 | synthetic:N")
    p.add_argument("--tarball", type=Path, help="extract this .tar.gz beside it first (JPEG CIFAR-10)")
    p.add_argument("--epochs", type=int, default=40, help="epochs of the best recipe (default 40)")
    p.add_argument("--target", type=float, default=0.90, help="test accuracy to time (default 0.90)")
    p.add_argument("--allow-cpu", action="store_true", help="smoke-test the script without a GPU")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def matmul_ceiling(device: str, dtype: torch.dtype, n: int = 4096, seconds: float = 1.0) -> float:
    """GFLOP/s of a large square matmul in `dtype` on `device` (the hardware's practical ceiling)."""
    n = n if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def study_epoch(data: Dataset, device: str, batch: int) -> dict:
    """The study's net on the whole training set: the second epoch's seconds (training + evaluation)."""
    cfg = RECIPES["fast"].replace(epochs=2, batch_size=batch, test_batch_size=2000, device=device, tta_flip=False)
    result = train(PRESETS["study-bn"], cfg, data)
    last = result.epochs[-1]
    return {"batch": batch, "epoch_seconds": round(last["seconds"], 3),
            "train_seconds": round(last["train_seconds"], 3), "images_per_second": round(last["images_per_second"]),
            "test_accuracy": last["test_accuracy"]}


def best_run(data: Dataset, device: str, epochs: int, target: float) -> dict:
    """The best preset and recipe: training seconds to `target` test accuracy, the curve, the final accuracy."""
    cfg = RECIPES["best"].replace(epochs=epochs, device=device)
    clock = {"train_seconds": 0.0, "reached": None}
    curve = []

    def on_event(event: dict) -> None:
        if event["type"] != "epoch":
            return
        clock["train_seconds"] += event["train_seconds"]
        if clock["reached"] is None and event["test_accuracy"] >= target:
            clock["reached"] = round(clock["train_seconds"], 1)
        curve.append([round(clock["train_seconds"], 1), event["test_accuracy"]])

    result = train(PRESETS["best"], cfg, data, on_event, threading.Event())
    return {"epochs": epochs, "seconds_to_target": clock["reached"], "target": target,
            "final_accuracy": result.metrics["test_accuracy"], "train_seconds": round(clock["train_seconds"], 1),
            "images_per_second": result.images_per_second, "curve": curve}


def _small(data: Dataset, n_train: int, n_test: int) -> Dataset:
    return Dataset(data.name + " (smoke subset)", data.train_x[:n_train], data.train_y[:n_train],
                   data.test_x[:n_test], data.test_y[:n_test], data.classes, data.fingerprint + "-smoke",
                   data.mean, data.std, data.notes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("error: no CUDA device here; run this on a GPU machine (or --allow-cpu for a smoke test).",
              file=sys.stderr)
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.tarball:
        with tarfile.open(args.tarball) as archive:
            archive.extractall(args.tarball.parent, filter="data")
    started = time.perf_counter()
    data = load_dataset(args.data)
    load_seconds = time.perf_counter() - started
    epochs = args.epochs
    if device == "cpu":  # smoke test of the script: tiny data, one epoch
        data, epochs = _small(data, 2048, 512), 1
    dtype = autocast_dtype("auto", torch.device(device)) or torch.float32
    ceiling = matmul_ceiling(device, dtype)
    epochs_of_study = [study_epoch(data, device, batch) for batch in (RECIPES["fast"].batch_size, 512)]
    best = best_run(data, device, epochs, args.target)
    flops = model_cost(PRESETS["best"], data.input_shape, data.num_classes).flops
    fraction = best["images_per_second"] * 3 * flops / 1e9 / ceiling  # forward + backward ~ 3x forward
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"\n{name}: data {data.name} loaded in {load_seconds:.0f} s; matmul ceiling {ceiling:,.0f} GFLOP/s ({dtype})")
    print(f"{'study net, batch':<22}{'epoch s':>9}{'train s':>9}{'img/s':>10}{'test acc':>10}")
    for row in epochs_of_study:
        print(f"{row['batch']:<22}{row['epoch_seconds']:>9.2f}{row['train_seconds']:>9.2f}"
              f"{row['images_per_second']:>10,}{row['test_accuracy']:>10.1%}")
    reached = best["seconds_to_target"]
    print(f"best preset, {best['epochs']} epochs of the best recipe: {best['final_accuracy']:.2%} after "
          f"{best['train_seconds']:.0f} s of training; {args.target:.0%} "
          f"{'not reached' if reached is None else f'after {reached:.1f} s'}; {fraction:.0%} of the ceiling")
    if args.json:
        print(json.dumps({"benchmark": "gpu", "device": name, "dtype": str(dtype), "ceiling_gflops": round(ceiling),
                          "load_seconds": round(load_seconds, 1), "study_epoch": epochs_of_study, "best": best,
                          "hardware_fraction": round(fraction, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
