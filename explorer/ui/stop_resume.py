"""Stop and resume, on the Train page beside the watched run (the Checkpoints page's resume uses the same spec).

What a stop keeps is said before the click (explorer.engine.train's rule: the last whole epoch of this run; in its
first epoch the partial epoch, evaluated at the stop; before any batch, nothing); a Stop that arrives after the
run ended says so; a run that has trained every step but not yet evaluated and saved reads "finishing", never
"step 48 of 48 … running"; Resume starts a new run with `resumed_from` = the stopped run (its curves continue
the parent's in Runs), as the Checkpoints page does.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import streamlit as st

from explorer.arch.config import ArchConfig
from explorer.engine.config import TrainConfig
from explorer.errors import ExplorerError
from explorer.store.events import ENDED_STATUSES, History
from explorer.store.runner import Runner, RunSpec
from explorer.ui import widgets

STOP_MESSAGE = "train.stop_message"
STOPPING = "train.stopping"  # the run id this session asked to stop (shown "stopping" until it ends)
RESUME_EPOCHS = "train.resume_epochs"
RESUME_MESSAGE = "train.resume_message"


# ----------------------------------------------------------------------------------------------- stopping


def stop_note(history: History) -> str:
    """What Stop would keep now, for a run in progress (the engine's rule, in words)."""
    if history.epoch_events:
        last = history.epoch_events[-1].epoch
        return (f"Stop keeps the weights after epoch {last}, the last whole one, with its accuracy; the batches "
                f"of epoch {last + 1} run so far are dropped.")
    if history.step:
        return ("Stop now keeps the partial first epoch: the weights after the batches run so far, evaluated at "
                "the stop and marked \"partial epoch\"; resuming trains that epoch again from them.")
    return "Stop now keeps nothing but the run's record: no batch has trained yet."


def request_stop(runner: Runner, run_id: str, state: MutableMapping[str, Any]) -> None:
    """Stop `run_id`; when it had already ended (the page was drawn before it did), say so instead."""
    state.pop(STOP_MESSAGE, None)
    if runner.stop(run_id):
        state[STOPPING] = run_id
        return
    status = runner.status(run_id).get("status", "unknown")
    state[STOP_MESSAGE] = (f"Run {run_id} had already ended ({status}) when Stop was clicked: there was nothing "
                           "to stop, and it keeps what its status says.")


def shown_status(history: History, stopping: bool) -> str:
    """The status word of the headline: "stopping" once this session asked, "finishing" while the last
    epoch is evaluated and saved after every step has run."""
    if history.ended or history.status != "running":
        return history.status
    if stopping:
        return "stopping"
    if history.total_steps and history.step >= history.total_steps:
        return "finishing"
    return history.status


def stopped_message(record: dict, history: History) -> str:
    """What a stopped run really keeps (its record's checkpoint and checkpoint_kind)."""
    partial = record.get("partial_epoch") or {}
    if record.get("checkpoint") and record.get("format_version", 1) < 2:
        return ("The run was stopped; its checkpoint holds the weights when it stopped (a run recorded before "
                "format 2: they may include part of the next epoch). Resume below continues it.")
    if record.get("checkpoint") and (record.get("checkpoint_kind") == "partial epoch" or partial):
        accuracy = partial.get("test_accuracy")
        scored = f" (test accuracy {accuracy:.1%})" if isinstance(accuracy, (int, float)) else ""
        return (f"The run was stopped in epoch {partial.get('epoch', '?')} after {partial.get('batches', '?')} of "
                f"{partial.get('steps_per_epoch', '?')} batches: its checkpoint holds that partial epoch, "
                f"evaluated at the stop{scored}. Resume below trains epoch {partial.get('epoch', '?')} again from "
                "these weights.")
    if record.get("checkpoint"):
        done = history.epochs_done
        return (f"The run was stopped; its checkpoint holds the weights after epoch {done}, the last whole one, "
                f"with the accuracy shown (the epoch in progress was dropped). Resume below continues at epoch "
                f"{done + 1}.")
    if history.step:
        return ("The run was stopped before its first epoch ended and kept no checkpoint: its record and logged "
                "losses are kept (see the Runs page), but there are no weights to resume; start it again instead.")
    return ("The run was stopped before any training batch: its record is kept, but there are no weights to "
            "keep or resume; start it again instead.")


# ----------------------------------------------------------------------------------------------- resuming


def resume_spec(record: dict, epochs: int) -> RunSpec:
    """The run that continues `record`'s last checkpoint for `epochs` more epochs, in its lineage."""
    train = TrainConfig.from_dict(record.get("train") or {}).replace(epochs=epochs)
    name = str(record.get("name") or record.get("preset") or record["id"])
    return RunSpec(ArchConfig.from_dict(record["arch"]), train, str(record.get("data") or "synthetic"),
                   name=f"{name} +{epochs}", preset=record.get("preset"), recipe=record.get("recipe"),
                   resume_from=record["id"])


def start_resume(runner: Runner, record: dict, epochs: int, attach: Callable[[str], None], where: str = "") -> str:
    """Start the resumed run and watch it (`attach`); the message to show (starts with "Cannot" on failure),
    `where` saying where to follow it."""
    try:
        spec = resume_spec(record, epochs)
        with st.spinner("Starting the run process…"):
            new_id = runner.start(spec)
    except ExplorerError as err:
        return f"Cannot resume: {err}"
    attach(new_id)
    return (f"Started run {new_id}{where}; in Runs its curves continue those of {record['id']}.")


def resume_controls(runner: Runner, record: dict, attach: Callable[[str], None]) -> None:
    """"More epochs" and Resume beside an ended run that kept a checkpoint."""
    if record.get("status") not in ENDED_STATUSES or not record.get("checkpoint"):
        return
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    epochs = widgets.number_input(widgets.number_spec("More epochs", 1, 1000), RESUME_EPOCHS, left, value=2)
    if right.button(f"Resume training for {epochs} more epochs", key="train.resume"):
        st.session_state[RESUME_MESSAGE] = start_resume(runner, record, int(epochs), attach)
        st.rerun()  # draw the new run, polling


def resume_message() -> None:
    message = st.session_state.pop(RESUME_MESSAGE, None)
    if message:
        (st.error if message.startswith("Cannot") else st.success)(message)


__all__ = ["stop_note", "request_stop", "shown_status", "stopped_message", "resume_spec", "start_resume",
           "resume_controls", "resume_message"]
