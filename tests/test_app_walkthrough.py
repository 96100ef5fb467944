"""What a new user tripped over in the browser (issue 21): each test drives the app as the walk-through did."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from conftest import make_image_folder
from streamlit.testing.v1 import AppTest

from explorer.ui import train_state as train_keys

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TRAIN_PAGE, DATA_PAGE = "explorer/ui/pages/train.py", "explorer/ui/pages/data.py"


@pytest.fixture
def app(runs_dir, tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", str(tmp_path))  # the tests' image folders: an allowed data root
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def _type_folder(at: AppTest, path: str) -> AppTest:
    if at.selectbox(key=train_keys.SOURCE).value != train_keys.FOLDER_CHOICE:
        at.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    at.text_input(key=train_keys.FOLDER).input(path).run()
    assert not at.exception
    return at


def _found(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Found ")]


# --- item 3: folder paths ---------------------------------------------------------------------------------------


def test_an_empty_folder_path_says_what_to_enter(app):
    at = app.switch_page(TRAIN_PAGE).run()
    at.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    assert not at.exception
    assert [w.value for w in at.warning if "enter a path" in w.value] == [
        w.value for w in at.warning if w.value.startswith("Folder with train/<class>/")]
    assert any("Folder with train/<class>/" in w.value and "enter a path" in w.value for w in at.warning)


def test_a_missing_folder_says_it_does_not_exist_not_that_it_is_outside_the_roots(app):
    at = _type_folder(app.switch_page(TRAIN_PAGE).run(), "/no-such-folder-h3/cifar")
    errors = [e.value for e in at.error]
    assert len(errors) == 1
    assert "/no-such-folder-h3/cifar does not exist" in errors[0] and "allowed data root" not in errors[0]


def test_a_corrected_path_replaces_the_old_error_and_source(app, tmp_path):
    at = _type_folder(app.switch_page(TRAIN_PAGE).run(), str(tmp_path / "typo"))
    assert len(at.error) == 1 and "does not exist" in at.error[0].value
    good = make_image_folder(tmp_path / "grey", classes=("a", "b"), per_class=3, size=(20, 20), mode="L")
    at = _type_folder(at, str(good))
    assert not at.error
    assert _found(at) == [f"Found folder:{good}: 6 train / 6 test images, 1x20x20, 2 classes."]
    assert (at.session_state["arch.in_c"], at.session_state["arch.in_h"], at.session_state["arch.num_classes"]) \
        == (1, 20, 2)  # the corrected folder, not the old source, sets the network's input


# --- item 4: a folder without train/ ----------------------------------------------------------------------------


@pytest.mark.parametrize("page", [TRAIN_PAGE, DATA_PAGE])
def test_a_folder_without_train_says_what_was_found_and_assumed(app, tmp_path, page):
    flat = make_image_folder(tmp_path / "fmnist", classes=("boot", "coat"), per_class=10, splits=("train",))
    at = _type_folder(app.switch_page(page).run(), str(flat / "train"))  # the class folders themselves
    found = _found(at)
    assert len(found) == 1, found
    assert "18 train / 2 test images" in found[0]
    assert "No train/ folder: its 2 sub-folders (boot, coat) are taken as the classes" in found[0]
    assert "No test/ folder: 2 training images (10% per class, seed 0) held out for testing" in found[0]


# --- item 8: names ------------------------------------------------------------------------------------------------


def test_a_reloaded_train_page_names_the_folder(app, tmp_path):
    good = make_image_folder(tmp_path / "my-images", classes=("a", "b"), per_class=2)
    at = _type_folder(app.switch_page(TRAIN_PAGE).run(), str(good))
    assert _label(at, train_keys.SOURCE) == "Image folder my-images"


def _label(at: AppTest, key: str) -> str:
    picker = at.selectbox(key=key)  # the options as the browser shows them (formatted by the page)
    return picker.options[picker.index]


def test_edits_name_the_preset_and_recipe_they_started_from(app):
    from explorer.ui import state as arch_keys

    at = app
    assert arch_keys.apply_block_edits(at.session_state, {0: {"out_channels": 30}}) == []  # the blocks table
    at.run()
    assert at.selectbox(key=arch_keys.PRESET).value == "custom"
    assert _label(at, arch_keys.PRESET) == "study-bn (edited: conv1.out_channels)"
    assert any(m.value.startswith("**study-bn (edited: conv1.out_channels)** on a 3×32×32") for m in at.markdown)
    at.switch_page(TRAIN_PAGE).run()
    at.number_input(key=train_keys.key("epochs")).set_value(7).run()
    assert _label(at, train_keys.RECIPE) == "fast (edited: epochs)"
    note = next(c.value for c in at.caption if c.value.startswith("Start trains"))
    assert note.startswith("Start trains **study-bn (edited: conv1.out_channels)** with recipe "
                           "**fast (edited: epochs)**")


def test_a_run_record_and_the_runs_table_name_an_edited_design(tmp_path):
    import dataclasses

    from explorer.arch.presets import PRESETS
    from explorer.engine.recipes import RECIPES
    from explorer.store.tables import runs_table
    from explorer.ui import links
    from explorer.ui.train_panel import spec_from_values

    edited = dataclasses.replace(PRESETS["fast"], fc=(2000,))
    design = links.Design(arch=edited, train=RECIPES["fast"].replace(epochs=9), preset=None, recipe=None)
    state = links.design_values(design) | {train_keys.NAME: "", train_keys.SYNTHETIC_SIZE: 2000}
    spec = spec_from_values(state)
    assert (spec.preset, spec.recipe) == ("fast", "fast")  # what it started from, edited
    record = {"id": "r1", "preset": spec.preset, "recipe": spec.recipe, "arch": spec.arch.to_dict(),
              "train": spec.train.to_dict()}
    plain = {"id": "r2", "preset": "fast", "recipe": "fast", "arch": PRESETS["fast"].to_dict(),
             "train": RECIPES["fast"].to_dict()}
    table = runs_table([record, plain, {"id": "r3"}]).set_index("id")
    assert table.loc["r1", "preset"] == "fast (edited: fc)" and table.loc["r1", "recipe"] == "fast (edited: epochs)"
    assert (table.loc["r2", "preset"], table.loc["r2", "recipe"]) == ("fast", "fast")
    assert pd.isna(table.loc["r3", "preset"])  # no preset recorded: the page shows 'custom'


# --- issue 20 item 11: stale words --------------------------------------------------------------------------------


def _shown_strings(path: Path) -> list[str]:
    """String literals of a UI module that can reach the page: every one but docstrings."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_page_calls_itself_a_tab():
    import re

    stale = [(path.name, text) for path in sorted((ROOT / "explorer" / "ui").rglob("*.py"))
             for text in _shown_strings(path) if re.search(r"\btabs?\b", text, re.IGNORECASE)]
    assert stale == []


def test_the_recipe_help_names_every_recipe_and_what_it_adds():
    from explorer.ui.train_panel import RECIPE_HELP

    for words in ("study:", "fast:", "best:", "translate", "EMA", "flip"):
        assert words in RECIPE_HELP


# --- item 2: auto-fit by the largest contributors ------------------------------------------------------------------


def _wide_fc_net():
    import dataclasses

    from explorer.arch.presets import PRESETS

    base = PRESETS["study-bn"]
    conv = tuple(dataclasses.replace(b, out_channels=w) for b, w in zip(base.conv, (33, 50)))
    return dataclasses.replace(base, conv=conv, fc=(2000, 84))  # fc1 = 2,000: the cause of the overrun


def test_fit_largest_cuts_the_layer_that_caused_the_overrun():
    from explorer.arch.cost import fit_to_budget, model_cost
    from explorer.arch.fit import fit_largest, width_changes

    net = _wide_fc_net()
    assert model_cost(net).params == 2_719_076
    fitted = fit_largest(net, 256_000)
    assert 240_000 < model_cost(fitted).params <= 256_000
    changed = {c.layer: (c.before, c.after) for c in width_changes(net, fitted)}
    assert changed["fc1"][1] < 400 and "conv1" not in changed and "fc2" not in changed  # the narrow layers stay
    uniform = {c.layer: c.after for c in width_changes(net, fit_to_budget(net, 256_000))}
    assert uniform["conv1"] < 12  # what the walk-through saw: every width crushed alike
    kept = fit_largest(net, 256_000, locked={"fc1"})  # fc1 locked: the cut goes to what feeds it
    assert kept.fc[0] == 2000 and model_cost(kept).params <= 256_000 and kept.conv[1].out_channels < 5


def test_fit_largest_refuses_with_one_line_when_locks_leave_no_way():
    from explorer.arch.fit import fit_largest
    from explorer.errors import ConfigError

    with pytest.raises(ConfigError, match="every unlocked width at 1 .* over the budget of 256,000; unlock layers"):
        fit_largest(_wide_fc_net(), 256_000, locked={"fc1", "conv2"})


def test_fit_keeps_residual_blocks_as_wide_as_their_input():
    import dataclasses

    from explorer.arch.config import ArchConfig, ConvBlock
    from explorer.arch.cost import model_cost
    from explorer.arch.fit import fit_largest

    net = ArchConfig(conv=(ConvBlock(64), ConvBlock(64, residual=True), ConvBlock(64, residual=True, pool="max")),
                     fc=(500,), batchnorm=True)
    fitted = fit_largest(net, 100_000)
    assert model_cost(fitted).params <= 100_000
    assert len({b.out_channels for b in fitted.conv}) == 1  # still a valid residual chain
    assert dataclasses.replace(fitted, conv=net.conv, fc=net.fc) == net


def test_the_sidebar_fits_by_the_largest_contributors_and_says_what_changed(app):
    from explorer.ui import links
    from explorer.ui import state as arch_keys

    at = app
    for key, value in links.design_values(links.Design(arch=_wide_fc_net(), preset=None)).items():
        if key.startswith("arch."):
            at.session_state[key] = value
    at.run()
    at.button(key="arch.fit").click().run()
    assert not at.exception
    message = next(i.value for i in at.sidebar.info if i.value.startswith("Fitted: "))
    assert "fc1 2,000 → " in message and "conv1" not in message
    assert at.session_state[arch_keys.block_key(1, "out_channels")] == 33
    assert at.session_state[arch_keys.fc_key(1)] < 400
    at.multiselect(key="arch.fit_locked").set_value(["fc1", "conv2"]).run()
    at.button(key="arch.fit").click().run()
    assert any("Nothing to change" in i.value for i in at.sidebar.info)  # it fits now: nothing is cut


# --- item 1: every width at once ---------------------------------------------------------------------------------


def test_the_blocks_table_shows_every_width_and_its_cost_with_a_column_per_schema_field(app):
    from explorer import schema
    from explorer.arch.config import ConvBlock
    from explorer.arch.cost import model_cost
    from explorer.arch.presets import PRESETS

    tables = [t for t in app.data_editor if t.key.startswith("arch.blocks.")]
    assert len(tables) == 1
    table = tables[0].value
    assert list(table.index) == ["conv1", "conv2"] and list(table["out_channels"]) == [25, 50]
    assert set(table.columns) == set(schema.names(ConvBlock)) | {"params", "output"}  # new fields: new columns
    cost = model_cost(PRESETS["study-bn"])
    by_layer = {layer.name: layer.params for layer in cost.layers}
    assert list(table["params"]) == [by_layer["conv1"] + by_layer["conv1.bn"], by_layer["conv2"] + by_layer["conv2.bn"]]
    assert list(table["output"]) == ["25×14×14", "50×5×5"]
    sidebar_widths = [w for w in app.sidebar.number_input if w.key and w.key.endswith(".out_channels")]
    assert sidebar_widths == []  # the expanders keep only the rarer settings


def test_a_refused_cell_names_the_field_and_range_and_keeps_the_last_value():
    from explorer.arch.presets import PRESETS
    from explorer.ui import state as arch_keys

    state = arch_keys.arch_to_values(PRESETS["study-bn"]) | {arch_keys.PRESET: "study-bn"}
    refused = arch_keys.apply_block_edits(state, {0: {"out_channels": 0}, 1: {"out_channels": None, "kernel": 3}})
    assert refused == ["conv1 out_channels: 0 is out of range; use a value from 1 to 1024. Kept 25.",
                       "conv2 out_channels: empty; use 1 to 1024. Kept 50."]
    assert state[arch_keys.block_key(1, "out_channels")] == 25 and state[arch_keys.block_key(2, "kernel")] == 3
    assert state[arch_keys.PRESET] == "custom"  # the valid edit went through
    assert arch_keys.apply_block_edits(state, {0: {"out_channels": 12.5}})[0].startswith(
        "conv1 out_channels: expected a whole number, got 12.5; use a value from 1 to 1024.")
    assert arch_keys.apply_block_edits(state, {"1": {"out_channels": 1e3, "params": 5}}) == []
    assert state[arch_keys.block_key(2, "out_channels")] == 1000
