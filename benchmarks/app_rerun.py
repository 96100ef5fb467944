"""How long one app rerun takes after a widget change, measured with Streamlit's AppTest.

    python benchmarks/app_rerun.py [--repeats 20] [--json]

AppTest runs the whole script in-process (every tab, the sidebar, torchinfo through st.cache_data) and
builds the element tree, so its time is an upper bound on the server-side rerun a browser user waits for.
Each scenario alternates between two values so every rerun is a real change; the first, cold run (imports,
torch start-up) is reported apart. Target: under 250 ms per rerun after a slider change.
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
# (name, widget kind, key, value a, value b)
SCENARIOS = [
    ("fc1 units", "number_input", keys.fc_key(1), 100, 120),
    ("hidden FC layers slider", "slider", keys.N_FC, 2, 1),
    ("dropout slider", "slider", keys.DROPOUT, 0.0, 0.2),
    ("conv blocks slider", "slider", keys.N_CONV, 2, 3),
    ("conv1 out channels", "number_input", keys.block_key(1, "out_channels"), 25, 40),
    ("budget", "number_input", keys.BUDGET, 256_000, 200_000),
]


def _timed_run(at: AppTest) -> float:
    start = time.perf_counter()
    at.run()
    elapsed = (time.perf_counter() - start) * 1000
    if at.exception:
        raise SystemExit(f"the app raised: {at.exception[0].message}")
    return elapsed


def measure(repeats: int) -> dict:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    cold_ms = _timed_run(at)
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
        rows.append({"scenario": name, "median_ms": statistics.median(times),
                     "p90_ms": statistics.quantiles(times, n=10)[-1] if len(times) >= 10 else max(times),
                     "max_ms": max(times), "runs": len(times)})
    worst_median = max(r["median_ms"] for r in rows)
    return {"cold_ms": cold_ms, "scenarios": rows, "worst_median_ms": worst_median, "target_ms": TARGET_MS,
            "meets_target": worst_median < TARGET_MS, "cpus": os.cpu_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="also print one JSON line at the end")
    args = parser.parse_args()
    os.environ.setdefault("EXPLORER_RUNS_DIR", tempfile.mkdtemp(prefix="explorer-bench-"))
    result = measure(args.repeats)
    print(f"cold first run: {result['cold_ms']:.0f} ms")
    print(f"{'scenario':32} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'runs':>5}")
    for row in result["scenarios"]:
        print(f"{row['scenario']:32} {row['median_ms']:10.1f} {row['p90_ms']:8.1f} {row['max_ms']:8.1f} "
              f"{row['runs']:5d}")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"worst median {result['worst_median_ms']:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
