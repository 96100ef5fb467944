"""The Search page's Sweep mode: pick one or two settings and their values (or replay the study), start the sweep
as `python -m explorer search run NAME` in a process of its own (explorer.search.control, as a search), and
watch accuracy against the values with error bars, live.

A sweep lives in the same place as a search (<runs>/searches/NAME/journal.log); only the sweeps are listed here.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import streamlit as st

from explorer.arch.presets import PRESETS
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ExplorerError
from explorer.search import control, study_replay
from explorer.search.sweep import (
    SWEEP_ATTR,
    create_sweep,
    grid,
    load_sweep,
    parse_set,
    sweep_settings,
    sweep_status,
    sweepable_specs,
)
from explorer.store import settings as store_settings
from explorer.ui import sweep_charts, widgets
from explorer.ui.state import Selection

POLL_SECONDS = 2.0
NEW, NONE = "➕ New sweep", "(none)"
PICK, NAME, DATA, PRESET, RECIPE = "sweep.pick", "sweep.name", "sweep.data", "sweep.preset", "sweep.recipe"
FIRST, FIRST_VALUES, SECOND, SECOND_VALUES = "sweep.first", "sweep.first_values", "sweep.second", "sweep.second_values"
REPEAT, EPOCHS, WORKERS, ERROR = "sweep.repeat", "sweep.epochs", "sweep.workers", "sweep.error"
SCALE, SHORT_ONLY = "sweep.scale", "sweep.short_only"
DEFAULTS = {NAME: "", DATA: "synthetic:2000", RECIPE: DEFAULT_RECIPE, FIRST: "train.batch_size",
            FIRST_VALUES: "32,64,128,256", SECOND: NONE, SECOND_VALUES: "", REPEAT: 3, EPOCHS: 2, WORKERS: 1,
            SCALE: 1.0, SHORT_ONLY: False}


def _runs_dir() -> Path:
    return store_settings.default_runs_dir()


def _data_dir() -> Path:
    return store_settings.default_data_dir()


def _storage(name: str) -> str:
    return control.storage_of(name, _runs_dir())


@st.cache_data(max_entries=256, show_spinner=False)
def _is_sweep(name: str, storage: str, mtime: float) -> bool:
    """Whether search `name` is a sweep (read once per journal change: `mtime` is the cache key)."""
    try:
        load_sweep(name, storage)
    except ExplorerError:
        return False
    return True


def list_sweeps() -> list[str]:
    runs_dir = _runs_dir()
    found = []
    for name in control.list_searches(runs_dir):
        journal = control.search_dir(name, runs_dir) / control.JOURNAL_NAME
        mtime = journal.stat().st_mtime if journal.is_file() else 0.0
        if _is_sweep(name, _storage(name), mtime):
            found.append(name)
    return found


def create_and_start(state: MutableMapping[str, Any]) -> str:
    """Check the form, create the sweep and start it; its name. ExplorerError (nothing written) when bad."""
    name = control.check_name(state[NAME])
    sets = [parse_set(f"{state[FIRST]}={state[FIRST_VALUES]}")]
    if state[SECOND] != NONE:
        sets.append(parse_set(f"{state[SECOND]}={state[SECOND_VALUES]}"))
    settings = sweep_settings(grid(sets), str(state[DATA]).strip(), int(state[REPEAT]), state[PRESET], state[RECIPE],
                              epochs=int(state[EPOCHS]), data_dir=_data_dir())
    create_sweep(name, _storage(name), settings)
    control.start(name, int(state[WORKERS]), runs_dir=_runs_dir(), data_dir=_data_dir())
    return name


def replay_study(state: MutableMapping[str, Any]) -> str:
    """Create (or find) the study's sweeps and start each that has runs left; the name of the first."""
    sweeps = study_replay.prepare(str(state[DATA]).strip(), int(state[REPEAT]), float(state[SCALE]), _storage,
                                  data_dir=_data_dir(), short_only=bool(state[SHORT_ONLY]))
    for name in sweeps:
        if not control.is_running(name, _runs_dir()):
            control.start(name, int(state[WORKERS]), runs_dir=_runs_dir(), data_dir=_data_dir())
    return next(iter(sweeps))


def _act(action: Any) -> None:
    state = st.session_state
    state.pop(ERROR, None)
    try:
        state[PICK] = action(state)
    except ExplorerError as err:
        state[ERROR] = str(err)


def _on_start(name: str) -> None:
    st.session_state.pop(ERROR, None)
    try:
        control.start(name, int(st.session_state[WORKERS]), runs_dir=_runs_dir(), data_dir=_data_dir())
    except ExplorerError as err:
        st.session_state[ERROR] = str(err)


def _setting_inputs() -> None:
    names = list(sweepable_specs())
    first, first_values = st.columns([1, 2])
    first.selectbox("Setting", names, key=FIRST)
    first_values.text_input("Its values (comma-separated; list items joined with +)", key=FIRST_VALUES)
    second, second_values = st.columns([1, 2])
    second.selectbox("Second setting (optional)", [NONE, *names], key=SECOND)
    second_values.text_input("Its values", key=SECOND_VALUES, disabled=st.session_state[SECOND] == NONE)


def _new_sweep() -> None:
    name, data = st.columns(2)
    name.text_input("Name", key=NAME, placeholder="bs1")
    data.text_input("Data source", key=DATA, help="synthetic:N, cifar10, cifar10:DIR or folder:PATH")
    preset, recipe = st.columns(2)
    preset.selectbox("Network (preset)", sorted(PRESETS), key=PRESET)
    recipe.selectbox("Training recipe", list(RECIPES), key=RECIPE)
    _setting_inputs()
    repeat, epochs, workers = st.columns(3)
    widgets.number_input(widgets.number_spec("Seeds per point (repeat)", 1, 50), REPEAT, repeat)
    widgets.number_input(widgets.number_spec("Epochs per run", 1, 1000), EPOCHS, epochs)
    widgets.number_input(widgets.number_spec("Worker processes", 1, 64), WORKERS, workers)
    st.button("Create and start the sweep", type="primary", key="sweep.create", on_click=_act,
              args=(create_and_start,))
    with st.expander("Replay the study (its steps with seeds: its accuracy beside ours, a verdict per conclusion)"):
        scale, short = st.columns(2)
        factor = widgets.number_spec("Scale the study's epochs (2, and 12 for its long runs) by", 0.05, 10.0,
                                     step=0.25, fmt="%g")
        widgets.number_input(factor, SCALE, scale)
        short.checkbox("Leave out the long runs", key=SHORT_ONLY)
        st.caption("Uses the data source, seeds per point and worker processes above.")
        st.button("Replay the study", key="sweep.replay", on_click=_act, args=(replay_study,))


def _replay_of(name: str) -> dict[str, str] | None:
    """The study replay's sweeps (both that exist) when `name` is one of them."""
    prefix = name.removesuffix("-short").removesuffix("-long")
    if prefix == name:
        return None
    names = [n for n in study_replay.sweep_names(prefix).values() if n in control.list_searches(_runs_dir())]
    return {n: _storage(n) for n in names}


def live_view(name: str) -> dict | None:
    """The sweep's chart and table (and the study table for a replay); its status, None when unreadable."""
    try:
        study, settings = load_sweep(name, _storage(name))
        summary = sweep_status(study, settings)
    except ExplorerError as err:
        st.error(str(err))
        return None
    st.caption(f"{summary['complete']} of {summary['runs']} runs complete · {settings['data']} · "
               f"{settings[SWEEP_ATTR]['preset']} / {settings[SWEEP_ATTR]['recipe']} · "
               f"{settings['trial_epochs'] or '—'} epochs (trained on train minus a 10 % validation split)")
    st.plotly_chart(sweep_charts.sweep_figure(summary["points"], summary["keys"], revision=name),
                    key="sweep.chart", config={"displayModeBar": False})
    st.dataframe(sweep_charts.points_table(summary["points"]), hide_index=True, key="sweep.table")
    replay = _replay_of(name) if (settings[SWEEP_ATTR].get("label") or "").startswith("the study") else None
    if replay:
        result = study_replay.report(replay)
        st.subheader("The study replayed")
        st.dataframe(sweep_charts.replay_steps_table(result["steps"]), hide_index=True, key="sweep.replay.steps")
        st.dataframe(sweep_charts.replay_conclusions_table(result["conclusions"]), hide_index=True,
                     key="sweep.replay.conclusions")
    return summary


def _picked(name: str) -> None:
    running = control.is_running(name, _runs_dir())
    start, stop, info = st.columns([1, 1, 4])
    start.button("Continue", type="primary", key="sweep.continue", disabled=running, on_click=_on_start,
                 args=(name,))
    stop.button("Stop", key="sweep.stop", disabled=not running, on_click=control.stop, args=(name, _runs_dir()))
    info.caption(f":material/autorenew: **running**; updated every {POLL_SECONDS:g} s." if running else
                 f"Not running. {control.last_message(name, _runs_dir())}")
    _error()

    def body() -> None:
        live_view(name)
        if running and not control.is_running(name, _runs_dir()):
            st.rerun()

    st.fragment(body, run_every=POLL_SECONDS if running else None)()


def render(selection: Selection) -> None:
    state = st.session_state
    for key, value in DEFAULTS.items():
        state.setdefault(key, value)
    state.setdefault(PRESET, selection.preset if selection.preset in PRESETS else "tutorial")
    sweeps = list_sweeps()
    if state.get(PICK) not in (NEW, *sweeps):
        state[PICK] = NEW
    st.selectbox("Sweep", [NEW, *sweeps], key=PICK, help="Sweeps under the runs folder's searches/.")
    if state[PICK] == NEW:
        _new_sweep()
        _error()
    else:
        _picked(state[PICK])


def _error() -> None:
    if ERROR in st.session_state:
        st.error(st.session_state[ERROR])
