"""AppTest of the Checkpoints and Runs panels (each rendered alone by a tiny script)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from history_helpers import LARGE, SMALL, make_run
from streamlit.testing.v1 import AppTest

from explorer.engine.data import load_dataset
from explorer.engine.evaluate import evaluate_checkpoint
from explorer.store.checkpoint import load_checkpoint


def checkpoints_script() -> None:
    from explorer.ui import checkpoints_panel

    checkpoints_panel.render()


def runs_script() -> None:
    from explorer.ui import runs_panel

    runs_panel.render()


def start(script, **state) -> AppTest:
    st.cache_resource.clear()
    at = AppTest.from_function(script, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


@pytest.fixture(autouse=True)
def _clear_caches():
    yield
    st.cache_resource.clear()


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoints_empty_folder_says_what_to_do(runs_dir: Path) -> None:
    at = start(checkpoints_script)
    assert "No checkpoints" in at.info[0].value


def test_checkpoint_is_described_and_evaluated(runs_dir: Path) -> None:
    make_run(runs_dir, "r1", name="small", arch=SMALL, accuracies=(0.3, 0.42), created="2024-01-01")
    make_run(runs_dir, "r2", name="large", arch=LARGE, accuracies=(0.4, 0.6), created="2024-01-02", seed=3)
    at = start(checkpoints_script)
    labels = at.selectbox(key="ckpt.saved").options
    assert len(labels) == 2 and any("large · best 60.0% · r2" in label for label in labels)
    at.selectbox(key="ckpt.saved").select(str(runs_dir / "r2" / "model.safetensors")).run()
    shown = metrics(at)
    loaded = load_checkpoint(runs_dir / "r2")
    assert shown["Parameters"] == f"{sum(p.numel() for p in loaded.model.parameters()):,}"
    assert shown["Best test acc."] == "60.00%" and shown["Epochs"] == "2"
    assert at.selectbox(key="ckpt.data").value == "synthetic:40"  # the data it was trained on, first
    at.button(key="ckpt.evaluate").click().run()
    assert not at.exception and not at.error
    expected = evaluate_checkpoint(loaded, load_dataset("synthetic:40"), device="cpu")
    assert metrics(at)["Accuracy"] == f"{expected.accuracy:.2%}"
    assert metrics(at)["Test images"] == "10"
    specs = chart_specs(at)
    heatmap = next(s for s in specs if s["data"][0]["type"] == "heatmap")
    assert heatmap["data"][0]["text"] == expected.confusion
    bars = next(s for s in specs if s["data"][0]["type"] == "bar")
    assert bars["data"][0]["x"] == [k for k, v in expected.per_class.items() if v is not None]
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert len(captions) == 10 - expected.correct > 0
    first = expected.misclassified[0]
    assert captions[0] == f"{first['true']} → {first['predicted']} ({first['confidence']:.0%})"
    # A rerun (any widget) keeps the result without recomputing; another data choice hides it.
    at.run()
    assert metrics(at)["Accuracy"] == f"{expected.accuracy:.2%}"


def test_refused_checkpoint_shows_why(runs_dir: Path) -> None:
    folder = make_run(runs_dir, "r1", name="broken")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:500])
    at = start(checkpoints_script)
    assert "Checkpoint refused" in at.error[0].value and "truncated" in at.error[0].value


def test_mismatched_data_is_refused_with_reason(runs_dir: Path, image_folder_factory, monkeypatch) -> None:
    make_run(runs_dir, "r1", name="small")
    folder = image_folder_factory("other", size=(32, 32))
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", str(folder.parent))  # the app reads folders under allowed roots only
    at = start(checkpoints_script)
    at.selectbox(key="ckpt.data").select("other…").run()
    at.text_input(key="ckpt.data_other").input(f"folder:{folder}").run()
    at.button(key="ckpt.evaluate").click().run()
    assert not at.exception
    assert "classes do not match" in at.error[0].value
    assert "Accuracy" not in metrics(at)


def test_resume_button_is_offered_for_run_checkpoints(runs_dir: Path) -> None:
    make_run(runs_dir, "r1", name="small")
    at = start(checkpoints_script)
    assert at.number_input(key="ckpt.resume_epochs").value == 2
    assert any(b.label.startswith("Resume training for 2 more epochs") for b in at.button)


# ------------------------------------------------------------------------------------------ runs


@pytest.fixture()
def history(runs_dir: Path) -> Path:
    make_run(runs_dir, "r1", name="small", arch=SMALL, accuracies=(0.3, 0.42), created="2024-01-01", checkpoint=False)
    make_run(runs_dir, "r2", name="large", arch=LARGE, accuracies=(0.4, 0.61), created="2024-01-02", checkpoint=False,
             preset="fast")
    make_run(runs_dir, "r3", name="large worse", arch=LARGE, accuracies=(0.2, 0.35), created="2024-01-03",
             checkpoint=False, lr=0.1, status="stopped")
    return runs_dir


def table_ids(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["id"])


def test_runs_empty_folder(runs_dir: Path) -> None:
    assert "No runs" in start(runs_script).info[0].value


def test_runs_table_filter_and_status(history: Path) -> None:
    at = start(runs_script)
    frame = at.dataframe[0].value
    assert table_ids(at) == ["r3", "r2", "r1"]
    assert frame.set_index("id").loc["r2", "best_test_accuracy"] == 0.61
    at.text_input(key="runs.filter").input("large").run()
    assert table_ids(at) == ["r3", "r2"]
    at.text_input(key="runs.filter").input("fast").run()
    assert table_ids(at) == ["r2"]
    at.text_input(key="runs.filter").input("").run()
    assert at.multiselect(key="runs.statuses").options == ["finished", "stopped"]
    at.multiselect(key="runs.statuses").select("stopped").run()
    assert table_ids(at) == ["r3"]


def test_pareto_chart_marks_the_frontier_and_the_budget(history: Path) -> None:
    at = start(runs_script, **{"arch.budget": 5000})
    spec = next(s for s in chart_specs(at) if s["layout"]["title"]["text"].startswith("Accuracy against"))
    traces = {t.get("name"): t for t in spec["data"]}
    frontier_names = [row[0] for row in traces["Pareto frontier"]["customdata"]]
    assert sorted(frontier_names) == ["large", "small"]  # "large worse" costs as much as "large", less accurate
    assert [row[0] for row in traces["run"]["customdata"]] == ["large worse"]
    budget_line = [s for s in spec["layout"]["shapes"] if s["type"] == "line"]
    assert budget_line[0]["x0"] == 5000
    at.segmented_control(key="runs.pareto_x").set_value("flops").run()
    spec = next(s for s in chart_specs(at) if s["layout"]["title"]["text"] == "Accuracy against FLOPs")
    assert not spec["layout"].get("shapes")  # the budget is a parameter budget


def test_overlay_and_diff(history: Path) -> None:
    at = start(runs_script)
    assert at.multiselect(key="runs.overlay").value == []  # no chart until runs are picked
    assert not [s for s in chart_specs(at) if s["layout"]["title"]["text"].startswith("Runs compared")]
    at.multiselect(key="runs.overlay").set_value(["r3", "r2"]).run()
    overlay = next(s for s in chart_specs(at) if s["layout"]["title"]["text"].startswith("Runs compared"))
    names = {t["name"] for t in overlay["data"]}
    assert "large worse (r3) (test)" in names and "large (r2) (train)" in names
    at.selectbox(key="runs.diff_a").select("r2").run()
    at.selectbox(key="runs.diff_b").select("r3").run()
    diff = at.dataframe[-1].value
    assert diff["setting"].tolist() == ["train.lr", "preset"]
    assert diff.iloc[0, 1:].tolist() == ["0.01", "0.1"]
    assert diff.iloc[1, 1:].tolist() == ["fast", "—"]
    assert list(diff.columns) == ["setting", "large", "large worse"]


def test_rename_and_delete_with_confirmation(history: Path) -> None:
    at = start(runs_script)
    at.selectbox(key="runs.manage").select("r1").run()
    at.text_input(key="runs.new_name").input("baseline").run()
    at.button(key="runs.rename").click().run()
    assert at.success[0].value == "Renamed r1 to “baseline”."
    assert json.loads((history / "r1" / "run.json").read_text())["name"] == "baseline"
    for key in ("runs.manage", "runs.diff_a", "runs.diff_b"):  # every picker shows the new name at once
        assert any(option.startswith("baseline") for option in at.selectbox(key=key).options), key
    at.selectbox(key="runs.manage").select("r1").run()
    at.button(key="runs.delete").click().run()
    assert "cannot be undone" in at.warning[0].value and (history / "r1").exists()
    at.button(key="runs.delete_no").click().run()
    assert (history / "r1").exists() and not at.warning
    at.button(key="runs.delete").click().run()
    at.button(key="runs.delete_yes").click().run()
    assert not (history / "r1").exists()
    assert at.success[0].value == "Deleted r1."
    assert table_ids(at) == ["r3", "r2"]


def test_architecture_line_reads_like_the_config() -> None:
    from explorer.arch.presets import PRESETS
    from explorer.ui.checkpoints_panel import architecture_line

    assert architecture_line(PRESETS["study-bn"].to_dict()) == (
        "conv 25 (5×5 valid, max-pool) → 50 (5×5 valid, max-pool) · head flatten · fc 100, 50 · relu · BatchNorm")
    assert architecture_line(SMALL.to_dict()).endswith("head avgpool · no hidden fc · relu")


def test_architecture_line_rounds_a_sampled_dropout() -> None:
    from explorer.ui.checkpoints_panel import architecture_line

    sampled = SMALL.to_dict() | {"dropout": 0.0006800987305932149}
    assert architecture_line(sampled).endswith("relu · dropout 0.00068")


def test_resume_starts_a_run_whose_curves_continue(runs_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("EXPLORER_THREADS", "1")  # the resumed run is a process of its own: keep it light
    from explorer.engine.config import TrainConfig
    from explorer.store.runner import RunProcess, RunSpec
    from explorer.store.runs import list_runs
    from explorer.store.tables import run_curves

    train = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=3e-3, device="cpu", log_every=5)
    first = RunProcess(RunSpec(SMALL, train, "synthetic:200", name="first"), runs_dir).run()["id"]
    wait_until(lambda: read_status(runs_dir, first) == "finished")
    at = start(checkpoints_script)
    at.number_input(key="ckpt.resume_epochs").set_value(1).run()
    at.button(key="ckpt.resume").click().run()
    assert not at.exception and "Started run" in at.success[0].value
    second = next(r["id"] for r in list_runs(runs_dir) if r.get("resumed_from") == first)
    assert at.session_state["train.run_id"] == second  # the Train tab watches it
    wait_until(lambda: read_status(runs_dir, second) in ("finished", "failed"))
    record = json.loads((runs_dir / second / "run.json").read_text())
    assert record["status"] == "finished", record["error"]
    assert record["name"] == "first +1" and record["train"]["epochs"] == 1
    assert run_curves(second, runs_dir)["epoch"].tolist() == [1, 2, 3]
    assert record["summary"]["epochs_done"] == 3


def read_status(runs_dir: Path, run_id: str) -> str:
    try:
        return json.loads((runs_dir / run_id / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def wait_until(condition, timeout: float = 120.0) -> None:
    """Poll until `condition()` holds (a hang guard, not a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ issue 13


def test_runs_table_shows_no_none_and_failed_runs_are_not_the_diff_defaults(runs_dir: Path) -> None:
    make_run(runs_dir, "r1", name="good", arch=SMALL, accuracies=(0.3, 0.42), created="2024-01-01", checkpoint=False)
    make_run(runs_dir, "r2", name="fine", arch=LARGE, accuracies=(0.4,), created="2024-01-02", checkpoint=False)
    failed = make_run(runs_dir, "r3", arch=SMALL, accuracies=(0.1,), created="2024-01-03", checkpoint=False,
                      status="failed")
    record = json.loads((failed / "run.json").read_text())  # as a run that diverged in its first epoch writes it
    record |= {"summary": {"epochs_done": 0, "best_test_accuracy": None}, "error": "the loss became NaN"}
    (failed / "run.json").write_text(json.dumps(record))
    (failed / "events.jsonl").write_text("")
    at = start(runs_script)
    shown = at.dataframe[0].value
    assert shown.set_index("id").loc["r3", "preset"] == "custom"  # an edited (or unnamed) network
    text = shown[["name", "preset", "status", "device", "data", "created", "id", "message"]]
    assert not text.isna().any().any() and "None" not in text.to_numpy().tolist()
    # The newest run (first in the list) failed before its first epoch: the diff starts from two that trained.
    assert (at.selectbox(key="runs.diff_a").value, at.selectbox(key="runs.diff_b").value) == ("r2", "r1")


def test_pareto_has_a_frontier_per_dataset(runs_dir: Path) -> None:
    from explorer.ui.runs_panel import frontier_per_dataset

    make_run(runs_dir, "f1", name="fashion small", arch=SMALL, accuracies=(0.85,), data="folder:/d/fashion",
             checkpoint=False, created="2024-01-01")
    make_run(runs_dir, "c1", name="cifar small", arch=SMALL, accuracies=(0.40,), data="cifar10", checkpoint=False,
             created="2024-01-02")
    make_run(runs_dir, "c2", name="cifar large", arch=LARGE, accuracies=(0.60,), data="cifar10", checkpoint=False,
             created="2024-01-03")
    at = start(runs_script)
    spec = next(s for s in chart_specs(at) if s["layout"]["title"]["text"].startswith("Accuracy against"))
    traces = {t.get("name"): t for t in spec["data"] if t.get("name")}
    # One frontier over both datasets would drop "cifar small" (Fashion-MNIST's 85 % at the same size).
    assert sorted(r[0] for r in traces["cifar10: frontier"]["customdata"]) == ["cifar large", "cifar small"]
    assert [r[0] for r in traces["folder:/d/fashion: frontier"]["customdata"]] == ["fashion small"]
    colors = {traces[n]["marker"]["color"] for n in ("cifar10: frontier", "folder:/d/fashion: frontier")}
    assert len(colors) == 2
    from explorer.store.runs import list_runs
    from explorer.store.tables import runs_table

    table = runs_table(list_runs(runs_dir))
    assert frontier_per_dataset(table, "params", "best_test_accuracy").sum() == 3


def test_per_class_overall_is_in_the_title_and_the_curves_legend_is_under_the_axes() -> None:
    import pandas as pd

    from explorer.ui.eval_charts import curves_overlay, per_class_accuracy_bars

    bars = per_class_accuracy_bars({"a": 0.8, "b": 0.66}, overall=0.73)
    assert "overall 73.0%" in bars.layout.title.text and not bars.layout.annotations
    assert bars.layout.shapes[0].y0 == pytest.approx(73.0)
    frame = pd.DataFrame({"epoch": [1, 2], "test_loss": [1.0, 0.8], "test_accuracy": [0.5, 0.6]})
    overlay = curves_overlay({"run": frame})
    assert overlay.layout.legend.yref == "container" and overlay.layout.legend.y == 0
    assert overlay.layout.margin.b >= 100  # room for the legend below the "epoch" titles
