"""The Train tab: dataset, recipe and training widgets, time estimate, Start/Stop, live progress and charts.

Runs execute in the JobManager's threads (explorer/jobs.py), never in the script run: a widget click or a
tab switch reruns the script but cannot touch the run. The manager comes from st.cache_resource, so every
session shares it; the watched run id lives in st.session_state and in the URL (?run=ID), so a reloaded
page re-attaches. The live area is an st.fragment that polls the run's events about once a second and
stops polling (run_every=None) once the run has ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from typing import Any

import streamlit as st

from explorer.arch.cost import model_cost
from explorer.engine.config import (
    AUGMENTATIONS,
    DEVICES,
    LOSSES,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
)
from explorer.engine.data import available_sources, load_dataset
from explorer.engine.dataset import Dataset
from explorer.engine.train import estimate_epoch_seconds
from explorer.errors import ConfigError, ExplorerError
from explorer.store import runs
from explorer.store.jobs import JobManager
from explorer.ui import charts
from explorer.ui import state as arch_keys
from explorer.ui import train_state as keys
from explorer.ui.format import duration
from explorer.ui.state import Selection

RUN_ID = "train.run_id"
HISTORY = "train.history"
ESTIMATE = "train.estimate"
DATA_ERROR = "train.data_error"
START_ERROR = "train.start_error"
POLL_SECONDS = 1.0
DATA_DIR = "data"

OPTIMIZER_LABELS = {"sgd": "SGD", "nesterov": "SGD + Nesterov", "adam": "Adam", "adamw": "AdamW",
                    "adagrad": "Adagrad"}
SCHEDULE_LABELS = {"constant": "constant", "step": "step", "cosine": "cosine", "onecycle": "one-cycle"}
LOSS_LABELS = {"cross_entropy": "cross-entropy", "nll": "NLL (log-softmax)"}
NORMALIZATION_LABELS = {"dataset": "per-channel (from the data)", "half": "0.5 / 0.5 (the study's)"}
# Material icons rather than emoji: they render without an emoji font (headless Chromium has none).
STATUS_ICONS = {"queued": ":material/hourglass_top:", "running": ":material/autorenew:",
                "finished": ":material/check_circle:", "stopped": ":material/stop_circle:",
                "failed": ":material/error:"}


# --- shared objects ----------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def job_manager(runs_dir: str) -> JobManager:
    """One JobManager per runs directory, shared by every session of this server (it locks itself)."""
    return JobManager(runs_dir)


def current_manager() -> JobManager:
    return job_manager(str(runs.default_runs_dir()))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def cached_dataset(source: str) -> Dataset:
    return load_dataset(source, DATA_DIR)


@st.cache_data(ttl=30, show_spinner=False)
def cached_sources() -> list[dict]:
    """What can be picked; a disk scan, refreshed every 30 s rather than on every rerun."""
    return available_sources(DATA_DIR)


# --- callbacks ---------------------------------------------------------------------------------------------


def _on_recipe() -> None:
    keys.load_recipe(st.session_state, st.session_state[keys.RECIPE])


def _on_edit() -> None:
    keys.mark_custom(st.session_state)


def _on_source() -> None:
    """A dataset choice sets the network's input shape and class count (shown in the Architecture tab)."""
    state = st.session_state
    state.pop(DATA_ERROR, None)
    source = keys.source_from_values(state)
    if source == "folder:":
        return
    try:
        dataset = cached_dataset(source)
    except ExplorerError as err:
        state[DATA_ERROR] = str(err)
        return
    arch_keys.set_input(state, dataset.input_shape, dataset.num_classes)


# --- the settings ------------------------------------------------------------------------------------------


def _dataset_picker() -> None:
    sources = cached_sources()
    usable = [s for s in sources if s["available"]]
    labels = {s["name"]: s["label"] for s in usable} | {keys.FOLDER_CHOICE: "Image folder (enter a path)…"}
    if st.session_state[keys.SOURCE] not in labels:
        st.session_state[keys.SOURCE] = "synthetic"
    st.selectbox("Dataset", list(labels), key=keys.SOURCE, format_func=labels.get, on_change=_on_source,
                 help="Picking a dataset sets the input shape and number of classes of the network.")
    if st.session_state[keys.SOURCE] == "synthetic":
        st.number_input("Synthetic training images (a quarter as many test images)", 20, 200_000, step=500,
                        key=keys.SYNTHETIC_SIZE, help="Fewer images: quicker runs to try things out.")
    if st.session_state[keys.SOURCE] == keys.FOLDER_CHOICE:
        st.text_input("Folder with train/<class>/ (and test/<class>/) images", key=keys.FOLDER,
                      on_change=_on_source, placeholder="/path/to/images")
    missing = [f"{s['label']}: {s['why']}" for s in sources if not s["available"]]
    if missing:
        st.caption("Not available: " + "; ".join(missing))
    if DATA_ERROR in st.session_state:
        st.error(st.session_state[DATA_ERROR])


def _optimizer_widgets() -> None:
    k = keys.key
    a, b, c, d = st.columns(4)
    a.number_input("Epochs", 1, 1000, step=1, key=k("epochs"), on_change=_on_edit)
    b.number_input("Batch size", 1, 65536, step=8, key=k("batch_size"), on_change=_on_edit)
    c.selectbox("Optimizer", OPTIMIZERS, key=k("optimizer"), format_func=OPTIMIZER_LABELS.get, on_change=_on_edit)
    d.number_input("Learning rate", 1e-8, 100.0, step=0.001, format="%g", key=k("lr"), on_change=_on_edit)
    a, b, c, d = st.columns(4)
    a.number_input("Momentum", 0.0, 0.999, step=0.05, format="%g", key=k("momentum"), on_change=_on_edit)
    b.number_input("Weight decay", 0.0, 1.0, step=1e-4, format="%g", key=k("weight_decay"), on_change=_on_edit)
    c.selectbox("LR schedule", SCHEDULES, key=k("schedule"), format_func=SCHEDULE_LABELS.get, on_change=_on_edit)
    d.number_input("Warm-up epochs", 0.0, 1000.0, step=0.5, format="%g", key=k("warmup_epochs"),
                   on_change=_on_edit)


def _regularization_widgets() -> None:
    k = keys.key
    a, b, c, d = st.columns(4)
    a.selectbox("Loss", LOSSES, key=k("loss"), format_func=LOSS_LABELS.get, on_change=_on_edit)
    b.number_input("Label smoothing", 0.0, 0.5, step=0.05, format="%g", key=k("label_smoothing"),
                   on_change=_on_edit)
    c.pills("Augmentation", AUGMENTATIONS, selection_mode="multi", key=k("augment"), on_change=_on_edit,
            format_func={"flip": "horizontal flip", "crop": "random crop"}.get)
    d.selectbox("Normalization", NORMALIZATIONS, key=k("normalization"), format_func=NORMALIZATION_LABELS.get,
                on_change=_on_edit)
    a, b, c, d = st.columns(4)
    a.number_input("Weight EMA (0 = off)", 0.0, 0.99999, step=0.001, format="%g", key=k("ema"),
                   on_change=_on_edit, help="Evaluate an exponential moving average of the weights, e.g. 0.999.")
    b.number_input("Seed", 0, 2**31 - 1, step=1, key=k("seed"), on_change=_on_edit)
    c.segmented_control("Device", DEVICES, key=k("device"), required=True, on_change=_on_edit,
                        help="auto picks CUDA when there is a GPU, else the CPU.")
    d.number_input("Log loss every N batches", 1, 100000, step=10, key=k("log_every"), on_change=_on_edit)
    a, b = st.columns([1, 3])
    a.segmented_control("Precision", PRECISIONS, key=k("precision"), required=True, on_change=_on_edit,
                        help="Autocast of the training step. auto: bf16 where the chip has bf16 instructions "
                             "(CUDA, recent CPUs: 1.5-1.9x faster), else fp32. Evaluation on the CPU is fp32.")
    b.checkbox("Flip test-time augmentation (average the prediction of the image and its mirror)",
                key=k("tta_flip"), on_change=_on_edit)


def _settings() -> None:
    left, middle, right = st.columns([2, 1, 1])
    with left:
        _dataset_picker()
    middle.selectbox("Recipe", keys.recipe_options(), key=keys.RECIPE, on_change=_on_recipe,
                     help="study: SGD lr 0.001, batch 8, as the study; fast/best: one-cycle, label smoothing, "
                          "flip + crop, flip TTA. Any edit turns this into 'custom'.")
    right.text_input("Run name (optional)", key=keys.NAME, max_chars=80)
    with st.expander("Training settings", expanded=True):
        _optimizer_widgets()
        _regularization_widgets()


# --- estimate and time budget -------------------------------------------------------------------------------


def _estimate_key(selection: Selection, train_json: str, source: str) -> str:
    return f"{selection.cfg.to_json()}|{train_json}|{source}"


def _run_estimate(selection: Selection, train_cfg: TrainConfig, source: str) -> None:
    try:
        dataset = cached_dataset(source)
        with st.spinner("Timing a few training batches…"):
            seconds = estimate_epoch_seconds(selection.cfg, train_cfg, dataset, batches=5)
    except ExplorerError as err:
        st.session_state.pop(ESTIMATE, None)
        st.error(str(err))
        return
    key = _estimate_key(selection, json_of(train_cfg), source)
    st.session_state[ESTIMATE] = {"key": key, "seconds": float(seconds)}


def json_of(train_cfg: TrainConfig) -> str:
    return json.dumps(train_cfg.to_dict(), sort_keys=True)


def time_budget_message(seconds_per_epoch: float, epochs: int, budget_minutes: float) -> tuple[str, bool]:
    """The estimate line and whether the chosen epochs overrun the time budget (pure, for tests)."""
    budget_s = 60 * budget_minutes
    fit = keys.epochs_that_fit(seconds_per_epoch, budget_s)
    total = seconds_per_epoch * epochs
    text = (f"≈ {seconds_per_epoch:.2f} s per epoch here: {epochs} epochs ≈ {duration(total)}; "
            f"{fit} epochs fit in {duration(budget_s)}.")
    return text, total > budget_s


def _estimate_section(selection: Selection, train_cfg: TrainConfig | None, source: str) -> None:
    left, right = st.columns([1, 3])
    left.number_input("Time budget (minutes)", 0.1, 10_000.0, step=1.0, format="%g", key=keys.TIME_BUDGET)
    with right:
        st.write("")  # align the button with the input box
        clicked = st.button("Estimate seconds per epoch", key="train.estimate_button",
                            disabled=selection.cfg is None or train_cfg is None)
    if clicked:
        _run_estimate(selection, train_cfg, source)
    estimate = st.session_state.get(ESTIMATE)
    if not estimate or train_cfg is None or selection.cfg is None:
        return
    if estimate["key"] != _estimate_key(selection, json_of(train_cfg), source):
        st.caption("The settings changed since the last estimate: estimate again.")
        return
    text, over = time_budget_message(estimate["seconds"], train_cfg.epochs, st.session_state[keys.TIME_BUDGET])
    (st.warning if over else st.info)(text + (" The chosen epochs do not fit the time budget." if over else ""))


# --- start / stop -------------------------------------------------------------------------------------------


def attached_run() -> str | None:
    """The run this session watches: session state first, else ?run=ID from the URL (after a reload)."""
    if RUN_ID not in st.session_state and st.query_params.get("run"):
        st.session_state[RUN_ID] = st.query_params["run"]
    return st.session_state.get(RUN_ID)


def attach(run_id: str) -> None:
    """Watch `run_id` in the Train tab (also after a reload: the id goes into the URL)."""
    st.session_state[RUN_ID] = run_id
    st.session_state.pop(HISTORY, None)
    st.query_params["run"] = run_id


def _detach() -> None:
    st.session_state.pop(RUN_ID, None)
    st.session_state.pop(HISTORY, None)
    if "run" in st.query_params:
        del st.query_params["run"]


def start_run(state: MutableMapping[str, Any]) -> str:
    """Start the run the widgets describe (read from session state at click time, so an edit committed in
    the same rerun as the click is not missed); ExplorerError when it cannot start."""
    arch = arch_keys.arch_from_values(state)
    preset = state[arch_keys.PRESET] if state[arch_keys.PRESET] != arch_keys.CUSTOM else None
    recipe = state[keys.RECIPE] if state[keys.RECIPE] != keys.CUSTOM else None
    run_id = current_manager().start(arch, keys.train_from_values(state), keys.source_from_values(state),
                                     name=state[keys.NAME].strip() or None, preset=preset, recipe=recipe)
    attach(run_id)
    return run_id


def _on_start() -> None:
    # A callback runs before the script, so the very run it triggers already draws the new run, polling.
    try:
        start_run(st.session_state)
        st.session_state.pop(START_ERROR, None)
    except ExplorerError as err:
        st.session_state[START_ERROR] = str(err)


def _on_stop(run_id: str) -> None:
    current_manager().stop(run_id)


def _on_watch() -> None:
    choice = st.session_state["train.watch"]
    if choice != "—":
        attach(choice)
    st.session_state["train.watch"] = "—"


def _status_of(value: Any) -> str:
    """JobManager.status may give a status string or the run record; both name the status."""
    return value.get("status", "unknown") if isinstance(value, dict) else str(value)


def run_status(run_id: str) -> str:
    try:
        return _status_of(current_manager().status(run_id))
    except (ExplorerError, KeyError, FileNotFoundError):
        try:
            return runs.read_run(run_id).get("status", "unknown")
        except (ExplorerError, KeyError, FileNotFoundError):
            return "unknown"


def _buttons(selection: Selection, train_cfg: TrainConfig | None, source: str, run_id: str | None,
             active: bool) -> None:
    start_col, stop_col, info_col = st.columns([1, 1, 4])
    ready = selection.cfg is not None and train_cfg is not None and source != "folder:"
    label = "Start another run" if active else "Start training"
    start_col.button(label, type="primary", key="train.start", disabled=not ready, width="stretch",
                     on_click=_on_start)
    stop_col.button("Stop", key="train.stop", disabled=not active, width="stretch", on_click=_on_stop,
                    args=(run_id,))
    if selection.cfg is not None:
        try:
            params = f"{model_cost(selection.cfg, selection.input_shape, selection.num_classes).params:,} params"
        except ConfigError:
            params = "does not fit this input"
        info_col.caption(f"Trains **{selection.preset or 'custom'}** ({params} on "
                         f"{'×'.join(map(str, selection.input_shape))}) from the sidebar on **{source}**.")
    if START_ERROR in st.session_state:
        st.error(st.session_state[START_ERROR])


# --- the live view (a plain function; the fragment wraps it) -------------------------------------------------


def read_history(manager: JobManager, run_id: str, cache: dict | None) -> tuple[charts.TrainingHistory, dict]:
    """Fold the run's new events into its history; `cache` is what the previous call returned."""
    if not cache or cache.get("run_id") != run_id:
        cache = {"run_id": run_id, "seen": 0, "history": charts.TrainingHistory()}
    if cache["history"].ended:
        return cache["history"], cache  # an ended run writes no more events: no need to read them again
    try:
        events = manager.events(run_id, since=cache["seen"])
    except (ExplorerError, KeyError, FileNotFoundError):
        # Not a run of this server process (the app restarted): read what the record on disk holds.
        events = runs.read_events(run_id)[cache["seen"]:]
    cache["seen"] += len(events)
    charts.history_from_events(events, cache["history"])
    return cache["history"], cache


def _headline(history: charts.TrainingHistory, run_id: str, now: float) -> None:
    done, eta = charts.progress(history, now)
    epochs = history.epochs[-1] if history.epochs else 0
    icon = STATUS_ICONS.get(history.status, "")
    parts = [f"{icon} **{history.status}**", f"run `{run_id}`"]
    if history.device:
        parts.append(f"on {history.device}")
    if history.test_accuracy:
        parts.append(f"test accuracy {100 * history.test_accuracy[-1]:.1f} % after epoch {epochs}")
    if history.images_per_second:
        parts.append(f"{history.images_per_second[-1]:,.0f} img/s")
    st.markdown(" · ".join(parts))
    eta_text = "" if history.ended else f" · about {duration(eta)} left" if eta is not None else " · starting…"
    st.progress(done, text=f"step {history.step:,} of {history.total_steps:,} ({done:.0%}){eta_text}")


def live_view(manager: JobManager, run_id: str, now: float | None = None) -> charts.TrainingHistory:
    """Progress, status and the four live charts of `run_id`; returns the run's history."""
    history, cache = read_history(manager, run_id, st.session_state.get(HISTORY))
    st.session_state[HISTORY] = cache
    # A keyed container gives the browser tests a stable handle (CSS class st-key-train-status).
    with st.container(key="train-status"):
        _headline(history, run_id, time.time() if now is None else now)
    if history.status == "failed":
        st.error(f"The run failed: {history.error}")
    elif history.status == "stopped":
        st.warning("The run was stopped; its record and last checkpoint are kept (see the Runs tab).")
    figures = charts.training_figures(history, revision=run_id)
    for row in (("loss", "accuracy"), ("per_class", "seconds")):
        for column, name in zip(st.columns(2), row):
            column.plotly_chart(figures[name], key=f"train.chart.{name}", config={"displayModeBar": False})
    return history


def _live_section(run_id: str) -> None:
    was_active = run_status(run_id) in ("queued", "running")

    def body() -> None:
        history = live_view(current_manager(), run_id)
        if was_active and history.ended:
            st.rerun()  # whole-app rerun: the fragment is re-made without polling, the Runs tab refreshes

    st.fragment(body, run_every=POLL_SECONDS if was_active else None)()


def _other_active_runs(run_id: str | None) -> None:
    active = [r for r in current_manager().active() if r != run_id]
    if active:
        st.selectbox("Other runs in progress: watch one", ["—", *active], key="train.watch", on_change=_on_watch)


# --- the tab -------------------------------------------------------------------------------------------------


def render(selection: Selection) -> None:
    state = st.session_state
    keys.init_state(state)
    _settings()
    source = keys.source_from_values(state)
    try:
        train_cfg, train_error = keys.train_from_values(state), None
    except ConfigError as err:
        train_cfg, train_error = None, str(err)
    if train_error:
        st.error(train_error)
    if selection.cfg is None:
        st.warning(f"Fix the architecture in the sidebar first: {selection.error}")
    _estimate_section(selection, train_cfg, source)
    run_id = attached_run()
    status = run_status(run_id) if run_id else None
    if status == "unknown":
        # Deleted in the Runs tab, or a stale ?run= link: forget it rather than fail on every rerun.
        st.info(f"Run {run_id} is no longer in {runs.default_runs_dir()}; start a new one.")
        _detach()
        run_id = None
    active = status in ("queued", "running")
    _buttons(selection, train_cfg, source, run_id, active)
    _other_active_runs(run_id)
    if run_id:
        _live_section(run_id)
    else:
        st.caption("Press Start: the charts update here about once a second while the run trains in the "
                   "background. Clicking widgets or switching tabs does not stop it.")
