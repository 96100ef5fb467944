"""The Search page's Sweep mode driven by AppTest: a bad grid refused with one message and nothing written, a
sweep's accuracy chart with the seeds' error bars, Create and start run to the end, the study replay's tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import streamlit as st
from polling import wait_for
from streamlit.testing.v1 import AppTest

from explorer.search import control
from explorer.search.study import create_search, default_storage, make_settings
from explorer.search.sweep import create_sweep, grid, load_sweep, parse_set, sweep_settings
from explorer.store.stats import summarize
from explorer.ui import sweep_charts, sweep_panel

ROOT = Path(__file__).resolve().parents[1]
PAGE = "explorer/ui/pages/search.py"


@pytest.fixture
def app(runs_dir, tmp_path, monkeypatch) -> Iterator[AppTest]:
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "data"))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    at.segmented_control(key="search.mode").set_value("Sweep").run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def _fabricated_sweep(runs_dir: Path, name: str = "bs") -> dict[int, list[float]]:
    """A 2 x 2 grid (batch size x BatchNorm), 3 complete seeds per point, as a worker records them."""
    sets = [parse_set("train.batch_size=8,16"), parse_set("arch.batchnorm=false,true")]
    settings = sweep_settings(grid(sets), "synthetic:100", 3, "tutorial", "study", epochs=1)
    storage = default_storage(name, runs_dir)
    create_sweep(name, storage, settings)
    study, _ = load_sweep(name, storage)
    values = {point: [0.4 + 0.1 * point + 0.01 * r for r in range(3)] for point in range(4)}
    distributions = {"point": optuna.distributions.CategoricalDistribution([0, 1, 2, 3]),
                     "repeat": optuna.distributions.CategoricalDistribution([0, 1, 2])}
    for point, accuracies in values.items():
        for repeat, accuracy in enumerate(accuracies):
            study.add_trial(optuna.trial.create_trial(params={"point": point, "repeat": repeat}, value=accuracy,
                                                      distributions=distributions,
                                                      user_attrs={"sweep_point": point, "test_accuracy": accuracy}))
    return values


def test_a_bad_grid_is_refused_with_one_message_and_nothing_written(app, runs_dir):
    app.text_input(key=sweep_panel.NAME).set_value("bad")
    app.text_input(key=sweep_panel.DATA).set_value("synthetic:100")
    app.text_input(key=sweep_panel.FIRST_VALUES).set_value("0,8")
    app.button(key="sweep.create").click().run()
    assert [e.value for e in app.error] == ["train.batch_size: 0 is out of range; use a value from 1 to 65536."]
    assert not (runs_dir / "searches").exists() and not app.exception


def test_a_sweep_shows_accuracy_against_the_values_with_the_seeds_interval(app, runs_dir):
    values = _fabricated_sweep(runs_dir)
    create_search("plain", default_storage("plain", runs_dir),
                  make_settings({"arch": {"widths": [4]}}, "synthetic:100", trial_epochs=1))
    app.run()
    assert app.selectbox(key=sweep_panel.PICK).options == [sweep_panel.NEW, "bs"]  # only sweeps are listed
    app.selectbox(key=sweep_panel.PICK).set_value("bs").run()
    assert not app.exception
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in figure["data"]}
    assert set(traces) == {"arch.batchnorm=False", "arch.batchnorm=True"}
    with_bn = traces["arch.batchnorm=True"]  # points 1 (batch 8) and 3 (batch 16)
    assert with_bn["x"] == ["8", "16"] and with_bn["y"] == pytest.approx([0.51, 0.71])
    expected = summarize(values[3])
    assert with_bn["error_y"]["array"][1] == pytest.approx(expected.high - expected.mean)
    assert with_bn["error_y"]["arrayminus"][1] == pytest.approx(expected.mean - expected.low)
    table = app.dataframe[0].value
    assert list(table["n"]) == [3, 3, 3, 3] and table["Mean %"].iloc[3] == pytest.approx(71.0)


def test_create_and_start_runs_the_sweep_to_the_end(app, runs_dir):
    app.text_input(key=sweep_panel.NAME).set_value("live")
    app.text_input(key=sweep_panel.DATA).set_value("synthetic:100")
    app.selectbox(key=sweep_panel.RECIPE).set_value("study")
    app.text_input(key=sweep_panel.FIRST_VALUES).set_value("16,32")
    app.number_input(key=sweep_panel.REPEAT).set_value(1)
    app.number_input(key=sweep_panel.EPOCHS).set_value(1)
    app.button(key="sweep.create").click().run()
    assert not app.error and app.selectbox(key=sweep_panel.PICK).value == "live"
    wait_for(lambda: not control.is_running("live", runs_dir), timeout=300)
    app.run()
    table = app.dataframe[0].value
    assert list(table["train.batch_size"]) == ["16", "32"] and list(table["n"]) == [1, 1]
    assert table["Mean %"].between(0, 100).all()


def test_the_study_replay_button_creates_its_sweeps_and_shows_the_tables(app, runs_dir, monkeypatch):
    started = []
    monkeypatch.setattr(control, "start", lambda name, *args, **kwargs: started.append(name))
    app.text_input(key=sweep_panel.DATA).set_value("synthetic:100")
    app.number_input(key=sweep_panel.SCALE).set_value(0.5)
    app.button(key="sweep.replay").click().run()
    assert not app.error and started == ["study-replay-short", "study-replay-long"]
    assert app.selectbox(key=sweep_panel.PICK).value == "study-replay-short"
    frames = [frame.value for frame in app.dataframe]
    steps, conclusions = frames[1], frames[2]
    assert steps["Study"].iloc[0] == "54.0 %" and (steps["n"] == 0).all()
    assert set(conclusions["Verdict"]) == {"not enough runs"}


def test_the_chart_of_one_setting_has_one_trace_and_no_bar_for_a_single_run():
    points = [{"settings": {"train.lr": 0.1}, "n": 1, "mean": 0.5, "low": None, "high": None},
              {"settings": {"train.lr": 0.2}, "n": 0, "mean": None, "low": None, "high": None}]
    figure = sweep_charts.sweep_figure(points, ["train.lr"])
    assert len(figure.data) == 1 and list(figure.data[0].x) == ["0.1"]  # a point not run yet is not drawn
    assert list(figure.data[0].error_y.array) == [0.0]
