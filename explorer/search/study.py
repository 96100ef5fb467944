"""Studies: the storage a string names, a study's settings (kept in its user attrs), its trials as rows.

Storage: `journal:PATH` is Optuna's JournalStorage with its file backend (any number of worker processes on one
machine); anything else is a SQLAlchemy URL for RDBStorage (workers on many machines), with a heartbeat so a
worker that dies mid-trial has its trial failed and retried by Optuna's RetryHeartbeatStaleTrialCallback.
Omitted: `journal:<runs_dir>/searches/<name>/journal.log`.

Trial states (docs/search.md): COMPLETE (trained to the end), PRUNED (stopped early by the pruner), PRUNED with
user attr `rejected` (over the parameter/FLOPs budget or not buildable: never trained, recorded in
milliseconds), FAIL (training failed, or its worker died: then retried once more as a new WAITING trial).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from explorer.arch.cost import DEFAULT_BUDGET
from explorer.arch.presets import PRESETS
from explorer.engine.recipes import DEFAULT_RECIPE, RECIPES
from explorer.errors import ConfigError
from explorer.search.space import check_space, design_params
from explorer.search.storage import check_storage, hide_password, repair_journal, storage_file
from explorer.store import settings as store_settings

OBJECTIVES = ("accuracy", "params", "flops")
STATES = ("complete", "running", "waiting", "pruned", "rejected", "failed", "skipped")
SETTINGS_ATTR = "explorer_search"
HEARTBEAT_SECONDS, GRACE_SECONDS = 10, 30
MAX_RETRY = 2
MIN_FOR_IMPORTANCE = 4
# One RDBStorage per database URL and process: each RDBStorage owns an engine whose pool keeps connections open
# until the garbage collector finds it, so one per poll (the app's Search page, the supervisor, `search status`)
# exhausted PostgreSQL's connections ("An exception is raised during the commit" in a worker or a poll).
_DATABASES: dict[str, Any] = {}
_DATABASES_LOCK = threading.Lock()


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


def default_storage(name: str, runs_dir: str | os.PathLike | None = None) -> str:
    root = Path(runs_dir) if runs_dir is not None else store_settings.default_runs_dir()
    return f"journal:{root / 'searches' / name / 'journal.log'}"


def make_storage(url: str, create: bool = True) -> Any:
    """The Optuna storage `url` names (see the module docstring); ConfigError for one that cannot open (or, with
    create=False, a journal or SQLite file that does not exist: reading a search never creates files). Checked
    (explorer.search.storage) before any folder or file is made; a journal's torn last line is repaired."""
    optuna = _optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    url = check_storage(url, create)
    kind, path = storage_file(url)
    if kind == "journal":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            repair_journal(path)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise ConfigError(f"storage {url}: cannot open the journal file: {err.strerror or err}.") from None
    with _DATABASES_LOCK:
        if url in _DATABASES:
            return _DATABASES[url]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # pre-ping: a kept storage outlives a database restart (a stale pooled connection is replaced).
                storage = RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_SECONDS,
                                     grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=(
                                         RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)))
        except Exception as err:  # sqlalchemy's URL, driver and connection errors have no common base
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"storage {hide_password(url)!r} cannot be opened ({_without(first, url)}); use "
                              f"journal:PATH or a SQLAlchemy URL such as postgresql+psycopg://user@host/db.") from None
        _DATABASES[url] = storage
        return storage


def _without(text: str, url: str) -> str:
    """A driver's message with the URL's password, if it quotes it, hidden."""
    return text.replace(url, hide_password(url))


def check_objectives(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names[0] != "accuracy" or len(set(names)) != len(names) or any(n not in OBJECTIVES for n in names):
        raise ConfigError(f"objectives {text!r}: use accuracy, accuracy,params, accuracy,flops or "
                          f"accuracy,params,flops.")
    return names


def make_settings(space: dict, data: str, trial_seconds: float | None = None, trial_epochs: int | None = None,
                  budget: int | None = DEFAULT_BUDGET, flops_budget: float | None = None,
                  objectives: str = "accuracy", validation_fraction: float = 0.1, validation_seed: int = 0,
                  data_dir: str | os.PathLike | None = None, artifacts: str | None = None) -> dict:
    """A study's settings, checked; the data source is loaded once for its image shape and classes."""
    from explorer.engine.data import load_dataset

    check_space(space)
    if trial_seconds is not None and trial_epochs is not None:
        raise ConfigError("give either --trial-seconds or --trial-epochs, not both.")
    if trial_seconds is None and trial_epochs is None:
        trial_seconds = 60.0
    if trial_seconds is not None and not (1 <= trial_seconds <= 86400):
        raise ConfigError(f"trial seconds {trial_seconds}: use 1 to 86400.")
    if trial_epochs is not None and not (1 <= trial_epochs <= 1000):
        raise ConfigError(f"trial epochs {trial_epochs}: use 1 to 1000.")
    for label, value in (("budget", budget), ("flops budget", flops_budget)):
        if value is not None and not (value >= 1 and math.isfinite(value)):
            raise ConfigError(f"{label} {value}: use a positive number (parameters / FLOPs per image).")
    if not 0 < validation_fraction < 1:
        raise ConfigError(f"validation fraction {validation_fraction}: use a number between 0 and 1, e.g. 0.1.")
    dataset = load_dataset(data, data_dir if data_dir is not None else store_settings.default_data_dir())
    return {"space": space, "data": data, "trial_seconds": trial_seconds, "trial_epochs": trial_epochs,
            "budget": budget, "flops_budget": flops_budget, "objectives": check_objectives(objectives),
            "validation": {"fraction": validation_fraction, "seed": validation_seed},
            "input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes,
            "artifacts": str(Path(artifacts).expanduser().resolve()) if artifacts else None}


def artifact_dir(settings: dict, storage_url: str) -> Path | None:
    """Where trials upload their checkpoints (an Optuna FileSystemArtifactStore): the search's `artifacts`
    folder (a shared path for workers on many machines), else `artifacts/` beside a journal file."""
    if settings.get("artifacts"):
        return Path(settings["artifacts"])
    if storage_url.startswith("journal:"):
        return Path(storage_url.removeprefix("journal:")).expanduser().parent / "artifacts"
    return None


def fetch_checkpoint(settings: dict, storage_url: str, row: dict, destination: Path) -> Path:
    """Download a trial's checkpoint from the artifact store (trials of any machine); ConfigError if it has none."""
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    folder, artifact = artifact_dir(settings, storage_url), (row.get("checkpoint_artifact") or None)
    if folder is None or artifact is None:
        raise ConfigError(f"trial {row['number']} has no checkpoint in the artifact store (it was not trained, or "
                          f"the search has no --artifacts folder).")
    destination.parent.mkdir(parents=True, exist_ok=True)
    download_artifact(artifact_store=FileSystemArtifactStore(folder), file_path=str(destination),
                      artifact_id=artifact)
    return destination


def directions(objectives: list[str]) -> list[str]:
    return ["maximize" if n == "accuracy" else "minimize" for n in objectives]


def sampler_and_pruner(settings: dict) -> tuple[Any, Any]:
    """Not kept in the storage: every worker builds them from the settings. TPE learns from rejected trials
    through their constraints (> 0: over budget); one objective prunes with Hyperband on per-epoch accuracy."""
    optuna = _optuna()
    if settings.get("sweep"):  # a sweep (explorer.search.sweep): every grid point, no pruning
        from explorer.search.sweep import grid_sampler

        return grid_sampler(settings), optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna 5 reads the constraints trial.set_constraint stored; 4.x needs a constraints_func.
        legacy = not hasattr(optuna.trial.Trial, "set_constraint")
        constraints = (lambda t: t.user_attrs.get("constraint", [0.0, 0.0, 0.0])) if legacy else None
        sampler = optuna.samplers.TPESampler(constraints_func=constraints, multivariate=True, group=True,
                                             n_startup_trials=5)
    single = len(settings["objectives"]) == 1
    pruner = optuna.pruners.HyperbandPruner(min_resource=1) if single else optuna.pruners.NopPruner()
    return sampler, pruner


def create_search(name: str, storage_url: str, settings: dict, baseline: str | None = None) -> Any:
    """A new search; `baseline` (a preset) is enqueued as its first trial, trained under the same rules as every
    other trial, so the search's results are read against a known net measured the same way."""
    optuna = _optuna()
    if baseline is not None and baseline not in PRESETS:
        raise ConfigError(f"unknown baseline preset {baseline!r}; use one of {', '.join(sorted(PRESETS))}.")
    storage = make_storage(storage_url)
    sampler, pruner = sampler_and_pruner(settings)
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions(settings["objectives"]),
                                    sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"search {name!r} already exists in {hide_password(storage_url)}; run it with "
                          f"`search run {name}` or pick another name.") from None
    study.set_user_attr(SETTINGS_ATTR, settings)
    if baseline is not None:
        space = settings["space"]
        recipe = RECIPES[space.get("recipe", DEFAULT_RECIPE)]
        study.enqueue_trial(design_params(space, PRESETS[baseline], recipe), user_attrs={"baseline": baseline})
    return study


def load_search(name: str, storage_url: str) -> tuple[Any, dict]:
    """(study, settings); ConfigError when the storage has no such search."""
    optuna = _optuna()
    storage = make_storage(storage_url, create=False)
    shown = hide_password(storage_url)
    try:
        summaries = optuna.study.get_all_study_names(storage)
    except Exception as err:  # a database that cannot be reached
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"storage {shown}: {_without(first, storage_url)}") from None
    if name not in summaries:
        known = ", ".join(summaries) or "none"
        raise ConfigError(f"no search {name!r} in {shown} (searches there: {known}); create it with "
                          f"`python -m explorer search create {name} ...`.")
    probe = optuna.load_study(study_name=name, storage=storage)
    settings = probe.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(settings, dict):
        raise ConfigError(f"study {name!r} in {shown} was not created by `explorer search create`.")
    sampler, pruner = sampler_and_pruner(settings)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), settings


# ------------------------------------------------------------------------------------------- reading trials


def trial_status(trial: Any) -> str:
    """complete, running, waiting, pruned, rejected, failed or skipped (started when the search already held its
    --trials: ended at once, never trained)."""
    state = trial.state.name.lower()
    if state == "pruned" and "rejected" in trial.user_attrs:
        return "rejected"
    if state == "fail" and "skipped" in trial.user_attrs:
        return "skipped"
    return {"fail": "failed"}.get(state, state)


def _reason(trial: Any) -> str | None:
    """Why a trial was not trained or did not finish, in words (None for one that did)."""
    attrs = trial.user_attrs
    return attrs.get("rejected") or attrs.get("skipped") or attrs.get("failed_because") or \
        (f"pruned after epoch {trial.last_step}" if trial.state.name == "PRUNED" and trial.last_step is not None
         else None)


def trial_row(trial: Any) -> dict:
    attrs = trial.user_attrs
    seconds = None
    if trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {"number": trial.number, "state": trial_status(trial), "val_accuracy": attrs.get("val_accuracy"),
            "test_accuracy": attrs.get("test_accuracy"), "params": attrs.get("params"), "flops": attrs.get("flops"),
            "epochs": attrs.get("epochs"), "seconds": seconds, "run_id": attrs.get("run_id"),
            "rejected": attrs.get("rejected"), "reason": _reason(trial),
            "retry_of": trial.system_attrs.get("failed_trial"),
            "checkpoint_artifact": attrs.get("checkpoint_artifact"), "baseline": attrs.get("baseline"),
            "train_images": attrs.get("train_images"),
            "config": attrs.get("config")}


def pareto(rows: list[dict], keys: tuple[str, ...] = ("params",)) -> list[dict]:
    """Complete trials no other complete trial beats on validation accuracy (higher) and every key (lower)."""
    from explorer.store.tables import pareto_mask  # the one Pareto rule, shared with the Runs page

    done = [r for r in rows if r["state"] == "complete" and r["val_accuracy"] is not None]
    on_front = pareto_mask([[r[k] for k in keys] for r in done], [r["val_accuracy"] for r in done])
    front = [r for r, on in zip(done, on_front) if on]
    return sorted(front, key=lambda r: (r["params"], -r["val_accuracy"]))


def cost_keys(settings: dict) -> tuple[str, ...]:
    """The costs a search's Pareto front weighs against accuracy: its cost objectives, else parameters."""
    return tuple(k for k in ("params", "flops") if k in settings["objectives"]) or ("params",)


def best(rows: list[dict], keys: tuple[str, ...] = ("params",)) -> dict | None:
    """The complete trial with the best validation accuracy, taken from the Pareto front on `keys`, so a tie goes
    to the trial that is cheaper by the search's own costs. (Breaking ties by parameters alone once named a trial
    off a FLOPs front: the same accuracy with fewer parameters but more FLOPs.)"""
    return max(pareto(rows, keys), key=lambda r: (r["val_accuracy"], -(r["params"] or 0)), default=None)


def status(study: Any, settings: dict) -> dict:
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    keys = cost_keys(settings)
    return {"name": study.study_name, "trials": len(rows), **counts, "objectives": settings["objectives"],
            "budget": settings["budget"], "flops_budget": settings["flops_budget"], "data": settings["data"],
            "pareto": pareto(rows, keys), "best": best(rows, keys)}


def param_importances(study: Any) -> dict[str, float]:
    """How much each sampled setting sets the best complete trials apart from the rest (Optuna's PED-ANOVA: no
    extra dependency, milliseconds; settings every complete trial has), largest first, summing to 1; {} while
    fewer than MIN_FOR_IMPORTANCE trials are complete or the sampled values do not vary yet."""
    optuna = _optuna()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_FOR_IMPORTANCE:
        return {}
    # Accuracy is the first objective; PED-ANOVA reads a target as lower-is-better (and says so in a warning).
    target = None if len(study.directions) == 1 else (lambda t: -t.values[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target=target)
    except (RuntimeError, ValueError):  # no parameter common to every complete trial, or all values equal
        return {}
    return {name: float(value) for name, value in found.items()}


def rows(study: Any) -> list[dict]:
    return [trial_row(t) for t in study.get_trials(deepcopy=False)]


def _counts(trial: Any) -> bool:
    # A failed trial does not count (its retry, a new trial, counts in its place); nor does a skipped one.
    return trial.state.name in ("COMPLETE", "PRUNED", "RUNNING", "WAITING") and "skipped" not in trial.user_attrs


def counted_trials(study: Any) -> int:
    """Trials towards --trials now: complete, pruned (rejected ones included) and running. Waiting ones are left
    out: a worker that sees N reached stops, and must not stop while a retry still waits for one to run it."""
    return sum(_counts(t) and t.state.name != "WAITING" for t in study.get_trials(deepcopy=False))


def trials_before(study: Any, number: int) -> int:
    """Trials numbered below `number` that count or will (waiting ones included): a trial that finds N of
    them is one too many. Trial numbers are unique, so of two workers that start at once only the later one
    can find the search full."""
    return sum(_counts(t) and t.number < number for t in study.get_trials(deepcopy=False))


__all__ = ["make_storage", "default_storage", "make_settings", "create_search", "load_search", "status", "rows",
           "best", "cost_keys", "pareto", "trial_row", "trial_status", "counted_trials", "trials_before", "OBJECTIVES",
           "check_objectives", "artifact_dir", "fetch_checkpoint", "param_importances"]
