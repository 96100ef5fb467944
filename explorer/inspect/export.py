"""Export a checkpoint to ONNX or TorchScript, check the exported file against PyTorch, and write a model card.

The exported model takes what an image file holds, not what training fed the net: float32 pixels in [0, 1]
(uint8 / 255), N x C x H x W, channels in the checkpoint's order. The checkpoint's mean/std normalization is
built into the graph, so users never have to look it up (and cannot apply it twice by mistake). The output is
raw logits, one per class, in the order of the card's class list.

Every export is checked before anything is written: the exported model runs (onnxruntime, or torch.jit.load for
TorchScript) on 64 test images of the checkpoint's data source, or on 64 seeded random images when that data
cannot be loaded here, and must give the same top class as explorer's own predict_logits for every image; the
largest |difference| between their logits is reported. A batch size other than the traced one is run too, so
the batch dimension is known to be dynamic.
"""

from __future__ import annotations

import io
import platform
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from explorer import schema
from explorer.arch.config import ArchConfig
from explorer.arch.cost import model_cost
from explorer.atomic import atomic_write_bytes
from explorer.engine.config import TrainConfig
from explorer.engine.data import load_dataset
from explorer.engine.dataset import Dataset
from explorer.engine.evaluate import NO_TTA, InferencePolicy
from explorer.errors import ExplorerError
from explorer.store.checkpoint import LoadedCheckpoint, checkpoint_summary, library_versions
from explorer.store.process import LOGS_DIR
from explorer.store.settings import default_runs_dir

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
MEDIA_TYPES = {"onnx": "application/octet-stream", "torchscript": "application/zip"}
CHECK_IMAGES = 64
TRACE_BATCH = 2  # torch.export specializes sizes 0 and 1, so the example batch is 2; 64 and 1 are checked
OTHER_BATCH = 1  # the batch size people use most when they deploy: checked on top of the 64
RANDOM_SEED = 0
# Two reference logits closer than this are a tie: either class is a correct top class for that image.
TIE = 1e-5
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


class ExportError(ExplorerError):
    """An export that cannot be built, or whose output does not match the checkpoint's."""


@dataclass(frozen=True)
class CheckImages:
    """The uint8 images an export is checked on, and where they came from."""

    pixels: torch.Tensor  # N x C x H x W uint8
    description: str
    from_data: bool


@dataclass(frozen=True)
class ExportCheck:
    """How the exported model compared with the checkpoint in PyTorch."""

    images: int
    description: str
    from_data: bool
    agree: int
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    traced_batch: int

    def to_dict(self) -> dict:
        return {"images": self.images, "source": self.description, "from_data": self.from_data,
                "same_top_class": self.agree, "max_abs_logit_diff": self.max_abs_diff,
                "batch_sizes_checked": list(self.batch_sizes), "traced_batch": self.traced_batch}


@dataclass(frozen=True)
class ExportResult:
    """An exported model in memory: the file's bytes, its model card and the check it passed."""

    format: str
    data: bytes
    card: str
    check: ExportCheck
    file_name: str
    versions: dict = field(default_factory=dict)

    @property
    def card_name(self) -> str:
        return card_name(self.file_name)

    def to_dict(self) -> dict:
        return {"format": self.format, "file": self.file_name, "card": self.card_name, "bytes": len(self.data),
                "check": self.check.to_dict(), "versions": self.versions}


# ----------------------------------------------------------------------------------------------- the model


class PixelModel(nn.Module):
    """The checkpoint's net behind its normalization: float pixels in [0, 1] in, logits out."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net((pixels - self.mean) / self.std)


def pixel_model(loaded: LoadedCheckpoint) -> PixelModel:
    """The wrapper around a CPU copy of the checkpoint's net, in eval mode (the loaded one is left alone)."""
    import copy

    net = copy.deepcopy(loaded.model).to("cpu").eval()
    return PixelModel(net, loaded.mean, loaded.std).eval()


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use {' or '.join(FORMATS)}.")
    return fmt


def card_name(file_name: str) -> str:
    """The model card's file name beside the exported file: `<file>.md`."""
    return f"{file_name}.md"


def default_output(checkpoint: Path, fmt: str) -> Path:
    """Beside the checkpoint: `model.safetensors` -> `model.onnx` / `model.torchscript.pt`."""
    return checkpoint.with_name(checkpoint.name.split(".")[0] + SUFFIXES[check_format(fmt)])


# ----------------------------------------------------------------------------------------------- images


def check_images(loaded: LoadedCheckpoint, data_dir: str | Path = "data", count: int = CHECK_IMAGES,
                 load: Callable[[str], Dataset] | None = None) -> CheckImages:
    """`count` test images of the checkpoint's data source, evenly spread over its test split; seeded random
    images (and why) when that data is not here. `load` replaces load_dataset (the app passes its own)."""
    source = loaded.meta.get("data")
    reason = _unavailable(source, Path(data_dir))
    if reason is None:
        try:
            dataset = (load or (lambda s: load_dataset(s, data_dir)))(source)
            if tuple(dataset.input_shape) != loaded.input_shape or len(dataset.test_x) == 0:
                reason = f"{source} has {_shape(dataset.input_shape)} images or no test split"
            else:
                index = torch.linspace(0, len(dataset.test_x) - 1, min(count, len(dataset.test_x))).long()
                return CheckImages(dataset.test_x[index], f"{len(index)} test images of {source}", True)
        except ExplorerError as err:
            reason = f"{source} cannot be loaded here ({err})"
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    pixels = torch.randint(0, 256, (count, *loaded.input_shape), dtype=torch.uint8, generator=generator)
    return CheckImages(pixels, f"{count} seeded random images (seed {RANDOM_SEED}): {reason}", False)


def _unavailable(source: str | None, data_dir: Path) -> str | None:
    """Why the data cannot be used without a download (which an export must never start), else None."""
    if not source:
        return "the checkpoint does not name its data"
    if source.strip() == "cifar10" and not (data_dir / "cifar-10-batches-py").is_dir():
        return f"cifar10 is not downloaded in {data_dir}"
    return None


def _shape(shape) -> str:
    return "×".join(map(str, shape))


# ----------------------------------------------------------------------------------------------- exporting


def export_model(loaded: LoadedCheckpoint, fmt: str, images: CheckImages, file_name: str | None = None,
                 record: dict | None = None, source_path: str | None = None) -> ExportResult:
    """Export, check against PyTorch and write the card, all in memory. ExportError when any step fails."""
    fmt = check_format(fmt)
    model = pixel_model(loaded)
    with warnings.catch_warnings():
        # torch.jit and the ONNX exporter warn about their own futures; the user cannot act on that here.
        warnings.simplefilter("ignore")
        data = _export_onnx(model, loaded.input_shape) if fmt == "onnx" else _export_torchscript(model,
                                                                                                  loaded.input_shape)
        run = _onnx_runner(data) if fmt == "onnx" else _torchscript_runner(data)
        check = _check(loaded, images, run)
    versions = export_versions(fmt) | ({"onnx opset": str(_opset(data))} if fmt == "onnx" else {})
    name = file_name or f"model{SUFFIXES[fmt]}"
    card = model_card(loaded, fmt, check, name, record, versions, source_path)
    return ExportResult(fmt, data, card, check, name, versions)


def _example(input_shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.rand(TRACE_BATCH, *input_shape, generator=torch.Generator().manual_seed(RANDOM_SEED))


def _export_onnx(model: PixelModel, input_shape: tuple[int, int, int]) -> bytes:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; say so before torch fails obscurely)
    except ImportError:
        raise ExportError("ONNX export needs the onnxscript package: pip install -r requirements.txt.") from None
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.onnx.export(model, (_example(input_shape),), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes={"pixels": {0: batch}},
                                    verbose=False)
        return program.model_proto.SerializeToString()
    except Exception as err:  # the exporter raises many kinds; the first line is what a user can act on
        raise _failure("ONNX export failed", err) from None


def _opset(data: bytes) -> int | str:
    """The default-domain opset the exported graph needs (what an ONNX runtime must support)."""
    import onnx

    proto = onnx.load_model_from_string(data)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), "?")


def _export_torchscript(model: PixelModel, input_shape: tuple[int, int, int]) -> bytes:
    try:
        traced = torch.jit.trace(model, (_example(input_shape),))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        return buffer.getvalue()
    except Exception as err:
        raise _failure("TorchScript export failed", err) from None


def _onnx_runner(data: bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("checking the ONNX export needs onnxruntime: pip install -r requirements.txt.") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())  # as many threads as torch is allowed
    options.log_severity_level = 3  # errors only: the session's info lines are not for users
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise _failure("onnxruntime cannot load the exported model", err) from None
    return lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def _torchscript_runner(data: bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as err:
        raise _failure("torch.jit.load cannot read the exported model", err) from None

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def _failure(what: str, err: BaseException) -> ExportError:
    """ExportError with `what` and the exporter's first line; its whole traceback goes to a log file that the
    message names (the exporters fail deep inside torch: the first line is for the user, the rest for a report)."""
    log = default_runs_dir() / LOGS_DIR / f"export-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9}.log"
    try:
        atomic_write_bytes(log, "".join(traceback.format_exception(err)).encode())
        where = f" (traceback in {log})"
    except OSError:
        where = " (its traceback could not be written to a log file)"
    return ExportError(f"{what}: {_first_line(err)}{where}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


# ----------------------------------------------------------------------------------------------- checking


def _check(loaded: LoadedCheckpoint, images: CheckImages, run: Callable[[torch.Tensor], torch.Tensor]
           ) -> ExportCheck:
    """Compare the exported model with explorer's own inference on the same images, under the policy the graph
    implements: one view, no TTA, float32."""
    reference = NO_TTA.logits(loaded.model, images.pixels, loaded.mean, loaded.std, device="cpu")
    pixels = images.pixels.float() / 255.0
    try:
        exported = run(pixels).detach().float()
        single = run(pixels[:OTHER_BATCH]).detach().float()
    except Exception as err:
        raise _failure("the exported model fails to run", err) from None
    if exported.shape != reference.shape or single.shape != reference[:OTHER_BATCH].shape:
        raise ExportError(f"the exported model returns logits of shape {list(exported.shape)} for "
                          f"{list(pixels.shape)} pixels, expected {list(reference.shape)}.")
    diff = torch.cat([(exported - reference).abs().flatten(), (single - reference[:OTHER_BATCH]).abs().flatten()])
    max_diff = float(diff.max()) if diff.numel() else 0.0
    agree = _agreeing(reference, exported)
    if agree < len(reference) or not torch.isfinite(diff).all():
        raise ExportError(f"the exported model disagrees with the checkpoint: a different top class on "
                          f"{len(reference) - agree} of {len(reference)} images (max |Δlogit| {max_diff:.3g}); "
                          "nothing was written.")
    return ExportCheck(len(reference), images.description, images.from_data, agree, max_diff,
                       (len(reference), OTHER_BATCH), TRACE_BATCH)


def _agreeing(reference: torch.Tensor, exported: torch.Tensor) -> int:
    """Images whose exported top class is a top class of the reference (ties within TIE count as top)."""
    chosen = reference.gather(1, exported.argmax(dim=1, keepdim=True)).squeeze(1)
    return int((chosen >= reference.max(dim=1).values - TIE).sum())


# ----------------------------------------------------------------------------------------------- writing


def write_export(result: ExportResult, out: str | Path) -> tuple[Path, Path]:
    """The exported model at `out` and its card at `<out>.md`, each written atomically."""
    out = Path(out)
    try:
        model_path = atomic_write_bytes(out, result.data)
        card_path = atomic_write_bytes(out.with_name(card_name(out.name)), result.card.encode())
    except OSError as err:
        raise ExportError(f"cannot write {out}: {err.strerror or err}; pass --out with a folder you can write."
                          ) from None
    return model_path, card_path


def export_versions(fmt: str) -> dict[str, str]:
    """The libraries that made (and checked) the export."""
    from importlib.metadata import PackageNotFoundError, version

    versions = library_versions()
    for name in ("onnx", "onnxscript", "onnxruntime") if fmt == "onnx" else ():
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----------------------------------------------------------------------------------------------- model card


def architecture_line(arch: dict) -> str:
    """One line a person can read: 'conv 32 (5×5 valid, max-pool) → 64 (…) · head flatten · fc 120, 84 · …'."""
    blocks = []
    for block in arch["conv"]:
        details = [f"{block['kernel']}×{block['kernel']} {block['padding']}"]
        details += [f"stride {block['stride']}"] if block["stride"] != 1 else []
        details += [f"{block['pool']}-pool"] if block["pool"] != "none" else []
        details += ["residual"] if block["residual"] else []
        details += _new_block_details(block)
        blocks.append(f"{block['out_channels']} ({', '.join(details)})")
    parts = ["conv " + " → ".join(blocks), f"head {arch['head']}",
             f"fc {', '.join(map(str, arch['fc']))}" if arch["fc"] else "no hidden fc", arch["activation"]]
    parts += ["BatchNorm"] if arch["batchnorm"] else []
    parts += ["pool first"] if arch.get("pool_first") else []  # records from before the toggle lack the key
    if arch["dropout"]:
        parts.append(f"dropout {arch['dropout']:.3g}" + (" (conv too)" if arch["dropout_conv"] else ""))
    return " · ".join(parts)


def _new_block_details(block: dict) -> list[str]:
    """The block-vocabulary fields that differ from a plain block (records from before them lack the keys)."""
    details = [block["block"]] if block.get("block", "plain") != "plain" else []
    groups = block.get("groups", 1)
    details += ["depthwise"] if groups == 0 else [f"{groups} groups"] if groups > 1 else []
    details += [f"dilation {block['dilation']}"] if block.get("dilation", 1) > 1 else []
    if block.get("block", "plain") in ("bottleneck", "inverted", "convnext"):
        details.append(f"expand {block['expand']}")
    details += [f"SE {block['se']:g}"] if block.get("se", 0) else []
    details += [f"{block['norm']} norm"] if block.get("norm", "auto") != "auto" else []
    return details


def model_card(loaded: LoadedCheckpoint, fmt: str, check: ExportCheck, file_name: str, record: dict | None = None,
               versions: dict | None = None, source_path: str | None = None) -> str:
    """The Markdown model card that travels with an exported model."""
    record = record or {}
    meta = loaded.meta
    title = record.get("name") or record.get("preset") or meta.get("run_id") or Path(file_name).stem
    sections = [
        [f"# Model card: {title}", "",
         f"`{file_name}` ({'ONNX' if fmt == 'onnx' else 'TorchScript'}), exported {time.strftime('%Y-%m-%d %H:%M')} "
         f"by Architecture Explorer from `{source_path or loaded.path or 'an uploaded checkpoint'}`"
         + (f" (run `{record['id']}`)." if record.get("id") else ".")],
        _usage(loaded, fmt, file_name),
        _architecture(loaded),
        _classes(loaded.classes),
        _accuracy(meta, record),
        _training(meta),
        _export_check(check),
        _versions(versions or export_versions(fmt), meta.get("versions")),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _usage(loaded: LoadedCheckpoint, fmt: str, file_name: str) -> list[str]:
    c, h, w = loaded.input_shape
    mean = ", ".join(f"{v:.4f}" for v in loaded.mean)
    std = ", ".join(f"{v:.4f}" for v in loaded.std)
    recipe = loaded.meta.get("train") or {}
    tta, shift = bool(recipe.get("tta_flip")), int(recipe.get("tta_translate", 0))
    lines = ["## Input and output", "",
             f"- **Input** `{INPUT_NAME}`: float32, shape `[batch, {c}, {h}, {w}]` (any batch size), "
             f"{'RGB' if c == 3 else 'grayscale' if c == 1 else f'{c}-channel'} pixel values **scaled to [0, 1]** "
             f"(uint8 / 255), channels first, images resized to {h}×{w}.",
             f"- **Normalization is inside the model**: it computes `(pixels - mean) / std` with mean [{mean}] and "
             f"std [{std}] (the training data's). Do not normalize again.",
             f"- **Output** `{OUTPUT_NAME}`: float32 `[batch, {loaded.meta['num_classes']}]` raw logits in the order "
             "of the class list below; softmax gives probabilities."]
    if tta and not shift:
        lines.append("- Trained with flip test-time augmentation; the exported model does not do it (average the "
                     "logits of an image and its mirror yourself to match the recorded accuracy).")
    if shift:
        views = f"{'flips and ' if tta else ''}{shift}-pixel translations"
        lines.append(f"- Evaluated with test-time augmentation ({views}: 1/2 the image + 1/4 each of it shifted "
                     "up-left and down-right, borders reflected); the exported model does not do it (do it yourself "
                     "to match the recorded accuracy).")
    lines += ["", "```python"]
    if fmt == "onnx":
        lines += ["import onnxruntime", f'session = onnxruntime.InferenceSession("{file_name}")',
                  f'logits = session.run(None, {{"{INPUT_NAME}": pixels}})[0]  # pixels: float32 numpy array']
    else:
        lines += ["import torch", f'model = torch.jit.load("{file_name}")',
                  "logits = model(pixels)  # pixels: float32 tensor"]
    return lines + ["```"]


def _architecture(loaded: LoadedCheckpoint) -> list[str]:
    arch = ArchConfig.from_dict(loaded.meta["arch"])
    cost = model_cost(arch, loaded.input_shape, loaded.meta["num_classes"])
    lines = ["## Architecture", "", architecture_line(loaded.meta["arch"]), "",
             f"- Parameters: **{cost.params:,}**",
             f"- MACs: {cost.macs:,} per image (multiply-accumulates of the conv and linear layers)",
             f"- FLOPs: {cost.flops:,} per image (2 × MACs, as torch.utils.flop_counter counts)", "",
             "| layer | kind | output shape | params | MACs |", "|---|---|---|---:|---:|"]
    lines += [f"| {layer.name} | {layer.kind} | {_shape(layer.out_shape)} | {layer.params:,} | {layer.macs:,} |"
              for layer in cost.layers]
    return lines


def _classes(classes: list[str]) -> list[str]:
    return ["## Classes", "", f"{len(classes)} classes, output index: name.", "",
            ", ".join(f"{i}: {name}" for i, name in enumerate(classes))]


def _pct(value) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "not recorded"


def _accuracy(meta: dict, record: dict) -> list[str]:
    facts = checkpoint_summary(meta)
    summary = record.get("summary") or {}
    final = facts["final_test_accuracy"] if facts["final_test_accuracy"] is not None \
        else summary.get("final_test_accuracy")
    best = facts["best_test_accuracy"] if facts["best_test_accuracy"] is not None \
        else summary.get("best_test_accuracy")
    epochs = facts["epochs_done"] if facts["epochs_done"] is not None else summary.get("epochs_done")
    lines = ["## Accuracy", "", f"Test split of `{meta.get('data') or 'unknown data'}`, as recorded in training "
             f"for these very weights ({_weights_kind(meta)}).", "", *_graph_policy(meta), "",
             f"- Final test accuracy: **{_pct(final)}**", f"- Best test accuracy: {_pct(best)}",
             f"- Epochs trained: {epochs if epochs is not None else 'not recorded'}"]
    per_class = (meta.get("metrics") or {}).get("per_class") if isinstance(meta.get("metrics"), dict) else None
    if isinstance(per_class, dict) and per_class:
        lines += ["", "| class | accuracy |", "|---|---:|"]
        lines += [f"| {name} | {_pct(value) if value is not None else '—'} |" for name, value in per_class.items()]
    else:
        lines += ["- Per-class accuracy: not recorded in the checkpoint."]
    return lines


def _weights_kind(meta: dict) -> str:
    partial = meta.get("partial_epoch")
    if isinstance(partial, dict):
        return (f"a partial epoch: stopped after {partial.get('batches')} of {partial.get('steps_per_epoch')} "
                f"batches of epoch {partial.get('epoch')}, evaluated at the stop")
    return "the last whole epoch; a stopped run keeps the last epoch it finished"


def _graph_policy(meta: dict) -> list[str]:
    """What the recorded numbers used against what the graph does (one view, float32, no TTA)."""
    policy = InferencePolicy.of(meta.get("train"))
    if policy == NO_TTA:
        return [f"Measured with {policy.describe()}: exactly what the exported graph does."]
    return [f"Measured with {policy.describe()}. The exported graph does one view per image (no TTA), so its "
            "accuracy differs from the recorded one (usually a little lower): `python -m explorer evaluate "
            "<checkpoint> --no-tta` measures it."]


def _training(meta: dict) -> list[str]:
    train = meta.get("train")
    lines = ["## Training", "", f"- Data source: `{meta.get('data') or 'not recorded'}`"
             + (f" (fingerprint `{meta['data_fingerprint']}`)" if meta.get("data_fingerprint") else "")]
    if isinstance(train, dict):
        lines += _setting_lines(train)
    else:
        lines += ["- Training settings: not recorded in the checkpoint."]
    return lines


def _setting_lines(train: dict) -> list[str]:
    """One line per training setting as the settings schema declares it: its label, its flag, the choice's label;
    a key this version does not declare (a record from another version) is listed as it is."""
    declared = {spec.name: spec for spec in schema.specs(TrainConfig)}
    lines = []
    for key, value in train.items():
        spec = declared.get(key)
        if spec is None:
            lines.append(f"- {key}: {value}")
            continue
        lines.append(f"- {spec.label} (`{spec.flag}`): {_shown(spec, value)}")
    return lines


def _shown(spec: schema.Spec, value: object) -> str:
    """A setting's value as its widget shows it: choice labels, lists joined ("none" when empty), on/off."""
    if isinstance(value, list):
        return ", ".join(spec.label_of(v) for v in value) or "none"
    if spec.choices:
        return spec.label_of(value)
    if spec.kind == "bool":
        return "on" if value else "off"
    return str(value)


def _export_check(check: ExportCheck) -> list[str]:
    where = "" if check.from_data else " (not real images: the check shows the export is faithful, not accurate)"
    return ["## Export check", "",
            f"- Checked on {check.description}{where}.",
            f"- Same top class as the checkpoint in PyTorch: **{check.agree} of {check.images}** images.",
            f"- Largest |logit difference|: **{check.max_abs_diff:.3g}**.",
            f"- Batch sizes run: {', '.join(map(str, check.batch_sizes))} (traced with {check.traced_batch}): the "
            "batch dimension is dynamic."]


def _versions(now: dict, trained: dict | None) -> list[str]:
    lines = ["## Library versions", "", "| library | export | training |", "|---|---|---|"]
    trained = trained if isinstance(trained, dict) else {}
    for name in list(now) + [k for k in trained if k not in now]:
        lines.append(f"| {name} | {now.get(name, '—')} | {trained.get(name, '—')} |")
    lines.append(f"\nExported on {platform.system()} {platform.machine()}.")
    return lines


__all__ = ["FORMATS", "SUFFIXES", "MEDIA_TYPES", "CHECK_IMAGES", "ExportError", "ExportCheck", "ExportResult",
           "CheckImages", "PixelModel", "pixel_model", "check_images", "export_model", "write_export", "model_card",
           "architecture_line", "default_output", "card_name",
           "check_format", "export_versions"]
