"""Widget keys and the two-way mapping between an ArchConfig and the sidebar's widget values.

Plain functions over a MutableMapping (st.session_state in the app, a dict in tests), no Streamlit import:
every widget has an explicit key, gets its value from session state (never `value=`), and the ArchConfig is
always rebuilt from those values, so a rerun, a page switch or a preset edit never loses what the user set.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from explorer import schema
from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import DEFAULT_BUDGET
from explorer.arch.presets import DEFAULT_PRESET, PRESETS, preset_label
from explorer.errors import ConfigError

CUSTOM = "custom"
PRESET = "arch.preset"
BASE_PRESET = "arch.base_preset"  # the preset last loaded: an edited network is named after it
BUDGET = "arch.budget"
N_CONV = "arch.n_conv"
N_FC = "arch.n_fc"
IN_C, IN_H, IN_W, NUM_CLASSES = "arch.in_c", "arch.in_h", "arch.in_w", "arch.num_classes"
# From the schema: every ConvBlock field is a per-block widget; every scalar ArchConfig field a global one
# (conv and fc are lists: a count widget plus one widget per item).
BLOCK_FIELDS = schema.names(ConvBlock)
GLOBAL_FIELDS = tuple(s.name for s in schema.specs(ArchConfig) if not s.kind.startswith("list["))
MAX_CONV_BLOCKS = schema.spec_of(ArchConfig, "conv").max_items
MAX_FC_LAYERS = schema.spec_of(ArchConfig, "fc").max_items
DEFAULT_INPUT = (3, 32, 32)
DEFAULT_CLASSES = 10


def global_key(name: str) -> str:
    """Key of an ArchConfig-wide widget, e.g. arch.dropout."""
    return f"arch.{name}"


BATCHNORM, DROPOUT, DROPOUT_CONV = global_key("batchnorm"), global_key("dropout"), global_key("dropout_conv")
ACTIVATION, HEAD = global_key("activation"), global_key("head")


def _typed(cls: type, name: str, value: Any) -> Any:
    """A widget value as its field's type (a float slider may hand back an int 0)."""
    kind = schema.spec_of(cls, name).kind
    return {"float": float, "int": int, "bool": bool}.get(kind, lambda v: v)(value)


def block_key(index: int, name: str) -> str:
    """Key of one conv block's widget; `index` counts from 1 like the layer names (conv1, conv2, ...)."""
    return f"arch.conv{index}.{name}"


def fc_key(index: int) -> str:
    return f"arch.fc{index}"


def preset_options() -> list[str]:
    return [*PRESETS, CUSTOM]


def arch_to_values(cfg: ArchConfig) -> dict[str, Any]:
    """Widget values for every field of `cfg`. Unused block/FC slots get copies of the last one, so
    raising the block count continues the network rather than starting from scratch."""
    values: dict[str, Any] = {N_CONV: len(cfg.conv), N_FC: len(cfg.fc)}
    for name in GLOBAL_FIELDS:
        values[global_key(name)] = _typed(ArchConfig, name, getattr(cfg, name))
    for i in range(1, MAX_CONV_BLOCKS + 1):
        block = cfg.conv[min(i, len(cfg.conv)) - 1]
        extra = i > len(cfg.conv)
        for name in BLOCK_FIELDS:
            value = getattr(block, name)
            # A copied block must not be a residual or pooled block by surprise.
            if extra and name == "residual":
                value = False
            if extra and name == "pool":
                value = "none"
            values[block_key(i, name)] = value
    last_fc = cfg.fc[-1] if cfg.fc else 64
    for i in range(1, MAX_FC_LAYERS + 1):
        values[fc_key(i)] = cfg.fc[i - 1] if i <= len(cfg.fc) else last_fc
    return values


def arch_from_values(values: Mapping[str, Any]) -> ArchConfig:
    """The ArchConfig the widgets describe; raises ConfigError with a message for the user."""
    blocks = tuple(
        ConvBlock(**{name: _typed(ConvBlock, name, values[block_key(i, name)]) for name in BLOCK_FIELDS})
        for i in range(1, int(values[N_CONV]) + 1)
    )
    fc = tuple(int(values[fc_key(i)]) for i in range(1, int(values[N_FC]) + 1))
    globals_ = {name: _typed(ArchConfig, name, values[global_key(name)]) for name in GLOBAL_FIELDS}
    return ArchConfig(conv=blocks, fc=fc, **globals_)


def load_preset(state: MutableMapping[str, Any], name: str) -> None:
    """Put preset `name`'s values into the widgets (no-op for 'custom')."""
    if name in PRESETS:
        state.update(arch_to_values(PRESETS[name]))
        state[PRESET] = state[BASE_PRESET] = name


def init_state(state: MutableMapping[str, Any]) -> None:
    """First run of a session: the default preset, budget and input shape. Later runs: fill only what is
    missing (a widget that was not drawn for a while may have lost its value)."""
    if PRESET not in state:
        load_preset(state, DEFAULT_PRESET)
    defaults = arch_to_values(PRESETS[DEFAULT_PRESET]) | {
        BASE_PRESET: DEFAULT_PRESET, BUDGET: DEFAULT_BUDGET, IN_C: DEFAULT_INPUT[0], IN_H: DEFAULT_INPUT[1],
        IN_W: DEFAULT_INPUT[2], NUM_CLASSES: DEFAULT_CLASSES,
    }
    for i in range(2, MAX_CONV_BLOCKS + 1):
        # A vanished block slot continues from the block before it, like arch_to_values does.
        for name in BLOCK_FIELDS:
            if block_key(i, name) not in state and block_key(i - 1, name) in state:
                default = state[block_key(i - 1, name)]
                defaults[block_key(i, name)] = {"residual": False, "pool": "none"}.get(name, default)
    for key, value in defaults.items():
        if key not in state:
            state[key] = value


def mark_custom(state: MutableMapping[str, Any]) -> None:
    """An architecture widget changed: the network is no longer the named preset."""
    state[PRESET] = CUSTOM


def apply_widths(state: MutableMapping[str, Any], cfg: ArchConfig) -> None:
    """Write the widths of `cfg` (same layout as the widgets) back into the widgets, e.g. after auto-fit."""
    for i, block in enumerate(cfg.conv, 1):
        state[block_key(i, "out_channels")] = block.out_channels
    for i, units in enumerate(cfg.fc, 1):
        state[fc_key(i)] = units


def apply_block_edits(state: MutableMapping[str, Any], edited_rows: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    """Write a blocks table's cell edits ({row: {field: value}}, rows from 0) into the block values; marks the
    network custom. A refused value (empty, out of range, not a choice) keeps the last valid one: the returned
    messages name the block, the field and what is allowed, one each."""
    refused = []
    for row, changes in edited_rows.items():
        index = int(row) + 1
        for name, value in changes.items():
            if name not in BLOCK_FIELDS:
                continue  # a read-only cost column
            spec = schema.spec_of(ConvBlock, name)
            try:
                if value is None:
                    raise ConfigError(f"conv{index} {name}: empty; use {schema.describe(spec)}.")
                if spec.kind == "int" and isinstance(value, float) and not value.is_integer():
                    raise ConfigError(f"conv{index} {name}: expected a whole number, got {value!r}; "
                                      f"use a value from {schema.value_range(spec)}.")
                typed = _typed(ConvBlock, name, value)
                schema.check_value(spec, typed, f"conv{index} ")
            except (ConfigError, TypeError, ValueError) as err:
                refused.append(f"{err} Kept {state[block_key(index, name)]!r}.")
                continue
            state[block_key(index, name)] = typed
            mark_custom(state)
    return refused


def set_input(state: MutableMapping[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> None:
    """The Train page's dataset choice sets the input shape and the number of classes of the network."""
    state[IN_C], state[IN_H], state[IN_W] = (int(v) for v in input_shape)
    state[NUM_CLASSES] = int(num_classes)


@dataclass(frozen=True)
class Selection:
    """What the sidebar describes: a buildable config or the reason it is not, plus input and budget."""

    cfg: ArchConfig | None
    error: str | None
    preset: str | None  # the preset, when the network is exactly one
    input_shape: tuple[int, int, int]
    num_classes: int
    budget: int
    base: str | None = None  # the preset it started from (edited or not)

    @property
    def name(self) -> str:
        """'fast', 'fast (edited: conv1.out_channels)' or 'custom'."""
        return preset_label(self.base, self.cfg)


def network_name(values: Mapping[str, Any]) -> str:
    """The sidebar network's name as the preset picker shows its 'custom' choice: 'fast (edited: fc)'; 'custom'
    while invalid or when the edits were undone (an option must not read like another: the picker tells its
    options apart by their text)."""
    try:
        name = preset_label(values.get(BASE_PRESET), arch_from_values(values))
    except ConfigError:
        return CUSTOM
    return CUSTOM if name in PRESETS else name


def input_from_values(values: Mapping[str, Any]) -> tuple[tuple[int, int, int], int]:
    shape = (int(values[IN_C]), int(values[IN_H]), int(values[IN_W]))
    return shape, int(values[NUM_CLASSES])
