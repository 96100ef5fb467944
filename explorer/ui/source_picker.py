"""The one data-source picker of the Train, Data and Search pages: a dataset choice, a folder box or the synthetic
set's size, and under it what was found there (or one message saying why it cannot be used).

Each page passes its session-state keys (train_state.SourceKeys): the Train and Data pages share theirs, so a
choice made on one shows on the other. The dataset is loaded as the choice is drawn (resources.cached_dataset:
once per server), so the message under the picker always describes the source the form holds now: a corrected
path replaces the old error at once, and a design restored from a link is checked like a typed one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from explorer.engine.data import check_source
from explorer.engine.dataset import Dataset
from explorer.errors import ExplorerError
from explorer.store import settings
from explorer.ui import resources, widgets
from explorer.ui import state as arch_keys
from explorer.ui import train_state as keys
from explorer.ui.train_state import SourceKeys

FOLDER_PROMPT = "Image folder (enter a path)…"
FOLDER_LABEL = "Folder with train/<class>/ (and test/<class>/) images"
EMPTY_FOLDER = (f"{FOLDER_LABEL}: enter a path. Expected PATH/train/<class>/<image> (and optionally "
                "PATH/test/<class>/<image>); a folder of class sub-folders alone is split 90/10.")


def folder_label(path: str) -> str:
    """The folder choice's label: the folder's name once one is entered (a reloaded page shows which)."""
    name = Path(path.strip()).name if path.strip() else ""
    return f"Image folder {name}" if name else FOLDER_PROMPT


def load(source: str) -> Dataset:
    """The dataset of `source`; DataError naming what is wrong: a missing folder says so before the data-root
    rule is checked (a typo is far likelier than a path outside the roots)."""
    check_source(source, settings.default_data_dir())
    return resources.cached_dataset(source)


def _labels(picker: SourceKeys) -> dict[str, str]:
    state = st.session_state
    named = {s["name"]: s["label"] for s in resources.cached_sources() if s["available"]}
    if state.get(picker.choice) == keys.FOLDER_CHOICE and f"folder:{str(state[picker.folder]).strip()}" in named:
        state[picker.choice] = f"folder:{str(state[picker.folder]).strip()}"  # a listed folder: show its name
    labels = named | {keys.FOLDER_CHOICE: folder_label(str(state.get(picker.folder, "")))}
    if state.get(picker.choice) not in labels:
        state[picker.choice] = "synthetic"
    return labels


def render(picker: SourceKeys, help: str, on_pick: Callable[[], None] | None = None) -> Dataset | None:
    """Draw the picker; returns the dataset it names, or None (with one message saying why) when there is none.
    `on_pick` runs when the user picks another dataset or folder (before the rerun draws it)."""
    labels = _labels(picker)
    state = st.session_state
    st.selectbox("Dataset", list(labels), key=picker.choice, format_func=labels.get, on_change=on_pick, help=help)
    if state[picker.choice] == "synthetic":
        size = widgets.number_spec("Synthetic training images (a quarter as many test images)", 20, 200_000, step=500)
        widgets.number_input(size, picker.synthetic_size, help="Fewer images: quicker runs to try things out.")
    if state[picker.choice] == keys.FOLDER_CHOICE:
        st.text_input(FOLDER_LABEL, key=picker.folder, on_change=on_pick, placeholder="/path/to/images")
    return _found(keys.source_of(state, picker))


def _found(source: str) -> Dataset | None:
    """What the source holds (its size and what was assumed about its layout), or why it cannot be used."""
    if source == "folder:":
        st.warning(EMPTY_FOLDER)
        return None
    try:
        dataset = load(source)
    except ExplorerError as err:
        st.error(str(err))
        return None
    with st.container(key="source-found"):
        st.caption(f"Found {dataset.describe()}." + "".join(f" {note.capitalize()}." for note in dataset.notes))
    return dataset


def picker_help(sources: list[dict]) -> str:
    """The dataset picker's help: what a choice does, and (only here, not on the page) what cannot be picked
    and why, so a working CIFAR-10 folder is not shown beside a permanent 'not available' line."""
    text = "Picking a dataset sets the input shape and number of classes of the network."
    missing = [f"{s['label']}: {s['why']}" for s in sources if not s["available"]]
    return text + ("\n\nNot available here: " + "; ".join(missing) if missing else "")


def _on_train_source() -> None:
    """A dataset choice sets the network's input shape and class count (shown on the Architecture page)."""
    state = st.session_state
    source = keys.source_from_values(state)
    if source == "folder:":
        return
    try:
        dataset = load(source)
    except ExplorerError:
        return  # the picker says why as it draws
    arch_keys.set_input(state, dataset.input_shape, dataset.num_classes)


def train_picker() -> Dataset | None:
    """The Train and Data pages' picker (shared keys): a pick sets the sidebar's input shape and classes."""
    return render(keys.TRAIN_SOURCE, picker_help(resources.cached_sources()), on_pick=_on_train_source)
