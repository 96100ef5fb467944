"""The design in the URL: a network, its training settings, budget, input and data as short query parameters.

Pure functions, no Streamlit. A link names the preset and recipe it starts from (`preset=best&recipe=best`,
omitted when they are the defaults) and carries only what differs from them in `d`, so the default design has
a bare URL and a preset is one readable word. `d` is the differences as compact JSON built from the configs'
own to_dict/from_dict (so it follows the settings schema), either plain (`j` + base64url) or deflated (`z` +
base64url), whichever is shorter. Decoding validates everything through ArchConfig/TrainConfig and raises
LinkError with a message; the app then shows a warning and the defaults.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from explorer.arch.config import CLASSES_RANGE, MAX_INPUT_CHANNELS, MAX_INPUT_SIZE, ArchConfig
from explorer.arch.cost import BUDGET_RANGE, DEFAULT_BUDGET
from explorer.arch.presets import DEFAULT_PRESET, PRESETS
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ConfigError
from explorer.ui import state as arch_keys
from explorer.ui import train_state as train_keys

PRESET_PARAM, RECIPE_PARAM, DESIGN_PARAM = "preset", "recipe", "d"
PARAMS = (PRESET_PARAM, RECIPE_PARAM, DESIGN_PARAM)
DEFAULT_INPUT = (3, 32, 32)
DEFAULT_CLASSES = 10
DEFAULT_DATA = "synthetic"
# The sidebar's limits (declared in explorer.arch): a link may not describe what the widgets could not show.
CHANNELS_RANGE, SIZE_RANGE = (1, MAX_INPUT_CHANNELS), (1, MAX_INPUT_SIZE)
# A design is a few hundred bytes; anything far larger is not a link this app wrote.
MAX_PARAM_CHARS = 4_000
MAX_JSON_BYTES = 20_000
MAX_DATA_CHARS = 1_000


class LinkError(ConfigError):
    """A link whose design cannot be read (malformed, tampered with, or from an incompatible version)."""


@dataclass(frozen=True)
class Design:
    """Everything a link carries. `preset`/`recipe` name the starting point; None when edited ('custom')."""

    arch: ArchConfig = PRESETS[DEFAULT_PRESET]
    train: TrainConfig = RECIPES[DEFAULT_RECIPE]
    preset: str | None = DEFAULT_PRESET
    recipe: str | None = DEFAULT_RECIPE
    budget: int = DEFAULT_BUDGET
    input_shape: tuple[int, int, int] = DEFAULT_INPUT
    num_classes: int = DEFAULT_CLASSES
    data: str = DEFAULT_DATA


# ------------------------------------------------------------------------------------------------ encoding


def _base_block(base: list[dict], index: int) -> dict:
    """The block a link's block `index` is written against: the base's block there, else its last one."""
    return base[min(index, len(base) - 1)]


def arch_diff(cfg: ArchConfig, base: ArchConfig) -> dict:
    """The top-level ArchConfig keys whose values differ from `base`'s; each conv block as its differences
    from the base's block at the same place (so widening one layer costs one number)."""
    new, old = cfg.to_dict(), base.to_dict()
    diff = {k: v for k, v in new.items() if v != old.get(k)}
    if "conv" in diff:
        diff["conv"] = [{k: v for k, v in block.items() if v != _base_block(old["conv"], i).get(k)}
                        for i, block in enumerate(new["conv"])]
    return diff


def _apply_arch_diff(base: ArchConfig, diff: dict) -> dict:
    """The ArchConfig dict `diff` describes on top of `base` (the inverse of arch_diff)."""
    old = base.to_dict()
    conv = diff.get("conv", old["conv"])
    if not isinstance(conv, list) or not all(isinstance(b, dict) for b in conv):
        raise LinkError("the design parameter's conv blocks are not a list of objects.")
    return old | diff | {"conv": [_base_block(old["conv"], i) | b for i, b in enumerate(conv)]}


def train_diff(cfg: TrainConfig, base: TrainConfig) -> dict:
    new, old = cfg.to_dict(), base.to_dict()
    return {k: v for k, v in new.items() if v != old.get(k)}


def _nearest(value: Any, named: Mapping[str, Any], default: str, diff) -> tuple[str, dict]:
    """The named config `value` differs least from (the default on ties), and that difference."""
    options = [default, *(n for n in named if n != default)]
    return min(((n, diff(value, named[n])) for n in options), key=lambda item: len(_json(item[1])))


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _pack(data: dict) -> str:
    raw = _json(data).encode()
    plain = "j" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header or checksum to pay for
    packed = "z" + base64.urlsafe_b64encode(deflater.compress(raw) + deflater.flush()).decode().rstrip("=")
    return min(plain, packed, key=len)


def encode(design: Design) -> dict[str, str]:
    """Query parameters for `design`: {} for the default design; only what differs from it otherwise."""
    preset, a_diff = _nearest(design.arch, PRESETS, DEFAULT_PRESET, arch_diff)
    recipe, t_diff = _nearest(design.train, RECIPES, DEFAULT_RECIPE, train_diff)
    extras = {"budget": (design.budget, DEFAULT_BUDGET), "input": (list(design.input_shape), list(DEFAULT_INPUT)),
              "classes": (design.num_classes, DEFAULT_CLASSES), "data": (design.data, DEFAULT_DATA)}
    data = {k: v for k, (v, default) in extras.items() if v != default}
    if a_diff:
        data["a"] = a_diff
    if t_diff:
        data["t"] = t_diff
    params = {}
    if preset != DEFAULT_PRESET:
        params[PRESET_PARAM] = preset
    if recipe != DEFAULT_RECIPE:
        params[RECIPE_PARAM] = recipe
    if data:
        params[DESIGN_PARAM] = _pack(data)
    return params


# ------------------------------------------------------------------------------------------------ decoding


def _unpack(text: str) -> dict:
    if len(text) > MAX_PARAM_CHARS:
        raise LinkError(f"the design parameter is {len(text):,} characters long; a link of this app is far shorter.")
    kind, body = text[:1], text[1:]
    if kind not in ("j", "z"):
        raise LinkError("the design parameter has an unknown format (it should start with 'j' or 'z').")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if kind == "z":
            inflater = zlib.decompressobj(-15)
            raw = inflater.decompress(raw, MAX_JSON_BYTES)
            if inflater.unconsumed_tail:
                raise LinkError("the design parameter expands to more than a design can hold.")
        data = json.loads(raw.decode())
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError, RecursionError):
        raise LinkError("the design parameter is damaged (cut short or edited by hand?).") from None
    if not isinstance(data, dict):
        raise LinkError("the design parameter does not hold a design.")
    unknown = sorted(set(data) - {"a", "t", "budget", "input", "classes", "data"})
    if unknown:
        raise LinkError(f"the design parameter has unknown part(s) {', '.join(map(str, unknown))}.")
    return data


def _named(params: Mapping[str, str], param: str, named: Mapping[str, Any], default: str) -> str:
    name = params.get(param, default)
    if name not in named:
        raise LinkError(f"{param} {str(name)[:40]!r} does not exist here; known: {', '.join(named)}.")
    return name


def _int_in(data: dict, key: str, default: int, bounds: tuple[int, int], what: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise LinkError(f"{what} must be a whole number from {bounds[0]:,} to {bounds[1]:,}.")
    return value


def _input_shape(data: dict) -> tuple[int, int, int]:
    shape = data.get("input", list(DEFAULT_INPUT))
    if not isinstance(shape, list) or len(shape) != 3:
        raise LinkError("the input shape must be three whole numbers (channels, height, width).")
    parts = dict(zip(("c", "h", "w"), shape, strict=True))
    c = _int_in(parts, "c", 0, CHANNELS_RANGE, "the input channels")
    return c, _int_in(parts, "h", 0, SIZE_RANGE, "the input height"), _int_in(parts, "w", 0, SIZE_RANGE,
                                                                                 "the input width")


def _section(data: dict, key: str) -> dict:
    section = data.get(key, {})
    if not isinstance(section, dict):
        raise LinkError(f"the design parameter's part {key!r} is not an object.")
    return section


def _configs(params: Mapping[str, str], data: dict) -> tuple[ArchConfig, str, TrainConfig, str]:
    preset = _named(params, PRESET_PARAM, PRESETS, DEFAULT_PRESET)
    recipe = _named(params, RECIPE_PARAM, RECIPES, DEFAULT_RECIPE)
    a, t = _section(data, "a"), _section(data, "t")
    try:
        arch = ArchConfig.from_dict(_apply_arch_diff(PRESETS[preset], a))
        train = TrainConfig.from_dict(RECIPES[recipe].to_dict() | t)
    except (ConfigError, TypeError) as err:
        raise LinkError(f"its settings are not valid here: {err}") from None
    return arch, (preset if not a else None), train, (recipe if not t else None)


def decode(params: Mapping[str, str]) -> Design:
    """The design a link describes (Design() for a bare URL); LinkError says why one cannot be read."""
    data = _unpack(params[DESIGN_PARAM]) if params.get(DESIGN_PARAM) else {}
    arch, preset, train, recipe = _configs(params, data)
    source = data.get("data", DEFAULT_DATA)
    if not isinstance(source, str) or not source or len(source) > MAX_DATA_CHARS:
        raise LinkError("the data source must be a short text such as 'synthetic' or 'cifar10'.")
    return Design(arch=arch, train=train, preset=preset, recipe=recipe, budget=_int_in(data, "budget",
                  DEFAULT_BUDGET, BUDGET_RANGE, "the parameter budget"), input_shape=_input_shape(data),
                  num_classes=_int_in(data, "classes", DEFAULT_CLASSES, CLASSES_RANGE, "the number of classes"),
                  data=source)


def read(params: Mapping[str, Any]) -> tuple[Design | None, str | None]:
    """(design, None) when the URL carries one; (None, None) for a bare URL; (None, message) for a bad one.
    `params` is st.query_params or a dict (a repeated parameter's last value counts)."""
    mine = {k: params[k] for k in PARAMS if k in params}
    if not mine:
        return None, None
    mine = {k: (v[-1] if isinstance(v, list) and v else v) for k, v in mine.items()}
    if not all(isinstance(v, str) for v in mine.values()):
        return None, "This link's design cannot be read: its parameters are not text. Showing the defaults instead."
    try:
        return decode(mine), None
    except LinkError as err:
        return None, f"This link's design cannot be read: {err} Showing the defaults instead."


# ------------------------------------------------------------------------------------- widgets <-> design


def source_values(source: str) -> dict[str, Any]:
    """Data-picker widget values for a source string (the inverse of train_state.source_from_values)."""
    kind, _, rest = source.partition(":")
    if kind == "folder":
        return {train_keys.SOURCE: train_keys.FOLDER_CHOICE, train_keys.FOLDER: rest}
    if kind == "synthetic" and rest.isdigit():
        return {train_keys.SOURCE: "synthetic", train_keys.SYNTHETIC_SIZE: int(rest)}
    return {train_keys.SOURCE: source}


def design_values(design: Design) -> dict[str, Any]:
    """Every widget value (sidebar and Train page) that shows `design`."""
    values = arch_keys.arch_to_values(design.arch) | train_keys.train_to_values(design.train)
    # An edited design is named after the preset and recipe nearest to it ('fast (edited: fc1)').
    base_preset = design.preset or _nearest(design.arch, PRESETS, DEFAULT_PRESET, arch_diff)[0]
    base_recipe = design.recipe or _nearest(design.train, RECIPES, DEFAULT_RECIPE, train_diff)[0]
    values |= {arch_keys.PRESET: design.preset or arch_keys.CUSTOM, arch_keys.BASE_PRESET: base_preset,
               arch_keys.BUDGET: design.budget, train_keys.RECIPE: design.recipe or train_keys.CUSTOM,
               train_keys.BASE: RECIPES[base_recipe].to_dict()}
    arch_keys.set_input(values, design.input_shape, design.num_classes)
    return values | source_values(design.data)


def design_of(values: Mapping[str, Any]) -> Design:
    """The design the widgets show; ConfigError while they describe an invalid network or training."""
    shape, classes = arch_keys.input_from_values(values)
    return Design(arch=arch_keys.arch_from_values(values), train=train_keys.train_from_values(values),
                  budget=int(values[arch_keys.BUDGET]), input_shape=shape, num_classes=classes,
                  data=train_keys.source_from_values(values))
