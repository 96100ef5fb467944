"""The run-record events (one typed class per kind), the one list of run statuses, and the one fold.

A run writes `events.jsonl`: one JSON object per line, `{"type": ..., "time": <unix seconds>, ...fields}`
(docs/run-record.md lists every field). The training loop (explorer.engine.train) emits plain dicts, since the
engine sits below the store; `parse_event` turns each into its class here, which is also where a line is
checked. `fold` turns events into a `History` (curves, per-class accuracy, status, summary, problems): the
charts, the runs table (through the summary the runner writes into run.json), the CLI's progress and final line,
and the runner all read runs through it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from explorer.atomic import json_safe
from explorer.errors import ExplorerError

# ------------------------------------------------------------------------------------------- statuses

# Every status a run can show, in the order a run goes through them, with what it means to a user.
STATUSES: dict[str, str] = {
    "queued": "waiting for a training slot (EXPLORER_MAX_RUNS runs train at once)",
    "running": "loading its data or training",
    "finished": "trained every epoch; its checkpoint is the final weights",
    "stopped": "stopped on request; its checkpoint holds the last whole epoch's weights (a partial first epoch, "
               "evaluated at the stop, when it stopped before one ended)",
    "failed": "ended with an error (the record says why)",
    "interrupted": "its process ended without a word (killed, crash, machine restart); the last epoch's "
                   "checkpoint is kept and the run can be resumed",
    "unreadable": "its run.json cannot be read (see the message); other runs are not affected",
}
ACTIVE_STATUSES = ("queued", "running")
ENDED_STATUSES = ("finished", "stopped", "failed", "interrupted")


class RecordError(ExplorerError):
    """A run record (run.json or an events.jsonl line) this version of explorer cannot read."""


# ------------------------------------------------------------------------------------------- events


@functools.cache
def _field_names(cls: type) -> tuple[frozenset[str], tuple[str, ...]]:
    """(every field name, the required ones) of an event class; cached: listings parse thousands of lines."""
    fields = dataclasses.fields(cls)
    required = tuple(f.name for f in fields
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return frozenset(f.name for f in fields), required


@dataclass(kw_only=True)
class Event:
    """Base of every event: its kind (`type`, a class constant) and when it happened (`time`)."""

    type: ClassVar[str] = ""
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type} | json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        names, required = _field_names(cls)
        missing = [name for name in required if data.get(name) is None and name != "time"]
        if missing or not isinstance(data.get("time"), (int, float)):
            raise RecordError(f"a {cls.type!r} event lacks {', '.join(missing) or 'its time'}")
        # Fields this version does not know are ignored: a newer writer of the same format version may add some.
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(kw_only=True)
class Queued(Event):
    """The run waits for one of `slots` training slots."""

    type: ClassVar[str] = "queued"
    slots: int | None = None


@dataclass(kw_only=True)
class Loading(Event):
    """A slot is taken; the data is being loaded (decoding an image folder can take a while)."""

    type: ClassVar[str] = "loading"
    data: str | None = None


@dataclass(kw_only=True)
class Started(Event):
    """The model is built and the data loaded: what is being trained, on what, for how long."""

    type: ClassVar[str] = "started"
    config: dict = field(default_factory=dict)  # {"arch": ArchConfig.to_dict(), "train": TrainConfig.to_dict()}
    params: int | None = None
    flops: int | None = None
    device: str | None = None
    input_shape: list[int] | None = None
    classes: list[str] = field(default_factory=list)
    total_steps: int = 0
    steps_per_epoch: int | None = None
    epochs: int | None = None
    first_epoch: int = 1
    data: str | None = None
    train_images: int | None = None
    test_images: int | None = None
    normalization: dict | None = None
    amp: str | None = None
    threads: int | None = None


@dataclass(kw_only=True)
class Baseline(Event):
    """The random-init evaluation, before any training step."""

    type: ClassVar[str] = "baseline"
    test_accuracy: float
    test_loss: float | None = None
    per_class: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class Batch(Event):
    """Mean training loss of the batches since the previous batch event (every `log_every` batches)."""

    type: ClassVar[str] = "batch"
    step: int
    loss: float | None = None  # None: not finite (the run fails right after)
    epoch: int | None = None
    batch: int | None = None
    lr: float | None = None
    threads: int | None = None


@dataclass(kw_only=True)
class Epoch(Event):
    """One epoch trained and evaluated."""

    type: ClassVar[str] = "epoch"
    epoch: int
    train_loss: float | None = None
    train_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    per_class: dict = field(default_factory=dict)
    seconds: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    images_per_second: float | None = None
    lr: float | None = None


@dataclass(kw_only=True)
class PartialEpoch(Event):
    """Stopped before the run's first epoch ended: the weights after `batches` of `steps_per_epoch` batches of
    `epoch`, evaluated at the stop (what the run's "partial epoch" checkpoint holds)."""

    type: ClassVar[str] = "partial_epoch"
    epoch: int
    batches: int
    steps_per_epoch: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    per_class: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class Checkpoint(Event):
    """Weights (and optimizer state) saved atomically after `epochs_done` epochs."""

    type: ClassVar[str] = "checkpoint"
    path: str
    epochs_done: int | None = None


@dataclass(kw_only=True)
class Finished(Event):
    type: ClassVar[str] = "finished"
    summary: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class Stopped(Event):
    type: ClassVar[str] = "stopped"
    summary: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class Failed(Event):
    type: ClassVar[str] = "failed"
    error: str


EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in (
    Queued, Loading, Started, Baseline, Batch, Epoch, PartialEpoch, Checkpoint, Finished, Stopped, Failed)}


def parse_event(data: Any) -> Event:
    """The typed event a JSON object describes; RecordError says what is wrong with it."""
    if isinstance(data, Event):
        return data
    if not isinstance(data, dict):
        raise RecordError(f"an event must be a JSON object, got {type(data).__name__}")
    cls = EVENT_TYPES.get(data.get("type"))
    if cls is None:
        raise RecordError(f"unknown event type {data.get('type')!r}")
    try:
        return cls.from_dict(data)
    except TypeError as err:
        raise RecordError(f"a {cls.type!r} event is malformed ({err})") from None


def parse_line(line: str) -> Event:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise RecordError(f"not JSON ({err.msg} at column {err.colno})") from None
    return parse_event(data)


# ------------------------------------------------------------------------------------------- reading the log


class EventReader:
    """Reads events.jsonl incrementally: each `read()` returns only what was appended since the last one.

    A last line without its newline is a line still being written: it is left for the next read, silently.
    A complete line that does not parse becomes a problem ("events.jsonl line N: ..."); reading goes on.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.offset = 0
        self.lines = 0

    def read(self) -> tuple[list[Event], list[str]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return [], []
        except OSError as err:
            return [], [f"events.jsonl cannot be read ({err.strerror})"]
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        events, problems = [], []
        for raw in complete.splitlines():
            self.lines += 1
            try:
                events.append(parse_line(raw.decode("utf-8")))
            except (RecordError, UnicodeDecodeError) as err:
                problems.append(f"events.jsonl line {self.lines}: {err}; the line is skipped")
        return events, problems


def _last_byte(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


class EventWriter:
    """Appends events to events.jsonl, one line each, flushed at once (a reader sees whole lines only)."""

    def __init__(self, path: str | os.PathLike):
        self.handle = open(path, "a", encoding="utf-8")  # closed in close()
        if self.handle.tell() > 0 and _last_byte(path) != b"\n":
            self.write_raw("\n")  # a line torn by a crash stays torn: the next event starts on a line of its own

    def write_raw(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()

    def write(self, event: Event) -> None:
        self.handle.write(json.dumps(event.to_dict()) + "\n")
        self.handle.flush()

    def sync(self) -> None:
        """Force the lines to disk (at epoch ends: cheap there, and what a power cut would otherwise lose)."""
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


# ------------------------------------------------------------------------------------------- the fold


@dataclass
class History:
    """What a run's events add up to: status, curves, per-class accuracy, summary and any problems."""

    status: str = "queued"
    error: str | None = None
    classes: list[str] = field(default_factory=list)
    total_steps: int = 0
    first_epoch: int = 1
    epochs_planned: int | None = None  # epochs this run trains (after a resume: the new ones only)
    started_time: float | None = None
    last_time: float | None = None
    last_step_time: float | None = None
    end_time: float | None = None
    device: str | None = None
    params: int | None = None
    flops: int | None = None
    threads: int | None = None
    steps: list[int] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)
    epoch_events: list[Epoch] = field(default_factory=list)
    epoch_end_steps: list[int] = field(default_factory=list)
    baseline: Baseline | None = None
    checkpoint: str | None = None
    checkpoint_epochs: int | None = None
    partial_epoch: PartialEpoch | None = None  # stopped in the first epoch: the partial epoch kept
    problems: list[str] = field(default_factory=list)

    # -- applying events

    def apply(self, event: Event) -> None:
        self.last_time = event.time
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _on_queued(self, event: Queued) -> None:
        self.status = "queued"

    def _on_loading(self, event: Loading) -> None:
        self.status = "running"

    def _on_started(self, event: Started) -> None:
        self.status = "running"
        self.started_time = event.time
        self.classes = list(event.classes)
        self.total_steps, self.first_epoch = int(event.total_steps or 0), int(event.first_epoch or 1)
        self.epochs_planned = event.epochs
        self.device, self.params, self.flops, self.threads = event.device, event.params, event.flops, event.threads

    def _on_baseline(self, event: Baseline) -> None:
        self.baseline = event

    def _on_batch(self, event: Batch) -> None:
        self.last_step_time = event.time
        self.steps.append(int(event.step))
        self.losses.append(event.loss)
        self.threads = event.threads or self.threads

    def _on_epoch(self, event: Epoch) -> None:
        # A repeated epoch number (written twice by a crash-and-retry) replaces the earlier one and what followed.
        keep = sum(1 for e in self.epoch_events if e.epoch < event.epoch)
        del self.epoch_events[keep:], self.epoch_end_steps[keep:]
        self.epoch_events.append(event)
        self.epoch_end_steps.append(self.step)

    def _on_partial_epoch(self, event: PartialEpoch) -> None:
        self.partial_epoch = event

    def _on_checkpoint(self, event: Checkpoint) -> None:
        self.checkpoint, self.checkpoint_epochs = event.path, event.epochs_done

    def _end(self, event: Event) -> None:
        self.status, self.end_time = event.type, event.time

    def _on_finished(self, event: Finished) -> None:
        self._end(event)

    def _on_stopped(self, event: Stopped) -> None:
        self._end(event)

    def _on_failed(self, event: Failed) -> None:
        self._end(event)
        self.error = event.error

    # -- what the charts, tables and the CLI read

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def step(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def epochs(self) -> list[int]:
        return [e.epoch for e in self.epoch_events]

    def _series(self, name: str) -> list:
        return [getattr(e, name) for e in self.epoch_events]

    @property
    def train_loss(self) -> list[float | None]:
        return self._series("train_loss")

    @property
    def train_accuracy(self) -> list[float | None]:
        return self._series("train_accuracy")

    @property
    def test_loss(self) -> list[float | None]:
        return self._series("test_loss")

    @property
    def test_accuracy(self) -> list[float | None]:
        return self._series("test_accuracy")

    @property
    def seconds(self) -> list[float | None]:
        return self._series("seconds")

    @property
    def images_per_second(self) -> list[float | None]:
        return self._series("images_per_second")

    @property
    def per_class(self) -> dict[str, float]:
        return dict(self.epoch_events[-1].per_class) if self.epoch_events else {}

    @property
    def baseline_accuracy(self) -> float | None:
        return self.baseline.test_accuracy if self.baseline else None

    @property
    def baseline_per_class(self) -> dict[str, float]:
        return dict(self.baseline.per_class) if self.baseline else {}

    @property
    def epochs_done(self) -> int:
        """Epochs the weights have seen (a resumed run counts its parent's too)."""
        return self.epochs[-1] if self.epochs else self.first_epoch - 1

    @property
    def summary(self) -> dict[str, Any]:
        """The headline numbers the runs table and run.json show."""
        accuracies = [a for a in self.test_accuracy if a is not None]
        end = self.end_time or self.last_time
        wall = end - self.started_time if end is not None and self.started_time is not None else None
        return {"final_test_accuracy": accuracies[-1] if accuracies else None,
                "best_test_accuracy": max(accuracies) if accuracies else None,
                "epochs_done": self.epochs_done, "wall_seconds": wall,
                "images_per_second": self._throughput(),
                "baseline_test_accuracy": self.baseline_accuracy}

    def _throughput(self) -> float | None:
        """Training images per second over every epoch (time-weighted: total images / total training time)."""
        pairs = [(e.images_per_second, e.train_seconds) for e in self.epoch_events if e.images_per_second]
        if not pairs:
            return None
        if all(seconds for _, seconds in pairs):
            return sum(ips * s for ips, s in pairs) / sum(s for _, s in pairs)
        return pairs[-1][0]

    def seconds_left(self) -> float | None:
        """Seconds of training and evaluation left, as of the last logged step: the training rate so far times the
        steps left, plus one evaluation per epoch left (timed by the epochs done, else by the random-init one).
        Measured at the last step rather than now, so it does not grow between two updates."""
        if not self.step or self.last_step_time is None or self.baseline is None or self.started_time is None:
            return None
        eval_times = [e.eval_seconds for e in self.epoch_events if e.eval_seconds is not None]
        eval_seconds = sum(eval_times) / len(eval_times) if eval_times else self.baseline.time - self.started_time
        training = self.last_step_time - self.baseline.time - sum(eval_times)
        evals_left = max(0, (self.epochs_planned or 0) - len(self.epoch_events))
        return max(0.0, training / self.step * (self.total_steps - self.step) + evals_left * eval_seconds)

    def curve_rows(self) -> list[dict[str, Any]]:
        """One row per epoch: epoch, train/test loss and accuracy, seconds, lr (the curves table and CSV)."""
        return [{"epoch": e.epoch, "train_loss": e.train_loss, "train_accuracy": e.train_accuracy,
                 "test_loss": e.test_loss, "test_accuracy": e.test_accuracy, "seconds": e.seconds, "lr": e.lr}
                for e in self.epoch_events]

    def latest_metrics(self) -> dict[str, Any]:
        """The last evaluation of the weights kept: the last epoch's, else a partial first epoch's (a stop), else
        the random-init baseline's."""
        if self.epoch_events or self.partial_epoch:
            last = self.epoch_events[-1] if self.epoch_events else self.partial_epoch
            return {"test_loss": last.test_loss, "test_accuracy": last.test_accuracy, "per_class": last.per_class,
                    "train_loss": last.train_loss, "train_accuracy": last.train_accuracy}
        if self.baseline:
            return {"test_loss": self.baseline.test_loss, "test_accuracy": self.baseline.test_accuracy,
                    "per_class": self.baseline.per_class, "train_loss": None, "train_accuracy": None}
        return {"test_loss": None, "test_accuracy": None, "per_class": {}, "train_loss": None,
                "train_accuracy": None}


def fold(events: Iterable[Event | dict], history: History | None = None) -> History:
    """Add `events` to `history` (a new one when None) and return it: pass the previous history to add only
    new events. Dicts are parsed; one that does not parse becomes a problem and is skipped."""
    history = history if history is not None else History()
    for raw in events:
        try:
            event = parse_event(raw)
        except RecordError as err:
            history.problems.append(f"event skipped: {err}")
            continue
        history.apply(event)
    return history


__all__ = ["STATUSES", "ACTIVE_STATUSES", "ENDED_STATUSES", "RecordError", "Event", "Queued", "Loading",
           "Started", "Baseline", "Batch", "Epoch", "PartialEpoch", "Checkpoint", "Finished", "Stopped", "Failed",
           "EVENT_TYPES",
           "parse_event", "parse_line", "EventReader", "EventWriter", "History", "fold"]
