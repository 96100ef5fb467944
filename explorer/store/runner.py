"""Runs as processes: `RunProcess` is what `python -m explorer train` does; `Runner` starts such processes.

A run is one process that owns its run folder (docs/run-record.md): it writes run.json (atomically, with its
owner stamp: pid, process start time, host) and appends to events.jsonl; everyone else only reads them. The app
starts a run as `python -m explorer train ... --run-id ID` in a new session (start_new_session), so the run
outlives the app server, and anyone can re-attach by reading the folder.

- Stop: SIGTERM or SIGINT set a flag the training loop checks before every batch; the run ends "stopped" and
  its checkpoint is the last whole epoch's, equal to the recorded metrics (the loop drops the partial epoch);
  stopped before its first epoch ended, it saves the partial epoch, evaluated at the stop, marked
  `checkpoint_kind: "partial epoch"` in the record. A checkpoint is also saved (atomically) after every epoch,
  so SIGKILL loses at most the epoch in progress; such a record stays "running" on disk and reads as
  "interrupted" (store.runs) once its owner is gone, with Resume offered.
- Queue: at most EXPLORER_MAX_RUNS runs train at once across every process that uses the runs folder. A slot
  is an exclusive flock on `<runs_dir>/.slots/N.lock`; the kernel releases it when the process ends, even on
  SIGKILL, so a crashed run never holds a slot. A run waiting for one is "queued" and still honours stop.
- Threads: a CPU run uses at most cores // (runs training now) intra-op threads, re-read at every logged batch,
  so two runs side by side share the cores instead of oversubscribing them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import model_cost
from explorer.arch.presets import PRESETS, preset_label
from explorer.atomic import atomic_write_json, json_safe
from explorer.engine.config import TrainConfig
from explorer.engine.data import canonical_source
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ExplorerError, TrainingError
from explorer.store import settings
from explorer.store.events import (
    ACTIVE_STATUSES,
    Checkpoint,
    Event,
    EventReader,
    EventWriter,
    Failed,
    Finished,
    History,
    Loading,
    Queued,
    Stopped,
    parse_event,
)
from explorer.store.process import LOGS_DIR, last_log_line, logs_dir, spawn_detached
from explorer.store.runs import (
    EVENTS_NAME,
    RECORD_NAME,
    RECORD_VERSION,
    RunError,
    check_run_id,
    read_run,
    run_dir,
    this_process,
)

SLOTS_DIR = ".slots"
POLL_SECONDS = 0.25  # how often a queued run tries for a slot
START_TIMEOUT = 120.0  # seconds a new run process may take to write its run.json (imports torch on a busy CPU)


def new_run_id() -> str:
    """Sortable by start time (UTC, to the millisecond) with a short random suffix: 20240101-120000-123-a1b2c3."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now % 1 * 1000):03d}-{secrets.token_hex(3)}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ------------------------------------------------------------------------------------------- slots


class Slots:
    """Training slots shared by every process on one runs folder: `count` lock files, one flock each."""

    def __init__(self, runs_dir: Path, count: int):
        self.dir, self.count = Path(runs_dir) / SLOTS_DIR, count
        self.held: tuple[int, int] | None = None  # (slot number, file descriptor)

    def _open(self, number: int) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        return os.open(self.dir / f"{number}.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self) -> bool:
        """Take a free slot now (never waits); True when this process holds one."""
        if self.held is not None:
            return True
        for number in range(self.count):
            fd = self._open(number)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.held = (number, fd)
            return True
        return False

    def release(self) -> None:
        if self.held is not None:
            os.close(self.held[1])  # closing the descriptor drops the lock
            self.held = None

    def busy(self) -> int:
        """Slots held now by any process (this one's included)."""
        if not self.dir.is_dir():
            return 0
        busy = 0
        for path in self.dir.glob("*.lock"):
            if self.held is not None and path.name == f"{self.held[0]}.lock":
                busy += 1
                continue
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    # A shared probe conflicts only with a holder's exclusive lock, not with other probes.
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    busy += 1
                finally:
                    os.close(fd)
        return busy


def thread_budget(slots: Slots, cores: int | None = None) -> Callable[[], int]:
    """cores // runs training now, at least 1: what a run may use without oversubscribing the CPU."""
    from explorer.engine.train import available_cores

    cores = cores or available_cores()
    return lambda: max(1, cores // max(1, slots.busy()))


# ------------------------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunSpec:
    """What to train: the network, the settings, the data, and the labels the record keeps."""

    arch: ArchConfig
    train: TrainConfig
    data: str
    name: str | None = None
    preset: str | None = None
    recipe: str | None = None
    resume_from: str | None = None
    group: str | None = None  # runs of one design with different seeds share it (store.groups)


def check_spec(spec: RunSpec, runs_dir: Path, data_dir: Path) -> dict | None:
    """Refuse what cannot run before anything is created; returns the resume state when resuming."""
    from explorer.engine.data import check_source
    from explorer.engine.device import resolve_device

    check_source(spec.data, data_dir)
    resolve_device(spec.train.device)
    settings.check_runs_dir(runs_dir)  # last: it creates the folder, and a refused spec must leave nothing behind
    return resume_state(spec.resume_from, runs_dir) if spec.resume_from else None


def resume_state(run_id: str, runs_dir: Path) -> dict:
    """Weights (raw, not averaged, when the run kept them), the average (with EMA), optimizer state and epochs
    done of `run_id`'s last checkpoint: a finished, stopped or interrupted run."""
    from explorer.store.checkpoint import load_checkpoint

    record = read_run(run_id, runs_dir)
    if not record.get("checkpoint"):
        raise RunError(f"run {run_id} has no checkpoint to resume from (it ended {record.get('status')} "
                       f"before keeping any weights); start it again instead.")
    loaded = load_checkpoint(run_dir(run_id, runs_dir) / record["checkpoint"])
    optimizer_state = loaded.optimizer_state or {}
    saved = loaded.model.state_dict()
    # With weight averaging the checkpoint holds the average and the optimizer state the raw weights.
    weights, averaged = (optimizer_state["model"], saved) if optimizer_state.get("model") else (saved, None)
    epochs_done = loaded.meta.get("epochs_done") or (record.get("summary") or {}).get("epochs_done") or 0
    return {"model": weights, "averaged": averaged, "optimizer": optimizer_state, "epochs_done": int(epochs_done)}


class RunProcess:
    """One run in this process: its folder, its slot, its signals, the training loop and its checkpoints."""

    def __init__(self, spec: RunSpec, runs_dir: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, run_id: str | None = None,
                 command: list[str] | None = None, on_event: Callable[[Event], None] | None = None):
        self.spec = spec
        self.runs_dir = Path(runs_dir) if runs_dir is not None else settings.default_runs_dir()
        self.data_dir = Path(data_dir) if data_dir is not None else settings.default_data_dir()
        self.run_id = check_run_id(run_id) if run_id else None
        self.command, self.on_event = command, on_event
        self.stop = threading.Event()
        self.signal: int | None = None
        self.history = History()
        self.slots = Slots(self.runs_dir, settings.max_runs())
        self.record: dict[str, Any] = {}
        self.dir: Path | None = None
        self.dataset = None
        self._held_end: Event | None = None

    # -- the whole run

    def run(self) -> dict:
        """Train to the end (or a stop signal); returns the final record. TrainingError when the run failed."""
        previous = self._catch_signals()
        try:
            init_state = check_spec(self.spec, self.runs_dir, self.data_dir)
            self._create_folder()
            self.writer = EventWriter(self.dir / EVENTS_NAME)
            try:
                self._run(init_state)
            finally:
                self.writer.close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.record

    def _run(self, init_state: dict | None) -> None:
        try:
            if not self._wait_for_slot():
                self._end(Stopped(time=time.time(), summary=self.history.summary), checkpoint=None)
                return
            try:
                self._train(init_state)
            finally:
                self.slots.release()
        except Exception as err:  # anything: the record must say why the run ended
            message = str(err) or type(err).__name__
            if not isinstance(err, ExplorerError):
                message = f"{type(err).__name__}: {message}"
            with contextlib.suppress(Exception):  # a full disk must not hide the first error
                self._end(Failed(time=time.time(), error=message), checkpoint=self.record.get("checkpoint"))
            raise TrainingError(f"run {self.run_id} failed: {message} (record in {self.dir})") from err

    def _catch_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may set handlers; stop() on the object still works

        def on_signal(signum, frame) -> None:
            self.signal = signum
            self.stop.set()

        return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}

    def _create_folder(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = self.run_id or new_run_id()
            try:
                (self.runs_dir / run_id).mkdir()
                break
            except FileExistsError:
                if self.run_id:
                    raise RunError(f"run {run_id} already exists in {self.runs_dir}; pick another id.") from None
        self.run_id, self.dir = run_id, self.runs_dir / run_id
        (self.dir / EVENTS_NAME).touch()  # before run.json: whoever sees the record finds its events file too
        self.record = self._initial_record()
        self._update()

    def _initial_record(self) -> dict:
        spec = self.spec
        try:
            cost = model_cost(spec.arch)
            params, flops = cost.params, cost.flops  # for 3x32x32; corrected once the data is loaded
        except ExplorerError:
            params = flops = None
        return {"format_version": RECORD_VERSION, "id": self.run_id,
                "name": spec.name or f"{preset_label(spec.preset, spec.arch)} on {spec.data}", "status": "queued",
                "created": _now(), "started": None, "finished": None, "preset": spec.preset, "recipe": spec.recipe,
                "arch": spec.arch.to_dict(), "train": spec.train.to_dict(), "data": canonical_source(spec.data),
                "data_fingerprint": None, "input_shape": None, "num_classes": None, "classes": None,
                "params": params, "flops": flops, "device": None, "error": None, "summary": self.history.summary,
                "checkpoint": None, "checkpoint_kind": None, "partial_epoch": None, "resumed_from": spec.resume_from,
                "group": spec.group, "owner": this_process(), "command": self.command or self._canonical_command()}

    def _canonical_command(self) -> list[str] | None:
        """The command that reproduces this run (as the Train page shows it), kept in the record."""
        try:
            return Runner(self.runs_dir, self.data_dir, python="python").command(self.spec)
        except ExplorerError:
            return None

    # -- events and the record

    def emit(self, event: Event) -> None:
        self.writer.write(event)
        self.history.apply(event)
        if self.on_event is not None:
            self.on_event(event)

    def _update(self, **fields: Any) -> None:
        self.record.update(json_safe(fields))
        atomic_write_json(self.dir / RECORD_NAME, self.record)

    def _wait_for_slot(self) -> bool:
        queued = False
        while not self.slots.acquire():
            if not queued:
                self.emit(Queued(time=time.time(), slots=self.slots.count))
                queued = True
            if self.stop.wait(POLL_SECONDS):
                return False
        if self.stop.is_set():
            return False
        self._update(status="running", started=_now())
        return True

    # -- training

    def _train(self, init_state: dict | None) -> None:
        from explorer.engine.train import train

        self.emit(Loading(time=time.time(), data=self.spec.data))
        self.dataset = dataset = self._load_dataset()
        self._update(data_fingerprint=dataset.fingerprint, input_shape=list(dataset.input_shape),
                     num_classes=dataset.num_classes, classes=list(dataset.classes), data_notes=list(dataset.notes))
        result = train(self.spec.arch, self.spec.train, dataset, self._on_engine_event, stop=self.stop,
                       init_state=init_state, thread_budget=thread_budget(self.slots),
                       on_epoch_end=self._save_epoch)
        checkpoint = self.record.get("checkpoint")  # a stop after an epoch: that epoch's, equal to its metrics
        if result.partial_epoch:
            # Stopped in this run's first epoch: the partial epoch's weights, evaluated at the stop.
            partial = result.partial_epoch | {k: result.metrics.get(k) for k in ("test_accuracy", "test_loss")}
            checkpoint = self._save(result.model, result.optimizer_state, result.epochs_done, result.metrics,
                                    partial=partial)
        end = self._held_end or (Finished if result.status == "finished" else Stopped)(time=time.time())
        end.time, end.summary = time.time(), self.history.summary
        self._end(end, checkpoint)

    def _load_dataset(self):
        """The data the run trains and evaluates on (a search trial overrides it with its validation split)."""
        from explorer.engine.data import load_dataset

        return load_dataset(self.spec.data, self.data_dir)

    def _on_engine_event(self, data: dict) -> None:
        event = parse_event(json_safe(data))
        if event.type in ("finished", "stopped", "failed"):
            self._held_end = event  # written by _end, after the last checkpoint, so "finished" means it is on disk
            return
        self.emit(event)
        if event.type == "started":
            self._update(device=event.device, params=event.params, flops=event.flops, threads=event.threads)

    def _save_epoch(self, snapshot) -> None:
        self._save(snapshot.model, snapshot.optimizer_state, snapshot.epochs_done, snapshot.metrics,
                   snapshot.normalization)

    def _save(self, model, optimizer_state: dict | None, epochs_done: int, metrics: dict,
              normalization: dict | None = None, partial: dict | None = None) -> str:
        """Save a checkpoint: the weights after `epochs_done` whole epochs, or (`partial`) after some batches of
        the next one; `metrics` are those weights' own evaluation."""
        from explorer.store.checkpoint import save_checkpoint

        dataset, history = self.dataset, self.history
        meta = {"classes": list(dataset.classes), "train": self.spec.train.to_dict(), "data": dataset.name,
                "normalization": normalization or self._normalization(),
                "metrics": json_safe(metrics | {"summary": history.summary}), "data_fingerprint": dataset.fingerprint,
                "run_id": self.run_id, "epochs_done": epochs_done, "resumed_from": self.spec.resume_from}
        if partial:
            meta["partial_epoch"] = json_safe(partial)
        path = save_checkpoint(self.dir, model, meta, optimizer_state)
        self.emit(Checkpoint(time=time.time(), path=path.name, epochs_done=epochs_done))
        self.writer.sync()
        self._update(checkpoint=path.name, summary=history.summary, partial_epoch=partial,
                     checkpoint_kind="partial epoch" if partial else "epoch")
        return path.name

    def _normalization(self) -> dict:
        from explorer.engine.augment import normalization

        mean, std = normalization(self.dataset, self.spec.train.normalization)
        return {"mean": mean, "std": std}

    def _end(self, event: Event, checkpoint: str | None) -> None:
        self.emit(event)
        self._update(status=event.type, finished=_now(), summary=self.history.summary, checkpoint=checkpoint,
                     error=getattr(event, "error", None))


# ------------------------------------------------------------------------------------------- the app's side


def _defaults(cls: type) -> dict[str, Any]:
    """A dataclass's field defaults as JSON values (fields without a default are left out)."""
    return {f.name: json_safe(f.default) for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _compact_arch(arch: ArchConfig) -> str:
    """The architecture as short JSON: only what differs from the defaults (the full dict when that would not
    round-trip), so the command shown on the Train page stays readable."""
    full = arch.to_dict()
    top, block = _defaults(ArchConfig), _defaults(ConvBlock)
    data = {"conv": [{k: v for k, v in b.items() if k == "out_channels" or k not in block or v != block[k]}
                     for b in full["conv"]]}
    data |= {k: v for k, v in full.items() if k != "conv" and (k not in top or v != top[k])}
    try:
        if ArchConfig.from_dict(data) == arch:
            return json.dumps(data, separators=(",", ":"))
    except ExplorerError:
        pass
    return json.dumps(full, separators=(",", ":"))


class Runner:
    """Starts run processes and reads their folders: what the app (and a test standing in for it) uses.

    Holds no state a restart would lose: which runs exist, which are active and what they did all come from
    the runs folder, so a new Runner (a restarted app server) sees the same runs and can stop them."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                 python: str | None = None):
        self.runs_dir = Path(runs_dir) if runs_dir is not None else settings.default_runs_dir()
        self.data_dir = Path(data_dir) if data_dir is not None else settings.default_data_dir()
        self.python = python or sys.executable
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # -- the command

    def command(self, spec: RunSpec) -> list[str]:
        """The `python -m explorer train ...` argv that runs `spec` (the same a user can type)."""
        from explorer.schema import to_cli_args

        argv = [self.python, "-m", "explorer", "train"]
        if spec.preset in PRESETS and PRESETS[spec.preset] == spec.arch:
            argv += ["--preset", spec.preset]
        else:
            argv += ["--arch", _compact_arch(spec.arch)]
        recipe = spec.recipe if spec.recipe in RECIPES else DEFAULT_RECIPE
        argv += ["--data", spec.data, "--recipe", recipe, *to_cli_args(spec.train, base=RECIPES[recipe])]
        argv += ["--name", spec.name] if spec.name else []
        argv += ["--resume", spec.resume_from] if spec.resume_from else []
        argv += ["--group", spec.group] if spec.group else []
        if self.runs_dir != Path(settings.DEFAULT_RUNS_DIR):
            argv += ["--runs-dir", str(self.runs_dir)]
        if self.data_dir != Path(settings.DEFAULT_DATA_DIR):
            argv += ["--data-dir", str(self.data_dir)]
        return argv

    def shell_command(self, spec: RunSpec) -> str:
        """The command, shell-quoted, to reproduce the run from a terminal."""
        return shlex.join(self.command(spec))

    # -- starting and stopping

    def start(self, spec: RunSpec) -> str:
        """Start `spec` in a new process; returns its run id once its run.json exists. ExplorerError (at once,
        nothing created) for a bad data source, a missing device or a run without a checkpoint to resume."""
        check_spec(spec, self.runs_dir, self.data_dir)
        run_id = new_run_id()
        log = logs_dir(self.runs_dir) / f"{run_id}.log"
        child = spawn_detached([*self.command(spec), "--run-id", run_id], log,
                               {settings.RUNS_DIR_ENV: str(self.runs_dir), settings.DATA_DIR_ENV: str(self.data_dir)})
        with self._lock:
            self._children[run_id] = child
        self._wait_until_recorded(run_id, child, log)
        return run_id

    def _wait_until_recorded(self, run_id: str, child: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.runs_dir / run_id / RECORD_NAME).is_file():
            if child.poll() is not None:
                raise RunError(f"the run could not start: {last_log_line(log) or f'exit code {child.returncode}'}")
            if time.monotonic() > deadline:
                child.kill()
                raise RunError(f"the run process wrote no record in {START_TIMEOUT:.0f} s; see {log}.")
            time.sleep(0.05)

    def stop(self, run_id: str) -> bool:
        """Ask a queued or running run to stop (SIGTERM to its process); False when it is not active."""
        record = self.status(run_id)
        if record["status"] not in ACTIVE_STATUSES:
            return False
        owner = record.get("owner") or {}
        if owner.get("host") not in (None, this_process()["host"]):
            raise RunError(f"run {run_id} trains on {owner['host']}; stop it there.")
        try:
            os.kill(owner["pid"], signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    # -- reading

    def _reap(self) -> None:
        # A child that ended is a zombie until waited for; poll() collects it so it reads as gone.
        with self._lock:
            for run_id, child in list(self._children.items()):
                if child.poll() is not None:
                    del self._children[run_id]

    def status(self, run_id: str) -> dict:
        """The run record, with its effective status; RunError when there is no such run."""
        self._reap()
        return read_run(run_id, self.runs_dir)

    def reader(self, run_id: str) -> EventReader:
        """An incremental reader of the run's events (keep it to read only what is new)."""
        return EventReader(run_dir(run_id, self.runs_dir) / EVENTS_NAME)

    def active(self) -> list[str]:
        """Runs queued or training now, started by any process."""
        from explorer.store.runs import active_runs

        self._reap()
        return active_runs(self.runs_dir)

    def wait(self, run_id: str, timeout: float | None = None) -> dict:
        """Poll until the run is no longer active (or `timeout` seconds pass); returns its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.status(run_id)
            if record["status"] not in ACTIVE_STATUSES or (deadline is not None and time.monotonic() > deadline):
                return record
            time.sleep(0.1)

    def runs(self) -> list[dict]:
        from explorer.store.runs import list_runs

        return list_runs(self.runs_dir)


__all__ = ["Runner", "RunProcess", "RunSpec", "Slots", "thread_budget", "new_run_id", "check_spec",
           "resume_state", "SLOTS_DIR", "LOGS_DIR"]  # LOGS_DIR: defined in store/process.py, re-exported
