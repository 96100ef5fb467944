"""The study replayed: its steps as two sweeps (2 epochs, and its longer runs), each conclusion tested with seeds.

The study (../shared/reference/original-study.md, in French) drew every conclusion from one run of each
design, trained the tutorial's way (SGD lr 0.001, momentum 0.9, normalization 0.5/0.5: the `study` recipe).
Each STEP is one of its designs with the test accuracy it reported; each CONCLUSION compares two steps:

- "better": the study found A better than B. Ours: confirmed (A better), within noise, or reversed (B better).
- "no better": the study found the change B brought nothing over A (or did not report a number). Ours:
  confirmed when B is not better (A better or within noise), reversed when B is better.

The difference of means, its 95 % interval and the verdict come from explorer.store.stats.compare (Welch).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from explorer.errors import ConfigError
from explorer.search.sweep import SWEEP_ATTR, create_sweep, load_sweep, run_sweep, sweep_settings
from explorer.store.stats import compare, summarize

RECIPE, BASE_PRESET = "study", "tutorial"
SHORT_EPOCHS, LONG_EPOCHS = 2, 12  # the study's comparisons; its longer runs (BatchNorm 12, Dropout 15 epochs)
DEFAULT_PREFIX = "study-replay"


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    settings: dict  # --set names -> values (a sweep grid point)
    reported: float | None  # the study's test accuracy (fraction), None when it gave no number
    long: bool = False  # trained LONG_EPOCHS instead of SHORT_EPOCHS


@dataclass(frozen=True)
class Conclusion:
    text: str
    a: str  # step keys
    b: str
    claim: str  # "better" (A better than B) or "no better" (B brings nothing over A)


STEPS = (
    Step("tutorial-b4", "tutorial net, batch 4 (the tutorial's)", {"preset": "tutorial", "train.batch_size": 4}, 0.54),
    Step("tutorial-b8", "tutorial net, batch 8", {"preset": "tutorial", "train.batch_size": 8}, 0.52),
    Step("tutorial-b16", "tutorial net, batch 16", {"preset": "tutorial", "train.batch_size": 16}, 0.46),
    Step("tutorial-b20", "tutorial net, batch 20", {"preset": "tutorial", "train.batch_size": 20}, 0.41),
    Step("wide", "widths 2-1 (32/64/128/64, 267,530 params)", {"preset": "study-wide"}, 0.58),
    Step("2-2", "widths 2-2 (25/50/100/50)", {"preset": "study-2-2"}, 0.61),
    Step("bn", "2-2 + BatchNorm", {"preset": "study-bn"}, 0.69),
    Step("bn-dropout", "2-2 + BatchNorm + Dropout 0.2", {"preset": "study-bn-dropout"}, 0.60),
    Step("bn-flip", "2-2 + BatchNorm + flip augmentation", {"preset": "study-bn", "train.augment": ["flip"]}, 0.62),
    # No numbers reported; PyTorch's default learning rates (Adam 0.001, Adagrad 0.01), as a swap of
    # optim.SGD for optim.Adam(net.parameters()) would use.
    Step("bn-adam", "2-2 + BatchNorm, Adam lr 0.001", {"preset": "study-bn", "train.optimizer": "adam"}, None),
    Step("bn-adagrad", "2-2 + BatchNorm, Adagrad lr 0.01",
         {"preset": "study-bn", "train.optimizer": "adagrad", "train.lr": 0.01}, None),
    Step("bn-long", "2-2 + BatchNorm, long run (study: 12 epochs)", {"preset": "study-bn"}, 0.73, long=True),
    Step("bn-dropout-long", "2-2 + BatchNorm + Dropout, long run (study: 15 epochs)",
         {"preset": "study-bn-dropout"}, 0.74, long=True),
)

CONCLUSIONS = (
    Conclusion("batch 16 is slightly better than batch 20", "tutorial-b16", "tutorial-b20", "better"),
    Conclusion("batch 8 is better than batch 16", "tutorial-b8", "tutorial-b16", "better"),
    Conclusion("batch 4 is better than batch 8 (8 kept: faster)", "tutorial-b4", "tutorial-b8", "better"),
    Conclusion("widths 2-1 beat the tutorial net", "wide", "tutorial-b8", "better"),
    Conclusion("widths 2-2 beat the tutorial net", "2-2", "tutorial-b8", "better"),
    Conclusion("BatchNorm improves the 2-2 net", "bn", "2-2", "better"),
    Conclusion("Dropout does not improve the BatchNorm net", "bn", "bn-dropout", "no better"),
    Conclusion("flip augmentation brings no gain in 2 epochs", "bn", "bn-flip", "no better"),
    Conclusion("Adam does not beat SGD", "bn", "bn-adam", "no better"),
    Conclusion("Adagrad does not beat SGD", "bn", "bn-adagrad", "no better"),
    Conclusion("trained longer, Dropout brings no great improvement", "bn-long", "bn-dropout-long", "no better"),
)
STEP_BY_KEY = {step.key: step for step in STEPS}


def scaled_epochs(epochs: int, scale: float) -> int:
    if not (scale > 0 and math.isfinite(scale)):
        raise ConfigError(f"--scale-epochs {scale}: use a positive factor, e.g. 0.5 for half the study's epochs.")
    return max(1, round(epochs * scale))


def sweep_names(prefix: str) -> dict[bool, str]:
    return {False: f"{prefix}-short", True: f"{prefix}-long"}


def _same_sweep(settings: dict, wanted: dict) -> bool:
    keys = ("data", "trial_epochs")
    return all(settings.get(k) == wanted.get(k) for k in keys) and \
        settings[SWEEP_ATTR]["repeat"] == wanted[SWEEP_ATTR]["repeat"] and \
        [p["settings"] for p in settings[SWEEP_ATTR]["points"]] == [p["settings"] for p in wanted[SWEEP_ATTR]["points"]]


def prepare(data: str, repeat: int, scale: float, storage_of: Any, prefix: str = DEFAULT_PREFIX,
            data_dir: str | os.PathLike | None = None, short_only: bool = False) -> dict[str, str]:
    """Create the study's two sweeps (or find them from an earlier, identical call: a replay resumes); returns
    {sweep name: storage URL}. Everything is checked before either is created. short_only: without the long
    runs (their conclusion then reads "not enough runs")."""
    wanted = {}
    for long, name in sweep_names(prefix).items():
        if long and short_only:
            continue
        steps = [step for step in STEPS if step.long == long]
        epochs = scaled_epochs(LONG_EPOCHS if long else SHORT_EPOCHS, scale)
        wanted[name] = sweep_settings([step.settings for step in steps], data, repeat, BASE_PRESET, RECIPE, epochs,
                                      data_dir=data_dir, label=f"the study replayed ({'long' if long else 'short'})")
    out = {}
    for name, settings in wanted.items():
        storage = storage_of(name)
        try:
            _, existing = load_sweep(name, storage)
        except ConfigError:
            existing = None
        if existing is not None and not _same_sweep(existing, settings):
            raise ConfigError(f"sweep {name} exists with other settings (data, epochs, repeats); give another "
                              f"--name or remove {name}.")
        out[name] = storage
    for name, settings in wanted.items():
        try:
            load_sweep(name, out[name])
        except ConfigError:
            create_sweep(name, out[name], settings)
    return out


def run(sweeps: dict[str, str], workers: int = 1, runs_dir: os.PathLike | None = None,
        data_dir: os.PathLike | None = None) -> None:
    for name, storage in sweeps.items():
        run_sweep(name, storage, workers, runs_dir, data_dir)


def step_values(sweeps: dict[str, str]) -> dict[str, list[float]]:
    """Each step's test accuracies (complete runs) read from the sweeps, by step key."""
    found: dict[str, list[float]] = {}
    for name, storage in sweeps.items():
        study, settings = load_sweep(name, storage)
        sweep = settings[SWEEP_ATTR]
        by_settings = {_key(p["settings"]): i for i, p in enumerate(sweep["points"])}
        values = _point_values(study, settings)
        for step in STEPS:
            index = by_settings.get(_key(step.settings))
            if index is not None and step.long == name.endswith("-long"):
                found[step.key] = values.get(index, [])
    return found


def _key(settings: dict) -> str:
    return repr(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in settings.items()))


def _point_values(study: Any, settings: dict) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for trial in study.get_trials(deepcopy=False):
        accuracy = trial.user_attrs.get("test_accuracy")
        if trial.state.name == "COMPLETE" and accuracy is not None:
            out.setdefault(trial.user_attrs.get("sweep_point"), []).append(accuracy)
    return out


def conclusion_verdict(claim: str, verdict: str) -> str:
    """The study's claim against our stats.compare verdict of A against B."""
    if claim == "better":
        return {"A better": "confirmed", "within noise": "within noise", "B better": "reversed"}[verdict]
    return "reversed" if verdict == "B better" else "confirmed"


def step_table(values: dict[str, list[float]]) -> list[dict]:
    """One row per step: the study's reported accuracy beside our n, mean and 95 % interval."""
    rows = []
    for step in STEPS:
        found = values.get(step.key, [])
        ours = summarize(found).to_dict() if found else {"n": 0, "mean": None, "std": None, "low": None,
                                                         "high": None}
        rows.append({"step": step.key, "label": step.label, "settings": step.settings, "long": step.long,
                     "reported": step.reported} | ours)
    return rows


def conclusion_table(values: dict[str, list[float]]) -> list[dict]:
    """One row per conclusion: the study's two numbers, our difference of means with its interval, p-value and
    verdict ("confirmed", "within noise", "reversed"; "not enough runs" below 2 runs a side)."""
    rows = []
    for item in CONCLUSIONS:
        a, b = values.get(item.a, []), values.get(item.b, [])
        row = {"conclusion": item.text, "a": item.a, "b": item.b, "claim": item.claim,
               "reported_a": STEP_BY_KEY[item.a].reported, "reported_b": STEP_BY_KEY[item.b].reported,
               "diff": None, "low": None, "high": None, "p_value": None}
        if len(a) < 2 or len(b) < 2:
            rows.append(row | {"verdict": "not enough runs", "n_a": len(a), "n_b": len(b)})
            continue
        result = compare(a, b)
        rows.append(row | {"diff": result.diff, "low": result.low, "high": result.high, "p_value": result.p_value,
                           "n_a": len(a), "n_b": len(b), "verdict": conclusion_verdict(item.claim, result.verdict)})
    return rows


def report(sweeps: dict[str, str]) -> dict:
    values = step_values(sweeps)
    return {"sweeps": sweeps, "steps": step_table(values), "conclusions": conclusion_table(values)}


__all__ = ["STEPS", "CONCLUSIONS", "Step", "Conclusion", "prepare", "run", "report", "step_table",
           "conclusion_table", "conclusion_verdict", "scaled_epochs", "sweep_names", "step_values"]
