"""Which storages a search may use, checked before anything is created; journals with a torn tail repaired.

Two rules:
- Everyone (CLI, notebooks): `journal:PATH` (any path its user gives) or a SQLAlchemy URL whose dialect is
  installed. A refused storage creates nothing: the checks run before any folder, file or connection; reading a
  search (status, run, the page) never creates a journal or an SQLite file that is not there.
- The app (a browser must not write files anywhere on the server): a PostgreSQL URL, `sqlite:///PATH` or
  `journal:PATH` only inside the runs folder (symlinks resolved), plus what EXPLORER_SEARCH_STORAGES allows:
  entries separated by commas or spaces, each a database scheme (`mysql`, `mysql+pymysql`) or a folder
  (`journal:/shared/searches`, `sqlite:////shared/db`) under which journal / SQLite files are allowed.

A URL's password is never shown: `hide_password` is what every message and the page print.

A torn journal: a process killed (or a disk filled) while appending leaves the last line without its newline.
Optuna skips such a line when reading, and the next append glues a new record to it, which makes the whole file
unreadable. `repair_journal` (run by every open, under the journal's own lock) completes a last line that is
whole JSON (only its newline missing) or drops a torn one; a damaged line anywhere else is refused with one line
saying how to repair it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from explorer.errors import ConfigError

STORAGES_ENV = "EXPLORER_SEARCH_STORAGES"
APP_SCHEMES = ("postgresql",)  # database backends the app accepts without EXPLORER_SEARCH_STORAGES
FILE_KINDS = ("journal", "sqlite")
log = logging.getLogger("explorer.search")


def hide_password(url: str) -> str:
    """`url` with its password as *** (a journal path, or text that is no URL, as it is)."""
    if url.startswith("journal:") or "@" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://***"  # unparseable: show the scheme only


def _database_url(url: str):
    """SQLAlchemy's URL object for `url`; ConfigError (naming no password) when it is not one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"storage {hide_password(url)!r} is neither journal:PATH nor a database URL such as "
                          f"postgresql+psycopg://user@host/db.") from None


def storage_file(url: str) -> tuple[str, Path | None]:
    """(kind, file): ("journal", path), ("sqlite", path or None for an in-memory database) or (scheme, None)."""
    if url.startswith("journal:"):
        text = url.removeprefix("journal:")
        if not text.strip():
            raise ConfigError("storage journal: needs a file path, e.g. journal:searches/s1/journal.log.")
        return "journal", Path(text).expanduser()
    parsed = _database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return "sqlite", Path(parsed.database).expanduser() if parsed.database not in (None, "", ":memory:") else None
    return parsed.drivername, None


def check_storage(url: str, create: bool = True) -> str:
    """`url` stripped, if a search may open it: a journal or SQLite path that is no folder (and exists, with
    create=False), a database dialect that is installed. Creates nothing."""
    url = str(url).strip()
    kind, path = storage_file(url)
    if kind not in FILE_KINDS:
        from sqlalchemy.exc import NoSuchModuleError

        try:
            _database_url(url).get_dialect()
        except NoSuchModuleError:
            raise ConfigError(f"storage {hide_password(url)!r} cannot be opened (no database driver for "
                              f"{kind!r}); use journal:PATH or a SQLAlchemy URL such as "
                              f"postgresql+psycopg://user@host/db.") from None
        return url
    if path is not None and path.is_dir():
        raise ConfigError(f"storage {url}: {path} is a folder; name a file in it, e.g. {path / 'journal.log'}.")
    if path is not None and not create and not path.is_file():
        raise ConfigError(f"no search {'journal' if kind == 'journal' else 'database'} at {path}; create the "
                          f"search with `python -m explorer search create NAME ...` (or give --storage / --runs-dir "
                          f"where it lives).")
    return url


def _allowed() -> tuple[set[str], list[tuple[str, Path]]]:
    """(database schemes, (kind, folder) pairs) the app accepts: the defaults plus EXPLORER_SEARCH_STORAGES."""
    schemes, folders = set(APP_SCHEMES), []
    for entry in (os.environ.get(STORAGES_ENV) or "").replace(",", " ").split():
        kind, _, rest = entry.partition(":")
        if kind in FILE_KINDS and rest:
            folder = rest.removeprefix("///") if kind == "sqlite" else rest
            folders.append((kind, Path(folder).expanduser().resolve()))
        else:
            schemes.add(entry.split("://", 1)[0])
    return schemes, folders


def check_app_storage(url: str, runs_dir: str | os.PathLike) -> str:
    """`url` if the app may use it (module docstring): ConfigError naming what is allowed otherwise. Creates
    nothing; call it before anything that would."""
    url = check_storage(url)
    kind, path = storage_file(url)
    schemes, folders = _allowed()
    if kind not in FILE_KINDS:
        if kind in schemes or kind.split("+")[0] in schemes:
            return url
        raise ConfigError(f"storage {hide_password(url)!r}: the app accepts {', '.join(sorted(schemes))} "
                          f"databases; list another scheme in {STORAGES_ENV} before starting the app.")
    roots = [Path(runs_dir).expanduser().resolve()] + [folder for k, folder in folders if k == kind]
    if path is not None and any(path.resolve().is_relative_to(root) for root in roots):
        return url
    raise ConfigError(f"storage {url}: the app keeps {kind} files inside the runs folder "
                      f"({', '.join(map(str, roots))}); leave Storage empty for a journal there, or list the folder "
                      f"in {STORAGES_ENV} (e.g. {kind}:/shared/searches) before starting the app.")


# ------------------------------------------------------------------------------------------- torn journals


def _damaged_line(data: bytes) -> int | None:
    """The 1-based number of the first complete line that is not JSON, None when every line is."""
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            json.loads(line)
        except ValueError:
            return number
    return None


def repair_journal(path: Path) -> str | None:
    """Complete or drop a torn last line of the journal at `path` (under its lock, so no writer is mid-append);
    what was done, or None when nothing was needed. ConfigError for a damaged line before the last."""
    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file():
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        damaged = _damaged_line(data)
        if damaged is not None:
            raise ConfigError(f"search journal {path} is damaged at line {damaged} (not JSON); keep a copy, then "
                              f"delete that line and every line after it (the trials they record are lost).")
        tail = data[data.rfind(b"\n") + 1:]
        if not tail:
            return None
        try:
            json.loads(tail)
            fix, done = b"\n", "completed its last line (only the newline was missing)"
        except ValueError:
            fix, done = None, f"dropped its torn last line ({len(tail)} bytes: a process died while writing it)"
        with open(path, "r+b") as journal:
            if fix is None:
                journal.truncate(len(data) - len(tail))
            else:
                journal.seek(0, os.SEEK_END)
                journal.write(fix)
            journal.flush()
            os.fsync(journal.fileno())
    finally:
        lock.release()
    log.warning("search journal %s: %s", path, done)
    return done


__all__ = ["check_storage", "check_app_storage", "hide_password", "storage_file", "repair_journal", "STORAGES_ENV"]
