"""Training throughput: our pipeline against the study's, side by side, on this machine's CPU.

    python benchmarks/throughput.py [--folder /tmp/cifar10-jpeg] [--batches 8,128] [--seconds 6] [--rounds 2]

The net is the study's final one (PRESETS["study-bn"], 164,310 params), trained the study's way (SGD lr 0.001,
momentum 0.9, cross-entropy, no augmentation, 0.5/0.5 normalization) by both pipelines:
- study: torchvision ImageFolder on the JPEG folder (or, without it, a CIFAR10-like dataset that builds a PIL
  image per sample as torchvision's CIFAR10 does) + ToTensor/Normalize, DataLoader(num_workers=2, shuffle=True),
  loss.item() every batch, timed over `--seconds` after a few warm-up batches (worker start-up excluded);
- ours: explorer.engine.train.train() on preloaded uint8 tensors (the decoded cache), the second of two epochs over
  a fixed number of batches (its "images_per_second": training time only).
Effective GFLOP/s = images/s x 3 x FLOPs per image (forward + backward ~ 3x forward, FLOPs = 2 x MACs from
explorer.arch.cost), against the matmul ceiling measured in the same run in the precision our loop trains in
(bf16 autocast on CPUs with native bf16, as precision "auto" picks; float32 elsewhere; both are reported).
Rounds alternate the two
pipelines and keep each one's best, which damps the noise of a shared machine (the load average is reported).
Targets on a 2-core CPU: >= 10x at batch 8, >= 4x at batch 128, >= 50 % of the matmul ceiling. The `fast` and
`best` presets are also timed by their own recipes at the recipe's batch (images/s, GFLOP/s, fraction of the ceiling).
On CUDA it also reports the time of one full epoch (training + evaluation) of the net.
`--vocabulary` instead times `fast` beside a depthwise-separable and a MobileNetV2-inverted net (or, with
`--presets a,b`, those presets), each with and without channels_last (the layout
explorer.engine.train.memory_format_for picks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.arch.cost import model_cost  # noqa: E402
from explorer.arch.model import build_model  # noqa: E402
from explorer.arch.presets import PRESETS  # noqa: E402
from explorer.engine.data import load_dataset  # noqa: E402
from explorer.engine.dataset import Dataset  # noqa: E402
from explorer.engine.recipes import RECIPES  # noqa: E402
from explorer.engine.synthetic import synthetic_images  # noqa: E402
from explorer.engine.train import autocast_dtype, train  # noqa: E402

NET = "study-bn"
TARGETS = {"speedup_batch_8": 10.0, "speedup_batch_128": 4.0, "ceiling_fraction": 0.5}
DEFAULT_FOLDER = os.environ.get("CIFAR10_JPEG", "/tmp/cifar10-jpeg")
OUR_STEPS = {8: 500, 128: 50}  # batches per timed epoch of our pipeline
PRESETS_TIMED, PRESET_STEPS = ("fast", "best"), 30  # presets timed at their recipe's batch, batches per epoch


def matmul_ceiling(seconds: float = 1.5, n: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of an n x n matmul in `dtype` with the current thread count."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b, out=out)
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


class CifarLike(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 does per sample: a PIL image from a uint8 HWC array, then the transform."""

    def __init__(self, x_nchw: torch.Tensor, y: torch.Tensor, transform):
        self.data = x_nchw.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def study_dataset(folder: Path | None, ours: Dataset):
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    if folder is not None:
        return datasets.ImageFolder(str(folder / "train"), transform=transform), f"ImageFolder {folder}/train"
    return CifarLike(ours.train_x, ours.train_y, transform), "CIFAR10-like dataset (PIL image per sample)"


def study_images_per_second(dataset, batch: int, seconds: float, warmup: int = 5) -> float:
    """The study's loop: DataLoader with 2 workers, per-sample transforms, loss.item() every batch."""
    torch.manual_seed(0)
    net = build_model(PRESETS[NET])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2)
    batches = iter(loader)
    running_loss, images, t0 = 0.0, 0, None
    for i, (inputs, labels) in enumerate(batches):
        if i == warmup:
            t0, images = time.perf_counter(), 0
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        images += len(labels)
        if t0 is not None and time.perf_counter() - t0 >= seconds:
            break
    elapsed = time.perf_counter() - t0
    del batches  # shuts the workers down
    return images / elapsed


def subset(data: Dataset, n_train: int, n_test: int) -> Dataset:
    return Dataset(f"{data.name}[:{n_train}]", data.train_x[:n_train], data.train_y[:n_train],
                   data.test_x[:n_test], data.test_y[:n_test], data.classes, data.fingerprint, data.mean, data.std)


def our_images_per_second(data: Dataset, batch: int, device: str = "cpu") -> float:
    """Our loop (train() itself): the second epoch's training images/s over OUR_STEPS[batch] batches."""
    cfg = RECIPES["study"].replace(batch_size=batch, epochs=2, device=device, test_batch_size=500)
    result = train(PRESETS[NET], cfg, subset(data, batch * OUR_STEPS.get(batch, 50), 500))
    return result.epochs[-1]["images_per_second"]


def preset_rates(data: Dataset, ceiling: float) -> dict:
    """The `fast` and `best` presets trained by their own recipes at the recipe's batch: the second epoch's
    training images/s over PRESET_STEPS batches, the effective GFLOP/s and its fraction of the matmul ceiling."""
    out = {}
    for name in PRESETS_TIMED:
        cfg = RECIPES[name].replace(epochs=2, tta_flip=False, test_batch_size=500, device="cpu")
        result = train(PRESETS[name], cfg, subset(data, cfg.batch_size * PRESET_STEPS, 500))
        rate = result.epochs[-1]["images_per_second"]
        gflops = rate * 3 * model_cost(PRESETS[name]).flops / 1e9
        out[name] = {"batch": cfg.batch_size, "images_per_second": rate, "gflops": gflops,
                     "ceiling_fraction": gflops / ceiling,
                     "convs_alone": convs_alone(PRESETS[name], cfg.batch_size, ceiling)}
    return out


def convs_alone(arch, batch: int, ceiling: float, steps: int = 6) -> dict:
    """The preset's convolutions alone, forward + backward at the training step's shapes, batch, layout and
    autocast, with nothing between them: the most of the ceiling the whole step could reach if BatchNorm, the
    activations and pooling were free."""
    model = build_model(arch).to(memory_format=torch.channels_last)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    shapes: list[torch.Size] = []
    hooks = [c.register_forward_hook(lambda _m, args, _out: shapes.append(args[0].shape)) for c in convs]
    model(torch.zeros(1, *model.input_shape))
    for hook in hooks:
        hook.remove()
    inputs = [torch.randn(batch, *s[1:]).to(memory_format=torch.channels_last).requires_grad_(i > 0)
              for i, s in enumerate(shapes)]  # the first conv's input (the images) needs no gradient
    dtype = autocast_dtype("auto", torch.device("cpu"))

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            outputs = [conv(x) for conv, x in zip(convs, inputs)]
        sum(o.float().sum() for o in outputs).backward()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    rate = steps * batch / (time.perf_counter() - t0)
    conv_flops = 2 * sum(layer.macs for layer in model_cost(arch).layers if layer.kind == "Conv2d")
    gflops = rate * 3 * conv_flops / 1e9
    return {"images_per_second": rate, "gflops": gflops, "ceiling_fraction": gflops / ceiling,
            "conv_flops_share": conv_flops / model_cost(arch).flops}


def _vocabulary_nets() -> dict:
    """`fast` beside nets of the new blocks at a similar budget: depthwise separable and MobileNetV2-inverted."""
    from explorer.arch.config import ArchConfig
    from explorer.arch.config import ConvBlock as B

    return {
        "fast": PRESETS["fast"],
        "depthwise": ArchConfig(conv=(B(32, pool="max"), B(32, groups="depthwise"), B(96, kernel=1),
                                      B(96, groups="depthwise", pool="max"), B(192, kernel=1),
                                      B(192, groups="depthwise", pool="max"), B(384, kernel=1)),
                                batchnorm=True, activation="gelu", head="avgpool"),
        "inverted": ArchConfig(conv=(B(32, pool="max"), B(48, block="inverted"), B(64, block="inverted", pool="max"),
                                     B(96, block="inverted"), B(128, block="inverted", pool="max"),
                                     B(128, block="inverted")), batchnorm=True, activation="gelu", head="avgpool"),
    }


def vocabulary_rates(data: Dataset, rounds: int, steps: int, nets: dict | None = None) -> dict:
    """Training images/s (train() itself, the `fast` recipe at batch 256, the second epoch over `steps` batches)
    of each net (default: _vocabulary_nets()) with channels_last and with the default (NCHW) layout; each pair's
    best of `rounds`."""
    from explorer.engine import train as train_module

    cfg = RECIPES["fast"].replace(epochs=2, tta_flip=False, tta_translate=0, test_batch_size=500, device="cpu")
    out: dict = {}
    for _ in range(rounds):
        for name, arch in (nets or _vocabulary_nets()).items():
            for layout, fmt in (("channels_last", torch.channels_last), ("nchw", torch.contiguous_format)):
                original = train_module.memory_format_for
                train_module.memory_format_for = lambda _arch, _device, fmt=fmt: fmt
                try:
                    result = train(arch, cfg, subset(data, cfg.batch_size * steps, 500))
                finally:
                    train_module.memory_format_for = original
                row = out.setdefault(name, {"params": model_cost(arch).params, "mflops": model_cost(arch).flops / 1e6})
                row[layout] = max(row.get(layout, 0.0), result.epochs[-1]["images_per_second"])
    return out


def cuda_epoch_seconds(data: Dataset) -> dict:
    """One full epoch (50,000 images + evaluation) of the net on the GPU, batch 512: the second epoch's time."""
    cfg = RECIPES["fast"].replace(epochs=2, batch_size=512, test_batch_size=2000, device="cuda", tta_flip=False)
    result = train(PRESETS[NET], cfg, data)
    last = result.epochs[-1]
    return {"epoch_seconds": last["seconds"], "train_seconds": last["train_seconds"],
            "images_per_second": last["images_per_second"], "batch": 512, "gpu": torch.cuda.get_device_name()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(DEFAULT_FOLDER), help="JPEG CIFAR-10 image folder")
    parser.add_argument("--batches", default="8,128", help="batch sizes to compare")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per study measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each pipeline's best is kept")
    parser.add_argument("--vocabulary", action="store_true",
                        help="only time fast beside depthwise / inverted nets, with and without channels_last")
    parser.add_argument("--steps", type=int, default=0, help="--vocabulary: batches per timed epoch (default 30)")
    parser.add_argument("--presets", default="",
                        help="--vocabulary: time these presets instead, e.g. fast,resnet20,tiniest,se-resnet")
    args = parser.parse_args(argv)
    if args.vocabulary:
        # Synthetic 32x32 images: the step's speed does not depend on the pixels, and loading is instant.
        steps = args.steps or PRESET_STEPS
        nets = {name: PRESETS[name] for name in args.presets.split(",")} if args.presets else None
        rates = vocabulary_rates(load_dataset(f"synthetic:{256 * steps}"), args.rounds, steps, nets)
        for name, row in rates.items():
            print(f"{name:>10}  {row['params']:>8,} params  {row['mflops']:5.1f} MFLOPs  channels_last "
                  f"{row['channels_last']:>6,.0f} img/s  NCHW {row['nchw']:>6,.0f} img/s")
        print(json.dumps({"vocabulary": rates, "load_average": [round(v, 2) for v in os.getloadavg()]}))
        return 0
    sizes = [int(b) for b in args.batches.split(",")]

    folder = args.folder if (args.folder / "train").is_dir() else None
    t0 = time.perf_counter()
    ours_data = load_dataset(f"folder:{folder}") if folder else _synthetic_cifar()
    load_seconds = time.perf_counter() - t0
    study_data, study_name = study_dataset(folder, ours_data)
    flops = model_cost(PRESETS[NET]).flops
    our_dtype = autocast_dtype("auto", torch.device("cpu")) or torch.float32
    ceilings = {"float32": matmul_ceiling(), "ours": matmul_ceiling(dtype=our_dtype)}
    results = {b: {"study": 0.0, "ours": 0.0} for b in sizes}
    for _ in range(args.rounds):
        for b in sizes:
            results[b]["study"] = max(results[b]["study"], study_images_per_second(study_data, b, args.seconds))
            results[b]["ours"] = max(results[b]["ours"], our_images_per_second(ours_data, b))
    ceilings = {"float32": max(ceilings["float32"], matmul_ceiling()),
                "ours": max(ceilings["ours"], matmul_ceiling(dtype=our_dtype))}
    report = _report(results, flops, ceilings, study_name, load_seconds)
    report["our_precision"] = str(our_dtype).removeprefix("torch.")
    report["presets"] = preset_rates(ours_data, ceilings["ours"])
    if torch.cuda.is_available():
        report["cuda"] = cuda_epoch_seconds(ours_data)
    _print_table(report)
    print(json.dumps(report))
    return 0


def _synthetic_cifar() -> Dataset:
    # Without the JPEG folder: CIFAR-10-sized synthetic images (50,000 + 10,000, 32x32 RGB).
    x, y = synthetic_images(60_000)
    from explorer.engine.dataset import _finish

    return _finish("synthetic-cifar-size", x[:50_000], y[:50_000], x[50_000:], y[50_000:],
                   [str(i) for i in range(10)])


def _report(results: dict, flops: int, ceilings: dict, study_name: str, load_seconds: float) -> dict:
    ceiling = ceilings["ours"]
    per_batch = {}
    for b, r in results.items():
        gflops = {k: v * 3 * flops / 1e9 for k, v in r.items()}
        per_batch[str(b)] = {"study_images_per_second": r["study"], "ours_images_per_second": r["ours"],
                             "speedup": r["ours"] / r["study"], "study_gflops": gflops["study"],
                             "ours_gflops": gflops["ours"], "ours_ceiling_fraction": gflops["ours"] / ceiling,
                             # the speedup a float32 pipeline running at 100 % of the matmul ceiling would reach
                             "speedup_bound": ceilings["float32"] / gflops["study"]}
    best_fraction = max(v["ours_ceiling_fraction"] for v in per_batch.values())
    met = {"ceiling_fraction": best_fraction >= TARGETS["ceiling_fraction"]}
    for b in ("8", "128"):
        if b in per_batch:
            met[f"speedup_batch_{b}"] = per_batch[b]["speedup"] >= TARGETS[f"speedup_batch_{b}"]
    return {"net": NET, "params": model_cost(PRESETS[NET]).params, "flops_per_image": flops,
            "device": "cpu", "threads": torch.get_num_threads(), "cores": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()], "study_data": study_name,
            "our_load_seconds": load_seconds, "matmul_gflops": ceiling,
            "matmul_gflops_float32": ceilings["float32"], "batches": per_batch,
            "best_ceiling_fraction": best_fraction, "targets": TARGETS, "met": met}


def _print_table(report: dict) -> None:
    print(f"{report['net']}: {report['params']:,} params, {report['flops_per_image'] / 1e6:.2f} MFLOPs/image "
          f"forward; {report['threads']} threads on {report['cores']} cores, load average {report['load_average']}")
    print(f"matmul ceiling {report['matmul_gflops']:.1f} GFLOP/s in {report['our_precision']} "
          f"(float32 {report['matmul_gflops_float32']:.1f}); study data: {report['study_data']}; "
          f"our data loaded in {report['our_load_seconds']:.1f} s")
    print(f"{'batch':>5}  {'study img/s':>11}  {'ours img/s':>10}  {'speedup':>7}  {'study GFLOP/s':>13}  "
          f"{'ours GFLOP/s':>12}  {'of ceiling':>10}  {'bound':>6}")
    for b, r in report["batches"].items():
        print(f"{b:>5}  {r['study_images_per_second']:>11,.0f}  {r['ours_images_per_second']:>10,.0f}  "
              f"{r['speedup']:>6.1f}x  {r['study_gflops']:>13.1f}  {r['ours_gflops']:>12.1f}  "
              f"{r['ours_ceiling_fraction']:>9.0%}  {r['speedup_bound']:>5.1f}x")
    print("bound: the speedup at 100 % of the float32 matmul ceiling (compute caps the ratio once the study's loader "
          "keeps up)")
    for name, r in report["presets"].items():
        alone = r["convs_alone"]
        print(f"preset {name} (its recipe, batch {r['batch']}): {r['images_per_second']:,.0f} img/s, "
              f"{r['gflops']:.1f} GFLOP/s, {r['ceiling_fraction']:.0%} of the ceiling; its convolutions alone "
              f"(fwd + bwd, nothing between): {alone['images_per_second']:,.0f} img/s, {alone['gflops']:.1f} GFLOP/s, "
              f"{alone['ceiling_fraction']:.0%}")
    if "cuda" in report:
        c = report["cuda"]
        print(f"CUDA ({c['gpu']}): one epoch {c['epoch_seconds']:.2f} s (training {c['train_seconds']:.2f} s, "
              f"{c['images_per_second']:,.0f} img/s at batch {c['batch']})")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in report["met"].items()))


if __name__ == "__main__":
    sys.exit(main())
