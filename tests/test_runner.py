"""Runs as processes: the record a run leaves, stop, queue across processes, failures, resume, the train CLI.

Moved from test_jobs.py (runs were threads then). Record-content tests run RunProcess in this process (what
`python -m explorer train` does, without the start-up); process behaviour goes through the Runner, as the app.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from polling import wait_for

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.presets import PRESETS
from explorer.engine.config import TrainConfig
from explorer.errors import DataError, ExplorerError, TrainingError
from explorer.store.checkpoint import load_checkpoint
from explorer.store.events import EventReader, fold
from explorer.store.runner import Runner, RunProcess, RunSpec, Slots, new_run_id, resume_state, thread_budget
from explorer.store.runs import RECORD_VERSION, read_run

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
QUICK = TrainConfig(epochs=2, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=2,
                    device="cpu")
LONG = QUICK.replace(epochs=500)
DATA = "synthetic:200"
# The study's tutorial net (no BatchNorm) with SGD at lr 10 diverges in epoch 1 on this data.
DIVERGING = RunSpec(PRESETS["tutorial"], QUICK.replace(optimizer="sgd", lr=10.0), "synthetic:600")


def read_events_file(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def event_types(runs_dir, run_id):
    return [e["type"] for e in read_events_file(runs_dir / run_id)]


# ---------------------------------------------------------------- one run, in this process


def test_finished_run_leaves_a_complete_record(runs_dir):
    record = RunProcess(RunSpec(TINY, QUICK, DATA, name="tiny", recipe="fast")).run()  # EXPLORER_RUNS_DIR
    run_id = record["id"]
    assert record["status"] == "finished" and record["error"] is None
    on_disk = json.loads((runs_dir / run_id / "run.json").read_text())
    assert on_disk == record
    for key in ("format_version", "id", "name", "status", "created", "finished", "preset", "recipe", "arch",
                "train", "data", "data_fingerprint", "input_shape", "num_classes", "classes", "params", "flops",
                "device", "error", "summary", "checkpoint", "resumed_from", "owner", "command"):
        assert key in record, key
    assert record["format_version"] == RECORD_VERSION == 2 and record["owner"]["pid"] == os.getpid()
    assert (record["id"], record["name"], record["recipe"], record["data"]) == (run_id, "tiny", "fast", DATA)
    assert record["arch"] == TINY.to_dict() and record["train"] == QUICK.to_dict()
    assert record["input_shape"] == [3, 32, 32] and record["num_classes"] == 10 and record["device"] == "cpu"
    summary = record["summary"]
    assert summary["epochs_done"] == 2 and 0 <= summary["final_test_accuracy"] <= 1
    assert summary["best_test_accuracy"] >= summary["final_test_accuracy"] and summary["images_per_second"] > 0
    events = read_events_file(runs_dir / run_id)
    types = [e["type"] for e in events]
    assert types[:3] == ["loading", "started", "baseline"] and types[-2:] == ["checkpoint", "finished"]
    assert types.count("epoch") == 2 and types.count("checkpoint") == 2  # one checkpoint after every epoch
    assert all("time" in e for e in events)
    history = fold(events)
    assert history.problems == [] and history.summary == summary  # the record's summary is the fold's
    assert record["checkpoint"] == "model.safetensors"
    loaded = load_checkpoint(runs_dir / run_id / record["checkpoint"])
    assert loaded.meta["classes"] == record["classes"] and loaded.meta["data_fingerprint"] == record["data_fingerprint"]
    assert loaded.arch == TINY and loaded.optimizer_state["optimizer"] == "adam" and loaded.meta["epochs_done"] == 2
    # The command the record keeps reproduces the run.
    command = record["command"]
    assert command[1:4] == ["-m", "explorer", "train"] and command[command.index("--data") + 1] == DATA


def test_events_read_incrementally(runs_dir):
    run_id = RunProcess(RunSpec(TINY, QUICK, DATA)).run()["id"]
    everything = read_events_file(runs_dir / run_id)
    reader = EventReader(runs_dir / run_id / "events.jsonl")
    first, _ = reader.read()
    assert [e.to_dict() for e in first] == everything and reader.read() == ([], [])


def test_stop_ends_a_run_within_a_batch_and_keeps_a_checkpoint(runs_dir):
    process = None

    def on_event(event):
        if event.type == "batch" and process.history.epochs:
            process.stop.set()  # what SIGTERM/SIGINT do

    process = RunProcess(RunSpec(TINY, LONG, DATA), on_event=on_event)
    record = process.run()
    assert record["status"] == "stopped" and record["summary"]["epochs_done"] == 1
    types = event_types(runs_dir, record["id"])
    # The checkpoint is epoch 1's (saved when it ended): the partial epoch 2 is dropped, not saved over it.
    assert types[-3:] == ["checkpoint", "batch", "stopped"] and record["checkpoint_kind"] == "epoch"
    assert record["checkpoint"] == "model.safetensors"
    assert load_checkpoint(runs_dir / record["id"]).meta["epochs_done"] == 1


def test_failed_run_says_why(runs_dir):
    process = RunProcess(DIVERGING)
    with pytest.raises(TrainingError, match="failed: the training loss became NaN"):
        process.run()
    record = read_run(process.run_id, runs_dir)
    assert record["status"] == "failed"
    assert "epoch 1, batch" in record["error"] and "learning rate" in record["error"]
    events = read_events_file(runs_dir / process.run_id)
    assert events[-1] == {"type": "failed", "time": events[-1]["time"], "error": record["error"]}
    assert [e["type"] for e in events].count("failed") == 1 and record["checkpoint"] is None


def test_bad_source_is_refused_at_start(runs_dir):
    runner = Runner(runs_dir)
    with pytest.raises(DataError, match="unknown data source"):
        runner.start(RunSpec(TINY, QUICK, "imagenet"))
    with pytest.raises(DataError, match="does not exist"):
        RunProcess(RunSpec(TINY, QUICK, f"folder:{runs_dir / 'missing'}")).run()
    assert list(runs_dir.iterdir()) == []
    with pytest.raises(ExplorerError, match="no run"):
        runner.status("19990101-000000-000-abcdef")


def test_resume_continues_a_finished_run(runs_dir):
    first = RunProcess(RunSpec(TINY, QUICK.replace(epochs=1, ema=0.9), DATA)).run()["id"]
    state, saved = resume_state(first, runs_dir), load_checkpoint(runs_dir / first)
    # The checkpoint holds the average; the raw weights (kept with the optimizer) are what training goes on from.
    assert all(state["averaged"][k].equal(v) for k, v in saved.model.state_dict().items())
    raw = saved.optimizer_state["model"]
    assert all(state["model"][k].equal(v) for k, v in raw.items()) and state["epochs_done"] == 1
    assert not all(raw[k].equal(v) for k, v in state["averaged"].items())
    record = RunProcess(RunSpec(TINY, QUICK.replace(epochs=1, ema=0.9), DATA, resume_from=first)).run()
    assert record["status"] == "finished" and record["resumed_from"] == first
    assert [e["epoch"] for e in read_events_file(runs_dir / record["id"]) if e["type"] == "epoch"] == [2]
    assert record["summary"]["epochs_done"] == 2
    failed = RunProcess(DIVERGING)
    with pytest.raises(TrainingError):
        failed.run()
    with pytest.raises(ExplorerError, match="no checkpoint to resume"):
        RunProcess(RunSpec(TINY, QUICK, DATA, resume_from=failed.run_id)).run()


def test_run_ids_sort_by_time_and_differ():
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert sorted(ids, key=lambda i: i[:19]) == ids


def test_slots_are_shared_through_file_locks_and_set_the_thread_budget(tmp_path):
    first, second, third = (Slots(tmp_path, 2) for _ in range(3))  # three processes' views of one folder
    budget = thread_budget(first, cores=4)
    assert first.acquire() and first.busy() == 1 and budget() == 4
    assert second.acquire() and first.busy() == 2 and budget() == 2
    assert not third.acquire()  # both slots taken: it would wait "queued"
    second.release()
    assert budget() == 4 and third.acquire()
    assert thread_budget(first, cores=1)() == 1  # never less than one thread


# ---------------------------------------------------------------- runs as processes (as the app starts them)


def test_the_command_is_the_cli_and_reproduces_the_settings(runs_dir):
    from explorer.cli import build_parser
    from explorer.cli.train import train_config_from_args

    spec = RunSpec(TINY, QUICK.replace(seed=7, augment=("flip",)), DATA, name="x y", recipe="study")
    argv = Runner(runs_dir).command(spec)
    assert argv[1:4] == ["-m", "explorer", "train"] and "--arch" in argv
    args = build_parser().parse_args(argv[3:])
    cfg, recipe = train_config_from_args(args)
    assert cfg == spec.train and recipe == "study" and args.name == "x y"
    assert ArchConfig.from_json(args.arch) == TINY
    assert Runner(runs_dir).command(RunSpec(PRESETS["fast"], QUICK, DATA, preset="fast"))[4:6] == ["--preset", "fast"]


def test_two_runs_at_once_in_their_own_processes(runs_dir):
    runner = Runner(runs_dir)
    first = runner.start(RunSpec(TINY, QUICK, DATA))
    second = runner.start(RunSpec(TINY, QUICK.replace(seed=1), DATA))
    owners = {read_run(r, runs_dir)["owner"]["pid"] for r in (first, second)}
    assert first != second and len(owners) == 2 and os.getpid() not in owners
    assert [runner.wait(r, timeout=180)["status"] for r in (first, second)] == ["finished", "finished"]
    assert runner.active() == []


def test_two_runners_share_the_queue_and_stop_works_by_signal(runs_dir, monkeypatch):
    # Two app servers (two Runners) on one runs folder, one training slot: the second run waits, queued.
    monkeypatch.setenv("EXPLORER_MAX_RUNS", "1")
    busy = Runner(runs_dir).start(RunSpec(TINY, LONG, DATA))
    other = Runner(runs_dir)
    waiting = other.start(RunSpec(TINY, QUICK, DATA))
    wait_for(lambda: other.status(busy)["status"] == "running" and "batch" in event_types(runs_dir, busy))
    wait_for(lambda: "queued" in event_types(runs_dir, waiting))
    assert other.status(waiting)["status"] == "queued" and event_types(runs_dir, waiting) == ["queued"]
    assert other.stop(busy) is True  # SIGTERM to a run another server started
    assert other.wait(busy, timeout=60)["status"] == "stopped"
    assert event_types(runs_dir, busy)[-2:] == ["checkpoint", "stopped"] or \
        event_types(runs_dir, busy)[-1] == "stopped"
    record = other.wait(waiting, timeout=180)
    assert record["status"] == "finished" and event_types(runs_dir, waiting)[:2] == ["queued", "loading"]
    assert other.stop(busy) is False  # already over


def test_stopping_a_queued_run(runs_dir, monkeypatch):
    monkeypatch.setenv("EXPLORER_MAX_RUNS", "1")
    runner = Runner(runs_dir)
    busy = runner.start(RunSpec(TINY, LONG, DATA))
    wait_for(lambda: runner.status(busy)["status"] == "running")
    waiting = runner.start(RunSpec(TINY, QUICK, DATA))
    wait_for(lambda: "queued" in event_types(runs_dir, waiting))
    assert runner.stop(waiting)
    record = runner.wait(waiting, timeout=60)
    assert record["status"] == "stopped" and record["checkpoint"] is None
    assert event_types(runs_dir, waiting) == ["queued", "stopped"]
    runner.stop(busy)
    runner.wait(busy, timeout=60)


# ---------------------------------------------------------------- the train command


def _cli(args, capsys):
    from explorer.cli import main

    try:
        code = main(args)
    except SystemExit as exit_:  # argparse refuses a flag value (the schema checks ranges there): exit 2 too
        code = exit_.code
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
    code, _, err = _cli(["train", "--data", DATA, "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "--preset NAME, --config FILE or --arch JSON" in err
