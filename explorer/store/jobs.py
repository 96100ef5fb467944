"""Background runs: one thread per run, a run folder per run, records that survive a restart.

`<runs_dir>/<run_id>/` holds `run.json` (the record, rewritten atomically on every status change and epoch),
`events.jsonl` (every event the loop emits, one JSON object per line, appended and flushed as it happens)
and, at the end, the checkpoint (`model.safetensors` via explorer.store.checkpoint.save_checkpoint).

The manager is safe to share between Streamlit sessions (one lock guards its registry). Runs are threads
(torch releases the GIL in its kernels); at most `max_parallel` train at once, the others wait with status
"queued". A run that was "queued" or "running" when its process died is marked "failed" (interrupted) the
next time a manager opens the folder.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import secrets
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from explorer.arch.config import ArchConfig
from explorer.arch.cost import model_cost
from explorer.engine.config import TrainConfig
from explorer.errors import ExplorerError
from explorer.store.runs import EVENTS_NAME, RECORD_NAME, RunError, default_runs_dir

ACTIVE = ("queued", "running")
DEFAULT_DATA_DIR = "data"
_MANAGERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_runs_at_exit() -> None:
    # A process that ends mid-run (server shut down, Ctrl-C) stops its runs cleanly: checkpoint, "stopped".
    for manager in list(_MANAGERS):
        manager.shutdown()


def new_run_id() -> str:
    """Sortable by start time (UTC, to the millisecond) with a short random suffix: 20240101-120000-123-a1b2c3."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now % 1 * 1000):03d}-{secrets.token_hex(3)}"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """NaN/inf become null (strict JSON readers refuse them); tensors and tuples become plain values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    return value


def _process_start_ticks(pid: int) -> int | None:
    """Start time of `pid` (Linux clock ticks since boot) so a reused pid is not taken for the run's owner."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _owner_alive(owner: dict | None) -> bool:
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return False
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else
    ticks = _process_start_ticks(pid)
    return ticks is None or owner.get("start_ticks") in (None, ticks)


class _Job:
    """One run: its record, its events (also kept in memory for fast polling), its stop event and thread."""

    def __init__(self, run_dir: Path, record: dict):
        self.dir, self.record = run_dir, record
        self.events: list[dict] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.done = threading.Event()
        self._events_file = open(run_dir / EVENTS_NAME, "a", encoding="utf-8")  # closed in close()

    def emit(self, event: dict) -> None:
        event = json_safe(event)
        with self.lock:
            self.events.append(event)
            self._events_file.write(json.dumps(event) + "\n")
            self._events_file.flush()

    def update(self, **fields: Any) -> None:
        with self.lock:
            self.record.update(json_safe(fields))
            write_json_atomic(self.dir / RECORD_NAME, self.record)

    def close(self) -> None:
        with self.lock:
            self._events_file.close()


class JobManager:
    """Start, stop and watch background runs whose records live in `runs_dir` (default: EXPLORER_RUNS_DIR
    or ./checkpoints)."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
                 max_parallel: int | None = None):
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.data_dir = Path(data_dir)
        self.max_parallel = max_parallel or int(os.environ.get("EXPLORER_MAX_RUNS") or 2)
        self._slots = threading.Semaphore(self.max_parallel)
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._owner = {"pid": os.getpid(), "start_ticks": _process_start_ticks(os.getpid())}
        self.recovered = self._recover()
        _MANAGERS.add(self)

    # ------------------------------------------------------------ public API

    def start(self, arch: ArchConfig, train_cfg: TrainConfig, source: str, name: str | None = None,
              preset: str | None = None, recipe: str | None = None, resume_from: str | None = None) -> str:
        """Create the run folder and record, start the run's thread; returns the run id at once."""
        from explorer.engine.data import check_source

        check_source(source, self.data_dir)  # a bad source string fails here, not later in the thread
        init_state = self._resume_state(resume_from) if resume_from else None
        run_id, run_dir = self._new_run_dir()
        record = self._initial_record(run_id, arch, train_cfg, source, name, preset, recipe, resume_from)
        job = _Job(run_dir, record)
        job.update()
        with self._lock:
            self._jobs[run_id] = job
        job.thread = threading.Thread(target=self._run, args=(job, arch, train_cfg, source, init_state),
                                      name=f"explorer-run-{run_id}", daemon=True)
        job.thread.start()
        return run_id

    def stop(self, run_id: str) -> bool:
        """Ask a run to stop (it does within one batch); False when it is not active in this process."""
        job = self._job(run_id)
        if job is None or job.done.is_set():
            return False
        job.stop.set()
        return True

    def status(self, run_id: str) -> dict:
        """The run record (a copy); RunError when there is no such run."""
        job = self._job(run_id)
        if job is not None:
            with job.lock:
                return dict(job.record)
        return self._read_record(run_id)

    def events(self, run_id: str, since: int = 0) -> list[dict]:
        """The run's events from index `since` on (pass the count you already have to get only new ones)."""
        job = self._job(run_id)
        if job is not None:
            with job.lock:
                return list(job.events[since:])
        return self._read_events(run_id)[since:]

    def active(self) -> list[str]:
        """Ids of this process's runs that are queued or running."""
        with self._lock:
            return [rid for rid, job in self._jobs.items() if job.record.get("status") in ACTIVE]

    def wait(self, run_id: str, timeout: float | None = None) -> dict:
        """Block until the run ends (or `timeout` seconds pass); returns its record."""
        job = self._job(run_id)
        if job is not None and job.done.wait(timeout) and job.thread is not None:
            # Let the thread finish for good: a process exiting while a torch thread tears down can abort.
            job.thread.join(timeout)
        return self.status(run_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every active run and wait for them (each saves its checkpoint and ends "stopped")."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(deadline - time.monotonic(), 0.1))

    def runs(self) -> list[dict]:
        """Every run record in the folder, newest first."""
        from explorer.store.runs import list_runs

        return list_runs(self.runs_dir)

    # ------------------------------------------------------------ the run thread

    def _run(self, job: _Job, arch: ArchConfig, cfg: TrainConfig, source: str, init_state: dict | None) -> None:
        try:
            if not self._wait_for_slot(job):
                job.emit({"type": "stopped", "time": time.time(), "summary": job.record["summary"]})
                job.update(status="stopped", finished=_now())
                return
            try:
                self._train(job, arch, cfg, source, init_state)
            finally:
                self._slots.release()
        except Exception as err:  # anything: the record must say why the run ended
            message = str(err) or type(err).__name__
            if not isinstance(err, ExplorerError):
                message = f"{type(err).__name__}: {message}"
            if not job.events or job.events[-1].get("type") != "failed":
                job.emit({"type": "failed", "time": time.time(), "error": message})
            job.update(status="failed", error=message, finished=_now())
        finally:
            job.close()
            job.done.set()

    def _wait_for_slot(self, job: _Job) -> bool:
        while not self._slots.acquire(timeout=0.2):
            if job.stop.is_set():
                return False
        if job.stop.is_set():
            self._slots.release()
            return False
        job.update(status="running", started=_now())
        return True

    def _train(self, job: _Job, arch: ArchConfig, cfg: TrainConfig, source: str, init_state: dict | None) -> None:
        from explorer.engine.data import load_dataset
        from explorer.engine.train import train

        job.emit({"type": "loading", "time": time.time(), "data": source})
        dataset = load_dataset(source, self.data_dir)
        job.update(data_fingerprint=dataset.fingerprint, input_shape=list(dataset.input_shape),
                   num_classes=dataset.num_classes, classes=list(dataset.classes), data_notes=list(dataset.notes))
        held: list[dict] = []

        def on_event(event: dict) -> None:
            if event["type"] in ("finished", "stopped"):
                held.append(event)  # written after the checkpoint, so "finished" means the weights are on disk
                return
            job.emit(event)
            if event["type"] == "started":
                job.update(device=event["device"], params=event["params"], flops=event["flops"])
            elif event["type"] == "epoch":
                job.update(summary=self._summary_so_far(job, event))

        result = train(arch, cfg, dataset, on_event, stop=job.stop, init_state=init_state)
        checkpoint = self._save_checkpoint(job, result, dataset, cfg) if result.epochs_done else None
        end = held[-1] if held else {"type": result.status, "summary": result.summary}
        job.emit(end | {"time": time.time()})  # after the checkpoint event, so it carries the later time
        job.update(status=result.status, finished=_now(), summary=result.summary,
                   checkpoint=checkpoint.name if checkpoint else None)

    def _summary_so_far(self, job: _Job, epoch: dict) -> dict:
        accuracies = [e["test_accuracy"] for e in job.events if e.get("type") == "epoch"]
        started = next(e["time"] for e in job.events if e.get("type") == "started")
        return {"final_test_accuracy": epoch["test_accuracy"], "best_test_accuracy": max(accuracies),
                "epochs_done": epoch["epoch"], "wall_seconds": time.time() - started,
                "images_per_second": epoch["images_per_second"]}

    def _save_checkpoint(self, job: _Job, result, dataset, cfg: TrainConfig) -> Path:
        from explorer.store.checkpoint import save_checkpoint

        meta = {"classes": list(dataset.classes), "normalization": result.normalization, "train": cfg.to_dict(),
                "metrics": json_safe(result.metrics | {"summary": result.summary}), "data": dataset.name,
                "data_fingerprint": dataset.fingerprint, "run_id": job.record["id"],
                "epochs_done": result.epochs_done, "resumed_from": job.record.get("resumed_from")}
        path = save_checkpoint(job.dir, result.model, meta, result.optimizer_state)
        job.emit({"type": "checkpoint", "time": time.time(), "path": str(path)})
        return path

    # ------------------------------------------------------------ records

    def _initial_record(self, run_id, arch, cfg, source, name, preset, recipe, resume_from) -> dict:
        try:
            cost = model_cost(arch)
            params, flops = cost.params, cost.flops  # for 3x32x32; corrected once the data is loaded
        except ExplorerError:
            params = flops = None
        return {"id": run_id, "name": name or f"{preset or 'custom'} on {source}", "status": "queued",
                "created": _now(), "started": None, "finished": None, "preset": preset, "recipe": recipe,
                "arch": arch.to_dict(), "train": cfg.to_dict(), "data": source, "data_fingerprint": None,
                "input_shape": None, "num_classes": None, "classes": None, "params": params, "flops": flops,
                "device": None, "error": None,
                "summary": {"final_test_accuracy": None, "best_test_accuracy": None, "epochs_done": 0,
                            "wall_seconds": None, "images_per_second": None},
                "checkpoint": None, "resumed_from": resume_from, "owner": self._owner}

    def _new_run_dir(self) -> tuple[str, Path]:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = new_run_id()
            path = self.runs_dir / run_id
            try:
                path.mkdir()
                return run_id, path
            except FileExistsError:
                continue

    def _job(self, run_id: str) -> _Job | None:
        with self._lock:
            return self._jobs.get(run_id)

    def _read_record(self, run_id: str) -> dict:
        from explorer.store.runs import read_run

        record = read_run(run_id, self.runs_dir)
        record.pop("dir", None)
        return record

    def _read_events(self, run_id: str) -> list[dict]:
        from explorer.store.runs import read_events

        return read_events(run_id, self.runs_dir)

    def _resume_state(self, run_id: str) -> dict:
        """Weights (raw, not averaged, when the run kept them), optimizer state and epochs done of `run_id`."""
        from explorer.store.checkpoint import load_checkpoint

        record = self._read_record(run_id)
        if not record.get("checkpoint"):
            raise RunError(f"run {run_id} has no checkpoint to resume from (it ended {record.get('status')} "
                           f"before finishing an epoch).")
        loaded = load_checkpoint(self.runs_dir / run_id / record["checkpoint"])
        optimizer_state = loaded.optimizer_state or {}
        weights = optimizer_state.get("model") or loaded.model.state_dict()
        epochs_done = (record.get("summary") or {}).get("epochs_done") or loaded.meta.get("epochs_done") or 0
        return {"model": weights, "optimizer": optimizer_state, "epochs_done": int(epochs_done)}

    def _recover(self) -> list[str]:
        """Runs left queued/running by a process that is gone become failed, with a message saying so."""
        if not self.runs_dir.is_dir():
            return []
        recovered = []
        for path in sorted(self.runs_dir.iterdir()):
            record_path = path / RECORD_NAME
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("status") not in ACTIVE or _owner_alive(record.get("owner")):
                continue
            done = (record.get("summary") or {}).get("epochs_done") or 0
            message = (f"interrupted: the process running this run ended (app restart or crash) while it was "
                       f"{record['status']}, after {done} epoch(s); start it again or resume an earlier checkpoint.")
            record.update(status="failed", error=message, finished=record.get("finished") or _now())
            with contextlib.suppress(OSError):
                with open(path / EVENTS_NAME, "a", encoding="utf-8") as events:
                    events.write(json.dumps({"type": "failed", "time": time.time(), "error": message}) + "\n")
                write_json_atomic(record_path, record)
                recovered.append(path.name)
        return recovered


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = ["JobManager", "new_run_id", "json_safe", "write_json_atomic"]
