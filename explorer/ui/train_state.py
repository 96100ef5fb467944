"""Train-page widget keys and the mapping between a TrainConfig and the widget values (pure, no Streamlit).

A recipe fills the widgets; editing one turns the recipe picker into 'custom'. Every TrainConfig field has a
widget (explorer.schema declares them); the recipe last loaded is kept under BASE, so a record written by a
newer version with an extra field still round-trips through the widgets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from explorer import schema
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES

CUSTOM = "custom"
RECIPE = "train.recipe"
BASE = "train.base"
SOURCE = "train.source"
FOLDER = "train.folder_path"
FOLDER_CHOICE = "folder:…"
SYNTHETIC_SIZE = "train.synthetic_size"
SYNTHETIC_DEFAULT = 2000  # explorer.engine.data's default synthetic training set
NAME = "train.name"
TIME_BUDGET = "train.time_budget_min"
# TrainConfig fields that have a widget (all of them, from the schema); the widget key is "train.<field>".
FIELDS = schema.names(TrainConfig)
FLOAT_FIELDS = {s.name for s in schema.specs(TrainConfig) if s.kind == "float"}
INT_FIELDS = {s.name for s in schema.specs(TrainConfig) if s.kind == "int"}
LIST_FIELDS = {s.name for s in schema.specs(TrainConfig) if s.kind.startswith("list[")}  # multi-select: lists


def key(field: str) -> str:
    return f"train.{field}"


def recipe_options() -> list[str]:
    return [*RECIPES, CUSTOM]


def train_to_values(cfg: TrainConfig) -> dict[str, Any]:
    values = {key(f): getattr(cfg, f) for f in FIELDS}
    for f in LIST_FIELDS:
        values[key(f)] = list(values[key(f)])
    for f in FLOAT_FIELDS:
        values[key(f)] = float(values[key(f)])
    return values


def train_from_values(values: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig the widgets describe on top of the last recipe; ConfigError for a bad combination."""
    data = dict(values.get(BASE) or TrainConfig().to_dict())
    for f in FIELDS:
        data[f] = values[key(f)]
    for f in LIST_FIELDS:
        data[f] = tuple(data[f] or ())
    for f in FLOAT_FIELDS:
        data[f] = float(data[f])
    for f in INT_FIELDS:
        data[f] = int(data[f])
    return TrainConfig.from_dict(data)


def load_recipe(state: MutableMapping[str, Any], name: str) -> None:
    if name in RECIPES:
        state.update(train_to_values(RECIPES[name]))
        state[BASE] = RECIPES[name].to_dict()
        state[RECIPE] = name


def init_state(state: MutableMapping[str, Any]) -> None:
    if RECIPE not in state:
        load_recipe(state, DEFAULT_RECIPE)
    defaults = train_to_values(RECIPES[DEFAULT_RECIPE]) | {
        BASE: RECIPES[DEFAULT_RECIPE].to_dict(), SOURCE: "synthetic", FOLDER: "", NAME: "", TIME_BUDGET: 5.0,
        SYNTHETIC_SIZE: SYNTHETIC_DEFAULT,
    }
    for k, value in defaults.items():
        if k not in state:
            state[k] = value


def mark_custom(state: MutableMapping[str, Any]) -> None:
    state[RECIPE] = CUSTOM


@dataclass(frozen=True)
class SourceKeys:
    """Session-state keys of one data-source picker (explorer.ui.source_picker): the Train and Data pages share
    one, the Search page has its own."""

    choice: str
    folder: str
    synthetic_size: str


TRAIN_SOURCE = SourceKeys(SOURCE, FOLDER, SYNTHETIC_SIZE)


def source_of(values: Mapping[str, Any], picker: SourceKeys) -> str:
    """The data source string: a picked name, 'synthetic:N' for a resized synthetic set, or 'folder:PATH'."""
    if values[picker.choice] == FOLDER_CHOICE:
        return f"folder:{str(values[picker.folder]).strip()}"
    if values[picker.choice] == "synthetic" and int(values[picker.synthetic_size]) != SYNTHETIC_DEFAULT:
        return f"synthetic:{int(values[picker.synthetic_size])}"
    return values[picker.choice]


def source_from_values(values: Mapping[str, Any]) -> str:
    """The Train page's data source string (see source_of)."""
    return source_of(values, TRAIN_SOURCE)


def epochs_that_fit(seconds_per_epoch: float, budget_seconds: float) -> int:
    """Whole epochs that fit in the time budget (0 when not even one does)."""
    if seconds_per_epoch <= 0:
        return 0
    return max(0, math.floor(budget_seconds / seconds_per_epoch))
