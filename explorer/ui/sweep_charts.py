"""Pure functions: a sweep's point rows (explorer.search.sweep.point_rows) and the study replay's tables ->
Plotly figures and tables. No Streamlit.

The sweep chart puts test accuracy (mean of the seeds, error bars = the 95 % interval) against the first swept
setting's values, one line per value of the second setting (if any); a point with one run has no error bar.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from explorer.ui.charts import TEST_COLOR


def _text(value: object) -> str:
    if isinstance(value, list):
        return "+".join(map(str, value)) or "none"
    return str(value)


def sweep_figure(points: list[dict], keys: list[str], revision: str = "") -> go.Figure:
    """Accuracy against keys[0] (as categories, in the grid's order); one trace per value of keys[1]."""
    fig = go.Figure()
    x_key = keys[0] if keys else None
    groups: dict[str, list[dict]] = {}
    for point in points:
        label = _text(point["settings"].get(keys[1])) if len(keys) > 1 else "test accuracy"
        groups.setdefault(label, []).append(point)
    for label, members in groups.items():
        done = [p for p in members if p["mean"] is not None]
        plus = [(p["high"] - p["mean"]) if p["high"] is not None else 0.0 for p in done]
        minus = [(p["mean"] - p["low"]) if p["low"] is not None else 0.0 for p in done]
        fig.add_trace(go.Scatter(
            x=[_text(p["settings"].get(x_key)) for p in done], y=[p["mean"] for p in done],
            mode="lines+markers", name=f"{keys[1]}={label}" if len(keys) > 1 else label,
            marker=dict(color=TEST_COLOR) if len(groups) == 1 else None,
            error_y=dict(type="data", symmetric=False, array=plus, arrayminus=minus, visible=True),
            customdata=[[p["n"]] for p in done], hovertemplate="%{x}: %{y:.1%} (n = %{customdata[0]})<extra></extra>"))
    fig.update_layout(title=dict(text="Test accuracy: mean of the seeds, 95 % interval"), height=400,
                      margin=dict(l=10, r=10, t=40, b=10), uirevision=revision,
                      xaxis=dict(title=dict(text=x_key or ""), type="category"),
                      yaxis=dict(title=dict(text="test accuracy"), tickformat=".0%"),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0))
    return fig


def points_table(points: list[dict]) -> pd.DataFrame:
    """One row per grid point: its settings, n, mean and interval (percent), runs still going."""
    return pd.DataFrame([{**{k: _text(v) for k, v in p["settings"].items()}, "n": p["n"],
                          "Mean %": None if p["mean"] is None else 100 * p["mean"],
                          "Low %": None if p["low"] is None else 100 * p["low"],
                          "High %": None if p["high"] is None else 100 * p["high"],
                          "Running": p["running"], "Failed": p["failed"]} for p in points])


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def replay_steps_table(steps: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"Step": s["label"], "Study": _pct(s["reported"]), "n": s["n"], "Ours (mean)": _pct(s["mean"]),
                          "95 % interval": "—" if s["low"] is None else f"{_pct(s['low'])} – {_pct(s['high'])}"}
                         for s in steps])


def replay_conclusions_table(conclusions: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"The study's conclusion": c["conclusion"],
                          "Study": f"{_pct(c['reported_a'])} v {_pct(c['reported_b'])}",
                          "Ours: A − B": "—" if c["diff"] is None else
                          f"{100 * c['diff']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]",
                          "Verdict": c["verdict"]} for c in conclusions])
