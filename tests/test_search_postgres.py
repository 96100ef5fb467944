"""The same searches on a real PostgreSQL server: a throwaway cluster (Debian's postgresql, `make postgres`)
started with initdb/pg_ctl on a free port, workers pointed at its SQLAlchemy URL (RDBStorage with heartbeat)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import test_search as cases
import test_search_page as page_cases

from explorer.search import control
from explorer.search.study import load_search, rows
from explorer.ui import search_panel

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql+psycopg://postgres@127.0.0.1:PORT/postgres on a cluster that lives for this module."""
    assert BIN, "PostgreSQL is not installed: run `make postgres` (apt-get install postgresql)"
    tools = Path(BIN[-1])
    root = Path(tempfile.mkdtemp(prefix="explorer-pg-"))
    # initdb refuses to run as root: as root, the cluster belongs to the postgres user.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run([*as_owner, tools / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_owner, tools / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_owner, tools / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def app(runs_dir, tmp_path, monkeypatch):
    yield from page_cases.open_search_page(tmp_path, monkeypatch)


def _create_on(url: str, name: str, runs_dir: Path, **kwargs) -> str:
    from explorer.search.study import create_search, make_settings

    space = kwargs.pop("space", cases.TINY)
    settings = make_settings(space, kwargs.pop("data", "synthetic:200"), **({"trial_epochs": 1} | kwargs))
    create_search(name, url, settings)
    return url


def test_two_workers_on_postgresql_finish_exactly_n_trials_with_distinct_numbers(postgres_url, runs_dir):
    _create_on(postgres_url, "pg-pair", runs_dir)
    with cases.held_slots(runs_dir) as release:
        search = cases._start_search("pg-pair", postgres_url, runs_dir, trials=4)
        first = cases._trials_with_runs(postgres_url, "pg-pair", 2, time.monotonic() + 300)
        release()  # both workers hold a trial: now let them train
        cases._finish(search)
    assert len({t.user_attrs["worker"]["pid"] for t in first}) == 2
    study, _ = load_search("pg-pair", postgres_url)
    finished = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4 and len({t.number for t in finished}) == 4
    assert all(r["run_id"] for r in rows(study) if r["state"] == "complete")


def test_a_worker_killed_mid_trial_on_postgresql_is_failed_retried_and_the_search_completes(postgres_url, runs_dir):
    _create_on(postgres_url, "pg-kill", runs_dir, data="synthetic:400")
    cases.check_killed_worker_is_retried("pg-kill", postgres_url, runs_dir)


def _connections(url: str) -> int:
    """Client connections the server holds now, this one excluded."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client "
                                            "backend' AND pid <> pg_backend_pid()")).scalar_one()


def test_polling_a_search_does_not_open_a_connection_per_poll(postgres_url, runs_dir):
    # The app's Search page, the supervisor and `search status` poll load_search; one engine per poll left its
    # pooled connection open until garbage collection and exhausted the server (a CI run's "during the commit").
    _create_on(postgres_url, "pg-poll", runs_dir)
    before = _connections(postgres_url)
    for _ in range(120):  # above PostgreSQL's default max_connections (100)
        study, _ = load_search("pg-poll", postgres_url)
        assert study.study_name == "pg-poll"
    assert _connections(postgres_url) - before <= 2


def test_a_bad_database_url_is_one_line(runs_dir, capsys):
    from explorer.cli import main

    port = _free_port()  # nothing listens there
    assert main(["search", "status", "x", "--storage", f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be opened" in err and len(err.splitlines()) == 1


def test_the_search_page_runs_and_watches_searches_in_postgresql(postgres_url, runs_dir, app):
    # A new search on the page, its storage the database: two local workers run it there.
    app.text_input(key=search_panel.NAME).set_value("pg-page")
    app.text_input(key=search_panel.STORAGE).set_value(postgres_url)
    app.number_input(key=search_panel.SYNTHETIC_SIZE).set_value(200)
    app.radio(key=search_panel.PER_TRIAL).set_value("epochs per trial").run()
    app.number_input(key=search_panel.TRIAL_EPOCHS).set_value(1)
    app.text_area(key=search_panel.SPACE).set_value(json.dumps(page_cases.TINY))
    app.checkbox(key=search_panel.BASELINE).uncheck()
    app.number_input(key=search_panel.TRIALS).set_value(4)
    app.button(key="search.start").click().run()
    assert not app.error, [e.value for e in app.error]
    pointer = runs_dir / "searches" / "pg-page" / control.STORAGE_NAME
    assert pointer.read_text() == postgres_url and stat.S_IMODE(pointer.stat().st_mode) == 0o600
    assert "--storage " + postgres_url in " ".join(control.read_process("pg-page", runs_dir)["command"])
    page_cases._wait_until_stopped("pg-page", runs_dir)
    app.run()
    finished = sum(page_cases._metric(app, s) for s in ("Complete", "Pruned"))
    assert 4 <= finished <= 5 and page_cases._metric(app, "Failed") == 0
    assert len(rows(load_search("pg-page", postgres_url)[0])) == finished  # the trials live in the database

    # A search another machine created in the database: watched by URL and name, then listed and drawn.
    _create_on(postgres_url, "pg-elsewhere", runs_dir)
    app.selectbox(key=search_panel.PICK).set_value(search_panel.NEW).run()
    app.text_input(key=search_panel.WATCH_URL).set_value(postgres_url)
    app.text_input(key=search_panel.WATCH_NAME).set_value("pg-elsewhere")
    app.button(key="search.watch").click().run()
    assert not app.error and app.selectbox(key=search_panel.PICK).value == "pg-elsewhere"
    assert control.list_searches(runs_dir)[:2] == ["pg-elsewhere", "pg-page"]
    assert page_cases._metric(app, "Waiting") == 0 and page_cases._metric(app, "Complete") == 0


def test_watching_a_search_the_database_does_not_hold_says_so(postgres_url, app):
    app.text_input(key=search_panel.WATCH_URL).set_value(postgres_url)
    app.text_input(key=search_panel.WATCH_NAME).set_value("no-such-search")
    app.button(key="search.watch").click().run()
    assert any("no-such-search" in e.value for e in app.error)
    assert app.selectbox(key=search_panel.PICK).value == search_panel.NEW
