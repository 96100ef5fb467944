"""The sidebar: preset picker, every architecture widget, input shape and budget -> a Selection."""

from __future__ import annotations

import streamlit as st

from explorer.arch.config import (
    ACTIVATIONS,
    HEADS,
    KERNELS,
    MAX_CHANNELS,
    MAX_CONV_BLOCKS,
    MAX_FC_LAYERS,
    MAX_UNITS,
    PADDINGS,
    POOLS,
    STRIDES,
)
from explorer.arch.cost import fit_to_budget
from explorer.errors import ConfigError
from explorer.ui import state as keys
from explorer.ui.state import Selection

FIT_ERROR = "arch.fit_error"
# Keep a hidden block's values while the block count is lowered and raised again.
PERSIST = {"persist_state": "page"}

ACTIVATION_LABELS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU"}
HEAD_LABELS = {"flatten": "flatten", "avgpool": "global avg pool", "maxpool": "global max pool"}


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
    key = keys.block_key
    with st.sidebar.expander(_block_label(i), expanded=False):
        st.number_input("Out channels", 1, MAX_CHANNELS, step=1, key=key(i, "out_channels"),
                        on_change=_on_edit, **PERSIST)
        # One control per row: the sidebar is too narrow for two segmented controls side by side.
        st.segmented_control("Kernel (k×k)", KERNELS, key=key(i, "kernel"), required=True, on_change=_on_edit,
                             **PERSIST)
        st.segmented_control("Padding", PADDINGS, key=key(i, "padding"), required=True, on_change=_on_edit,
                             **PERSIST, help="'same' keeps H×W (pads k//2); 'valid' shrinks the map by k−1.")
        st.segmented_control("Stride", STRIDES, key=key(i, "stride"), required=True, on_change=_on_edit,
                             **PERSIST)
        st.segmented_control("Pooling after (2×2)", POOLS, key=key(i, "pool"), required=True, on_change=_on_edit,
                             **PERSIST)
        st.checkbox("Residual (identity skip)", key=key(i, "residual"), on_change=_on_edit, **PERSIST,
                    help="Adds the block's input to its output; needs equal widths, stride 1, padding 'same'.")


def _conv_stage() -> None:
    st.sidebar.subheader("Conv stage")
    st.sidebar.slider("Conv blocks", 1, MAX_CONV_BLOCKS, key=keys.N_CONV, on_change=_on_edit)
    for i in range(1, int(st.session_state[keys.N_CONV]) + 1):
        _block_widgets(i)


def _classifier() -> None:
    sb = st.sidebar
    sb.subheader("Classifier")
    sb.selectbox("Head", HEADS, key=keys.HEAD, on_change=_on_edit, format_func=HEAD_LABELS.get,
                 help="flatten keeps every position; global pooling keeps one value per channel.")
    sb.slider("Hidden FC layers", 0, MAX_FC_LAYERS, key=keys.N_FC, on_change=_on_edit)
    n_fc = int(st.session_state[keys.N_FC])
    columns = sb.columns(2) if n_fc else []
    for i in range(1, n_fc + 1):
        columns[(i - 1) % 2].number_input(f"fc{i} units", 1, MAX_UNITS, step=1, key=keys.fc_key(i),
                                          on_change=_on_edit, **PERSIST)


def _layer_options() -> None:
    sb = st.sidebar
    sb.subheader("Layers")
    sb.selectbox("Activation", ACTIVATIONS, key=keys.ACTIVATION, on_change=_on_edit,
                 format_func=ACTIVATION_LABELS.get)
    sb.toggle("BatchNorm after every conv and hidden FC", key=keys.BATCHNORM, on_change=_on_edit)
    sb.slider("Dropout rate (hidden FC layers)", 0.0, 0.9, step=0.05, key=keys.DROPOUT, on_change=_on_edit)
    sb.checkbox("Dropout on conv blocks too", key=keys.DROPOUT_CONV, on_change=_on_edit)


def _input_and_budget() -> None:
    sb = st.sidebar
    sb.number_input("Parameter budget", 1_000, 100_000_000, step=1_000, key=keys.BUDGET,
                    help="The study's budget is 256,000 parameters.")
    with sb.expander("Input shape and classes", expanded=False):
        st.caption("Set by the dataset chosen in the Train tab; edit to explore other inputs.")
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
    st.sidebar.selectbox("Preset", keys.preset_options(), key=keys.PRESET, on_change=_on_preset,
                         help="The study's networks and budget-optimal ones. Any edit turns this into 'custom'.")
    _input_and_budget()
    _conv_stage()
    _classifier()
    _layer_options()
    st.sidebar.button("Auto-fit widths to budget", on_click=_on_auto_fit, width="stretch",
                      help="Scales every conv and FC width by one factor: the largest network within the budget.")
    if FIT_ERROR in state:
        st.sidebar.error(state[FIT_ERROR])
    shape, classes = keys.input_from_values(state)
    preset = state[keys.PRESET] if state[keys.PRESET] != keys.CUSTOM else None
    try:
        cfg, error = keys.arch_from_values(state), None
    except ConfigError as err:
        cfg, error = None, str(err)
    return Selection(cfg=cfg, error=error, preset=preset, input_shape=shape, num_classes=classes,
                     budget=int(state[keys.BUDGET]))
