"""The Runs tab: every run in a sortable, filterable table; the Pareto chart (groups of seeds with their 95 %
intervals); curves of several runs overlaid; groups of seeds and whether two differ beyond the noise; a
side-by-side config diff; rename, delete (confirmed) and downloads."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer.arch.cost import DEFAULT_BUDGET
from explorer.errors import ExplorerError
from explorer.store import groups as run_groups
from explorer.store.events import ACTIVE_STATUSES
from explorer.store.runs import default_runs_dir, delete_run, list_runs, read_run, rename_run
from explorer.store.tables import (
    config_diff,
    curves_csv,
    filter_runs,
    metrics_csv,
    pareto_frontier,
    run_curves,
    runs_table,
)
from explorer.ui import eval_charts
from explorer.ui.state import BUDGET

FILTER = "runs.filter"
STATUSES = "runs.statuses"
PARETO_X = "runs.pareto_x"
PARETO_Y = "runs.pareto_y"
OVERLAY = "runs.overlay"
DIFF_A, DIFF_B, DIFF_ALL = "runs.diff_a", "runs.diff_b", "runs.diff_all"
GROUP_A, GROUP_B = "runs.group_a", "runs.group_b"
MANAGE = "runs.manage"
NEW_NAME = "runs.new_name"
CONFIRM_DELETE = "runs.confirm_delete"
MESSAGE = "runs.message"
X_LABELS = {"params": "parameters", "flops": "FLOPs"}
Y_LABELS = {"best_test_accuracy": "best test accuracy", "final_test_accuracy": "final test accuracy"}

COLUMN_CONFIG = {
    "id": st.column_config.TextColumn("run id"),
    "params": st.column_config.NumberColumn("params", format="localized"),
    "flops": st.column_config.NumberColumn("FLOPs", format="compact"),
    "best_test_accuracy": st.column_config.NumberColumn("best test acc.", format="percent"),
    "final_test_accuracy": st.column_config.NumberColumn("final test acc.", format="percent"),
    "epochs": st.column_config.NumberColumn("epochs", format="%d"),
    "wall_seconds": st.column_config.NumberColumn("wall time (s)", format="%.1f"),
    "images_per_second": st.column_config.NumberColumn(
        "training img/s", format="%.0f",
        help="Training images per second of training time (evaluation left out), over all epochs: the "
             "Train page shows the same number once a run has ended."),
}
SHOWN_COLUMNS = ["name", "preset", "status", "params", "flops", "best_test_accuracy", "final_test_accuracy",
                 "epochs", "wall_seconds", "images_per_second", "device", "data", "created", "id", "group", "seed",
                 "message"]
GROUP_COLUMNS = ["name", "n", "runs", "mean", "std", "low", "high", "images_per_second", "data", "id"]
GROUP_COLUMN_CONFIG = {
    "n": st.column_config.NumberColumn("n", help="finished runs: their final test accuracies are the sample"),
    "runs": st.column_config.NumberColumn("runs", help="every run of the group, finished or not"),
    "mean": st.column_config.NumberColumn("mean", format="percent"),
    "std": st.column_config.NumberColumn("std", format="percent"),
    "low": st.column_config.NumberColumn("95 % low", format="percent"),
    "high": st.column_config.NumberColumn("95 % high", format="percent"),
    "images_per_second": st.column_config.NumberColumn("training img/s", format="%.0f"),
    "id": st.column_config.TextColumn("group id"),
}


def _active_run_ids(table: pd.DataFrame) -> set[str]:
    """Runs whose process may still write their folder (the listing's status already checks the owner)."""
    return set(table.loc[table["status"].isin(ACTIVE_STATUSES), "id"])


TEXT_COLUMNS = ("name", "preset", "status", "device", "data", "created", "id", "group", "message")


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: empty text cells stay empty (the grid would print "None"), an edited network
    reads "custom" in the preset column."""
    shown = table.copy()
    shown["preset"] = shown["preset"].where(shown["preset"].notna(), "custom")
    for column in TEXT_COLUMNS:
        shown[column] = shown[column].map(lambda v: "" if v is None or v != v else str(v))  # v != v: NaN
    return shown


def frontier_per_dataset(table: pd.DataFrame, x: str, y: str) -> pd.Series:
    """The Pareto frontier of each dataset's runs: accuracies on different data do not compare."""
    frontier = pd.Series(False, index=table.index)
    for _, rows in table.groupby(table["data"].fillna("?"), sort=False):
        frontier |= pareto_frontier(rows, x, y).reindex(table.index, fill_value=False)
    return frontier


def default_order(table: pd.DataFrame, ids: list[str]) -> list[str]:
    """`ids` (newest first) ordered for the compare defaults: finished runs first, then the others that trained
    an epoch, then the rest; a running run, or one that failed before its first epoch, is a poor default."""
    finished = set(table.loc[table["status"] == "finished", "id"])
    trained = set(table.loc[table["epochs"].fillna(0) > 0, "id"])
    return sorted(ids, key=lambda i: (i not in finished, i not in trained))  # sorted() is stable: newest first


def _pick_defaults(keys: tuple[str, ...], ids: list[str], order: list[str]) -> None:
    """Give each picker whose value is gone (first visit, deleted run) the first default the others do not hold,
    so A and B never start on the same run."""
    for key in keys:
        if st.session_state.get(key) not in ids:
            taken = {st.session_state.get(other) for other in keys if other != key}
            st.session_state[key] = next((i for i in order if i not in taken), order[0])


def _problems(table: pd.DataFrame) -> None:
    """One line per run that needs attention (unreadable record, bad event line, interrupted): the rest list."""
    # A failed run's message is its error, already in the table; these others ask for an action.
    flagged = table[table["message"].notna() & (table["status"] != "failed")]
    for row in flagged.head(10).itertuples():
        st.warning(f"**{row.id}** ({row.status}): {row.message}")
    if len(flagged) > 10:
        st.caption(f"… and {len(flagged) - 10} more (see the message column).")


def _labels(table: pd.DataFrame) -> dict[str, str]:
    return {row.id: f"{row.name} ({row.id})" if row.name != row.id else str(row.id)
            for row in table.itertuples()}


def _download_html(label: str, fig: go.Figure, file_name: str, key: str) -> None:
    # Built only when clicked (a callable): each file embeds plotly.js (~4 MB) so it opens offline.
    st.download_button(label, lambda: eval_charts.figure_html(fig), file_name, "text/html", key=key,
                       on_click="ignore")


# ----------------------------------------------------------------------------------------------- sections


def _table_section(table: pd.DataFrame) -> pd.DataFrame:
    left, right = st.columns([2, 1])
    text = left.text_input("Filter", key=FILTER, placeholder="name, preset, recipe, data or id")
    statuses = sorted(set(table["status"].dropna()))
    chosen = right.multiselect("Status", statuses, key=STATUSES, placeholder="any status")
    shown = filter_runs(table, text, chosen)
    st.dataframe(display_table(shown)[SHOWN_COLUMNS], key="runs.table", hide_index=True, column_config=COLUMN_CONFIG,
                 width="stretch")
    st.caption(f"{len(shown)} of {len(table)} runs · click a column header to sort")
    _problems(table)
    st.download_button("Metrics (CSV)", metrics_csv(shown), "runs.csv", "text/csv", key="runs.download_csv",
                       on_click="ignore")
    return shown


def _pareto_section(table: pd.DataFrame, groups: list[run_groups.Sample]) -> None:
    st.subheader("Accuracy against cost")
    left, right = st.columns(2)
    st.session_state.setdefault(PARETO_X, "params")
    st.session_state.setdefault(PARETO_Y, "best_test_accuracy")
    x = left.segmented_control("Cost", list(X_LABELS), key=PARETO_X, required=True, format_func=X_LABELS.get)
    y = right.segmented_control("Accuracy", list(Y_LABELS), key=PARETO_Y, required=True, format_func=Y_LABELS.get)
    budget = int(st.session_state.get(BUDGET, DEFAULT_BUDGET)) if x == "params" else None
    frontier = frontier_per_dataset(table, x, y)
    # A group's sample is the final accuracy of its seeds: its error bar belongs on that axis only.
    seed_groups = pd.DataFrame([g.to_dict() for g in groups]) if groups and y == "final_test_accuracy" else None
    fig = eval_charts.pareto_chart(table, frontier, x, y, budget, seed_groups=seed_groups)
    st.plotly_chart(fig, key="runs.pareto", width="stretch")
    if groups and seed_groups is None:
        st.caption("Groups of seeds are drawn with their 95 % intervals against the final test accuracy: pick it "
                   "above.")
    on_front = table.loc[frontier, "name"].tolist()
    st.caption(f"Pareto frontier ({len(on_front)}): {', '.join(map(str, on_front)) or 'no finished runs yet'}. "
               "A run is on it when no other run on the same dataset is at least as accurate with fewer "
               + X_LABELS[x] + "; each dataset has its own frontier.")
    _download_html("Chart (HTML)", fig, f"pareto-{x}.html", "runs.download_pareto")


def _overlay_section(table: pd.DataFrame, labels: dict[str, str], runs_dir) -> None:
    st.subheader("Curves")
    ids = list(labels)
    # Nothing is overlaid until the user picks runs: a second Plotly chart redrawn on every rerun (a sidebar
    # slider moves the whole page) costs ~90 ms in the browser and on the server with hundreds of runs listed.
    st.session_state[OVERLAY] = [i for i in st.session_state.get(OVERLAY, []) if i in ids]  # deleted runs drop out
    chosen = st.multiselect("Runs to overlay", ids, key=OVERLAY, format_func=labels.get)
    if not chosen:
        st.info("Pick runs to compare their loss and accuracy per epoch.")
        return
    curves = {labels[i]: run_curves(i, runs_dir) for i in chosen if i in labels}
    fig = eval_charts.curves_overlay(curves)
    st.plotly_chart(fig, key="runs.overlay_chart", width="stretch")
    left, right = st.columns(2)
    with left:
        _download_html("Chart (HTML)", fig, "curves.html", "runs.download_overlay")
    right.download_button("Curves (CSV)", curves_csv(chosen, runs_dir), "curves.csv", "text/csv",
                          key="runs.download_curves", on_click="ignore")


def _diff_section(table: pd.DataFrame, labels: dict[str, str], runs_dir) -> None:
    st.subheader("Compare two configs")
    ids = list(labels)
    if len(ids) < 2:
        st.info("Two runs are needed for a diff.")
        return
    _pick_defaults((DIFF_A, DIFF_B), ids, default_order(table, ids))
    left, right = st.columns(2)
    a = left.selectbox("Run A", ids, key=DIFF_A, format_func=labels.get)
    b = right.selectbox("Run B", ids, key=DIFF_B, format_func=labels.get)
    show_all = st.toggle("Show every setting", key=DIFF_ALL)
    try:
        diff = config_diff(read_run(a, runs_dir), read_run(b, runs_dir), only_differences=not show_all)
    except ExplorerError as err:
        st.error(str(err))
        return
    _noise_verdict(table, a, b, runs_dir)
    if diff.empty:
        st.success("Same configuration.")
        return
    st.dataframe(diff.drop(columns="differs"), key="runs.diff", hide_index=True, width="stretch")


def _noise_verdict(table: pd.DataFrame, a: str, b: str, runs_dir) -> None:
    """Whether A's and B's accuracies differ beyond the seed's noise: their groups compared, when both have one."""
    group_of = dict(zip(table["id"], table["group"]))
    group_a, group_b = group_of.get(a), group_of.get(b)
    if not (isinstance(group_a, str) and isinstance(group_b, str)):
        st.caption("A single run moves by a few tenths of a point with the seed: train both designs with "
                   "“Repeat with N seeds” (Train page) to know whether their difference is beyond the noise.")
        return
    if group_a == group_b:
        st.caption(f"A and B are seeds of one group ({group_a}): their difference is the seed's noise.")
        return
    _verdict(group_a, group_b, runs_dir)


def _verdict(a: str, b: str, runs_dir) -> None:
    """stats.compare of two groups (or runs), as `python -m explorer compare A B` prints it."""
    try:
        first, second, result = run_groups.compare(a, b, runs_dir)
    except ExplorerError as err:
        st.warning(str(err))
        return
    st.metric("Verdict (final test accuracy, Welch's t-test)", result.verdict,
              f"{100 * result.diff:+.2f} points (A − B)", delta_color="off" if result.verdict == "within noise" else
              "normal")
    st.caption(f"A − B = {100 * result.diff:+.2f} points, 95 % interval {100 * result.low:+.2f} to "
               f"{100 * result.high:+.2f}, p = {result.p_value:.3g}; A: n {len(first.counted)}, B: n "
               f"{len(second.counted)}. “within noise” when the interval contains 0.")


def _groups_section(groups: list[run_groups.Sample], runs_dir) -> None:
    st.subheader("Groups of seeds")
    if not groups:
        st.info("No groups yet: “Repeat with N seeds” on the Train page (or `python -m explorer train … --repeat "
                "N`) trains one design with N seeds, and the group's mean and 95 % interval appear here.")
        return
    frame = pd.DataFrame([g.to_dict() for g in groups], columns=[*GROUP_COLUMNS, "run_ids"])
    st.dataframe(frame[GROUP_COLUMNS], key="runs.groups", hide_index=True, column_config=GROUP_COLUMN_CONFIG,
                 width="stretch")
    for row in frame[frame["n"] < 2].itertuples():
        st.caption(f"{row.id} has {row.n} finished run(s): no interval yet; train more seeds into it with "
                   f"`python -m explorer train … --group {row.id}`.")
    if len(groups) < 2:
        return
    labels = {g.id: f"{g.name} ({g.id}, n {len(g.counted)})" for g in groups}
    ids = list(labels)
    order = [g.id for g in groups if len(g.counted) >= 2] + [g.id for g in groups if len(g.counted) < 2]
    _pick_defaults((GROUP_A, GROUP_B), ids, order)
    left, right = st.columns(2)
    a = left.selectbox("Group A", ids, key=GROUP_A, format_func=labels.get)
    b = right.selectbox("Group B", ids, key=GROUP_B, format_func=labels.get)
    if a == b:
        st.info("Pick two different groups.")
        return
    _verdict(a, b, runs_dir)


def _manage_section(labels: dict[str, str], active: set[str], runs_dir) -> None:
    st.subheader("Rename or delete")
    ids = list(labels)
    if st.session_state.get(MANAGE) not in ids:
        # An active run refuses both actions: start on the newest run that can be renamed.
        st.session_state[MANAGE] = next((i for i in ids if i not in active), ids[0])
    run_id = st.selectbox("Run", ids, key=MANAGE, format_func=labels.get)
    left, right = st.columns([3, 1])
    new_name = left.text_input("New name", key=NEW_NAME, placeholder="e.g. study-bn, lr 0.05")
    right.write("")
    right.button("Rename", key="runs.rename", disabled=not new_name.strip(), on_click=_rename,
                 args=(run_id, runs_dir, active))
    _delete_controls(run_id, active, runs_dir)
    message = st.session_state.pop(MESSAGE, None)
    if message:
        (st.error if message.startswith("Cannot") else st.success)(message)


def _rename(run_id: str, runs_dir, active: set[str]) -> None:
    """The Rename button's callback (it runs before the page, so the pickers can still be written)."""
    new_name = st.session_state[NEW_NAME].strip()
    try:
        rename_run(run_id, new_name, runs_dir, active)
    except (ExplorerError, OSError) as err:
        st.session_state[MESSAGE] = f"Cannot do it: {err}"
        return
    st.session_state[MESSAGE] = f"Renamed {run_id} to “{new_name}”."
    # The browser keeps showing a picked option's old label (a widget with a key keeps its identity when its
    # labels change); writing the pickers' values back makes this run send them again, with the new name.
    for key in (MANAGE, DIFF_A, DIFF_B, OVERLAY, GROUP_A, GROUP_B):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def _delete_controls(run_id: str, active: set[str], runs_dir) -> None:
    if st.session_state.get(CONFIRM_DELETE) != run_id:
        if st.button("Delete run…", key="runs.delete"):
            st.session_state[CONFIRM_DELETE] = run_id
            st.rerun()
        return
    st.warning(f"Delete {run_id} with its checkpoint and metrics? This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button("Yes, delete it", key="runs.delete_yes", type="primary"):
        st.session_state.pop(CONFIRM_DELETE, None)
        _act(lambda: delete_run(run_id, runs_dir, active), f"Deleted {run_id}.")
    if no.button("Cancel", key="runs.delete_no"):
        st.session_state.pop(CONFIRM_DELETE, None)
        st.rerun()


def _act(action: Callable[[], object], success: str) -> None:
    try:
        action()
    except (ExplorerError, OSError) as err:
        st.session_state[MESSAGE] = f"Cannot do it: {err}"
    else:
        st.session_state[MESSAGE] = success
    st.rerun()


# ----------------------------------------------------------------------------------------------- page


def render() -> None:
    """The Runs tab."""
    st.header("Runs")
    runs_dir = default_runs_dir()
    records = list_runs(runs_dir)
    table = runs_table(records)
    if table.empty:
        st.info(f"No runs in `{runs_dir}` yet: train a network on the Train page and it appears here.")
        return
    _table_section(table)
    labels = _labels(table)
    groups = run_groups.group_summaries(runs_dir, records)
    _pareto_section(table, groups)
    _overlay_section(table, labels, runs_dir)
    _groups_section(groups, runs_dir)
    _diff_section(table, labels, runs_dir)
    _manage_section(labels, _active_run_ids(table), runs_dir)
