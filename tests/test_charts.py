"""Pure chart functions: the live figures drawn from a run's History (the fold)."""

from __future__ import annotations

import math

import pytest

from explorer.store.events import fold as history_from_events
from explorer.ui.charts import (
    MAX_POINTS,
    accuracy_figure,
    epoch_seconds_figure,
    loss_figure,
    per_class_figure,
    progress,
    thin,
    training_figures,
)

CLASSES = ["cat", "dog", "frog"]


def run_events(epochs: int = 2, batches: int = 4, end: str = "finished") -> list[dict]:
    """A run's events as a run process writes them: started, baseline, batches, epochs, end."""
    events = [
        {"type": "started", "time": 100.0, "config": {}, "params": 1234, "flops": 5678, "device": "cpu",
         "input_shape": [3, 32, 32], "classes": CLASSES, "total_steps": epochs * batches,
         "steps_per_epoch": batches, "epochs": epochs},
        {"type": "baseline", "time": 101.0, "test_loss": 1.1, "test_accuracy": 0.3,
         "per_class": {"cat": 0.9, "dog": 0.0, "frog": 0.0}},
    ]
    step = 0
    for epoch in range(1, epochs + 1):
        for batch in range(1, batches + 1):
            step += 1
            events.append({"type": "batch", "time": 101.0 + step, "epoch": epoch, "batch": batch, "step": step,
                           "loss": 2.0 / step, "lr": 0.1})
        events.append({"type": "epoch", "time": 101.0 + step, "epoch": epoch, "train_loss": 1.0 / epoch,
                       "train_accuracy": 0.5 + 0.1 * epoch, "test_loss": 1.2 / epoch,
                       "test_accuracy": 0.4 + 0.1 * epoch, "per_class": {"cat": 0.5, "dog": 0.6, "frog": 0.1 * epoch},
                       "seconds": 4.0 + epoch, "train_seconds": 3.5 + epoch, "eval_seconds": 0.5,
                       "images_per_second": 1000.0, "lr": 0.1})
    if end == "failed":
        events.append({"type": "failed", "time": 200.0, "error": "loss is NaN at epoch 2 batch 3; lower the lr"})
    elif end:
        events.append({"type": end, "time": 200.0, "summary": {"final_test_accuracy": 0.6}})
    return events


def test_history_from_events_collects_every_series():
    history = history_from_events(run_events())
    assert history.status == "finished" and history.ended
    assert history.classes == CLASSES and history.total_steps == 8 and history.device == "cpu"
    assert history.steps == list(range(1, 9))
    assert history.losses[0] == 2.0
    assert history.epochs == [1, 2] and history.epoch_end_steps == [4, 8]
    assert history.test_accuracy == pytest.approx([0.5, 0.6])
    assert history.baseline_accuracy == 0.3
    assert history.per_class == {"cat": 0.5, "dog": 0.6, "frog": 0.2}
    assert history.seconds == [5.0, 6.0]
    # The summary is the fold's own (the end event's copy is not trusted): last/best accuracy, time since started.
    assert history.summary == pytest.approx({"final_test_accuracy": 0.6, "best_test_accuracy": 0.6, "epochs_done": 2,
                                             "wall_seconds": 100.0, "images_per_second": 1000.0,
                                             "baseline_test_accuracy": 0.3})


def test_history_is_incremental():
    events = run_events()
    history = history_from_events(events[:5])
    assert history.status == "running" and not history.ended and history.steps == [1, 2, 3]
    history = history_from_events(events[5:], history)
    assert history == history_from_events(events)


def test_failed_run_keeps_its_error():
    history = history_from_events(run_events(end="failed"))
    assert history.status == "failed"
    assert "NaN" in history.error


def test_progress_and_eta():
    events = run_events(end=None)
    # started at t=100, the random-init evaluation took 1 s, then steps 1-4 at t=102..105: 1 s per step.
    history = history_from_events(events[:6])
    done, eta = progress(history, now=105.0)
    assert done == 0.5 and eta == pytest.approx(4 * 1.0 + 2 * 1.0)  # 4 steps + 2 evaluations (timed by the first)
    assert progress(history, now=107.0)[1] == pytest.approx(4.0)  # counts down between updates, never climbs
    assert progress(history, now=500.0)[1] == 0.0
    # After epoch 1 (its evaluation took 0.5 s) and step 5 at t=106: 0.9 s per step, 3 steps and 1 evaluation left.
    history = history_from_events(events[:8])
    assert progress(history, now=106.0) == (pytest.approx(5 / 8), pytest.approx(3 * 0.9 + 0.5))
    assert progress(history_from_events(events[:1]), now=120.0) == (0.0, None)
    assert progress(history_from_events(run_events()), now=500.0) == (1.0, 0.0)


def test_thin_keeps_traces_small_and_the_last_point():
    xs = list(range(10_000))
    tx, ty = thin(xs, [2 * x for x in xs])
    assert len(tx) <= MAX_POINTS + 1
    assert tx[0] == 0 and tx[-1] == 9_999 and ty[-1] == 19_998
    assert thin([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_loss_figure_is_thinned():
    events = run_events(epochs=1, batches=5_000)
    fig = loss_figure(history_from_events(events))
    batch_trace, test_trace = fig.data
    assert len(batch_trace.x) <= MAX_POINTS + 1
    assert batch_trace.x[-1] == 5_000
    assert list(test_trace.y) == [1.2]


def test_accuracy_figure_has_train_test_and_baseline():
    fig = accuracy_figure(history_from_events(run_events()))
    train, test = fig.data
    assert list(train.y) == pytest.approx([60.0, 70.0])
    assert list(test.y) == pytest.approx([50.0, 60.0])
    (baseline,) = fig.layout.shapes
    assert baseline.y0 == pytest.approx(30.0)
    assert "random init 30.0" in fig.layout.annotations[0].text
    assert fig.layout.uirevision == "run"


def test_per_class_figure_shows_latest_epoch_and_baseline():
    fig = per_class_figure(history_from_events(run_events()))
    baseline, latest = fig.data
    assert list(latest.x) == CLASSES
    assert list(latest.y) == pytest.approx([50.0, 60.0, 20.0])
    assert latest.name == "epoch 2"
    assert list(baseline.y) == pytest.approx([90.0, 0.0, 0.0])


def test_epoch_seconds_figure():
    fig = epoch_seconds_figure(history_from_events(run_events()))
    assert list(fig.data[0].y) == [5.0, 6.0]


def test_figures_of_a_run_without_events_are_empty_not_errors():
    figures = training_figures(history_from_events([]))
    assert set(figures) == {"loss", "accuracy", "per_class", "seconds"}
    assert len(figures["loss"].data[0].x) == 0
    assert not math.isnan(progress(history_from_events([]), 0.0)[0])


def test_a_short_loss_series_has_markers_a_long_one_lines():
    one = loss_figure(history_from_events(run_events(epochs=1, batches=1, end=None)[:3]))
    assert one.data[0].mode == "lines+markers" and list(one.data[0].x) == [1]
    long = loss_figure(history_from_events(run_events(epochs=1, batches=100, end=None)))
    assert long.data[0].mode == "lines"
    hover = epoch_seconds_figure(history_from_events(run_events())).data[0].hovertemplate
    assert "training img/s" in hover


def test_a_diverged_run_records_the_steps_it_ran(tiny_dataset):
    # A divergence before the first logged batch used to leave the progress at "step 0 of N".
    from explorer.arch.presets import PRESETS
    from explorer.engine.config import TrainConfig
    from explorer.engine.train import train
    from explorer.errors import TrainingError

    events = []
    cfg = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=10.0, log_every=1000, device="cpu")
    with pytest.raises(TrainingError, match=r"epoch 1, batch(es)? [\d-]+"):
        train(PRESETS["tutorial"], cfg, tiny_dataset, events.append)
    history = history_from_events(events)
    assert history.status == "failed" and history.step > 0 and history.losses[-1] is None
    assert history.step < history.total_steps


def test_per_class_figure_skips_classes_without_test_images():
    events = run_events(epochs=1, end=None)
    events[-1]["per_class"] = {"cat": 0.5, "dog": None, "frog": 0.25}
    bars = per_class_figure(history_from_events(events)).data[-1]
    assert list(bars.y) == [50.0, None, 25.0] and list(bars.text) == ["50", "", "25"]
