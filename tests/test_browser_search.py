"""The Search page in headless Chromium: a user starts a two-worker search and watches the Pareto chart fill
while it runs, then opens the best trial in Architecture."""

from __future__ import annotations

import json
import time

import pytest
from browser_helpers import BROWSER_MARKS, IDLE, artifacts_path, go_to, opened_page, running_app

pytestmark = BROWSER_MARKS

# Tiny nets, two epochs each on 400 synthetic images: trials of a few seconds (several chart refreshes while the
# search runs), all under the budget.
TINY = {"recipe": "fast",
        "arch": {"depth": {"low": 1, "high": 2}, "width": {"low": 4, "high": 8}, "pool": "max", "head": "avgpool"},
        "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 32, "augment": [],
                  "tta_flip": False}}
TRIALS = 8


@pytest.fixture
def page(tmp_path):
    with running_app(tmp_path / "runs", tmp_path) as url, opened_page(url, height=1400) as page:
        yield page


def _points(page, trace: str) -> int:
    """Points of `trace` in the Pareto chart against parameters (0 before the chart is drawn)."""
    return page.evaluate(
        "(trace) => { const p = [...document.querySelectorAll('.js-plotly-plot')].find(el => el.layout && "
        "el.layout.title && (el.layout.title.text || '').replace(/<[^>]*>/g, '') === "
        "'Validation accuracy vs parameters'); const t = p && p.data.find(d => d.name === trace);"
        " return t ? t.x.length : 0; }", trace)


def _metric(page, label: str) -> int:
    card = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return int(card.locator("[data-testid='stMetricValue']").inner_text())


def _running(page) -> bool:
    return page.get_by_text("running (pid").count() > 0


# Set before an action: becomes true once the app's script state turns "running" (a rerun began), so a test waits
# for the rerun the action caused to end, not for a fixed time.
# The whole document is watched, not one element: the script-state element can be drawn anew after a page
# switch, and an observer on the old one never fires (two CI runs timed out so).
WATCH_RERUN = ("() => { window.__reran = false; new MutationObserver(() => { const el = document.querySelector("
               "'[data-test-script-state]'); if (el && el.getAttribute('data-test-script-state') === 'running')"
               " window.__reran = true; }).observe(document.body, {attributes: true, childList: true, subtree: true,"
               " attributeFilter: ['data-test-script-state']}); }")
RERUN_DONE = "() => window.__reran && document.querySelector(\"[data-test-script-state='notRunning']\") !== null"


def _rerun(page, action) -> None:
    """Do `action` (a widget change) and return once the rerun it caused has ended."""
    page.evaluate(WATCH_RERUN)
    action()
    page.wait_for_function(RERUN_DONE)


def _fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    if box.input_value() == value:
        return  # the value it has already: Streamlit would not rerun

    def type_it() -> None:
        box.fill(value)
        box.press("Tab" if label == "Search space" else "Enter")

    _rerun(page, type_it)


def test_a_two_worker_search_fills_the_pareto_chart_live_then_opens_in_architecture(page):
    main = go_to(page, "Search")
    _fill(page, "Search name", "live")
    _fill(page, "Synthetic training images (a quarter as many test images)", "400")
    # Waits for what the click brings, the epochs box: a CI run under load timed out waiting for the script
    # state to turn "running" after this click.
    page.get_by_text("epochs per trial").click()
    page.get_by_label("Epochs per trial", exact=True).wait_for()
    _fill(page, "Epochs per trial", "2")
    page.get_by_text("As JSON: edit, paste or load a space file").click()
    _fill(page, "Search space", json.dumps(TINY))
    # The widgets follow the text: the depth is a range 1-2 in them now.
    assert page.get_by_label("low", exact=True).first.input_value() == "1"
    _rerun(page, page.get_by_text("first, as trial 0").click)  # no baseline: fast would take most of the test
    _fill(page, "Worker processes", "2")
    _fill(page, "Trials (for the whole search; 0: until stopped)", str(TRIALS))
    assert main.locator("[data-testid='stAlert']").count() == 0
    page.get_by_role("button", name="Start search").click()
    page.get_by_text("running (pid").wait_for(timeout=60_000)
    assert _points(page, "trials") == 0  # nothing trained yet

    seen_while_running: list[int] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        points, running = _points(page, "trials"), _running(page)
        if running and points:
            seen_while_running.append(points)
        if not running and points:
            break
        time.sleep(0.25)
    page.wait_for_selector(IDLE)
    counted = {state: _metric(page, state) for state in ("Complete", "Pruned", "Rejected", "Failed")}
    # The chart gained points while the workers ran, with no click (the fragment re-reads the journal), then held
    # every complete trial. (How many refreshes fall inside the run depends on the machine's load.)
    assert seen_while_running, "the chart drew no trial while the search ran"
    # --trials holds with two workers: exactly TRIALS (a trial started past it would be skipped, not counted).
    assert counted["Complete"] + counted["Pruned"] == TRIALS
    assert counted["Rejected"] == counted["Failed"] == 0
    assert _points(page, "trials") == counted["Complete"] and _points(page, "Pareto front") >= 1
    assert page.get_by_role("button", name="Continue search").is_enabled()
    assert page.locator(".js-plotly-plot").filter(has_text="Parameter importances").count() == 1
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_path() / "search.png"), full_page=True)

    # The best trial (first in the picker) into the sidebar: the Architecture page shows its parameters.
    page.get_by_role("button", name="Open in Architecture").click()
    page.locator("[data-testid='stTopNavLink'][aria-current='page']").filter(has_text="Architecture").wait_for()
    page.wait_for_selector(IDLE)
    params = page.locator("[data-testid='stMetric']").filter(has_text="Parameters").first
    value = int(params.locator("[data-testid='stMetricValue']").inner_text().replace(",", ""))
    assert value < 5_000  # 1-2 blocks of 4-8 channels, not the default preset's 164,310
