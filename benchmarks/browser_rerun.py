"""Rerun latency as a user feels it: the app in Debian's Chromium, from a slider change until the page is idle.

    python benchmarks/browser_rerun.py [--changes 15] [--runs 200] [--no-training] [--app-root DIR]

Starts `streamlit run streamlit_app.py` headless on a free port with a runs folder holding `--runs` copies of a
real run (trained here on synthetic data, then copied), drives /usr/bin/chromium through Playwright (never a
downloaded browser) and measures:

- first render: a new tab's navigation start until `[data-test-script-state='notRunning']` after its first
  script run (the metric cards drawn), once on the just-started server (cold: imports, torch) and then on the
  warm server (median of 3);
- slider change -> idle: from the keydown on a sidebar slider until the script state is notRunning again,
  alternating two values (median of `--changes`), on the Architecture page and on the Runs page;
- width edit -> idle: from the Enter that commits a width typed into the Architecture page's blocks table
  (conv1, 24 and 25 channels in turn) until idle;
- the same while a `python -m explorer train` child trains on synthetic data into the same runs folder.

Times are taken with the page's own clock (performance.now()), so the Playwright driver's latency on a busy
machine is not counted. Prints a table, the load average, and one JSON line. `--app-root` runs another
checkout's app (e.g. an exported older commit) with this benchmark, for before/after numbers. A benchmark,
not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/browser_helpers.py imports explorer

from browser_helpers import CHROMIUM, CHROMIUM_ARGS, IDLE, edit_width_cell, running_app, stop_process  # noqa: E402

GOALS_MS = {"first_render_warm": 2000.0, "architecture": 200.0, "runs": 200.0, "blocks_table": 200.0,
            "architecture_training": 300.0, "runs_training": 300.0, "blocks_table_training": 300.0}
METRIC = "[data-testid='stMetricValue']"
# Installed before the app loads: records every script-state change and the last keydown with the page's own
# clock (performance.now()), and for each websocket message the first animation frame after it was handled.
INIT_JS = """
window.__states = []; window.__keydown = null; window.__painted = [];
window.addEventListener('keydown', () => { window.__keydown = performance.now(); }, true);
const Socket = window.WebSocket;
window.WebSocket = class extends Socket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', () => setTimeout(() => requestAnimationFrame(
      () => window.__painted.push(performance.now()))));
  }
};
const seen = () => {
  const el = document.querySelector('[data-test-script-state]');
  const state = el && el.getAttribute('data-test-script-state');
  const last = window.__states[window.__states.length - 1];
  if (state && (!last || last[0] !== state)) window.__states.push([state, performance.now()]);
};
document.addEventListener('DOMContentLoaded', () => new MutationObserver(seen).observe(
  document.body, {attributes: true, childList: true, subtree: true, attributeFilter: ['data-test-script-state']}));
"""
# ms from the keydown until idle again: the first notRunning state after a busy one. A fast rerun can reach the
# browser in one batch, so the state never visibly leaves notRunning; then (after QUIET ms without messages)
# the first frame after the last message counts. Returns [ms, how] or null while the rerun is under way.
SETTLED_JS = """(quiet) => {
  const t0 = window.__keydown, now = performance.now();
  if (t0 === null) return null;
  let busy = false;
  for (const [state, t] of window.__states) {
    if (t < t0) continue;
    if (state !== 'notRunning') busy = true;
    else if (busy) return [t - t0, 'state'];
  }
  const painted = window.__painted.filter(t => t > t0);
  const last = painted[painted.length - 1];
  const state = document.querySelector('[data-test-script-state]').getAttribute('data-test-script-state');
  if (!busy && last !== undefined && state === 'notRunning' && now - last > quiet) return [last - t0, 'frame'];
  return null;
}"""
QUIET_MS = 400


# ------------------------------------------------------------------------------------------ the runs folder


def make_runs_folder(root: Path, copies: int, app_root: Path) -> Path:
    """`copies` run folders: one tiny real run trained by the CLI, copied with new ids, names and dates."""
    seed_dir = root / "seed"
    subprocess.run([sys.executable, "-m", "explorer", "train", "--preset", "tutorial", "--data", "synthetic:200",
                    "--epochs", "2", "--log-every", "1", "--runs-dir", str(seed_dir), "--name", "seed"],
                   cwd=app_root, check=True, capture_output=True, env=_child_env())
    (seed,) = [p for p in seed_dir.iterdir() if (p / "run.json").is_file()]
    runs = root / "runs"
    runs.mkdir()
    for i in range(copies):
        run_id = f"bench-{i:04d}"
        target = runs / run_id
        shutil.copytree(seed, target)
        record = json.loads((target / "run.json").read_text())
        record.update(id=run_id, name=f"bench run {i}", created=f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}")
        (target / "run.json").write_text(json.dumps(record))
    return runs


def _child_env() -> dict[str, str]:
    # A child sees the same package as the app under test (its cwd) and picks its threads as `train` does.
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}


@contextlib.contextmanager
def background_training(runs: Path, app_root: Path) -> Iterator[subprocess.Popen]:
    """A CLI run on synthetic data writing into `runs` (long enough to outlast the measurements)."""
    command = [sys.executable, "-m", "explorer", "train", "--preset", "fast", "--data", "synthetic:20000",
               "--epochs", "200", "--runs-dir", str(runs), "--name", "background"]
    proc = subprocess.Popen(command, cwd=app_root, env=_child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_training(runs, proc)
        yield proc
    finally:
        stop_process(proc, timeout=20)


def _wait_for_training(runs: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the child has logged a batch (data made, model built: it is in its training loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the background run exited with code {proc.returncode}")
        for events in runs.glob("*/events.jsonl"):
            if '"batch"' in events.read_text()[-4000:]:
                return
        time.sleep(0.5)
    raise TimeoutError("the background run did not start training within 2 minutes")


# ------------------------------------------------------------------------------------------------ browser


FIRST_IDLE_JS = """() => {
  let busy = false;
  for (const [state, t] of window.__states) {
    if (state === 'running') busy = true;
    else if (busy && state === 'notRunning') return t;
  }
  return null;
}"""


def _observed_tab(browser, url: str):
    """A new tab (a new session) on `url` with the page-clock recorder installed, after its first script run."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.add_init_script(INIT_JS)
    page.goto(url)
    page.wait_for_selector(METRIC)
    page.wait_for_selector(IDLE)
    return page


def first_render(browser, url: str) -> float:
    """ms from navigation start to the first idle state after the first script run, on the page's clock, in a new
    tab (a new session, an empty browser cache); the metric cards must be drawn by then."""
    page = _observed_tab(browser, url)
    elapsed = page.evaluate(FIRST_IDLE_JS)
    page.close()
    return elapsed


def open_page(browser, url: str, name: str):
    """A tab on the app with page (or, on the tabbed app, tab) `name` in view, observed."""
    page = _observed_tab(browser, url)
    if name != "Architecture":
        nav = page.locator("[data-testid='stSidebarNav'] a, [data-testid='stTopNavLink']").filter(has_text=name)
        if nav.count():
            nav.first.click()
        else:
            page.get_by_role("tab", name=name, exact=True).click()
        page.wait_for_timeout(300)
        page.wait_for_selector(IDLE)
    return page


def slider_changes(page, label: str, changes: int) -> tuple[list[float], int]:
    """ms from a keydown on slider `label` until idle, alternating right/left so every change is real; and how
    many were timed by the frame after the last message (the state never visibly left notRunning)."""
    thumb = page.locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider")
    times, by_frame = [], 0
    for i in range(changes + 1):
        thumb.focus()
        page.evaluate("() => { window.__keydown = null; window.__states = window.__states.slice(-1); }")
        page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        elapsed, how = page.wait_for_function(SETTLED_JS, arg=QUIET_MS, polling=20).json_value()
        if i:  # the first change may fill caches (torchinfo for a new config): measured apart
            times.append(elapsed)
            by_frame += how == "frame"
        page.wait_for_timeout(150)  # a user does not type faster; lets a trailing render finish
    return times, by_frame


def width_edits(page, changes: int) -> tuple[list[float], int]:
    """ms from the Enter that commits a width typed into the blocks table (conv1, alternating 24 and 25
    channels) until idle: the Architecture page's main widget since the blocks table."""
    times, by_frame = [], 0
    for i in range(changes + 1):
        page.evaluate("() => { window.__keydown = null; window.__states = window.__states.slice(-1); }")
        # Its last keydown is the Enter. The first edit on a new tab, with 200 runs and a training child on two
        # cores, once took over 5 s to open the editor (the tests' wait): the benchmark waits longer.
        edit_width_cell(page, row=0, text="24" if i % 2 == 0 else "25", timeout_ms=20000)
        elapsed, how = page.wait_for_function(SETTLED_JS, arg=QUIET_MS, polling=20).json_value()
        if i:
            times.append(elapsed)
            by_frame += how == "frame"
        page.wait_for_timeout(150)
    return times, by_frame


def measure_pages(browser, url: str, changes: int, suffix: str = "") -> dict[str, list[float]]:
    out = {}
    page = open_page(browser, url, "Architecture")
    out["blocks_table" + suffix], by_frame = width_edits(page, changes)
    if by_frame:
        print(f"blocks_table{suffix}: {by_frame} of {changes} reruns timed by the frame after the last message")
    page.close()
    for name, key in (("Architecture", "architecture"), ("Runs", "runs")):
        page = open_page(browser, url, name)
        out[key + suffix], by_frame = slider_changes(page, "Dropout rate", changes)
        if by_frame:
            print(f"{key + suffix}: {by_frame} of {changes} reruns timed by the frame after the last message")
        page.close()
    return out


# ------------------------------------------------------------------------------------------------- report


def summarize(samples: dict[str, list[float]]) -> list[dict]:
    rows = []
    for name, times in samples.items():
        goal = GOALS_MS.get(name)
        median = statistics.median(times)
        rows.append({"scenario": name, "median_ms": round(median, 1), "min_ms": round(min(times), 1),
                     "max_ms": round(max(times), 1), "n": len(times), "goal_ms": goal,
                     "meets_goal": None if goal is None else median < goal})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'scenario':26} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'n':>3} {'goal ms':>8}")
    for r in rows:
        goal = "" if r["goal_ms"] is None else f"{r['goal_ms']:.0f} {'ok' if r['meets_goal'] else 'MISS'}"
        print(f"{r['scenario']:26} {r['median_ms']:10.1f} {r['min_ms']:8.1f} {r['max_ms']:8.1f} {r['n']:3d} "
              f"{goal:>8}")


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    app_root = Path(args.app_root).resolve()
    work = Path(tempfile.mkdtemp(prefix="explorer-browser-bench-"))
    load_before = os.getloadavg()
    runs = make_runs_folder(work, args.runs, app_root)
    samples: dict[str, list[float]] = {}
    with running_app(runs, work, app_root) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        samples["first_render_cold"] = [first_render(browser, url)]
        samples["first_render_warm"] = [first_render(browser, url) for _ in range(3)]
        samples |= measure_pages(browser, url, args.changes)
        if args.training:
            with background_training(runs, app_root):
                samples |= measure_pages(browser, url, args.changes, suffix="_training")
        browser.close()
    shutil.rmtree(work, ignore_errors=True)
    return {"app_root": str(app_root), "runs_in_folder": args.runs, "rows": summarize(samples),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=15, help="slider changes per scenario (median of these)")
    parser.add_argument("--runs", type=int, default=200, help="run folders in the runs folder")
    parser.add_argument("--no-training", dest="training", action="store_false",
                        help="skip the scenarios with a run training in the background")
    parser.add_argument("--app-root", default=str(ROOT), help="checkout whose streamlit_app.py runs")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    result = run(args)
    print_table(result["rows"])
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']} "
          f"({result['cpus']} CPUs)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
