"""Pure functions: a run's History (explorer.store.events.fold) -> Plotly figures. No Streamlit.

Live charts are redrawn about once a second and Streamlit re-serializes the whole figure each time, so
traces are kept small (the batch-loss curve is thinned to at most MAX_POINTS points) and every figure
sets `uirevision` so a user's zoom survives the updates.
"""

from __future__ import annotations

import plotly.graph_objects as go

from explorer.store.events import History

MAX_POINTS = 1500
MARKERS_UP_TO = 30  # a short series gets markers: a single point drawn as a line is invisible
OK_COLOR = "#2e9f5b"
WARN_COLOR = "#e0a100"
OVER_COLOR = "#d62728"
TRAIN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"
BASELINE_COLOR = "#7f7f7f"


def _base_layout(title: str, height: int = 320, revision: str = "explorer", side: int = 10) -> dict:
    # Layouts are plain dicts handed to go.Figure once: plotly validates a figure far faster in one go
    # than through a chain of update_* calls, and the live charts are redrawn about once a second.
    return dict(title=dict(text=title), height=height, margin=dict(l=side, r=side, t=40, b=10), uirevision=revision,
                legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))


# --- training ------------------------------------------------------------------------------------------


def progress(history: History, now: float) -> tuple[float, float | None]:
    """(fraction of the steps done in [0, 1], seconds left or None): the fold's estimate at the last logged step
    (training and the evaluations still to come), counted down by the time since then."""
    if history.status == "finished":
        return 1.0, 0.0
    if not history.total_steps or history.started_time is None:
        return 0.0, None
    done = min(1.0, history.step / history.total_steps)
    left = history.seconds_left()
    if done <= 0 or left is None:
        return done, None
    return done, max(0.0, left - max(0.0, now - history.last_step_time))


def thin(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """Every k-th point (always keeping the last) so a trace stays under max_points."""
    if len(xs) <= max_points:
        return list(xs), list(ys)
    stride = -(-len(xs) // max_points)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _axis(title: str, **options) -> dict:
    return dict(title=dict(text=title), **options)


def loss_figure(history: History, revision: str = "run") -> go.Figure:
    """Training loss every N batches, with the test loss at each epoch's end."""
    xs, ys = thin(history.steps, history.losses)
    mode = "lines+markers" if len(xs) <= MARKERS_UP_TO else "lines"
    traces = [go.Scatter(x=xs, y=ys, mode=mode, name="train loss (batches)", line_color=TRAIN_COLOR)]
    if history.epochs:
        traces.append(go.Scatter(x=history.epoch_end_steps, y=history.test_loss, mode="lines+markers",
                                 name="test loss (epoch)", line_color=TEST_COLOR))
    layout = _base_layout("Loss", revision=revision) | dict(
        xaxis=_axis("step"), yaxis=_axis("loss", rangemode="tozero"))
    return go.Figure(data=traces, layout=layout)


def _baseline_line(accuracy: float) -> dict:
    """A dashed horizontal line across the plot at the random-init accuracy, with its label."""
    y = 100 * accuracy
    return dict(
        shapes=[dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=y, y1=y,
                     line=dict(color=BASELINE_COLOR, dash="dash"))],
        annotations=[dict(text=f"random init {y:.1f} %", xref="paper", x=1, yref="y", y=y, xanchor="right",
                          yanchor="top", showarrow=False, font=dict(color=BASELINE_COLOR))],
    )


def _percent(values: list[float | None]) -> list[float | None]:
    return [None if v is None else 100 * v for v in values]


def accuracy_figure(history: History, revision: str = "run") -> go.Figure:
    """Train and test accuracy per epoch (percent), with the random-init baseline as a dashed line."""
    traces = [
        go.Scatter(x=history.epochs, y=_percent(history.train_accuracy), mode="lines+markers",
                   name="train", line_color=TRAIN_COLOR),
        go.Scatter(x=history.epochs, y=_percent(history.test_accuracy), mode="lines+markers",
                   name="test", line_color=TEST_COLOR),
    ]
    layout = _base_layout("Accuracy", revision=revision) | dict(
        xaxis=_axis("epoch", dtick=1, rangemode="tozero"), yaxis=_axis("accuracy (%)", range=[0, 100]))
    if history.baseline_accuracy is not None:
        layout |= _baseline_line(history.baseline_accuracy)
    return go.Figure(data=traces, layout=layout)


def per_class_figure(history: History, revision: str = "run") -> go.Figure:
    """Test accuracy per class after the latest epoch, next to the random-init baseline."""
    classes = history.classes or list(history.per_class or history.baseline_per_class)
    traces = []
    if history.baseline_per_class:
        traces.append(go.Bar(x=classes, y=_percent([history.baseline_per_class.get(c, 0.0) for c in classes]),
                             name="random init", marker_color=BASELINE_COLOR, opacity=0.5))
    if history.per_class:
        # None: a class with no test images (a tiny test split); no bar rather than a failed chart.
        latest = _percent([history.per_class.get(c, 0.0) for c in classes])
        label = f"epoch {history.epochs[-1]}" if history.epochs else "latest"
        traces.append(go.Bar(x=classes, y=latest, name=label, marker_color=TEST_COLOR,
                             text=["" if v is None else f"{v:.0f}" for v in latest], textposition="outside"))
    layout = _base_layout("Per-class accuracy (latest epoch)", revision=revision) | dict(
        # Headroom above 100 % for the value labels drawn over the bars.
        barmode="group", yaxis=_axis("test accuracy (%)", range=[0, 114], tickvals=[0, 20, 40, 60, 80, 100]))
    return go.Figure(data=traces, layout=layout)


def epoch_seconds_figure(history: History, revision: str = "run") -> go.Figure:
    """Wall seconds per epoch (training + evaluation), with the epoch's training images per second (of
    training time, as everywhere in the app) in the hover."""
    bars = go.Bar(x=history.epochs, y=history.seconds, name="seconds", marker_color=TRAIN_COLOR,
                  customdata=history.images_per_second,
                  hovertemplate="epoch %{x}: %{y:.1f} s, %{customdata:,.0f} training img/s<extra></extra>")
    layout = _base_layout("Seconds per epoch", revision=revision) | dict(
        xaxis=_axis("epoch", dtick=1), yaxis=_axis("seconds", rangemode="tozero"))
    return go.Figure(data=[bars], layout=layout)


def training_figures(history: History, revision: str = "run") -> dict[str, go.Figure]:
    """The four live charts by name."""
    return {
        "loss": loss_figure(history, revision),
        "accuracy": accuracy_figure(history, revision),
        "per_class": per_class_figure(history, revision),
        "seconds": epoch_seconds_figure(history, revision),
    }
