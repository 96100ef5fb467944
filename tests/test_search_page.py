"""The Search page driven by AppTest: a tiny synthetic search run to the end (through the CLI and through the
page's Start), its trials and Pareto points on the page, a bad space, Open in Architecture, Train longer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer.arch.config import MAX_CONV_BLOCKS
from explorer.arch.presets import PRESETS
from explorer.search import control
from explorer.search.space import section_specs
from explorer.search.study import default_storage, load_search, rows
from explorer.store.runs import active_runs, read_run
from explorer.ui import search_panel
from explorer.ui import state as arch_keys

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGE = "explorer/ui/pages/search.py"
TINY = {"recipe": "fast",
        "arch": {"depth": {"low": 1, "high": 2}, "width": {"low": 4, "high": 8}, "pool": "max", "head": "avgpool"},
        "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 64, "augment": [],
                  "tta_flip": False}}


@pytest.fixture
def app(runs_dir, tmp_path, monkeypatch) -> Iterator[AppTest]:
    yield from open_search_page(tmp_path, monkeypatch)


def open_search_page(tmp_path: Path, monkeypatch) -> Iterator[AppTest]:
    """The app on its Search page (the runs folder is the `runs_dir` fixture's), caches cleared around it."""
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "data"))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    yield at
    st.cache_resource.clear()


def _cli(*argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "explorer", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _wait_until_stopped(name: str, runs_dir: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while control.is_running(name, runs_dir):
        assert time.monotonic() < deadline, f"search {name} still running after {timeout} s"
        time.sleep(0.5)


def _metric(at: AppTest, label: str) -> int:
    return int(next(m.value for m in at.metric if m.label == label))


def _figure(at: AppTest, title_word: str) -> dict:
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return next(f for f in figures if title_word in f["layout"]["title"]["text"])


def _trace(figure: dict, name: str) -> dict:
    return next(t for t in figure["data"] if t.get("name") == name)


def test_a_finished_cli_search_shows_its_trials_and_pareto_points(app, runs_dir, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(TINY))
    _cli("search", "create", "cli1", "--space", str(space), "--data", "synthetic:200", "--trial-epochs", "1")
    _cli("search", "run", "cli1", "--trials", "2")
    app.run()
    app.selectbox(key=search_panel.PICK).set_value("cli1").run()
    assert not app.exception and not app.error
    counted = sum(_metric(app, s) for s in ("Complete", "Pruned", "Rejected"))
    assert counted == 2 and _metric(app, "Failed") == 0 and _metric(app, "Running") == 0
    complete = _metric(app, "Complete")
    assert complete >= 1  # 1-2 blocks of 4-8 channels are far under the budget: nothing is rejected
    params = _figure(app, "parameters")
    assert len(_trace(params, "trials")["x"]) == complete
    front = _trace(params, "Pareto front")
    assert front["x"] and all(0 <= y <= 1 for y in front["y"])
    assert params["layout"]["shapes"][0]["x0"] == 256_000  # the budget line
    table = app.dataframe[0].value
    assert sorted(table["Trial"]) == [0, 1] and set(table["State"]) <= {"complete", "pruned"}
    assert app.button(key="search.continue").disabled is False and app.button(key="search.stop").disabled


def test_a_bad_space_is_refused_with_the_field_named(app):
    bad = json.loads(app.text_area(key=search_panel.SPACE).value)
    bad["arch"]["depth"] = {"low": 5, "high": 2}
    app.text_area(key=search_panel.SPACE).set_value(json.dumps(bad)).run()
    assert any("space arch.depth: empty range" in e.value for e in app.error)
    assert app.button(key="search.start").disabled
    app.text_area(key=search_panel.SPACE).set_value("{not json").run()
    assert any("not valid JSON" in e.value for e in app.error)


def test_the_space_starts_around_the_sidebars_preset(app):
    space = json.loads(app.text_area(key=search_panel.SPACE).value)
    preset = app.session_state[arch_keys.PRESET]
    assert space["recipe"] == "fast" and space["arch"]["widths"] == [b.out_channels for b in PRESETS[preset].conv]
    assert not app.error and app.button(key="search.start").disabled is False


def _space(app: AppTest) -> dict:
    return json.loads(app.text_area(key=search_panel.SPACE).value)


def test_the_space_widgets_follow_the_schema_and_rewrite_the_json(app):
    from explorer.ui import space_editor as editor

    space = _space(app)
    depth = space["arch"]["depth"]
    assert app.selectbox(key=editor.key("arch", "depth", "mode")).value == "range"
    low = editor.key("arch", "depth", "low")
    assert app.number_input(key=low).value == depth["low"]
    # The schema's limits for depth, checked on the server: a value past them is refused, named, and undone.
    app.number_input(key=low).set_value(MAX_CONV_BLOCKS + 1).run()
    label = section_specs("arch")["depth"].label
    assert [e.value for e in app.error] == [f"{label} (low end): {MAX_CONV_BLOCKS + 1} is out of range; enter a "
                                            f"whole number from 1 to {MAX_CONV_BLOCKS}. Kept {depth['low']}."]
    assert app.number_input(key=low).value == depth["low"] and _space(app)["arch"]["depth"] == depth
    assert app.multiselect(key=editor.key("train", "augment", "choices")).options == [
        "horizontal flip + random crop", "horizontal flip", "random crop", "none"]  # every combination
    # A widget edit rewrites the JSON; "not searched" drops the entry; a typed list of numbers is read.
    app.number_input(key=editor.key("arch", "depth", "high")).set_value(depth["low"]).run()
    app.selectbox(key=editor.key("arch", "dropout", "mode")).set_value("not searched").run()
    app.text_input(key=editor.key("train", "batch_size", "typed")).set_value("64, 128").run()
    space = _space(app)
    assert space["arch"]["depth"] == {"low": depth["low"], "high": depth["low"]}
    assert "dropout" not in space["arch"] and space["train"]["batch_size"] == {"choices": [64, 128]}
    # Any other schema field can be added, fixed at the recipe's value.
    app.selectbox(key=editor.ADD).set_value("train.momentum").run()
    assert _space(app)["train"]["momentum"] == 0.9 and not app.error, [e.value for e in app.error]
    assert app.selectbox(key=editor.key("train", "momentum", "mode")).value == "fixed"
    # A typed value that is not a number: the field is named, the JSON keeps its last good state.
    app.text_input(key=editor.key("train", "batch_size", "typed")).set_value("64, lots").run()
    assert any("space train.batch_size: cannot read" in e.value for e in app.error)
    assert _space(app)["train"]["batch_size"] == {"choices": [64, 128]}
    # ... and Start waits until the value on screen is readable (it would search the JSON's older space).
    assert app.button(key="search.start").disabled
    app.text_input(key=editor.key("train", "batch_size", "typed")).set_value("64, 256").run()
    assert not app.error and app.button(key="search.start").disabled is False


def test_an_edited_json_space_reseeds_the_widgets(app):
    from explorer.ui import space_editor as editor

    app.text_area(key=search_panel.SPACE).set_value(json.dumps(TINY)).run()
    assert app.number_input(key=editor.key("arch", "width", "high")).value == 8
    assert app.text_input(key=editor.key("arch", "pool", "value")).value == '"max"'
    assert app.selectbox(key=editor.key("train", "lr", "mode")).value == "range"
    assert app.checkbox(key=editor.key("train", "lr", "log")).value is True


def test_start_on_the_page_runs_the_search_then_open_and_train_longer(app, runs_dir):
    app.text_input(key=search_panel.NAME).set_value("page1")
    app.text_area(key=search_panel.SPACE).set_value(json.dumps(TINY))
    app.number_input(key=search_panel.SYNTHETIC_SIZE).set_value(200)
    app.radio(key=search_panel.PER_TRIAL).set_value("epochs per trial")
    app.run()
    app.number_input(key=search_panel.TRIAL_EPOCHS).set_value(1)
    app.number_input(key=search_panel.WORKERS).set_value(1)
    app.number_input(key=search_panel.TRIALS).set_value(2)
    app.button(key="search.start").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.selectbox(key=search_panel.PICK).value == "page1"
    stamp = control.read_process("page1", runs_dir)
    assert "--trials" in stamp["command"] and stamp["command"][stamp["command"].index("--trials") + 1] == "2"
    _wait_until_stopped("page1", runs_dir)
    app.run()
    assert sum(_metric(app, s) for s in ("Complete", "Pruned", "Rejected")) >= 2
    assert _metric(app, "Complete") >= 1, control.last_message("page1", runs_dir)
    best = app.selectbox(key=search_panel.TRIAL).value
    study, _ = load_search("page1", default_storage("page1", runs_dir))
    row = next(r for r in rows(study) if r["number"] == best)
    app.button(key="search.open").click().run()
    assert not app.exception
    shown = next(m.value for m in app.metric if m.label == "Parameters")  # the Architecture page is in view
    assert int("".join(c for c in shown if c.isdigit())) == row["params"]
    n_conv = app.session_state[arch_keys.N_CONV]
    assert app.session_state[arch_keys.PRESET] == arch_keys.CUSTOM and 1 <= n_conv <= 2
    # Every block of the trial (a second block's width is checked only when the trial has two).
    assert all(4 <= app.session_state[arch_keys.block_key(i, "out_channels")] <= 8 for i in range(1, n_conv + 1)), \
        (row, n_conv, app.session_state[arch_keys.block_key(1, "out_channels")])
    app.switch_page(PAGE).run()
    assert app.selectbox(key=search_panel.TRIAL).value == best
    app.number_input(key=search_panel.LONGER_EPOCHS).set_value(1)
    app.button(key="search.longer").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    run_id = app.session_state["train.run_id"]
    record = read_run(run_id, runs_dir)
    assert record["name"] == f"search page1 trial {best} longer" and record["data"] == "synthetic:200"


def test_stop_ends_the_search_and_queues_its_trial_again(app, runs_dir, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(TINY))
    _cli("search", "create", "long", "--space", str(space), "--data", "synthetic:400", "--trial-epochs", "1000")
    app.run()
    app.selectbox(key=search_panel.PICK).set_value("long").run()
    app.number_input(key=search_panel.WORKERS).set_value(1)
    app.button(key="search.continue").click().run()
    assert not app.error and app.button(key="search.stop").disabled is False
    deadline = time.monotonic() + 120
    while not active_runs(runs_dir):  # the trial's run trains (its process stops cleanly on SIGTERM)
        assert time.monotonic() < deadline, "no trial started training"
        time.sleep(0.5)
    app.button(key="search.stop").click().run()
    _wait_until_stopped("long", runs_dir, timeout=60)
    app.run()
    assert _metric(app, "Failed") == 1 and _metric(app, "Waiting") == 1 and _metric(app, "Running") == 0
    assert app.button(key="search.continue").disabled is False


# ------------------------------------------------------------------------------------------- reasons (issue 21)


def test_the_form_shows_the_workers_and_trials_the_search_was_started_with(app, runs_dir, tmp_path):
    """After a search (and after a reload: a new session), its boxes show what was entered, not the defaults."""
    from explorer.atomic import atomic_write_json
    from explorer.search.study import create_search, make_settings

    create_search("entered", default_storage("entered", runs_dir), make_settings(TINY, "synthetic:200",
                                                                                  trial_epochs=1))
    command = control.run_command("entered", 1, 4, None, runs_dir, tmp_path / "data")
    atomic_write_json(control.search_dir("entered", runs_dir) / control.PROCESS_NAME, {"command": command})
    assert (search_panel.DEFAULTS[search_panel.WORKERS], search_panel.DEFAULTS[search_panel.TRIALS]) == (2, 20)
    app.run()
    app.selectbox(key=search_panel.PICK).set_value("entered").run()
    assert not app.exception
    assert app.number_input(key=search_panel.WORKERS).value == 1
    assert app.number_input(key=search_panel.TRIALS).value == 4
    app.number_input(key=search_panel.TRIALS).set_value(7).run()  # an edit by the user stays
    assert app.number_input(key=search_panel.TRIALS).value == 7


def test_a_trial_waiting_for_a_training_slot_says_so(app, runs_dir):
    import threading

    from explorer.search.study import create_search, make_settings
    from explorer.search.worker import run_worker
    from explorer.store.runner import Slots

    storage = default_storage("queued", runs_dir)
    create_search("queued", storage, make_settings(TINY, "synthetic:200", trial_epochs=1))
    holders = [Slots(runs_dir, 2) for _ in range(2)]  # two other runs hold both training slots
    assert all(h.acquire() for h in holders)
    worker = threading.Thread(target=run_worker, args=("queued", storage, 1), kwargs={"runs_dir": runs_dir})
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while not control.slot_waits(rows(load_search("queued", storage)[0]), runs_dir):
            assert time.monotonic() < deadline and worker.is_alive(), "the trial never queued for a slot"
            time.sleep(0.1)
        app.run()
        app.selectbox(key=search_panel.PICK).set_value("queued").run()
        assert not app.exception
        (info,) = [i.value for i in app.info if "training slot" in i.value]
        assert info.startswith("Trial 0 is waiting for a training slot (2 runs hold them): at most 2 runs train")
        table = app.dataframe[0].value
        assert table.loc[table["Trial"] == 0, "Why"].item() == "waiting for a training slot (2 runs hold them)"
    finally:
        for holder in holders:
            holder.release()
        worker.join(timeout=300)
    (row,) = rows(load_search("queued", storage)[0])
    assert row["state"] == "complete" and not control.slot_waits([row], runs_dir)


def test_a_setting_switched_to_a_range_starts_at_its_declared_search_range(app):
    from explorer.ui import space_editor as editor

    app.text_area(key=search_panel.SPACE).set_value(json.dumps(TINY)).run()  # no dropout in it
    app.selectbox(key=editor.ADD).set_value("arch.dropout").run()
    app.selectbox(key=editor.key("arch", "dropout", "mode")).set_value("range").run()
    assert not app.exception and not app.error
    assert _space(app)["arch"]["dropout"] == {"low": 0.0, "high": 0.3}  # its search_range, not the limits 0-0.9
    app.selectbox(key=editor.ADD).set_value("train.bn_bias_lr").run()
    app.selectbox(key=editor.key("train", "bn_bias_lr", "mode")).set_value("range").run()
    assert _space(app)["train"]["bn_bias_lr"] == {"low": 0.01, "high": 100.0, "log": True}  # limits, log scale


def test_a_refused_storage_is_said_before_start_and_start_is_disabled(app, tmp_path):
    app.text_input(key=search_panel.STORAGE).set_value(f"sqlite:///{tmp_path}/any.db").run()
    assert any("the app keeps sqlite files inside the runs folder" in e.value for e in app.error)
    assert app.button(key="search.start").disabled and not (tmp_path / "any.db").exists()
    app.text_input(key=search_panel.STORAGE).set_value("postgresql+psycopg://u:pw@db.example/s").run()
    assert not app.error and app.button(key="search.start").disabled is False


@pytest.mark.parametrize("name", ["a/b", "../x", ".hidden"])
def test_a_refused_search_name_is_said_before_start_and_start_is_disabled(app, runs_dir, name):
    app.text_input(key=search_panel.NAME).set_value(name).run()
    assert [e.value for e in app.error] == [f"search name {name!r}: use a plain name such as s1 (no '/', not "
                                            f"starting with '.', at most 80 characters)."]
    assert app.button(key="search.start").disabled and not (runs_dir / "searches").exists()
    app.text_input(key=search_panel.NAME).set_value("  ").run()  # blank: a dated name is made at Start
    assert not app.error and app.button(key="search.start").disabled is False
