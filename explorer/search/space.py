"""A search space: every architecture and training setting either fixed or given a range / choices.

The space is a JSON object (docs/search.md):

    {"recipe": "fast",                                   # training settings not named below come from it
     "arch": {"depth": {"low": 2, "high": 6},            # conv blocks
              "widths": [26, 52, 103, 206], "width_multiplier": {"low": 0.5, "high": 1.5},
              "kernel": {"choices": [3, 5]}, "pool": {"choices": ["none", "max"]}, ...},
     "train": {"lr": {"low": 0.05, "high": 0.4, "log": true}, "augment": {"choices": [[], ["flip", "crop"]]}}}

An entry is a fixed value, `{"choices": [...]}` or `{"low": L, "high": H[, "log": true][, "step": S]}`. The
settings a space may hold are the ConvBlock / ArchConfig / TrainConfig fields declared `searchable=True` in their
`setting(...)` (explorer.schema), nothing listed here: ConvBlock fields are sampled per block (out_channels is
the knob `width`); `depth`, `width` (a range for each block's width) or `widths` + `width_multiplier`,
`fc_layers` + `fc_units` are the search's own knobs. Every entry is checked against its declaration (ranges
inside its limits, choices among its choices); `check_space` refuses a bad space with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from explorer import schema
from explorer.arch.config import MAX_CONV_BLOCKS, MAX_FC_LAYERS, ArchConfig, ConvBlock
from explorer.arch.presets import PRESETS
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ConfigError
from explorer.schema import Spec

# Declared in the schema (searchable=True on the field): a new field joins the space by that one keyword.
BLOCK_FIELDS = tuple(s.name for s in schema.searchable_specs(ConvBlock))  # sampled per block
_WIDTH = dataclasses.replace(schema.spec_of(ConvBlock, "out_channels"), name="width")
_FC = schema.spec_of(ArchConfig, "fc")
# The search's own knobs: how many blocks, how wide, how many hidden FC layers of how many units.
KNOBS: dict[str, Spec] = {
    "depth": Spec(label="Conv blocks", low=1, high=MAX_CONV_BLOCKS, name="depth", kind="int", default=None),
    "width": dataclasses.replace(_WIDTH, label="Width of each block"),
    "widths": dataclasses.replace(_WIDTH, name="widths", label="Base widths", kind="list[int]", min_items=1,
                                  max_items=MAX_CONV_BLOCKS),
    "width_multiplier": Spec(label="Width multiplier", low=0.05, high=16.0, name="width_multiplier", kind="float"),
    "fc_layers": Spec(label="Hidden FC layers", low=0, high=MAX_FC_LAYERS, name="fc_layers", kind="int"),
    "fc_units": dataclasses.replace(_FC, name="fc_units", label="Units of each hidden FC layer", kind="int",
                                    min_items=0, max_items=None),
}
ARCH_FIELDS = tuple(s.name for s in schema.searchable_specs(ArchConfig))
# Set by the search itself (--trial-epochs / --trial-seconds), or not a training choice.
TRAIN_FIXED_BY_SEARCH = tuple(s.name for s in schema.specs(TrainConfig) if not s.searchable)


def _arch_specs() -> dict[str, Spec]:
    return KNOBS | {n: schema.spec_of(ConvBlock, n) for n in BLOCK_FIELDS} | \
        {n: schema.spec_of(ArchConfig, n) for n in ARCH_FIELDS}


def _train_specs() -> dict[str, Spec]:
    return {s.name: s for s in schema.searchable_specs(TrainConfig)}


def section_specs(section: str) -> dict[str, Spec]:
    """The settings a space's `arch` or `train` section may hold, by name, with their declarations."""
    return _arch_specs() if section == "arch" else _train_specs()


# ------------------------------------------------------------------------------------------- checking


def _is_range(entry: Any) -> bool:
    return isinstance(entry, dict) and ("low" in entry or "high" in entry)


def _check_range(where: str, entry: dict, spec: Spec) -> None:
    unknown = sorted(set(entry) - {"low", "high", "log", "step"})
    if unknown:
        raise ConfigError(f"space {where}: unknown key(s) {', '.join(unknown)}; a range has low, high, log, step.")
    if spec.kind not in ("int", "float") or spec.choices:
        raise ConfigError(f"space {where}: a range needs a numeric setting; give {{\"choices\": [...]}} or a value.")
    if "low" not in entry or "high" not in entry:
        raise ConfigError(f"space {where}: a range needs both low and high.")
    low, high = entry["low"], entry["high"]
    for value in (low, high):
        schema.check_value(spec, value, "space ")
    if low > high:
        raise ConfigError(f"space {where}: empty range (low {low} > high {high}); make low <= high.")
    if entry.get("log") and low <= 0:
        raise ConfigError(f"space {where}: a log range needs low > 0 (got {low}).")


def _check_choices(where: str, entry: dict, spec: Spec) -> None:
    if set(entry) != {"choices"}:
        raise ConfigError(f"space {where}: expected {{\"choices\": [...]}}, a range {{\"low\", \"high\"}} or a value.")
    choices = entry["choices"]
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"space {where}: choices must be a non-empty list.")
    for choice in choices:
        schema.check_value(spec, tuple(choice) if isinstance(choice, list) else choice, "space ")


def check_entry(where: str, entry: Any, spec: Spec) -> None:
    """ConfigError naming `where` when `entry` (a value, choices or a range) breaks the setting's declaration."""
    if _is_range(entry):
        _check_range(where, entry, spec)
    elif isinstance(entry, dict):
        _check_choices(where, entry, spec)
    else:
        schema.check_value(spec, tuple(entry) if isinstance(entry, list) else entry, "space ")


def _check_section(space: dict, section: str, allowed: dict[str, Spec]) -> None:
    part = space.get(section, {})
    if not isinstance(part, dict):
        raise ConfigError(f"space {section}: expected a JSON object of settings.")
    for name, entry in part.items():
        if name not in allowed:
            hint = " (set by --trial-epochs / --trial-seconds or fixed)" if name in TRAIN_FIXED_BY_SEARCH else ""
            raise ConfigError(f"space {section}.{name}: unknown field{hint}; valid fields are "
                              f"{', '.join(sorted(allowed))}.")
        check_entry(f"{section}.{name}", entry, dataclasses.replace(allowed[name], name=f"{section}.{name}"))


def check_space(space: Any) -> dict:
    """The space, checked: ConfigError with one line naming the first bad field."""
    if not isinstance(space, dict):
        raise ConfigError("search space: expected a JSON object with arch and train sections.")
    unknown = sorted(set(space) - {"recipe", "arch", "train"})
    if unknown:
        raise ConfigError(f"space: unknown key(s) {', '.join(unknown)}; a space has recipe, arch and train.")
    if space.get("recipe", DEFAULT_RECIPE) not in RECIPES:
        raise ConfigError(f"space recipe: {space['recipe']!r} is not a recipe; use one of {', '.join(RECIPES)}.")
    _check_section(space, "arch", _arch_specs())
    _check_section(space, "train", _train_specs())
    arch = space.get("arch", {})
    if "width" in arch and ("widths" in arch or "width_multiplier" in arch):
        raise ConfigError("space arch.width: give either width (a range per block) or widths + width_multiplier.")
    if "width" not in arch and "widths" not in arch:
        raise ConfigError("space arch.width: the widths are needed: width (e.g. {\"low\": 16, \"high\": 128}) "
                          "or widths (e.g. [32, 64, 128]).")
    return space


def load_space(text: str, where: str = "space") -> dict:
    try:
        return check_space(json.loads(text))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where} is not valid JSON: {err}.") from None


# ------------------------------------------------------------------------------------------- sampling


def _suggest(trial: Any, name: str, entry: Any, spec: Spec) -> Any:
    """A fixed value as it is; choices and ranges through the trial (lists go through Optuna as text)."""
    if _is_range(entry):
        step = entry.get("step")
        if spec.kind == "int":
            return trial.suggest_int(name, int(entry["low"]), int(entry["high"]), log=bool(entry.get("log")),
                                     step=int(step or 1))
        return trial.suggest_float(name, float(entry["low"]), float(entry["high"]), log=bool(entry.get("log")),
                                   step=step)
    if isinstance(entry, dict):
        choices = entry["choices"]
        if any(isinstance(c, list) for c in choices):
            text = trial.suggest_categorical(name, [",".join(map(str, c)) or "none" for c in choices])
            return tuple(p for p in text.split(",") if p != "none")
        return trial.suggest_categorical(name, choices)
    return tuple(entry) if isinstance(entry, list) else entry


def _widths(trial: Any, arch: dict, depth: int) -> list[int]:
    if "width" in arch:
        return [_suggest(trial, f"conv{i}.width", arch["width"], _WIDTH) for i in range(1, depth + 1)]
    base = list(arch["widths"])
    base += [base[-1]] * (depth - len(base))  # deeper than the list: repeat its last width
    factor = _suggest(trial, "width_multiplier", arch.get("width_multiplier", 1.0), KNOBS["width_multiplier"])
    return [max(1, min(_WIDTH.high, round(w * factor))) for w in base[:depth]]


def sample_arch(trial: Any, arch: dict) -> ArchConfig:
    """An ArchConfig from the space's arch section; ConfigError when the sample cannot be built."""
    specs = _arch_specs()
    depth = _suggest(trial, "depth", arch.get("depth", len(arch.get("widths", [1]))), KNOBS["depth"])
    widths = _widths(trial, arch, depth)
    blocks = []
    for i in range(1, depth + 1):
        fields = {n: _suggest(trial, f"conv{i}.{n}", arch[n], specs[n]) for n in BLOCK_FIELDS if n in arch}
        if i == 1 or (fields.get("stride", 1) != 1 or fields.get("padding", "same") != "same"):
            fields["residual"] = False  # a skip needs the input's shape: never on the first block or a resize
        width = widths[i - 1] if not fields.get("residual") else blocks[-1].out_channels
        blocks.append(ConvBlock(width, **fields))
    fc_layers = _suggest(trial, "fc_layers", arch.get("fc_layers", 0), KNOBS["fc_layers"])
    fc = tuple(_suggest(trial, f"fc{i}.units", arch.get("fc_units", 128), KNOBS["fc_units"])
               for i in range(1, fc_layers + 1))
    toggles = {n: _suggest(trial, n, arch[n], specs[n]) for n in ARCH_FIELDS if n in arch}
    return ArchConfig(conv=tuple(blocks), fc=fc, **toggles)


def sample_train(trial: Any, space: dict, epochs: int) -> TrainConfig:
    base = RECIPES[space.get("recipe", DEFAULT_RECIPE)].to_dict()
    specs = _train_specs()
    values = {n: _suggest(trial, f"train.{n}", entry, specs[n]) for n, entry in space.get("train", {}).items()}
    values["epochs"] = epochs
    values["warmup_epochs"] = min(values.get("warmup_epochs", base["warmup_epochs"]), epochs)
    return TrainConfig.from_dict(base | values)


def sample(trial: Any, space: dict, epochs: int = 1) -> tuple[ArchConfig, TrainConfig]:
    """(ArchConfig, TrainConfig) for one trial; ConfigError when the sample cannot be built."""
    return sample_arch(trial, space.get("arch", {})), sample_train(trial, space, epochs)


class _Recorder:
    """Stands in for an Optuna trial and answers every suggestion with the value a known design has, so the
    params that make `sample` rebuild that design can be enqueued as a trial (a baseline)."""

    def __init__(self, arch: ArchConfig, train: TrainConfig):
        self.arch, self.train, self.params = arch, train, {}

    def _value(self, name: str) -> Any:
        arch, blocks = self.arch, self.arch.conv
        if name == "depth":
            return len(blocks)
        if name == "width_multiplier":
            return 1.0
        if name == "fc_layers":
            return len(arch.fc)
        if name.startswith("train."):
            value = getattr(self.train, name.removeprefix("train."))
            return ",".join(value) or "none" if isinstance(value, tuple) else value
        if name.startswith("fc") and name.endswith(".units"):
            return arch.fc[int(name[2:-6]) - 1]
        if name.startswith("conv"):
            index, field = name[4:].split(".")
            return getattr(blocks[int(index) - 1], "out_channels" if field == "width" else field)
        return getattr(arch, name)

    def _suggest(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.params[name] = self._value(name)
        return self.params[name]

    suggest_int = suggest_float = suggest_categorical = _suggest


def design_params(space: dict, arch: ArchConfig, train: TrainConfig) -> dict[str, Any]:
    """The trial params under which `sample(trial, space)` builds `arch` with `train`'s settings (as far as the
    space lets it: fixed entries stay fixed), for `study.enqueue_trial`."""
    recorder = _Recorder(arch, train)
    sample(recorder, space)
    return recorder.params


# ------------------------------------------------------------------------------------------- around a preset


def _around(value: float, low_factor: float, high_factor: float, spec: Spec, log: bool = True) -> dict:
    low, high = max(spec.low, value * low_factor), min(spec.high, value * high_factor)
    if spec.kind == "int":
        low, high = math.floor(low), math.ceil(high)
    return {"low": low, "high": high, "log": log} if log else {"low": low, "high": high}


def _span(cls: type, name: str) -> dict:
    """The declared search range of a setting as a space entry."""
    low, high = schema.spec_of(cls, name).search_span
    return {"low": low, "high": high}


def space_around(preset: str, recipe: str | None = None) -> dict:
    """A sensible space around a preset: its widths scaled 0.5-1.5x, depth one less to two more, the preset's
    kernel/pool/toggles plus the usual alternatives; the recipe's lr /4..x2, batch size, smoothing, EMA,
    whitened first layer, translate TTA."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; use one of {', '.join(sorted(PRESETS))}.")
    arch = PRESETS[preset]
    recipe = recipe or DEFAULT_RECIPE
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}.")
    train = RECIPES[recipe]
    depth = len(arch.conv)
    kernels = sorted({3, *(b.kernel for b in arch.conv)})
    arch_space: dict[str, Any] = {
        "depth": {"low": max(1, depth - 1), "high": min(MAX_CONV_BLOCKS, depth + 2)},
        "widths": [b.out_channels for b in arch.conv], "width_multiplier": {"low": 0.5, "high": 1.5},
        "kernel": {"choices": kernels if len(kernels) > 1 else [3, 5]},
        "padding": arch.conv[0].padding, "pool": {"choices": ["none", "max"]},
        "residual": {"choices": [False, True]}, "batchnorm": arch.batchnorm,
        "pool_first": {"choices": [False, True]},
        "dropout": _span(ArchConfig, "dropout"), "activation": {"choices": sorted({arch.activation, "relu", "gelu"})},
        "head": {"choices": sorted({arch.head, "avgpool", "maxpool"})},
        "fc_layers": {"low": 0, "high": max(1, len(arch.fc))},
        "fc_units": {"low": 32, "high": max(256, *arch.fc) if arch.fc else 256, "log": True}}
    lr = schema.spec_of(TrainConfig, "lr")
    train_space: dict[str, Any] = {
        "lr": _around(train.lr, 0.25, 2.0, lr),
        "batch_size": {"choices": sorted({train.batch_size, 128, 256, 512})},
        "label_smoothing": _span(TrainConfig, "label_smoothing"),
        "augment": {"choices": [list(train.augment), ["flip"], []] if train.augment else [[], ["flip"],
                                                                                           ["flip", "crop"]]},
        "ema": {"choices": sorted({train.ema, 0.0, 0.999})},
        "whiten": {"choices": [False, True]}, "tta_translate": {"choices": [0, 1]}}
    return check_space({"recipe": recipe, "arch": arch_space, "train": train_space})


# ------------------------------------------------------------------------------------------- the docs' table


def fields_table() -> str:
    """The Markdown table of every setting a space may hold (docs/search.md holds it; a test keeps it current)."""
    lines = ["| section | entry | what | allowed | default search range |", "|---|---|---|---|---|"]
    for section in ("arch", "train"):
        for name, spec in section_specs(section).items():
            where = "per block" if section == "arch" and name in BLOCK_FIELDS else (
                "search knob" if name in KNOBS else "")
            span = spec.search_span
            default_range = f"{span[0]:g} to {span[1]:g}" if spec.search_range is not None else ""
            lines.append(f"| {section} | `{name}` | {spec.label}{f' ({where})' if where else ''} | "
                         f"{schema.describe(spec)} | {default_range} |")
    return "\n".join(lines)


__all__ = ["fields_table", "check_space", "load_space", "sample", "sample_arch", "sample_train", "space_around",
           "check_entry", "design_params", "section_specs"]
