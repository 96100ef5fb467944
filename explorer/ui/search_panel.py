"""The Search page: build a space around the sidebar's preset (or pick a search), Start / Stop, a live Pareto front.

A search is `python -m explorer search run NAME ...` in a process of its own (explorer.search.control), on the
default journal under the runs folder, so widget clicks, page switches and app restarts never touch it. The
page only reads the journal: an st.fragment re-reads it every POLL_SECONDS while the search runs. A reloaded
page (or a restarted server) re-attaches to a running search found under <runs>/searches/.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import streamlit as st

from explorer.arch.config import ArchConfig
from explorer.arch.presets import PRESETS
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ConfigError, ExplorerError
from explorer.search import control
from explorer.search.space import load_space, space_around
from explorer.search.storage import check_app_storage
from explorer.search.study import (
    MIN_FOR_IMPORTANCE,
    create_search,
    default_storage,
    load_search,
    make_settings,
    param_importances,
    rows,
)
from explorer.store import settings
from explorer.store.runner import RunSpec
from explorer.ui import navigation, resources, search_charts, source_picker, space_editor, train_state, widgets
from explorer.ui import state as arch_keys
from explorer.ui.state import Selection

POLL_SECONDS = 2.0
NEW = "➕ New search"
DEFAULT_PRESET = "fast"
OBJECTIVES = ("accuracy", "accuracy,params", "accuracy,flops")
SYNTHETIC, FOLDER_CHOICE = "synthetic", train_state.FOLDER_CHOICE

PICK, NAME, SOURCE, FOLDER, SYNTHETIC_SIZE = "search.pick", "search.name", "search.source", "search.folder", \
    "search.synthetic_size"
PER_TRIAL, TRIAL_SECONDS, TRIAL_EPOCHS = "search.per_trial", "search.trial_seconds", "search.trial_epochs"
OBJECTIVE, FLOPS_BUDGET, SPACE, WORKERS, TRIALS = "search.objectives", "search.flops_budget", "search.space", \
    "search.workers", "search.trials"
TRIAL, LONGER_EPOCHS, BASELINE = "search.trial", "search.longer_epochs", "search.baseline"
STORAGE, WATCH_URL, WATCH_NAME = "search.storage", "search.watch_url", "search.watch_name"
SPACE_FILE, SPACE_WIDGET_ERROR = "search.space_file", "search.space_widget_error"
ERROR, SWITCH, SPACE_FROM = "search.error", "search.switch_to", "search.space_from"
OPTIONS_OF = "search.options_of"  # the search whose last run options the workers / trials boxes were set from
# Widgets of a page not in view lose their state; their values are kept under KEEP + key between visits.
WIDGETS = (PICK, TRIAL, NAME, SOURCE, FOLDER, SYNTHETIC_SIZE, PER_TRIAL, TRIAL_SECONDS, TRIAL_EPOCHS, OBJECTIVE,
           FLOPS_BUDGET, SPACE, WORKERS, TRIALS, LONGER_EPOCHS, BASELINE, STORAGE)
KEEP = "search.keep."
PICKER = train_state.SourceKeys(SOURCE, FOLDER, SYNTHETIC_SIZE)
DEFAULTS = {SOURCE: SYNTHETIC, FOLDER: "", SYNTHETIC_SIZE: 2000, PER_TRIAL: "seconds per trial", TRIAL_SECONDS: 60.0,
            TRIAL_EPOCHS: 2, OBJECTIVE: "accuracy", FLOPS_BUDGET: 0.0, WORKERS: 2, TRIALS: 20, NAME: "", BASELINE: True,
            STORAGE: ""}


def _dirs() -> tuple[Any, Any]:
    return settings.default_runs_dir(), settings.default_data_dir()


def _space_text(preset: str) -> str:
    return json.dumps(space_around(preset), indent=2)


def init_state(state: MutableMapping[str, Any], preset: str | None) -> None:
    """Defaults, then the values kept from the last visit; the space starts around the sidebar's preset."""
    for key in WIDGETS:
        if key not in state and KEEP + key in state:
            state[key] = state[KEEP + key]
    for key, value in DEFAULTS.items():
        state.setdefault(key, value)
    if SPACE not in state:
        state[SPACE_FROM] = preset if preset in PRESETS else DEFAULT_PRESET
        state[SPACE] = _space_text(state[SPACE_FROM])


def _remember(state: MutableMapping[str, Any]) -> None:
    for key in WIDGETS:
        if key in state:
            state[KEEP + key] = state[key]


def source_of(state: MutableMapping[str, Any]) -> str:
    return train_state.source_of(state, PICKER)


def _refusal(check: Callable[[str], Any], text: str) -> str | None:
    """The ConfigError `check` raises for `text`, as one line; None when it accepts it."""
    try:
        check(text)
    except ConfigError as err:
        return str(err)
    return None


def space_error(text: str) -> str | None:
    """Why the space text is refused (one line naming the field), None when it is a valid space."""
    return _refusal(load_space, text)


def name_error(text: str) -> str | None:
    """Why the Search name box's name is refused, None when it is empty (a dated name is made) or accepted."""
    return _refusal(control.check_name, text) if str(text).strip() else None


def storage_error(text: str) -> str | None:
    """Why the Storage box's URL is refused (before anything is created), None when it is empty or accepted."""
    return _refusal(lambda url: check_app_storage(url, _dirs()[0]), text) if str(text).strip() else None


# --- callbacks (they run before the script, so widget keys may still be set) -----------------------------------


def _run_options(state: MutableMapping[str, Any]) -> tuple[int, int | None]:
    return int(state[WORKERS]), int(state[TRIALS]) or None


def create_and_start(state: MutableMapping[str, Any], budget: int) -> str:
    """Create the search the widgets describe on its default journal and start it; ExplorerError says why not."""
    runs_dir, data_dir = _dirs()
    database = str(state[STORAGE]).strip()
    if database:  # before anything is created: a refused storage leaves no folder and no file behind
        check_app_storage(database, runs_dir)
    name = control.check_name(str(state[NAME]).strip() or time.strftime("search-%Y%m%d-%H%M%S"))
    space = load_space(state[SPACE])
    source = source_of(state)
    if source == "folder:":
        raise ConfigError("enter an image folder first.")
    settings.check_app_source(source)
    by_time = state[PER_TRIAL] == "seconds per trial"
    flops_budget = float(state[FLOPS_BUDGET]) or None
    # A database search's trials upload their checkpoints beside its pointer (point other machines' workers at
    # a shared folder with `search create --artifacts` from the CLI).
    artifacts = str(control.search_dir(name, runs_dir) / "artifacts") if database else None
    study_settings = make_settings(space, source, float(state[TRIAL_SECONDS]) if by_time else None,
                                   None if by_time else int(state[TRIAL_EPOCHS]), budget, flops_budget,
                                   state[OBJECTIVE], data_dir=data_dir, artifacts=artifacts)
    baseline = state.get(SPACE_FROM) if state[BASELINE] else None
    create_search(name, database or default_storage(name, runs_dir), study_settings, baseline)
    if database:
        control.link_storage(name, database, runs_dir)
    control.start(name, *_run_options(state), runs_dir=runs_dir, data_dir=data_dir)
    state[PICK] = name
    return name


def _on_create(budget: int) -> None:
    state = st.session_state
    state.pop(ERROR, None)
    try:
        with st.spinner("Loading the data and creating the search…"):
            create_and_start(state, budget)
    except ExplorerError as err:
        state[ERROR] = str(err)


def _on_continue(name: str) -> None:
    state = st.session_state
    state.pop(ERROR, None)
    runs_dir, data_dir = _dirs()
    try:
        control.start(name, *_run_options(state), runs_dir=runs_dir, data_dir=data_dir)
    except ExplorerError as err:
        state[ERROR] = str(err)


def _on_stop(name: str) -> None:
    control.stop(name, _dirs()[0])


def _on_reset_space(preset: str) -> None:
    st.session_state[SPACE] = _space_text(preset)
    st.session_state[SPACE_FROM] = preset


def open_in_architecture(state: MutableMapping[str, Any], row: dict, study_settings: dict) -> None:
    """Put the trial's network (and the search data's input shape) into the sidebar's widgets."""
    arch = ArchConfig.from_dict(row["config"]["arch"])
    state.update(arch_keys.arch_to_values(arch))
    arch_keys.mark_custom(state)
    arch_keys.set_input(state, tuple(study_settings["input_shape"]), study_settings["num_classes"])


def longer_spec(name: str, row: dict, data: str, epochs: int) -> RunSpec:
    """A normal run of the trial's network and training settings, `epochs` long, labelled with the search."""
    arch = ArchConfig.from_dict(row["config"]["arch"])
    train = TrainConfig.from_dict(row["config"]["train"] | {"epochs": int(epochs)})
    train = dataclasses.replace(train, warmup_epochs=min(train.warmup_epochs, train.epochs))
    return RunSpec(arch, train, data, name=f"search {name} trial {row['number']} longer", recipe=DEFAULT_PRESET)


def _on_open(row: dict, study_settings: dict) -> None:
    open_in_architecture(st.session_state, row, study_settings)
    st.session_state[SWITCH] = "architecture"


def _on_train_longer(name: str, row: dict, data: str) -> None:
    state = st.session_state
    state.pop(ERROR, None)
    try:
        settings.check_app_source(data)
        run_id = resources.current_runner().start(longer_spec(name, row, data, int(state[LONGER_EPOCHS])))
    except ExplorerError as err:
        state[ERROR] = str(err)
        return
    resources.attach(run_id)
    state[SWITCH] = "train"


# --- the new-search form ------------------------------------------------------------------------------------


def _data_picker() -> None:
    source_picker.render(PICKER, help="Trials train on it minus a seeded validation split; the objective is "
                                      "measured on that split.")


def _trial_settings() -> None:
    st.radio("Each trial trains for", ("seconds per trial", "epochs per trial"), key=PER_TRIAL, horizontal=True,
             help="Fair trials: the same training time (the schedule fitted to it) or the same number of epochs.")
    if st.session_state[PER_TRIAL] == "seconds per trial":
        seconds = widgets.number_spec("Seconds per trial", 1.0, 86_400.0, step=10.0, fmt="%g")
        widgets.number_input(seconds, TRIAL_SECONDS)
    else:
        widgets.number_input(widgets.number_spec("Epochs per trial", 1, 1000), TRIAL_EPOCHS)
    st.selectbox("Objectives", OBJECTIVES, key=OBJECTIVE,
                 help="accuracy alone prunes weak trials early (Hyperband); with params or FLOPs the search is "
                      "multi-objective.")
    flops = widgets.number_spec("FLOPs budget per image (0: none)", 0.0, 1e13, step=1e6, fmt="%g")
    widgets.number_input(flops, FLOPS_BUDGET)


def _space_defaults(state: MutableMapping[str, Any]) -> dict:
    """Values a setting added to the space starts from: the preset's network, the space's recipe."""
    preset = PRESETS[state.get(SPACE_FROM, DEFAULT_PRESET)]
    arch = preset.to_dict() | {"depth": len(preset.conv), "widths": [b.out_channels for b in preset.conv],
                               "fc_layers": len(preset.fc)}
    try:
        recipe = json.loads(state[SPACE]).get("recipe", DEFAULT_RECIPE)
    except (ValueError, AttributeError):
        recipe = DEFAULT_RECIPE
    return arch | RECIPES.get(recipe, RECIPES[DEFAULT_RECIPE]).to_dict()


def _on_load_space() -> None:
    upload = st.session_state.get(SPACE_FILE)
    if upload is not None:
        st.session_state[SPACE] = upload.getvalue().decode("utf-8", errors="replace")


def _space_editor(selection: Selection) -> None:
    state = st.session_state
    preset = selection.preset if selection.preset in PRESETS else DEFAULT_PRESET
    top, button = st.columns([3, 1])
    top.caption(f"The space, started around **{state.get(SPACE_FROM, preset)}**: each setting fixed, a range or "
                f"choices, within the limits the settings schema declares (docs/search.md).")
    button.button(f"Reset around {preset}", key="search.reset_space", on_click=_on_reset_space, args=(preset,),
                  width="stretch")
    space_editor.render(SPACE, SPACE_WIDGET_ERROR, _space_defaults(state))
    if SPACE_WIDGET_ERROR in state:
        st.error(state[SPACE_WIDGET_ERROR])
    with st.expander("As JSON: edit, paste or load a space file"):
        st.text_area("Search space", key=SPACE, height=320, label_visibility="collapsed")
        st.file_uploader("Load a space file (JSON)", type=["json"], key=SPACE_FILE, on_change=_on_load_space)
    st.checkbox(f"Train {state.get(SPACE_FROM, preset)} first, as trial 0 (a baseline)", key=BASELINE,
                help="The preset the space was built around, trained under the same rules as every trial, so the "
                     "search's results can be read against it.")


def _new_search(selection: Selection) -> None:
    state = st.session_state
    left, right = st.columns([1, 2])
    with left:
        st.text_input("Search name", key=NAME, max_chars=80, placeholder="search-<date>-<time>")
        st.text_input("Storage (empty: a journal file in the runs folder)", key=STORAGE,
                      placeholder="postgresql+psycopg://user@host/db",
                      help="A database lets workers on other machines join: they run the command this page shows, "
                           "with the same URL.")
        _data_picker()
        _trial_settings()
    with right:
        _space_editor(selection)
    problem = space_error(state[SPACE]) or storage_error(state[STORAGE]) or name_error(state[NAME])
    if problem:
        st.error(problem)
    # A value the space editor could not read left the JSON at its last readable space (its message is shown
    # above, beside the editor): starting now would search a space other than the one on screen.
    problem = problem or state.get(SPACE_WIDGET_ERROR)
    workers_and_trials()
    blocker = problem or ("enter an image folder first." if source_of(state) == "folder:" else None)
    st.button("Start search", type="primary", key="search.start", disabled=blocker is not None,
              on_click=_on_create, args=(selection.budget,),
              help=f"Start is disabled: {blocker}" if blocker else None)
    st.caption(f"Parameter budget {selection.budget:,} (set in the sidebar): a sampled net over it is rejected "
               f"before it trains.")


def workers_and_trials() -> None:
    one, two = st.columns(2)
    widgets.number_input(widgets.number_spec("Worker processes", 1, 64), WORKERS, one,
                         help="Local processes; their torch threads share the cores.")
    widgets.number_input(widgets.number_spec("Trials (for the whole search; 0: until stopped)", 0, 100_000), TRIALS,
                         two)


# --- a picked search ----------------------------------------------------------------------------------------


def seed_run_options(state: MutableMapping[str, Any], name: str, stamp: dict) -> None:
    """The workers / trials boxes of a picked search show what its last `search run` was started with (what was
    entered, also after a reload or on another server), once per pick so a user's edit stays."""
    if state.get(OPTIONS_OF) == name:
        return
    state[OPTIONS_OF] = name
    options = control.run_options(stamp)
    if options is not None:
        state[WORKERS], state[TRIALS] = options


def _controls(name: str, running: bool) -> None:
    runs_dir = _dirs()[0]
    stamp = control.read_process(name, runs_dir) or {}
    seed_run_options(st.session_state, name, stamp)
    if not running:
        workers_and_trials()
    start, stop, info = st.columns([1, 1, 4])
    start.button("Continue search", type="primary", key="search.continue", disabled=running, width="stretch",
                 on_click=_on_continue, args=(name,))
    stop.button("Stop", key="search.stop", disabled=not running, width="stretch", on_click=_on_stop, args=(name,))
    if running:
        info.caption(f":material/autorenew: **running** (pid {stamp.get('pid')}); the charts update every "
                     f"{POLL_SECONDS:g} s.")
    elif stamp:
        info.caption(f"Not running. Last message: {control.last_message(name, runs_dir) or '—'}")
    if stamp.get("command"):
        with st.expander("The command (run it on other machines with a database --storage)"):
            st.code(control.shown_command(stamp), language="bash", wrap_lines=True)


def _metrics(trial_rows: list[dict]) -> None:
    numbers = search_charts.counts(trial_rows)
    for column, state in zip(st.columns(len(search_charts.STATES)), search_charts.STATES):
        column.metric(state.capitalize(), numbers[state])


def live_view(name: str) -> list[dict] | None:
    """Counts, Pareto fronts, history and the trials table of `name`; its rows (None when it cannot be read)."""
    try:
        study, study_settings = load_search(name, control.storage_of(name, _dirs()[0]))
        trial_rows = with_slot_waits(rows(study), _dirs()[0])
    except ExplorerError as err:
        st.error(str(err))
        return None
    _metrics(trial_rows)
    for row in trial_rows:
        if row.get("waiting_for_slot"):
            st.info(f"Trial {row['number']} is {row['reason']}: at most {settings.max_runs()} runs train at once "
                    f"({settings.MAX_RUNS_ENV}); it starts when one ends.", icon=":material/hourglass_top:")
    budget = study_settings.get("budget")
    left, right = st.columns(2)
    left.plotly_chart(search_charts.pareto_figure(trial_rows, "params", budget, revision=name),
                      key="search.chart.params", config={"displayModeBar": False})
    right.plotly_chart(search_charts.pareto_figure(trial_rows, "flops", study_settings.get("flops_budget"),
                                                   revision=name),
                       key="search.chart.flops", config={"displayModeBar": False})
    history, importance = st.columns(2)
    history.plotly_chart(search_charts.history_figure(trial_rows, revision=name), key="search.chart.history",
                         config={"displayModeBar": False})
    complete = sum(r["state"] == "complete" for r in trial_rows)
    importances = _importances(name, complete)
    if importances:
        importance.plotly_chart(search_charts.importance_figure(importances, revision=name),
                                key="search.chart.importance", config={"displayModeBar": False})
    else:
        importance.caption(f"Parameter importances appear once {MIN_FOR_IMPORTANCE} trials are complete "
                           f"(now {complete}).")
    st.dataframe(search_charts.trials_table(trial_rows), hide_index=True, key="search.table",
                 column_config={"Params": st.column_config.NumberColumn(format="localized"),
                                "FLOPs": st.column_config.NumberColumn(format="localized"),
                                "Val accuracy": st.column_config.NumberColumn(format="%.1f %%"),
                                "Test accuracy": st.column_config.NumberColumn(format="%.1f %%"),
                                "Seconds": st.column_config.NumberColumn(format="%.1f")})
    return trial_rows


def with_slot_waits(trial_rows: list[dict], runs_dir: Any) -> list[dict]:
    """The rows, a running trial whose run waits for a training slot saying so in its reason."""
    waits = control.slot_waits(trial_rows, runs_dir)
    return [r | {"reason": waits[r["number"]], "waiting_for_slot": True} if r["number"] in waits else r
            for r in trial_rows]


@st.cache_data(max_entries=8, show_spinner=False)
def _importances(name: str, complete: int) -> dict[str, float]:
    """fANOVA importances, computed again only when another trial completes (`complete` is the cache key)."""
    try:
        study, _ = load_search(name, control.storage_of(name, _dirs()[0]))
    except ExplorerError:
        return {}
    return param_importances(study)


def _live_section(name: str, running: bool) -> None:
    def body() -> None:
        live_view(name)
        if running and not control.is_running(name, _dirs()[0]):
            st.rerun()  # whole-page rerun: the fragment is re-made without polling, Start comes back

    st.fragment(body, run_every=POLL_SECONDS if running else None)()


def _trial_actions(name: str) -> None:
    """Open a complete trial's network in the sidebar, or train it longer as a normal run."""
    try:
        study, study_settings = load_search(name, control.storage_of(name, _dirs()[0]))
    except ExplorerError:
        return  # the live view says why
    done = sorted((r for r in rows(study) if r["state"] == "complete" and r.get("config")),
                  key=lambda r: -(r["val_accuracy"] or 0))
    if not done:
        st.caption("Complete trials can be opened in Architecture or trained longer here.")
        return
    by_number = {r["number"]: r for r in done}
    if st.session_state.get(TRIAL) not in by_number:
        st.session_state[TRIAL] = done[0]["number"]
    pick, epochs, open_col, longer = st.columns([3, 1, 1.4, 1.2], vertical_alignment="bottom")
    pick.selectbox("Trial (best first)", list(by_number), key=TRIAL,
                   format_func=lambda n: search_charts.trial_label(by_number[n]))
    row = by_number[st.session_state[TRIAL]]
    st.session_state.setdefault(LONGER_EPOCHS, max(RECIPES["fast"].epochs, 2 * int(row.get("epochs") or 1)))
    widgets.number_input(widgets.number_spec("Epochs", 1, 1000), LONGER_EPOCHS, epochs)
    open_col.button("Open in Architecture", key="search.open", on_click=_on_open, args=(row, study_settings),
                    width="stretch")
    longer.button("Train longer", key="search.longer", on_click=_on_train_longer,
                  args=(name, row, study_settings["data"]), width="stretch",
                  help="A normal run (Train page) of this network with the trial's training settings.")


# --- the page -----------------------------------------------------------------------------------------------


def _picker() -> str | None:
    runs_dir = _dirs()[0]
    names = control.list_searches(runs_dir)
    state = st.session_state
    if state.get(PICK) not in (NEW, *names):
        # A reload or a restarted server: re-attach to a search that still runs.
        state[PICK] = next(iter(control.running_searches(runs_dir)), NEW)
    st.selectbox("Search", [NEW, *names], key=PICK,
                 help=f"Searches under {runs_dir}/searches/: journal files, and database searches this page "
                      f"created or watches.")
    if state[PICK] == NEW:
        _watch_form()
    return None if state[PICK] == NEW else state[PICK]


def watch(state: MutableMapping[str, Any]) -> str:
    """Link a search that lives in a database (created from the CLI or another machine) so the page lists it."""
    name, url = control.check_name(state[WATCH_NAME]), check_app_storage(state[WATCH_URL], _dirs()[0])
    load_search(name, url)  # ConfigError: no such search there, or the database cannot be reached
    control.link_storage(name, url, _dirs()[0])
    state[PICK] = name
    return name


def _on_watch() -> None:
    state = st.session_state
    state.pop(ERROR, None)
    try:
        watch(state)
    except ExplorerError as err:
        state[ERROR] = str(err)


def _watch_form() -> None:
    with st.expander("Watch a search in a database (workers on many machines)"):
        url, name, button = st.columns([3, 1.5, 1], vertical_alignment="bottom")
        url.text_input("Storage URL", key=WATCH_URL, placeholder="postgresql+psycopg://user@host/db")
        name.text_input("Name of the search", key=WATCH_NAME)
        button.button("Watch", key="search.watch", on_click=_on_watch, width="stretch")


def render(selection: Selection) -> None:
    state = st.session_state
    target = state.pop(SWITCH, None)
    if target:
        st.switch_page(navigation.page_path(target))
    init_state(state, selection.preset)
    name = _picker()
    if name is None:
        _new_search(selection)
        _error()
    else:
        running = control.is_running(name, _dirs()[0])
        _controls(name, running)
        _error()
        _live_section(name, running)
        _trial_actions(name)
    _remember(state)


def _error() -> None:
    if ERROR in st.session_state:
        st.error(st.session_state[ERROR])
