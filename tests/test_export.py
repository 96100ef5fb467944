"""Export to ONNX / TorchScript: round trips through onnxruntime and torch.jit, the model card, the CLI and the
Checkpoints page's download button. Every network is tiny; the ONNX exporter still takes a few seconds each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from history_helpers import SYNTHETIC_CLASSES, make_run
from streamlit.testing.v1 import AppTest

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import model_cost
from explorer.arch.model import build_model
from explorer.arch.presets import PRESETS
from explorer.cli import main
from explorer.inspect.export import (
    CheckImages,
    ExportError,
    _check,
    check_images,
    export_model,
    write_export,
)
from explorer.store.checkpoint import load_checkpoint, save_checkpoint

onnxruntime = pytest.importorskip("onnxruntime")

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def _shrunk(name: str, **changes) -> ArchConfig:
    """A preset's shape (residual blocks, global pooling, GELU...) at a few channels so it exports quickly."""
    return ArchConfig.from_dict(PRESETS[name].scaled(0.1).to_dict() | changes)


def _checkpoint(tmp_path: Path, arch: ArchConfig, data: str = "synthetic:400", input_shape=(3, 32, 32),
                name: str = "ckpt") -> Path:
    torch.manual_seed(0)
    model = build_model(arch, input_shape, 10)
    if arch.batchnorm:  # non-trivial running statistics, so a wrong normalization or BN mode would show
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    meta = {"classes": SYNTHETIC_CLASSES, "normalization": {"mean": MEAN[:input_shape[0]], "std": STD[:input_shape[0]]},
            "data": data, "metrics": {"test_accuracy": 0.625, "per_class": {"disk": 0.5, "square": 0.75},
                                      "summary": {"final_test_accuracy": 0.625, "best_test_accuracy": 0.7,
                                                  "epochs_done": 3}}}
    return save_checkpoint(tmp_path / name, model, meta)


def _onnx_logits(data: bytes, pixels: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": pixels})[0]


@pytest.mark.parametrize("preset", ["best", "fast", "modern"])
def test_onnx_round_trip_matches_pytorch_at_any_batch(tmp_path, preset) -> None:
    # best: residual blocks + global max pool + GELU; fast: GELU + max pool head; modern: global avg pool + ReLU.
    arch = _shrunk(preset)
    loaded = load_checkpoint(_checkpoint(tmp_path, arch))
    images = check_images(loaded)
    assert images.from_data and images.pixels.shape == (64, 3, 32, 32) and images.pixels.dtype == torch.uint8
    result = export_model(loaded, "onnx", images, "net.onnx")
    assert result.check.agree == 64 and result.check.max_abs_diff < 1e-4
    assert result.check.batch_sizes == (64, 1)
    # Independently of the export's own check: float pixels in [0, 1] in, the checkpoint's logits out.
    pixels = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = loaded.model((pixels.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1))
                                / torch.tensor(STD).view(1, 3, 1, 1)).numpy()
    for batch in (5, 1, 3):  # none of them is the traced batch (2)
        got = _onnx_logits(result.data, (pixels[:batch].float() / 255).numpy())
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected[:batch], atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_round_trip_and_grayscale_input(tmp_path) -> None:
    arch = ArchConfig(conv=(ConvBlock(4, pool="avg"), ConvBlock(4, residual=True)), fc=(8,), batchnorm=True,
                      activation="silu", head="flatten")
    loaded = load_checkpoint(_checkpoint(tmp_path, arch, data="nowhere-but-here", input_shape=(1, 16, 16)))
    images = check_images(loaded)  # an unknown source: seeded random images, and the reason
    assert not images.from_data and "seeded random" in images.description and "nowhere-but-here" in images.description
    result = export_model(loaded, "torchscript", images, "net.torchscript.pt")
    model_path, card_path = write_export(result, tmp_path / "out" / "net.torchscript.pt")
    module = torch.jit.load(str(model_path))
    pixels = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        expected = loaded.model((pixels - MEAN[0]) / STD[0])
        torch.testing.assert_close(module(pixels), expected, atol=1e-5, rtol=1e-5)
    card = card_path.read_text()
    assert "seeded random images" in card and "1, 16, 16" in card and "grayscale" in card


def test_a_disagreeing_export_is_refused(tmp_path) -> None:
    loaded = load_checkpoint(_checkpoint(tmp_path, ArchConfig(conv=(ConvBlock(4, pool="max"),), head="avgpool")))
    images = CheckImages(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), "8 test images", True)
    with pytest.raises(ExportError, match=r"different top class on \d+ of 8 images"):
        _check(loaded, images, lambda x: -loaded.model((x - 0.5) / 0.25))  # reversed ranking: every top differs


def test_model_card_says_which_test_time_augmentation_it_lacks(tmp_path) -> None:
    loaded = load_checkpoint(_checkpoint(tmp_path, _shrunk("fast")))
    images = CheckImages(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), "4 test images of x", True)
    loaded.meta["train"] = {"tta_flip": True, "tta_translate": 1}
    card = export_model(loaded, "torchscript", images, "m.torchscript.pt").card
    assert "(flips and 1-pixel translations: 1/2 the image + 1/4 each" in card and "its mirror" not in card
    loaded.meta["train"] = {"tta_flip": True}
    card = export_model(loaded, "torchscript", images, "m.torchscript.pt").card
    assert "average the logits of an image and its mirror" in card and "translations" not in card


def test_model_card_holds_cost_classes_accuracy_and_check(tmp_path) -> None:
    arch = _shrunk("best")
    loaded = load_checkpoint(_checkpoint(tmp_path, arch))
    cost = model_cost(arch, (3, 32, 32), 10)
    images = CheckImages(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), "4 test images of x", True)
    card = export_model(loaded, "torchscript", images, "m.torchscript.pt").card
    assert f"Parameters: **{cost.params:,}**" in card
    assert f"FLOPs: {cost.flops:,} per image" in card and f"MACs: {cost.macs:,} per image" in card
    assert ", ".join(f"{i}: {c}" for i, c in enumerate(SYNTHETIC_CLASSES)) in card
    assert "Final test accuracy: **62.50%**" in card and "Best test accuracy: 70.00%" in card
    assert "| square | 75.00% |" in card
    assert "residual" in card and "gelu" in card  # the design line
    assert len(re.findall(r"^\| conv\d+ \| Conv2d \|", card, re.M)) == len(arch.conv)  # the layer table
    assert "scaled to [0, 1]" in card and "Do not normalize again" in card
    assert "0.4000, 0.5000, 0.6000" in card  # the mean the model applies itself
    assert "**4 of 4** images" in card
    assert f"| torch | {torch.__version__} |" in card


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_export_by_run_id_writes_model_and_card(runs_dir, capsys) -> None:
    make_run(runs_dir, "r1", name="tiny one", data="synthetic:400")
    assert main(["export", "r1", "--format", "onnx", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    model, card = Path(report["file"]), Path(report["card"])
    assert model == runs_dir / "r1" / "model.onnx" and card == runs_dir / "r1" / "model.onnx.md"
    assert report["check"]["images"] == 64 and report["check"]["same_top_class"] == 64
    assert report["check"]["from_data"] and "synthetic:400" in report["check"]["source"]
    loaded = load_checkpoint(runs_dir / "r1")
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = loaded.model((pixels - 0.5) / 0.25).numpy()  # make_run's normalization
    np.testing.assert_allclose(_onnx_logits(model.read_bytes(), pixels.numpy()), expected, atol=1e-4)
    text = card.read_text()
    assert text.startswith("# Model card: tiny one") and "run `r1`" in text and "onnx opset" in text


@pytest.mark.parametrize("argv, message", [
    (["export", "no-such-run", "--format", "onnx"], "'no-such-run' is neither a checkpoint file nor a run id"),
    (["export", "r1", "--format", "tflite"], "invalid choice: 'tflite'"),
    (["export", "NOTCKPT", "--format", "onnx"], "not a checkpoint"),
    (["export", "r2", "--format", "onnx"], "run r2 has no checkpoint yet"),
])
def test_cli_export_errors_are_one_line(runs_dir, tmp_path, capsys, argv, message) -> None:
    make_run(runs_dir, "r1")
    make_run(runs_dir, "r2", checkpoint=False)
    not_a_checkpoint = tmp_path / "notes.safetensors"
    not_a_checkpoint.write_text("hello, I am text")
    argv = [str(not_a_checkpoint) if a == "NOTCKPT" else a for a in argv]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    if "not a checkpoint" in message:
        assert str(not_a_checkpoint) in err  # the file is named
    assert not list(runs_dir.glob("*/*.onnx"))  # nothing was written


def exit_code(argv: list[str]) -> int:
    """main's return value, or the code argparse exits with (bad arguments)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


# ------------------------------------------------------------------------------------------------- the page


def _checkpoints_page() -> None:
    from explorer.ui import checkpoints_panel

    checkpoints_panel.render()


def test_checkpoints_page_builds_export_then_offers_downloads(runs_dir) -> None:
    make_run(runs_dir, "r1", name="page run", data="synthetic:400")
    st.cache_resource.clear()
    at = AppTest.from_function(_checkpoints_page, default_timeout=120).run()
    assert not at.exception, at.exception
    assert not at.get("download_button")
    at.button(key="ckpt.export").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    downloads = {b.proto.label: b for b in at.get("download_button")}
    assert set(downloads) == {"Download model card"} | {k for k in downloads if k.startswith("Download ONNX (")}
    assert len(downloads) == 2
    assert any("same top class on 64/64" in c.value for c in at.caption)
    # A rerun keeps the downloads (from the cache) and no longer offers the build button.
    at.run()
    assert len(at.get("download_button")) == 2 and not [b for b in at.button if b.key == "ckpt.export"]
    st.cache_resource.clear()
