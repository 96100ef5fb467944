"""Pure functions: a search's trial rows (explorer.search.study.rows) -> Plotly figures and a table. No Streamlit.

The Pareto chart plots every complete trial's validation accuracy against its parameters (or FLOPs), joins the
front, and draws the budget as a vertical line; rejected trials (never trained) sit on the x axis as crosses at
their cost, so the chart shows where the sampler wandered over the budget. Every figure sets `uirevision` so a
user's zoom survives the live updates.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from explorer.search.study import pareto
from explorer.ui.charts import BASELINE_COLOR, OK_COLOR, OVER_COLOR, TEST_COLOR, TRAIN_COLOR

STATES = ("complete", "running", "waiting", "pruned", "rejected", "failed")
COST_LABELS = {"params": "Parameters", "flops": "FLOPs per image"}
COST_TITLES = {"params": "parameters", "flops": "FLOPs per image"}
TABLE_COLUMNS = {"number": "Trial", "state": "State", "params": "Params", "flops": "FLOPs",
                 "val_accuracy": "Val accuracy", "test_accuracy": "Test accuracy", "epochs": "Epochs",
                 "seconds": "Seconds", "baseline": "Baseline", "reason": "Why",
                 "run_id": "Run"}


def _layout(title: str, x_title: str, y_title: str, revision: str, height: int = 380) -> dict:
    # The legend sits under the plot: above it, it collides with the title in a half-width column.
    return dict(title=dict(text=title), height=height, margin=dict(l=10, r=10, t=40, b=10), uirevision=revision,
                xaxis=dict(title=dict(text=x_title)), yaxis=dict(title=dict(text=y_title), tickformat=".0%"),
                legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0))


def _complete(rows: list[dict], cost: str) -> list[dict]:
    return [r for r in rows if r["state"] == "complete" and r.get("val_accuracy") is not None
            and r.get(cost) is not None]


def _hover(row: dict) -> str:
    test = f"{row['test_accuracy']:.1%}" if row.get("test_accuracy") is not None else "?"
    return (f"trial {row['number']}<br>val {row['val_accuracy']:.1%} · test {test}<br>"
            f"{row['params']:,} params · {row['flops'] / 1e6:.2f} MFLOPs")


def _rejected_hover(row: dict) -> str:
    costs = " · ".join(f"{row[k]:,} {w}" for k, w in (("params", "params"), ("flops", "FLOPs")) if row.get(k))
    return f"trial {row['number']} rejected: {row.get('rejected')}" + (f"<br>{costs}" if costs else "")


def _fixed_ranges(layout: dict, xs: list, ys: list) -> None:
    """Ranges for axes with fewer than two distinct values: Plotly's autorange around one value (or none) reads
    "255.999k … 256.0005k" and "−100 % … 400 %"."""
    if len(set(ys)) < 2:
        layout["yaxis"]["range"] = [0, 1]  # accuracies
    if len(set(xs)) < 2:
        top = max(xs, default=0)
        layout["xaxis"]["range"] = [0, top * 1.25] if top > 0 else [0, 1]
        layout["xaxis"]["rangemode"] = "tozero"


def pareto_figure(rows: list[dict], cost: str = "params", budget: float | None = None,
                  revision: str = "search") -> go.Figure:
    """Validation accuracy against `cost` ("params" or "flops"): trials, the front, rejected trials, budget."""
    done = _complete(rows, cost)
    front = pareto(done, (cost,)) if done else []
    front = sorted(front, key=lambda r: r[cost])
    traces = [go.Scatter(x=[r[cost] for r in done], y=[r["val_accuracy"] for r in done], mode="markers",
                         name="trials", marker=dict(color=TRAIN_COLOR, size=8, opacity=0.6),
                         hovertext=[_hover(r) for r in done], hoverinfo="text"),
              go.Scatter(x=[r[cost] for r in front], y=[r["val_accuracy"] for r in front], mode="lines+markers",
                         name="Pareto front", line=dict(color=OK_COLOR, shape="hv"),
                         marker=dict(color=OK_COLOR, size=10), hovertext=[_hover(r) for r in front],
                         hoverinfo="text")]
    baseline = [r for r in done if r.get("baseline")]
    if baseline:
        traces.append(go.Scatter(x=[r[cost] for r in baseline], y=[r["val_accuracy"] for r in baseline],
                                 mode="markers+text", name="baseline preset", text=[r["baseline"] for r in baseline],
                                 textposition="bottom center", hovertext=[_hover(r) for r in baseline],
                                 hoverinfo="text", marker=dict(color=TEST_COLOR, symbol="diamond", size=12)))
    rejected = [r for r in rows if r["state"] == "rejected" and r.get(cost) is not None]
    if rejected:
        traces.append(go.Scatter(x=[r[cost] for r in rejected], y=[0.0] * len(rejected), mode="markers",
                                 name="rejected (never trained)",
                                 marker=dict(color=BASELINE_COLOR, symbol="x", size=7),
                                 hovertext=[_rejected_hover(r) for r in rejected], hoverinfo="text"))
    layout = _layout(f"Validation accuracy vs {COST_TITLES[cost]}", COST_LABELS[cost],
                     "Validation accuracy", f"{revision}-{cost}")
    _fixed_ranges(layout, [x for t in traces for x in t.x] + ([budget] if budget else []),
                  [y for t in traces for y in t.y])
    if budget:
        layout["shapes"] = [dict(type="line", xref="x", yref="paper", x0=budget, x1=budget, y0=0, y1=1,
                                 line=dict(color=OVER_COLOR, dash="dash"))]
        layout["annotations"] = [dict(x=budget, y=1, xref="x", yref="paper", text=f"budget {budget:,.0f}",
                                      showarrow=False, xanchor="right", yanchor="top",
                                      font=dict(color=OVER_COLOR))]
    return go.Figure(data=traces, layout=layout)


def best_so_far(rows: list[dict]) -> tuple[list[int], list[float]]:
    """(trial numbers, the best validation accuracy up to each) over complete trials in trial order."""
    numbers, best, top = [], [], None
    for row in sorted((r for r in rows if r["state"] == "complete" and r.get("val_accuracy") is not None),
                      key=lambda r: r["number"]):
        top = row["val_accuracy"] if top is None else max(top, row["val_accuracy"])
        numbers.append(row["number"])
        best.append(top)
    return numbers, best


def history_figure(rows: list[dict], revision: str = "search") -> go.Figure:
    """Optimization history: each complete trial's validation accuracy and the best so far."""
    done = sorted(_complete(rows, "number"), key=lambda r: r["number"])
    numbers, best = best_so_far(rows)
    traces = [go.Scatter(x=[r["number"] for r in done], y=[r["val_accuracy"] for r in done], mode="markers",
                         name="trial", marker=dict(color=TRAIN_COLOR, size=7),
                         hovertext=[_hover(r) for r in done], hoverinfo="text"),
              go.Scatter(x=numbers, y=best, mode="lines", name="best so far", line=dict(color=TEST_COLOR, shape="hv"))]
    layout = _layout("Optimization history", "Trial", "Validation accuracy", f"{revision}-history")
    _fixed_ranges(layout, [r["number"] for r in done], [r["val_accuracy"] for r in done])
    if len(numbers) == 1:  # one trial: around its number, not from 0
        layout["xaxis"]["range"] = [numbers[0] - 1, numbers[0] + 1]
    return go.Figure(data=traces, layout=layout)


def importance_figure(importances: dict[str, float], revision: str = "search") -> go.Figure:
    """Horizontal bars, the most important setting on top (PED-ANOVA importances, summing to 1)."""
    names = list(importances)[::-1]
    bars = go.Bar(x=[importances[n] for n in names], y=names, orientation="h", marker=dict(color=TRAIN_COLOR),
                  hovertemplate="%{y}: %{x:.0%}<extra></extra>")
    layout = _layout("Parameter importances (PED-ANOVA, complete trials)", "Importance (all settings: 100 %)", "",
                     f"{revision}-importance", height=max(220, 60 + 22 * len(names)))
    layout["yaxis"] = dict(automargin=True)
    layout["xaxis"]["tickformat"] = ".0%"
    return go.Figure(data=[bars], layout=layout)


def counts(rows: list[dict]) -> dict[str, int]:
    """Trials per state, every state present (0 when none)."""
    out = dict.fromkeys(STATES, 0)
    for row in rows:
        out[row["state"]] = out.get(row["state"], 0) + 1
    return out


def trials_table(rows: list[dict]) -> pd.DataFrame:
    """One row per trial, newest first, with readable column names (accuracies in %)."""
    table = pd.DataFrame([{k: r.get(k) for k in TABLE_COLUMNS} for r in rows], columns=list(TABLE_COLUMNS))
    for column in ("val_accuracy", "test_accuracy"):
        table[column] = pd.to_numeric(table[column], errors="coerce") * 100
    for column in ("baseline", "reason"):  # blank, not "None", where a trial has none
        table[column] = table[column].fillna("")
    table = table.sort_values("number", ascending=False, ignore_index=True)
    return table.rename(columns=TABLE_COLUMNS)


def trial_label(row: dict) -> str:
    """'trial 3 · val 41.2% · 12,345 params' for a picker."""
    accuracy = f"val {row['val_accuracy']:.1%}" if row.get("val_accuracy") is not None else row["state"]
    params = f" · {row['params']:,} params" if row.get("params") is not None else ""
    baseline = f" · {row['baseline']} (baseline)" if row.get("baseline") else ""
    return f"trial {row['number']} · {accuracy}{params}{baseline}"


__all__ = ["pareto_figure", "history_figure", "best_so_far", "counts", "trials_table", "trial_label", "STATES"]
