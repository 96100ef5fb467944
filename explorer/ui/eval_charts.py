"""Pure functions: evaluations and run histories -> Plotly figures. No Streamlit here.

Accuracies arrive as fractions in [0, 1] and are drawn as percentages, like the training charts.
Figures are built in one go from plain dicts (as in explorer.ui.charts): plotly validates that far faster than
a chain of update_* calls, and the Runs page redraws several figures per rerun.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

FRONTIER_COLOR = "#d62728"
RUN_COLOR = "#8c9db5"
BUDGET_COLOR = "#7f7f7f"
BAR_COLOR = "#1f77b4"
RUN_PALETTE = qualitative.Plotly
AXIS_LABELS = {"params": "parameters", "flops": "FLOPs (2 × MACs, one image)",
               "best_test_accuracy": "best test accuracy (%)", "final_test_accuracy": "final test accuracy (%)"}


def _layout(title: str, height: int = 380, revision: str = "eval", **more) -> dict:
    return dict(title=dict(text=title), height=height, margin=dict(l=10, r=10, t=50, b=10), uirevision=revision,
                legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0)) | more


def _line_shape(axis: str, value: float, color: str) -> dict:
    """A dashed line across the plot at `value` on the x or y axis (the other side spans the paper)."""
    if axis == "x":
        return dict(type="line", xref="x", yref="paper", x0=value, x1=value, y0=0, y1=1,
                    line=dict(color=color, dash="dash"))
    return dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=value, y1=value,
                line=dict(color=color, dash="dash"))


def _note(text: str, x: float, y: float, xref: str, yref: str, **more) -> dict:
    return dict(text=text, x=x, y=y, xref=xref, yref=yref, showarrow=False, **more)


def confusion_heatmap(confusion: list[list[int]], classes: list[str], normalize: bool = True) -> go.Figure:
    """Rows = true class, columns = predicted class; colour = share of the true class (or the count).

    Every cell shows its count; hover gives both the count and the share of the row.
    """
    totals = [sum(row) or 1 for row in confusion]
    shares = [[100 * v / total for v in row] for row, total in zip(confusion, totals)]
    heatmap = go.Heatmap(
        z=shares if normalize else confusion, x=classes, y=classes, text=confusion, texttemplate="%{text}",
        colorscale="Blues", customdata=shares, zmin=0, zmax=100 if normalize else None,
        colorbar=dict(title=dict(text="% of true" if normalize else "images")),
        hovertemplate="true %{y} → predicted %{x}: %{text} images (%{customdata:.1f}% of %{y})<extra></extra>")
    layout = _layout("Confusion matrix", height=max(360, 60 + 34 * len(classes)), revision="confusion",
                     xaxis=dict(title=dict(text="predicted"), side="bottom", tickangle=-45),
                     yaxis=dict(title=dict(text="true"), autorange="reversed"))
    return go.Figure(data=[heatmap], layout=layout)


def per_class_accuracy_bars(per_class: Mapping[str, float | None], overall: float | None = None,
                            title: str = "Per-class accuracy") -> go.Figure:
    """One bar per class (classes with no test images are left out) and the overall accuracy as a line."""
    names = [str(k) for k, v in per_class.items() if v is not None]
    values = [100 * v for v in per_class.values() if v is not None]
    bars = go.Bar(x=names, y=values, name="accuracy", marker_color=BAR_COLOR, text=[f"{v:.1f}%" for v in values],
                  textposition="outside", hovertemplate="%{x}: %{y:.1f}%<extra></extra>")
    shapes = []
    if overall is not None:
        # The overall accuracy is named in the title: a label on the line sat on top of the bars.
        shapes.append(_line_shape("y", 100 * overall, FRONTIER_COLOR))
        title = f"{title} · overall {100 * overall:.1f}% (red dashed line)"
    layout = _layout(title, revision="per-class", shapes=shapes,
                     yaxis=dict(title=dict(text="accuracy (%)"), range=[0, 105]))
    return go.Figure(data=[bars], layout=layout)


def _pareto_points(rows: pd.DataFrame, x: str, y: str, label: str, color: str, size: int) -> go.Scatter:
    return go.Scatter(
        x=rows[x].tolist(), y=(100 * rows[y]).tolist(), mode="markers", name=label,
        marker=dict(color=color, size=size, line=dict(width=1, color="white")),
        customdata=rows[["name", "id", "params", "flops", "status"]].astype(str).values.tolist(),
        hovertemplate=("<b>%{customdata[0]}</b> (%{customdata[1]})<br>params %{customdata[2]}<br>"
                       "FLOPs %{customdata[3]}<br>" + f"{AXIS_LABELS.get(y, y)}: " + "%{y:.2f}<br>"
                       "status %{customdata[4]}<extra></extra>"))


def _frontier_line(front: pd.DataFrame, x: str, y: str, color: str) -> go.Scatter:
    front = front.sort_values(x)
    return go.Scatter(x=front[x].tolist(), y=(100 * front[y]).tolist(), mode="lines", showlegend=False,
                      line=dict(color=color, shape="hv", dash="dot"), hoverinfo="skip")


def _pareto_traces(plotted: pd.DataFrame, on_frontier: pd.Series, x: str, y: str, group: str) -> list[go.Scatter]:
    """One dataset: grey runs and the red frontier. Several: a colour per dataset, each with its own frontier
    (accuracies on different datasets are not comparable, so no run dominates one on another dataset)."""
    datasets = list(dict.fromkeys(plotted[group].fillna("?"))) if group in plotted else []
    if len(datasets) <= 1:
        traces = [_pareto_points(plotted[~on_frontier], x, y, "run", RUN_COLOR, 9),
                  _pareto_points(plotted[on_frontier], x, y, "Pareto frontier", FRONTIER_COLOR, 12)]
        front = plotted[on_frontier]
        return traces + ([_frontier_line(front, x, y, FRONTIER_COLOR)] if len(front) > 1 else [])
    traces = []
    for i, name in enumerate(datasets):
        color = RUN_PALETTE[i % len(RUN_PALETTE)]
        mine = plotted[group].fillna("?") == name
        traces.append(_pareto_points(plotted[mine & ~on_frontier], x, y, f"{name}", color, 8))
        front = plotted[mine & on_frontier]
        traces.append(_pareto_points(front, x, y, f"{name}: frontier", color, 13))
        traces[-1].marker.line = dict(width=2, color="black")
        if len(front) > 1:
            traces.append(_frontier_line(front, x, y, color))
    return traces


def _seed_groups_trace(groups: pd.DataFrame, x: str) -> go.Scatter:
    """Each group of seeds at its mean final accuracy with its 95 % interval as an error bar (none below 2 runs)."""
    mean = 100 * groups["mean"]
    upper = (100 * groups["high"] - mean).fillna(0)
    lower = (mean - 100 * groups["low"]).fillna(0)
    return go.Scatter(
        x=groups[x].tolist(), y=mean.tolist(), mode="markers", name="group of seeds: mean, 95 % interval",
        marker=dict(color="black", size=10, symbol="diamond"),
        error_y=dict(type="data", symmetric=False, array=upper.tolist(), arrayminus=lower.tolist(), color="black",
                     thickness=1.5, width=6),
        customdata=groups[["name", "id", "n"]].astype(str).values.tolist(),
        hovertemplate=("<b>%{customdata[0]}</b> (%{customdata[1]})<br>n %{customdata[2]} seeds<br>"
                       "mean final test accuracy %{y:.2f}<extra></extra>"))


def pareto_chart(table: pd.DataFrame, frontier: pd.Series, x: str = "params", y: str = "best_test_accuracy",
                 budget: float | None = None, group: str = "data", seed_groups: pd.DataFrame | None = None
                 ) -> go.Figure:
    """Accuracy against cost for every run; frontier runs (a frontier per dataset in column `group`, see
    runs_panel) joined by a step line; the budget as a vertical line. Hover names the run and gives its numbers.
    `seed_groups` (columns id, name, n, mean, low, high and `x`) are drawn with their 95 % intervals."""
    plotted = table.dropna(subset=[x, y])
    on_frontier = frontier.reindex(plotted.index, fill_value=False).astype(bool)
    traces = _pareto_traces(plotted, on_frontier, x, y, group)
    if seed_groups is not None and not seed_groups.dropna(subset=[x, "mean"]).empty:
        traces.append(_seed_groups_trace(seed_groups.dropna(subset=[x, "mean"]), x))
    shapes, notes = [], []
    if budget is not None:
        shapes.append(_line_shape("x", budget, BUDGET_COLOR))
        # On a log axis an annotation's x is given as log10 of the value.
        notes.append(_note(f"budget {budget:,.0f}", math.log10(budget), 1, "x", "paper", xanchor="left",
                           yanchor="top"))
    what = "parameters" if x == "params" else "FLOPs"
    # Log scale: small nets and the budget (often 100x larger) stay readable on one axis.
    layout = _layout(f"Accuracy against {what}", revision=f"pareto-{x}", shapes=shapes, annotations=notes,
                     xaxis=dict(title=dict(text=AXIS_LABELS.get(x, x) + " (log scale)"), type="log"),
                     yaxis=dict(title=dict(text=AXIS_LABELS.get(y, y))))
    return go.Figure(data=traces, layout=layout)


def _curve(frame: pd.DataFrame, label: str, column: str, color: str, axis: int) -> go.Scatter:
    kind, scale = column.split("_")[0], 100 if column.endswith("accuracy") else 1
    return go.Scatter(
        x=frame["epoch"].tolist(), y=(frame[column] * scale).tolist(), mode="lines+markers", name=f"{label} ({kind})",
        legendgroup=f"{label} ({kind})", showlegend=axis == 1, xaxis=f"x{axis}", yaxis=f"y{axis}",
        line=dict(color=color, dash="solid" if kind == "test" else "dot"), marker=dict(size=5),
        hovertemplate=f"{label}<br>epoch %{{x}}<br>{column.replace('_', ' ')}: %{{y:.3f}}<extra></extra>")


def curves_overlay(curves: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Loss and accuracy per epoch of several runs side by side; one colour per run, test solid, train dotted."""
    traces = []
    for i, (label, frame) in enumerate(curves.items()):
        color = RUN_PALETTE[i % len(RUN_PALETTE)]
        for column, axis in (("test_loss", 1), ("train_loss", 1), ("test_accuracy", 2), ("train_accuracy", 2)):
            if column in frame and not frame[column].isna().all():
                traces.append(_curve(frame, label, column, color, axis))
    epoch_axis = dict(title=dict(text="epoch"), tick0=1, dtick=1)  # whole epochs only
    layout = _layout(
        "Runs compared (solid: test, dotted: train)", height=480, revision="overlay",
        # The legend sits at the bottom of the figure (container coordinates), under the "epoch" axis titles
        # rather than over them, whatever the height of the plot.
        margin=dict(l=10, r=10, t=50, b=110),
        legend=dict(orientation="h", yref="container", yanchor="bottom", y=0.0, xanchor="left", x=0.0),
        xaxis=epoch_axis | dict(domain=[0.0, 0.46]), xaxis2=epoch_axis | dict(domain=[0.54, 1.0]),
        yaxis=dict(anchor="x"), yaxis2=dict(anchor="x2"),
        annotations=[_note("Loss", 0.23, 1.0, "paper", "paper", yanchor="bottom"),
                     _note("Accuracy (%)", 0.77, 1.0, "paper", "paper", yanchor="bottom")])
    return go.Figure(data=traces, layout=layout)


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML file of the figure that works offline (plotly.js embedded)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


__all__ = ["confusion_heatmap", "per_class_accuracy_bars", "pareto_chart", "curves_overlay", "figure_html"]
