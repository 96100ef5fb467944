"""The app in headless Chromium: `streamlit run` on a free port, driven by Playwright.

Uses Debian's /usr/bin/chromium (never a downloaded browser); runs whenever it is installed. Screenshots go
to $EXPLORER_ARTIFACTS_DIR, else artifacts/ at the repository root (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
IDLE = "[data-test-script-state='notRunning']"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("EXPLORER_ARTIFACTS_DIR") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """A headless `streamlit run streamlit_app.py` with its own runs directory, stopped afterwards."""
    port = _free_port()
    runs_dir = tmp_path_factory.mktemp("runs")
    env = dict(os.environ, EXPLORER_RUNS_DIR=str(runs_dir), OMP_NUM_THREADS="1")
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("w")
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
               "--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
               "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"]
    proc = subprocess.Popen(command, cwd=tmp_path_factory.mktemp("cwd"), env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(60_000)
        page.goto(app_url)
        page.wait_for_selector("[data-testid='stMetricValue']")
        page.wait_for_selector(IDLE)
        yield page
        browser.close()


def metric_value(page, label: str) -> str:
    card = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return card.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_default_preset_params_are_shown(page, artifacts_dir):
    assert metric_value(page, "Parameters") == "164,310"
    assert metric_value(page, "FLOPs / image") == "9.45 M"
    page.wait_for_selector(".js-plotly-plot")
    page.wait_for_timeout(500)  # let Plotly finish drawing before the picture
    page.screenshot(path=str(artifacts_dir / "architecture.png"))
    assert (artifacts_dir / "architecture.png").stat().st_size > 10_000


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
    page.get_by_role("tab", name="Train").click()
    # 3 epochs of 32 batches of 64 synthetic images, the loss logged every batch: a short run with many updates.
    _set_number(page, "Epochs", 3)
    _set_number(page, "Batch size", 64)
    _set_number(page, "Log loss every N batches", 1)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_selector("[data-testid='stProgress']")
    _wait_for(lambda: _loss_points(page) >= 2, 90, "the loss chart's first points")
    first_points, first_step = _loss_points(page), _step(page)
    _wait_for(lambda: _loss_points(page) > first_points, 60, "the loss chart to update")
    # Mid-run: an architecture widget (a full rerun) and a tab switch there and back.
    status = page.locator(".st-key-train-status [data-testid='stMarkdown']").first
    assert "finished" not in status.inner_text()
    page.get_by_label("Dropout on conv blocks too").check(force=True)
    page.wait_for_selector(IDLE)
    page.get_by_role("tab", name="Architecture").click()
    page.get_by_role("tab", name="Train").click()
    _wait_for(lambda: _step(page) > first_step, 60, "the run to go on after the clicks")
    _wait_for(lambda: "finished" in status.inner_text(), 180, "the run to finish")
    assert _progress_text(page).startswith("step") and "(100%)" in _progress_text(page)
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts_dir / "train.png"), full_page=True)
