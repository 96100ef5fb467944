"""The app in headless Chromium: `streamlit run` on a free port, driven by Playwright.

Uses Debian's /usr/bin/chromium (never a downloaded browser); runs whenever it is installed. Screenshots go
to $EXPLORER_ARTIFACTS_DIR, else artifacts/ at the repository root (git-ignored).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from browser_helpers import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    TABLE,
    artifacts_path,
    edit_width_cell,
    go_to,
    opened_page,
    prepare,
    running_app,
    wait_rerun,
    watch_reruns,
)
from playwright.sync_api import expect

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def artifacts_dir():
    return artifacts_path()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cwd")) as url:
        yield url


@pytest.fixture
def page(app_url):
    with opened_page(app_url, height=1300) as page:
        yield page


def metric_value(page, label: str) -> str:
    card = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return card.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_default_preset_params_are_shown(page, artifacts_dir):
    assert metric_value(page, "Parameters") == "164,310"
    assert metric_value(page, "FLOPs / image") == "9.45 M"
    page.wait_for_selector(".vega-embed")
    page.wait_for_timeout(500)  # let the charts finish drawing before the picture
    page.screenshot(path=str(artifacts_dir / "architecture.png"))
    assert (artifacts_dir / "architecture.png").stat().st_size > 10_000


def test_every_width_is_edited_in_the_blocks_table(page):
    """Issue 21 item 1: the widths sit in one table on the page, each block's cost beside it; an edit there
    costs the new network at once and names the preset it started from."""
    import dataclasses

    from explorer.arch.cost import model_cost
    from explorer.arch.presets import PRESETS

    assert page.locator(f"{TABLE} #glide-cell-1-0").text_content() == "25"
    assert page.locator(f"{TABLE} #glide-cell-2-0").text_content() == "1950"  # conv1's params beside it
    edit_width_cell(page, row=1, text="64")
    wait_rerun(page)
    base = PRESETS["study-bn"]
    edited = dataclasses.replace(base, conv=(base.conv[0], dataclasses.replace(base.conv[1], out_channels=64)))
    page.wait_for_function(f"() => document.querySelector('{TABLE} #glide-cell-1-1')?.textContent === '64'")
    assert metric_value(page, "Parameters") == f"{model_cost(edited).params:,}"
    preset = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Preset")
    assert preset.input_value() == "study-bn (edited: conv2.out_channels)"


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_selector(IDLE)


def _progress_text(page) -> str:
    return page.locator("[data-testid='stProgress']").first.inner_text()


def _step(page) -> int:
    text = _progress_text(page)  # "step 12 of 126 (10%) · about 9 s left"
    return int(text.split()[1].replace(",", "")) if text.startswith("step") else 0


def _loss_points(page) -> int:
    # Streamlit's theme wraps titles in <b> tags: compare the bare text.
    return page.evaluate(
        "() => { const p = [...document.querySelectorAll('.js-plotly-plot')].find(el => el.layout && "
        "el.layout.title && (el.layout.title.text || '').replace(/<[^>]*>/g, '') === 'Loss');"
        " return p && p.data.length ? p.data[0].x.length : 0; }")


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_training_run_updates_live_and_survives_clicks(page, artifacts_dir):
    go_to(page, "Train")
    # 3 epochs of 32 batches of 64 synthetic images, the loss logged every batch: a short run with many updates.
    _set_number(page, "Epochs", 3)
    _set_number(page, "Batch size", 64)
    _set_number(page, "Log loss every N batches", 1)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_selector("[data-testid='stProgress']")
    _wait_for(lambda: _loss_points(page) >= 2, 90, "the loss chart's first points")
    first_points, first_step = _loss_points(page), _step(page)
    _wait_for(lambda: _loss_points(page) > first_points, 60, "the loss chart to update")
    # Mid-run: an architecture widget (a full rerun) and a page switch there and back.
    status = page.locator(".st-key-train-status [data-testid='stMarkdown']").first
    assert "finished" not in status.inner_text()
    page.get_by_label("Dropout on conv blocks too").check(force=True)
    page.wait_for_selector(IDLE)
    go_to(page, "Architecture")
    go_to(page, "Train")
    _wait_for(lambda: _step(page) > first_step, 60, "the run to go on after the clicks")
    _wait_for(lambda: "finished" in status.inner_text(), 180, "the run to finish")
    # The headline and the bar are two elements of one rerun: the browser may show the new headline a moment
    # before the new bar, so wait for the bar too (a bar stuck below 100 % still fails here).
    _wait_for(lambda: "(100%)" in _progress_text(page), 10, "the bar of the finished run")
    assert _progress_text(page).startswith("step") and "left" not in _progress_text(page)
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts_dir / "train.png"), full_page=True)


def test_a_copied_link_opens_the_same_design(app_url):
    """The URL follows the edits; pasted into another browser it opens the same network, on the same page."""
    from playwright.sync_api import sync_playwright

    with opened_page(app_url + "/?preset=tutorial", height=900) as page:
        assert metric_value(page, "Parameters") == "62,006"
        _set_number(page, "fc1 units", 100)
        page.wait_for_function("() => location.search.includes('d=')")
        expected = metric_value(page, "Parameters")
        before = page.evaluate("() => location.search")
        go_to(page, "Train")
        _set_number(page, "Epochs", 7)
        page.wait_for_function("(before) => location.search.includes('d=') && location.search !== before"
                               " && location.pathname.endsWith('/train')", arg=before)
        link = page.url
    assert expected != "62,006" and "preset=tutorial" in link
    with sync_playwright() as playwright:  # a fresh browser: nothing but the link travels
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        prepare(page)
        page.goto(link)
        page.get_by_label("Epochs", exact=True).wait_for()
        page.wait_for_selector(IDLE)
        assert page.get_by_label("Epochs", exact=True).input_value() == "7"
        go_to(page, "Architecture")
        page.wait_for_selector("[data-testid='stMetricValue']")
        assert metric_value(page, "Parameters") == expected
        browser.close()


def test_a_broken_link_shows_a_warning_and_the_defaults(app_url):
    with opened_page(app_url + "/?d=zNOT-A-DESIGN", height=900) as page:
        warning = page.locator("[data-testid='stAlertContentWarning']").first
        assert "This link's design cannot be read" in warning.inner_text()
        assert metric_value(page, "Parameters") == "164,310"
        assert page.locator("[data-testid='stException']").count() == 0


def _type_number(page, box, text: str) -> None:
    """Type `text` into a number box as a person does (Playwright's fill() refuses letters in a number input;
    Chromium drops them as it does for a person) and commit it with Enter."""
    box.click()
    box.press("Control+A")
    box.press("Backspace")
    page.keyboard.type(text)
    watch_reruns(page)
    box.press("Enter")
    wait_rerun(page)


def test_a_refused_number_says_why_and_keeps_the_last_value(page, artifacts_dir):
    """Issue 21 item 3: in Chromium, "-5" stayed in the box behind a hover-only icon, "abc" became 1, "2.5" 2 and
    "1e3" 1; now each refused entry gets one message naming the field and its range, and the box shows the kept
    value; "1e3" is read as the number it is."""
    sidebar = page.locator("[data-testid='stSidebar']")
    box = sidebar.get_by_label("fc1 units", exact=True)
    kept = box.input_value()
    params = metric_value(page, "Parameters")
    alerts = sidebar.locator("[data-testid='stAlertContentError']")
    for text, why in (("-5", "-5 is out of range"), ("abc", "the box is empty or not a number"),
                      ("5000", "5000 is out of range"), ("2.5", "2.5 is not a whole number")):
        _type_number(page, box, text)
        # The message itself is waited for: under load a trailing message of the last rerun can end wait_rerun
        # before this entry's rerun has drawn (a CI run read the previous entry's message).
        expected = f"fc1 units: {why}; enter a whole number from 1 to 4096. Kept {kept}."
        expect(alerts).to_have_text([expected], timeout=30000)
        assert alerts.all_inner_texts() == [expected]
        assert box.input_value() == kept and metric_value(page, "Parameters") == params
    page.screenshot(path=str(artifacts_dir / "refused_number.png"))
    _type_number(page, box, "1e3")  # a valid width, written as a power of ten: taken, and the message goes
    expect(alerts).to_have_count(0, timeout=30000)
    assert box.input_value() == "1000" and alerts.count() == 0
    _wait_for(lambda: metric_value(page, "Parameters") != params, 30, "the parameters of fc1 = 1000")
    # The arrow keys and the step buttons still step (the limits moved to the server, not the steps).
    watch_reruns(page)
    box.press("ArrowUp")
    wait_rerun(page)
    assert box.input_value() == "1001"
    budget = sidebar.get_by_label("Parameter budget", exact=True)
    watch_reruns(page)
    sidebar.locator(".st-key-arch-budget [data-testid='stNumberInputStepUp']").click()
    wait_rerun(page)
    assert budget.input_value() == "257000"
