"""The Data page's logic (explorer.inspect.data) on tiny image folders, and the page itself through AppTest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from PIL import Image
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.engine.config import TrainConfig
from explorer.engine.data import load_dataset
from explorer.engine.train import _Session
from explorer.inspect import data as inspect_data
from explorer.ui import navigation
from explorer.ui import state as arch_keys
from explorer.ui import train_state as train_keys
from explorer.ui.data_panel import DRAWS

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
# Images per class and split: deliberately unequal, so a count cannot come out right by accident.
TRAIN_COUNTS = {"ant": 5, "bee": 3, "cat": 7}
TEST_COUNTS = {"ant": 2, "bee": 1, "cat": 4}


def write_folder(root: Path, size: tuple[int, int], mode: str) -> Path:
    """root/{train,test}/<class>/<i>.png of `size` (H, W): random pixels, a different level per class."""
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        for k, (name, n) in enumerate(counts.items()):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(40 * k, 40 * k + 120, (*size, channels), dtype=np.uint8)
                Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data-page")
    return {"grey": write_folder(base / "grey28", (28, 28), "L"),
            "wide": write_folder(base / "rgb40x24", (40, 24), "RGB")}


@pytest.fixture(scope="module")
def datasets(folders, tmp_path_factory):
    cache = tmp_path_factory.mktemp("data-dir")
    return {name: load_dataset(f"folder:{path}", cache) for name, path in folders.items()}


@pytest.mark.parametrize(("name", "shape"), [("grey", (1, 28, 28)), ("wide", (3, 40, 24))])
def test_class_counts_are_the_folders_counts(datasets, name, shape):
    dataset = datasets[name]
    assert dataset.input_shape == shape
    counts = inspect_data.class_counts(dataset)
    assert [(c.name, c.train, c.test) for c in counts] == [
        (k, TRAIN_COUNTS[k], TEST_COUNTS[k]) for k in TRAIN_COUNTS]


def test_the_sample_grid_holds_each_class_in_its_row(datasets):
    dataset = datasets["wide"]  # 40 x 24: enlarged 2x to 80 x 48 tiles
    grid = inspect_data.sample_grid(dataset, per_class=4, labels=False)
    tile_h, tile_w = 80, 48
    assert grid.shape == (3 * tile_h + 2 * inspect_data.GAP, 4 * tile_w + 3 * inspect_data.GAP, 4)
    rows = inspect_data.sample_indices(dataset.train_y, 3, 4)
    assert [len(r) for r in rows] == [4, 3, 4]  # bee has only 3 training images
    for r, row in enumerate(rows):
        assert {int(dataset.train_y[i]) for i in row} == {r}
        for c, i in enumerate(row):
            y, x = r * (tile_h + inspect_data.GAP), c * (tile_w + inspect_data.GAP)
            expected = dataset.train_x[i].permute(1, 2, 0).numpy().repeat(2, 0).repeat(2, 1)
            assert np.array_equal(grid[y:y + tile_h, x:x + tile_w, :3], expected)
    y, x = tile_h + inspect_data.GAP, 3 * (tile_w + inspect_data.GAP)
    assert not grid[y:y + tile_h, x:x + tile_w].any()  # bee's empty fourth cell is transparent
    labelled = inspect_data.sample_grid(dataset, per_class=4)
    assert labelled.shape[0] == grid.shape[0] and labelled.shape[1] > grid.shape[1]
    assert np.array_equal(labelled[:, -grid.shape[1]:], grid)


def test_the_grid_can_stop_after_some_classes(datasets):
    full = inspect_data.sample_grid(datasets["wide"], per_class=4)
    two = inspect_data.sample_grid(datasets["wide"], per_class=4, max_classes=2)
    assert two.shape[0] == 2 * 80 + inspect_data.GAP and np.array_equal(two[:, -two.shape[1] + 1:],
                                                                         full[:two.shape[0], -two.shape[1] + 1:])


def test_a_grey_grid_repeats_the_grey_level_over_rgb(datasets):
    grid = inspect_data.sample_grid(datasets["grey"], per_class=2, labels=False)
    assert grid.shape == (3 * 56 + 2 * 2, 2 * 56 + 2, 4)  # 28 x 28 enlarged 2x
    first = datasets["grey"].train_x[inspect_data.sample_indices(datasets["grey"].train_y, 3, 2)[0][0], 0]
    assert np.array_equal(grid[:56, :56, 0], first.numpy().repeat(2, 0).repeat(2, 1))
    assert np.array_equal(grid[..., 0], grid[..., 1]) and np.array_equal(grid[..., 1], grid[..., 2])


def test_large_images_are_shrunk_and_tiny_ones_enlarged():
    assert inspect_data.tile_scale(32, 32) == 2 and inspect_data.tile_scale(8, 8) == 7
    assert inspect_data.tile_scale(100, 60) == 1 and inspect_data.tile_scale(512, 256) == 0.25
    big = torch.zeros(2, 3, 512, 256, dtype=torch.uint8)
    assert inspect_data.tile_grid(big, 2).shape == (128, 2 * 64 + 2, 4)
    small = torch.zeros(5, 1, 28, 28, dtype=torch.uint8)
    assert inspect_data.tile_grid(small, 4, smallest=80).shape == (2 * 84 + 2, 4 * 84 + 3 * 2, 4)  # 3x, 2 rows


def test_the_counts_caption_says_when_every_class_has_as_many_images():
    from explorer.ui.data_panel import counts_caption

    even = [inspect_data.ClassCount(n, 50, 10) for n in ("a", "b")]
    assert counts_caption(even) == "Training images per class: 50 in every class; 100 in all. Test images: 20."
    uneven = [inspect_data.ClassCount(k, TRAIN_COUNTS[k], TEST_COUNTS[k]) for k in TRAIN_COUNTS]
    assert counts_caption(uneven).startswith("Training images per class: from 3 (bee) to 7 (cat); 15 in all.")


def trainer_session(dataset, cfg: TrainConfig) -> _Session:
    arch = ArchConfig(conv=(ConvBlock(4, pool="max"),), head="avgpool")
    return _Session(arch, cfg, dataset)


AUGMENTS = [(("flip", "crop"), 4, {}), (("flip",), 4, {}), (("crop",), 2, {}), ((), 4, {}),
            ((), 4, {"rotate": 20.0}), ((), 4, {"color_jitter": 0.4}), ((), 4, {"sharpen": 2.0}),
            ((), 4, {"cutout": 3}), (("flip",), 2, {"mixup": 0.5}), (("crop",), 2, {"cutmix": 1.0}),
            (("flip", "crop"), 2, {"rotate": 10.0, "color_jitter": 0.2, "sharpen": 1.0, "cutout": 2, "mixup": 1.0,
                                   "cutmix": 1.0})]


@pytest.mark.parametrize("name", ["grey", "wide"])
@pytest.mark.parametrize(("augment", "padding", "more"), AUGMENTS)
def test_the_preview_is_the_trainers_own_augmentation(datasets, name, augment, padding, more):
    dataset = datasets[name]
    cfg = TrainConfig(augment=augment, crop_padding=padding, device="cpu", precision="fp32", seed=3, **more)
    session = trainer_session(dataset, cfg)
    assert inspect_data.trainer_augmentation(cfg) == session.augmentation
    seed = 11
    original, augmented = inspect_data.augmentation_preview(dataset, cfg, seed, n=8)
    idx = inspect_data.preview_indices(dataset.train_y, dataset.num_classes, 8)
    assert torch.equal(original, dataset.train_x[idx])
    # The trainer's batch for the same images, its generator seeded alike, un-normalized back to pixels.
    session.augment_gen = torch.Generator().manual_seed(seed)
    session.mix_rng = np.random.default_rng(seed + 2)
    x, y, _ = session.batch(torch.tensor(idx))
    pixels = (x * session.scale + session.shift).round().clamp(0, 255).to(torch.uint8)
    if set(more) & {"rotate", "color_jitter", "sharpen", "mixup"}:  # float pixels: rounding may differ by 1
        assert (pixels.int() - augmented.int()).abs().max() <= 1
    else:
        assert torch.equal(pixels.contiguous(), augmented)
    assert torch.equal(y, dataset.train_y[idx])
    assert torch.equal(augmented, original) == (not augment and not more)


def test_another_seed_draws_another_augmentation(datasets):
    cfg = TrainConfig(augment=("flip", "crop"), crop_padding=4)
    first = inspect_data.augmentation_preview(datasets["wide"], cfg, 1, n=8)[1]
    again = inspect_data.augmentation_preview(datasets["wide"], cfg, 1, n=8)[1]
    other = inspect_data.augmentation_preview(datasets["wide"], cfg, 2, n=8)[1]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_preview_images_take_the_classes_in_turn(datasets):
    labels = datasets["wide"].train_y
    idx = inspect_data.preview_indices(labels, 3, 7)
    assert [int(labels[i]) for i in idx] == [0, 1, 2, 0, 1, 2, 0]
    assert len(set(idx)) == 7


@pytest.mark.parametrize("mode", ["dataset", "half"])
def test_normalization_stats_are_what_the_trainer_uses(datasets, mode):
    dataset = datasets["wide"]
    cfg = TrainConfig(normalization=mode, device="cpu")
    session = trainer_session(dataset, cfg)
    stats = inspect_data.normalization_stats(dataset, cfg)
    assert [s.channel for s in stats] == ["red", "green", "blue"]
    assert [s.mean for s in stats] == session.mean and [s.std for s in stats] == session.std
    assert [s.data_mean for s in stats] == dataset.mean
    assert [s.channel for s in inspect_data.normalization_stats(datasets["grey"], cfg)] == ["grey"]


# --- the page ------------------------------------------------------------------------------------------------


@pytest.fixture
def data_page(runs_dir, folders, monkeypatch) -> AppTest:
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", str(folders["grey"].parent))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(navigation.page_path("data")).run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def pick_folder(at: AppTest, path: Path) -> None:
    at.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    at.text_input(key=train_keys.FOLDER).input(str(path)).run()
    assert not at.exception and not at.error


def image_urls(at: AppTest) -> dict[str, str]:
    """Caption -> URL of every st.image (a URL names the image's content)."""
    return {img.caption: img.url for element in at.get("image") for img in element.proto.imgs}


def counts_chart(at: AppTest) -> list[dict]:
    """The rows of the 'Images per class' chart (Streamlit sends a spec's data apart, as Arrow bytes)."""
    chart = next(c for c in at.get("vega_lite_chart")
                 if json.loads(c.proto.spec).get("description") == "Images per class")
    return dataframe_util.convert_arrow_bytes_to_pandas_df(chart.proto.data.data).to_dict("records")


def test_the_data_page_shows_counts_samples_stats_and_a_preview(data_page, folders, datasets):
    at = data_page
    pick_folder(at, folders["grey"])
    # The picker on this page sets the network's input, as the Train page's does.
    assert (at.session_state[arch_keys.IN_C], at.session_state[arch_keys.IN_H]) == (1, 28)
    values = counts_chart(at)
    assert {(v["class"], v["split"]): v["images"] for v in values} == (
        {(k, "train"): n for k, n in TRAIN_COUNTS.items()} | {(k, "test"): n for k, n in TEST_COUNTS.items()})
    captions = list(image_urls(at))
    assert any(c.startswith("Up to 8 training images per class") for c in captions)
    assert "Original training images" in captions
    stats = next(df.value for df in at.dataframe if "data mean" in df.value.columns)
    assert list(stats["channel"]) == ["grey"]
    mode = at.session_state[train_keys.key("normalization")]
    assert stats["mean"].iloc[0] == (datasets["grey"].mean[0] if mode == "dataset" else 0.5)
    assert stats["data mean"].iloc[0] == datasets["grey"].mean[0]


def augmented_url(at: AppTest) -> str:
    return next(url for caption, url in image_urls(at).items() if caption.startswith("As the trainer augments"))


def test_new_random_draw_changes_the_augmented_images_only(data_page, folders):
    at = data_page
    pick_folder(at, folders["wide"])
    at.pills(key=train_keys.key("augment")).set_value(["crop"]).run()  # the default recipe flips and crops
    assert not at.exception
    assert at.session_state[train_keys.RECIPE] == "custom"  # an edit here is an edit of the Train page's settings
    seed = at.session_state[train_keys.key("seed")] + 1  # the trainer's augmentation generator starts there
    before, original = augmented_url(at), image_urls(at)["Original training images"]
    assert f"generator seed {seed})" in next(c for c in image_urls(at) if c.startswith("As the trainer"))
    at.button(key="data.new_draw").click().run()
    assert at.session_state[DRAWS] == 1
    assert augmented_url(at) != before
    assert image_urls(at)["Original training images"] == original
    assert f"generator seed {seed + 1})" in next(c for c in image_urls(at) if c.startswith("As the trainer"))


def test_without_augmentation_the_page_says_so(data_page):
    at = data_page  # synthetic data, the default recipe
    at.session_state[train_keys.key("augment")] = []
    at.run()
    assert not at.exception
    assert any("No augmentation is on" in i.value for i in at.info)
    assert counts_chart(at)  # the synthetic set's counts are drawn too


def test_a_folder_that_does_not_load_shows_one_error(data_page, folders):
    at = data_page
    at.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    at.text_input(key=train_keys.FOLDER).input(str(folders["grey"] / "nowhere")).run()
    assert not at.exception
    assert len(at.error) == 1 and "nowhere" in at.error[0].value
