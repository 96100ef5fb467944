"""Run records: read, list, rename and delete run folders (the tables built from them: store.tables).

A run folder is `<runs_dir>/<run_id>/` (docs/run-record.md): `run.json` (the record, with its format version),
`events.jsonl` (one event per line) and the checkpoint (`model.safetensors`, `model.optimizer.pt`). The run's own
process writes it; nothing here writes while a run is active. Listing caches each record by the (mtime, size) of
its files, so the app can list 200 runs on every rerun and read only what changed. A record that cannot be read
(truncated, a newer format, a garbage event line) is listed with a message for that run; the others are unaffected.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from explorer.atomic import atomic_write_json
from explorer.errors import ExplorerError
from explorer.store.events import ACTIVE_STATUSES, STATUSES, Event, EventReader, History, fold
from explorer.store.process import logs_dir
from explorer.store.settings import RUNS_DIR_ENV, default_runs_dir

RECORD_VERSION = 2  # the run-record format this code writes and reads (docs/run-record.md)
RECORD_NAME = "run.json"
EVENTS_NAME = "events.jsonl"
MAX_NAME_LENGTH = 80


class RunError(ExplorerError):
    """A run that cannot be found, read, renamed or deleted."""


def _root(runs_dir: str | os.PathLike | None) -> Path:
    return Path(runs_dir) if runs_dir is not None else default_runs_dir()


def check_run_id(run_id: Any) -> str:
    """`run_id` when it names a folder directly inside the runs folder; RunError for `../x`, `/etc`, `.hidden`."""
    if not isinstance(run_id, str) or not run_id or run_id != Path(run_id).name or run_id.startswith(".") \
            or "/" in run_id or "\\" in run_id or "\0" in run_id:
        raise RunError(f"{run_id!r} is not a run id (a folder name inside the runs folder).")
    return run_id


def run_dir(run_id: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder of `run_id`; RunError for ids that would leave the runs folder or do not exist."""
    path = _root(runs_dir) / check_run_id(run_id)
    if not (path / RECORD_NAME).is_file():
        raise RunError(f"no run {run_id!r} in {_root(runs_dir)}; `python -m explorer runs` lists the runs there.")
    return path


# ----------------------------------------------------------------------------------------------- owners


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of `pid` from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """Start time of `pid` (Linux clock ticks since boot), so a reused pid is not taken for a run's owner."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def this_process() -> dict:
    """The owner stamp a run process writes into its record: pid, start time and host."""
    pid = os.getpid()
    return {"pid": pid, "start_ticks": process_start_ticks(pid), "host": socket.gethostname()}


def owner_alive(owner: Any) -> bool:
    """Whether the process that owns a record still runs (a record from another host: assumed alive)."""
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return False
    if owner.get("host") not in (None, socket.gethostname()):
        return True  # we cannot see processes on another machine
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: the pid exists, that is all we can tell
    state, ticks = stat
    # A zombie (Z) or dead (X) process has ended; another start time means the pid was reused.
    return state not in ("Z", "X") and owner.get("start_ticks") in (None, ticks)


def effective_status(record: dict) -> str:
    """The status to show: a queued/running record whose owner process is gone is "interrupted"."""
    status = record.get("status")
    if status in ACTIVE_STATUSES and not owner_alive(record.get("owner")):
        return "interrupted"
    return status if status in STATUSES else "unreadable"


def _interrupted_message(record: dict) -> str:
    done = (record.get("summary") or {}).get("epochs_done") or 0
    resume = (f" Its last checkpoint (after epoch {done}) is kept: resume it in the Checkpoints page or with "
              f"`python -m explorer train --resume {record.get('id')}`.") if record.get("checkpoint") else \
        " It had saved no checkpoint yet: start it again."
    return (f"interrupted: the process training this run ended without finishing (killed, crash or restart) "
            f"while it was {record.get('status')}, after {done} epoch(s).{resume}")


# ----------------------------------------------------------------------------------------------- reading


def parse_record(text: str, run_id: str) -> dict:
    """A run.json text checked for this format version; RunError says what is wrong and what to do."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunError(f"run {run_id}: run.json cannot be read ({err.msg} at line {err.lineno}, column "
                       f"{err.colno}: truncated or damaged); delete the run or restore the file.") from None
    if not isinstance(record, dict):
        raise RunError(f"run {run_id}: run.json cannot be read (it is not a JSON object); delete the run.")
    version = record.get("format_version", 1)  # records written before the version field are version 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunError(f"run {run_id}: run.json has an invalid format_version {version!r}.")
    if version > RECORD_VERSION:
        raise RunError(f"run {run_id} was written by a newer explorer (run-record format {version}; this one reads "
                       f"format {RECORD_VERSION}): update explorer to read it. Nothing was changed.")
    _check_fields(record, run_id)
    return record


# The type every reader relies on for each field (None is always allowed): a record that breaks one is listed as
# unreadable with the field named, instead of failing wherever the field is used.
_NUMBER = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "status": (str,), "created": (str,), "started": (str,), "finished": (str,),
    "preset": (str,), "recipe": (str,), "arch": (dict,), "train": (dict,), "data": (str,),
    "data_fingerprint": (str,), "data_notes": (list,), "input_shape": (list,), "num_classes": (int,),
    "classes": (list,), "params": _NUMBER, "flops": _NUMBER, "device": (str,), "threads": (int,),
    "summary": (dict,), "checkpoint": (str,), "checkpoint_kind": (str,), "partial_epoch": (dict,),
    "error": (str,), "resumed_from": (str,), "owner": (dict,),
    "command": (list,), "group": (str,),
}


def _check_fields(record: dict, run_id: str) -> None:
    for key, kinds in FIELD_TYPES.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise RunError(f"run {run_id}: run.json field {key!r} is {_short(value)}, not a "
                           f"{' or '.join(k.__name__ for k in kinds)}; delete the run or fix the file.")
    checkpoint = record.get("checkpoint")
    if checkpoint is not None and (checkpoint != Path(checkpoint).name or checkpoint.startswith(".")):
        # The checkpoint is a file inside the run folder; a path could make resume read any file.
        raise RunError(f"run {run_id}: run.json names checkpoint {checkpoint!r}, which is not a file name in the "
                       "run folder; delete the run or fix the file.")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _load_record(path: Path) -> dict:
    try:
        text = (path / RECORD_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"no run {path.name!r} in {path.parent}; `python -m explorer runs` lists the runs there.") \
            from None
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"run {path.name}: run.json cannot be read ({err}); delete the run or fix the file.") from None
    return parse_record(text, path.name)


def _shown(record: dict, path: Path, problems: list[str]) -> dict:
    """The record as listings show it: id and dir filled in, the effective status and a message."""
    shown = record | {"id": record.get("id") or path.name, "dir": str(path), "problems": list(problems)}
    shown["status"] = effective_status(shown)
    messages = [_interrupted_message(shown)] if shown["status"] == "interrupted" else []
    messages += [shown["error"]] if shown.get("error") else []
    shown["message"] = " ".join(messages + problems) or None
    return shown


def read_run(run_id: str, runs_dir: str | os.PathLike | None = None) -> dict:
    """The run record (run.json) with "dir", the effective "status" and a "message" (None when all is well)."""
    path = run_dir(run_id, runs_dir)
    return _shown(_load_record(path), path, [])


class _Cached:
    """One run folder's record and event problems, re-read only when its files change."""

    def __init__(self, path: Path):
        self.path, self.record_key, self.events_size = path, None, -1
        self.record: dict | None = None
        self.error: str | None = None
        self.reader = EventReader(path / EVENTS_NAME)
        self.problems: list[str] = []

    def refresh(self, check_events: bool) -> dict:
        self._refresh_record()
        if check_events:
            self._refresh_events()
        if self.record is None:
            return {"id": self.path.name, "name": self.path.name, "status": "unreadable", "error": self.error,
                    "message": self.error, "dir": str(self.path), "problems": []}
        return _shown(self.record, self.path, self.problems)

    def _refresh_record(self) -> None:
        try:
            stat = (self.path / RECORD_NAME).stat()
        except OSError:
            stat = None
        key = (stat.st_mtime_ns, stat.st_size) if stat else None
        if key == self.record_key:
            return
        self.record_key = key
        try:
            self.record, self.error = _load_record(self.path), None
        except RunError as err:
            self.record, self.error = None, str(err)

    def _refresh_events(self) -> None:
        try:
            size = (self.path / EVENTS_NAME).stat().st_size
        except OSError:
            size = 0
        if size < self.events_size:  # rewritten from scratch: read it again from the start
            self.reader, self.problems = EventReader(self.path / EVENTS_NAME), []
        if size != self.events_size:
            self.events_size = size
            self.problems += self.reader.read()[1]


_CACHE: dict[Path, _Cached] = {}
_CACHE_LOCK = threading.Lock()


def run_record_for(path: Path | None) -> dict | None:
    """The run record of the run folder a checkpoint file sits in (None for loose files and uploads)."""
    if path is None or not (path.parent / RECORD_NAME).is_file():
        return None
    try:
        return read_run(path.parent.name, path.parent.parent)
    except RunError:
        return None  # callers (a model card, a prediction) are still useful without the record


def resolve_checkpoint(target: str, runs_dir: str | os.PathLike | None = None) -> tuple[Path, dict | None]:
    """The checkpoint file `target` names (a .safetensors file, a run folder, or a run id in the runs folder)
    and the record of the run it belongs to, if any."""
    from explorer.store.checkpoint import weights_path

    path = Path(target).expanduser()
    if path.exists() or "/" in target or target.endswith(".safetensors"):
        weights = weights_path(path)
        return weights, run_record_for(weights)
    root = _root(runs_dir)
    try:
        folder = run_dir(target, root)
    except RunError:
        raise RunError(f"{target!r} is neither a checkpoint file nor a run id in {root}; `python -m explorer runs` "
                       "lists the runs there.") from None
    record = read_run(target, root)
    if not record.get("checkpoint"):
        raise RunError(f"run {target} has no checkpoint yet (it saves one after its first epoch).")
    return folder / record["checkpoint"], record


def list_runs(runs_dir: str | os.PathLike | None = None, check_events: bool = True) -> list[dict]:
    """Every run, newest first, each as read_run gives it. Unreadable runs come back with status "unreadable"
    and a message; only files that changed since the last call are read again. `check_events` also scans each
    run's events.jsonl (new lines only) for lines that do not parse, and adds them to the run's message."""
    root = _root(runs_dir)
    if not root.is_dir():
        return []
    records = []
    with _CACHE_LOCK:
        seen = set()
        for entry in os.scandir(root):
            path = Path(entry.path).resolve()
            if entry.name.startswith(".") or not (path / RECORD_NAME).is_file():
                continue
            seen.add(path)
            cached = _CACHE.get(path) or _CACHE.setdefault(path, _Cached(path))
            records.append(cached.refresh(check_events))
        for path in [p for p in _CACHE if p.parent == root.resolve() and p not in seen]:
            del _CACHE[path]  # deleted runs
    return sorted(records, key=lambda r: (str(r.get("created") or ""), r["id"]), reverse=True)


def active_runs(runs_dir: str | os.PathLike | None = None) -> list[str]:
    """Ids of the runs queued or training now (in any process), newest first."""
    return [r["id"] for r in list_runs(runs_dir, check_events=False) if r["status"] in ACTIVE_STATUSES]


def read_events(run_id: str, runs_dir: str | os.PathLike | None = None, types: Collection[str] | None = None
                ) -> list[Event]:
    """The run's events in order (typed); a half-written last line (the run is still writing) is skipped."""
    events, _ = EventReader(run_dir(run_id, runs_dir) / EVENTS_NAME).read()
    return [e for e in events if types is None or e.type in types]


def read_history(run_id: str, runs_dir: str | os.PathLike | None = None) -> History:
    """The fold of a run's events; lines that do not parse are listed in `problems`."""
    events, problems = EventReader(run_dir(run_id, runs_dir) / EVENTS_NAME).read()
    history = fold(events)
    history.problems += problems
    return history


# ----------------------------------------------------------------------------------------------- changes


def _check_not_active(run_id: str, record: dict, active: Collection[str], action: str) -> None:
    # The run's own process rewrites run.json while it is active: a change made now would be lost or raced.
    if run_id in active or record["status"] in ACTIVE_STATUSES:
        raise RunError(f"run {run_id} is still {record['status']}; stop it before you {action} it.")


def rename_run(run_id: str, new_name: str, runs_dir: str | os.PathLike | None = None,
               active: Collection[str] = ()) -> dict:
    """Give a run a new display name (its id and folder stay); returns the updated record."""
    name = " ".join(str(new_name).split())
    if not name or len(name) > MAX_NAME_LENGTH:
        raise RunError(f"a run name needs 1 to {MAX_NAME_LENGTH} characters.")
    path = run_dir(run_id, runs_dir)
    record = _load_record(path)
    _check_not_active(run_id, _shown(record, path, []), active, "rename")
    record["name"] = name
    try:
        atomic_write_json(path / RECORD_NAME, record)
    except OSError as err:
        raise RunError(f"cannot rename run {run_id}: {err.strerror} ({path}); check that the runs folder is "
                       "writable.") from None
    return read_run(run_id, runs_dir)


def delete_run(run_id: str, runs_dir: str | os.PathLike | None = None, active: Collection[str] = ()) -> None:
    """Remove a run folder (record, events, checkpoint). The folder is first renamed so a half-done delete
    never leaves a half run that is still listed. An unreadable run can be deleted too."""
    path = _root(runs_dir) / check_run_id(run_id)
    if path.is_symlink() or not path.is_dir() or not any((path / n).exists() for n in (RECORD_NAME, EVENTS_NAME)):
        raise RunError(f"no run {run_id!r} in {_root(runs_dir)}; `python -m explorer runs` lists the runs there.")
    try:
        record = _shown(_load_record(path), path, [])
    except RunError:
        record = {"status": "unreadable"}  # a damaged record can still be deleted
    _check_not_active(run_id, record, active, "delete")
    trash = path.with_name(f".deleted-{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(path, trash)
    except OSError as err:
        raise RunError(f"cannot delete run {run_id}: {err.strerror} ({path.parent}); check that the runs "
                       "folder is writable.") from None
    shutil.rmtree(trash, ignore_errors=True)
    (logs_dir(path.parent) / f"{path.name}.log").unlink(missing_ok=True)


__all__ = ["RunError", "RECORD_VERSION", "RECORD_NAME", "EVENTS_NAME", "RUNS_DIR_ENV", "default_runs_dir",
           "check_run_id", "run_dir", "read_run", "parse_record", "list_runs", "active_runs", "read_events",
           "read_history", "rename_run", "delete_run", "effective_status", "owner_alive", "this_process",
           "run_record_for", "resolve_checkpoint"]
