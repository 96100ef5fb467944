"""Faults and bad input, each a real test: killed runs, a killed app, damaged records, hostile run ids.

Each gets a clear message where a user looks (the listing's message, `runs --json`, the Runs page), nothing
else is lost, and every other run still lists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from history_helpers import make_run
from polling import wait_for

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.cli import main
from explorer.engine.config import TrainConfig
from explorer.store.checkpoint import load_checkpoint
from explorer.store.runner import Runner, RunSpec
from explorer.store.runs import RunError, delete_run, list_runs, read_run, rename_run
from explorer.store.tables import run_curves

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
LONG = TrainConfig(epochs=500, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=1,
                   device="cpu")
DATA = "synthetic:200"
ROOT = Path(__file__).resolve().parents[1]


def types(runs_dir: Path, run_id: str) -> list[str]:
    text = (runs_dir / run_id / "events.jsonl").read_text()
    return [json.loads(line)["type"] for line in text.splitlines() if line.endswith("}")]


# ---------------------------------------------------------------- killed processes


def test_sigkill_mid_epoch_leaves_an_interrupted_run_that_resumes(runs_dir, capsys):
    runner = Runner(runs_dir)
    run_id = runner.start(RunSpec(TINY, LONG, DATA, name="doomed"))
    # Two epochs saved, then into the next one: a batch after the second checkpoint.
    wait_for(lambda: (t := types(runs_dir, run_id)).count("checkpoint") >= 2 and t[-1] == "batch")
    os.kill(read_run(run_id, runs_dir)["owner"]["pid"], signal.SIGKILL)
    record = runner.wait(run_id, timeout=60)
    assert record["status"] == "interrupted"
    done = record["summary"]["epochs_done"]
    assert done >= 2 and f"after {done} epoch(s)" in record["message"]
    assert f"python -m explorer train --resume {run_id}" in record["message"]
    assert json.loads((runs_dir / run_id / "run.json").read_text())["status"] == "running"  # nothing rewritten
    loaded = load_checkpoint(runs_dir / run_id)  # the last epoch's weights, intact
    assert loaded.meta["epochs_done"] == done and loaded.optimizer_state is not None and not loaded.warnings
    assert run_curves(run_id, runs_dir)["epoch"].tolist()[:done] == list(range(1, done + 1))
    # `train --resume RUN_ID` alone continues it: same network and data, numbered after the saved epochs.
    assert main(["train", "--resume", run_id, "--epochs", "1", "--json"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert final["status"] == "finished" and [e["epoch"] for e in final["epochs"]] == [done + 1]
    resumed = read_run(final["run_id"], runs_dir)
    assert resumed["resumed_from"] == run_id and resumed["arch"] == TINY.to_dict() and resumed["data"] == DATA
    assert resumed["name"] == "doomed (resumed)"


def test_a_killed_app_server_leaves_its_run_training_and_a_new_one_reattaches(runs_dir):
    # The "app": a process that starts a run through the Runner, then dies by SIGKILL while the run trains.
    script = textwrap.dedent(f"""
        import sys, time
        from explorer.arch.config import ArchConfig
        from explorer.engine.config import TrainConfig
        from explorer.store.runner import Runner, RunSpec
        arch = ArchConfig.from_json({TINY.to_json()!r})
        train = TrainConfig.from_dict({LONG.replace(epochs=12, log_every=5).to_dict()!r})
        print(Runner({str(runs_dir)!r}).start(RunSpec(arch, train, {DATA!r})), flush=True)
        time.sleep(600)
    """)
    app = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        run_id = app.stdout.readline().strip()
        assert run_id, "the app process did not start a run"
        wait_for(lambda: "batch" in types(runs_dir, run_id))
        app.kill()
        app.wait(timeout=30)
    finally:
        app.kill()
    restarted = Runner(runs_dir)  # a new app server: finds the run by reading the folder
    assert run_id in restarted.active() and restarted.status(run_id)["status"] == "running"
    record = restarted.wait(run_id, timeout=300)
    assert record["status"] == "finished" and record["summary"]["epochs_done"] == 12
    assert types(runs_dir, run_id)[-2:] == ["checkpoint", "finished"]


# ---------------------------------------------------------------- damaged records


@pytest.fixture()
def damaged(runs_dir: Path) -> Path:
    make_run(runs_dir, "good", name="good", accuracies=(0.3, 0.5), created="2024-01-05", checkpoint=False)
    truncated = make_run(runs_dir, "truncated", created="2024-01-04", checkpoint=False)
    text = (truncated / "run.json").read_text()
    (truncated / "run.json").write_text(text[: len(text) // 2])
    garbage = make_run(runs_dir, "garbage", name="garbage", accuracies=(0.2, 0.4), created="2024-01-03",
                       checkpoint=False)
    lines = (garbage / "events.jsonl").read_text().splitlines()
    (garbage / "events.jsonl").write_text("\n".join([lines[0], "%%% not an event %%%", *lines[1:]]) + "\n")
    future = make_run(runs_dir, "future", created="2024-01-02", checkpoint=False)
    record = json.loads((future / "run.json").read_text()) | {"format_version": 99}
    (future / "run.json").write_text(json.dumps(record))
    return runs_dir


def test_damaged_records_get_a_message_each_and_every_other_run_lists(damaged: Path, capsys) -> None:
    before = {p: p.read_bytes() for p in damaged.rglob("*") if p.is_file()}
    runs = {r["id"]: r for r in list_runs(damaged)}
    assert set(runs) == {"good", "truncated", "garbage", "future"}
    assert runs["good"]["status"] == "finished" and runs["good"]["message"] is None
    assert runs["truncated"]["status"] == "unreadable"
    assert "run.json cannot be read" in runs["truncated"]["message"] and "truncated" in runs["truncated"]["message"]
    assert runs["future"]["status"] == "unreadable"
    assert "newer explorer (run-record format 99" in runs["future"]["message"]
    assert runs["garbage"]["status"] == "finished"  # its record is fine; one line of its log is not
    assert runs["garbage"]["message"] == "events.jsonl line 2: not JSON (Expecting value at column 1); the " \
                                         "line is skipped"
    assert run_curves("garbage", damaged)["test_accuracy"].tolist() == [0.2, 0.4]  # the rest of its log is used
    with pytest.raises(RunError, match="newer explorer"):
        read_run("future", damaged)
    assert main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["best_test_accuracy"] == 0.5 and rows["good"]["message"] is None
    assert "newer explorer" in rows["future"]["message"] and "truncated" in rows["truncated"]["message"]
    assert "line 2" in rows["garbage"]["message"]
    assert {p: p.read_bytes() for p in damaged.rglob("*") if p.is_file()} == before  # reading changed nothing
    delete_run("truncated", damaged)  # a damaged run can still be removed
    assert "truncated" not in {r["id"] for r in list_runs(damaged)}


def test_the_runs_page_shows_each_damaged_run_and_lists_the_rest(damaged: Path) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def script() -> None:
        from explorer.ui import runs_panel

        runs_panel.render()

    st.cache_resource.clear()
    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception and not at.error
    assert set(at.dataframe[0].value["id"]) == {"good", "truncated", "garbage", "future"}
    warnings = " ".join(w.value for w in at.warning)
    assert "**truncated** (unreadable)" in warnings and "**future** (unreadable)" in warnings
    assert "**garbage** (finished): events.jsonl line 2" in warnings and "**good**" not in warnings


def test_listing_reads_only_what_changed(runs_dir: Path, monkeypatch) -> None:
    from explorer.store import runs as runs_module

    for i in range(20):
        make_run(runs_dir, f"r{i:02d}", checkpoint=False)
    assert len(list_runs(runs_dir)) == 20
    loads = []
    real = runs_module._load_record
    monkeypatch.setattr(runs_module, "_load_record", lambda path: loads.append(path.name) or real(path))
    assert len(list_runs(runs_dir)) == 20 and loads == []  # nothing changed: nothing re-read
    time.sleep(0.01)
    rename_run("r07", "renamed", runs_dir)
    loads.clear()
    assert {r["id"]: r["name"] for r in list_runs(runs_dir)}["r07"] == "renamed" and loads == ["r07"]


# ---------------------------------------------------------------- hostile run ids


@pytest.mark.parametrize("bad", ["../x", "/etc", "..", ".", "", "a/b", ".slots"])
def test_run_ids_outside_the_runs_folder_are_refused_and_nothing_is_touched(runs_dir: Path, bad: str) -> None:
    outside = runs_dir.parent / "x"
    make_run(runs_dir.parent, "x", name="outside", checkpoint=False)  # a run-looking folder beside the runs folder
    make_run(runs_dir, "inside", checkpoint=False)
    before = {p: p.read_bytes() for p in runs_dir.parent.rglob("*") if p.is_file()}
    for action in (lambda: read_run(bad, runs_dir), lambda: rename_run(bad, "pwned", runs_dir),
                   lambda: delete_run(bad, runs_dir), lambda: Runner(runs_dir).stop(bad)):
        with pytest.raises(RunError, match="is not a run id|no run"):
            action()
    assert {p: p.read_bytes() for p in runs_dir.parent.rglob("*") if p.is_file()} == before
    assert outside.is_dir() and Path("/etc").is_dir()
    assert main(["runs", "--runs-dir", str(runs_dir), "--delete", bad, "--yes"]) == 2
    assert outside.is_dir() and (runs_dir / "inside").is_dir()


def _dead_pid() -> int:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(gone.stdout)


def test_an_interrupted_run_offers_resume_in_the_checkpoints_page(runs_dir: Path) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    folder = make_run(runs_dir, "cut", name="cut short", accuracies=(0.3, 0.4), status="running")
    record = json.loads((folder / "run.json").read_text()) | {"owner": {"pid": _dead_pid(), "start_ticks": 1}}
    (folder / "run.json").write_text(json.dumps(record))
    assert read_run("cut", runs_dir)["status"] == "interrupted"

    def script() -> None:
        from explorer.ui import checkpoints_panel

        checkpoints_panel.render()

    st.cache_resource.clear()
    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception and not at.error
    assert any("cut short" in label and "interrupted" in label for label in at.selectbox(key="ckpt.saved").options)
    assert "interrupted: the process training this run ended" in at.warning[0].value
    assert any(b.label.startswith("Resume training for 2 more epochs") for b in at.button)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_starting_a_cuda_run_without_a_gpu_is_refused_before_anything_starts(runs_dir: Path) -> None:
    from explorer.engine.device import DeviceError

    with pytest.raises(DeviceError, match="no CUDA GPU"):
        Runner(runs_dir).start(RunSpec(TINY, LONG.replace(device="cuda"), DATA))
    assert list(runs_dir.iterdir()) == []
