"""Issue 21 item 3: a refused number gets one message naming the field and its range; the last valid value
stays (explorer.ui.widgets.number_input, used by every number box)."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer import ArchConfig, TrainConfig, schema
from explorer.ui import state as keys
from explorer.ui import train_state as train_keys
from explorer.ui import widgets

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
EPOCHS = train_keys.key("epochs")


@pytest.fixture
def app(runs_dir) -> AppTest:
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


# --- the pure check -------------------------------------------------------------------------------------------


def test_refusal_names_the_field_and_the_schemas_range():
    epochs = schema.spec_of(TrainConfig, "epochs")
    wanted = f"enter a whole number from {schema.describe(epochs)}."
    assert widgets.refusal(epochs, -5.0) == f"Epochs: -5 is out of range; {wanted}"
    assert widgets.refusal(epochs, None) == f"Epochs: the box is empty or not a number; {wanted}"
    assert widgets.refusal(epochs, 1000) is None and widgets.refusal(epochs, 7) is None
    lr = schema.spec_of(TrainConfig, "lr")
    assert widgets.refusal(lr, 0.5) is None
    assert widgets.refusal(lr, 200.0) == \
        f"Learning rate: 200 is out of range; enter a number from {schema.describe(lr)}."


# --- in the app ---------------------------------------------------------------------------------------------------


def test_an_out_of_range_fc_width_is_refused_and_the_last_width_kept(app):
    fc = schema.spec_of(ArchConfig, "fc")
    box = app.number_input(key=keys.fc_key(1))
    before, params = box.value, next(m.value for m in app.metric if m.label == "Parameters")
    box.set_value(-5).run()
    assert not app.exception
    assert errors(app) == [f"fc1 units: -5 is out of range; enter a whole number from {fc.low} to {fc.high}. "
                           f"Kept {before}."]
    assert app.number_input(key=keys.fc_key(1)).value == before
    assert next(m.value for m in app.metric if m.label == "Parameters") == params
    app.run()  # the next click anywhere: the message has been read
    assert errors(app) == [] and app.number_input(key=keys.fc_key(1)).value == before
    app.number_input(key=keys.fc_key(1)).set_value(before + 1).run()
    assert errors(app) == [] and app.number_input(key=keys.fc_key(1)).value == before + 1


def test_refused_epochs_keep_the_last_valid_value_on_the_train_page(app):
    app.switch_page("explorer/ui/pages/train.py").run()
    app.number_input(key=EPOCHS).set_value(7).run()
    for typed, why in ((-5, "-5 is out of range"), (None, "the box is empty or not a number"),
                       (5000, "5000 is out of range"), (2.5, "2.5 is not a whole number")):
        app.number_input(key=EPOCHS).set_value(typed).run()
        assert not app.exception
        assert errors(app) == [f"Epochs: {why}; enter a whole number from 1 to 1000. Kept 7."]
        assert app.number_input(key=EPOCHS).value == 7 and type(app.session_state[EPOCHS]) is int
    app.number_input(key=EPOCHS).set_value(1000.0).run()  # the high end is allowed: the message goes
    assert errors(app) == [] and app.session_state[EPOCHS] == 1000 and type(app.session_state[EPOCHS]) is int
    # The browser sends a float box's value back as a float on every rerun: the field still holds an int.
    app.number_input(key=EPOCHS).set_value(12.0).run()
    app.run()
    assert app.session_state[EPOCHS] == 12 and type(app.session_state[EPOCHS]) is int
