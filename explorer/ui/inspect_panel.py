"""The Inside a net page: pick a saved checkpoint and an image (a test image of the data the net was trained on,
by class or among the misclassified ones, or an upload), and see the top-5 predictions, Grad-CAM for the
predicted and the true class, every conv block's feature maps and the first layer's filters.

Checkpoints are listed and loaded as on the Checkpoints page (checkpoints_panel's options and cached loader).
What one image shows is computed once per (checkpoint, image) and cached, so moving between images and back, or
any other rerun, costs nothing. Every refusal (not an image, too many pixels, a net that cannot take it, a data
set that does not match) is one st.error line.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from explorer.arch.cost import model_cost
from explorer.engine.dataset import Dataset
from explorer.engine.evaluate import model_device
from explorer.errors import DataError, ExplorerError
from explorer.inspect import net
from explorer.inspect.export import architecture_line
from explorer.inspect.images import load_image
from explorer.store import settings
from explorer.store.checkpoint import LoadedCheckpoint
from explorer.ui import checkpoints_panel, widgets
from explorer.ui.charts import OK_COLOR, TEST_COLOR

CHECKPOINT = "inspect.checkpoint"
SOURCE = "inspect.source"
FILTER = "inspect.filter"
INDEX = "inspect.index"
UPLOAD = "inspect.upload"
UPLOAD_TRUTH = "inspect.upload_truth"
SOURCES = ("Test image", "Upload an image")
ANY_CLASS = "any class"
MISCLASSIFIED = "misclassified"
UNKNOWN = "unknown"
TOP_K = 5
MAX_MAPS = 64  # per block: beyond that the grid is too small to read and the page slow to draw
MAP_TILE = 48  # smallest side, in pixels, a feature map is enlarged to (nearest neighbour)
FILTER_TILE = 48
IMAGE_SIZE = 192  # pixels the (32×32) image and its heat maps are enlarged to


@dataclass(frozen=True)
class Picked:
    """The image to look at: pixels in the net's shape, its true class if known, what it is, what was done."""

    pixels: torch.Tensor
    true_index: int | None
    title: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analysis:
    predictions: list[net.Prediction]
    maps: list[tuple[str, np.ndarray, list[int], int]]  # block name, grid picture, channels shown, channels
    filters: np.ndarray
    filter_shape: tuple[int, ...]
    heat: dict[int, net.HeatMap]  # class index -> heat map


# ----------------------------------------------------------------------------------------------- choosing


def _pick_checkpoint() -> tuple[LoadedCheckpoint | None, str | None]:
    runs_dir = settings.default_runs_dir()
    options = checkpoints_panel.checkpoint_options(runs_dir)
    if not options:
        st.info(f"No checkpoints in `{runs_dir}` yet: train a network on the Train page first.")
        return None, None
    if st.session_state.get(CHECKPOINT) not in options:
        st.session_state[CHECKPOINT] = next(iter(options))
    path = st.selectbox("Checkpoint", list(options), key=CHECKPOINT, format_func=options.get)
    mtime = Path(path).stat().st_mtime_ns if Path(path).exists() else 0
    try:
        loaded = checkpoints_panel.load_saved(path, mtime)  # the Checkpoints page's cache: loaded once for both
    except ExplorerError as err:
        st.error(f"Checkpoint refused: {err}")
        return None, None
    return loaded, f"{path}@{mtime}"


def _describe(loaded: LoadedCheckpoint) -> None:
    shape = "×".join(map(str, loaded.input_shape))
    classes = loaded.classes
    st.caption(f"{architecture_line(loaded.meta['arch'])} · input {shape} · {len(classes)} "
               f"classes ({', '.join(classes[:10])}{'…' if len(classes) > 10 else ''}) · trained on "
               f"`{loaded.meta.get('data') or '?'}`")


def _test_set(loaded: LoadedCheckpoint) -> Dataset:
    """The test split of the data the checkpoint was trained on; DataError when it cannot be used here."""
    from explorer.ui.resources import cached_dataset  # the shared cache: one decoded copy per source

    source = loaded.meta.get("data")
    if not source:
        raise DataError("this checkpoint does not say what data it was trained on; upload an image instead.")
    dataset = cached_dataset(source)
    if dataset.classes != loaded.classes or dataset.input_shape != loaded.input_shape:
        raise DataError(f"{source} now holds {'×'.join(map(str, dataset.input_shape))} images of "
                        f"{len(dataset.classes)} classes, not what this checkpoint was trained on; upload an image.")
    if len(dataset.test_y) == 0:
        raise DataError(f"{source} has no test images; upload an image instead.")
    return dataset


@st.cache_resource(max_entries=4, show_spinner="Classifying the test set…")
def _test_predictions(identity: str, source: str, _loaded: LoadedCheckpoint, _dataset: Dataset) -> torch.Tensor:
    """The predicted class of every test image (identity and source are the cache key)."""
    return _loaded.policy.logits(_loaded.model, _dataset.test_x, _loaded.mean, _loaded.std, device="cpu").argmax(1)


def _candidates(choice: str, loaded: LoadedCheckpoint, identity: str, dataset: Dataset) -> torch.Tensor:
    """Indices of the test images the filter keeps."""
    if choice == ANY_CLASS:
        return torch.arange(len(dataset.test_y))
    if choice == MISCLASSIFIED:
        predicted = _test_predictions(identity, dataset.name, loaded, dataset)
        return (predicted != dataset.test_y).nonzero().flatten()
    return (dataset.test_y == dataset.classes.index(choice)).nonzero().flatten()


def _another(count: int) -> None:
    st.session_state[INDEX] = random.randint(1, count)


def _pick_test_image(loaded: LoadedCheckpoint, identity: str) -> Picked | None:
    try:
        dataset = _test_set(loaded)
    except ExplorerError as err:
        st.error(f"No test images: {err}")
        return None
    options = [ANY_CLASS, *dataset.classes, MISCLASSIFIED]
    if st.session_state.get(FILTER) not in options:  # another checkpoint, other classes
        st.session_state[FILTER] = ANY_CLASS
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    choice = left.selectbox("Test images", options, key=FILTER,
                            help="All of them, one class, or those the net gets wrong.")
    indices = _candidates(choice, loaded, identity, dataset)
    if len(indices) == 0:
        if choice == MISCLASSIFIED:
            st.success("The net classifies every test image right.")
        else:
            st.info(f"No test images of class {choice}.")
        return None
    count = len(indices)
    if not 1 <= int(st.session_state.get(INDEX, 1)) <= count:
        st.session_state[INDEX] = 1
    number = widgets.number_input(widgets.number_spec("Image", 1, count), INDEX, middle, label=f"Image (1–{count:,})")
    right.button("Another", key="inspect.another", on_click=_another, args=(count,), icon=":material/casino:")
    index = int(indices[int(number) - 1])
    label = int(dataset.test_y[index])
    return Picked(dataset.test_x[index], label, f"test image {index + 1:,} of {dataset.name} · true class "
                  f"**{dataset.classes[label]}**")


def _pick_upload(loaded: LoadedCheckpoint) -> Picked | None:
    left, right = st.columns([3, 1])
    upload = left.file_uploader("An image (PNG, JPEG, GIF, WebP, BMP, TIFF; any size)", key=UPLOAD,
                                help="Centre-cropped to the net's aspect ratio and resized to its input size; "
                                     "colour and grey are converted to what the net takes.")
    if st.session_state.get(UPLOAD_TRUTH) not in [UNKNOWN, *loaded.classes]:
        st.session_state[UPLOAD_TRUTH] = UNKNOWN
    truth = right.selectbox("Its true class", [UNKNOWN, *loaded.classes], key=UPLOAD_TRUTH,
                            help="Optional: adds Grad-CAM for that class.")
    if upload is None:
        return None
    try:
        image = load_image(upload.getvalue(), loaded.input_shape)
    except ExplorerError as err:
        st.error(f"Image refused: {err}")
        return None
    w, h = image.source_size
    title = f"uploaded `{upload.name}` ({w}×{h} {image.source_format}, {image.source_mode})"
    return Picked(image.pixels, None if truth == UNKNOWN else loaded.classes.index(truth), title, tuple(image.notes))


# ----------------------------------------------------------------------------------------------- computing


@st.cache_resource(max_entries=32, show_spinner=False)
def _analyse(identity: str, digest: str, true_index: int | None, _loaded: LoadedCheckpoint, _pixels: torch.Tensor
             ) -> Analysis:
    """Everything the page shows for one image (identity, digest and true class are the cache key)."""
    model, mean, std = _loaded.model, _loaded.mean, _loaded.std
    predictions = net.top_k(model, _pixels, mean, std, k=TOP_K, policy=_loaded.policy)
    maps = []
    for name, activation in net.feature_maps(model, _pixels, mean, std):
        grid, shown = net.map_grid(activation, max_maps=MAX_MAPS, min_tile=MAP_TILE)
        maps.append((name, grid.numpy(), shown, int(activation.shape[0])))
    weights = net.first_layer_filters(model)
    wanted = {predictions[0].index} | ({true_index} if true_index is not None else set())
    heat = {k: net.heat_map(model, _pixels, mean, std, k) for k in sorted(wanted)}
    return Analysis(predictions, maps, net.filter_grid(weights, tile=FILTER_TILE).numpy(), tuple(weights.shape), heat)


def _digest(pixels: torch.Tensor) -> str:
    return hashlib.blake2b(pixels.contiguous().numpy().tobytes(), digest_size=12).hexdigest()


# ----------------------------------------------------------------------------------------------- showing


def top_k_spec(predictions: list[net.Prediction], classes: list[str], true_index: int | None) -> dict:
    """Vega-Lite horizontal bars of the top-k probabilities, most probable on top, the true class in green,
    each bar's percentage written beside it."""
    rows = [{"class": classes[p.index], "probability": p.probability,
             "truth": "true class" if p.index == true_index else "other"} for p in predictions]
    return {
        "title": f"Top {len(rows)} predictions",
        "data": {"values": rows},
        "height": {"step": 28},
        "encoding": {
            "y": {"field": "class", "type": "nominal", "title": None,
                  # An explicit order: layered charts drop a sort by field (their domains are unioned).
                  "sort": [row["class"] for row in rows]},
            "x": {"field": "probability", "type": "quantitative", "title": None,
                  "scale": {"domain": [0, 1]}, "axis": {"format": ".0%"}},
            "tooltip": [{"field": "class", "type": "nominal"},
                        {"field": "probability", "type": "quantitative", "format": ".2%"}],
        },
        "layer": [
            {"mark": {"type": "bar"},
             "encoding": {"color": {"field": "truth", "type": "nominal", "legend": None,
                                    "scale": {"domain": ["true class", "other"], "range": [OK_COLOR, TEST_COLOR]}}}},
            {"mark": {"type": "text", "align": "left", "dx": 4, "color": "#444"},
             "encoding": {"text": {"field": "probability", "type": "quantitative", "format": ".1%"}}},
        ],
    }


def block_label(cost_rows: list, name: str, shown: int, channels: int) -> str:
    """'conv2 · Conv2d 52×16×16 → BatchNorm2d → GELU → MaxPool2d → 52×8×8 · the 52 channels, most active first'."""
    rows = [r for r in cost_rows if r.name == name or r.name.startswith(name + ".")]
    conv, last = rows[0], rows[-1]
    steps = " → ".join([f"{conv.kind} {_shape(conv.out_shape)}"] + [r.kind for r in rows[1:]])
    which = f"the {channels} channels" if shown == channels else f"the {shown} most active of {channels} channels"
    return f"**{name}** · {steps} → **{_shape(last.out_shape)}** · {which}, most active first"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _show_prediction(loaded: LoadedCheckpoint, picked: Picked, analysis: Analysis) -> None:
    left, right = st.columns([1, 2])
    left.image(net.show_image(picked.pixels, IMAGE_SIZE).numpy(), width=IMAGE_SIZE,
               caption=f"{_shape(tuple(picked.pixels.shape))} as the net sees it")
    left.markdown(picked.title)
    for note in picked.notes:
        left.caption(note)
    spec = top_k_spec(analysis.predictions, loaded.classes, picked.true_index)
    right.vega_lite_chart(spec, key="inspect.top_k", width="stretch")
    best = analysis.predictions[0]
    verdict = "" if picked.true_index is None else (" — right" if best.index == picked.true_index else " — wrong")
    right.markdown(f"Predicted **{loaded.classes[best.index]}** ({best.probability:.1%}){verdict}")
    right.caption(policy_caption(loaded))


def policy_caption(loaded: LoadedCheckpoint) -> str:
    """Which inference policy produced the probabilities (the checkpoint's, as everywhere else)."""
    return (f"Inference policy: {loaded.policy.describe(model_device(loaded.model))} — the checkpoint's, as "
            "on the Checkpoints page, `evaluate` and `predict`. Grad-CAM and the feature maps are one view of "
            "the image.")


def _show_heat(loaded: LoadedCheckpoint, picked: Picked, analysis: Analysis) -> None:
    st.subheader("Where the net looks (Grad-CAM)")
    predicted = analysis.predictions[0].index
    shown = [(predicted, "predicted")]
    if picked.true_index is not None and picked.true_index != predicted:
        shown.append((picked.true_index, "true"))
    columns = st.columns(3)
    columns[0].image(net.show_image(picked.pixels, IMAGE_SIZE).numpy(), width=IMAGE_SIZE, caption="the image")
    for column, (k, role) in zip(columns[1:], shown):
        heat = analysis.heat[k]
        column.image(net.overlay(picked.pixels, heat.heat, IMAGE_SIZE).numpy(), width=IMAGE_SIZE,
                     caption=f"{role} class: {loaded.classes[k]}")
        if float(heat.heat.max()) == 0:
            column.caption("Nothing in the last block speaks for this class (the map is empty).")
    methods = sorted({h.method for h in analysis.heat.values()})
    same = " (it is also the true class)" if picked.true_index == predicted else ""
    st.caption(f"{', '.join(methods)}: bright = regions that raise the class's score{same}. Each map is scaled to "
               "its own maximum.")


def _show_maps(loaded: LoadedCheckpoint, analysis: Analysis) -> None:
    st.subheader("Feature maps of every conv block")
    st.caption("Each block's output (after activation, skip and pooling) for this image; one colour scale per "
               "block, dark = low, yellow = high.")
    rows = list(model_cost(loaded.arch, loaded.input_shape, len(loaded.classes)).layers)
    columns = st.columns(2)
    for i, (name, grid, shown, channels) in enumerate(analysis.maps):
        column = columns[i % 2]
        column.markdown(block_label(rows, name, len(shown), channels))
        column.image(grid, alt=f"feature maps of {name}")  # natural size, shrunk only to fit the column


def _show_filters(analysis: Analysis) -> None:
    st.subheader("Filters of the first conv layer")
    out, inp, k, _ = analysis.filter_shape
    kind = "RGB" if inp == 3 else "grey" + (f" (mean of {inp} input channels)" if inp != 1 else "")
    st.image(analysis.filters, alt="filters of the first conv layer")
    st.caption(f"{out} filters, {k}×{k}, shown in {kind}; each scaled on its own, mid-grey = 0.")


# ----------------------------------------------------------------------------------------------- page


def render() -> None:
    """The Inside a net page."""
    st.header("Inside a net")
    st.caption("What a trained network sees in one image: its top-5 guesses, where it looks, what each conv "
               "block computes, and its first layer's filters.")
    loaded, identity = _pick_checkpoint()
    if loaded is None:
        return
    _describe(loaded)
    if st.session_state.get(SOURCE) not in SOURCES:
        st.session_state[SOURCE] = SOURCES[0] if loaded.meta.get("data") else SOURCES[1]
    source = st.radio("Image", SOURCES, key=SOURCE, horizontal=True, label_visibility="collapsed")
    picked = _pick_upload(loaded) if source == SOURCES[1] else _pick_test_image(loaded, identity)
    if picked is None:
        return
    try:
        analysis = _analyse(identity, _digest(picked.pixels), picked.true_index, loaded, picked.pixels)
    except ExplorerError as err:
        st.error(f"Cannot look inside this net: {err}")
        return
    _show_prediction(loaded, picked, analysis)
    _show_heat(loaded, picked, analysis)
    _show_maps(loaded, analysis)
    _show_filters(analysis)
