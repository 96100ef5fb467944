"""The run-record events: typed round trip, parsing errors, the incremental reader, and the one fold."""

from __future__ import annotations

import json

import pytest

from explorer.engine.config import TrainConfig
from explorer.engine.train import train
from explorer.store.events import (
    EVENT_TYPES,
    Batch,
    Epoch,
    EventReader,
    EventWriter,
    Failed,
    History,
    RecordError,
    Started,
    fold,
    parse_event,
    parse_line,
)

EXAMPLES = {
    "queued": {"slots": 2}, "loading": {"data": "synthetic"},
    "started": {"params": 10, "flops": 20, "device": "cpu", "classes": ["a", "b"], "total_steps": 4},
    "baseline": {"test_accuracy": 0.5, "test_loss": 0.7, "per_class": {"a": 1.0, "b": 0.0}},
    "batch": {"step": 3, "loss": 0.5, "epoch": 1, "batch": 3, "lr": 0.1, "threads": 2},
    "epoch": {"epoch": 1, "test_accuracy": 0.6, "images_per_second": 100.0},
    "partial_epoch": {"epoch": 1, "batches": 3, "steps_per_epoch": 7, "test_accuracy": 0.4},
    "checkpoint": {"path": "model.safetensors", "epochs_done": 1},
    "finished": {"summary": {"epochs_done": 1}}, "stopped": {"summary": {}}, "failed": {"error": "boom"},
}


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_every_event_type_round_trips(kind):
    data = {"type": kind, "time": 12.5} | EXAMPLES[kind]
    event = parse_event(data)
    assert type(event) is EVENT_TYPES[kind] and event.type == kind
    again = event.to_dict()
    assert {k: again[k] for k in data} == data
    assert parse_event(again) == event
    assert parse_line(json.dumps(again)) == event


def test_bad_events_say_what_is_wrong():
    with pytest.raises(RecordError, match="unknown event type 'teleport'"):
        parse_event({"type": "teleport", "time": 1.0})
    with pytest.raises(RecordError, match="'epoch' event lacks epoch"):
        parse_event({"type": "epoch", "time": 1.0})
    with pytest.raises(RecordError, match="lacks its time"):
        parse_event({"type": "failed", "error": "x"})
    with pytest.raises(RecordError, match="not JSON"):
        parse_line("{garbage")
    with pytest.raises(RecordError, match="JSON object"):
        parse_event([1, 2])
    # A field a newer writer added (same format version) is ignored, not an error.
    assert parse_event({"type": "failed", "time": 1.0, "error": "x", "hint": "new"}) == Failed(time=1.0, error="x")


def test_nan_becomes_null_in_the_log():
    assert Batch(time=1.0, step=1, loss=float("nan")).to_dict()["loss"] is None


def test_reader_is_incremental_skips_half_lines_and_reports_garbage(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.write(Started(time=1.0, total_steps=4))
    reader = EventReader(path)
    events, problems = reader.read()
    assert [e.type for e in events] == ["started"] and problems == []
    with open(path, "a") as handle:
        handle.write("not json at all\n")
        handle.write(json.dumps({"type": "batch", "time": 2.0, "step": 1, "loss": 1.0}) + "\n")
        handle.write('{"type": "epoch", "ti')  # the run is still writing this one
    events, problems = reader.read()
    assert [e.type for e in events] == ["batch"]
    assert problems == ["events.jsonl line 2: not JSON (Expecting value at column 1); the line is skipped"]
    with open(path, "a") as handle:
        handle.write('me": 3.0, "epoch": 1}\n')
    events, problems = reader.read()
    assert events == [Epoch(time=3.0, epoch=1)] and problems == []
    assert EventReader(tmp_path / "missing.jsonl").read() == ([], [])
    writer.close()


def test_fold_status_summary_and_repeated_epochs():
    history = fold([{"type": "queued", "time": 0.0, "slots": 1}])
    assert history.status == "queued" and not history.ended
    fold([{"type": "loading", "time": 1.0, "data": "x"}], history)
    assert history.status == "running"
    events = [Started(time=10.0, total_steps=4, first_epoch=3, classes=["a"]),
              Epoch(time=12.0, epoch=3, test_accuracy=0.5, images_per_second=100.0, train_seconds=1.0),
              Epoch(time=14.0, epoch=4, test_accuracy=0.4, images_per_second=400.0, train_seconds=3.0),
              Epoch(time=15.0, epoch=4, test_accuracy=0.45, images_per_second=400.0, train_seconds=3.0),
              {"type": "bogus", "time": 16.0}]
    fold(events, history)
    assert history.epochs == [3, 4] and history.test_accuracy == [0.5, 0.45]  # the repeated epoch 4 replaced
    assert history.problems == ["event skipped: unknown event type 'bogus'"]
    summary = history.summary
    assert summary["epochs_done"] == 4 and summary["best_test_accuracy"] == 0.5
    assert summary["final_test_accuracy"] == 0.45 and summary["wall_seconds"] == 5.0  # the skipped line adds no time
    assert summary["images_per_second"] == pytest.approx((100 * 1 + 400 * 3) / 4)  # time-weighted
    fold([Failed(time=20.0, error="boom")], history)
    assert history.status == "failed" and history.error == "boom" and history.ended
    assert History().epochs_done == 0 and History(first_epoch=5).epochs_done == 4


def test_every_event_the_training_loop_emits_parses(tiny_dataset):
    raw = []
    cfg = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=3e-3, log_every=3, device="cpu")
    from explorer.arch.presets import PRESETS

    result = train(PRESETS["tutorial"], cfg, tiny_dataset, raw.append)
    history = fold(raw)
    assert history.problems == [] and history.status == "finished"
    assert history.epochs == [1] and history.test_accuracy == [result.metrics["test_accuracy"]]
    assert history.summary["final_test_accuracy"] == result.summary["final_test_accuracy"]
    assert history.summary["images_per_second"] == pytest.approx(result.summary["images_per_second"])
