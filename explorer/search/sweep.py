"""Sweeps: a grid of settings, each point trained `repeat` times with different seeds, on the search's machinery.

A sweep is a search whose settings (the study's user attrs) carry a `sweep` entry: the list of designs (grid
points, each a complete ArchConfig + TrainConfig fixed at creation) and the number of repeats. Its sampler is
Optuna's GridSampler over two dimensions, `point` and `repeat` (the seed is the recipe's seed + repeat), and
the same storage, worker processes (`search worker`), retries and run records as a search train it; budgets
do not apply (the study's 2-1 net is over 256k and must still run). Every value is checked against its
declaration (explorer.schema) and every design built, with the data's shape, before anything is written.

`--set` syntax: `train.batch_size=4,8,16`, `arch.batchnorm=true,false`, `preset=tutorial,study-2-2`; a list
setting joins its items with `+` (`train.augment=flip+crop,none`). Block settings (`arch.kernel`, `pool`, ...)
apply to every conv block; `arch.width_multiplier` scales every conv block's width.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any

from explorer import schema
from explorer.arch.config import ArchConfig
from explorer.arch.cost import buildable_cost
from explorer.arch.presets import PRESETS
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import RECIPES
from explorer.errors import ConfigError, ExplorerError
from explorer.search.space import ARCH_FIELDS, BLOCK_FIELDS, section_specs
from explorer.search.study import create_search, load_search, make_settings, trial_row
from explorer.search.trial import Objective, rejection
from explorer.store.stats import summarize

SWEEP_ATTR = "sweep"
MAX_SWEEP_RUNS = 500  # grid points x repeats: each is a training run
MAX_REPEAT = 50
ARCH_SWEEPABLE = (*ARCH_FIELDS, *BLOCK_FIELDS, "width_multiplier")
_PRESET_SPEC = schema.Spec(label="Preset", choices=tuple(PRESETS), name="preset", kind="str", default=None)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def sweepable_specs() -> dict[str, schema.Spec]:
    """Every setting a sweep may vary, by its `--set` name: preset, arch.X and train.X."""
    arch = {f"arch.{n}": s for n, s in section_specs("arch").items() if n in ARCH_SWEEPABLE}
    train = {f"train.{n}": s for n, s in section_specs("train").items()}
    return {"preset": _PRESET_SPEC} | arch | train


def _parse_value(spec: schema.Spec, text: str) -> Any:
    """One value of a --set list, as the setting's type; ConfigError naming the setting and its range."""
    text = text.strip()
    if spec.kind == "bool":
        if text.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"{spec.name}: {text!r} is not true or false; use e.g. {spec.name}=true,false.")
        value: Any = text.lower() in _TRUE
        return value
    if spec.kind.startswith("list["):
        return list(schema.parse_text(spec, text.replace("+", ",")))
    value = schema.parse_text(spec, text)
    if spec.kind == "float":
        value = float(value)
    return value


def parse_set(text: str) -> tuple[str, list[Any]]:
    """`NAME=V1,V2,...` as (name, checked values); ConfigError naming what to change."""
    specs = sweepable_specs()
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"--set {text!r}: write NAME=V1,V2,... e.g. --set train.batch_size=4,8,16.")
    if name not in specs:
        raise ConfigError(f"--set {name}: no such setting; sweepable settings are preset, "
                          f"{', '.join(n for n in specs if n != 'preset')}.")
    parts = [p for p in values.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--set {name}: no values; give at least one, e.g. --set {name}=V1,V2.")
    spec = dataclasses.replace(specs[name], name=name)
    parsed = [_parse_value(spec, p) for p in parts]
    if len({repr(v) for v in parsed}) != len(parsed):
        raise ConfigError(f"--set {name}: a value is listed twice ({values}); list each value once.")
    return name, parsed


def apply_settings(arch: ArchConfig, train: TrainConfig, values: dict[str, Any]) -> tuple[ArchConfig, TrainConfig]:
    """The design `values` ({--set name: value}) make of the base design; ConfigError when it cannot exist."""
    if "preset" in values:
        arch = PRESETS[values["preset"]]
    arch_dict, train_dict = arch.to_dict(), train.to_dict()
    for name, value in values.items():
        section, _, field = name.partition(".")
        if section == "train":
            train_dict[field] = value
        elif field in BLOCK_FIELDS:
            for block in arch_dict["conv"]:
                block[field] = value
        elif field == "width_multiplier":
            high = schema.spec_of(type(arch.conv[0]), "out_channels").high
            for block in arch_dict["conv"]:
                block["out_channels"] = max(1, min(int(high), round(block["out_channels"] * value)))
        elif section == "arch":
            arch_dict[field] = value
    return ArchConfig.from_dict(arch_dict), TrainConfig.from_dict(train_dict)


def grid(sets: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the --set values, in order (the last setting varies fastest)."""
    names = [name for name, _ in sets]
    if len(set(names)) != len(names):
        raise ConfigError(f"--set names one setting twice ({', '.join(names)}); give all its values in one --set.")
    return [dict(zip(names, combo)) for combo in itertools.product(*(values for _, values in sets))]


def check_size(points: int, repeat: int) -> None:
    if not 1 <= repeat <= MAX_REPEAT:
        raise ConfigError(f"--repeat {repeat}: use 1 to {MAX_REPEAT} seeds per grid point.")
    if points * repeat > MAX_SWEEP_RUNS:
        raise ConfigError(f"the grid has {points} points x {repeat} repeats = {points * repeat} runs, over "
                          f"{MAX_SWEEP_RUNS}; give fewer values per --set or a smaller --repeat.")


def make_points(values_list: list[dict[str, Any]], arch: ArchConfig, train: TrainConfig,
                input_shape: tuple[int, ...], num_classes: int) -> list[dict]:
    """Each grid point as {settings, arch, train, params, flops}, every design built against the data's shape."""
    points = []
    for values in values_list:
        label = ", ".join(f"{k}={v}" for k, v in values.items()) or "base design"
        try:
            point_arch, point_train = apply_settings(arch, train, values)
            cost = buildable_cost(point_arch, tuple(input_shape), num_classes)
        except ExplorerError as err:
            raise ConfigError(f"grid point {label}: {err}") from None
        points.append({"settings": values, "arch": point_arch.to_dict(), "train": point_train.to_dict(),
                       "params": cost.params, "flops": cost.flops})
    return points


def base_design(preset: str, recipe: str) -> tuple[ArchConfig, TrainConfig]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; use one of {', '.join(sorted(PRESETS))}.")
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}.")
    return PRESETS[preset], RECIPES[recipe]


def sweep_settings(values_list: list[dict[str, Any]], data: str, repeat: int, preset: str, recipe: str,
                   epochs: int | None = None, trial_seconds: float | None = None,
                   data_dir: str | os.PathLike | None = None, label: str | None = None) -> dict:
    """The checked settings of a sweep (nothing written): a search's settings plus the grid points."""
    check_size(len(values_list), repeat)
    arch, train = base_design(preset, recipe)
    if epochs is None and trial_seconds is None:
        epochs = train.epochs
    space = {"recipe": recipe, "arch": {"widths": [b.out_channels for b in arch.conv]}}
    settings = make_settings(space, data, trial_seconds=trial_seconds, trial_epochs=epochs, budget=None,
                             data_dir=data_dir)
    points = make_points(values_list, arch, train, settings["input_shape"], settings["num_classes"])
    keys = list(dict.fromkeys(k for values in values_list for k in values))
    return settings | {SWEEP_ATTR: {"points": points, "repeat": repeat, "keys": keys, "preset": preset,
                                    "recipe": recipe, "label": label}}


def create_sweep(name: str, storage_url: str, settings: dict) -> Any:
    """A new sweep in `storage_url` (a search with a grid sampler); ConfigError when the name is taken."""
    if SWEEP_ATTR not in settings:
        raise ConfigError("these settings are not a sweep's; build them with sweep_settings.")
    try:
        return create_search(name, storage_url, settings)
    except ConfigError as err:
        if "already exists" not in str(err):
            raise
        raise ConfigError(f"sweep {name!r} already exists in {storage_url}; run it with `python -m explorer sweep "
                          f"run {name}` or pick another name.") from None


def load_sweep(name: str, storage_url: str) -> tuple[Any, dict]:
    """(study, settings) of sweep `name`; ConfigError naming the command that creates it when there is none."""
    journal = Path(storage_url.removeprefix("journal:")).expanduser() if storage_url.startswith("journal:") else None
    if journal is not None and not journal.is_file():
        raise ConfigError(f"no sweep {name!r} at {journal}; create it with `python -m explorer sweep create {name} "
                          f"--set NAME=V1,V2 --data SOURCE` (or give --storage / --runs-dir where it lives).")
    study, settings = load_search(name, storage_url)
    if SWEEP_ATTR not in settings:
        raise ConfigError(f"{name!r} is a search, not a sweep; read it with `python -m explorer search status "
                          f"{name}`.")
    return study, settings


def grid_sampler(settings: dict) -> Any:
    """Optuna's GridSampler over (point, repeat): trial k of the first points x repeats trials gets grid k.
    The grid is put in repeat-major order (every point once, then every point again, ...) instead of Optuna's
    shuffle, so a sweep cut short has n - 1 or n runs at every point rather than n at some and none at others."""
    import optuna

    sweep = settings[SWEEP_ATTR]
    sampler = optuna.samplers.GridSampler({"point": list(range(len(sweep["points"]))),
                                           "repeat": list(range(sweep["repeat"]))}, seed=0)
    if isinstance(getattr(sampler, "_all_grids", None), list):  # (point, repeat) tuples: names sorted
        sampler._all_grids.sort(key=lambda values: (values[1], values[0]))
    return sampler


class SweepObjective(Objective):
    """A search trial whose design is its grid point's, with the seed of its repeat; never over budget."""

    def _sample_within_budget(self, trial: Any):
        sweep = self.settings[SWEEP_ATTR]
        index = trial.suggest_categorical("point", list(range(len(sweep["points"]))))
        repeat = trial.suggest_categorical("repeat", list(range(sweep["repeat"])))
        point = sweep["points"][index]
        arch, cfg = ArchConfig.from_dict(point["arch"]), TrainConfig.from_dict(point["train"])
        cfg = cfg.replace(seed=cfg.seed + repeat)
        for attr, value in (("sweep_point", index), ("repeat", repeat), ("params", point["params"]),
                            ("flops", point["flops"]), ("config", {"arch": arch.to_dict(), "train": cfg.to_dict()})):
            trial.set_user_attr(attr, value)
        self._refuse_duplicate(trial, index, repeat)
        return arch, cfg, buildable_cost(arch, tuple(self.settings["input_shape"]), self.settings["num_classes"]), \
            [0.0, 0.0]

    @staticmethod
    def _refuse_duplicate(trial: Any, index: int, repeat: int) -> None:
        """GridSampler hands a worker that finds every point taken a point another worker is still training:
        end that worker instead of training the point twice."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
        for other in trial.study.get_trials(deepcopy=False, states=states):
            if other.number != trial.number and other.params == {"point": index, "repeat": repeat}:
                trial.study.stop()
                raise rejection(trial, f"duplicate of trial {other.number} (grid point {index}, repeat {repeat})",
                                [0.0, 0.0, 0.0])


def remaining_runs(study: Any, settings: dict) -> int:
    """Grid runs (point x repeat) with no complete trial yet."""
    import optuna

    done = {(t.params.get("point"), t.params.get("repeat"))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    sweep = settings[SWEEP_ATTR]
    return len(sweep["points"]) * sweep["repeat"] - len(done)


def run_sweep(name: str, storage_url: str, workers: int = 1, runs_dir: os.PathLike | None = None,
              data_dir: os.PathLike | None = None) -> dict:
    """Train the sweep's missing runs with `workers` search worker processes (explorer.search.worker)."""
    from explorer.search.worker import run_search

    study, settings = load_sweep(name, storage_url)
    if remaining_runs(study, settings) == 0:
        return {"workers": 0, "exit_codes": [], "replaced": 0, "stopped": False}
    return run_search(name, storage_url, workers, None, None, runs_dir, data_dir)


# ------------------------------------------------------------------------------------------- reading a sweep


def point_rows(study: Any, settings: dict, metric: str = "test_accuracy") -> list[dict]:
    """One row per grid point: its settings, params, the trial counts and n, mean, std, 95 % interval of
    `metric` over its complete trials."""
    sweep = settings[SWEEP_ATTR]
    trials = [trial_row(t) | {"point": t.user_attrs.get("sweep_point", t.params.get("point"))}
              for t in study.get_trials(deepcopy=False)]
    out = []
    for index, point in enumerate(sweep["points"]):
        mine = [t for t in trials if t["point"] == index]
        values = [t[metric] for t in mine if t["state"] == "complete" and t[metric] is not None]
        stats = summarize(values).to_dict() if values else {"n": 0, "mean": None, "std": None, "low": None,
                                                                "high": None}
        counts = {state: sum(t["state"] == state for t in mine) for state in ("running", "waiting", "failed")}
        out.append({"point": index, "settings": point["settings"], "params": point["params"],
                    "flops": point["flops"], **stats, **counts, "run_ids": [t["run_id"] for t in mine
                                                                             if t["state"] == "complete"]})
    return out


def sweep_status(study: Any, settings: dict) -> dict:
    sweep = settings[SWEEP_ATTR]
    rows = point_rows(study, settings)
    done = sum(r["n"] for r in rows)
    return {"name": study.study_name, "data": settings["data"], "preset": sweep["preset"], "recipe": sweep["recipe"],
            "epochs": settings["trial_epochs"], "trial_seconds": settings["trial_seconds"],
            "repeat": sweep["repeat"], "keys": sweep["keys"], "runs": len(rows) * sweep["repeat"],
            "complete": done, "metric": "test_accuracy", "points": rows}


__all__ = ["run_sweep", "remaining_runs", "parse_set", "grid", "sweep_settings", "create_sweep", "load_sweep",
           "grid_sampler", "SweepObjective", "point_rows", "sweep_status", "sweepable_specs", "apply_settings",
           "check_size", "MAX_SWEEP_RUNS", "SWEEP_ATTR"]
