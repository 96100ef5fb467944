"""The search space as widgets drawn from the settings schema, kept in step with its JSON text.

The settings offered are those the schema declares `searchable` (explorer.search.space.section_specs). Every
entry of the space gets a row: how it is searched (fixed, a range, choices, or not searched) and the
widgets for that — number boxes bounded by the schema's limits for a range, a multiselect of the schema's
choices (or of every combination, for a list such as `augment`), a JSON value when fixed. "Add a setting" puts
any other schema field into the space. The JSON text (under the widgets, also for pasting or loading a file)
stays the one source of truth: a widget edit rewrites it, an edit of the text re-seeds the widgets.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import MutableMapping
from typing import Any

import streamlit as st

from explorer.errors import ConfigError
from explorer.schema import REQUIRED, Spec
from explorer.search.space import load_space, section_specs
from explorer.ui import widgets

SECTIONS = ("arch", "train")
MODES = ("fixed", "range", "choices", "not searched")
PREFIX = "search.space_w."
SEEDED, ENTRIES, ADD = PREFIX + "seeded", PREFIX + "entries", PREFIX + "add"


def key(section: str, name: str, part: str) -> str:
    return f"{PREFIX}{section}.{name}.{part}"


def numeric(spec: Spec) -> bool:
    return spec.kind in ("int", "float") and not spec.choices


def options(spec: Spec) -> list[Any] | None:
    """What a multiselect offers, None when the choices are typed (numbers without a fixed set)."""
    if spec.kind == "bool":
        return [False, True]
    if spec.kind == "list[str]" and spec.choices:
        subsets = itertools.chain.from_iterable(itertools.combinations(spec.choices, n)
                                                for n in range(len(spec.choices), -1, -1))
        return [",".join(s) or "none" for s in subsets]
    return list(spec.choices) or None


def option_label(spec: Spec, value: Any) -> str:
    """How a choice reads: the schema's labels ("flip,crop" -> "horizontal flip + random crop")."""
    if spec.kind == "list[str]":
        return " + ".join(spec.labels.get(p, p) for p in value.split(",")) if value != "none" else "none"
    return spec.labels.get(value, str(value))


def _as_option(spec: Spec, value: Any) -> Any:
    return (",".join(value) or "none") if spec.kind == "list[str]" else value


def _from_option(spec: Spec, value: Any) -> Any:
    return [p for p in value.split(",") if p != "none"] if spec.kind == "list[str]" else value


def _number(spec: Spec, text: str) -> Any:
    value = float(text)
    return int(value) if spec.kind == "int" else value


def seed(state: MutableMapping[str, Any], space: dict) -> None:
    """Widget values from `space` (after a new text, a reset, a loaded file)."""
    entries = {}
    for section in SECTIONS:
        specs = section_specs(section)
        entries[section] = [n for n in space.get(section, {}) if n in specs]
        for name in entries[section]:
            _seed_entry(state, section, name, space[section][name], specs[name])
    state[ENTRIES] = entries


def _seed_entry(state: MutableMapping[str, Any], section: str, name: str, entry: Any, spec: Spec) -> None:
    if isinstance(entry, dict) and "low" in entry:
        cast = float if spec.kind == "float" else int  # a number box refuses a value of another type than its limits
        state[key(section, name, "mode")] = "range"
        state[key(section, name, "low")] = cast(entry["low"])
        state[key(section, name, "high")] = cast(entry["high"])
        state[key(section, name, "log")] = bool(entry.get("log"))
    elif isinstance(entry, dict) and "choices" in entry:
        state[key(section, name, "mode")] = "choices"
        if options(spec) is None:
            state[key(section, name, "typed")] = ", ".join(map(str, entry["choices"]))
        else:
            state[key(section, name, "choices")] = [_as_option(spec, c) for c in entry["choices"]]
    else:
        state[key(section, name, "mode")] = "fixed"
        state[key(section, name, "value")] = json.dumps(entry)


def range_defaults(state: MutableMapping[str, Any], section: str, name: str, spec: Spec) -> None:
    """A setting switched to "range" starts at its declared search range (the schema's search_range, else its
    limits), log-scaled when the schema says so; values already there are kept."""
    low, high = spec.search_span
    cast = float if spec.kind == "float" else int
    state.setdefault(key(section, name, "low"), cast(low))
    state.setdefault(key(section, name, "high"), cast(high))
    state.setdefault(key(section, name, "log"), spec.scale == "log" and low > 0)


def _entry(state: MutableMapping[str, Any], section: str, name: str, spec: Spec) -> Any:
    """The space entry the widgets of one setting describe; ConfigError naming it when they cannot."""
    mode = state[key(section, name, "mode")]
    where = f"space {section}.{name}"
    try:
        if mode == "range":
            range_defaults(state, section, name, spec)
            entry = {end: widgets.field_value(spec, state[key(section, name, end)]) for end in ("low", "high")}
            return entry | ({"log": True} if state.get(key(section, name, "log")) else {})
        if mode == "choices":
            if options(spec) is None:
                text = str(state.get(key(section, name, "typed"), ""))
                return {"choices": [_number(spec, part) for part in text.split(",") if part.strip()]}
            return {"choices": [_from_option(spec, c) for c in state.get(key(section, name, "choices"), [])]}
        return json.loads(state[key(section, name, "value")])
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: cannot read the value; numbers separated by commas, or JSON.") from None


def space_from_widgets(state: MutableMapping[str, Any], base: dict) -> dict:
    """`base` (the space the text held) with every entry the widgets describe; "not searched" drops it."""
    space = {k: v for k, v in base.items() if k not in SECTIONS}
    for section in SECTIONS:
        specs = section_specs(section)
        part = {}
        for name in state[ENTRIES][section]:
            if state[key(section, name, "mode")] != "not searched":
                part[name] = _entry(state, section, name, specs[name])
        space[section] = part
    return space


def _write_back(space_key: str, error_key: str) -> None:
    """A widget moved: the JSON text follows (ConfigError when a typed value cannot be read)."""
    state = st.session_state
    state.pop(error_key, None)
    try:
        base = json.loads(state[space_key])
        text = json.dumps(space_from_widgets(state, base), indent=2)
    except (ConfigError, ValueError) as err:
        state[error_key] = str(err)
        return
    state[space_key] = state[SEEDED] = text


def _add(space_key: str, error_key: str, recipe_defaults: dict) -> None:
    """Put the picked setting into the space, fixed at its recipe/preset value; then write the text."""
    state = st.session_state
    picked = state.get(ADD)
    if not picked:
        return
    section, name = picked.split(".", 1)
    value = initial_value(section_specs(section)[name], recipe_defaults.get(name, REQUIRED))
    state[key(section, name, "mode")] = "fixed"
    state[key(section, name, "value")] = json.dumps(value)
    state[ENTRIES][section].append(name)
    state[ADD] = None
    _write_back(space_key, error_key)


def initial_value(spec: Spec, known: Any = REQUIRED) -> Any:
    """A setting's value when it is added to the space: the recipe's / preset's, else its declared default, else
    the low end or first choice (JSON-ready: tuples become lists)."""
    for value in (known, spec.default):
        if value is not REQUIRED and value is not None:
            return list(value) if isinstance(value, tuple) else value
    if spec.kind.startswith("list"):
        return [int(spec.low or 1)] if spec.kind == "list[int]" else []
    return spec.choices[0] if spec.choices else (spec.low if spec.low is not None else 0)


def modes(spec: Spec) -> list[str]:
    """How a setting can be searched: a range only for numbers without fixed choices; a list of ints is fixed."""
    if spec.kind == "list[int]":
        return ["fixed", "not searched"]
    return [m for m in MODES if m != "range" or numeric(spec)]


def _row(section: str, name: str, spec: Spec, space_key: str, error_key: str) -> None:
    label, mode_col, values = st.columns([1.4, 1, 2.6], vertical_alignment="bottom")
    label.markdown(f"**{spec.label}**  \n`{section}.{name}`", help=spec.help or None)
    args = {"on_change": _write_back, "args": (space_key, error_key)}
    mode = mode_col.selectbox("How", modes(spec), key=key(section, name, "mode"), label_visibility="collapsed",
                              **args)
    if mode == "range":
        range_defaults(st.session_state, section, name, spec)
        low, high, log = values.columns([2, 2, 1], vertical_alignment="bottom")
        fmt = "%g" if spec.kind == "float" else spec.fmt
        for end, column in (("low", low), ("high", high)):
            box = dataclasses.replace(spec, label=f"{spec.label} ({end} end)", fmt=fmt)
            widgets.number_input(box, key(section, name, end), column, label=end, **args)
        log.checkbox("log", key=key(section, name, "log"), **args)
    elif mode == "choices" and options(spec) is None:
        values.text_input("values (comma-separated)", key=key(section, name, "typed"), **args)
    elif mode == "choices":
        values.multiselect("choices", options(spec), key=key(section, name, "choices"),
                           format_func=lambda v: option_label(spec, v), **args)
    elif mode == "fixed":
        values.text_input("value (JSON)", key=key(section, name, "value"), **args)


def render(space_key: str, error_key: str, recipe_defaults: dict) -> None:
    """The widgets for the space in `state[space_key]` (JSON text); nothing when the text is not a valid space
    (the caller shows why)."""
    state = st.session_state
    text = state[space_key]
    # Re-seed after a new text, and after a visit to another page (Streamlit dropped the widgets' state).
    drawn = ENTRIES in state and all(key(section, name, "mode") in state for section in SECTIONS
                                     for name in state[ENTRIES][section])
    if state.get(SEEDED) != text or not drawn:
        try:
            seed(state, load_space(text))
        except ConfigError:
            return
        state[SEEDED] = text
    for section in SECTIONS:
        specs = section_specs(section)
        st.caption("Network" if section == "arch" else "Training")
        for name in state[ENTRIES][section]:
            _row(section, name, specs[name], space_key, error_key)
    unused = [f"{section}.{name}" for section in SECTIONS for name in section_specs(section)
              if name not in state[ENTRIES][section]]
    st.selectbox("Add a setting to the space", unused, index=None, key=ADD, placeholder="Add a setting…",
                 on_change=_add, args=(space_key, error_key, recipe_defaults))


__all__ = ["render", "seed", "space_from_widgets", "options", "key", "initial_value", "modes", "range_defaults"]
