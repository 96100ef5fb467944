"""Workers: `search worker` runs study.optimize in this process; `search run` starts K of them and watches them.

Threads: K local workers get EXPLORER_THREADS = max(1, cores // K), so K workers never oversubscribe the cores
(and at least K training slots, EXPLORER_MAX_RUNS, so none of them queues behind another).

--trials N counts for the whole search, and holds: the search ends with exactly N complete or pruned trials
(rejected ones included). A failed trial does not count; its retry counts in its place. A worker starts no new
trial once the complete, pruned and running ones reach N (a running trial of another worker is already one of
the N). Two workers that ask for a trial at the same instant may both get one: the one numbered later finds N
trials before it and is *skipped* (failed at once with user attr `skipped`, never trained nor retried).

A worker killed mid-trial (SIGKILL, crash, reboot):
- RDB storage: Optuna's heartbeat (10 s, grace 30 s) fails the stale trial and RetryHeartbeatStaleTrialCallback
  queues a copy (WAITING, same params) that the next worker runs first.
- Journal storage (no heartbeat): every trial is stamped with its worker (user attr `worker`: pid, start time,
  host, trial number). `recover()` marks a RUNNING trial whose worker is on this host and gone as FAIL and
  enqueues a copy with the same params (system attrs `failed_trial` / `retry_history`, as Optuna's callback
  writes them, at most MAX_RETRY times). It runs when a worker starts, after each of its trials, and in
  `search run` as soon as one of its workers dies - which then starts a replacement. When two processes
  recover the same trial, the journal keeps only the first FAIL; the other gets UpdateFinishedTrialError and
  enqueues nothing.
- SIGTERM / SIGINT to a worker: its run stops cleanly (checkpoint, "stopped"), the trial is failed and queued
  again, and the worker exits; `search run` forwards them to its workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from explorer.errors import ConfigError, ExplorerError, TrainingError
from explorer.search.study import MAX_RETRY, _optuna, counted_trials, load_search, trials_before
from explorer.search.trial import Objective, WorkerStopped
from explorer.store import settings as store_settings
from explorer.store.process import child_env, last_log_line, logs_dir, spawn, threads_per_process
from explorer.store.runs import owner_alive

POLL_SECONDS = 0.5
MAX_REPLACEMENTS_PER_WORKER = 3


def retry(study: Any, trial: Any) -> bool:
    """Queue a copy of `trial` (same params) as WAITING unless it was retried MAX_RETRY times already."""
    optuna = _optuna()
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        return False
    # Only the sampled settings travel: the dead worker's stamp, run id and results belong to the old trial.
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions,
                                        system_attrs={"failed_trial": history[0], "retry_history": history}))
    return True


def _dead_worker(trial: Any) -> bool:
    worker = trial.user_attrs.get("worker")
    # A retried copy carries no stamp until its new worker writes one; a stamp of another trial is not its own.
    return isinstance(worker, dict) and worker.get("trial") == trial.number and not owner_alive(worker)


def recover(study: Any) -> list[int]:
    """Fail and re-queue the RUNNING trials whose worker on this host is gone; returns their numbers."""
    optuna = _optuna()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not _dead_worker(trial):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "failed_because", "its worker process died")
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process recovered it first
        retry(study, trial)
        recovered.append(trial.number)
    return recovered


class SearchFull(ExplorerError):
    """A trial started when the search already held its --trials (two workers asked at once): it is skipped."""


def _within(objective: Callable[[Any], Any], trials: int) -> Callable[[Any], Any]:
    """`objective`, except for a trial that finds the search full: that one is skipped (failed at once, user attr
    `skipped`, never retried) and this worker stops."""

    def run(trial: Any) -> Any:
        if trials_before(trial.study, trial.number) >= trials:
            trial.set_user_attr("skipped", f"the search already held its {trials} trials")
            trial.study.stop()
            raise SearchFull(f"trial {trial.number} skipped: the search already held its {trials} trials")
        return objective(trial)

    return run


def run_worker(name: str, storage_url: str, trials: int | None = None, timeout: float | None = None,
               runs_dir: Path | None = None, data_dir: Path | None = None) -> dict:
    """Run trials in this process until the search has `trials` (or `timeout` seconds pass); a summary."""
    optuna = _optuna()
    study, settings = load_search(name, storage_url)
    recover(study)
    runs_dir = Path(runs_dir) if runs_dir is not None else store_settings.default_runs_dir()
    data_dir = Path(data_dir) if data_dir is not None else store_settings.default_data_dir()
    objective = Objective(name, storage_url, settings, runs_dir, data_dir)
    callbacks = [lambda s, t: recover(s)]
    if trials is not None:
        if counted_trials(study) >= trials:
            return {"worker": os.getpid(), "trials_run": 0, "stopped": False}
        callbacks.append(lambda s, t: s.stop() if counted_trials(s) >= trials else None)
        objective = _within(objective, trials)
    stopped = False
    try:
        study.optimize(objective, timeout=timeout, catch=(TrainingError, SearchFull), callbacks=callbacks,
                       gc_after_trial=False)
    except WorkerStopped:
        stopped = True
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        mine = [t for t in failed if (t.user_attrs.get("worker") or {}).get("pid") == os.getpid()]
        if mine:
            retry(study, mine[-1])
    mine = [t for t in study.get_trials(deepcopy=False) if (t.user_attrs.get("worker") or {}).get("pid") == os.getpid()]
    return {"worker": os.getpid(), "trials_run": len(mine), "stopped": stopped}


# ------------------------------------------------------------------------------------------- K local workers


def worker_command(name: str, storage_url: str, trials: int | None, timeout: float | None,
                   runs_dir: Path | None, data_dir: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "explorer", "search", "worker", name, "--storage", storage_url]
    argv += ["--trials", str(trials)] if trials is not None else []
    argv += ["--timeout", str(timeout)] if timeout is not None else []
    argv += ["--runs-dir", str(runs_dir)] if runs_dir is not None else []
    argv += ["--data-dir", str(data_dir)] if data_dir is not None else []
    return argv


def worker_env(workers: int) -> dict[str, str]:
    env = child_env()
    env.setdefault("EXPLORER_THREADS", str(threads_per_process(workers)))
    env[store_settings.MAX_RUNS_ENV] = str(max(workers, store_settings.max_runs()))
    return env


class _Pool:
    """K worker processes; a worker that dies by a signal has its trial recovered and is replaced."""

    def __init__(self, name: str, storage_url: str, argv: list[str], env: dict, logs: Path):
        self.name, self.storage_url, self.argv, self.env, self.logs = name, storage_url, argv, env, logs
        self.children: list[subprocess.Popen] = []
        self.replacements, self.exits = 0, []
        self.stopping = False

    def start(self) -> subprocess.Popen:
        log = self.logs / f"search-{self.name}-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.exits)}-" \
                          f"{len(self.children)}.log"
        child = spawn(self.argv, log, self.env, detached=False)
        child.log = log  # type: ignore[attr-defined]
        self.children.append(child)
        return child

    def stop(self, signum: int = signal.SIGTERM) -> None:
        self.stopping = True
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def watch(self, workers: int) -> None:
        while self.children:
            time.sleep(POLL_SECONDS)
            for child in [c for c in self.children if c.poll() is not None]:
                self.children.remove(child)
                self.exits.append((child.returncode, last_log_line(child.log)))
                if child.returncode < 0 and not self.stopping and self.replacements < workers * \
                        MAX_REPLACEMENTS_PER_WORKER:
                    study, _ = load_search(self.name, self.storage_url)
                    recover(study)
                    self.replacements += 1
                    self.start()


def run_search(name: str, storage_url: str, workers: int = 1, trials: int | None = None,
               timeout: float | None = None, runs_dir: Path | None = None, data_dir: Path | None = None) -> dict:
    """Start `workers` worker processes and return when they are all done; a summary of how they ended."""
    if not 1 <= workers <= 256:
        raise ConfigError(f"workers {workers}: use 1 to 256 worker processes.")
    if trials is not None and trials < 1:
        raise ConfigError(f"trials {trials}: use at least 1.")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout {timeout}: use a positive number of seconds.")
    load_search(name, storage_url)  # a missing search or storage fails here, before any process starts
    logs = logs_dir(runs_dir if runs_dir is not None else store_settings.default_runs_dir())
    pool = _Pool(name, storage_url, worker_command(name, storage_url, trials, timeout, runs_dir, data_dir),
                 worker_env(workers), logs)
    previous = {s: signal.signal(s, lambda signum, frame: pool.stop(signal.SIGTERM))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            pool.start()
        pool.watch(workers)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for child in pool.children:  # only after an error in this process: never leave workers behind
            child.terminate()
    errors = [line for code, line in pool.exits if code > 0]
    if errors and len(errors) == len(pool.exits):
        raise ConfigError(f"every worker failed: {errors[-1]}")
    return {"workers": workers, "exit_codes": [code for code, _ in pool.exits], "replaced": pool.replacements,
            "stopped": pool.stopping}


__all__ = ["run_worker", "run_search", "recover", "retry", "worker_command", "worker_env"]
