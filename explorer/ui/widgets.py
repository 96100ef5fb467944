"""One Streamlit widget per setting, drawn from its declaration (explorer.schema): label, help, limits,
options, choice labels and format all come from the Spec, so a widget can never disagree with validation.

`widget_call` is pure (which widget, which arguments: tested without a page); `draw` calls it.

Number boxes (`number_input`, for schema settings and for the panels' own boxes alike) check their value on
the server, not in the browser: with limits in the browser, Chromium kept "-5" in the box behind a hover-only
icon and sent nothing, and an empty box or "abc" (Chromium drops the letters) became the lowest value. So the
box has no browser limits and no default (a typed number arrives as typed, an empty box as None); a callback
refuses what breaks the Spec, puts the last valid value back and leaves one message, naming the field and its
range. A whole-number box is a float box in the browser, shown without decimals: Streamlit's browser code reads
an int box with parseInt ("2.5" -> 2, "1e3" -> 1, never sent as typed), a float box with parseFloat, so "2.5"
reaches the check (refused: not a whole number) and "1e3" arrives as 1000. The browser hands such a box's value
back as a float (5.0) on every rerun; the helper turns it into the int its field holds before drawing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from explorer import schema
from explorer.schema import Spec

# Session-state keys of the number boxes' bookkeeping, one dict each, keyed by the box's key.
LAST_VALID = "widgets.last_valid"  # the value a refused entry gives way to
# A refusal's message, shown by the next full run only: the next click anywhere clears it, as the app's other
# one-off messages are cleared, so it never outlives the edit it describes.
REFUSED = "widgets.refused"


def _number_args(spec: Spec) -> dict[str, Any]:
    # value=None: an empty box (or "abc", which Chromium leaves empty) reaches the callback as None instead
    # of becoming a default. No min/max: the browser would hold an out-of-range value back without a word.
    # A whole-number box goes to the browser as a float box without decimals (see the module's docstring).
    fmt = spec.fmt or ("%.0f" if spec.kind == "int" else None)
    return {"value": None, "step": float(spec.step if spec.step is not None else 1)} | \
        ({"format": fmt} if fmt else {})


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
    if spec.kind in ("int", "float") and spec.widget:
        # Another widget (a slider) cannot take a value outside its limits: give them to it.
        cast = int if spec.kind == "int" else float
        limits = {"min_value": cast(spec.low), "max_value": cast(spec.high),
                  "step": cast(spec.step if spec.step is not None else 1)}
        return spec.widget, args | limits | ({"format": spec.fmt} if spec.fmt else {})
    if spec.kind in ("int", "float"):
        return "number_input", args | _number_args(spec)
    raise TypeError(f"{spec.name}: a {spec.kind} setting has no single widget; draw its items with item_call()")


def item_spec(spec: Spec, index: int) -> Spec:
    """Item `index` (from 1) of a list[int] setting as a Spec of its own: 'fc2 units', an int in the range."""
    return Spec(label=spec.item_label.format(i=index), low=spec.low, high=spec.high, step=spec.step,
                fmt=spec.fmt, kind="int", name=spec.name)


def item_call(spec: Spec, index: int) -> tuple[str, dict[str, Any]]:
    """Widget of item `index` (from 1) of a list[int] setting, e.g. 'fc2 units'."""
    return widget_call(item_spec(spec, index))


def number_spec(label: str, low: float, high: float, step: float | None = None, fmt: str | None = None) -> Spec:
    """The Spec of a panel's own number box, which no settings class declares ('Epochs per run'): whole
    numbers when both limits are ints."""
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    return Spec(label=label, low=low, high=high, step=step, fmt=fmt, kind=kind)


# --- checking a number box's value ----------------------------------------------------------------------------


def shown(value: float) -> str:
    """A number as the messages write it: 8 for 8.0, 0.25, 1e-08."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def refusal(spec: Spec, value: float | None) -> str | None:
    """Why `value` cannot go into the box of `spec` ('Epochs: -5 is out of range; enter a whole number from 1
    to 1000.'), or None when it can. The range is the schema's own text (schema.describe)."""
    wanted = f"enter {'a whole number' if spec.kind == 'int' else 'a number'} from {schema.describe(spec)}."
    if value is None:
        return f"{spec.label}: the box is empty or not a number; {wanted}"
    if spec.kind == "int" and not float(value).is_integer():
        return f"{spec.label}: {shown(value)} is not a whole number; {wanted}"
    if not spec.low <= value <= spec.high:
        return f"{spec.label}: {shown(value)} is out of range; {wanted}"
    return None


def field_value(spec: Spec, value: Any) -> Any:
    """A box's value as its field holds it: the browser's float box sends 5.0 back for a whole-number field's 5."""
    if spec.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _as_kind(spec: Spec, value: float) -> int | float:
    return int(value) if spec.kind == "int" else float(value)


def _on_number(key: str, spec: Spec, on_change: Callable[..., Any] | None, args: tuple, kwargs: dict) -> None:
    """The box's callback: keep a valid value (as its field's type) and run the page's own callback; put the
    last valid value back after a refused one, and say why."""
    state = st.session_state
    message = refusal(spec, state[key])
    if message is None:
        state[key] = _as_kind(spec, state[key])
        if on_change is not None:
            on_change(*args, **kwargs)
        return
    kept = state.get(LAST_VALID, {}).get(key)
    state[key] = kept
    state.setdefault(REFUSED, {})[key] = f"{message} Kept {shown(kept)}." if kept is not None else message


def number_input(spec: Spec, key: str, container: Any = None, *, label: str | None = None,
                 value: float | None = None, say_in: Any = None, on_change: Callable[..., Any] | None = None,
                 args: tuple = (), kwargs: dict | None = None, **extra: Any) -> Any:
    """A number box for `spec` under session-state `key` whose refused entries get one message (until the next
    click) and leave the last valid value in place. `label` replaces the box's own label (messages keep
    spec.label); `value` is the starting value when the key holds none (default: the low end); `say_in` is where
    the message goes (default: under the box; a narrow column passes the container around it)."""
    state, where = st.session_state, container or st
    state.setdefault(key, value if value is not None else _as_kind(spec, spec.low))
    if (typed := field_value(spec, state[key])) is not state[key]:
        state[key] = typed  # only when it changes: a write marks the box as set by code for this run
    if refusal(spec, state[key]) is None:
        state.setdefault(LAST_VALID, {})[key] = state[key]
    call = widget_call(spec)[1] | ({"label": label} if label else {})
    number = where.number_input(key=key, **call, on_change=_on_number,
                                args=(key, spec, on_change, args, kwargs or {}), **extra)
    message = state.get(REFUSED, {}).pop(key, None)
    if message:
        (say_in or where).error(message)
    return number


def draw(cls: type, name: str, key: str, container: Any = None, **extra: Any) -> Any:
    """Draw field `name` of settings class `cls` under session-state `key`; `extra` = on_change, args, ..."""
    spec = schema.spec_of(cls, name)
    fn, args = widget_call(spec)
    if fn == "number_input":
        return number_input(spec, key, container, **extra)
    return getattr(container or st, fn)(key=key, **args, **extra)


def draw_item(cls: type, name: str, index: int, key: str, container: Any = None, **extra: Any) -> Any:
    return number_input(item_spec(schema.spec_of(cls, name), index), key, container, **extra)
