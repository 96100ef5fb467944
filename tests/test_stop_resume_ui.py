"""Stop and resume on the Train page (issue 21 item 6): what Stop keeps is said before the click, a Stop after
the run ended says so, "step N of N … running" never shows, and Resume sits beside a stopped run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import streamlit as st
from history_helpers import make_run
from streamlit.testing.v1 import AppTest

from explorer.store.events import fold
from explorer.store.runner import Runner
from explorer.store.runs import read_run
from explorer.ui import stop_resume
from explorer.ui.train_panel import HISTORY, RUN_ID, progress_text

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TRAIN_PAGE = "explorer/ui/pages/train.py"


def events(last_step: int, epochs_ended: int) -> list[dict]:
    """A run of 2 epochs x 2 steps, as its process writes it, up to `last_step` with `epochs_ended` epochs."""
    out = [{"type": "started", "time": 10.0, "device": "cpu", "classes": ["a", "b"], "total_steps": 4,
            "steps_per_epoch": 2, "epochs": 2, "config": {}},
           {"type": "baseline", "time": 11.0, "test_loss": 0.7, "test_accuracy": 0.5, "per_class": {}}]
    for step in range(1, last_step + 1):
        out.append({"type": "batch", "time": 11.0 + step, "epoch": (step + 1) // 2, "step": step, "loss": 1.0})
        if step % 2 == 0 and step // 2 <= epochs_ended:
            out.append({"type": "epoch", "time": 11.5 + step, "epoch": step // 2, "test_accuracy": 0.6,
                        "test_loss": 0.6, "seconds": 1.0, "eval_seconds": 0.5, "images_per_second": 10.0})
    return out


def live_script(run_events: list[dict], stopping: bool) -> None:
    """The Train page's fragment body alone, fed by a stand-in Runner."""
    import streamlit as st

    from explorer.store.events import parse_event
    from explorer.ui import stop_resume
    from explorer.ui.train_panel import live_view

    class Reader:
        def read(self):
            return [parse_event(e) for e in run_events], []

    class Runner:
        def reader(self, run_id: str) -> Reader:
            return Reader()

        def status(self, run_id: str) -> dict:
            return {"id": run_id, "status": "running"}

    if stopping:
        st.session_state[stop_resume.STOPPING] = "run-1"
    live_view(Runner(), "run-1", now=20.0)


def run_live(run_events: list[dict], stopping: bool = False) -> AppTest:
    at = AppTest.from_function(live_script, args=(run_events, stopping), default_timeout=30).run()
    assert not at.exception
    return at


def stop_note_shown(at: AppTest) -> str | None:
    return next((c.value for c in at.caption if c.value.startswith("Stop ")), None)


def test_what_stop_keeps_is_said_before_the_click():
    assert "keeps nothing" in stop_note_shown(run_live(events(0, 0)))
    assert "keeps the partial first epoch" in stop_note_shown(run_live(events(1, 0)))
    note = stop_note_shown(run_live(events(3, 1)))
    assert "weights after epoch 1, the last whole one" in note and "epoch 2 run so far are dropped" in note
    assert stop_note_shown(run_live(events(3, 1), stopping=True)) is None  # asked: "stopping" instead
    assert "**stopping**" in run_live(events(3, 1), stopping=True).markdown[0].value


def test_all_steps_done_reads_finishing_not_running():
    at = run_live(events(4, 1))  # every step run, the last epoch still being evaluated and saved
    headline = at.markdown[0].value
    progress = at.get("progress")[0].proto.text
    assert "**finishing**" in headline and "**running**" not in headline
    assert progress == "all 4 steps done · evaluating the last epoch and saving its checkpoint"
    assert "step 4 of 4" not in progress
    assert progress_text(fold(events(3, 1)), 0.75, 1.0).startswith("step 3 of 4 (75%)")


def test_stopped_messages_say_what_was_kept():
    history = fold(events(3, 1) + [{"type": "stopped", "time": 30.0, "summary": {}}])
    kept = stop_resume.stopped_message({"format_version": 2, "checkpoint": "model.safetensors",
                                        "checkpoint_kind": "epoch"}, history)
    assert "weights after epoch 1, the last whole one" in kept and "continues at epoch 2" in kept
    partial = stop_resume.stopped_message(
        {"format_version": 2, "checkpoint": "model.safetensors", "checkpoint_kind": "partial epoch",
         "partial_epoch": {"epoch": 1, "batches": 3, "steps_per_epoch": 7, "test_accuracy": 0.25}}, history)
    assert "after 3 of 7 batches" in partial and "test accuracy 25.0%" in partial and "trains epoch 1 again" in partial
    assert "before any training batch" in stop_resume.stopped_message({"format_version": 2}, fold(events(0, 0)))


def test_a_stop_clicked_after_the_run_ended_says_so(runs_dir):
    make_run(runs_dir, "r-done", status="finished")
    state: dict = {}
    stop_resume.request_stop(Runner(runs_dir), "r-done", state)
    assert state[stop_resume.STOP_MESSAGE].startswith("Run r-done had already ended (finished) when Stop was clicked")
    assert stop_resume.STOPPING not in state


@pytest.fixture
def stopped_run(runs_dir) -> str:
    folder = make_run(runs_dir, "r-stop", name="tiny", status="stopped", accuracies=(0.3,), data="synthetic:40")
    record = json.loads((folder / "run.json").read_text())
    record |= {"format_version": 2, "checkpoint_kind": "epoch", "partial_epoch": None}
    (folder / "run.json").write_text(json.dumps(record))
    return "r-stop"


def test_resume_sits_beside_a_stopped_run_on_the_train_page(runs_dir, stopped_run):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = stopped_run
    at.run()
    at.switch_page(TRAIN_PAGE).run()
    assert not at.exception
    assert any("weights after epoch 1, the last whole one" in w.value for w in at.warning)
    at.number_input(key=stop_resume.RESUME_EPOCHS).set_value(1).run()
    at.button(key="train.resume").click().run()
    assert not at.exception
    new_id = at.session_state[RUN_ID]
    assert new_id != stopped_run and any(f"Started run {new_id}" in s.value for s in at.success)
    record = read_run(new_id, runs_dir)
    assert record["resumed_from"] == stopped_run and record["name"] == "tiny +1"  # the same lineage
    deadline = time.monotonic() + 120
    while at.session_state[HISTORY]["history"].status not in ("finished", "failed", "stopped", "interrupted"):
        assert time.monotonic() < deadline, "the resumed run did not end"
        time.sleep(0.3)
        at.run()
    assert at.session_state[HISTORY]["history"].status == "finished"
    assert at.session_state[HISTORY]["history"].epochs == [2]  # it continued at the next epoch
    st.cache_resource.clear()
