"""Shared fixtures: a private runs directory, tiny synthetic data, tiny generated image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # The CPU is shared: tests never need more than one intra-op thread.
    torch.set_num_threads(1)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    """A fresh runs directory; EXPLORER_RUNS_DIR points at it so code using the default finds it."""
    path = tmp_path / "runs"
    path.mkdir()
    monkeypatch.setenv("EXPLORER_RUNS_DIR", str(path))
    # Run processes started by the tests (the runner, the app) stay on one thread too: the CPU is shared.
    monkeypatch.setenv("EXPLORER_THREADS", "1")
    return path


@pytest.fixture(scope="session")
def tiny_dataset():
    """600 train / 150 test synthetic 32x32 RGB images, 10 classes (memoized by the loader)."""
    from explorer.engine.data import load_dataset

    return load_dataset("synthetic:600")


def make_image_folder(root: Path, classes=("a", "b", "c"), per_class: int = 6, size=(28, 28), mode: str = "RGB",
                      splits=("train", "test"), suffix: str = ".png", seed: int = 0) -> Path:
    """root/<split>/<class>/<i><suffix>: class k is a flat grey level k/len(classes) plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    for split in splits:
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                level = 255 * (k + 0.5) / len(classes)
                pixels = np.clip(level + rng.normal(0, 10, (size[0], size[1], channels)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(folder / f"{i}{suffix}")
    return root


@pytest.fixture
def image_folder_factory(tmp_path):
    """make(name, **options) -> a generated image folder under tmp_path (see make_image_folder)."""

    def make(name: str = "images", **options) -> Path:
        return make_image_folder(tmp_path / name, **options)

    return make
