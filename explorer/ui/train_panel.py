"""The Train page: dataset, recipe and training widgets, time estimate, Start/Stop, live progress and charts.

A run is its own process (`python -m explorer train ...`, started by explorer.store.runner.Runner), never the
script run or a thread of this server: a widget click, a page switch or a restart of the server cannot touch it.
The page only reads the run folder. The watched run id lives in st.session_state and in the URL (?run=ID), so
a reloaded page re-attaches; runs still training are found by reading the runs folder, so a restarted server
offers them too. The live area is an st.fragment that reads the new events about once a second and stops
polling (run_every=None) once the run has ended. The command that reproduces the run is shown beside it.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import MutableMapping
from typing import Any

import streamlit as st

from explorer import schema
from explorer.arch.config import ArchConfig
from explorer.arch.cost import TooLargeToBuild, buildable_cost, model_cost
from explorer.arch.presets import PRESETS, preset_label
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import RECIPES, recipe_label
from explorer.engine.train import batch_count, estimate_epoch_seconds
from explorer.errors import ConfigError, ExplorerError
from explorer.store import settings
from explorer.store.events import ACTIVE_STATUSES, History, fold
from explorer.store.groups import MAX_REPEAT, repeat_specs
from explorer.store.runner import RunSpec
from explorer.ui import charts, links, source_picker, stop_resume, widgets
from explorer.ui import state as arch_keys
from explorer.ui import train_state as keys
from explorer.ui.format import duration
from explorer.ui.resources import HISTORY, RUN_ID, attach, cached_dataset, current_runner
from explorer.ui.state import Selection

ESTIMATE = "train.estimate"
START_ERROR = "train.start_error"
REPEAT = "train.repeat"  # seeds per Start: N runs with seeds seed, seed+1, ... in one group
POLL_SECONDS = 1.0

RECIPE_HELP = ("study: the study's SGD, lr 0.001, batch 8, no augmentation. fast: one-cycle SGD with Nesterov, "
               "label smoothing, flip + crop, flip and 1-pixel translate test-time augmentation. best: fast with "
               "weight EMA and a longer schedule. An edit names what changed: 'fast (edited: epochs)'.")
SETTINGS_COLUMNS = 4
SETTINGS_GROUPS = ("optimization", "regularization", "run")  # rows in this order; a new group goes last
# Material icons rather than emoji: they render without an emoji font (headless Chromium has none).
STATUS_ICONS = {"queued": ":material/hourglass_top:", "running": ":material/autorenew:",
                "finished": ":material/check_circle:", "stopped": ":material/stop_circle:",
                "failed": ":material/error:", "interrupted": ":material/link_off:"}


# --- callbacks ---------------------------------------------------------------------------------------------


def _on_recipe() -> None:
    keys.load_recipe(st.session_state, st.session_state[keys.RECIPE])


def on_setting_edit() -> None:
    keys.mark_custom(st.session_state)


# --- the settings ------------------------------------------------------------------------------------------


def _setting_widgets() -> None:
    """Every TrainConfig field, drawn from the schema in declaration order, a row of columns per group."""
    groups: dict[str, list[str]] = {}
    for spec in schema.specs(TrainConfig):
        groups.setdefault(spec.group, []).append(spec.name)
    for group in sorted(groups, key=lambda g: SETTINGS_GROUPS.index(g) if g in SETTINGS_GROUPS else 99):
        names = groups[group]
        for start in range(0, len(names), SETTINGS_COLUMNS):
            row = names[start:start + SETTINGS_COLUMNS]
            for column, name in zip(st.columns(SETTINGS_COLUMNS), row):
                widgets.draw(TrainConfig, name, keys.key(name), container=column, on_change=on_setting_edit)


def _settings() -> None:
    left, middle, right = st.columns([2, 1, 1])
    with left:
        source_picker.train_picker()
    # The picker tells its options apart by their text: an undone edit shows 'custom', not a second 'fast'.
    custom = recipe_name(st.session_state)
    custom = keys.CUSTOM if custom in RECIPES else custom
    middle.selectbox("Recipe", keys.recipe_options(), key=keys.RECIPE, on_change=_on_recipe,
                     format_func=lambda name: custom if name == keys.CUSTOM else name,
                     help=RECIPE_HELP)
    right.text_input("Run name (optional)", key=keys.NAME, max_chars=80)
    with st.expander("Training settings", expanded=True):
        _setting_widgets()


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
    minutes = widgets.number_spec("Time budget (minutes)", 0.1, 10_000.0, step=1.0, fmt="%g")
    widgets.number_input(minutes, keys.TIME_BUDGET, left)
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


def attached_run(active_runs: list[str]) -> str | None:
    """The run this session watches: session state first, else ?run=ID from the URL (after a reload), else the
    newest run training now (`active_runs`, newest first: a new tab, or the app server restarted while it
    trained: re-attach to it)."""
    if RUN_ID not in st.session_state:
        wanted = st.query_params.get("run") or next(iter(active_runs), None)
        if wanted:
            st.session_state[RUN_ID] = wanted
    return st.session_state.get(RUN_ID)


def _detach() -> None:
    st.session_state.pop(RUN_ID, None)
    st.session_state.pop(HISTORY, None)
    if "run" in st.query_params:
        del st.query_params["run"]


def spec_from_values(state: MutableMapping[str, Any]) -> RunSpec:
    """The run the widgets describe; ConfigError for a bad combination."""
    arch = arch_keys.arch_from_values(state)
    # The preset and recipe it started from, edited or not: the record names it 'fast (edited: epochs)'.
    return RunSpec(arch, keys.train_from_values(state), keys.source_from_values(state),
                   name=state[keys.NAME].strip() or None, preset=state.get(arch_keys.BASE_PRESET),
                   recipe=_base_recipe(state))


def _base_recipe(state: MutableMapping[str, Any]) -> str | None:
    """The recipe the edited settings started from: the command names it and overrides what changed."""
    return next((name for name, cfg in RECIPES.items() if cfg.to_dict() == state.get(keys.BASE)), None)


def recipe_name(state: MutableMapping[str, Any]) -> str:
    """The Train form's recipe: 'fast', 'fast (edited: epochs)', or 'custom'."""
    try:
        return recipe_label(_base_recipe(state), keys.train_from_values(state))
    except ConfigError:
        return keys.CUSTOM


def start_run(state: MutableMapping[str, Any]) -> str:
    """Start the run the widgets describe as a process (read from session state at click time, so an edit
    committed in the same rerun as the click is not missed); ExplorerError when it cannot start."""
    spec = spec_from_values(state)
    settings.check_app_source(spec.data)
    # Repeated seeds are separate run processes: the training slots queue them and run them side by side where
    # they allow. The page watches the first; the Runs page summarizes the group.
    run_ids = [current_runner().start(one) for one in repeat_specs(spec, int(state.get(REPEAT) or 1))]
    attach(run_ids[0])
    return run_ids[0]


def _on_start() -> None:
    # A callback runs before the script, so the very run it triggers already draws the new run, polling.
    try:
        with st.spinner("Starting the run process…"):
            start_run(st.session_state)
        st.session_state.pop(START_ERROR, None)
    except ExplorerError as err:
        st.session_state[START_ERROR] = str(err)


def _on_stop(run_id: str) -> None:
    try:
        stop_resume.request_stop(current_runner(), run_id, st.session_state)
    except ExplorerError as err:
        st.session_state[START_ERROR] = str(err)


def _on_watch() -> None:
    choice = st.session_state["train.watch"]
    if choice != "—":
        attach(choice)
    st.session_state["train.watch"] = "—"


def run_status(run_id: str) -> str:
    """The run's effective status ("interrupted" when its process is gone), "unknown" when there is none."""
    try:
        return current_runner().status(run_id).get("status", "unknown")
    except ExplorerError:
        return "unknown"


def start_blocker(selection: Selection, train_cfg: TrainConfig | None, source: str) -> str | None:
    """Why Start cannot be pressed now (shown beside it), or None when the run can start."""
    if selection.cfg is None:
        return "fix the architecture in the sidebar first."
    if train_cfg is None:
        return "fix the training settings above first."
    if source == "folder:":
        return "enter an image folder above first."
    try:
        buildable_cost(selection.cfg, selection.input_shape, selection.num_classes)
    except TooLargeToBuild as err:
        return str(err)
    except ConfigError as err:
        shape = "×".join(map(str, selection.input_shape))
        return f"the network does not fit its {shape} input: {err}"
    return None


def train_images(source: str) -> int | None:
    """Training images of `source` (None when unknown): a synthetic set's size without building it, else the
    loaded dataset's (already cached when the source was picked)."""
    kind, _, rest = source.partition(":")
    if kind == "synthetic":
        return int(rest) if rest.isdigit() else keys.SYNTHETIC_DEFAULT
    if source == "folder:":
        return None
    try:
        return len(cached_dataset(source).train_y)
    except ExplorerError:
        return None  # the picker already shows why


def steps_note(images: int, batch_size: int, epochs: int) -> tuple[str, str | None]:
    """('N steps per epoch, M in all', warning or None): a batch larger than the training set trains one
    step per epoch, which a user should hear about before pressing Start."""
    per_epoch = batch_count(images, batch_size)
    note = f"{per_epoch:,} step{'s' * (per_epoch != 1)} per epoch, {per_epoch * epochs:,} in all"
    if batch_size <= images:
        return note, None
    return note, (f"The batch size ({batch_size:,}) is larger than the training set ({images:,} images): each "
                  f"epoch is a single step of {images:,} images, {epochs:,} steps in all. Lower the batch size "
                  "for more updates per epoch.")


def _buttons(selection: Selection, train_cfg: TrainConfig | None, source: str, run_id: str | None,
             active: bool) -> None:
    widgets.number_input(widgets.number_spec("Repeat with N seeds", 1, MAX_REPEAT), REPEAT, value=1,
                         help="N runs of this design with the seeds seed, seed + 1, …, recorded as one group: the Runs "
                         "page shows their mean with a 95 % interval and says whether two designs differ beyond "
                         "the seed's noise.")
    start_col, stop_col, info_col = st.columns([1, 1, 4])
    blocker = start_blocker(selection, train_cfg, source)
    label = "Start another run" if active else "Start training"
    start_col.button(label, type="primary", key="train.start", disabled=blocker is not None, width="stretch",
                     on_click=_on_start, help=f"Start is disabled: {blocker}" if blocker else None)
    stop_col.button("Stop", key="train.stop", disabled=not active, width="stretch", on_click=_on_stop,
                    args=(run_id,), help="Keeps the last whole epoch (weights and accuracy); in the first epoch, "
                                         "the partial epoch evaluated at the stop. The line under the progress bar "
                                         "says which, now.")
    if blocker:
        # A keyed container gives the browser tests a stable handle (CSS class st-key-train-blocker).
        with info_col.container(key="train-blocker"):
            st.caption(f"Start is disabled: {blocker}")
    else:
        _start_note(info_col, selection, train_cfg, source)
    if START_ERROR in st.session_state:
        st.error(st.session_state[START_ERROR])
    if stop_resume.STOP_MESSAGE in st.session_state:
        st.info(st.session_state[stop_resume.STOP_MESSAGE])


def _start_note(column: Any, selection: Selection, train_cfg: TrainConfig, source: str) -> None:
    """What Start would train (the form's settings, not the run shown below), with its steps per epoch."""
    params = f"{model_cost(selection.cfg, selection.input_shape, selection.num_classes).params:,} params"
    images = train_images(source)
    note, warning = steps_note(images, train_cfg.batch_size, train_cfg.epochs) if images else ("", None)
    column.caption(f"Start trains **{selection.name}** with recipe **{recipe_name(st.session_state)}** ({params} on "
                   f"{'×'.join(map(str, selection.input_shape))}) from the sidebar on **{source}**"
                   f"{': ' + note if note else ''}, in a process of its own.")
    if warning:
        st.warning(warning)


# --- the live view (a plain function; the fragment wraps it) -------------------------------------------------


def read_history(source: Any, run_id: str, cache: dict | None) -> tuple[History, dict]:
    """Fold the run's new events into its history; `cache` is what the previous call returned.

    `source` is the Runner (anything with reader(run_id) and status(run_id)). A run whose process is gone
    without an end event reads as interrupted, with the record's message."""
    if not cache or cache.get("run_id") != run_id:
        cache = {"run_id": run_id, "reader": source.reader(run_id), "history": History()}
    history = cache["history"]
    if history.ended:
        return history, cache  # an ended run writes no more events: no need to read them again
    events, problems = cache["reader"].read()
    fold(events, history).problems.extend(problems)
    if not history.ended:
        record = source.status(run_id)
        if record.get("status") == "interrupted":
            history.status, history.error = "interrupted", record.get("message")
    return history, cache


def throughput_text(history: History) -> str | None:
    """Training images per second of training time (evaluation left out): the last epoch's while the run
    trains, the whole run's (time-weighted, as the Runs table shows it) once it has ended."""
    if history.ended and history.summary.get("images_per_second"):
        return f"{history.summary['images_per_second']:,.0f} training img/s (whole run)"
    if history.images_per_second and history.images_per_second[-1]:
        return f"{history.images_per_second[-1]:,.0f} training img/s (last epoch)"
    return None


def progress_text(history: History, done: float, eta: float | None) -> str:
    """The progress bar's line: the steps actually run, and how the run ended when it did not finish."""
    steps = f"step {history.step:,} of {history.total_steps:,} ({done:.0%})"
    if history.ended:
        return steps if history.status == "finished" else f"{history.status} at {steps}"
    if history.total_steps and history.step >= history.total_steps:
        return f"all {history.total_steps:,} steps done · evaluating the last epoch and saving its checkpoint"
    if eta is not None:
        return f"{steps} · about {duration(eta)} left"
    return steps + (" · waiting for a training slot" if history.status == "queued" else " · starting…")


def _headline(history: History, run_id: str, now: float) -> None:
    done, eta = charts.progress(history, now)
    epochs = history.epochs[-1] if history.epochs else 0
    icon = STATUS_ICONS.get(history.status, "")
    status = stop_resume.shown_status(history, st.session_state.get(stop_resume.STOPPING) == run_id)
    parts = [f"{icon} **{status}**", f"run `{run_id}`"]
    if history.device:
        parts.append(f"on {history.device}" + (f" ({history.threads} thread(s))" if history.threads else ""))
    if history.test_accuracy and history.test_accuracy[-1] is not None:
        parts.append(f"test accuracy {100 * history.test_accuracy[-1]:.1f} % after epoch {epochs}")
    throughput = throughput_text(history)
    if throughput:
        parts.append(throughput)
    st.markdown(" · ".join(parts))
    st.progress(done, text=progress_text(history, done, eta))
    if history.status == "running" and status != "stopping":
        with st.container(key="train-stop-note"):  # what Stop keeps, said before the click
            st.caption(stop_resume.stop_note(history))


def _end_message(history: History, record: dict) -> None:
    if history.status == "failed":
        st.error(f"The run failed: {history.error}")
    elif history.status == "stopped":
        st.warning(stop_resume.stopped_message(record, history))
    elif history.status == "interrupted":
        st.warning(f"The run was {history.error or 'interrupted'}")
    for problem in history.problems:
        st.warning(problem)


def live_view(source: Any, run_id: str, now: float | None = None) -> History:
    """Progress, status and the four live charts of `run_id`; returns the run's history."""
    history, cache = read_history(source, run_id, st.session_state.get(HISTORY))
    st.session_state[HISTORY] = cache
    # A keyed container gives the browser tests a stable handle (CSS class st-key-train-status).
    with st.container(key="train-status"):
        _headline(history, run_id, time.time() if now is None else now)
    record = _record(source, run_id)
    for note in record.get("data_notes") or []:  # what loading skipped or changed, as `train` prints them
        st.caption(f"Data note: {note}")
    _end_message(history, record if history.status == "stopped" else {})
    if history.status in ("failed", "interrupted") and not history.epochs and not history.step:
        return history  # it ended before training a batch: its message says why, empty charts would not
    figures = charts.training_figures(history, revision=run_id)
    for row in (("loss", "accuracy"), ("per_class", "seconds")):
        for column, name in zip(st.columns(2), row):
            column.plotly_chart(figures[name], key=f"train.chart.{name}", config={"displayModeBar": False})
    return history


def _record(source: Any, run_id: str) -> dict:
    try:
        return source.status(run_id)
    except ExplorerError:
        return {}


# --- the watched run's own settings ----------------------------------------------------------------------------


def run_design(record: dict, budget: int, input_shape: tuple[int, int, int], num_classes: int) -> links.Design:
    """The design a run record describes, as the form would show it (ConfigError for an unreadable one).
    A preset or recipe is named only when the run used it unedited; the input shape and class count are the
    record's once the run has loaded its data, else the given ones."""
    arch, train = ArchConfig.from_dict(record["arch"]), TrainConfig.from_dict(record["train"])
    preset, recipe = record.get("preset"), record.get("recipe")
    shape = tuple(record["input_shape"]) if record.get("input_shape") else input_shape
    return links.Design(arch=arch, train=train, preset=preset if PRESETS.get(preset) == arch else None,
                        recipe=recipe if RECIPES.get(recipe) == train else None, budget=budget,
                        input_shape=shape, num_classes=int(record.get("num_classes") or num_classes),
                        data=str(record.get("data") or "synthetic"))


def design_line(design: links.Design, record: dict) -> str:
    """The watched run's settings in one line, its network and recipe named as the record names them."""
    t = design.train
    return (f"**{preset_label(record.get('preset'), design.arch)}** network · recipe "
            f"**{recipe_label(record.get('recipe'), design.train)}** · {t.epochs} epochs, batch {t.batch_size}, "
            f"lr {t.lr:g} · on **{design.data}**")


def _watched_design(run_id: str) -> tuple[links.Design, dict] | None:
    """The watched run's design and record (None for an old or damaged record: the run is still shown)."""
    state = st.session_state
    shape, classes = arch_keys.input_from_values(state)
    try:
        record = current_runner().status(run_id)
        return run_design(record, int(state[arch_keys.BUDGET]), shape, classes), record
    except (ExplorerError, KeyError, TypeError, ValueError):
        return None


def _on_load_run(run_id: str) -> None:
    watched = _watched_design(run_id)
    if watched is not None:
        st.session_state.update(links.design_values(watched[0]))


def form_matches(state: MutableMapping[str, Any], design: links.Design) -> bool:
    """Whether the form (sidebar and Train page) describes the same run as `design`."""
    try:
        form = links.design_of(state)
    except ConfigError:
        return False
    return (form.arch, form.train, form.data) == (design.arch, design.train, design.data)


def _run_settings(run_id: str) -> None:
    """The watched run's own settings, which may not be the form's (after a reload, a resume, another tab)."""
    watched = _watched_design(run_id)
    if watched is None:
        return
    design, record = watched
    text, button = st.columns([5, 2])
    same = form_matches(st.session_state, design)
    text.caption(f"This run's settings: {design_line(design, record)}"
                 + (" (the same as the form)" if same else " (the form above differs)"))
    button.button("Load these settings into the form", key="train.load_run", on_click=_on_load_run,
                  args=(run_id,), disabled=same, width="stretch")


def _command(run_id: str) -> None:
    """The shell command that reproduces the run (the one its process runs, less the run id)."""
    try:
        command = current_runner().status(run_id).get("command")
    except ExplorerError:
        return
    if command:
        with st.expander("Reproduce this run from a shell"):
            st.code(shlex.join(command), language="bash", wrap_lines=True)


def _live_section(run_id: str, status: str) -> None:
    was_active = status in ACTIVE_STATUSES
    _run_settings(run_id)
    _command(run_id)
    stop_resume.resume_message()
    if not was_active:
        stop_resume.resume_controls(current_runner(), _record(current_runner(), run_id), attach)

    def body() -> None:
        history = live_view(current_runner(), run_id)
        if was_active and history.ended:
            st.rerun()  # whole-app rerun: the fragment is re-made without polling, the Runs page refreshes

    st.fragment(body, run_every=POLL_SECONDS if was_active else None)()


def _other_active_runs(run_id: str | None, active_runs: list[str]) -> None:
    # From the runs folder: runs started by another session, another server, or before a restart.
    active = [r for r in active_runs if r != run_id]
    if active:
        st.selectbox("Runs in progress: watch one", ["—", *active], key="train.watch", on_change=_on_watch)


# --- the page ------------------------------------------------------------------------------------------------


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
    active_runs = current_runner().active()  # read once per rerun: the runs folder, newest first
    run_id = attached_run(active_runs)
    status = run_status(run_id) if run_id else None
    if status == "unknown":
        # Deleted on the Runs page, or a stale ?run= link: forget it rather than fail on every rerun.
        st.info(f"Run {run_id} is no longer in {settings.default_runs_dir()}; start a new one.")
        _detach()
        run_id = None
    if run_id and st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id  # attached elsewhere (a resume on the Checkpoints page): a reload keeps it
    active = status in ACTIVE_STATUSES
    _buttons(selection, train_cfg, source, run_id, active)
    _other_active_runs(run_id, active_runs)
    if run_id:
        _live_section(run_id, status)
    else:
        st.caption("Press Start: the run trains in a process of its own and the charts update here about once a "
                   "second. Clicking widgets, switching pages or restarting the app does not stop it.")
