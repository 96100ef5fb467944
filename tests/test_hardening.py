"""Issue 12, hardening: hostile input, crashes and a shared server lose nothing and expose nothing.

One section per item of the issue, each a test that failed (or would have) before the fix; items that issue 8
had already fixed keep their test here as proof.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
from conftest import make_image_folder
from history_helpers import make_run

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.presets import PRESETS
from explorer.cli import main
from explorer.engine.config import TrainConfig
from explorer.engine.data import load_dataset
from explorer.errors import CheckpointError, ConfigError, DataError
from explorer.store import settings
from explorer.store.checkpoint import META_KEY, load_checkpoint, read_meta
from explorer.store.events import EventReader, EventWriter, Finished
from explorer.store.runner import RunProcess, RunSpec, resume_state
from explorer.store.runs import RunError, delete_run, list_runs, read_run, rename_run
from explorer.store.tables import runs_table

ROOT = Path(__file__).resolve().parents[1]
TINY = ArchConfig(conv=(ConvBlock(8, pool="max"), ConvBlock(16, pool="max")), head="avgpool")
LONG = TrainConfig(epochs=50, batch_size=50, test_batch_size=200, optimizer="adam", lr=3e-3, log_every=2,
                   device="cpu")


def app_script(page: str) -> None:
    """An app whose only content is one panel (AppTest.from_function runs this source)."""
    import importlib

    importlib.import_module(f"explorer.ui.{page}").render()


# ---------------------------------------------------------------- 1. the app reads only under the data roots


@pytest.fixture
def roots(tmp_path, monkeypatch) -> Path:
    """A data folder and one extra root; returns tmp_path (everything else under it is outside the roots)."""
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", str(tmp_path / "shared"))
    monkeypatch.delenv("EXPLORER_DATA_FOLDERS", raising=False)
    (tmp_path / "data").mkdir()
    return tmp_path


def test_app_sources_must_lie_under_an_allowed_data_root(roots: Path) -> None:
    make_image_folder(roots / "data" / "mine", per_class=2)
    make_image_folder(roots / "shared" / "team", per_class=2)
    make_image_folder(roots / "private", per_class=2)
    (roots / "data" / "escape").symlink_to(roots / "private")
    for ok in ("synthetic:40", "cifar10", f"folder:{roots}/data/mine", f"folder:{roots}/shared/team"):
        settings.check_app_source(ok)
    for bad in ("folder:/etc", "folder:/proc", "cifar10:/etc", f"folder:{roots}/private",
                f"folder:{roots}/data/../private", f"folder:{roots}/data/escape"):
        with pytest.raises(DataError, match="not under an allowed data root"):
            settings.check_app_source(bad)
    assert load_dataset(f"folder:{roots}/private", roots / "data").num_classes == 3  # the CLI stays free


def test_the_train_and_checkpoints_pages_refuse_folders_outside_the_roots(roots: Path, runs_dir: Path) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from explorer.ui import train_state as train_keys
    from explorer.ui.checkpoints_panel import DATA, DATA_OTHER, OTHER_SOURCE

    private = make_image_folder(roots / "private", per_class=2)
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page("explorer/ui/pages/train.py").run()
    at.selectbox(key=train_keys.SOURCE).set_value(train_keys.FOLDER_CHOICE).run()
    at.text_input(key=train_keys.FOLDER).input("/etc").run()
    assert not at.exception and "/etc is not under an allowed data root" in at.error[0].value
    at.text_input(key=train_keys.FOLDER).input(str(private)).run()
    assert "not under an allowed data root" in at.error[0].value
    assert not list(private.glob(".explorer-cache-*"))  # nothing was decoded, nothing written there

    make_run(runs_dir, "r1", name="r1")
    at = AppTest.from_function(app_script, args=("checkpoints_panel",), default_timeout=60).run()
    at.selectbox(key=DATA).set_value(OTHER_SOURCE).run()
    at.text_input(key=DATA_OTHER).input(f"folder:{private}").run()
    at.button(key="ckpt.evaluate").click().run()
    assert not at.exception and any("not under an allowed data root" in e.value for e in at.error)


def test_caches_go_beside_the_images_only_in_a_folder_of_ours(tmp_path: Path) -> None:
    theirs = make_image_folder(tmp_path / "theirs", per_class=2)
    os.chown(theirs, 12345, 12345)  # another user's folder (the tests may run as root: access() would allow it)
    load_dataset(f"folder:{theirs}", tmp_path / "data")
    assert not list(theirs.glob(".explorer-cache-*"))
    assert len(list((tmp_path / "data" / "cache").glob("folder-theirs-*.pt"))) == 1
    mine = make_image_folder(tmp_path / "mine", per_class=2)
    load_dataset(f"folder:{mine}", tmp_path / "data")
    assert len(list(mine.glob(".explorer-cache-*.pt"))) == 1


def test_the_server_listens_on_localhost_and_caps_uploads() -> None:
    text = (ROOT / ".streamlit" / "config.toml").read_text()
    server = text.split("[server]", 1)[1].split("\n[", 1)[0]  # the [server] table (tomllib needs Python 3.11)
    settings_lines = {line.split("=")[0].strip(): line.split("=", 1)[1].strip() for line in server.splitlines()
                      if "=" in line and not line.lstrip().startswith("#")}
    assert settings_lines["address"] == '"localhost"' and settings_lines["maxUploadSize"] == "50"


# ---------------------------------------------------------------- 2. checkpoint metadata is costed before use


def header_only(arch: ArchConfig, input_shape=(3, 32, 32), num_classes: int = 10) -> bytes:
    meta = {"format_version": 1, "arch": arch.to_dict(), "input_shape": list(input_shape),
            "num_classes": num_classes, "classes": [str(i) for i in range(num_classes)],
            "normalization": {"mean": [0.5] * input_shape[0], "std": [0.5] * input_shape[0]}}
    header = json.dumps({"__metadata__": {META_KEY: json.dumps(meta), "format": "pt"}}).encode()
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize(("arch", "shape", "classes", "message"), [
    (ArchConfig(conv=(ConvBlock(1024, pool="none"),) * 8, fc=(4096,) * 4), (3, 32, 32), 10,
     "parameters, over the limit of 50,000,000"),
    (ArchConfig(conv=(ConvBlock(1024, kernel=3, padding="same", pool="none"),) * 2, head="avgpool"),
     (3, 1024, 1024), 10, "MiB of activations per image"),
    (TINY, (3, 32, 32), 20_000, "20,000 classes is over the limit"),
])
def test_a_header_describing_a_huge_network_is_refused_before_anything_is_built(
        tmp_path, monkeypatch, capsys, arch, shape, classes, message) -> None:
    import explorer.store.checkpoint as checkpoint

    def no_build(*args, **kwargs):
        raise AssertionError("build_model must not run for a refused checkpoint")

    monkeypatch.setattr(checkpoint, "build_model", no_build)
    data = header_only(arch, shape, classes)
    assert len(data) < 300_000
    for source in (data, tmp_path / "x.safetensors"):
        (tmp_path / "x.safetensors").write_bytes(data)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(source)
        with pytest.raises(CheckpointError, match=message):
            read_meta(source)
    assert main(["evaluate", str(tmp_path / "x.safetensors"), "--data", "synthetic:40"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_file_larger_than_any_allowed_network_is_refused_before_it_is_read(tmp_path, monkeypatch) -> None:
    import explorer.store.checkpoint as checkpoint

    huge = tmp_path / "huge.safetensors"
    with huge.open("wb") as handle:
        handle.write(header_only(TINY))
        handle.truncate(checkpoint.MAX_FILE_BYTES + 1)  # sparse: no disk used
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the whole file must not be read"))
    with pytest.raises(CheckpointError, match="more than any network within the limit"):
        load_checkpoint(huge)


# ---------------------------------------------------------------- 3. read-only data and runs folders


def test_a_read_only_image_folder_falls_back_to_the_data_folder_cache(tmp_path, monkeypatch) -> None:
    import torch

    folder = make_image_folder(tmp_path / "ro", per_class=2)
    real_save = torch.save

    def read_only_save(obj, target, *args, **kwargs):
        # torch.save on a read-only file system raises RuntimeError, not OSError.
        if os.readlink(f"/proc/self/fd/{target.fileno()}").startswith(str(folder)):
            raise RuntimeError("File ... cannot be opened: Read-only file system")
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", read_only_save)
    dataset = load_dataset(f"folder:{folder}", tmp_path / "data")
    assert dataset.num_classes == 3
    assert len(list((tmp_path / "data" / "cache").glob("folder-ro-*.pt"))) == 1


def test_a_read_only_runs_folder_is_one_clear_line(tmp_path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["train", "--preset", "tutorial", "--data", "synthetic:40", "--epochs", "1"]
    assert main([*args, "--runs-dir", str(blocker / "runs")]) == 2
    assert "cannot create the runs folder" in capsys.readouterr().err
    read_only = tmp_path / "ro-runs"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(settings.os, "access",
                        lambda p, mode: False if Path(p) == read_only else real_access(p, mode))
    assert main([*args, "--runs-dir", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is read-only" in err and "EXPLORER_RUNS_DIR" in err
    assert list(read_only.iterdir()) == []
    with pytest.raises(ConfigError, match="read-only"):
        settings.check_runs_dir(read_only)


def test_deleting_in_a_read_only_runs_folder_says_so(runs_dir, monkeypatch) -> None:
    make_run(runs_dir, "done", checkpoint=False)

    def refuse(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(RunError, match="cannot delete run done: Read-only file system"):
        delete_run("done", runs_dir)
    with pytest.raises(RunError, match="cannot rename run done: Read-only file system"):
        rename_run("done", "new", runs_dir)


# ---------------------------------------------------------------- 4. SIGTERM stops cleanly; epochs survive


def test_sigterm_stops_like_sigint_with_every_finished_epoch_kept(runs_dir) -> None:
    process = None

    def on_event(event):
        if event.type == "checkpoint" and process.history.epochs_done == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler RunProcess installs turns it into a clean stop

    process = RunProcess(RunSpec(TINY, LONG, "synthetic:200"), on_event=on_event)
    record = process.run()
    assert record["status"] == "stopped" and record["summary"]["epochs_done"] == 2
    assert read_run(record["id"], runs_dir)["status"] == "stopped"
    assert resume_state(record["id"], runs_dir)["epochs_done"] == 2


def test_a_dead_owner_reads_as_interrupted_with_its_epochs(runs_dir, capsys) -> None:
    folder = make_run(runs_dir, "killed", status="running", accuracies=(0.3, 0.4))
    record = json.loads((folder / "run.json").read_text())
    record["owner"] = {"pid": 2**22 + 7, "start_ticks": 1, "host": record["owner"]["host"]}  # no such process
    record["summary"] = {"epochs_done": 2}
    (folder / "run.json").write_text(json.dumps(record))
    assert main(["runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["status"] == "interrupted" and "after 2 epoch(s)" in row["message"]
    assert "train --resume killed" in row["message"]


# ---------------------------------------------------------------- 5. no delete while the owner lives


def test_a_run_whose_owner_lives_cannot_be_deleted(runs_dir, capsys) -> None:
    make_run(runs_dir, "live", status="running")  # owned by this (living) process
    with pytest.raises(RunError, match="still running; stop it before you delete it"):
        delete_run("live", runs_dir)
    assert main(["runs", "--delete", "live", "--yes"]) == 2
    assert "stop it before you delete it" in capsys.readouterr().err
    assert (runs_dir / "live" / "run.json").is_file()


def test_the_runs_page_refuses_to_delete_a_live_run(runs_dir) -> None:
    from streamlit.testing.v1 import AppTest

    from explorer.ui.runs_panel import MANAGE

    make_run(runs_dir, "live", status="running")
    at = AppTest.from_function(app_script, args=("runs_panel",), default_timeout=60).run()
    at.selectbox(key=MANAGE).set_value("live").run()
    at.button(key="runs.delete").click().run()
    at.button(key="runs.delete_yes").click().run()
    assert not at.exception and any("stop it before you delete it" in e.value for e in at.error)
    assert (runs_dir / "live" / "run.json").is_file()


# ---------------------------------------------------------------- 6. hostile data folders


def test_a_symlink_loop_and_proc_get_messages_naming_the_file(tmp_path) -> None:
    folder = make_image_folder(tmp_path / "loop", per_class=2)
    loop = folder / "train" / "a" / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=f"cannot read {loop}.*symbolic links"):
        load_dataset(f"folder:{folder}", tmp_path / "data")
    with pytest.raises(DataError, match="cannot read /proc/"):
        load_dataset("folder:/proc", tmp_path / "data")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns; the note is ours
def test_decompression_bombs_are_skipped_with_a_note_naming_them(tmp_path, monkeypatch) -> None:
    from PIL import Image

    folder = make_image_folder(tmp_path / "bombs", per_class=3, size=(8, 8))
    bomb = folder / "train" / "b" / "bomb.png"
    Image.new("L", (40, 40)).save(bomb)  # 1,600 pixels: over the limit set below (Pillow's is 89 M)
    also = folder / "train" / "c" / "warned.png"
    Image.new("L", (12, 12)).save(also)  # 144: over the limit, under twice it (Pillow only warns there)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    dataset = load_dataset(f"folder:{folder}", tmp_path / "data")
    assert len(dataset.train_y) == 9 and dataset.train_x.shape[-2:] == (8, 8)
    note = next(n for n in dataset.notes if "decompression-bomb" in n)
    assert "skipped 2 image(s)" in note and str(bomb) in note and str(also) in note


# ---------------------------------------------------------------- 7. one bad record breaks nothing else


@pytest.mark.parametrize(("field", "value"), [("summary", "oops"), ("owner", 5), ("params", "many"),
                                              ("checkpoint", "../../other/model.safetensors"), ("arch", [])])
def test_a_record_with_a_wrong_field_type_is_flagged_on_its_own_row(runs_dir, capsys, field, value) -> None:
    make_run(runs_dir, "good", name="good", created="2024-01-02")
    bad = make_run(runs_dir, "bad", created="2024-01-01")
    record = json.loads((bad / "run.json").read_text()) | {field: value}
    (bad / "run.json").write_text(json.dumps(record))
    assert main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["status"] == "finished" and rows["good"]["message"] is None
    assert rows["bad"]["status"] == "unreadable" and f"run.json field {field!r}" in rows["bad"]["message"] \
        or "not a file name in the run folder" in rows["bad"]["message"]
    assert len(runs_table(list_runs(runs_dir))) == 2


def test_the_pages_render_around_a_bad_record_and_a_non_utf8_log(runs_dir) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from explorer.ui.runs_panel import OVERLAY

    make_run(runs_dir, "good", name="good", created="2024-01-03")
    bad = make_run(runs_dir, "bad", created="2024-01-02")
    (bad / "run.json").write_text(json.dumps(json.loads((bad / "run.json").read_text()) | {"summary": "oops"}))
    latin = make_run(runs_dir, "latin", name="latin", created="2024-01-01")
    with (latin / "events.jsonl").open("ab") as handle:
        handle.write(b'{"type": "epoch", "note": "caf\xe9"}\n')
    st.cache_resource.clear()
    at = AppTest.from_function(app_script, args=("checkpoints_panel",), default_timeout=60).run()
    assert not at.exception
    at = AppTest.from_function(app_script, args=("runs_panel",), default_timeout=60).run()
    at.multiselect(key=OVERLAY).set_value(["good", "latin"]).run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "**bad** (unreadable)" in warnings and "field 'summary'" in warnings
    assert "**latin** (finished): events.jsonl line" in warnings
    assert set(at.dataframe[0].value["id"]) == {"good", "bad", "latin"}
    assert len(at.get("plotly_chart")) >= 1  # the page went on past the curves


# ---------------------------------------------------------------- 8. unreadable runs can be deleted


@pytest.mark.parametrize("damage", [b"\xff\xfe not utf-8", b'{"summary": "oops"}', b"[1, 2]", None])
def test_delete_works_on_an_unreadable_run(runs_dir, capsys, damage) -> None:
    folder = make_run(runs_dir, "broken", checkpoint=False)
    if damage is None:
        (folder / "run.json").unlink()  # only events.jsonl left: still a run folder
    else:
        (folder / "run.json").write_bytes(damage)
    with pytest.raises(RunError):
        rename_run("broken", "x", runs_dir)
    assert main(["runs", "--delete", "broken", "--yes"]) == 0
    assert not folder.exists() and not list(runs_dir.glob(".deleted-*"))
    (runs_dir / "not-a-run").mkdir()
    with pytest.raises(RunError, match="no run 'not-a-run'"):
        delete_run("not-a-run", runs_dir)


# ---------------------------------------------------------------- 9. a torn last line


def test_a_torn_last_line_is_skipped_and_a_writer_starts_a_new_line(runs_dir) -> None:
    folder = make_run(runs_dir, "torn", status="running", checkpoint=False)
    record = json.loads((folder / "run.json").read_text())
    record["owner"]["pid"] = 2**22 + 9  # the process died mid-write
    (folder / "run.json").write_text(json.dumps(record))
    events = folder / "events.jsonl"
    whole = events.read_bytes()
    events.write_bytes(whole + b'{"type": "batch", "time": 1.0, "st')
    assert read_run("torn", runs_dir)["status"] == "interrupted"
    read, problems = EventReader(events).read()
    assert problems == [] and len(read) == whole.count(b"\n")
    writer = EventWriter(events)
    writer.write(Finished(time=2.0, summary={}))
    writer.close()
    lines = events.read_bytes().split(b"\n")
    assert lines[-3] == b'{"type": "batch", "time": 1.0, "st' and json.loads(lines[-2])["type"] == "finished"
    read, problems = EventReader(events).read()
    assert read[-1].type == "finished" and len(problems) == 1 and "line" in problems[0]


# ---------------------------------------------------------------- the browser: Start and a failed run


def test_start_is_disabled_with_the_reason_when_the_network_does_not_fit(runs_dir) -> None:
    from types import SimpleNamespace

    from explorer.ui.train_panel import start_blocker

    fits = SimpleNamespace(cfg=TINY, input_shape=(3, 32, 32), num_classes=10)
    assert start_blocker(fits, LONG, "synthetic") is None
    too_small = SimpleNamespace(cfg=PRESETS["tutorial"], input_shape=(3, 8, 8), num_classes=10)
    assert start_blocker(too_small, LONG, "synthetic").startswith("the network does not fit its 3×8×8 input")
    assert "architecture" in start_blocker(SimpleNamespace(cfg=None), LONG, "synthetic")
    assert "image folder" in start_blocker(fits, LONG, "folder:")


def test_start_button_is_disabled_in_the_page_when_the_network_does_not_fit(runs_dir) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from explorer.ui import state as keys

    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    at.selectbox(key=keys.PRESET).set_value("tutorial").run()
    at.switch_page("explorer/ui/pages/train.py").run()
    assert not at.button(key="train.start").disabled
    at.number_input(key=keys.IN_H).set_value(8)
    at.number_input(key=keys.IN_W).set_value(8).run()
    assert not at.exception and at.button(key="train.start").disabled
    assert any("Start is disabled: the network does not fit its 3×8×8 input" in c.value for c in at.caption)


def test_a_failed_run_without_epochs_shows_its_message_and_no_charts() -> None:
    from streamlit.testing.v1 import AppTest
    from test_app import live_script

    events = [{"type": "queued", "time": 1.0, "slots": 2}, {"type": "loading", "time": 1.0, "data": "x"},
              {"type": "failed", "time": 2.0, "error": "the network does not fit its 3×16×16 input"}]
    at = AppTest.from_function(live_script, args=(events, 3.0), default_timeout=30).run()
    assert not at.exception
    assert "does not fit its 3×16×16 input" in at.error[0].value
    assert at.get("plotly_chart") == []
