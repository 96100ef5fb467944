"""The app's side of a search: which searches the runs folder holds, and `search run` as a detached process.

The Search page starts `python -m explorer search run NAME ...` in a session of its own (like
explorer.store.runner.Runner starts a run), so a rerun, a page switch or a restart of the app server cannot
touch it. The process's stamp (pid, start time, host, command, log) goes into `<runs>/searches/NAME/process.json`,
so a reloaded page or a restarted server finds the search still running, and Stop can signal it (SIGTERM:
`search run` forwards it to its workers, which stop their runs cleanly and queue their trials again).
The searches listed are those with a default journal under `<runs>/searches/NAME/`, and those whose folder
holds a `storage.url` pointer: a database search (workers on many machines) the page created or was told to
watch. The pointer is written owner-only (a database URL may carry a password).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from explorer.atomic import atomic_write_bytes, atomic_write_json
from explorer.errors import ConfigError
from explorer.search.storage import hide_password
from explorer.search.study import default_storage
from explorer.store import settings as store_settings
from explorer.store.process import last_log_line, logs_dir, spawn_detached
from explorer.store.runs import owner_alive, process_start_ticks, this_process

SEARCHES_DIR = "searches"
JOURNAL_NAME = "journal.log"
PROCESS_NAME = "process.json"
STORAGE_NAME = "storage.url"
# Children started by this server: polled so an ended one is reaped (a zombie would still look alive).
_CHILDREN: dict[str, subprocess.Popen] = {}
_LOCK = threading.Lock()


def check_name(name: str) -> str:
    """A search name that is a plain folder name; ConfigError naming what to use otherwise."""
    name = str(name).strip()
    if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 80:
        raise ConfigError(f"search name {name!r}: use a plain name such as s1 (no '/', not starting with '.', "
                          f"at most 80 characters).")
    return name


def search_dir(name: str, runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / SEARCHES_DIR / check_name(name)


def list_searches(runs_dir: str | os.PathLike) -> list[str]:
    """Names of the searches under `<runs_dir>/searches/` (a default journal or a storage pointer), newest first."""
    root = Path(runs_dir) / SEARCHES_DIR
    with contextlib.suppress(OSError):
        found = {p for name in (JOURNAL_NAME, STORAGE_NAME) for p in root.glob(f"*/{name}") if p.is_file()}
        newest = {}
        for path in found:
            newest[path.parent.name] = max(newest.get(path.parent.name, 0.0), path.stat().st_mtime)
        return sorted(newest, key=newest.get, reverse=True)
    return []


def storage_of(name: str, runs_dir: str | os.PathLike) -> str:
    """The storage URL of search `name`: its pointer when it has one, else its default journal."""
    with contextlib.suppress(OSError):
        url = (search_dir(name, runs_dir) / STORAGE_NAME).read_text().strip()
        if url:
            return url
    return default_storage(name, runs_dir)


def link_storage(name: str, url: str, runs_dir: str | os.PathLike) -> None:
    """Remember that search `name` lives in the storage `url` (a database, or a journal that is not its default
    one): the page lists, runs and watches it."""
    url = url.strip()
    if not url:
        raise ConfigError("a storage pointer needs a URL, e.g. postgresql+psycopg://user@host/db.")
    if url == default_storage(name, runs_dir):
        return  # found where every search's default journal is: no pointer needed
    folder = search_dir(name, runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / STORAGE_NAME, url.encode())  # mkstemp's file: owner-only (0600)


def run_command(name: str, workers: int, trials: int | None, timeout: float | None,
                runs_dir: str | os.PathLike, data_dir: str | os.PathLike) -> list[str]:
    """The `search run` argv (the same a user can type), on the search's storage."""
    argv = [sys.executable, "-m", "explorer", "search", "run", name, "--storage", storage_of(name, runs_dir),
            "--runs-dir", str(runs_dir), "--data-dir", str(data_dir), "--workers", str(int(workers))]
    argv += ["--trials", str(int(trials))] if trials else []
    argv += ["--timeout", f"{float(timeout):g}"] if timeout else []
    return argv


def _reap() -> None:
    with _LOCK:
        for name, child in list(_CHILDREN.items()):
            if child.poll() is not None:
                del _CHILDREN[name]


def read_process(name: str, runs_dir: str | os.PathLike) -> dict | None:
    """The stamp of the last `search run` the app started for `name` (None when there is none)."""
    with contextlib.suppress(OSError, ValueError):
        stamp = json.loads((search_dir(name, runs_dir) / PROCESS_NAME).read_text())
        return stamp if isinstance(stamp, dict) else None
    return None


def is_running(name: str, runs_dir: str | os.PathLike) -> bool:
    """Whether the app's `search run` for `name` is still alive (started by this server or an earlier one)."""
    _reap()
    return owner_alive(read_process(name, runs_dir))


def running_searches(runs_dir: str | os.PathLike) -> list[str]:
    return [name for name in list_searches(runs_dir) if is_running(name, runs_dir)]


def start(name: str, workers: int = 1, trials: int | None = None, timeout: float | None = None,
          runs_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None) -> dict:
    """Start `search run NAME` detached; returns its stamp. ConfigError when it already runs or exits at once."""
    runs_dir = Path(runs_dir) if runs_dir is not None else store_settings.default_runs_dir()
    data_dir = Path(data_dir) if data_dir is not None else store_settings.default_data_dir()
    if is_running(name, runs_dir):
        raise ConfigError(f"search {name} is already running; stop it first.")
    folder = search_dir(name, runs_dir)
    argv = run_command(name, workers, trials, timeout, runs_dir, data_dir)
    log = logs_dir(runs_dir) / f"search-{name}-app.log"
    child = spawn_detached(argv, log)
    with _LOCK:
        _CHILDREN[name] = child
    stamp = this_process() | {"pid": child.pid, "start_ticks": process_start_ticks(child.pid), "command": argv,
                              "log": str(log), "started": time.time()}
    atomic_write_json(folder / PROCESS_NAME, stamp)
    with contextlib.suppress(subprocess.TimeoutExpired):
        # A bad search (missing journal, bad storage) exits 2 at once: say why instead of "not running".
        if child.wait(timeout=0.5) != 0:
            raise ConfigError(f"search {name} could not start: {last_log_line(log) or f'exit {child.returncode}'}")
    return stamp


def stop(name: str, runs_dir: str | os.PathLike | None = None) -> bool:
    """SIGTERM to the app's `search run` for `name`; False when it is not running."""
    runs_dir = runs_dir if runs_dir is not None else store_settings.default_runs_dir()
    stamp = read_process(name, runs_dir)
    if not is_running(name, runs_dir):
        return False
    try:
        os.kill(stamp["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def slot_waits(trial_rows: list[dict], runs_dir: str | os.PathLike) -> dict[int, str]:
    """{trial number: "waiting for a training slot (N runs hold them)"} for running trials whose run (in this runs
    folder) is queued: at most EXPLORER_MAX_RUNS runs train at once, whoever started them."""
    from explorer.store.runner import Slots
    from explorer.store.runs import RunError, read_run

    waiting = []
    for row in trial_rows:
        if row["state"] != "running" or not row.get("run_id"):
            continue
        with contextlib.suppress(RunError):  # a trial trained on another machine: its run is not here
            if read_run(row["run_id"], runs_dir)["status"] == "queued":
                waiting.append(row["number"])
    if not waiting:
        return {}
    holders = Slots(Path(runs_dir), store_settings.max_runs()).busy()
    words = f"{holders} run holds it" if holders == 1 else f"{holders} runs hold them"
    return dict.fromkeys(waiting, f"waiting for a training slot ({words})")


def run_options(stamp: dict) -> tuple[int, int] | None:
    """(workers, trials; 0: until stopped) the stamp's `search run` was started with, None without a stamp."""
    argv = [str(part) for part in stamp.get("command") or []]
    if "--workers" not in argv:
        return None
    value = {flag: int(argv[argv.index(flag) + 1]) for flag in ("--workers", "--trials") if flag in argv}
    return value["--workers"], value.get("--trials", 0)


def shown_command(stamp: dict) -> str:
    """The stamp's command, shell-quoted, with a database URL's password as *** (the page shows it)."""
    return shlex.join(hide_password(str(part)) for part in stamp.get("command") or [])


def last_message(name: str, runs_dir: str | os.PathLike) -> str:
    """The last line `search run` wrote to its log (why it stopped or failed), "" when there is none."""
    stamp = read_process(name, runs_dir) or {}
    return last_log_line(Path(stamp["log"])) if stamp.get("log") else ""


__all__ = ["list_searches", "running_searches", "is_running", "read_process", "start", "stop", "last_message",
           "run_command", "shown_command", "slot_waits", "search_dir", "check_name", "storage_of", "link_storage",
           "SEARCHES_DIR", "PROCESS_NAME", "run_options"]
