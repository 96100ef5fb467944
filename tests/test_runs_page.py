"""AppTest of the Runs page's defaults (issue 21 item 7), its groups of seeds (error bars, verdicts) and the Train
page's "Repeat with N seeds"."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import streamlit as st
from history_helpers import LARGE, SMALL, make_run
from streamlit.testing.v1 import AppTest

from explorer.store.groups import resolve

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def runs_script() -> None:
    from explorer.ui import runs_panel

    runs_panel.render()


def start(**state) -> AppTest:
    st.cache_resource.clear()
    at = AppTest.from_function(runs_script, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(autouse=True)
def _clear_caches():
    yield
    st.cache_resource.clear()


def grouped_run(runs_dir: Path, run_id: str, group: str, accuracy: float, **options) -> None:
    folder = make_run(runs_dir, run_id, accuracies=(0.1, accuracy), checkpoint=False, **options)
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps(record | {"group": group}))


def test_compare_defaults_to_the_two_newest_finished_runs_and_rename_to_a_renamable_one(runs_dir: Path) -> None:
    make_run(runs_dir, "r1", name="old", accuracies=(0.3, 0.4), created="2024-01-01", checkpoint=False)
    make_run(runs_dir, "r2", name="newer", arch=LARGE, accuracies=(0.4, 0.5), created="2024-01-02", checkpoint=False)
    make_run(runs_dir, "r3", name="training", accuracies=(0.2,), created="2024-01-03", checkpoint=False,
             status="running")  # the newest run, still training (owned by this live process)
    at = start()
    assert (at.selectbox(key="runs.diff_a").value, at.selectbox(key="runs.diff_b").value) == ("r2", "r1")
    assert at.selectbox(key="runs.manage").value == "r2"
    at.text_input(key="runs.new_name").input("renamed").run()
    at.button(key="runs.rename").click().run()
    assert at.success[0].value == "Renamed r2 to “renamed”."


def test_a_deleted_pick_never_leaves_a_and_b_on_the_same_run(runs_dir: Path) -> None:
    for i in (1, 2, 3):
        make_run(runs_dir, f"r{i}", name=f"run {i}", accuracies=(0.1 * i,), created=f"2024-01-0{i}", checkpoint=False,
                 lr=0.01 * i)
    at = start()
    assert (at.selectbox(key="runs.diff_a").value, at.selectbox(key="runs.diff_b").value) == ("r3", "r2")
    at.selectbox(key="runs.manage").select("r3").run()
    at.button(key="runs.delete").click().run()
    at.button(key="runs.delete_yes").click().run()
    assert at.success[0].value == "Deleted r3."
    # A's run is gone: A takes the newest run B does not hold (it used to take B's run: "Same configuration").
    assert (at.selectbox(key="runs.diff_a").value, at.selectbox(key="runs.diff_b").value) == ("r1", "r2")
    assert not any(s.value == "Same configuration." for s in at.success)


@pytest.fixture()
def seed_groups(runs_dir: Path) -> Path:
    for i, accuracy in enumerate((0.50, 0.52, 0.54)):
        grouped_run(runs_dir, f"a{i}", "g-a", accuracy, name="wide", arch=LARGE, created=f"2024-01-0{i + 4}")
    for i, accuracy in enumerate((0.40, 0.41, 0.42)):
        grouped_run(runs_dir, f"b{i}", "g-b", accuracy, name="narrow", arch=SMALL, created=f"2024-01-0{i + 1}")
    return runs_dir


def test_groups_table_verdict_and_error_bars(seed_groups: Path) -> None:
    at = start(**{"runs.pareto_y": "final_test_accuracy", "runs.diff_a": "a2", "runs.diff_b": "b2"})
    groups = next(d.value for d in at.dataframe if "n" in d.value.columns).set_index("id")
    assert groups.loc["g-a", "n"] == 3 and groups.loc["g-a", "mean"] == pytest.approx(0.52)
    assert groups.loc["g-b", "std"] == pytest.approx(0.01)
    assert (at.selectbox(key="runs.group_a").value, at.selectbox(key="runs.group_b").value) == ("g-a", "g-b")
    verdicts = [m for m in at.metric if m.label.startswith("Verdict")]
    assert [m.value for m in verdicts] == ["A better", "A better"]  # the groups section and the runs' diff
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("Accuracy against"))
    bars = next(t for t in spec["data"] if t.get("name", "").startswith("group of seeds"))
    wide = [row[1] for row in bars["customdata"]].index("g-a")
    summary = resolve("g-a", seed_groups).summary
    assert bars["y"][wide] == pytest.approx(52.0)
    assert bars["error_y"]["array"][wide] == pytest.approx(100 * (summary.high - summary.mean))
    at.selectbox(key="runs.group_a").select("g-b").run()
    at.selectbox(key="runs.group_b").select("g-a").run()
    assert [m.value for m in at.metric if m.label.startswith("Verdict")][0] == "B better"


def test_runs_of_one_group_or_single_runs_say_why_there_is_no_verdict(seed_groups: Path) -> None:
    at = start(**{"runs.diff_a": "a2", "runs.diff_b": "a1"})
    assert any("seeds of one group (g-a)" in c.value for c in at.caption)
    assert len([m for m in at.metric if m.label.startswith("Verdict")]) == 1  # the groups section's only
    make_run(seed_groups, "loose", accuracies=(0.3,), created="2024-02-01", checkpoint=False)
    at = start(**{"runs.diff_a": "loose", "runs.diff_b": "a1"})
    assert any("Repeat with N seeds" in c.value for c in at.caption)
    assert len([m for m in at.metric if m.label.startswith("Verdict")]) == 1


def test_repeat_with_n_seeds_on_the_train_page_starts_one_group(runs_dir: Path, tmp_path, monkeypatch) -> None:
    from explorer.ui import train_state as train_keys

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("explorer/ui/pages/train.py").run()
    at.number_input(key=train_keys.SYNTHETIC_SIZE).set_value(100)
    at.number_input(key=train_keys.key("epochs")).set_value(1)
    at.number_input(key="train.repeat").set_value(2).run()
    at.button(key="train.start").click().run()
    assert not at.exception and not at.error
    records = [json.loads(p.read_text()) for p in runs_dir.glob("*/run.json")]
    assert len(records) == 2 and len({r["group"] for r in records}) == 1
    assert sorted(r["train"]["seed"] for r in records) == [0, 1]
    assert at.session_state["train.run_id"] in {r["id"] for r in records}
    deadline = time.monotonic() + 300  # a hang guard: the two processes end before the folder goes
    while any(json.loads((runs_dir / r["id"] / "run.json").read_text())["status"] in ("queued", "running")
              for r in records):
        assert time.monotonic() < deadline, "the repeated runs did not end"
        time.sleep(0.2)
