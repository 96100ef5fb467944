"""Tables built from run records: the runs table (pandas), filters, the one Pareto rule, curves, CSV exports and
config diffs. The records themselves are read, listed and changed by store.runs."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from explorer.arch.presets import preset_label
from explorer.engine.data import canonical_source
from explorer.engine.recipes import recipe_label
from explorer.store.events import History
from explorer.store.runs import RunError, read_history, read_run

# The comparison table's columns, in display order (see runs_table).
TABLE_COLUMNS = ["id", "name", "preset", "recipe", "status", "params", "flops", "best_test_accuracy",
                 "final_test_accuracy", "epochs", "wall_seconds", "images_per_second", "device", "data", "created",
                 "resumed_from", "group", "seed", "message"]
CURVE_COLUMNS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "lr"]


# ----------------------------------------------------------------------------------------------- curves


def _curves(history: History) -> pd.DataFrame:
    return pd.DataFrame(history.curve_rows(), columns=CURVE_COLUMNS)


def run_curves(run_id: str, runs_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per-epoch curves of a run, preceded by those of the runs it was resumed from (so they continue)."""
    chain, seen, current = [], set(), run_id
    while current and current not in seen:
        seen.add(current)
        try:
            record = read_run(current, runs_dir)
        except RunError:
            break  # the parent was deleted or cannot be read: show what is left
        chain.append(current)
        current = record.get("resumed_from")
    frames = [_curves(read_history(rid, runs_dir)) for rid in reversed(chain)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _curves(History())
    merged = pd.concat(frames, ignore_index=True)
    return merged.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- table


def _summary(record: dict) -> dict:
    return record.get("summary") or {}


def _named(label: Any, record: dict, name_key: str, config_key: str) -> str | None:
    """'fast' or 'fast (edited: epochs)' for the record's preset or recipe; None (shown 'custom') without one."""
    if not record.get(name_key) or not isinstance(record.get(config_key), dict):
        return None
    return label(record[name_key], record[config_key])


def table_row(record: dict) -> dict:
    summary = _summary(record)
    return {
        "id": record.get("id"), "name": record.get("name") or record.get("preset") or record.get("id"),
        "preset": _named(preset_label, record, "preset", "arch"),
        "recipe": _named(recipe_label, record, "recipe", "train"), "status": record.get("status"),
        "params": record.get("params"), "flops": record.get("flops"),
        "best_test_accuracy": summary.get("best_test_accuracy"),
        "final_test_accuracy": summary.get("final_test_accuracy"),
        "epochs": summary.get("epochs_done"), "wall_seconds": summary.get("wall_seconds"),
        "images_per_second": summary.get("images_per_second"), "device": record.get("device"),
        "data": canonical_source(record.get("data")), "created": record.get("created"),
        "resumed_from": record.get("resumed_from"),
        "group": record.get("group"), "seed": (record.get("train") or {}).get("seed"), "message": record.get("message"),
    }


def runs_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per run with the columns TABLE_COLUMNS (numbers as numbers, missing as NaN/None)."""
    frame = pd.DataFrame([table_row(r) for r in records], columns=TABLE_COLUMNS)
    for column in ("params", "flops", "best_test_accuracy", "final_test_accuracy", "epochs", "wall_seconds",
                   "images_per_second", "seed"):
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


def pareto_mask(costs: Sequence[Sequence[float]], scores: Sequence[float]) -> list[bool]:
    """The one Pareto rule (the Runs page and the search use it): True for each point that no other point beats,
    i.e. none has every cost at most as high and the score at least as high, one of them strictly. Equal points do
    not beat each other, so a tie is on the front together."""
    score = np.asarray(scores, dtype=float)
    if not len(score):
        return []
    cost = np.asarray(costs, dtype=float).reshape(len(score), -1)
    front = []
    for i in range(len(score)):
        no_worse = (cost <= cost[i]).all(axis=1) & (score >= score[i])
        better = (cost < cost[i]).any(axis=1) | (score > score[i])
        front.append(not bool((no_worse & better).any()))
    return front


def pareto_frontier(table: pd.DataFrame, x: str = "params", y: str = "best_test_accuracy") -> pd.Series:
    """pareto_mask of the table's rows (cost `x`, score `y`); rows missing either value are never on it."""
    points = table[[x, y]].dropna()
    on_front = pd.Series(pareto_mask(points[[x]].to_numpy(), points[y].to_numpy()), index=points.index, dtype=bool)
    return on_front.reindex(table.index, fill_value=False)


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
    for key in ("preset", "recipe", "params", "flops", "device"):
        flat[key] = record.get(key)
    flat["data"] = canonical_source(record.get("data"))
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


__all__ = ["TABLE_COLUMNS", "CURVE_COLUMNS", "run_curves", "runs_table", "table_row", "filter_runs", "pareto_mask",
           "pareto_frontier", "metrics_csv", "curves_csv", "flatten_config", "config_diff"]
