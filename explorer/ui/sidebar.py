"""The sidebar: preset picker, every architecture widget, input shape and budget -> a Selection."""

from __future__ import annotations

import streamlit as st

from explorer import schema
from explorer.arch.config import CLASSES_RANGE, MAX_INPUT_CHANNELS, MAX_INPUT_SIZE, ArchConfig, ConvBlock
from explorer.arch.cost import BUDGET_RANGE, fit_to_budget
from explorer.arch.fit import fit_largest, width_changes, widths
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
    st.session_state.pop(FIT_MESSAGE, None)


def _on_edit() -> None:
    keys.mark_custom(st.session_state)
    st.session_state.pop(FIT_MESSAGE, None)  # it described the widths before this edit


FIT_MESSAGE = "arch.fit_message"
FIT_MODE, FIT_LOCKED = "arch.fit_mode", "arch.fit_locked"
FIT_MODES = {"largest": "Cut the largest contributors first", "uniform": "Scale every width alike"}


def _on_auto_fit() -> None:
    """Fit the widths to the budget the chosen way; say which widths changed and by how much."""
    state = st.session_state
    state.pop(FIT_MESSAGE, None)
    try:
        cfg = keys.arch_from_values(state)
        shape, classes = keys.input_from_values(state)
        budget = int(state[keys.BUDGET])
        if state.get(FIT_MODE, "largest") == "uniform":
            fitted = fit_to_budget(cfg, budget, shape, classes)
        else:
            fitted = fit_largest(cfg, budget, shape, classes, locked=state.get(FIT_LOCKED) or ())
    except ConfigError as err:
        state[FIT_ERROR] = str(err)
        return
    state.pop(FIT_ERROR, None)
    changes = width_changes(cfg, fitted)
    state[FIT_MESSAGE] = ("Fitted: " + "; ".join(map(str, changes)) + ".") if changes else \
        "Nothing to change: the network already fits the budget."
    keys.apply_widths(state, fitted)
    keys.mark_custom(state)


def _auto_fit() -> None:
    sb = st.sidebar
    with sb.expander("Auto-fit widths to the budget", expanded=False, key="arch.panel.fit"):
        st.radio("How", list(FIT_MODES), format_func=FIT_MODES.get, key=FIT_MODE,
                 help="Largest contributors: cut, 10 % at a time, the width whose cut saves the most parameters "
                      "(only shrinks). Every width alike: one factor for all, up or down.")
        names = list(widths(keys.arch_from_values(st.session_state))) if _buildable() else []
        # A lock on a layer that is gone (fewer blocks now) is dropped: the picker refuses unknown choices.
        st.session_state[FIT_LOCKED] = [n for n in st.session_state.get(FIT_LOCKED) or [] if n in names]
        st.multiselect("Keep these layers' widths", names, key=FIT_LOCKED, placeholder="none locked",
                       disabled=st.session_state.get(FIT_MODE, "largest") == "uniform")
        st.button("Auto-fit widths to budget", on_click=_on_auto_fit, width="stretch", key="arch.fit")
    if FIT_ERROR in st.session_state:
        sb.error(st.session_state[FIT_ERROR])
    elif FIT_MESSAGE in st.session_state:
        sb.info(st.session_state[FIT_MESSAGE])


def _buildable() -> bool:
    try:
        keys.arch_from_values(st.session_state)
    except ConfigError:
        return False
    return True


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
            if name != "out_channels":  # widths: all at once in the Architecture page's blocks table
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
        widgets.draw_item(ArchConfig, "fc", i, keys.fc_key(i), container=columns[(i - 1) % 2], say_in=sb,
                          on_change=_on_edit, **PERSIST)


def _layer_options() -> None:
    sb = st.sidebar
    sb.subheader("Layers")
    for name in _group("layers"):
        widgets.draw(ArchConfig, name, keys.global_key(name), container=sb, on_change=_on_edit)


def _input_and_budget() -> None:
    sb = st.sidebar
    budget = widgets.number_spec("Parameter budget", *BUDGET_RANGE, step=1_000)
    widgets.number_input(budget, keys.BUDGET, sb, help="The study's budget is 256,000 parameters.")
    with sb.expander("Input shape and classes", expanded=False):
        st.caption("Set by the dataset chosen on the Train page; edit to explore other inputs.")
        c, h, w = st.columns(3)
        # A refusal's message goes under the row: a third of the sidebar is too narrow for it.
        for name, limit, key, column in (("C", MAX_INPUT_CHANNELS, keys.IN_C, c), ("H", MAX_INPUT_SIZE, keys.IN_H, h),
                                         ("W", MAX_INPUT_SIZE, keys.IN_W, w)):
            widgets.number_input(widgets.number_spec(name, 1, limit), key, column, say_in=st)
        widgets.number_input(widgets.number_spec("Classes", *CLASSES_RANGE), keys.NUM_CLASSES)


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
    _auto_fit()
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
