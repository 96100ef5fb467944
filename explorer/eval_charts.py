"""Pure functions: evaluations and run histories -> Plotly figures. No Streamlit here.

Accuracies arrive as fractions in [0, 1] and are drawn as percentages, like the training charts.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

FRONTIER_COLOR = "#d62728"
RUN_COLOR = "#8c9db5"
BUDGET_COLOR = "#7f7f7f"
BAR_COLOR = "#1f77b4"
RUN_PALETTE = qualitative.Plotly
AXIS_LABELS = {"params": "parameters", "flops": "FLOPs (2 × MACs, one image)",
               "best_test_accuracy": "best test accuracy (%)", "final_test_accuracy": "final test accuracy (%)"}


def _layout(fig: go.Figure, title: str, height: int = 380, revision: str = "eval") -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), uirevision=revision,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0))
    return fig


def confusion_heatmap(confusion: list[list[int]], classes: list[str], normalize: bool = True) -> go.Figure:
    """Rows = true class, columns = predicted class; colour = share of the true class (or the count).

    Every cell shows its count; hover gives both the count and the share of the row.
    """
    totals = [sum(row) or 1 for row in confusion]
    shares = [[100 * v / total for v in row] for row, total in zip(confusion, totals)]
    z = shares if normalize else confusion
    fig = go.Figure(go.Heatmap(
        z=z, x=classes, y=classes, text=confusion, texttemplate="%{text}", colorscale="Blues",
        customdata=shares, zmin=0, zmax=100 if normalize else None,
        colorbar=dict(title="% of true" if normalize else "images"),
        hovertemplate="true %{y} → predicted %{x}: %{text} images (%{customdata:.1f}% of %{y})<extra></extra>"))
    fig.update_xaxes(title="predicted", side="bottom", tickangle=-45)
    fig.update_yaxes(title="true", autorange="reversed")
    size = max(360, 60 + 34 * len(classes))
    return _layout(fig, "Confusion matrix", height=size, revision="confusion")


def per_class_accuracy_bars(per_class: Mapping[str, float | None], overall: float | None = None,
                            title: str = "Per-class accuracy") -> go.Figure:
    """One bar per class (classes with no test images are left out) and the overall accuracy as a line."""
    names = [str(k) for k, v in per_class.items() if v is not None]
    values = [100 * v for v in per_class.values() if v is not None]
    fig = go.Figure(go.Bar(x=names, y=values, name="accuracy", marker_color=BAR_COLOR,
                           text=[f"{v:.1f}%" for v in values], textposition="outside",
                           hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    if overall is not None:
        fig.add_hline(y=100 * overall, line_dash="dash", line_color=FRONTIER_COLOR,
                      annotation_text=f"overall {100 * overall:.1f}%", annotation_position="top right")
    fig.update_yaxes(title="accuracy (%)", range=[0, 105])
    return _layout(fig, title, revision="per-class")


def pareto_chart(table: pd.DataFrame, frontier: pd.Series, x: str = "params", y: str = "best_test_accuracy",
                 budget: float | None = None) -> go.Figure:
    """Accuracy against cost for every run; frontier runs in red joined by a step line; the budget as a
    vertical line. Hover names the run and gives its numbers."""
    plotted = table.dropna(subset=[x, y])
    on_frontier = frontier.reindex(plotted.index, fill_value=False).astype(bool)
    fig = go.Figure()
    for mask, label, color, size in ((~on_frontier, "run", RUN_COLOR, 9), (on_frontier, "Pareto frontier",
                                                                           FRONTIER_COLOR, 12)):
        rows = plotted[mask]
        fig.add_trace(go.Scatter(
            x=rows[x], y=100 * rows[y], mode="markers", name=label, marker=dict(color=color, size=size,
                                                                                line=dict(width=1, color="white")),
            customdata=rows[["name", "id", "params", "flops", "status"]].astype(str).values,
            hovertemplate=("<b>%{customdata[0]}</b> (%{customdata[1]})<br>params %{customdata[2]}<br>"
                           "FLOPs %{customdata[3]}<br>" + f"{AXIS_LABELS.get(y, y)}: " + "%{y:.2f}<br>"
                           "status %{customdata[4]}<extra></extra>")))
    front = plotted[on_frontier].sort_values(x)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=front[x], y=100 * front[y], mode="lines", line=dict(color=FRONTIER_COLOR,
                                 shape="hv", dash="dot"), hoverinfo="skip", showlegend=False))
    if budget is not None:
        fig.add_vline(x=budget, line_dash="dash", line_color=BUDGET_COLOR,
                      annotation_text=f"budget {budget:,.0f}", annotation_position="top right")
    # Log scale: small nets and the budget (often 100x larger) stay readable on one axis.
    fig.update_xaxes(title=AXIS_LABELS.get(x, x) + " (log scale)", type="log")
    fig.update_yaxes(title=AXIS_LABELS.get(y, y))
    what = "parameters" if x == "params" else "FLOPs"
    return _layout(fig, f"Accuracy against {what}", revision=f"pareto-{x}")


def curves_overlay(curves: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Loss and accuracy per epoch of several runs side by side; one colour per run, test solid, train dotted."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy (%)"), horizontal_spacing=0.08)
    for i, (label, frame) in enumerate(curves.items()):
        color = RUN_PALETTE[i % len(RUN_PALETTE)]
        for column, col, dash, scale in (("test_loss", 1, "solid", 1), ("train_loss", 1, "dot", 1),
                                         ("test_accuracy", 2, "solid", 100), ("train_accuracy", 2, "dot", 100)):
            if column not in frame or frame[column].isna().all():
                continue
            kind = column.split("_")[0]
            fig.add_trace(go.Scatter(
                x=frame["epoch"], y=frame[column] * scale, mode="lines+markers", name=f"{label} ({kind})",
                legendgroup=f"{label} ({kind})", showlegend=col == 1, line=dict(color=color, dash=dash),
                marker=dict(size=5),
                hovertemplate=f"{label}<br>epoch %{{x}}<br>{column.replace('_', ' ')}: %{{y:.3f}}<extra></extra>"),
                row=1, col=col)
    fig.update_xaxes(title="epoch", tickformat="d")
    fig = _layout(fig, "Runs compared (solid: test, dotted: train)", height=460, revision="overlay")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0))
    return fig


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML file of the figure that works offline (plotly.js embedded)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


__all__ = ["confusion_heatmap", "per_class_accuracy_bars", "pareto_chart", "curves_overlay", "figure_html"]
