"""One Streamlit widget per setting, drawn from its declaration (explorer.schema): label, help, limits,
options, choice labels and format all come from the Spec, so a widget can never disagree with validation.

`widget_call` is pure (which widget, which arguments: tested without a page); `draw` calls it. Values keep
their field's type: int fields get int limits and steps (number_input then returns int), float fields floats.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer import schema
from explorer.schema import Spec


def _number_args(spec: Spec, kind: str) -> dict[str, Any]:
    cast = int if kind == "int" else float
    args: dict[str, Any] = {"min_value": cast(spec.low), "max_value": cast(spec.high),
                            "step": cast(spec.step if spec.step is not None else 1)}
    if spec.fmt:
        args["format"] = spec.fmt
    return args


def widget_call(spec: Spec) -> tuple[str, dict[str, Any]]:
    """The Streamlit function name and its arguments (without key/on_change) that draw `spec`."""
    args: dict[str, Any] = {"label": spec.label}
    if spec.help:
        args["help"] = spec.help
    if spec.kind == "bool":
        return spec.widget or "checkbox", args
    if spec.kind == "list[str]":
        return spec.widget or "pills", args | {"options": list(spec.choices), "selection_mode": "multi",
                                               "format_func": spec.label_of}
    if spec.choices:
        name = spec.widget or "selectbox"
        args |= {"options": list(spec.choices), "format_func": spec.label_of}
        if name == "segmented_control":
            args["required"] = True  # a setting always has a value: no deselecting
        return name, args
    if spec.kind in ("int", "float"):
        return spec.widget or "number_input", args | _number_args(spec, spec.kind)
    raise TypeError(f"{spec.name}: a {spec.kind} setting has no single widget; draw its items with item_call()")


def item_call(spec: Spec, index: int) -> tuple[str, dict[str, Any]]:
    """Widget of item `index` (from 1) of a list[int] setting, e.g. 'fc2 units'."""
    label = spec.item_label.format(i=index)
    return "number_input", {"label": label} | _number_args(spec, "int")


def draw(cls: type, name: str, key: str, container: Any = None, **extra: Any) -> Any:
    """Draw field `name` of settings class `cls` under session-state `key`; `extra` = on_change, args, ..."""
    fn, args = widget_call(schema.spec_of(cls, name))
    return getattr(container or st, fn)(key=key, **args, **extra)


def draw_item(cls: type, name: str, index: int, key: str, container: Any = None, **extra: Any) -> Any:
    fn, args = item_call(schema.spec_of(cls, name), index)
    return getattr(container or st, fn)(key=key, **args, **extra)
