"""What every page shares: the run starter, the decoded datasets, the scan of available data, and which run the
Train page watches. Pages import these from here rather than from one another's panels.

The caches are st.cache_resource / st.cache_data, so one decoded copy of a dataset and one Runner serve every
session of this server.
"""

from __future__ import annotations

import streamlit as st

from explorer.engine.data import available_sources, load_dataset
from explorer.engine.dataset import Dataset
from explorer.store import settings
from explorer.store.runner import Runner

# The run the Train page watches, and the folded events it has read of it (session state keys).
RUN_ID = "train.run_id"
HISTORY = "train.history"


@st.cache_resource(show_spinner=False)
def runner(runs_dir: str, data_dir: str) -> Runner:
    """One Runner per runs/data folder pair, shared by every session of this server (it locks itself)."""
    return Runner(runs_dir, data_dir)


def current_runner() -> Runner:
    """The Runner of the configured runs and data folders."""
    return runner(str(settings.default_runs_dir()), str(settings.default_data_dir()))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def cached_dataset(source: str) -> Dataset:
    """The decoded dataset of `source`, once per server; a path typed in the browser must stay under the allowed
    data roots (DataError otherwise)."""
    settings.check_app_source(source)
    return load_dataset(source, settings.default_data_dir())


@st.cache_data(ttl=30, show_spinner=False)
def cached_sources() -> list[dict]:
    """What can be picked; a disk scan, refreshed every 30 s rather than on every rerun."""
    return available_sources(settings.default_data_dir())


def attach(run_id: str) -> None:
    """Watch `run_id` on the Train page (also after a reload: the id goes into the URL)."""
    st.session_state[RUN_ID] = run_id
    st.session_state.pop(HISTORY, None)
    st.query_params["run"] = run_id
