"""Search storages: what the app and the CLI accept (checked before anything is created), passwords never
shown, and journals with a torn last line repaired (status and run), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.errors import ConfigError
from explorer.search import control
from explorer.search.storage import STORAGES_ENV, check_app_storage, hide_password, repair_journal
from explorer.search.study import create_search, load_search, make_settings, rows
from explorer.search.worker import run_worker

TINY = {"recipe": "fast",
        "arch": {"depth": 1, "width": {"low": 4, "high": 8}, "pool": "max", "head": "avgpool"},
        "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 64, "augment": [],
                  "tta_flip": False}}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


# ------------------------------------------------------------------------------------------- the app's rule


@pytest.mark.parametrize("url, words", [
    ("sqlite:///{outside}/any.db", "the app keeps sqlite files inside the runs folder"),
    ("journal:{outside}/deep/j.log", "the app keeps journal files inside the runs folder"),
    ("journal:{runs}/../escape/j.log", "inside the runs folder"),
    ("journal:{runs}/link/j.log", "inside the runs folder"),  # a symlink in the runs folder to elsewhere
    ("sqlite://", "inside the runs folder"),  # in memory: workers in other processes could never share it
    ("mysql+pymysql://user:hunter2@host/db", "the app accepts postgresql databases"),
    ("nodb://x", "no database driver for 'nodb'"),
    ("journal:", "needs a file path"),
])
def test_the_app_refuses_storages_outside_its_rule_before_creating_anything(tmp_path, url, words):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    runs.mkdir()
    (runs / "link").symlink_to(tmp_path, target_is_directory=True)
    before = _files(tmp_path)
    with pytest.raises(ConfigError) as refused:
        check_app_storage(url.format(runs=runs, outside=outside), runs)
    assert words in str(refused.value) and "hunter2" not in str(refused.value)
    assert _files(tmp_path) == before  # no folder, no file


def test_the_app_accepts_postgresql_and_files_inside_the_runs_folder(tmp_path):
    runs = tmp_path / "runs"
    for url in ("postgresql+psycopg://user:pw@host/db", "postgresql://host/db", f"sqlite:///{runs}/s/search.db",
                f"journal:{runs}/searches/s1/journal.log"):
        assert check_app_storage(f"  {url} ", runs) == url
    assert not runs.exists()  # accepting creates nothing either


def test_explorer_search_storages_allows_more_schemes_and_folders(tmp_path, monkeypatch):
    runs, shared = tmp_path / "runs", tmp_path / "shared"
    with pytest.raises(ConfigError):
        check_app_storage(f"journal:{shared}/j.log", runs)
    monkeypatch.setenv(STORAGES_ENV, f"mysql, journal:{shared} sqlite:///{shared}/db")
    assert check_app_storage("mysql+pymysql://u@h/db", runs).startswith("mysql")
    assert check_app_storage(f"journal:{shared}/s1/j.log", runs) == f"journal:{shared}/s1/j.log"
    assert check_app_storage(f"sqlite:///{shared}/db/s.db", runs) == f"sqlite:///{shared}/db/s.db"
    with pytest.raises(ConfigError):  # a journal folder does not allow SQLite files there, nor the reverse
        check_app_storage(f"sqlite:///{shared}/s.db", runs)


def test_the_search_page_refuses_an_sqlite_file_anywhere_and_creates_nothing(runs_dir, tmp_path, monkeypatch):
    from explorer.ui import search_panel

    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "data"))
    state: dict = {}
    search_panel.init_state(state, "fast")
    state.update({search_panel.NAME: "s1", search_panel.SPACE: json.dumps(TINY),
                  search_panel.STORAGE: f"sqlite:///{tmp_path}/elsewhere/any.db"})
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ConfigError, match="inside the runs folder"):
        search_panel.create_and_start(state, 256_000)
    assert _files(tmp_path / "elsewhere") == set() and _files(runs_dir) == set()
    state[search_panel.WATCH_URL], state[search_panel.WATCH_NAME] = f"journal:{tmp_path}/j.log", "s1"
    with pytest.raises(ConfigError, match="inside the runs folder"):
        search_panel.watch(state)
    assert not (tmp_path / "j.log").exists() and _files(runs_dir) == set()


def test_a_password_is_never_shown(runs_dir):
    url = "postgresql+psycopg://alice:s3cret@db.example/searches"
    assert hide_password(url) == "postgresql+psycopg://alice:***@db.example/searches"
    assert hide_password("journal:/a/b@c/j.log") == "journal:/a/b@c/j.log"
    stamp = {"command": ["python", "-m", "explorer", "search", "run", "s1", "--storage", url, "--workers", "2"]}
    shown = control.shown_command(stamp)
    assert "s3cret" not in shown and "alice:***@db.example" in shown and "--workers 2" in shown
    with pytest.raises(ConfigError) as refused:  # nobody listens there: the driver's message must not leak it
        load_search("s1", "postgresql+psycopg://alice:s3cret@127.0.0.1:1/searches")
    assert "s3cret" not in str(refused.value) and "alice:***" in str(refused.value)


# ------------------------------------------------------------------------------------------- the CLI's rule


@pytest.mark.parametrize("argv, words", [
    (["search", "status", "s1", "--storage", "sqlite:///{tmp}/none.db"], "no search database at"),
    (["search", "run", "s1", "--storage", "sqlite:///{tmp}/none.db"], "no search database at"),
    (["search", "status", "s1", "--storage", "journal:{tmp}/new/j.log"], "no search journal at"),
    (["search", "create", "s1", "--space", "{space}", "--data", "synthetic:200", "--storage", "journal:{tmp}"],
     "is a folder"),
    (["search", "create", "s1", "--space", "{space}", "--data", "synthetic:200", "--storage", "nodb://x"],
     "no database driver"),
])
def test_the_cli_creates_nothing_for_a_refused_storage(runs_dir, tmp_path, capsys, argv, words):
    (tmp_path / "space.json").write_text(json.dumps(TINY))
    before = _files(tmp_path)
    code = main([a.format(tmp=tmp_path, space=tmp_path / "space.json") for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and len(err.splitlines()) == 1
    assert _files(tmp_path) == before


def test_the_cli_may_put_a_journal_anywhere_its_user_says(runs_dir, tmp_path, capsys):
    (tmp_path / "space.json").write_text(json.dumps(TINY))
    journal = tmp_path / "any" / "where" / "j.log"
    assert main(["search", "create", "s1", "--space", str(tmp_path / "space.json"), "--data", "synthetic:200",
                 "--storage", f"journal:{journal}"]) == 0
    assert journal.is_file()


# ------------------------------------------------------------------------------------------- torn journals


@pytest.fixture(scope="module")
def finished_journal(tmp_path_factory) -> bytes:
    """The journal of a search with one complete trial (trained once for every truncation below)."""
    runs = tmp_path_factory.mktemp("torn") / "runs"
    storage = f"journal:{runs / 'searches' / 'torn' / 'journal.log'}"
    create_search("torn", storage, make_settings(TINY, "synthetic:200", trial_epochs=1))
    run_worker("torn", storage, trials=1, runs_dir=runs)
    assert [r["state"] for r in rows(load_search("torn", storage)[0])] == ["complete"]
    return (runs / "searches" / "torn" / "journal.log").read_bytes()


def _last_line_length(data: bytes) -> int:
    return len(data.rstrip(b"\n").rsplit(b"\n", 1)[-1]) + 1  # with its newline


@pytest.mark.parametrize("cut", ["1", "5", "half", "whole"])
def test_a_torn_journal_tail_is_repaired_and_status_then_run_work(finished_journal, runs_dir, capsys, cut):
    length = _last_line_length(finished_journal)
    drop = {"1": 1, "5": 5, "half": length // 2, "whole": length}[cut]
    journal = runs_dir / "searches" / "torn" / "journal.log"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(finished_journal[:-drop])
    storage = f"journal:{journal}"
    assert main(["search", "status", "torn", "--storage", storage, "--json"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and json.loads(out)["trials"] == 1
    repaired = journal.read_bytes()
    assert repaired.endswith(b"\n") and all(json.loads(line) for line in repaired.splitlines())
    if cut == "1":  # only the newline was missing: the record is kept, the trial still complete
        assert repaired == finished_journal and json.loads(out)["complete"] == 1
    else:
        assert repaired == finished_journal[:-length]  # the torn record dropped, nothing else
    # The next run appends to a sound file: one more trial completes and the journal stays readable.
    run_worker("torn", storage, trials=2, runs_dir=runs_dir)
    study, _ = load_search("torn", storage)
    assert sum(r["state"] == "complete" for r in rows(study)) >= 1 + (cut == "1")
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())


def test_a_damaged_line_before_the_last_is_refused_with_one_line_saying_how(finished_journal, runs_dir, capsys):
    journal = runs_dir / "j.log"
    lines = finished_journal.splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2]) + lines[2][:7] + b"".join(lines[3:]))  # line 3 torn, then appended to
    assert main(["search", "status", "torn", "--storage", f"journal:{journal}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is damaged at line 3 (not JSON); keep a copy, then delete that line and every line after "
                        "it (the trials they record are lost).") and len(err.splitlines()) == 1
    with pytest.raises(ConfigError):
        repair_journal(journal)


def test_a_journal_elsewhere_in_the_runs_folder_is_listed_through_its_pointer(runs_dir):
    journal = f"journal:{runs_dir}/shared/s2.log"
    create_search("s2", check_app_storage(journal, runs_dir), make_settings(TINY, "synthetic:200", trial_epochs=1))
    control.link_storage("s2", journal, runs_dir)
    assert "s2" in control.list_searches(runs_dir) and control.storage_of("s2", runs_dir) == journal
    control.link_storage("s3", control.storage_of("s3", runs_dir), runs_dir)  # its default: no pointer written
    assert not (runs_dir / "searches" / "s3").exists()
