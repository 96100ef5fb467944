"""The Streamlit app driven by AppTest (reruns the script; fragments are tested as plain functions)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer import PRESETS, model_cost
from explorer.ui import state as keys

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def app(runs_dir) -> AppTest:
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def params_shown(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == "Parameters")


def gauge_spec(at: AppTest) -> dict:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return next(s for s in specs if any(trace["type"] == "indicator" for trace in s["data"]))


# --- pure state helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_values_round_trip_every_preset(name):
    values = keys.arch_to_values(PRESETS[name])
    assert keys.arch_from_values(values) == PRESETS[name]


def test_extra_block_slots_continue_the_network_without_pooling():
    values = keys.arch_to_values(PRESETS["tutorial"])
    values[keys.N_CONV] = 3
    cfg = keys.arch_from_values(values)
    assert cfg.conv[2].out_channels == 16 and cfg.conv[2].pool == "none" and not cfg.conv[2].residual


def test_init_state_fills_only_what_is_missing():
    state: dict = {}
    keys.init_state(state)
    assert state[keys.PRESET] == "study-bn" and state[keys.BUDGET] == 256_000
    state[keys.block_key(1, "out_channels")] = 7
    del state[keys.block_key(5, "kernel")]
    keys.init_state(state)
    assert state[keys.block_key(1, "out_channels")] == 7
    assert state[keys.block_key(5, "kernel")] == state[keys.block_key(4, "kernel")]


# --- the Architecture tab ---------------------------------------------------------------------------------


def test_default_preset_shows_its_params_and_no_error(app):
    assert app.selectbox(key=keys.PRESET).value == "study-bn"
    assert params_shown(app) == "164,310"
    assert not app.error
    assert "under budget" in next(m for m in app.metric if m.label == "Parameters").delta
    assert app.success[0].value.startswith("Within budget: 91,690")


def test_changing_a_width_changes_the_params_and_marks_custom(app):
    app.number_input(key=keys.block_key(1, "out_channels")).set_value(30).run()
    conv = (dataclasses.replace(PRESETS["study-bn"].conv[0], out_channels=30), PRESETS["study-bn"].conv[1])
    expected = model_cost(dataclasses.replace(PRESETS["study-bn"], conv=conv)).params
    assert params_shown(app) == f"{expected:,}"
    assert expected != 164_310
    assert app.selectbox(key=keys.PRESET).value == "custom"
    # The edit survives a rerun caused by another widget (the budget is not an architecture edit).
    app.number_input(key=keys.BUDGET).set_value(300_000).run()
    assert app.number_input(key=keys.block_key(1, "out_channels")).value == 30
    assert params_shown(app) == f"{expected:,}"
    assert app.selectbox(key=keys.PRESET).value == "custom"


def test_preset_picker_switches_and_over_budget_is_red(app):
    app.selectbox(key=keys.PRESET).set_value("study-wide").run()
    assert params_shown(app) == "267,530"
    assert app.number_input(key=keys.block_key(1, "out_channels")).value == 32
    assert "over the budget" in app.warning[0].value
    spec = gauge_spec(app)
    indicator = next(t for t in spec["data"] if t["type"] == "indicator")
    assert indicator["value"] == 267_530
    assert indicator["gauge"]["bar"]["color"] == "#d62728"
    app.selectbox(key=keys.PRESET).set_value("tutorial").run()
    assert params_shown(app) == "62,006"
    assert not app.warning


def test_impossible_config_shows_an_error_not_a_traceback(app):
    app.selectbox(key=keys.PRESET).set_value("tutorial").run()
    app.slider(key=keys.N_CONV).set_value(8).run()
    assert not app.exception
    assert len(app.error) == 1
    message = app.error[0].value
    # conv3 (a copy of conv2 without pooling) turns the 5x5 map into 1x1; conv4 cannot run on it.
    assert message.startswith("conv4: the 1x1 feature map is smaller than its 5x5 kernel")
    assert not app.metric  # no numbers for a network that cannot exist


def test_tiny_input_shows_an_error(app):
    app.number_input(key=keys.IN_C).set_value(1)
    app.number_input(key=keys.IN_H).set_value(8)
    app.number_input(key=keys.IN_W).set_value(8).run()
    assert not app.exception
    assert "smaller than its 5x5 kernel" in app.error[0].value


def test_input_shape_changes_the_flatten_size(app):
    app.selectbox(key=keys.PRESET).set_value("tutorial").run()
    app.number_input(key=keys.IN_C).set_value(1)
    app.number_input(key=keys.IN_H).set_value(28)
    app.number_input(key=keys.IN_W).set_value(28).run()
    assert params_shown(app) == f"{model_cost(PRESETS['tutorial'], (1, 28, 28)).params:,}"


def test_auto_fit_scales_widths_into_the_budget(app):
    app.selectbox(key=keys.PRESET).set_value("study-wide").run()
    fit = next(b for b in app.button if b.label.startswith("Auto-fit"))
    fit.click().run()
    params = int(params_shown(app).replace(",", ""))
    assert 240_000 < params <= 256_000
    assert app.selectbox(key=keys.PRESET).value == "custom"
    assert app.number_input(key=keys.block_key(1, "out_channels")).value < 32


def test_torchinfo_table_and_layer_table_are_shown(app):
    frames = {len(df.value): df.value for df in app.dataframe}
    layer_rows = len(model_cost(PRESETS["study-bn"]).layers)
    assert layer_rows in frames
    assert int(frames[layer_rows]["params"].sum()) == 164_310
    torchinfo = next(df.value for df in app.dataframe if "mult-adds" in df.value.columns)
    assert int(torchinfo["mult-adds"].sum()) == model_cost(PRESETS["study-bn"]).torchinfo_mult_adds
