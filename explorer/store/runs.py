"""Run history: read, rename and delete the run folders jobs.py writes; tables, Pareto frontier, config diffs.

A run folder is `<runs_dir>/<run_id>/` with `run.json` (the record), `events.jsonl` (one event per line)
and `model.safetensors`. Nothing here writes while a run is active (the job owns its folder then).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.errors import ExplorerError
from explorer.store.checkpoint import atomic_write_bytes

DEFAULT_RUNS_DIR = "checkpoints"
RUNS_DIR_ENV = "EXPLORER_RUNS_DIR"
RECORD_NAME = "run.json"
EVENTS_NAME = "events.jsonl"
ACTIVE_STATUSES = ("queued", "running")
MAX_NAME_LENGTH = 80

# The comparison table's columns, in display order (see runs_table).
TABLE_COLUMNS = ["id", "name", "preset", "recipe", "status", "params", "flops", "best_test_accuracy",
                 "final_test_accuracy", "epochs", "wall_seconds", "images_per_second", "device", "data", "created",
                 "resumed_from"]
CURVE_COLUMNS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "lr"]


class RunError(ExplorerError):
    """A run that cannot be found, read, renamed or deleted."""


def default_runs_dir() -> Path:
    """`$EXPLORER_RUNS_DIR`, else `checkpoints` in the current directory."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def _root(runs_dir: str | os.PathLike | None) -> Path:
    return Path(runs_dir) if runs_dir is not None else default_runs_dir()


def run_dir(run_id: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder of `run_id`; RunError for ids that would leave the runs folder or do not exist."""
    if not isinstance(run_id, str) or not run_id or run_id != Path(run_id).name or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a run id (a folder name inside the runs folder).")
    path = _root(runs_dir) / run_id
    if not (path / RECORD_NAME).is_file():
        raise RunError(f"no run {run_id!r} in {_root(runs_dir)}; `python -m explorer runs` lists the runs there.")
    return path


# ----------------------------------------------------------------------------------------------- reading


def read_run(run_id: str, runs_dir: str | os.PathLike | None = None) -> dict:
    """The run record (run.json) with "dir" added."""
    path = run_dir(run_id, runs_dir)
    try:
        record = json.loads((path / RECORD_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"run {run_id}: run.json cannot be read ({err}); delete the run or fix the file.") from None
    if not isinstance(record, dict):
        raise RunError(f"run {run_id}: run.json is not a JSON object.")
    return record | {"id": record.get("id") or run_id, "dir": str(path)}


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every readable run record, newest first. Unreadable folders come back with status "unreadable"."""
    root = _root(runs_dir)
    if not root.is_dir():
        return []
    records = []
    for path in root.iterdir():
        if not (path / RECORD_NAME).is_file() or path.name.startswith("."):
            continue
        try:
            records.append(read_run(path.name, root))
        except RunError as err:
            records.append({"id": path.name, "name": path.name, "status": "unreadable", "error": str(err),
                            "dir": str(path)})
    return sorted(records, key=lambda r: (str(r.get("created") or ""), r["id"]), reverse=True)


def read_events(run_id: str, runs_dir: str | os.PathLike | None = None, types: Collection[str] | None = None
                ) -> list[dict]:
    """The run's events in order; a half-written last line (the run is still writing) is skipped."""
    path = run_dir(run_id, runs_dir) / EVENTS_NAME
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"run {run_id}: events.jsonl cannot be read ({err}).") from None
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and (types is None or event.get("type") in types):
            events.append(event)
    return events


def epoch_curves(events: Iterable[dict]) -> pd.DataFrame:
    """One row per epoch event (later events for the same epoch win: a resumed run may repeat one)."""
    rows = {}
    for event in events:
        if event.get("type") == "epoch" and "epoch" in event:
            rows[event["epoch"]] = {c: event.get(c) for c in CURVE_COLUMNS}
    frame = pd.DataFrame(list(rows.values()), columns=CURVE_COLUMNS)
    return frame.sort_values("epoch").reset_index(drop=True)


def run_curves(run_id: str, runs_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per-epoch curves of a run, preceded by those of the runs it was resumed from (so they continue)."""
    chain, seen, current = [], set(), run_id
    while current and current not in seen:
        seen.add(current)
        try:
            record = read_run(current, runs_dir)
        except RunError:
            break  # the parent was deleted: show what is left
        chain.append(current)
        current = record.get("resumed_from")
    frames = [epoch_curves(read_events(rid, runs_dir)) for rid in reversed(chain)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return epoch_curves([])
    merged = pd.concat(frames, ignore_index=True)
    return merged.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- table


def _summary(record: dict) -> dict:
    return record.get("summary") or {}


def table_row(record: dict) -> dict:
    summary = _summary(record)
    return {
        "id": record.get("id"), "name": record.get("name") or record.get("preset") or record.get("id"),
        "preset": record.get("preset"), "recipe": record.get("recipe"), "status": record.get("status"),
        "params": record.get("params"), "flops": record.get("flops"),
        "best_test_accuracy": summary.get("best_test_accuracy"),
        "final_test_accuracy": summary.get("final_test_accuracy"),
        "epochs": summary.get("epochs_done"), "wall_seconds": summary.get("wall_seconds"),
        "images_per_second": summary.get("images_per_second"), "device": record.get("device"),
        "data": record.get("data"), "created": record.get("created"), "resumed_from": record.get("resumed_from"),
    }


def runs_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per run with the columns TABLE_COLUMNS (numbers as numbers, missing as NaN/None)."""
    frame = pd.DataFrame([table_row(r) for r in records], columns=TABLE_COLUMNS)
    for column in ("params", "flops", "best_test_accuracy", "final_test_accuracy", "epochs", "wall_seconds",
                   "images_per_second"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def filter_runs(table: pd.DataFrame, text: str = "", statuses: Collection[str] | None = None,
                max_params: float | None = None) -> pd.DataFrame:
    """Rows whose id/name/preset/recipe/data contain `text` (any case), with a status in `statuses`."""
    keep = pd.Series(True, index=table.index)
    if text:
        columns = [table[c].map(lambda v: "" if v is None or v != v else str(v)) for c in
                   ("id", "name", "preset", "recipe", "data")]  # v != v: NaN
        haystack = columns[0].str.cat(columns[1:], sep=" ")
        keep &= haystack.str.contains(text, case=False, regex=False)
    if statuses:
        keep &= table["status"].isin(list(statuses))
    if max_params is not None:
        keep &= table["params"] <= max_params
    return table[keep]


def pareto_frontier(table: pd.DataFrame, x: str = "params", y: str = "best_test_accuracy") -> pd.Series:
    """True for the runs no other run beats: none has at most as much `x` and at least as much `y`, one strictly.

    Rows missing either value are never on the frontier.
    """
    frontier = pd.Series(False, index=table.index)
    points = table[[x, y]].dropna()
    best_y = float("-inf")
    # Sweep by increasing cost (ties: best accuracy first); a point is on the frontier iff it beats every cheaper one.
    for index, row in points.sort_values([x, y], ascending=[True, False]).iterrows():
        if row[y] > best_y:
            frontier[index] = True
            best_y = row[y]
    return frontier


def metrics_csv(table: pd.DataFrame) -> str:
    """The comparison table as CSV text (for download or `--csv`)."""
    return table.to_csv(index=False)


def curves_csv(run_ids: Iterable[str], runs_dir: str | os.PathLike | None = None) -> str:
    """Per-epoch metrics of several runs, one row per (run, epoch)."""
    frames = [run_curves(rid, runs_dir).assign(run=rid) for rid in run_ids]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return ",".join(["run"] + CURVE_COLUMNS) + "\n"
    merged = pd.concat(frames, ignore_index=True)
    return merged[["run"] + CURVE_COLUMNS].to_csv(index=False)


# ----------------------------------------------------------------------------------------------- diff


def flatten_config(record: dict) -> dict[str, Any]:
    """A run's settings as flat "section.key" -> value: arch (per conv block), training, data."""
    flat: dict[str, Any] = {}
    arch = record.get("arch") or {}
    for i, block in enumerate(arch.get("conv") or [], 1):
        for key, value in block.items():
            flat[f"arch.conv{i}.{key}"] = value
    for key, value in arch.items():
        if key != "conv":
            flat[f"arch.{key}"] = _joined(value)
    for key, value in (record.get("train") or {}).items():
        flat[f"train.{key}"] = _joined(value)
    for key in ("data", "preset", "recipe", "params", "flops", "device"):
        flat[key] = record.get(key)
    return flat


def _joined(value: Any) -> Any:
    """Lists as "a, b" ("none" when empty) so a diff cell reads like the widget."""
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return value


def config_diff(a: dict, b: dict, only_differences: bool = True) -> pd.DataFrame:
    """Side-by-side settings of two run records: columns setting, <name a>, <name b>, differs."""
    flat_a, flat_b = flatten_config(a), flatten_config(b)
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    label_a, label_b = _label(a), _label(b)
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    rows = []
    for key in keys:
        va, vb = flat_a.get(key, "—"), flat_b.get(key, "—")
        rows.append({"setting": key, label_a: _cell(va), label_b: _cell(vb), "differs": va != vb})
    frame = pd.DataFrame(rows, columns=["setting", label_a, label_b, "differs"])
    return frame[frame["differs"]].reset_index(drop=True) if only_differences else frame


def _label(record: dict) -> str:
    return str(record.get("name") or record.get("id"))


def _cell(value: Any) -> str:
    # One dtype per column so Streamlit/Arrow can show mixed settings.
    return "—" if value is None else str(value)


# ----------------------------------------------------------------------------------------------- changes


def _check_not_active(run_id: str, record: dict, active: Collection[str], action: str) -> None:
    if run_id in active:
        raise RunError(f"run {run_id} is still {record.get('status', 'running')}; stop it before you {action} it.")


def rename_run(run_id: str, new_name: str, runs_dir: str | os.PathLike | None = None,
               active: Collection[str] = ()) -> dict:
    """Give a run a new display name (its id and folder stay); returns the updated record."""
    name = " ".join(str(new_name).split())
    if not name or len(name) > MAX_NAME_LENGTH:
        raise RunError(f"a run name needs 1 to {MAX_NAME_LENGTH} characters.")
    record = read_run(run_id, runs_dir)
    _check_not_active(run_id, record, active, "rename")
    path = Path(record.pop("dir"))
    record["name"] = name
    atomic_write_bytes(path / RECORD_NAME, json.dumps(record, indent=2).encode())
    return record | {"dir": str(path)}


def delete_run(run_id: str, runs_dir: str | os.PathLike | None = None, active: Collection[str] = ()) -> None:
    """Remove a run folder (record, events, checkpoint). The folder is first renamed so a half-done delete
    never leaves a half run that is still listed."""
    record = read_run(run_id, runs_dir)
    _check_not_active(run_id, record, active, "delete")
    path = Path(record["dir"])
    trash = path.with_name(f".deleted-{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


__all__ = ["RunError", "default_runs_dir", "run_dir", "read_run", "list_runs", "read_events", "epoch_curves",
           "run_curves", "runs_table", "table_row", "filter_runs", "pareto_frontier", "metrics_csv", "curves_csv",
           "flatten_config", "config_diff", "rename_run", "delete_run", "TABLE_COLUMNS", "CURVE_COLUMNS"]
