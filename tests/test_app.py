"""The Streamlit app driven by AppTest (reruns the script; fragments are tested as plain functions)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer import PRESETS, model_cost
from explorer.engine.recipes import RECIPES
from explorer.ui import state as keys
from explorer.ui import train_state as train_keys
from explorer.ui.resources import HISTORY, RUN_ID

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def app(runs_dir, tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", str(tmp_path))  # the tests' image folders: an allowed data root
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
    """The budget gauge's Vega-Lite layer that draws the parameter bar."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    gauge = next(s for s in specs if "params vs budget" in s.get("title", {}).get("text", ""))
    return next(layer for layer in gauge["layer"] if "params" in layer["data"]["values"][0])


TRAIN_PAGE = "explorer/ui/pages/train.py"


def edit_width(at: AppTest, block: int, width: int) -> AppTest:
    """Edit a block's width as the Architecture page's blocks table does (its cell edits go through
    state.apply_block_edits; AppTest cannot type into a data editor: tests/test_browser.py does)."""
    assert keys.apply_block_edits(at.session_state, {block - 1: {"out_channels": width}}) == []
    return at.run()


def open_train(at: AppTest) -> AppTest:
    """Switch to the Train page (each page runs only its own panel)."""
    at.switch_page(TRAIN_PAGE).run()
    assert not at.exception
    return at


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
    assert next(m for m in app.metric if m.label == "Parameters").delta == "91,690 left"
    assert app.success[0].value.startswith("Within budget: 91,690")


def test_changing_a_width_changes_the_params_and_marks_custom(app):
    edit_width(app, 1, 30)
    conv = (dataclasses.replace(PRESETS["study-bn"].conv[0], out_channels=30), PRESETS["study-bn"].conv[1])
    expected = model_cost(dataclasses.replace(PRESETS["study-bn"], conv=conv)).params
    assert params_shown(app) == f"{expected:,}"
    assert expected != 164_310
    assert app.selectbox(key=keys.PRESET).value == "custom"
    # The edit survives a rerun caused by another widget (the budget is not an architecture edit).
    app.number_input(key=keys.BUDGET).set_value(300_000).run()
    assert app.session_state[keys.block_key(1, "out_channels")] == 30
    assert params_shown(app) == f"{expected:,}"
    assert app.selectbox(key=keys.PRESET).value == "custom"


def test_preset_picker_switches_and_over_budget_is_red(app):
    app.selectbox(key=keys.PRESET).set_value("study-wide").run()
    assert params_shown(app) == "267,530"
    assert app.session_state[keys.block_key(1, "out_channels")] == 32
    assert "over the budget" in app.warning[0].value
    bar = gauge_spec(app)
    assert bar["data"]["values"][0]["params"] == 267_530
    assert bar["mark"]["color"] == "#d62728"
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
    app.radio(key="arch.fit_mode").set_value("uniform").run()  # every width alike (the other mode: the largest)
    fit = next(b for b in app.button if b.label.startswith("Auto-fit"))
    fit.click().run()
    params = int(params_shown(app).replace(",", ""))
    assert 240_000 < params <= 256_000
    assert app.selectbox(key=keys.PRESET).value == "custom"
    assert app.session_state[keys.block_key(1, "out_channels")] < 32


def test_torchinfo_table_and_layer_table_are_shown(app):
    frames = {len(df.value): df.value for df in app.dataframe}
    layer_rows = len(model_cost(PRESETS["study-bn"]).layers)
    assert layer_rows in frames
    assert int(frames[layer_rows]["params"].sum()) == 164_310
    torchinfo = next(df.value for df in app.dataframe if "mult-adds" in df.value.columns)
    assert int(torchinfo["mult-adds"].sum()) == model_cost(PRESETS["study-bn"]).torchinfo_mult_adds


# --- the Train tab: pure pieces and the live view as a plain function ----------------------------------------


def fake_run_events(end: str | None = "finished") -> list[dict]:
    """Two epochs of two logged batches each, as a run process writes them."""
    events = [{"type": "started", "time": 10.0, "device": "cpu", "classes": ["a", "b"], "total_steps": 4,
               "params": 100, "flops": 200, "input_shape": [3, 32, 32], "config": {}, "steps_per_epoch": 2,
               "epochs": 2},
              {"type": "baseline", "time": 11.0, "test_loss": 0.7, "test_accuracy": 0.5,
               "per_class": {"a": 1.0, "b": 0.0}}]
    for step in (1, 2, 3, 4):
        epoch = (step + 1) // 2
        events.append({"type": "batch", "time": 11.0 + step, "epoch": epoch, "batch": 2 - step % 2, "step": step,
                       "loss": 1.0 / step, "lr": 0.1})
        if step % 2 == 0:
            events.append({"type": "epoch", "time": 11.0 + step, "epoch": epoch, "train_loss": 0.5,
                           "train_accuracy": 0.6, "test_loss": 0.6, "test_accuracy": 0.55 + 0.1 * epoch,
                           "per_class": {"a": 0.7, "b": 0.6}, "seconds": 2.0, "eval_seconds": 0.5,
                           "images_per_second": 500.0, "lr": 0.1})
    if end == "failed":
        events.append({"type": "failed", "time": 20.0, "error": "loss became NaN at epoch 2, batch 1"})
    elif end:
        events.append({"type": end, "time": 20.0, "summary": {}})
    return events


def live_script(events: list[dict], now: float) -> None:
    """An app whose only content is the Train tab's fragment body, fed by a stand-in Runner."""
    import streamlit as st

    from explorer.store.events import parse_event
    from explorer.ui.train_panel import live_view

    class Reader:
        def read(self):
            return [parse_event(e) for e in events], []

    class Runner:
        def reader(self, run_id: str) -> Reader:
            return Reader()

        def status(self, run_id: str) -> dict:
            return {"id": run_id, "status": "running"}

    st.session_state["history"] = live_view(Runner(), "run-1", now=now)


def test_live_view_of_a_running_run_shows_progress_and_four_charts():
    events = fake_run_events(end=None)[:5]  # started, baseline, steps 1 and 2 and epoch 1 not yet
    at = AppTest.from_function(live_script, args=(events, 13.0), default_timeout=30).run()
    assert not at.exception
    history = at.session_state["history"]
    assert history.status == "running" and history.step == 2
    progress = at.get("progress")[0].proto
    assert progress.value == 50
    # 0.75 s per training step (step 2 at t=13, less epoch 1's 0.5 s evaluation) x 2 steps + one evaluation
    assert "about 2 s left" in progress.text
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == 4
    loss = specs[0]["data"][0]
    assert loss["x"] == [1, 2] and loss["y"] == [1.0, 0.5]
    assert not at.error


def test_live_view_of_a_finished_run_shows_accuracy_and_per_class():
    at = AppTest.from_function(live_script, args=(fake_run_events(), 30.0), default_timeout=30).run()
    history = at.session_state["history"]
    assert history.status == "finished"
    assert "finished" in at.markdown[0].value and "test accuracy 75.0 %" in at.markdown[0].value
    assert at.get("progress")[0].proto.value == 100
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    accuracy = specs[1]["data"]
    assert [t["y"] for t in accuracy] == [[60.0, 60.0], [65.0, 75.0]]
    per_class = specs[2]["data"][-1]
    assert per_class["x"] == ["a", "b"] and per_class["y"] == [70.0, 60.0]


def test_live_view_of_a_failed_run_shows_why():
    at = AppTest.from_function(live_script, args=(fake_run_events(end="failed"), 30.0), default_timeout=30).run()
    assert not at.exception
    assert "loss became NaN at epoch 2, batch 1" in at.error[0].value


def test_time_budget_message_warns_when_the_epochs_do_not_fit():
    from explorer.ui.train_panel import time_budget_message
    from explorer.ui.train_state import epochs_that_fit

    text, over = time_budget_message(12.0, epochs=10, budget_minutes=1.0)
    assert over and "5 epochs fit in 1 min 00 s" in text and "10 epochs ≈ 2 min 00 s" in text
    text, over = time_budget_message(5.0, epochs=10, budget_minutes=1.0)
    assert not over and "12 epochs fit" in text
    assert epochs_that_fit(0.0, 60) == 0


@pytest.mark.parametrize("name", ["study", "fast", "best", "long"])
def test_recipe_values_round_trip(name):
    from explorer.engine.recipes import RECIPES
    from explorer.ui import train_state

    state: dict = {}
    train_state.load_recipe(state, name)
    assert train_state.train_from_values(state) == RECIPES[name]


# --- the Train tab with the real Runner (runs are processes) ------------------------------------------


def wait_for_status(at: AppTest, wanted: set[str], timeout: float = 120.0) -> str:
    """Rerun the app (as the fragment would tick) until the watched run reaches one of `wanted`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception
        status = at.session_state[HISTORY]["history"].status
        if status in wanted:
            return status
        time.sleep(0.3)
    raise AssertionError(f"run still {status} after {timeout:.0f} s")


def test_a_tiny_run_started_from_the_train_tab_finishes(app, runs_dir, image_folder_factory):
    open_train(app)
    folder = image_folder_factory("tiny", per_class=8)  # 3 classes of 28x28 RGB images
    app.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    app.text_input(key=train_keys.FOLDER).input(str(folder)).run()
    # The dataset sets the network's input shape and class count.
    assert (app.number_input(key=keys.IN_H).value, app.number_input(key=keys.NUM_CLASSES).value) == (28, 3)
    app.number_input(key=train_keys.key("epochs")).set_value(2)
    app.number_input(key=train_keys.key("batch_size")).set_value(8)
    app.number_input(key=train_keys.key("log_every")).set_value(1)
    app.text_input(key=train_keys.NAME).input("tiny from the app").run()
    assert app.selectbox(key=train_keys.RECIPE).value == "custom"
    app.button(key="train.start").click().run()
    assert not app.exception and not app.error
    run_id = app.session_state[RUN_ID]
    assert app.query_params["run"] in (run_id, [run_id])  # the URL carries it, for a reload
    assert wait_for_status(app, {"finished", "failed", "stopped"}) == "finished"
    record = json.loads((runs_dir / run_id / "run.json").read_text())
    assert record["status"] == "finished" and record["name"] == "tiny from the app"
    assert record["data"] == f"folder:{folder}" and record["num_classes"] == 3
    # Edited settings are recorded as the recipe they started from plus the flags that changed (the command).
    assert record["preset"] == "study-bn" and record["recipe"] == "fast"
    assert record["command"][record["command"].index("--epochs") + 1] == "2"
    assert record["train"]["epochs"] == 2 and record["train"]["batch_size"] == 8
    status = next(m.value for m in app.markdown if "run `" in m.value)
    assert "finished" in status and run_id in status
    assert app.get("progress")[0].proto.value == 100
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    accuracy = next(s for s in specs if "Accuracy" in s["layout"]["title"]["text"])
    assert accuracy["data"][1]["x"] == [1, 2]
    per_class = next(s for s in specs if "Per-class" in s["layout"]["title"]["text"])
    assert per_class["data"][-1]["x"] == ["a", "b", "c"]
    # A widget click after the end changes nothing about the run.
    app.slider(key=keys.DROPOUT).set_value(0.2).run()
    assert app.session_state[RUN_ID] == run_id and not app.exception


def test_a_tiny_synthetic_run_finishes(app, runs_dir):
    open_train(app)
    # The defaults a new user sees (synthetic data, the study's final net, the "fast" recipe), made tiny.
    app.number_input(key=train_keys.SYNTHETIC_SIZE).set_value(200)
    app.number_input(key=train_keys.key("epochs")).set_value(1).run()
    app.button(key="train.start").click().run()
    run_id = app.session_state[RUN_ID]
    assert wait_for_status(app, {"finished", "failed", "stopped"}) == "finished"
    record = json.loads((runs_dir / run_id / "run.json").read_text())
    assert record["data"] == "synthetic:200" and record["params"] == 164_310
    history = app.session_state[HISTORY]["history"]
    assert history.epochs == [1] and 0.0 <= history.test_accuracy[0] <= 1.0
    assert history.baseline_accuracy is not None and len(history.per_class) == 10


def test_stop_ends_a_run_within_a_batch(app, runs_dir):
    open_train(app)
    app.number_input(key=train_keys.key("epochs")).set_value(200)
    app.number_input(key=train_keys.key("batch_size")).set_value(16).run()
    app.button(key="train.start").click().run()
    run_id = app.session_state[RUN_ID]
    app.button(key="train.stop").click().run()
    assert wait_for_status(app, {"finished", "failed", "stopped"}) == "stopped"
    assert json.loads((runs_dir / run_id / "run.json").read_text())["status"] == "stopped"
    assert "stopped" in app.warning[0].value


def test_the_url_reattaches_a_run(app, runs_dir, image_folder_factory):
    open_train(app)
    folder = image_folder_factory("reattach", per_class=4)
    app.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    app.text_input(key=train_keys.FOLDER).input(str(folder)).run()
    app.number_input(key=train_keys.key("epochs")).set_value(1).run()
    app.button(key="train.start").click().run()
    run_id = app.session_state[RUN_ID]
    wait_for_status(app, {"finished", "failed", "stopped"})
    # A reloaded page is a new session with ?run=ID in the URL.
    fresh = AppTest.from_file(APP, default_timeout=60)
    fresh.query_params["run"] = run_id
    fresh.run()
    open_train(fresh)
    assert not fresh.exception
    assert fresh.session_state[RUN_ID] == run_id
    assert fresh.session_state[HISTORY]["history"].status == "finished"


def test_bad_folder_shows_an_error(app, tmp_path):
    open_train(app)
    app.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    app.text_input(key=train_keys.FOLDER).input(str(tmp_path / "nowhere")).run()
    assert not app.exception
    assert "nowhere" in app.error[0].value


def test_estimate_gives_seconds_per_epoch_and_the_epochs_that_fit(app, image_folder_factory):
    open_train(app)
    from explorer.ui.train_panel import ESTIMATE, time_budget_message

    folder = image_folder_factory("estimate", per_class=8)
    app.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    app.text_input(key=train_keys.FOLDER).input(str(folder)).run()
    app.number_input(key=train_keys.key("batch_size")).set_value(8)
    app.number_input(key=train_keys.TIME_BUDGET).set_value(0.1).run()
    app.button(key="train.estimate_button").click().run()
    assert not app.exception
    seconds = app.session_state[ESTIMATE]["seconds"]
    assert seconds > 0
    epochs = app.number_input(key=train_keys.key("epochs")).value
    text, over = time_budget_message(seconds, epochs, 0.1)
    shown = (app.warning if over else app.info)[0].value
    assert shown.startswith(text)
    # Changing a setting makes the estimate stale rather than wrong.
    app.number_input(key=train_keys.key("batch_size")).set_value(4).run()
    assert any("estimate again" in c.value for c in app.caption)


def test_a_hidden_block_keeps_its_values(app):
    app.slider(key=keys.N_CONV).set_value(3).run()
    edit_width(app, 3, 77)
    app.slider(key=keys.N_CONV).set_value(2).run()
    assert params_shown(app) == "164,310"  # back to the preset's shape (still labelled custom)
    app.slider(key=keys.N_CONV).set_value(3).run()
    assert app.session_state[keys.block_key(3, "out_channels")] == 77


def test_a_stale_run_link_is_dropped_without_an_error(runs_dir):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = "no-such-run"
    at.run()
    open_train(at)
    assert not at.exception and not at.error
    assert any("no-such-run is no longer" in i.value for i in at.info)
    assert RUN_ID not in at.session_state
    assert "run" not in at.query_params


def test_a_failing_run_shows_why(app):
    open_train(app)
    # A huge learning rate makes the loss blow up: the run fails and the tab says why, with no traceback.
    app.number_input(key=train_keys.SYNTHETIC_SIZE).set_value(200)
    app.number_input(key=train_keys.key("lr")).set_value(100.0)
    app.number_input(key=train_keys.key("epochs")).set_value(3)
    app.number_input(key=train_keys.key("batch_size")).set_value(16).run()
    app.button(key="train.start").click().run()
    assert wait_for_status(app, {"finished", "failed", "stopped"}) == "failed"
    assert not app.exception
    message = app.error[0].value
    assert message.startswith("The run failed:") and "learning rate" in message


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_run_without_a_gpu_is_an_error_on_the_train_page(runs_dir):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("explorer/ui/pages/train.py").run()
    at.session_state[train_keys.key("device")] = "cuda"
    at.button(key="train.start").click().run()
    assert not at.exception
    assert any("no CUDA GPU" in e.value for e in at.error)
    assert RUN_ID not in at.session_state and list(runs_dir.iterdir()) == []


# --- pages and the design in the URL ---------------------------------------------------------------------------


def test_each_page_runs_only_its_own_panel(app):
    assert params_shown(app) == "164,310"
    app.switch_page("explorer/ui/pages/runs.py").run()
    assert not app.exception
    assert not app.metric  # the Architecture page did not run
    assert app.selectbox(key=keys.PRESET).value == "study-bn"  # the sidebar is shared
    with pytest.raises(KeyError):
        app.number_input(key=train_keys.key("epochs"))
    open_train(app)
    assert app.number_input(key=train_keys.key("epochs")).value == RECIPES["fast"].epochs


def test_train_settings_survive_a_visit_to_another_page(app):
    open_train(app)
    app.number_input(key=train_keys.key("epochs")).set_value(9).run()
    app.switch_page("explorer/ui/pages/architecture.py").run()
    edit_width(app, 1, 30)
    open_train(app)
    assert app.number_input(key=train_keys.key("epochs")).value == 9
    assert app.selectbox(key=train_keys.RECIPE).value == "custom"


def test_the_url_follows_the_edits_and_reopens_the_same_design(app):
    assert not any(k in app.query_params for k in ("preset", "recipe", "d"))  # the defaults: a bare URL
    app.selectbox(key=keys.PRESET).set_value("tutorial").run()
    edit_width(app, 1, 9)
    open_train(app)
    app.number_input(key=train_keys.key("epochs")).set_value(7).run()
    link = {k: app.query_params[k] for k in ("preset", "recipe", "d") if k in app.query_params}
    assert link["preset"] in ("tutorial", ["tutorial"]) and "d" in link
    st.cache_data.clear()
    other = AppTest.from_file(APP, default_timeout=60)  # another browser, another machine: only the URL travels
    for k, v in link.items():
        other.query_params[k] = v[-1] if isinstance(v, list) else v
    other.run()
    assert not other.exception and not other.warning
    conv = (dataclasses.replace(PRESETS["tutorial"].conv[0], out_channels=9), PRESETS["tutorial"].conv[1])
    assert params_shown(other) == f"{model_cost(dataclasses.replace(PRESETS['tutorial'], conv=conv)).params:,}"
    assert other.selectbox(key=keys.PRESET).value == "custom"
    open_train(other)
    assert other.number_input(key=train_keys.key("epochs")).value == 7


def test_a_preset_link_opens_that_preset():
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["preset"] = "tutorial"
    at.run()
    assert not at.exception and not at.warning
    assert params_shown(at) == "62,006" and at.selectbox(key=keys.PRESET).value == "tutorial"


@pytest.mark.parametrize("link", [{"d": "garbage"}, {"preset": "no-such-net"}, {"d": "j" + "A" * 50_000}])
def test_a_bad_link_shows_a_warning_and_the_defaults(link):
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in link.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception and not at.error
    assert at.warning[0].value.startswith("This link's design cannot be read")
    assert params_shown(at) == "164,310"
    assert not any(k in at.query_params for k in ("preset", "d"))  # the bad link is replaced by the defaults'


# --- issue 13: what a new user tripped over ---------------------------------------------------------------


def block_panel(at: AppTest, index: int):
    return next(e for e in at.sidebar.expander if e.label.startswith(f"conv{index} "))


def test_a_conv_block_panel_keeps_its_identity_while_its_label_follows_the_edits(app):
    # The browser keeps a panel open across reruns only while its block id stays the same; the label (a
    # summary of the block) changes with every edit, so the id must come from the key, not the label.
    before = block_panel(app, 1)
    edit_width(app, 1, 30)
    app.segmented_control(key=keys.block_key(1, "kernel")).set_value(3).run()
    after = block_panel(app, 1)
    assert before.label.startswith("conv1 · 25 ch · 5×5") and after.label.startswith("conv1 · 30 ch · 3×3")
    assert after._block_id and after._block_id == before._block_id
    assert block_panel(app, 2)._block_id != after._block_id


def test_layer_table_lists_the_dropout_layers_torchinfo_lists():
    from explorer.arch.summary import torchinfo_summary
    from explorer.ui.arch_panel import LAYER_COLUMNS, layer_table

    cfg = dataclasses.replace(PRESETS["study-bn"], dropout=0.3, dropout_conv=True)
    table = layer_table(model_cost(cfg), cfg)
    torchinfo = torchinfo_summary(cfg, (3, 32, 32), 10).rows
    assert (table["type"] == "Dropout").sum() == (torchinfo["type"] == "Dropout").sum() == 4
    assert table.loc[table["layer"] == "fc1.drop", "output shape"].item() == "100"
    assert table.loc[table["layer"] == "conv2.drop", "output shape"].item() == "50 × 5 × 5"
    assert int(table["params"].sum()) == model_cost(cfg).params
    no_dropout = layer_table(model_cost(PRESETS["study-bn"]), PRESETS["study-bn"])
    assert "Dropout" not in set(no_dropout["type"])
    assert LAYER_COLUMNS["type"]["width"] >= 120  # "BatchNorm2d" is not clipped


def test_budget_delta_reads_like_the_gauge():
    from explorer.ui.arch_panel import budget_delta

    assert budget_delta(164_310, 256_000) == ("91,690 left", "green")
    assert budget_delta(250_000, 256_000) == ("6,000 left", "orange")
    assert budget_delta(267_530, 256_000) == ("11,530 over", "red")


def test_the_parameters_card_has_no_arrow(app):
    card = next(m for m in app.metric if m.label == "Parameters")
    assert card.delta == "91,690 left"
    assert card.proto.direction == card.proto.MetricDirection.NONE and card.proto.color == card.proto.MetricColor.GREEN


def test_unavailable_sources_are_only_in_the_pickers_help(app):
    from explorer.ui.source_picker import picker_help

    open_train(app)
    assert not any(c.value.startswith("Not available") for c in app.caption)
    help_text = picker_help([{"name": "cifar10", "label": "CIFAR-10 (torchvision)", "available": False,
                              "why": "no copy in data/"}, {"name": "synthetic", "label": "Synthetic",
                                                           "available": True, "why": ""}])
    assert help_text.endswith("Not available here: CIFAR-10 (torchvision): no copy in data/")
    assert "Not available" not in picker_help([{"name": "synthetic", "label": "S", "available": True}])


def test_steps_per_epoch_and_a_batch_larger_than_the_training_set():
    from explorer.ui.train_panel import steps_note

    assert steps_note(6_000, 128, 5) == ("47 steps per epoch, 235 in all", None)
    note, warning = steps_note(6_000, 10_000, 5)
    assert note == "1 step per epoch, 5 in all"
    assert "larger than the training set (6,000 images)" in warning and "5 steps in all" in warning


def test_the_train_page_warns_before_start_when_the_batch_is_too_large(app):
    open_train(app)
    app.number_input(key=train_keys.SYNTHETIC_SIZE).set_value(200)
    app.number_input(key=train_keys.key("epochs")).set_value(3)
    app.number_input(key=train_keys.key("batch_size")).set_value(500).run()
    assert any("1 step per epoch, 3 in all" in c.value for c in app.caption)
    assert "batch size (500) is larger than the training set (200 images)" in app.warning[0].value
    app.number_input(key=train_keys.key("batch_size")).set_value(50).run()
    assert any("4 steps per epoch, 12 in all" in c.value for c in app.caption) and not app.warning


def test_progress_text_shows_the_steps_run_and_how_the_run_ended():
    from explorer.store.events import fold
    from explorer.ui.train_panel import progress_text, throughput_text

    events = fake_run_events(end=None)[:4] + [
        {"type": "batch", "time": 13.0, "step": 3, "loss": None},
        {"type": "failed", "time": 14.0, "error": "the training loss became NaN in epoch 2, batch 1"}]
    history = fold(events)
    assert progress_text(history, 0.75, None) == "failed at step 3 of 4 (75%)"
    running = fold(fake_run_events(end=None))
    assert progress_text(running, 1.0, 0.0) == "all 4 steps done · evaluating the last epoch and saving its checkpoint"
    assert throughput_text(running) == "500 training img/s (last epoch)"
    finished = fold(fake_run_events())
    assert throughput_text(finished) == "500 training img/s (whole run)"
    assert throughput_text(finished) and finished.summary["images_per_second"] == 500.0


def test_a_run_stopped_before_its_first_epoch_says_there_is_no_checkpoint():
    events = fake_run_events(end=None)[:3] + [{"type": "stopped", "time": 13.0, "summary": {}}]
    at = AppTest.from_function(live_script, args=(events, 14.0), default_timeout=30).run()
    assert not at.exception
    assert "before its first epoch ended" in at.warning[0].value
    assert "stopped at step 1 of 4" in at.get("progress")[0].proto.text


def test_the_watched_run_shows_its_own_settings_and_loads_them(runs_dir):
    from history_helpers import make_run

    make_run(runs_dir, "r-tut", name="tutorial run", arch=PRESETS["tutorial"], preset="tutorial",
             data="synthetic:40", accuracies=(0.3, 0.4, 0.5), lr=0.02)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = "r-tut"  # a reload while watching it: the form starts from the defaults
    at.run()
    open_train(at)
    line = next(c.value for c in at.caption if c.value.startswith("This run's settings"))
    assert "**tutorial** network" in line and "3 epochs" in line and "lr 0.02" in line
    assert "synthetic:40" in line and "the form above differs" in line
    at.button(key="train.load_run").click().run()
    assert not at.exception
    assert at.selectbox(key=keys.PRESET).value == "tutorial" and params_shown_on_train(at) == "62,006"
    assert at.number_input(key=train_keys.key("epochs")).value == 3
    assert at.number_input(key=train_keys.key("lr")).value == 0.02
    assert at.number_input(key=train_keys.SYNTHETIC_SIZE).value == 40
    assert any("(the same as the form)" in c.value for c in at.caption)
    assert at.button(key="train.load_run").disabled


def params_shown_on_train(at: AppTest) -> str:
    """The parameter count in the Start note ("Start trains **x** with recipe **y** (62,006 params on ...")."""
    note = next(c.value for c in at.caption if c.value.startswith("Start trains"))
    return note.split(" params on")[0].rsplit("(", 1)[1]


def test_a_file_instead_of_a_folder_says_so(app, tmp_path, image_folder_factory):
    open_train(app)
    file = tmp_path / "labels.csv"
    file.write_text("a,b\n")
    app.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    app.text_input(key=train_keys.FOLDER).input(str(file)).run()
    assert f"{file} is a file, not a folder" in app.error[0].value and str(tmp_path) in app.error[0].value
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "cat.png").write_bytes(b"")
    app.text_input(key=train_keys.FOLDER).input(str(flat)).run()
    message = app.error[0].value
    assert "no train/ folder and no class sub-folders; it holds 1 file(s) (cat.png)" in message
    assert f"{flat}/train/<class>/<image>" in message and ".png" in message


def test_a_resume_on_the_checkpoints_page_is_what_the_train_page_shows(runs_dir):
    from history_helpers import make_run

    make_run(runs_dir, "r-old", name="old", arch=PRESETS["tutorial"], data="synthetic:40")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = "r-old"
    at.run()
    open_train(at)
    assert any("run `r-old`" in m.value for m in at.markdown)
    at.switch_page("explorer/ui/pages/checkpoints.py").run()
    at.number_input(key="ckpt.resume_epochs").set_value(1).run()
    at.button(key="ckpt.resume").click().run()
    assert not at.exception and "open the Train page to follow it" in at.success[0].value
    new_id = at.session_state[RUN_ID]
    assert new_id != "r-old"
    open_train(at)
    status = next(m.value for m in at.markdown if "run `" in m.value)
    assert f"run `{new_id}`" in status and "r-old" not in status
    assert at.query_params["run"] in (new_id, [new_id])  # a reload keeps watching the resumed run
    wait_for_status(at, {"finished", "failed", "stopped", "interrupted"})
