"""How long one app rerun takes after a widget change, measured with Streamlit's AppTest.

    python benchmarks/app_rerun.py [--repeats 20]

Prints a table, then one JSON line with every number.

AppTest runs the script in-process (the sidebar and the page in view, torchinfo through st.cache_data) and
builds the element tree: its time is the server's share of a rerun only. benchmarks/browser_rerun.py measures
what a user waits for in Chromium.
Each scenario alternates between two values so every rerun is a real change; the first, cold run (imports,
torch start-up) is reported apart. The scenarios run twice: on a fresh session (Architecture page), and on
the Train page with a finished 20-epoch run attached (its four charts are redrawn on every rerun).
Target: under 250 ms per rerun after a slider change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from explorer.ui import state as keys  # noqa: E402

TARGET_MS = 250.0
TRAIN_PAGE = "explorer/ui/pages/train.py"
# (name, widget kind, key, value a, value b)
SCENARIOS = [
    ("fc1 units", "number_input", keys.fc_key(1), 100, 120),
    ("hidden FC layers slider", "slider", keys.N_FC, 2, 1),
    ("dropout slider", "slider", keys.DROPOUT, 0.0, 0.2),
    ("conv blocks slider", "slider", keys.N_CONV, 2, 3),
    ("conv1 kernel", "segmented_control", keys.block_key(1, "kernel"), 5, 3),
    ("budget", "number_input", keys.BUDGET, 256_000, 200_000),
]


def _timed_run(at: AppTest) -> float:
    start = time.perf_counter()
    at.run()
    elapsed = (time.perf_counter() - start) * 1000
    if at.exception:
        raise SystemExit(f"the app raised: {at.exception[0].message}")
    return elapsed


def write_finished_run(runs_dir: Path, epochs: int = 20, batches: int = 200) -> str:
    """A finished run record as a run process writes it, with a batch event every step (4,000 points)."""
    run_id = "bench-run"
    folder = runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    classes = [f"class{k}" for k in range(10)]
    per_class = {c: 0.5 + 0.04 * k for k, c in enumerate(classes)}
    events = [{"type": "started", "time": 0.0, "classes": classes, "total_steps": epochs * batches, "device": "cpu",
               "params": 164_310, "flops": 9_451_000, "input_shape": [3, 32, 32], "config": {}},
              {"type": "baseline", "time": 1.0, "test_loss": 2.3, "test_accuracy": 0.1, "per_class": per_class}]
    for epoch in range(1, epochs + 1):
        for batch in range(1, batches + 1):
            step = (epoch - 1) * batches + batch
            events.append({"type": "batch", "time": 1.0 + step / 100, "epoch": epoch, "batch": batch, "step": step,
                           "loss": 2.3 / (1 + step / 500), "lr": 0.1})
        events.append({"type": "epoch", "time": 1.0 + epoch * batches / 100, "epoch": epoch, "train_loss": 1.0,
                       "train_accuracy": 0.6, "test_loss": 1.1, "test_accuracy": 0.55, "per_class": per_class,
                       "seconds": 2.0, "images_per_second": 25_000.0, "lr": 0.1})
    events.append({"type": "finished", "time": 100.0, "summary": {}})
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    record = {"id": run_id, "name": "benchmark run", "status": "finished", "created": "2026-01-01T00:00:00",
              "finished": "2026-01-01T00:01:40", "preset": "study-bn", "recipe": "fast", "arch": None,
              "train": None, "data": "synthetic", "data_fingerprint": "x", "input_shape": [3, 32, 32],
              "num_classes": 10, "classes": classes, "params": 164_310, "flops": 9_451_000, "device": "cpu",
              "error": None, "summary": {"final_test_accuracy": 0.55, "best_test_accuracy": 0.55,
                                         "epochs_done": epochs, "wall_seconds": 40.0, "images_per_second": 25_000.0},
              "checkpoint": None, "resumed_from": None}
    from explorer.arch.presets import PRESETS
    from explorer.engine.recipes import RECIPES

    record["arch"], record["train"] = PRESETS["study-bn"].to_dict(), RECIPES["fast"].to_dict()
    (folder / "run.json").write_text(json.dumps(record))
    return run_id


def measure_session(repeats: int, run_id: str | None = None) -> tuple[float, list[dict]]:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    if run_id:
        at.query_params["run"] = run_id
    cold_ms = _timed_run(at)
    if run_id:  # the run's charts are on the Train page, where a reload with ?run=ID lands
        at.switch_page(TRAIN_PAGE)
        _timed_run(at)
        if len(at.get("plotly_chart")) < 4:
            raise SystemExit("the attached run's charts are not shown")
    rows = []
    for name, kind, key, a, b in SCENARIOS:
        widget = getattr(at, kind)
        times = []
        for i in range(repeats + 1):
            widget(key=key).set_value(b if i % 2 == 0 else a)
            ms = _timed_run(at)
            if i:  # the first change of each scenario may fill a cache (torchinfo); keep it out
                times.append(ms)
        widget(key=key).set_value(a)
        at.run()
        rows.append({"scenario": name + (" (run attached)" if run_id else ""),
                     "median_ms": statistics.median(times),
                     "p90_ms": statistics.quantiles(times, n=10)[-1] if len(times) >= 10 else max(times),
                     "max_ms": max(times), "runs": len(times)})
    return cold_ms, rows


def measure(repeats: int) -> dict:
    cold_ms, rows = measure_session(repeats)
    run_id = write_finished_run(Path(os.environ["EXPLORER_RUNS_DIR"]))
    _, attached = measure_session(repeats, run_id)
    rows += attached
    worst_median = max(r["median_ms"] for r in rows)
    return {"cold_ms": cold_ms, "scenarios": rows, "worst_median_ms": worst_median, "target_ms": TARGET_MS,
            "meets_target": worst_median < TARGET_MS, "cpus": os.cpu_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="accepted for symmetry; the JSON line is always printed")
    args = parser.parse_args()
    os.environ.setdefault("EXPLORER_RUNS_DIR", tempfile.mkdtemp(prefix="explorer-bench-"))
    result = measure(args.repeats)
    print(f"cold first run: {result['cold_ms']:.0f} ms")
    print(f"{'scenario':47} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'runs':>5}")
    for row in result["scenarios"]:
        print(f"{row['scenario']:47} {row['median_ms']:10.1f} {row['p90_ms']:8.1f} {row['max_ms']:8.1f} "
              f"{row['runs']:5d}")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"worst median {result['worst_median_ms']:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
