"""The conv blocks as one editable table on the Architecture page: every block's width (and its other settings)
visible at once, with what each block costs beside it.

The columns come from the settings schema (explorer.schema specs of ConvBlock): a field added to ConvBlock gets
a column, with its label, range or choices and help, without an edit here. The table is keyed by a
version that moves on when an edit made elsewhere (the sidebar, a preset, auto-fit, a link) would otherwise
show the table's old cell edits over the new values.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from explorer import schema
from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import ModelCost
from explorer.schema import Spec
from explorer.ui import state as keys

ERRORS = "arch.blocks_errors"
KEY, VERSION = "arch.blocks", "arch.blocks_version"
INDEX_PX = 70  # the row names' column: a fixed width, so the browser tests know where the width cells are
WIDTH = "out_channels"
COST_COLUMNS = {
    "params": st.column_config.NumberColumn("params", format="%,d", help="Parameters of the block: conv + BatchNorm."),
    "output": st.column_config.TextColumn("output", help="C×H×W after the block (after its pooling)."),
}


def column_config(spec: Spec) -> Any:
    """The editor column of one ConvBlock setting, from its declaration."""
    common = {"label": spec.label, "help": spec.help or None, "required": True}
    if spec.kind == "bool":
        return st.column_config.CheckboxColumn(**common)
    if spec.choices:
        return st.column_config.SelectboxColumn(**common, options=list(spec.choices), format_func=spec.label_of)
    if spec.kind in ("int", "float"):
        integer = spec.kind == "int"
        return st.column_config.NumberColumn(**common, min_value=spec.low, max_value=spec.high,
                                             step=spec.step or (1 if integer else None),
                                             format="%d" if integer else spec.fmt)
    return st.column_config.TextColumn(**common, disabled=True)


def blocks_frame(cfg: ArchConfig, cost: ModelCost) -> pd.DataFrame:
    """One row per conv block: the width, its cost, its output shape, then every other ConvBlock setting."""
    rows = []
    for i, block in enumerate(cfg.conv, 1):
        name = f"conv{i}"
        layers = [layer for layer in cost.layers if layer.name == name or layer.name.startswith(name + ".")]
        row = {WIDTH: block.out_channels, "params": sum(layer.params for layer in layers),
               "output": "×".join(map(str, layers[-1].out_shape))}
        rows.append(row | {field: getattr(block, field) for field in keys.BLOCK_FIELDS if field != WIDTH})
    return pd.DataFrame(rows, index=[f"conv{i}" for i in range(1, len(cfg.conv) + 1)])


def _on_edit(editor_key: str) -> None:
    edits = (st.session_state.get(editor_key) or {}).get("edited_rows") or {}
    st.session_state[ERRORS] = keys.apply_block_edits(st.session_state, edits)
    # The edits now live in the blocks: a fresh editor draws them. Kept in the old editor, its browser side
    # would send them back once its data changed, a second script run for every edit.
    st.session_state[VERSION] = st.session_state.get(VERSION, 0) + 1


def _editor_key(frame: pd.DataFrame) -> str:
    """The editor's key. It keeps its cell edits across reruns (a fixed-row editor keyed by the caller keeps
    them while only values change), and they agree with the blocks once the edit is applied; when something
    else changed an edited block (the sidebar, a preset, auto-fit, a link) or a refused edit was kept back, an
    old edit would show over the new value: then the key moves on and the table is drawn anew."""
    state = st.session_state
    version = state.get(VERSION, 0)
    edits = (state.get(f"{KEY}.{version}") or {}).get("edited_rows") or {}
    stale = any(int(row) >= len(frame) or name not in frame.columns or frame.iloc[int(row)][name] != value
                for row, changes in edits.items() for name, value in changes.items())
    if stale:
        state[VERSION] = version = version + 1
    return f"{KEY}.{version}"


def render(cfg: ArchConfig, cost: ModelCost) -> None:
    """The editable blocks table; a refused cell keeps the block's last valid value and says why."""
    frame = blocks_frame(cfg, cost)
    editor_key = _editor_key(frame)
    config = {spec.name: column_config(spec) for spec in schema.specs(ConvBlock)} | COST_COLUMNS
    config["_index"] = st.column_config.TextColumn("block", width=INDEX_PX)
    with st.container(key="arch-blocks"):
        st.data_editor(frame, key=editor_key, column_config=config, num_rows="fixed", disabled=list(COST_COLUMNS),
                       on_change=_on_edit, args=(editor_key,), width="stretch")
    for message in st.session_state.get(ERRORS) or []:
        st.error(message)
