"""The Search page's pure figures and table (explorer.ui.search_charts) on hand-made trial rows."""

from __future__ import annotations

import math

from explorer.ui import search_charts


def _row(number: int, state: str = "complete", val: float | None = None, params: int | None = None,
         flops: int | None = None, **extra) -> dict:
    return {"number": number, "state": state, "val_accuracy": val, "test_accuracy": None if val is None else val - 0.01,
            "params": params, "flops": flops if flops is not None else (params or 0) * 100, "epochs": 1,
            "seconds": 2.5, "run_id": f"r{number}", "rejected": None} | extra


ROWS = [_row(0, val=0.50, params=10_000), _row(1, val=0.60, params=50_000), _row(2, val=0.55, params=80_000),
        _row(3, val=0.70, params=200_000), _row(4, "rejected", params=400_000, rejected="over the budget",
                                                 reason="over the budget"),
        _row(5, "running"), _row(6, "failed"), _row(7, "pruned", params=30_000)]


def _trace(fig, name: str):
    return next(t for t in fig.data if t.name == name)


def test_pareto_figure_plots_trials_the_front_rejections_and_the_budget():
    fig = search_charts.pareto_figure(ROWS, "params", budget=256_000)
    assert list(_trace(fig, "trials").x) == [10_000, 50_000, 80_000, 200_000]
    front = _trace(fig, "Pareto front")
    assert list(front.x) == [10_000, 50_000, 200_000]  # trial 2 is beaten by trial 1 (fewer params, better)
    assert list(front.y) == [0.50, 0.60, 0.70]
    rejected = _trace(fig, "rejected (never trained)")
    assert list(rejected.x) == [400_000] and list(rejected.y) == [0.0]
    assert "over the budget" in rejected.hovertext[0]
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 256_000
    assert "256,000" in fig.layout.annotations[0].text


def test_pareto_figure_against_flops_without_a_budget_has_no_line():
    fig = search_charts.pareto_figure(ROWS, "flops", budget=None)
    assert list(_trace(fig, "Pareto front").x) == [1_000_000, 5_000_000, 20_000_000]
    assert not fig.layout.shapes and "flops" in fig.layout.title.text.lower()


def test_pareto_figure_of_an_empty_search_draws_empty_traces():
    fig = search_charts.pareto_figure([_row(0, "running")], "params", budget=1000)
    assert list(_trace(fig, "trials").x) == [] and list(_trace(fig, "Pareto front").x) == []


def test_history_shows_each_trial_and_the_best_so_far():
    numbers, best = search_charts.best_so_far(ROWS)
    assert numbers == [0, 1, 2, 3] and best == [0.50, 0.60, 0.60, 0.70]
    fig = search_charts.history_figure(ROWS)
    assert list(_trace(fig, "trial").y) == [0.50, 0.60, 0.55, 0.70]
    assert list(_trace(fig, "best so far").y) == best


def test_counts_cover_every_state():
    counts = search_charts.counts(ROWS)
    assert counts == {"complete": 4, "running": 1, "waiting": 0, "pruned": 1, "rejected": 1, "failed": 1}


def test_trials_table_newest_first_in_percent_with_the_rejection_reason():
    table = search_charts.trials_table(ROWS)
    assert list(table["Trial"]) == [7, 6, 5, 4, 3, 2, 1, 0]
    assert math.isclose(table.loc[table["Trial"] == 3, "Val accuracy"].item(), 70.0)
    assert table.loc[table["Trial"] == 4, "Why"].item() == "over the budget"
    assert {"State", "Params", "FLOPs", "Test accuracy", "Seconds"} <= set(table.columns)


def test_trial_label():
    assert search_charts.trial_label(ROWS[3]) == "trial 3 · val 70.0% · 200,000 params"
    assert search_charts.trial_label(ROWS[5]) == "trial 5 · running"


def test_importance_figure_puts_the_most_important_setting_on_top():
    fig = search_charts.importance_figure({"train.lr": 0.7, "depth": 0.2, "conv1.kernel": 0.1})
    (bars,) = fig.data
    assert list(bars.y) == ["conv1.kernel", "depth", "train.lr"]  # Plotly draws the last category on top
    assert list(bars.x) == [0.1, 0.2, 0.7]


def test_the_baseline_is_marked_on_the_pareto_chart_and_in_labels():
    rows = [*ROWS, _row(8, val=0.65, params=255_267, baseline="fast")]
    fig = search_charts.pareto_figure(rows, "params")
    marked = _trace(fig, "baseline preset")
    assert list(marked.x) == [255_267] and list(marked.text) == ["fast"]
    assert search_charts.trial_label(rows[-1]) == "trial 8 · val 65.0% · 255,267 params · fast (baseline)"


def test_history_of_one_trial_stays_within_0_and_100_percent():
    fig = search_charts.history_figure([_row(0, val=0.51, params=1_000)])
    assert list(fig.layout.yaxis.range) == [0, 1]
    assert search_charts.history_figure(ROWS).layout.yaxis.range is None  # several values: fitted to them


def test_a_rejection_says_why_in_its_tooltip_and_the_table_even_under_the_budget():
    slow = _row(8, "rejected", params=20_000, flops=3_000_000, reason="too slow: 2 epochs of 45 images take more",
                rejected="too slow: 2 epochs of 45 images take more")
    fig = search_charts.pareto_figure([slow], "params", budget=256_000)
    (hover,) = _trace(fig, "rejected (never trained)").hovertext
    assert hover == "trial 8 rejected: too slow: 2 epochs of 45 images take more<br>20,000 params · 3,000,000 FLOPs"
    table = search_charts.trials_table([slow, _row(9, "running", reason="waiting for a training slot (2 runs hold "
                                                                        "them)")])
    assert list(table["Why"]) == ["waiting for a training slot (2 runs hold them)",
                                  "too slow: 2 epochs of 45 images take more"]


def test_empty_charts_have_sensible_axes():
    """No trial yet: the Pareto chart runs from 0 past the budget and 0-100 %, not 255.999k-256.0005k and
    -100 %-400 % (Plotly's autorange around one value); without a budget, 0-1."""
    fig = search_charts.pareto_figure([_row(0, "running")], "params", budget=256_000)
    assert list(fig.layout.xaxis.range) == [0, 320_000] and list(fig.layout.yaxis.range) == [0, 1]
    bare = search_charts.pareto_figure([], "flops", budget=None)
    assert list(bare.layout.xaxis.range) == [0, 1] and list(bare.layout.yaxis.range) == [0, 1]
    history = search_charts.history_figure([])
    assert list(history.layout.xaxis.range) == [0, 1] and list(history.layout.yaxis.range) == [0, 1]
    one = search_charts.history_figure([_row(3, val=0.5, params=1)])
    assert list(one.layout.xaxis.range) == [2, 4]
    full = search_charts.pareto_figure(ROWS, "params", budget=256_000)
    assert full.layout.xaxis.range is None and full.layout.yaxis.range is None  # data: Plotly's autorange
