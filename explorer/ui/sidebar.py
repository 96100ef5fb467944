"""The sidebar: preset picker, every architecture widget, input shape and budget -> a Selection."""

from __future__ import annotations

import streamlit as st

from explorer import schema
from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import fit_to_budget
from explorer.errors import ConfigError
from explorer.ui import state as keys
from explorer.ui import widgets
from explorer.ui.state import Selection

FIT_ERROR = "arch.fit_error"
# Keep a hidden block's values while the block count is lowered and raised again, on every page.
PERSIST = {"persist_state": "session"}


def _on_preset() -> None:
    keys.load_preset(st.session_state, st.session_state[keys.PRESET])
    st.session_state.pop(FIT_ERROR, None)


def _on_edit() -> None:
    keys.mark_custom(st.session_state)


def _on_auto_fit() -> None:
    """Scale every width uniformly to the largest network that fits the budget."""
    state = st.session_state
    try:
        cfg = keys.arch_from_values(state)
        shape, classes = keys.input_from_values(state)
        fitted = fit_to_budget(cfg, int(state[keys.BUDGET]), shape, classes)
    except ConfigError as err:
        state[FIT_ERROR] = str(err)
        return
    state.pop(FIT_ERROR, None)
    keys.apply_widths(state, fitted)
    keys.mark_custom(state)


def _block_label(i: int) -> str:
    s = st.session_state
    k = s[keys.block_key(i, "kernel")]
    parts = [f"conv{i}", f"{s[keys.block_key(i, 'out_channels')]} ch", f"{k}×{k} {s[keys.block_key(i, 'padding')]}"]
    if s[keys.block_key(i, "stride")] == 2:
        parts.append("stride 2")
    if s[keys.block_key(i, "pool")] != "none":
        parts.append(f"{s[keys.block_key(i, 'pool')]}-pool")
    if s[keys.block_key(i, "residual")]:
        parts.append("residual")
    return " · ".join(parts)


def _block_widgets(i: int) -> None:
    # One control per row, in the schema's order: the sidebar is too narrow for two side by side.
    # The key gives the panel an identity apart from its label (which summarizes the block, so changes with
    # every edit): the browser then keeps it open across edits instead of drawing a new, closed one.
    with st.sidebar.expander(_block_label(i), expanded=False, key=f"arch.panel.conv{i}"):
        for name in keys.BLOCK_FIELDS:
            widgets.draw(ConvBlock, name, keys.block_key(i, name), on_change=_on_edit, **PERSIST)


def _conv_stage() -> None:
    st.sidebar.subheader("Conv stage")
    conv = schema.spec_of(ArchConfig, "conv")
    st.sidebar.slider(conv.label, conv.min_items, conv.max_items, key=keys.N_CONV, on_change=_on_edit)
    for i in range(1, int(st.session_state[keys.N_CONV]) + 1):
        _block_widgets(i)


def _group(name: str) -> list[str]:
    """The scalar ArchConfig fields the schema puts in sidebar group `name`, in declaration order."""
    return [s.name for s in schema.specs(ArchConfig) if s.group == name and s.name in keys.GLOBAL_FIELDS]


def _classifier() -> None:
    sb = st.sidebar
    sb.subheader("Classifier")
    for name in _group("classifier"):
        widgets.draw(ArchConfig, name, keys.global_key(name), container=sb, on_change=_on_edit)
    fc = schema.spec_of(ArchConfig, "fc")
    sb.slider(fc.label, fc.min_items, fc.max_items, key=keys.N_FC, on_change=_on_edit)
    n_fc = int(st.session_state[keys.N_FC])
    columns = sb.columns(2) if n_fc else []
    for i in range(1, n_fc + 1):
        widgets.draw_item(ArchConfig, "fc", i, keys.fc_key(i), container=columns[(i - 1) % 2],
                          on_change=_on_edit, **PERSIST)


def _layer_options() -> None:
    sb = st.sidebar
    sb.subheader("Layers")
    for name in _group("layers"):
        widgets.draw(ArchConfig, name, keys.global_key(name), container=sb, on_change=_on_edit)


def _input_and_budget() -> None:
    sb = st.sidebar
    sb.number_input("Parameter budget", 1_000, 100_000_000, step=1_000, key=keys.BUDGET,
                    help="The study's budget is 256,000 parameters.")
    with sb.expander("Input shape and classes", expanded=False):
        st.caption("Set by the dataset chosen on the Train page; edit to explore other inputs.")
        c, h, w = st.columns(3)
        c.number_input("C", 1, 64, step=1, key=keys.IN_C)
        h.number_input("H", 1, 1024, step=1, key=keys.IN_H)
        w.number_input("W", 1, 1024, step=1, key=keys.IN_W)
        st.number_input("Classes", 2, 1000, step=1, key=keys.NUM_CLASSES)


def render() -> Selection:
    """Draw the sidebar and return what it describes (never raises on a bad config)."""
    state = st.session_state
    keys.init_state(state)
    st.sidebar.title("Architecture")
    custom = keys.network_name(state)  # computed once: the picker formats its options with it
    st.sidebar.selectbox("Preset", keys.preset_options(), key=keys.PRESET, on_change=_on_preset,
                         format_func=lambda name: custom if name == keys.CUSTOM else name,
                         help="The study's networks and budget-optimal ones. An edit names what changed: "
                              "'fast (edited: fc1)'.")
    _input_and_budget()
    _conv_stage()
    _classifier()
    _layer_options()
    st.sidebar.button("Auto-fit widths to budget", on_click=_on_auto_fit, width="stretch",
                      help="Scales every conv and FC width by one factor: the largest network within the budget.")
    if FIT_ERROR in state:
        st.sidebar.error(state[FIT_ERROR])
    return selection()


def selection() -> Selection:
    """What the sidebar's values describe (each page asks after the app has drawn the sidebar)."""
    state = st.session_state
    shape, classes = keys.input_from_values(state)
    preset = state[keys.PRESET] if state[keys.PRESET] != keys.CUSTOM else None
    try:
        cfg, error = keys.arch_from_values(state), None
    except ConfigError as err:
        cfg, error = None, str(err)
    return Selection(cfg=cfg, error=error, preset=preset, base=state.get(keys.BASE_PRESET), input_shape=shape,
                     num_classes=classes,
                     budget=int(state[keys.BUDGET]))
