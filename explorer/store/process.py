"""Child processes of the explorer: how they are started, where they log, what the last log line says.

A run (store.runner), a search's `search run` (search.control) and its workers (search.worker) are all
`python -m explorer ...` processes started the same way: the package's folder on PYTHONPATH (so the child finds
the package wherever the parent was started from), stdin closed, stdout and stderr to one log file under
`<runs_dir>/.logs/`, and, when they must outlive the app server, a session of their own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

LOGS_DIR = ".logs"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def logs_dir(runs_dir: str | os.PathLike) -> Path:
    """Where child processes of this runs folder write their logs."""
    return Path(runs_dir) / LOGS_DIR


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the package's folder first on PYTHONPATH, plus `extra`."""
    python_path = os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    return dict(os.environ) | {"PYTHONPATH": python_path} | (extra or {})


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None, detached: bool = True) -> subprocess.Popen:
    """Start `argv` (an explorer command) with its output appended to `log`. `env` replaces child_env() when
    given. Detached: a new session, so it outlives the app server and a Ctrl-C in the app's terminal; not
    detached: it stays in our process group, so a Ctrl-C to its parent reaches it too (search workers)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                env=env if env is not None else child_env(), start_new_session=detached)


def spawn_detached(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`spawn` in a session of its own, with child_env() plus `env`."""
    return spawn(argv, log, child_env(env), detached=True)


def last_log_line(path: Path) -> str:
    """The last non-empty line a process wrote to its log (its error, less the "error: " prefix); "" if none."""
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].removeprefix("error: ") if lines else ""
    return ""


def threads_per_process(processes: int) -> int:
    """CPU threads each of `processes` processes training side by side may use without oversubscribing."""
    from explorer.engine.train import available_cores

    return max(1, available_cores() // max(1, processes))


__all__ = ["LOGS_DIR", "logs_dir", "child_env", "spawn", "spawn_detached", "last_log_line", "threads_per_process"]
