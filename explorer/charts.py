"""Pure functions: cost tables and training events -> Plotly figures. No Streamlit here.

Live charts are redrawn about once a second and Streamlit re-serializes the whole figure each time, so
traces are kept small (the batch-loss curve is thinned to at most MAX_POINTS points) and every figure
sets `uirevision` so a user's zoom survives the updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.cost import ModelCost

MAX_POINTS = 1500
OK_COLOR = "#2e9f5b"
WARN_COLOR = "#e0a100"
OVER_COLOR = "#d62728"
TRAIN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"
BASELINE_COLOR = "#7f7f7f"


def _layout(fig: go.Figure, title: str, height: int = 320, revision: str = "explorer", side: int = 10) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=side, r=side, t=40, b=10), uirevision=revision,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    return fig


# --- architecture ---------------------------------------------------------------------------------------


def cost_by_block(cost: ModelCost) -> list[dict]:
    """Params and FLOPs summed per block ('conv2' holds conv2, conv2.bn, ...), in network order."""
    blocks: dict[str, dict] = {}
    for layer in cost.layers:
        name = layer.name.split(".")[0]
        row = blocks.setdefault(name, {"block": name, "params": 0, "flops": 0})
        row["params"] += layer.params
        row["flops"] += 2 * layer.macs
    return [row for row in blocks.values() if row["params"] or row["flops"]]


def cost_bars(cost: ModelCost) -> go.Figure:
    """Where the parameters and the FLOPs go: two horizontal bar charts side by side, one bar per block."""
    rows = cost_by_block(cost)
    names = [r["block"] for r in rows]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("Parameters", "FLOPs (2 × MACs)"))
    params = [r["params"] for r in rows]
    flops = [r["flops"] for r in rows]
    share = [p / cost.params if cost.params else 0.0 for p in params]
    fig.add_trace(go.Bar(y=names, x=params, orientation="h", name="params", marker_color=TRAIN_COLOR,
                         customdata=share, hovertemplate="%{y}: %{x:,} params (%{customdata:.1%})<extra></extra>"),
                  row=1, col=1)
    flop_share = [f / cost.flops if cost.flops else 0.0 for f in flops]
    fig.add_trace(go.Bar(y=names, x=flops, orientation="h", name="FLOPs", marker_color=TEST_COLOR,
                         customdata=flop_share,
                         hovertemplate="%{y}: %{x:,} FLOPs (%{customdata:.1%})<extra></extra>"),
                  row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(showlegend=False)
    return _layout(fig, "", height=max(220, 60 + 28 * len(rows)), revision="cost")


def budget_color(params: int, budget: int) -> str:
    """Green within 90 % of the budget, amber up to it, red over it."""
    if params > budget:
        return OVER_COLOR
    return WARN_COLOR if params > 0.9 * budget else OK_COLOR


def budget_gauge(params: int, budget: int) -> go.Figure:
    """A gauge of parameters against the budget; the bar turns red when over."""
    top = max(budget * 1.25, params * 1.05)
    color = budget_color(params, budget)
    fig = go.Figure(go.Indicator(
        mode="gauge+number+delta",
        value=params,
        number={"valueformat": ",d", "font": {"color": color, "size": 26}},
        delta={"reference": budget, "valueformat": ",d", "increasing": {"color": OVER_COLOR},
               "decreasing": {"color": OK_COLOR}},
        gauge={
            "axis": {"range": [0, top], "tickformat": ".3~s"},
            "bar": {"color": color},
            "steps": [{"range": [0, budget], "color": "#eef5ef"}, {"range": [budget, top], "color": "#fbe9e9"}],
            "threshold": {"line": {"color": OVER_COLOR, "width": 3}, "thickness": 0.9, "value": budget},
        },
        title={"text": f"params vs budget {budget:,}", "font": {"size": 14}},
    ))
    # Wide side margins: the gauge's end labels are drawn outside its arc.
    return _layout(fig, "", height=230, revision="gauge", side=40)


# --- training ------------------------------------------------------------------------------------------


@dataclass
class TrainingHistory:
    """What the live charts need, gathered from a run's events (see the run-record contract)."""

    status: str = "queued"
    error: str | None = None
    classes: list[str] = field(default_factory=list)
    total_steps: int = 0
    started_time: float | None = None
    last_time: float | None = None
    device: str | None = None
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    epoch_end_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_second: list[float] = field(default_factory=list)
    per_class: dict[str, float] = field(default_factory=dict)
    baseline_accuracy: float | None = None
    baseline_per_class: dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def step(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def ended(self) -> bool:
        return self.status in ("finished", "stopped", "failed")


_END_STATUS = {"finished": "finished", "stopped": "stopped", "failed": "failed"}


def _apply_epoch(history: TrainingHistory, event: dict) -> None:
    history.epochs.append(int(event["epoch"]))
    history.epoch_end_steps.append(history.step)
    history.train_loss.append(float(event.get("train_loss", float("nan"))))
    history.train_accuracy.append(float(event.get("train_accuracy", float("nan"))))
    history.test_loss.append(float(event.get("test_loss", float("nan"))))
    history.test_accuracy.append(float(event.get("test_accuracy", float("nan"))))
    history.seconds.append(float(event.get("seconds", 0.0)))
    history.images_per_second.append(float(event.get("images_per_second", 0.0)))
    history.per_class = dict(event.get("per_class") or {})


def history_from_events(events: list[dict[str, Any]], history: TrainingHistory | None = None) -> TrainingHistory:
    """Fold events into a TrainingHistory; pass the previous history to add only the new events."""
    history = history if history is not None else TrainingHistory()
    for event in events:
        kind = event.get("type")
        history.last_time = event.get("time", history.last_time)
        if kind == "started":
            history.status = "running"
            history.started_time = event.get("time")
            history.classes = list(event.get("classes") or [])
            history.total_steps = int(event.get("total_steps") or 0)
            history.device = event.get("device")
        elif kind == "baseline":
            history.baseline_accuracy = float(event["test_accuracy"])
            history.baseline_per_class = dict(event.get("per_class") or {})
        elif kind == "batch":
            history.steps.append(int(event["step"]))
            history.losses.append(float(event["loss"]))
        elif kind == "epoch":
            _apply_epoch(history, event)
        elif kind in _END_STATUS:
            history.status = _END_STATUS[kind]
            history.summary = dict(event.get("summary") or {})
            history.error = event.get("error")
    return history


def progress(history: TrainingHistory, now: float) -> tuple[float, float | None]:
    """(fraction done in [0, 1], seconds left or None) from the step count and the time since 'started'."""
    if history.status == "finished":
        return 1.0, 0.0
    if not history.total_steps or history.started_time is None:
        return 0.0, None
    done = min(1.0, history.step / history.total_steps)
    if done <= 0:
        return 0.0, None
    elapsed = max(0.0, now - history.started_time)
    return done, elapsed * (1 - done) / done


def thin(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """Every k-th point (always keeping the last) so a trace stays under max_points."""
    if len(xs) <= max_points:
        return list(xs), list(ys)
    stride = -(-len(xs) // max_points)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def loss_figure(history: TrainingHistory, revision: str = "run") -> go.Figure:
    """Training loss every N batches, with the test loss at each epoch's end."""
    xs, ys = thin(history.steps, history.losses)
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines", name="train loss (batches)", line_color=TRAIN_COLOR))
    if history.epochs:
        fig.add_trace(go.Scatter(x=history.epoch_end_steps, y=history.test_loss, mode="lines+markers",
                                 name="test loss (epoch)", line_color=TEST_COLOR))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="loss", rangemode="tozero")
    return _layout(fig, "Loss", revision=revision)


def accuracy_figure(history: TrainingHistory, revision: str = "run") -> go.Figure:
    """Train and test accuracy per epoch (percent), with the random-init baseline as a dashed line."""
    pct = [100 * a for a in history.train_accuracy], [100 * a for a in history.test_accuracy]
    fig = go.Figure([
        go.Scatter(x=history.epochs, y=pct[0], mode="lines+markers", name="train", line_color=TRAIN_COLOR),
        go.Scatter(x=history.epochs, y=pct[1], mode="lines+markers", name="test", line_color=TEST_COLOR),
    ])
    if history.baseline_accuracy is not None:
        fig.add_hline(y=100 * history.baseline_accuracy, line_dash="dash", line_color=BASELINE_COLOR,
                      annotation_text=f"random init {100 * history.baseline_accuracy:.1f} %",
                      annotation_position="bottom right")
    fig.update_xaxes(title="epoch", dtick=1, rangemode="tozero")
    fig.update_yaxes(title="accuracy (%)", range=[0, 100])
    return _layout(fig, "Accuracy", revision=revision)


def per_class_figure(history: TrainingHistory, revision: str = "run") -> go.Figure:
    """Test accuracy per class after the latest epoch, next to the random-init baseline."""
    classes = history.classes or list(history.per_class or history.baseline_per_class)
    latest = [100 * history.per_class.get(c, 0.0) for c in classes]
    fig = go.Figure()
    if history.baseline_per_class:
        fig.add_trace(go.Bar(x=classes, y=[100 * history.baseline_per_class.get(c, 0.0) for c in classes],
                             name="random init", marker_color=BASELINE_COLOR, opacity=0.5))
    if history.per_class:
        label = f"epoch {history.epochs[-1]}" if history.epochs else "latest"
        fig.add_trace(go.Bar(x=classes, y=latest, name=label, marker_color=TEST_COLOR,
                             text=[f"{v:.0f}" for v in latest], textposition="outside"))
    fig.update_yaxes(title="test accuracy (%)", range=[0, 105])
    fig.update_layout(barmode="group")
    return _layout(fig, "Per-class accuracy (latest epoch)", revision=revision)


def epoch_seconds_figure(history: TrainingHistory, revision: str = "run") -> go.Figure:
    """Wall seconds per epoch, with images/s in the hover."""
    fig = go.Figure(go.Bar(x=history.epochs, y=history.seconds, name="seconds", marker_color=TRAIN_COLOR,
                           customdata=history.images_per_second,
                           hovertemplate="epoch %{x}: %{y:.1f} s, %{customdata:,.0f} img/s<extra></extra>"))
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(title="seconds", rangemode="tozero")
    return _layout(fig, "Seconds per epoch", revision=revision)


def training_figures(history: TrainingHistory, revision: str = "run") -> dict[str, go.Figure]:
    """The four live charts by name."""
    return {
        "loss": loss_figure(history, revision),
        "accuracy": accuracy_figure(history, revision),
        "per_class": per_class_figure(history, revision),
        "seconds": epoch_seconds_figure(history, revision),
    }
