"""The Data page: images per class, sample images, the trainer's normalization and its augmentation, for the
dataset picked on the Train page (the same picker and settings: both pages share their session-state keys).

The pictures are drawn by explorer.inspect.data (pure); the sample grid is cached per dataset, the
augmentation preview is 16 images and recomputed on each rerun (a millisecond).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer.engine.config import TrainConfig
from explorer.engine.dataset import Dataset
from explorer.errors import ConfigError
from explorer.inspect import data as inspect_data
from explorer.inspect.data import ClassCount
from explorer.ui import resources, source_picker, widgets
from explorer.ui import state as arch_keys
from explorer.ui import train_state as keys
from explorer.ui.charts import TEST_COLOR, TRAIN_COLOR
from explorer.ui.state import Selection

DRAWS = "data.draws"  # "New random draw" presses: the preview's generator seed moves on by one per press
PER_CLASS = 8
GRID_CLASSES = 20  # rows of the sample grid: a 100-class set would make a picture several screens tall
PREVIEW_IMAGES = 16
PREVIEW_COLUMNS = 4
PREVIEW_TILE = 80  # the preview's images are enlarged further than the sample grid's: details of a crop matter
COUNTS_HEIGHT = 240
STATS_COLUMNS = {
    "data mean": st.column_config.NumberColumn("data mean", format="%.4f", help="Of the training images, in [0, 1]."),
    "data std": st.column_config.NumberColumn("data std", format="%.4f"),
    "mean": st.column_config.NumberColumn("trainer subtracts", format="%.4f"),
    "std": st.column_config.NumberColumn("trainer divides by", format="%.4f"),
}


def counts_spec(counts: list[ClassCount]) -> dict:
    """Grouped bars: train and test images of each class, in class order. No title or axis titles: Streamlit
    gives the whole chart its height, so every line of text is taken from the bars (the page heads it)."""
    rows = [{"class": c.name, "split": split, "images": n}
            for c in counts for split, n in (("train", c.train), ("test", c.test))]
    return {
        "description": "Images per class",
        "data": {"values": rows},
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "class", "type": "nominal", "sort": None, "title": None,
                  "axis": {"labelAngle": 0 if len(counts) <= 12 else -45}},
            "xOffset": {"field": "split", "sort": ["train", "test"]},
            "y": {"field": "images", "type": "quantitative", "title": None, "axis": {"format": ",d", "tickMinStep": 1}},
            "color": {"field": "split", "type": "nominal", "title": None,
                      "scale": {"domain": ["train", "test"], "range": [TRAIN_COLOR, TEST_COLOR]},
                      "legend": {"orient": "top", "direction": "horizontal"}},
            "tooltip": [{"field": "class", "type": "nominal"}, {"field": "split", "type": "nominal"},
                        {"field": "images", "type": "quantitative", "format": ","}],
        },
    }


@st.cache_data(max_entries=8, show_spinner=False)
def cached_grid(source: str, fingerprint: str, per_class: int) -> np.ndarray:
    """The sample grid of a dataset (keyed by its content's fingerprint: a changed folder is drawn anew)."""
    return inspect_data.sample_grid(resources.cached_dataset(source), per_class, max_classes=GRID_CLASSES)


def _on_setting_edit() -> None:
    keys.mark_custom(st.session_state)  # the same settings as the Train page's: an edit leaves the recipe


def _on_draw() -> None:
    st.session_state[DRAWS] = st.session_state.get(DRAWS, 0) + 1


def _on_use_shape(shape: tuple[int, int, int], classes: int) -> None:
    arch_keys.set_input(st.session_state, shape, classes)


def _summary(dataset: Dataset, selection: Selection) -> None:
    """The input-shape mismatch, if any (what the dataset holds is shown under the picker)."""
    if (selection.input_shape, selection.num_classes) != (dataset.input_shape, dataset.num_classes):
        shape = "×".join(map(str, selection.input_shape))
        st.info(f"The sidebar's network is set for {shape} inputs and {selection.num_classes} classes, not this "
                "dataset's: training on it needs the dataset's shape.")
        st.button("Use this dataset's input shape and classes", key="data.use_shape", on_click=_on_use_shape,
                  args=(dataset.input_shape, dataset.num_classes))


def _counts(dataset: Dataset) -> None:
    st.subheader("Images per class")
    counts = inspect_data.class_counts(dataset)
    st.vega_lite_chart(counts_spec(counts), key="data.counts", height=COUNTS_HEIGHT)
    st.caption(counts_caption(counts))


def counts_caption(counts: list[ClassCount]) -> str:
    """The range of the training counts (a balanced set says so), and the test total."""
    smallest, largest = min(counts, key=lambda c: c.train), max(counts, key=lambda c: c.train)
    train = (f"{largest.train:,} in every class" if smallest.train == largest.train else
             f"from {smallest.train:,} ({smallest.name}) to {largest.train:,} ({largest.name})")
    return (f"Training images per class: {train}; {sum(c.train for c in counts):,} in all. "
            f"Test images: {sum(c.test for c in counts):,}.")


def _samples(dataset: Dataset, source: str) -> None:
    st.subheader("Sample images")
    grid = cached_grid(source, dataset.fingerprint, PER_CLASS)
    some = f" of the first {GRID_CLASSES} classes" if dataset.num_classes > GRID_CLASSES else ""
    st.image(grid, width=grid.shape[1], caption=f"Up to {PER_CLASS} training images per class{some}, spread over "
                                                "the class (small images enlarged, pixels kept sharp).")


def _stats_table(dataset: Dataset, train_cfg: TrainConfig) -> pd.DataFrame:
    rows = [{"channel": s.channel, "data mean": s.data_mean, "data std": s.data_std, "mean": s.mean, "std": s.std}
            for s in inspect_data.normalization_stats(dataset, train_cfg)]
    return pd.DataFrame(rows)


def _normalization(dataset: Dataset, train_cfg: TrainConfig) -> None:
    st.subheader("Normalization")
    left, right = st.columns([1, 2])
    widgets.draw(TrainConfig, "normalization", keys.key("normalization"), container=left,
                 on_change=_on_setting_edit)
    table = _stats_table(dataset, train_cfg)
    right.dataframe(table, hide_index=True, column_config=STATS_COLUMNS, key="data.stats")
    first = table.iloc[0]
    low, high = -first["mean"] / first["std"], (1 - first["mean"]) / first["std"]
    right.caption(f"The trainer feeds the network (x / 255 − mean) / std per channel: in the {first['channel']} "
                  f"channel black becomes {low:.2f} and white {high:.2f}. Same setting as on the Train page.")


def _augmentation(dataset: Dataset, train_cfg: TrainConfig) -> None:
    st.subheader("Augmentation preview")
    columns = st.columns([2, 1, 1])
    widgets.draw(TrainConfig, "augment", keys.key("augment"), container=columns[0],
                 on_change=_on_setting_edit)
    widgets.draw(TrainConfig, "crop_padding", keys.key("crop_padding"), container=columns[1],
                 on_change=_on_setting_edit)
    with columns[2]:
        st.write("")  # align the button with the inputs
        st.button("New random draw", key="data.new_draw", on_click=_on_draw, width="stretch")
    # The trainer's own generator starts at seed + 1: the first draw here uses the same seed.
    seed = train_cfg.seed + 1 + st.session_state.get(DRAWS, 0)
    original, augmented = inspect_data.augmentation_preview(dataset, train_cfg, seed, PREVIEW_IMAGES)
    what = inspect_data.trainer_augmentation(train_cfg).names()
    if not what:
        st.info("No augmentation is on: the trainer uses the images as they are. Turn on a horizontal flip or a "
                "random crop above, or rotation, colour jitter, cutout, mixup ... on the Train page.")
    left, right = st.columns(2)
    before, after = (inspect_data.tile_grid(x, PREVIEW_COLUMNS, PREVIEW_TILE) for x in (original, augmented))
    # An explicit width: the default lets a long caption stretch one picture wider than the other.
    left.image(before, width=before.shape[1], caption="Original training images")
    right.image(after, width=after.shape[1],
                caption=f"As the trainer augments them ({', '.join(what) or 'nothing'}; generator seed {seed})")


def render(selection: Selection) -> None:
    """The Data page for the Train page's dataset; a dataset that cannot load shows st.error and no more."""
    state = st.session_state
    keys.init_state(state)
    top_left, top_right = st.columns([2, 3])
    with top_left:
        dataset = source_picker.train_picker()
    if dataset is None:
        return  # the picker says why
    source = keys.source_from_values(state)
    with top_right:
        _summary(dataset, selection)
    _counts(dataset)
    _samples(dataset, source)
    try:
        train_cfg = keys.train_from_values(state)
    except ConfigError as err:
        st.error(f"Fix the training settings on the Train page first: {err}")
        return
    _normalization(dataset, train_cfg)
    _augmentation(dataset, train_cfg)
