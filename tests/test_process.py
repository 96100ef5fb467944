"""store/process.py: the one way explorer child processes are started, logged and sized."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from explorer.store import process


def test_a_child_finds_the_package_from_any_folder_and_logs_to_its_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository: only PYTHONPATH can make `import explorer` work
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    log = process.logs_dir(tmp_path / "runs") / "child.log"
    code = "import explorer, os; print(explorer.__file__); print('error: the last words')"
    child = process.spawn([sys.executable, "-c", code], log, process.child_env({"EXTRA": "1"}))
    assert child.wait(timeout=60) == 0
    first, last = log.read_text().splitlines()
    assert Path(first).parent.parent == Path(process.PACKAGE_ROOT)
    assert process.last_log_line(log) == "the last words"  # "error: " is dropped
    env = process.child_env({"EXTRA": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [process.PACKAGE_ROOT, "/elsewhere"] and env["EXTRA"] == "1"
    assert log.parent == tmp_path / "runs" / ".logs"


def test_a_detached_child_has_its_own_session(tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    child = process.spawn_detached([sys.executable, "-c", "import os; print(os.getsid(0))"], log)
    assert child.wait(timeout=60) == 0
    assert int(process.last_log_line(log)) == child.pid != os.getsid(0)


def test_last_log_line_of_a_missing_or_blank_log_is_empty(tmp_path: Path) -> None:
    assert process.last_log_line(tmp_path / "none.log") == ""
    (tmp_path / "blank.log").write_text("\n  \n")
    assert process.last_log_line(tmp_path / "blank.log") == ""


def test_threads_per_process_divides_the_cores_and_never_gives_zero(monkeypatch) -> None:
    import explorer.engine.train as train

    monkeypatch.setattr(train, "available_cores", lambda: 8)
    assert [process.threads_per_process(n) for n in (1, 2, 3, 8, 16, 0)] == [8, 4, 2, 1, 1, 8]
