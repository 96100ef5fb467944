"""Evaluation: exact confusion counts, normalization, TTA, class/shape checks, checkpoint evaluation, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.model import build_model
from explorer.cli import main
from explorer.engine.evaluate import evaluate_checkpoint, evaluate_model, most_confused_pairs, predict_logits
from explorer.errors import DataError
from explorer.store.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).parents[1]


class FirstPixelOracle(nn.Module):
    """Predicts the class written in each image's first pixel (with mean 0, std 1/255 the input is the raw byte)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = x[:, 0, 0, 0].round().long()
        return nn.functional.one_hot(chosen, self.num_classes).float() * 4.0 + self.dummy


def images_predicting(predictions: list[int]) -> torch.Tensor:
    x = torch.zeros(len(predictions), 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor(predictions, dtype=torch.uint8)
    return x


RAW = {"mean": [0.0], "std": [1 / 255]}


def test_confusion_accuracy_and_per_class_are_exact() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    preds = [0, 1, 1, 1, 1, 2, 0, 2, 2, 0]
    result = evaluate_model(FirstPixelOracle(3), images_predicting(preds), labels, **RAW, batch_size=3,
                            classes=["a", "b", "c"])
    assert result["confusion"] == [[2, 2, 0], [0, 2, 0], [1, 0, 3]]
    assert result["accuracy"] == 0.7 and result["correct"] == 7 and result["count"] == 10
    assert result["per_class"] == {"a": 0.5, "b": 1.0, "c": 0.75}
    assert result["predictions"].tolist() == preds
    # Each logit row is 4 for the chosen class and 0 elsewhere: known loss and confidence.
    p = torch.tensor([4.0, 0, 0]).softmax(0)
    assert result["confidences"][0].item() == pytest.approx(float(p[0]))
    assert result["loss"] == pytest.approx(0.7 * -float(p[0].log()) + 0.3 * -float(p[1].log()), rel=1e-6)


def test_per_class_keys_are_indices_without_names_and_empty_classes_are_none() -> None:
    result = evaluate_model(FirstPixelOracle(3), images_predicting([0, 2]), torch.tensor([0, 0]), **RAW)
    assert result["per_class"] == {0: 0.5, 1: None, 2: None}


def test_normalization_matches_a_hand_computed_forward_pass() -> None:
    torch.manual_seed(0)
    model = build_model(ArchConfig(conv=(ConvBlock(4, pool="max"),), fc=(6,), batchnorm=True), (3, 8, 8), 5)
    model.train()
    model(torch.randn(8, 3, 8, 8))  # move BN running stats off their defaults
    x = torch.randint(0, 256, (11, 3, 8, 8), dtype=torch.uint8)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    model.eval()
    expected = model((x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    model.train()
    logits = predict_logits(model, x, mean, std, batch_size=4)
    assert model.training  # mode restored
    torch.testing.assert_close(logits, expected.detach(), rtol=1e-5, atol=1e-5)
    flipped = predict_logits(model, x, mean, std, tta_flip=True)
    mirror = predict_logits(model, x.flip(3), mean, std)
    torch.testing.assert_close(flipped, (logits + mirror) / 2, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(flipped, logits)


def test_refuses_empty_and_out_of_range_labels() -> None:
    with pytest.raises(DataError, match="no test images"):
        evaluate_model(FirstPixelOracle(3), images_predicting([]), torch.tensor([], dtype=torch.int64), **RAW)
    with pytest.raises(DataError, match="3 outputs"):
        evaluate_model(FirstPixelOracle(3), images_predicting([0]), torch.tensor([5]), **RAW)


def test_most_confused_pairs_are_sorted_by_count() -> None:
    pairs = most_confused_pairs([[5, 1, 3], [0, 4, 0], [2, 0, 6]], ["a", "b", "c"])
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("a", "c", 3), ("c", "a", 2), ("a", "b", 1)]
    assert pairs[0]["fraction"] == pytest.approx(3 / 9)


# ------------------------------------------------------------------------------------------ checkpoints


@dataclass
class TinyData:
    name: str
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    fingerprint: str = "fp"
    train_x: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.test_x.shape[1:])


CLASSES = ["cat", "dog", "frog"]
ARCH = ArchConfig(conv=(ConvBlock(4, pool="max"),), fc=(6,))


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    model = build_model(ARCH, (3, 8, 8), 3)
    meta = {"classes": CLASSES, "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}, "data_fingerprint": "fp",
            "data": "synthetic"}
    return save_checkpoint(tmp_path / "run", model, meta)


def tiny_data(classes: list[str] = CLASSES, shape: tuple = (3, 8, 8), n: int = 60) -> TinyData:
    gen = torch.Generator().manual_seed(0)
    return TinyData("tiny", torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen),
                    torch.arange(n) % len(classes), list(classes))


def test_evaluate_checkpoint_reports_everything(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    data = tiny_data()
    evaluation = evaluate_checkpoint(loaded, data, batch_size=16, device="cpu", misclassified_limit=5)
    direct = evaluate_model(loaded.model, data.test_x, data.test_y, [0.5] * 3, [0.25] * 3)
    assert evaluation.accuracy == direct["accuracy"]
    assert evaluation.confusion == direct["confusion"]
    assert sum(map(sum, evaluation.confusion)) == 60
    assert list(evaluation.per_class) == CLASSES and evaluation.classes == CLASSES
    assert evaluation.same_data_as_training is True
    wrong = 60 - evaluation.correct
    assert len(evaluation.misclassified) == min(5, wrong)
    confidences = [m["confidence"] for m in evaluation.misclassified]
    assert confidences == sorted(confidences, reverse=True)
    for item in evaluation.misclassified:
        assert item["true"] == CLASSES[int(data.test_y[item["index"]])] != item["predicted"]
    json.dumps(evaluation.to_dict())  # JSON-ready


def test_classes_in_another_order_are_matched_by_name(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    data = tiny_data()
    reordered_names = ["frog", "cat", "dog"]
    # Same images, labels expressed in the new order: frog=0, cat=1, dog=2.
    relabel = torch.tensor([1, 2, 0])
    reordered = TinyData("tiny", data.test_x, relabel[data.test_y], reordered_names)
    a, b = evaluate_checkpoint(loaded, data, device="cpu"), evaluate_checkpoint(loaded, reordered, device="cpu")
    assert a.accuracy == b.accuracy and a.confusion == b.confusion and a.per_class == b.per_class
    assert "matched by name" in b.notes[0]


def test_refuses_data_with_other_classes_or_shape(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    with pytest.raises(DataError, match="classes do not match.*lacks frog.*does not know bird"):
        evaluate_checkpoint(loaded, tiny_data(["cat", "dog", "bird"]))
    with pytest.raises(DataError, match="3 classes and tiny has 2"):
        evaluate_checkpoint(loaded, tiny_data(["cat", "dog"]))
    with pytest.raises(DataError, match="expects 3x8x8 images .* tiny has 1x8x8"):
        evaluate_checkpoint(loaded, tiny_data(shape=(1, 8, 8)))


# ------------------------------------------------------------------------------------------ CLI


def synthetic_checkpoint(tmp_path: Path) -> tuple[Path, object]:
    from explorer.engine.data import load_dataset

    data = load_dataset("synthetic:40")
    torch.manual_seed(0)
    model = build_model(ArchConfig(conv=(ConvBlock(4, pool="max"), ConvBlock(4, pool="max")), head="avgpool"),
                        data.input_shape, data.num_classes)
    meta = {"classes": data.classes, "normalization": {"mean": data.mean, "std": data.std}, "data": data.name,
            "data_fingerprint": data.fingerprint}
    return save_checkpoint(tmp_path / "synthetic-run", model, meta), data


def test_cli_evaluate_json(tmp_path: Path, capsys) -> None:
    path, data = synthetic_checkpoint(tmp_path)
    assert main(["evaluate", str(path.parent), "--json", "--device", "cpu"]) == 0  # data from the metadata
    out = json.loads(capsys.readouterr().out)
    expected = evaluate_model(load_checkpoint(path).model, data.test_x, data.test_y, data.mean, data.std)
    assert out["accuracy"] == expected["accuracy"]
    assert out["classes"] == data.classes
    assert out["per_class"] == dict(zip(data.classes, expected["per_class"].values()))
    assert out["confusion"] == expected["confusion"] and len(out["confusion"]) == 10
    assert out["same_data_as_training"] is True
    assert main(["evaluate", str(path), "--data", "synthetic:40", "--device", "cpu"]) == 0
    assert "synthetic:40: accuracy" in capsys.readouterr().out


def test_cli_evaluate_refuses_a_bad_checkpoint_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04garbage")
    result = subprocess.run([sys.executable, "-m", "explorer", "evaluate", str(bad), "--data", "synthetic:40"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pickle" in lines[0] and "Traceback" not in result.stderr


def test_cli_evaluate_mismatched_data_exits_2(tmp_path: Path, capsys, image_folder_factory) -> None:
    path, _ = synthetic_checkpoint(tmp_path)
    for size, why in (((32, 32), "classes do not match"), ((28, 28), "input shape does not match")):
        folder = image_folder_factory(f"three-classes-{size[0]}", size=size)
        assert main(["evaluate", str(path), "--data", f"folder:{folder}", "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1


def test_evaluating_a_run_agrees_exactly_with_the_accuracy_it_recorded(runs_dir: Path, capsys) -> None:
    from history_helpers import make_run

    folder = make_run(runs_dir, "fitted", accuracies=(0.1, 0.0), data="synthetic:200", fit_steps=30)
    recorded = json.loads((folder / "run.json").read_text())["summary"]["final_test_accuracy"]
    assert main(["evaluate", str(folder), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == recorded > 0.15  # trained: better than chance, and the very same number
    assert out["count"] == 50 and out["same_data_as_training"] is True


def test_confusion_heatmap_and_per_class_bars() -> None:
    from explorer.ui.eval_charts import confusion_heatmap, per_class_accuracy_bars

    fig = confusion_heatmap([[3, 1], [0, 4]], ["a", "b"])
    heat = fig.data[0]
    assert heat.type == "heatmap" and list(heat.x) == ["a", "b"] and [list(r) for r in heat.text] == [[3, 1], [0, 4]]
    assert [list(r) for r in heat.z] == [[75.0, 25.0], [0.0, 100.0]]  # share of the true class (rows)
    counts = confusion_heatmap([[3, 1], [0, 4]], ["a", "b"], normalize=False).data[0]
    assert [list(r) for r in counts.z] == [[3, 1], [0, 4]]
    bars = per_class_accuracy_bars({"a": 0.75, "b": None, "c": 1.0}, overall=0.8)
    assert list(bars.data[0].x) == ["a", "c"] and list(bars.data[0].y) == [75.0, 100.0]
    assert bars.layout.shapes[0].y0 == 80.0


# ------------------------------------------------------------------------------------------ with the training engine


def test_a_run_trained_by_a_run_process_evaluates_to_its_recorded_accuracy(runs_dir: Path, capsys,
                                                                            monkeypatch) -> None:
    from explorer.engine.config import TrainConfig
    from explorer.engine.data import load_dataset
    from explorer.store.checkpoint import checkpoint_summary
    from explorer.store.runner import Runner, RunSpec
    from explorer.store.runs import read_events

    monkeypatch.setenv("EXPLORER_THREADS", "1")  # the run process evaluates with as many threads as this one
    arch = ArchConfig(conv=(ConvBlock(8, pool="max"), ConvBlock(16, pool="max")), batchnorm=True, head="maxpool")
    train = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=3e-3, device="cpu", log_every=5)
    runner = Runner(runs_dir)
    run_id = runner.start(RunSpec(arch, train, "synthetic:200", name="tiny"))
    record = runner.wait(run_id, timeout=300)
    assert record["status"] == "finished", record["error"]
    recorded = record["summary"]["final_test_accuracy"]
    assert main(["evaluate", str(runs_dir / run_id), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == recorded  # same data, same weights: the very same number
    last_epoch = read_events(run_id, runs_dir, types={"epoch"})[-1]
    assert out["per_class"] == last_epoch.per_class
    assert out["same_data_as_training"] is True
    loaded = load_checkpoint(runs_dir / run_id)
    assert evaluate_checkpoint(loaded, load_dataset("synthetic:200"), device="cpu").accuracy == recorded
    facts = checkpoint_summary(loaded.meta)
    assert facts["final_test_accuracy"] == recorded and facts["epochs_done"] == 2
    assert facts["best_test_accuracy"] == record["summary"]["best_test_accuracy"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_exit_2_in_evaluate_and_train(capsys, tmp_path) -> None:
    path, _ = synthetic_checkpoint(tmp_path)
    assert main(["evaluate", str(path), "--data", "synthetic:40", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' was asked for but no CUDA GPU") and len(err.splitlines()) == 1
    assert main(["train", "--preset", "tutorial", "--data", "synthetic:40", "--device", "cuda",
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' was asked for but no CUDA GPU") and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made
