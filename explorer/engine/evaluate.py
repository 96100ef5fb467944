"""Evaluation: loss, accuracy, per-class accuracy, confusion matrix, the most confused pairs and the
misclassified examples. Used by training (every epoch), the Checkpoints panel and `python -m explorer evaluate`.

Inputs are the uint8 images (N x C x H x W) the data module keeps in memory; they are scaled to [0, 1] and
normalized with the mean/std the model was trained with, one batch at a time on the model's device.

`InferencePolicy` is the one inference rule: the test-time augmentation a run's recipe names (flip, translate),
float32 (autocast off, on the GPU too) on the device the model is on. Training's evaluation, `evaluate`,
`predict`, the Checkpoints and Inside-a-net pages and the search's trials all take it from the run's settings
(`InferencePolicy.of`), so one checkpoint and one image give the same probabilities on every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from explorer.engine.device import resolve_device
from explorer.errors import DataError


def default_device() -> torch.device:
    """CUDA when there is one, else the CPU (explorer.engine.device decides)."""
    return resolve_device("auto")


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@dataclass(frozen=True)
class InferencePolicy:
    """How images become logits on every path: which test-time augmentation (flip: the mean with the mirror;
    translate N: 1/2 the image + 1/4 each shifted N pixels up-left and down-right), always float32, on the
    model's device. `InferencePolicy.of(train settings)` is what a run's recipe implies."""

    tta_flip: bool = False
    tta_translate: int = 0  # pixels; 0 = none
    precision: ClassVar[str] = "float32"  # inference never runs under autocast, so every path agrees

    @classmethod
    def of(cls, train: Mapping[str, Any] | Any | None) -> InferencePolicy:
        """The policy of a run's training settings (a TrainConfig or its dict; None: no TTA)."""
        if train is None:
            return cls()
        get = train.get if isinstance(train, Mapping) else lambda name, default: getattr(train, name, default)
        return cls(bool(get("tta_flip", False)), int(get("tta_translate", 0) or 0))

    def with_tta(self, on: bool | None) -> InferencePolicy:
        """None: this policy; False: no TTA at all (what an exported graph does); True: flip on as well."""
        if on is None:
            return self
        return replace(self, tta_flip=True) if on else InferencePolicy()

    @property
    def views(self) -> int:
        """Forward passes per image."""
        return (2 if self.tta_flip else 1) * (3 if self.tta_translate else 1)

    def describe(self, device: torch.device | str | None = None) -> str:
        """One short line for a caption: 'flip + ±1 px translate TTA (6 views), float32, on cpu'."""
        parts = ["flip"] * self.tta_flip + [f"±{self.tta_translate} px translate"] * bool(self.tta_translate)
        tta = f"{' + '.join(parts)} TTA ({self.views} views)" if parts else "no TTA (one view)"
        where = f", on {torch.device(device).type}" if device is not None else ""
        return f"{tta}, {self.precision}{where}"

    def logits(self, model: nn.Module, x_uint8: torch.Tensor, mean: list[float], std: list[float],
               batch_size: int = 1000, device: torch.device | str | None = None) -> torch.Tensor:
        """Logits (N x classes, float32 on the CPU) under this policy."""
        return predict_logits(model, x_uint8, mean, std, batch_size, device, self.tta_flip, self.tta_translate)

    def probabilities(self, model: nn.Module, x_uint8: torch.Tensor, mean: list[float], std: list[float],
                      batch_size: int = 1000, device: torch.device | str | None = None) -> torch.Tensor:
        return self.logits(model, x_uint8, mean, std, batch_size, device).softmax(dim=1)


NO_TTA = InferencePolicy()  # one forward pass per image: what an exported graph does


def predict_logits(model: nn.Module, x_uint8: torch.Tensor, mean: list[float], std: list[float],
                   batch_size: int = 1000, device: torch.device | str | None = None,
                   tta_flip: bool = False, tta_translate: int = 0) -> torch.Tensor:
    """Logits (N x classes, float32 on the CPU) for uint8 images; eval mode, restored afterwards; float32 with
    autocast off whatever the caller set (the InferencePolicy's precision).

    Test-time augmentation: with `tta_flip` the logits are the mean of the image's and its horizontal mirror's;
    with `tta_translate` N > 0 they are 1/2 the image's + 1/4 each of the image shifted N pixels up-left and
    down-right (reflected borders), each view flip-averaged when `tta_flip`.
    """
    device = torch.device(device) if device is not None else model_device(model)
    scale = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
    shift = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode(), torch.autocast(device.type, enabled=False):
            for chunk in x_uint8.split(batch_size):
                # (x/255 - mean) / std computed as (x - 255 mean) / (255 std): one subtraction and one division.
                batch = (chunk.to(device, non_blocking=True).float() - shift) / scale
                logits = _view_logits(model, batch, tta_flip)
                if tta_translate:
                    shifted = (_translate(batch, tta_translate, toward) for toward in (1, -1))
                    logits = logits / 2 + sum(_view_logits(model, view, tta_flip) for view in shifted) / 4
                outputs.append(logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def _view_logits(model: nn.Module, batch: torch.Tensor, tta_flip: bool) -> torch.Tensor:
    logits = model(batch)
    return (logits + model(batch.flip(3))) / 2 if tta_flip else logits


def _translate(batch: torch.Tensor, pixels: int, toward: int) -> torch.Tensor:
    """The batch shifted `pixels` up-left (toward 1) or down-right (toward -1), borders reflected."""
    h, w = batch.shape[2:]
    padded = nn.functional.pad(batch, (pixels,) * 4, mode="reflect")
    start = pixels + toward * pixels
    return padded[:, :, start:start + h, start:start + w]


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts: row = true class, column = predicted class."""
    index = y_true.to(torch.int64) * num_classes + y_pred.to(torch.int64)
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Fraction of each true class predicted right (None for a class with no test images)."""
    totals = confusion.sum(dim=1)
    return [float(confusion[i, i] / totals[i]) if totals[i] > 0 else None for i in range(confusion.shape[0])]


def evaluate_model(model: nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, mean: list[float], std: list[float],
                   batch_size: int = 1000, device: torch.device | str | None = None, tta_flip: bool = False,
                   classes: list[str] | None = None, tta_translate: int = 0,
                   policy: InferencePolicy | None = None) -> dict:
    """Loss and accuracy of `model` on uint8 images with labels `y`, under `policy` (when given, it replaces
    `tta_flip` and `tta_translate`).

    Returns {"loss", "accuracy", "correct", "count", "per_class" {class name (or index) -> accuracy},
    "confusion" (list of lists, row = true), "predictions" (int64 tensor), "confidences" (float tensor:
    softmax probability of the predicted class), "logits"}.
    """
    if len(x_uint8) == 0:
        raise DataError("there are no test images to evaluate on; pick a dataset with a test split.")
    if len(x_uint8) != len(y):
        raise DataError(f"{len(x_uint8)} images but {len(y)} labels; the dataset is inconsistent.")
    policy = policy or InferencePolicy(tta_flip, tta_translate)
    logits = policy.logits(model, x_uint8, mean, std, batch_size, device)
    labels = y.to("cpu", torch.int64)
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"labels run from {int(labels.min())} to {int(labels.max())} but the model has "
                        f"{num_classes} outputs; the dataset's classes do not match the model.")
    probabilities = logits.softmax(dim=1)
    confidences, predictions = probabilities.max(dim=1)
    confusion = confusion_matrix(labels, predictions, num_classes)
    correct = int((predictions == labels).sum())
    names = list(classes) if classes is not None else list(range(num_classes))
    return {
        "loss": float(nn.functional.cross_entropy(logits, labels)),
        "accuracy": correct / len(labels),
        "correct": correct,
        "count": len(labels),
        "per_class": dict(zip(names, per_class_accuracy(confusion))),
        "confusion": confusion.tolist(),
        "predictions": predictions,
        "confidences": confidences,
        "logits": logits,
    }


# ----------------------------------------------------------------------------------------------- checkpoints


@dataclass
class Evaluation:
    """What the Checkpoints panel and the evaluate CLI show about one checkpoint on one dataset."""

    data: str
    classes: list[str]
    accuracy: float
    loss: float
    correct: int
    count: int
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    # (true class, predicted class, count, fraction of the true class), most frequent first.
    most_confused: list[dict] = field(default_factory=list)
    # {"index" (into the test split), "true", "predicted", "confidence"}, most confident mistakes first.
    misclassified: list[dict] = field(default_factory=list)
    data_fingerprint: str | None = None
    # True when the data is the very data the checkpoint was trained and tested on.
    same_data_as_training: bool | None = None
    tta_flip: bool = False
    tta_translate: int = 0  # pixels
    notes: list[str] = field(default_factory=list)
    policy: str = ""  # the inference policy that produced these numbers, in words (InferencePolicy.describe)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def most_confused_pairs(confusion: list[list[int]], classes: list[str], top: int = 10) -> list[dict]:
    """The off-diagonal cells with the most images: which class is taken for which."""
    totals = [sum(row) for row in confusion]
    pairs = [{"true": classes[i], "predicted": classes[j], "count": confusion[i][j],
              "fraction": confusion[i][j] / totals[i]}
             for i in range(len(classes)) for j in range(len(classes)) if i != j and confusion[i][j] > 0]
    return sorted(pairs, key=lambda p: (-p["count"], p["true"], p["predicted"]))[:top]


def misclassified_examples(result: dict, labels: torch.Tensor, classes: list[str], limit: int = 64) -> list[dict]:
    """The test images the model got wrong, most confident first (confident mistakes are the telling ones)."""
    wrong = (result["predictions"] != labels).nonzero().flatten()
    order = result["confidences"][wrong].argsort(descending=True, stable=True)[:limit]
    return [{"index": int(i), "true": classes[int(labels[i])], "predicted": classes[int(result["predictions"][i])],
             "confidence": round(float(result["confidences"][i]), 4)} for i in wrong[order]]


def label_mapping(model_classes: list[str], data_classes: list[str], data_name: str) -> torch.Tensor | None:
    """Index map data label -> model label when both have the same class names (None when already equal)."""
    if list(model_classes) == list(data_classes):
        return None
    missing = [c for c in model_classes if c not in data_classes]
    extra = [c for c in data_classes if c not in model_classes]
    if missing or extra:
        details = "; ".join(filter(None, [
            f"the dataset lacks {', '.join(missing[:6])}" if missing else "",
            f"the checkpoint does not know {', '.join(extra[:6])}" if extra else ""]))
        raise DataError(f"classes do not match: the checkpoint was trained on {len(model_classes)} classes "
                        f"and {data_name} has {len(data_classes)} ({details}). Evaluate on data with the same classes.")
    return torch.tensor([model_classes.index(c) for c in data_classes], dtype=torch.int64)


def check_input_shape(model_shape: tuple[int, int, int], data_shape: tuple[int, int, int], data_name: str) -> None:
    if tuple(model_shape) != tuple(data_shape):
        want, got = "x".join(map(str, model_shape)), "x".join(map(str, data_shape))
        raise DataError(f"input shape does not match: the checkpoint expects {want} images (C x H x W) and "
                        f"{data_name} has {got}. Evaluate on data with {want} images.")


def evaluate_checkpoint(loaded: Any, dataset: Any, batch_size: int = 1000, device: torch.device | str | None = None,
                        tta_flip: bool | None = None, misclassified_limit: int = 64) -> Evaluation:
    """Evaluate a LoadedCheckpoint on a Dataset's test split, with the checkpoint's own normalization.

    DataError when the dataset's classes or image shape differ from the checkpoint's (classes in another
    order are matched by name). The checkpoint's inference policy (its recipe's TTA) unless `tta_flip` says
    otherwise (InferencePolicy.with_tta: False = no TTA at all, True = flip on as well).
    """
    meta = loaded.meta
    classes = list(meta["classes"])
    check_input_shape(tuple(meta["input_shape"]), dataset.input_shape, dataset.name)
    mapping = label_mapping(classes, list(dataset.classes), dataset.name)
    labels = dataset.test_y.to("cpu", torch.int64)
    notes = []
    if mapping is not None:
        labels = mapping[labels]
        notes.append("the dataset lists the classes in another order; they were matched by name.")
    policy = InferencePolicy.of(meta.get("train")).with_tta(tta_flip)
    device = resolve_device(device)
    model = loaded.model.to(device)
    norm = meta["normalization"]
    result = evaluate_model(model, dataset.test_x, labels, norm["mean"], norm["std"], batch_size, device,
                            classes=classes, policy=policy)
    fingerprint = getattr(dataset, "fingerprint", None)
    return Evaluation(
        data=dataset.name, classes=classes, accuracy=result["accuracy"], loss=result["loss"],
        correct=result["correct"], count=result["count"], per_class=result["per_class"],
        confusion=result["confusion"], most_confused=most_confused_pairs(result["confusion"], classes),
        misclassified=misclassified_examples(result, labels, classes, misclassified_limit),
        data_fingerprint=fingerprint,
        same_data_as_training=(fingerprint == meta.get("data_fingerprint")) if meta.get("data_fingerprint") else None,
        tta_flip=policy.tta_flip, tta_translate=policy.tta_translate, notes=notes, policy=policy.describe(device))


__all__ = ["InferencePolicy", "NO_TTA", "evaluate_model", "evaluate_checkpoint", "Evaluation", "predict_logits",
           "confusion_matrix", "per_class_accuracy", "most_confused_pairs", "misclassified_examples",
           "default_device", "model_device"]
