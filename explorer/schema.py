"""One declaration per setting: type, range or choices, default, label, help, scale and display format.

Every field of ConvBlock / ArchConfig / TrainConfig is declared with `setting(...)`, which stores a `Spec` in
the dataclass field's metadata. Everything else derives from it: validation messages (`check`), the JSON
round trip (`to_dict` / `from_dict`), the CLI flags (`add_arguments`, `values_from_args`, `to_cli_args`),
the JSON Schema document (`json_schema`), the Streamlit widgets (explorer.ui.widgets) and, for a field declared
`searchable=True` (with an optional narrower `search_range`), the search space (explorer.search.space), its
widgets and docs/search.md. Adding a field is one `setting(...)` line in its class (plus its tests).

Bottom layer: imports only the stdlib and explorer.errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

from explorer.errors import ConfigError

KINDS = ("int", "float", "bool", "str", "list[str]", "list[int]", "list[nested]")


class _Required:
    """The default of a field that has none (dataclasses.MISSING cannot be a dataclass field's default)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True, eq=False)
class Spec:
    """What a setting is. `name`, `kind`, `default` and `item` are filled in by `specs()` from the dataclass."""

    label: str
    help: str = ""
    low: float | None = None  # inclusive; for list[int], the range of each item
    high: float | None = None
    choices: tuple = ()  # for list[str], the choices of each item
    labels: Mapping[Any, str] = field(default_factory=dict)  # display name of a choice (default: the value)
    scale: str = "linear"  # "log": search spaces sample it log-uniformly; widgets show %g
    fmt: str | None = None  # printf format of a numeric widget (Streamlit's `format`)
    step: float | None = None  # widget step
    widget: str | None = None  # a Streamlit widget name overriding the default for the kind
    group: str = ""  # where the UI draws it
    item_label: str = ""  # list fields: "fc{i} units" names item i in messages and widgets
    items_word: str = "items"  # list fields: "fc: 5 hidden layers; ..."
    min_items: int = 0
    max_items: int | None = None
    cli: bool = True  # False: no flag of its own (reachable through --arch JSON)
    aliases: tuple[str, ...] = ()  # extra flag names kept for compatibility, e.g. --tta
    named: Mapping[str, Any] = field(default_factory=dict)  # words that stand for a value: {"depthwise": 0}
    searchable: bool = False  # a search space may sample it (explorer.search.space): one keyword per field
    search_range: tuple[float, float] | None = None  # a search's default range, where narrower than low..high
    name: str = ""
    kind: str = ""
    default: Any = REQUIRED
    item: type | None = None  # list[nested]: the dataclass of each item

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def label_of(self, choice: Any) -> str:
        return self.labels.get(choice, str(choice))

    @property
    def search_span(self) -> tuple[Any, Any]:
        """(low, high) a search samples by default: search_range, else the validation range."""
        return self.search_range if self.search_range is not None else (self.low, self.high)


def setting(default: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field whose metadata holds its Spec (`default` MISSING: a required field)."""
    return field(default=default, metadata={"spec": Spec(**spec)})


# --- reading the declarations -------------------------------------------------------------------------------


def _kind(hint: Any) -> tuple[str, type | None]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args and dataclasses.is_dataclass(args[0]):
        return "list[nested]", args[0]
    if origin is tuple and args:
        return f"list[{args[0].__name__}]", None
    if hint in (int, float, bool, str):
        return hint.__name__, None
    raise TypeError(f"setting type {hint!r} is not supported; use one of {', '.join(KINDS)}")


@functools.cache
def specs(cls: type) -> tuple[Spec, ...]:
    """The Spec of every field of `cls`, in declaration order, with name, kind and default filled in."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "spec" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with explorer.schema.setting()")
        kind, item = _kind(hints[f.name])
        _check_search_range(cls, f.name, f.metadata["spec"])
        out.append(dataclasses.replace(f.metadata["spec"], name=f.name, kind=kind, item=item,
                                       default=REQUIRED if f.default is MISSING else f.default))
    return tuple(out)


def _check_search_range(cls: type, name: str, spec: Spec) -> None:
    # A declaration error (caught by the first import in any test), not a user's.
    if spec.search_range is None:
        return
    low, high = spec.search_range
    if not spec.searchable or spec.low is None or not spec.low <= low <= high <= spec.high:
        raise TypeError(f"{cls.__name__}.{name}: search_range {spec.search_range} needs searchable=True and must "
                        f"lie within {spec.low}..{spec.high}")


def searchable_specs(cls: type) -> tuple[Spec, ...]:
    """The settings of `cls` a search space may hold (declared with searchable=True)."""
    return tuple(s for s in specs(cls) if s.searchable)


def spec_of(cls: type, name: str) -> Spec:
    for spec in specs(cls):
        if spec.name == name:
            return spec
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def names(cls: type) -> tuple[str, ...]:
    return tuple(s.name for s in specs(cls))


# --- validation -----------------------------------------------------------------------------------------------


def _fail_choice(where: str, value: Any, choices: tuple) -> None:
    raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}.")


def as_json(value: Any) -> str:
    """A refused value as the user wrote it in JSON, a link or a box: null, "x", Infinity, [1, 2] (not Python's
    NoneType None)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _check_number(where: str, value: Any, spec: Spec, kind: str) -> None:
    wanted = int if kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        what = "a whole number" if kind == "int" else "a number"
        raise ConfigError(f"{where}: expected {what}, got {as_json(value)}.")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ConfigError(f"{where}: {number_text(value)} is out of range; use a value from {value_range(spec)}.")


def _check_scalar(where: str, value: Any, spec: Spec, kind: str) -> None:
    if spec.choices:
        # bool is an int in Python: True must not pass for stride 1.
        if value not in spec.choices or (isinstance(value, bool) and kind != "bool"):
            _fail_choice(where, value, spec.choices)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {as_json(value)}.")
    elif kind in ("int", "float"):
        _check_number(where, value, spec, kind)
    elif not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {as_json(value)}.")


def _check_list(where: str, value: Any, spec: Spec) -> None:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {as_json(value)}.")
    high = spec.max_items if spec.max_items is not None else len(value)
    if not spec.min_items <= len(value) <= high:
        raise ConfigError(f"{where}: {len(value)} {spec.items_word}; use {spec.min_items} to {high}.")
    item_kind = spec.kind[5:-1]
    for i, item in enumerate(value, 1):
        item_where = spec.item_label.format(i=i) if spec.item_label else where
        if item_kind == "nested":
            if not isinstance(item, spec.item):
                raise ConfigError(f"{item_where}: expected a {spec.item.__name__}, got {type(item).__name__}.")
            check(item, item_where + " ")
        else:
            _check_scalar(item_where, item, spec, item_kind)


def check_value(spec: Spec, value: Any, prefix: str = "") -> None:
    """ConfigError naming `prefix + spec.name` (or the list item) when `value` breaks the declaration."""
    where = prefix + spec.name
    if spec.kind.startswith("list["):
        _check_list(where, value, spec)
    else:
        _check_scalar(where, value, spec, spec.kind)


def check(obj: Any, prefix: str = "") -> None:
    """Check every field of a settings dataclass instance against its declaration."""
    for spec in specs(type(obj)):
        check_value(spec, getattr(obj, spec.name), prefix)


def freeze_lists(obj: Any) -> None:
    """Store list fields as tuples (lists come from JSON and widgets) so a frozen config stays hashable."""
    for spec in specs(type(obj)):
        value = getattr(obj, spec.name)
        if spec.kind.startswith("list[") and isinstance(value, list):
            object.__setattr__(obj, spec.name, tuple(value))


# --- JSON round trip ------------------------------------------------------------------------------------------


def to_dict(obj: Any) -> dict:
    """Plain JSON-ready dict: nested settings become dicts, tuples become lists."""
    out = {}
    for spec in specs(type(obj)):
        value = getattr(obj, spec.name)
        if spec.kind == "list[nested]":
            value = [to_dict(v) for v in value]
        elif spec.kind.startswith("list["):
            value = list(value)
        out[spec.name] = value
    return out


def changed_fields(base: Any, current: Any) -> list[str]:
    """The settings where `current` differs from `base` (settings objects of one class, or their to_dict), in
    declaration order: 'epochs', 'conv2.out_channels' for one block's field, 'conv' when blocks were added or
    removed. A key `current` lacks (a record from an older version) counts as unchanged."""
    old = base if isinstance(base, dict) else to_dict(base)
    new = current if isinstance(current, dict) else to_dict(current)
    changed: list[str] = []
    for name, value in old.items():
        if value == new.get(name, value):
            continue
        same_length_records = (isinstance(value, list) and value and isinstance(value[0], dict)
                               and isinstance(new[name], list) and len(value) == len(new[name]))
        if same_length_records:
            changed += [f"{name}{i}.{key}" for i, (a, b) in enumerate(zip(value, new[name]), 1)
                        for key in a if isinstance(b, dict) and a[key] != b.get(key, a[key])]
        else:
            changed.append(name)
    return changed


def edited_name(name: str, base: Any, current: Any, shown: int = 3) -> str:
    """'fast' when `current` is the named `base`, else 'fast (edited: epochs, lr)' (the first `shown` changes)."""
    changed = changed_fields(base, current)
    if not changed:
        return name
    more = f", +{len(changed) - shown} more" if len(changed) > shown else ""
    return f"{name} (edited: {', '.join(changed[:shown])}{more})"


def known_keys(cls: type, data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}.")
    valid = names(cls)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(sorted(valid))}.")
    return dict(data)


def from_dict(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    """Build `cls` from a JSON dict; ConfigError names the key (prefixed, e.g. 'conv2 kernel') and what is allowed."""
    data = known_keys(cls, data, where)
    for spec in specs(cls):
        if spec.required and spec.name not in data:
            example = f" ({spec.help})" if spec.help else ""
            raise ConfigError(f"{where}: missing key {spec.name!r}{example}.")
        if spec.name not in data:
            continue
        if spec.kind == "list[nested]":
            if not isinstance(data[spec.name], (list, tuple)):
                raise ConfigError(f"{where} {spec.name}: expected a list of {spec.items_word}.")
            data[spec.name] = tuple(
                from_dict(spec.item, raw, spec.item_label.format(i=i), spec.item_label.format(i=i) + " ")
                for i, raw in enumerate(data[spec.name], 1))
        data[spec.name] = _unnamed(spec, data[spec.name])
        check_value(spec, data[spec.name], prefix)
    return cls(**data)


def _unnamed(spec: Spec, value: Any) -> Any:
    """The value a word stands for ("depthwise" -> 0), else the value itself."""
    return spec.named.get(value, value) if isinstance(value, str) else value


# --- command line -----------------------------------------------------------------------------------------------


def _parse_scalar(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def parse_text(spec: Spec, text: str) -> Any:
    """A flag's text as the field's value (lists comma-separated, 'none' = empty); ConfigError if invalid."""
    try:
        if spec.kind.startswith("list["):
            parts = [p.strip() for p in text.split(",") if p.strip() and p.strip() != "none"]
            value: Any = tuple(_parse_scalar(p, spec.kind[5:-1]) for p in parts)
        elif text in spec.named:
            value = spec.named[text]
        else:
            value = _parse_scalar(text, spec.kind)
            if spec.choices and spec.kind == "str" and value not in spec.choices:
                _fail_choice(spec.name, value, spec.choices)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        what = {"int": "a whole number", "float": "a number"}.get(spec.kind.removeprefix("list[").rstrip("]"))
        raise ConfigError(f"{spec.name}: expected {what or 'a value'}, got {text!r}.") from None
    check_value(spec, value)
    return value


def _converter(spec: Spec) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_text(spec, text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = spec.name
    return convert


def number_text(value: float) -> str:
    """A limit as people write it: 1000 for an int, 0 / 0.9 / 86400 / 1e-08 / 1e+13 for a float."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def value_range(spec: Spec) -> str:
    """A number setting's limits in words: '1 to 1000', '1e-08 to 100'."""
    return f"{number_text(spec.low)} to {number_text(spec.high)}"


def describe(spec: Spec) -> str:
    """Allowed values in words: 'one of a, b', '1 to 1000', '0 to 0.9', 'comma list of flip, crop' ..."""
    if spec.kind == "bool":
        return "true or false"
    if spec.choices:
        listed = ", ".join(map(str, spec.choices))
        return f"comma list of {listed}, or none" if spec.kind.startswith("list[") else f"one of {listed}"
    if spec.low is not None:
        span = value_range(spec)
        return f"comma list of {span}, or none" if spec.kind.startswith("list[") else span
    return spec.kind


def _help(spec: Spec) -> str:
    text = f"{spec.label}" + (f": {spec.help}" if spec.help else "") + f" [{describe(spec)}]"
    return text.replace("%", "%%")  # argparse formats help with %


def add_arguments(parser: Any, cls: type) -> None:
    """One flag per field of `cls` that has one (default None: 'not given', so a recipe can fill it)."""
    for spec in specs(cls):
        if not spec.cli:
            continue
        option_strings = [spec.flag, *spec.aliases]
        if spec.kind == "bool":
            parser.add_argument(*option_strings, dest=spec.name, action=argparse.BooleanOptionalAction,
                                default=None, help=_help(spec))
        else:
            metavar = ",".join(map(str, spec.choices)) if spec.kind == "list[str]" else spec.name.upper()
            parser.add_argument(*option_strings, dest=spec.name, type=_converter(spec), default=None,
                                metavar=metavar, help=_help(spec))


def values_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` whose flags were given."""
    return {s.name: getattr(args, s.name) for s in specs(cls)
            if s.cli and getattr(args, s.name, None) is not None}


def _flag_text(spec: Spec, value: Any) -> str:
    if spec.kind.startswith("list["):
        return ",".join(map(str, value)) if value else "none"
    return repr(value) if spec.kind == "float" else str(value)  # repr: a float that parses back exactly


def to_cli_args(obj: Any, base: Any = None) -> list[str]:
    """The flags that turn `base` (default: the class defaults) into `obj`, only for fields that differ."""
    cls = type(obj)
    out: list[str] = []
    for spec in specs(cls):
        value = getattr(obj, spec.name)
        reference = getattr(base, spec.name) if base is not None else spec.default
        if value == reference:
            continue
        if not spec.cli:
            raise ConfigError(f"{spec.name} has no flag of its own; pass the whole config as JSON instead.")
        if spec.kind == "bool":
            out.append(spec.flag if value else "--no-" + spec.flag[2:])
        else:
            out += [spec.flag, _flag_text(spec, value)]
    return out


# --- JSON Schema ------------------------------------------------------------------------------------------------

_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}


def _scalar_schema(spec: Spec, kind: str) -> dict:
    out: dict[str, Any] = {"type": _JSON_TYPES[kind]}
    if spec.choices:
        out["enum"] = list(spec.choices)
    if spec.low is not None:
        out["minimum"] = spec.low
    if spec.high is not None:
        out["maximum"] = spec.high
    return out


def _property_schema(spec: Spec) -> dict:
    if spec.kind == "list[nested]":
        out: dict[str, Any] = {"type": "array", "items": {"$ref": f"#/$defs/{spec.item.__name__}"}}
    elif spec.kind.startswith("list["):
        out = {"type": "array", "items": _scalar_schema(spec, spec.kind[5:-1])}
        if spec.choices:
            out["uniqueItems"] = True
    else:
        out = _scalar_schema(spec, spec.kind)
    if spec.kind.startswith("list["):
        out["minItems"] = spec.min_items
        if spec.max_items is not None:
            out["maxItems"] = spec.max_items
    out |= {"title": spec.label, "description": spec.help, "x-scale": spec.scale}
    if not spec.required:
        out["default"] = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    if spec.labels:
        out["x-labels"] = {str(k): v for k, v in spec.labels.items()}
    if spec.fmt:
        out["x-format"] = spec.fmt
    if spec.named:
        out["x-named"] = dict(spec.named)  # accepted on input, stored as the number
    if spec.cli:
        out["x-flag"] = spec.flag
    if spec.searchable:
        out["x-searchable"] = True
    if spec.search_range is not None:
        out["x-search-range"] = list(spec.search_range)
    return out


def json_schema(cls: type) -> dict:
    """JSON Schema (draft 2020-12) of one settings class; nested classes are referenced under #/$defs/."""
    return {
        "type": "object",
        "title": cls.__name__,
        "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        "properties": {s.name: _property_schema(s) for s in specs(cls)},
        "required": [s.name for s in specs(cls) if s.required],
        "additionalProperties": False,
    }


def nested_classes(cls: type) -> list[type]:
    """`cls` and every settings class its fields hold, depth first."""
    out = [cls]
    for spec in specs(cls):
        if spec.item is not None:
            out += [c for c in nested_classes(spec.item) if c not in out]
    return out


__all__ = ["Spec", "setting", "specs", "searchable_specs", "spec_of", "names", "check", "check_value", "freeze_lists",
           "to_dict", "changed_fields", "edited_name", "from_dict", "known_keys", "parse_text", "describe",
           "add_arguments", "values_from_args", "to_cli_args", "json_schema", "nested_classes"]
