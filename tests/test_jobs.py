"""Background runs: run folders and records, events, two runs at once, queueing, stop, failure, restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.presets import PRESETS
from explorer.engine.config import TrainConfig
from explorer.errors import DataError, ExplorerError
from explorer.store.checkpoint import load_checkpoint
from explorer.store.jobs import JobManager, new_run_id

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
QUICK = TrainConfig(epochs=2, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=2,
                    device="cpu")
LONG = QUICK.replace(epochs=500)
DATA = "synthetic:200"
# The study's tutorial net (no BatchNorm) with SGD at lr 10 diverges in epoch 1 on this data.
DIVERGING = (PRESETS["tutorial"], QUICK.replace(optimizer="sgd", lr=10.0), "synthetic:600")


def wait_for(condition, timeout=60.0):
    """Poll until `condition()` is truthy (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail("condition not reached in time")


def read_events_file(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_finished_run_leaves_a_complete_record(runs_dir):
    manager = JobManager()  # EXPLORER_RUNS_DIR (the fixture) is the default
    run_id = manager.start(TINY, QUICK, DATA, name="tiny", preset=None, recipe="fast")
    record = manager.wait(run_id, timeout=120)
    assert record["status"] == "finished" and record["error"] is None
    on_disk = json.loads((runs_dir / run_id / "run.json").read_text())
    assert on_disk == record
    for key in ("id", "name", "status", "created", "finished", "preset", "recipe", "arch", "train", "data",
                "data_fingerprint", "input_shape", "num_classes", "classes", "params", "flops", "device", "error",
                "summary", "checkpoint", "resumed_from"):
        assert key in record, key
    assert (record["id"], record["name"], record["recipe"], record["data"]) == (run_id, "tiny", "fast", DATA)
    assert record["arch"] == TINY.to_dict() and record["train"] == QUICK.to_dict()
    assert record["input_shape"] == [3, 32, 32] and record["num_classes"] == 10 and record["device"] == "cpu"
    summary = record["summary"]
    assert summary["epochs_done"] == 2 and 0 <= summary["final_test_accuracy"] <= 1
    assert summary["best_test_accuracy"] >= summary["final_test_accuracy"] and summary["images_per_second"] > 0
    events = read_events_file(runs_dir / run_id)
    assert events == manager.events(run_id)
    types = [e["type"] for e in events]
    assert types[:3] == ["loading", "started", "baseline"] and types[-2:] == ["checkpoint", "finished"]
    assert types.count("epoch") == 2 and all("time" in e for e in events)
    assert record["checkpoint"] == "model.safetensors"
    loaded = load_checkpoint(runs_dir / run_id / record["checkpoint"])
    assert loaded.meta["classes"] == record["classes"] and loaded.meta["data_fingerprint"] == record["data_fingerprint"]
    assert loaded.arch == TINY and loaded.optimizer_state["optimizer"] == "adam"
    assert manager.active() == []


def test_events_since_returns_only_new_ones(runs_dir):
    manager = JobManager(runs_dir)
    run_id = manager.start(TINY, QUICK, DATA)
    manager.wait(run_id, timeout=120)
    everything = manager.events(run_id)
    assert manager.events(run_id, since=3) == everything[3:]
    assert JobManager(runs_dir).events(run_id, since=3) == everything[3:]  # another manager reads the file


def test_two_runs_at_once(runs_dir):
    manager = JobManager(runs_dir, max_parallel=2)
    first = manager.start(TINY, QUICK, DATA)
    second = manager.start(TINY, QUICK.replace(seed=1), DATA)
    assert first != second and sorted(manager.active()) == sorted([first, second])
    wait_for(lambda: all(manager.status(r)["status"] == "running" for r in (first, second)) or
             any(manager.status(r)["status"] == "finished" for r in (first, second)))
    assert [manager.wait(r, timeout=120)["status"] for r in (first, second)] == ["finished", "finished"]


def test_a_third_run_queues_visibly_then_runs(runs_dir):
    manager = JobManager(runs_dir, max_parallel=1)
    busy = manager.start(TINY, LONG, DATA)
    waiting = manager.start(TINY, QUICK, DATA)
    wait_for(lambda: manager.status(busy)["status"] == "running")
    assert manager.status(waiting)["status"] == "queued"
    assert manager.events(waiting) == []
    manager.stop(busy)
    assert manager.wait(busy, timeout=60)["status"] == "stopped"
    assert manager.wait(waiting, timeout=120)["status"] == "finished"


def test_stop_ends_a_run_within_a_batch(runs_dir):
    manager = JobManager(runs_dir)
    run_id = manager.start(TINY, LONG, DATA)
    wait_for(lambda: any(e["type"] == "epoch" for e in manager.events(run_id)))
    assert manager.stop(run_id) is True
    record = manager.wait(run_id, timeout=60)
    assert record["status"] == "stopped" and record["summary"]["epochs_done"] >= 1
    types = [e["type"] for e in read_events_file(runs_dir / run_id)]
    assert types[-2:] == ["checkpoint", "stopped"]
    assert record["checkpoint"] == "model.safetensors"
    assert manager.stop(run_id) is False  # already over


def test_stopping_a_queued_run(runs_dir):
    manager = JobManager(runs_dir, max_parallel=1)
    busy = manager.start(TINY, LONG, DATA)
    waiting = manager.start(TINY, QUICK, DATA)
    manager.stop(waiting)
    assert manager.wait(waiting, timeout=60)["status"] == "stopped"
    manager.stop(busy)
    manager.wait(busy, timeout=60)


def test_failed_run_says_why(runs_dir):
    manager = JobManager(runs_dir)
    run_id = manager.start(*DIVERGING)
    record = manager.wait(run_id, timeout=120)
    assert record["status"] == "failed"
    assert "epoch 1, batch" in record["error"] and "learning rate" in record["error"]
    events = read_events_file(runs_dir / run_id)
    assert events[-1] == {"type": "failed", "time": events[-1]["time"], "error": record["error"]}
    assert record["checkpoint"] is None


def test_bad_source_is_refused_at_start(runs_dir):
    manager = JobManager(runs_dir)
    with pytest.raises(DataError, match="unknown data source"):
        manager.start(TINY, QUICK, "imagenet")
    with pytest.raises(DataError, match="does not exist"):
        manager.start(TINY, QUICK, f"folder:{runs_dir / 'missing'}")
    assert list(runs_dir.iterdir()) == []
    with pytest.raises(ExplorerError, match="no run"):
        manager.status("19990101-000000-000-abcdef")


def _record(runs_dir, run_id, status, owner):
    path = runs_dir / run_id
    path.mkdir()
    record = {"id": run_id, "name": run_id, "status": status, "created": "2024-01-01T00:00:00+0000",
              "summary": {"epochs_done": 3}, "owner": owner, "error": None}
    (path / "run.json").write_text(json.dumps(record))
    (path / "events.jsonl").write_text(json.dumps({"type": "started", "time": 1.0}) + "\n")
    return path


def test_runs_of_a_dead_process_are_marked_interrupted(runs_dir):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    _record(runs_dir, "20240101-000000-000-aaaaaa", "running", {"pid": dead_pid})
    _record(runs_dir, "20240101-000000-001-bbbbbb", "queued", {"pid": dead_pid})
    _record(runs_dir, "20240101-000000-002-cccccc", "running", {"pid": os.getpid()})  # alive: untouched
    _record(runs_dir, "20240101-000000-003-dddddd", "finished", {"pid": dead_pid})
    manager = JobManager(runs_dir)
    assert sorted(manager.recovered) == ["20240101-000000-000-aaaaaa", "20240101-000000-001-bbbbbb"]
    record = manager.status("20240101-000000-000-aaaaaa")
    assert record["status"] == "failed" and record["error"].startswith("interrupted")
    assert "after 3 epoch(s)" in record["error"]
    assert manager.events("20240101-000000-000-aaaaaa")[-1]["type"] == "failed"
    assert manager.status("20240101-000000-002-cccccc")["status"] == "running"
    assert manager.status("20240101-000000-003-dddddd")["status"] == "finished"


def test_resume_continues_a_finished_run(runs_dir):
    manager = JobManager(runs_dir)
    first = manager.start(TINY, QUICK.replace(epochs=1, ema=0.9), DATA)
    manager.wait(first, timeout=120)
    second = manager.start(TINY, QUICK.replace(epochs=1, ema=0.9), DATA, resume_from=first)
    record = manager.wait(second, timeout=120)
    assert record["status"] == "finished" and record["resumed_from"] == first
    assert [e["epoch"] for e in manager.events(second) if e["type"] == "epoch"] == [2]
    assert record["summary"]["epochs_done"] == 2
    failed = manager.start(*DIVERGING)
    manager.wait(failed, timeout=120)
    with pytest.raises(ExplorerError, match="no checkpoint to resume"):
        manager.start(TINY, QUICK, DATA, resume_from=failed)


def test_run_ids_sort_by_time_and_differ():
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert sorted(ids, key=lambda i: i[:19]) == ids


# ---------------------------------------------------------------- the train command


def _cli(args, capsys):
    from explorer.cli import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_json_lines(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(TINY.to_json())
    code, out, err = _cli(["train", "--config", str(config), "--data", DATA, "--recipe", "study", "--epochs", "2",
                           "--batch-size", "32", "--optimizer", "adam", "--lr", "0.003", "--augment", "flip,crop",
                           "--tta", "--seed", "3", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
                           "--json"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    events, final = lines[:-1], lines[-1]
    assert [e["type"] for e in events][:3] == ["loading", "started", "baseline"]
    assert events[-1]["type"] == "finished"
    train = events[1]["config"]["train"]
    assert (train["epochs"], train["batch_size"], train["optimizer"], train["lr"], train["augment"],
            train["tta_flip"], train["seed"], train["normalization"]) == (2, 32, "adam", 0.003, ["flip", "crop"],
                                                                          True, 3, "half")  # the rest: study's
    for key in ("run_dir", "checkpoint", "test_accuracy", "per_class", "epochs", "images_per_second"):
        assert key in final
    assert [e["epoch"] for e in final["epochs"]] == [1, 2]
    assert final["test_accuracy"] == final["epochs"][-1]["test_accuracy"]
    assert Path(final["checkpoint"]).is_file() and Path(final["run_dir"], "run.json").is_file()
    record = json.loads(Path(final["run_dir"], "run.json").read_text())
    assert record["recipe"] == "study" and record["status"] == "finished"


def test_cli_train_progress_lines(tmp_path, capsys):
    code, out, _ = _cli(["train", "--preset", "tutorial", "--data", DATA, "--recipe", "fast", "--epochs", "2",
                         "--batch-size", "50", "--runs-dir", str(tmp_path)], capsys)
    assert code == 0
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert "checkpoint: " in out


def test_cli_train_failures_exit_2_with_one_line(tmp_path, capsys):
    code, out, err = _cli(["train", "--preset", "tutorial", "--data", "synthetic:600", "--recipe", "study",
                           "--batch-size", "32", "--lr", "30", "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "failed" in err and "Lower the learning rate" in err and len(err.splitlines()) == 1
    code, _, err = _cli(["train", "--preset", "tutorial", "--data", "nope", "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: unknown data source")
    code, _, err = _cli(["train", "--preset", "tutorial", "--data", DATA, "--label-smoothing", "0.9",
                         "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "label_smoothing" in err
