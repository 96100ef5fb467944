"""Run history: listing, events, curves (resumed runs continue), table, filter, Pareto frontier, diff,
rename/delete, CSV, and the `runs` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from history_helpers import LARGE, SMALL, make_run

from explorer.cli import main
from explorer.store.runs import RunError, delete_run, list_runs, read_events, read_run, rename_run
from explorer.store.tables import (
    config_diff,
    curves_csv,
    filter_runs,
    metrics_csv,
    pareto_frontier,
    pareto_mask,
    run_curves,
    runs_table,
)


@pytest.fixture()
def history(runs_dir: Path) -> Path:
    make_run(runs_dir, "r1-small", name="small", arch=SMALL, accuracies=(0.3, 0.42), created="2024-01-01T10:00:00",
             checkpoint=False)
    make_run(runs_dir, "r2-large", name="large", arch=LARGE, accuracies=(0.4, 0.61, 0.58), preset="fast",
             created="2024-01-02T10:00:00", checkpoint=False)
    make_run(runs_dir, "r3-live", arch=LARGE, accuracies=(0.2,), status="running", created="2024-01-03T10:00:00",
             checkpoint=False)
    return runs_dir


def test_list_runs_newest_first_with_defaults_from_env(history: Path) -> None:
    records = list_runs()  # EXPLORER_RUNS_DIR points at the fixture's folder
    assert [r["id"] for r in records] == ["r3-live", "r2-large", "r1-small"]
    assert records[1]["summary"]["best_test_accuracy"] == 0.61
    assert list_runs(history / "nowhere") == []


def test_unreadable_run_is_listed_not_fatal(history: Path) -> None:
    bad = history / "r0-bad"
    bad.mkdir()
    (bad / "run.json").write_text("{truncated")
    rows = {r["id"]: r for r in list_runs(history)}
    assert rows["r0-bad"]["status"] == "unreadable" and "cannot be read" in rows["r0-bad"]["error"]
    with pytest.raises(RunError, match="cannot be read"):
        read_run("r0-bad", history)


def test_run_ids_cannot_escape_the_runs_folder(history: Path) -> None:
    for bad in ("../r1-small", "", ".hidden", "/etc"):
        with pytest.raises(RunError):
            read_run(bad, history)
    with pytest.raises(RunError, match="no run 'missing'"):
        read_run("missing", history)


def test_events_skip_a_half_written_last_line(history: Path) -> None:
    with open(history / "r3-live" / "events.jsonl", "a") as handle:
        handle.write('{"type": "batch", "epo')
    events = read_events("r3-live", history)
    assert [e.type for e in events] == ["started", "epoch"]
    assert read_events("r2-large", history, types={"epoch"})[-1].test_accuracy == 0.58
    assert list_runs(history)[0]["message"] is None  # a line still being written is not a problem


def test_table_columns_and_values(history: Path) -> None:
    table = runs_table(list_runs(history)).set_index("id")
    assert table.loc["r2-large", "name"] == "large"
    # Recorded as started from "fast", with another network: named after what it started from and what changed.
    assert table.loc["r2-large", "preset"] == "fast (edited: conv, fc, batchnorm, +3 more)"
    assert table.loc["r3-live", "name"] == "r3-live"  # no name, no preset: the id
    assert table.loc["r2-large", "best_test_accuracy"] == 0.61
    assert table.loc["r2-large", "final_test_accuracy"] == 0.58
    assert table.loc["r2-large", "epochs"] == 3 and table.loc["r2-large", "wall_seconds"] == 4.5
    assert table.loc["r1-small", "params"] < table.loc["r2-large", "params"]
    assert set(table["status"]) == {"finished", "running"}


def test_filter_by_text_and_status(history: Path) -> None:
    table = runs_table(list_runs(history))
    assert list(filter_runs(table, "LARGE")["id"]) == ["r2-large"]
    assert list(filter_runs(table, "fast")["id"]) == ["r2-large"]  # matches the preset
    assert list(filter_runs(table, statuses=["running"])["id"]) == ["r3-live"]
    assert len(filter_runs(table)) == 3


def test_pareto_frontier() -> None:
    table = pd.DataFrame({"params": [100, 200, 150, 300, 50, 400],
                          "best_test_accuracy": [0.5, 0.7, 0.4, 0.7, None, 0.8]})
    # 100/0.5 and 200/0.7 and 400/0.8 are not beaten; 150/0.4 is beaten by 100/0.5; 300/0.7 by 200/0.7.
    assert pareto_frontier(table).tolist() == [True, True, False, False, False, True]
    assert pareto_frontier(table.iloc[:0]).tolist() == []


def test_one_pareto_rule_for_runs_and_search_ties_included() -> None:
    """Two equal runs (same cost, same accuracy) are both on the front: the Runs page used to keep only the first
    of them while the search kept both."""
    from explorer.search.study import pareto

    costs, accuracies = [100, 100, 200, 200, 300], [0.5, 0.5, 0.5, 0.7, 0.7]
    expected = [True, True, False, True, False]
    assert pareto_mask([[c] for c in costs], accuracies) == expected
    table = pd.DataFrame({"params": costs, "best_test_accuracy": accuracies})
    assert pareto_frontier(table).tolist() == expected
    rows = [{"number": i, "state": "complete", "params": c, "flops": 1, "val_accuracy": a}
            for i, (c, a) in enumerate(zip(costs, accuracies))]
    assert [r["number"] for r in pareto(rows)] == [i for i, on in enumerate(expected) if on]
    # Two costs: a point cheaper in FLOPs only stays on the front.
    assert pareto_mask([[100, 50], [100, 40], [90, 60]], [0.5, 0.5, 0.5]) == [False, True, True]


def test_curves_of_a_resumed_run_continue_from_its_parent(history: Path) -> None:
    make_run(history, "r4-resumed", accuracies=(0.63, 0.66), first_epoch=4, resumed_from="r2-large",
             created="2024-01-04T10:00:00", checkpoint=False)
    curves = run_curves("r4-resumed", history)
    assert curves["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert curves["test_accuracy"].tolist() == [0.4, 0.61, 0.58, 0.63, 0.66]
    delete_run("r2-large", history)  # the parent gone: what is left still shows
    assert run_curves("r4-resumed", history)["epoch"].tolist() == [4, 5]


def test_config_diff_shows_only_what_differs(history: Path) -> None:
    make_run(history, "r5-lr", name="small lr", arch=SMALL, lr=0.1, checkpoint=False)
    diff = config_diff(read_run("r1-small", history), read_run("r5-lr", history))
    assert diff["setting"].tolist() == ["train.lr"]
    assert diff.iloc[0].tolist() == ["train.lr", "0.01", "0.1", True]
    wide = config_diff(read_run("r1-small", history), read_run("r2-large", history))
    settings = set(wide["setting"])
    assert {"arch.conv1.out_channels", "arch.fc", "params", "preset", "train.epochs"} <= settings
    row = wide.set_index("setting").loc["arch.conv1.out_channels"]
    assert (row["small"], row["large"]) == ("4", "8")
    full = config_diff(read_run("r1-small", history), read_run("r1-small", history), only_differences=False)
    assert len(full) > 10 and not full["differs"].any() and list(full.columns)[1:3] == ["small (A)", "small (B)"]


def test_rename_and_delete(history: Path) -> None:
    record = rename_run("r1-small", "  tiny   baseline ", history)
    assert record["name"] == "tiny baseline"
    assert json.loads((history / "r1-small" / "run.json").read_text())["name"] == "tiny baseline"
    assert read_run("r1-small", history)["summary"]["best_test_accuracy"] == 0.42  # the rest kept
    with pytest.raises(RunError, match="1 to 80 characters"):
        rename_run("r1-small", "   ", history)
    with pytest.raises(RunError, match="stop it before you delete"):
        delete_run("r3-live", history, active=["r3-live"])
    with pytest.raises(RunError, match="stop it before you rename"):
        rename_run("r3-live", "x", history, active=["r3-live"])
    delete_run("r1-small", history)
    assert not (history / "r1-small").exists()
    assert [p.name for p in history.iterdir() if p.name.startswith(".")] == []
    assert [r["id"] for r in list_runs(history)] == ["r3-live", "r2-large"]


def test_csv_exports(history: Path) -> None:
    text = metrics_csv(runs_table(list_runs(history)))
    frame = pd.read_csv(pd.io.common.StringIO(text))
    assert list(frame["id"]) == ["r3-live", "r2-large", "r1-small"]
    assert frame.set_index("id").loc["r2-large", "best_test_accuracy"] == 0.61
    curves = pd.read_csv(pd.io.common.StringIO(curves_csv(["r1-small", "r2-large"], history)))
    assert len(curves) == 5 and set(curves["run"]) == {"r1-small", "r2-large"}


def test_cli_runs_json_table_csv(history: Path, capsys) -> None:
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["r3-live", "r2-large", "r1-small"]
    assert rows[1]["best_test_accuracy"] == 0.61 and rows[1]["params"] > rows[2]["params"]
    assert main(["runs", "--runs-dir", str(history)]) == 0
    out = capsys.readouterr().out
    assert "r2-large" in out and "61.00%" in out and "running" in out
    assert main(["runs", "--csv", "--filter", "small"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("r1-small,small")


def test_cli_rename_delete(history: Path, capsys) -> None:
    assert main(["runs", "--rename", "r1-small", "baseline", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["r1-small"]["name"] == "baseline"
    assert main(["runs", "--delete", "r1-small"]) == 2
    assert "--yes" in capsys.readouterr().err and (history / "r1-small").exists()
    assert main(["runs", "--delete", "r1-small", "--yes", "--json"]) == 0
    assert "r1-small" not in {r["id"] for r in json.loads(capsys.readouterr().out)}
    assert main(["runs", "--delete", "nope", "--yes"]) == 2


def test_cli_runs_empty(tmp_path: Path, capsys) -> None:
    assert main(["runs", "--runs-dir", str(tmp_path / "none")]) == 0
    assert "no runs yet" in capsys.readouterr().out


def test_pareto_and_overlay_figures(history: Path) -> None:
    from explorer.ui.eval_charts import curves_overlay, figure_html, pareto_chart

    table = runs_table(list_runs(history))
    table.loc[table["id"] == "r3-live", "best_test_accuracy"] = None  # a run without a result is not drawn
    fig = pareto_chart(table, pareto_frontier(table), "params", "best_test_accuracy", budget=256_000)
    traces = {t.name: t for t in fig.data}
    front = traces["Pareto frontier"]
    assert sorted(zip((row[0] for row in front.customdata), front.y)) == [("large", 61.0), ("small", 42.0)]
    assert len(traces["run"].x) == 0
    assert fig.layout.shapes[0].x0 == 256_000 and fig.layout.xaxis.type == "log"
    flops = pareto_chart(table, pareto_frontier(table, "flops"), "flops")
    assert not flops.layout.shapes and flops.layout.title.text == "Accuracy against FLOPs"
    overlay = curves_overlay({"small": run_curves("r1-small", history), "large": run_curves("r2-large", history)})
    assert len(overlay.data) == 8  # 2 runs x (train, test) x (loss, accuracy)
    assert [t.name for t in overlay.data if t.showlegend] == ["small (test)", "small (train)", "large (test)",
                                                             "large (train)"]
    assert list(overlay.data[6].y) == pytest.approx([40.0, 61.0, 58.0])  # large's test accuracy in %
    html = figure_html(fig)
    assert html.lower().startswith("<!doctype html>") and "Plotly.newPlot" in html and len(html) > 1_000_000
