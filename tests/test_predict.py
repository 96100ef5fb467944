"""`python -m explorer predict`: top-k classes per image file, any common format, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from history_helpers import SYNTHETIC_CLASSES, make_run
from PIL import Image

from explorer.cli import main
from explorer.store.checkpoint import load_checkpoint


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse refusing an argument
        return int(stop.code)


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    files = {"png": tmp_path / "exact.png", "jpeg": tmp_path / "photo.jpg", "grey": tmp_path / "grey.png",
             "rgba": tmp_path / "clear.png"}
    Image.fromarray(rgb).save(files["png"])
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(files["jpeg"], quality=90)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(files["grey"])
    rgba = np.dstack([rgb, np.full((32, 32), 0, np.uint8)])  # fully transparent: becomes white
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    return files


def _expected(run: Path, pixels_hwc: np.ndarray) -> torch.Tensor:
    loaded = load_checkpoint(run)
    x = torch.from_numpy(pixels_hwc.copy()).permute(2, 0, 1).float().unsqueeze(0) / 255
    with torch.no_grad():
        return loaded.model((x - 0.5) / 0.25).softmax(dim=1)[0]  # make_run's normalization


def test_predict_json_for_png_jpeg_grey_and_rgba(runs_dir, images, capsys) -> None:
    run = make_run(runs_dir, "r1")
    argv = ["predict", "r1", *(str(images[k]) for k in ("png", "jpeg", "grey", "rgba")), "--top", "3", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == SYNTHETIC_CLASSES and report["top"] == 3 and report["tta_flip"] is False
    assert report["checkpoint"] == str(run / "model.safetensors")
    predictions = report["predictions"]
    assert [p["image"] for p in predictions] == [str(images[k]) for k in ("png", "jpeg", "grey", "rgba")]
    for p in predictions:
        probs = [t["probability"] for t in p["top"]]
        assert len(p["top"]) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(SYNTHETIC_CLASSES[t["index"]] == t["class"] for t in p["top"])
    # The exact-size PNG goes in unchanged: its probabilities are the model's own.
    expected = _expected(run, np.asarray(Image.open(images["png"])))
    top = expected.topk(3)
    assert [t["index"] for t in predictions[0]["top"]] == top.indices.tolist()
    np.testing.assert_allclose([t["probability"] for t in predictions[0]["top"]], top.values.numpy(), atol=1e-5)
    assert predictions[0]["notes"] == []
    # The others say what was done to them.
    assert any("cropped" in n for n in predictions[1]["notes"]) and any("resized" in n for n in predictions[1]["notes"])
    assert any("grey" in n for n in predictions[2]["notes"])
    assert any("white" in n for n in predictions[3]["notes"])
    white = _expected(run, np.full((32, 32, 3), 255, np.uint8))  # transparent pixels are put on white
    assert predictions[3]["top"][0]["index"] == int(white.argmax())


def test_predict_text_output_and_top_larger_than_classes(runs_dir, images, capsys) -> None:
    run = make_run(runs_dir, "r1")
    assert main(["predict", str(run), str(images["png"]), "--top", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(images["png"]) and len(lines) == 1 + len(SYNTHETIC_CLASSES)  # capped at 10 classes
    expected = _expected(run, np.asarray(Image.open(images["png"])))
    best = SYNTHETIC_CLASSES[int(expected.argmax())]
    assert lines[1].split()[0] == best and lines[1].endswith(f"{float(expected.max()):.2%}")


@pytest.mark.parametrize("case, message", [
    ("text", "is not an image"),
    ("missing", "cannot read the image"),
    ("truncated", "damaged or truncated"),
])
def test_predict_bad_image_is_one_line_naming_the_file(runs_dir, images, tmp_path, capsys, case, message) -> None:
    make_run(runs_dir, "r1")
    bad = tmp_path / f"bad-{case}.png"
    if case == "text":
        bad.write_text("not a picture")
    elif case == "truncated":
        bad.write_bytes(images["png"].read_bytes()[:200])
    assert exit_code(["predict", "r1", str(images["png"]), str(bad)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert str(bad) in err and message in err and "\n" not in err
    assert captured.out == ""  # nothing is printed for the good image either


def test_predict_bad_arguments_exit_2(runs_dir, images, capsys) -> None:
    make_run(runs_dir, "r1")
    assert exit_code(["predict", "r1", str(images["png"]), "--top", "0"]) == 2
    assert "--top" in capsys.readouterr().err
    assert exit_code(["predict", "missing-run", str(images["png"])]) == 2
    assert "neither a checkpoint file nor a run id" in capsys.readouterr().err
