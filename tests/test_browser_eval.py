"""The Checkpoints and Runs tabs in headless Chromium: evaluate a saved checkpoint and see the confusion
matrix and per-class bars; refuse an uploaded pickle; see the runs on the Pareto chart.

Uses Debian's /usr/bin/chromium (never a downloaded browser) and runs whenever it is installed.
Screenshots go to $EXPLORER_ARTIFACTS_DIR, else artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from history_helpers import LARGE, SMALL, make_run

from explorer.checkpoint import load_checkpoint
from explorer.data import load_dataset
from explorer.evaluate import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
IDLE = "[data-test-script-state='notRunning']"
DATA = "synthetic:200"

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
def history(tmp_path_factory) -> Path:
    """Two finished runs with checkpoints, trained (so to speak) on synthetic:200 (50 test images)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    make_run(runs_dir, "r1-small", name="small net", arch=SMALL, accuracies=(0.1, 0.0), created="2024-01-01",
             data=DATA, fit_steps=20)
    make_run(runs_dir, "r2-large", name="large net", arch=LARGE, accuracies=(0.1, 0.0), created="2024-01-02",
             data=DATA, fit_steps=40)
    return runs_dir


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, history: Path) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, EXPLORER_RUNS_DIR=str(history), OMP_NUM_THREADS="1")
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
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(60_000)
        page.goto(app_url)
        page.wait_for_selector("[data-testid='stMetricValue']")
        page.wait_for_selector(IDLE)
        yield page
        browser.close()


def open_tab(page, name: str):
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_selector(IDLE)
    return page.locator("[role='tabpanel']:visible")


def metric_value(panel, label: str) -> str:
    card = panel.locator("[data-testid='stMetric']").filter(has_text=label).first
    return card.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_evaluate_a_checkpoint_shows_confusion_matrix_and_per_class_bars(page, history, artifacts_dir):
    recorded = json.loads((history / "r2-large" / "run.json").read_text())["summary"]
    panel = open_tab(page, "Checkpoints")
    assert metric_value(panel, "Best test acc.") == f"{recorded['best_test_accuracy']:.2%}"  # newest run first
    panel.get_by_role("button", name="Evaluate", exact=True).click()
    page.wait_for_selector(IDLE)
    panel.locator(".js-plotly-plot .heatmaplayer").first.wait_for()
    expected = evaluate_checkpoint(load_checkpoint(history / "r2-large"), load_dataset(DATA), device="cpu")
    assert metric_value(panel, "Accuracy") == f"{expected.accuracy:.2%}" == f"{recorded['final_test_accuracy']:.2%}"
    assert metric_value(panel, "Same data as training") == "yes"
    titles = panel.locator(".js-plotly-plot .gtitle").all_text_contents()
    assert "Confusion matrix" in titles and "Per-class accuracy" in titles
    bars = panel.locator(".js-plotly-plot .barlayer .point")
    assert bars.count() == sum(v is not None for v in expected.per_class.values()) >= 8
    # Every confusion count is written in its cell: the counts add up to the number of test images.
    cell_texts = panel.locator(".js-plotly-plot .heatmaplayer text").all_text_contents()
    assert sum(int(t) for t in cell_texts if t.strip().isdigit()) == expected.count
    assert panel.get_by_text("Misclassified test images").count() == 1
    page.wait_for_timeout(500)  # let Plotly finish drawing before the picture
    page.screenshot(path=str(artifacts_dir / "checkpoints-evaluate.png"), full_page=True)
    assert (artifacts_dir / "checkpoints-evaluate.png").stat().st_size > 20_000


class _CreatesAFile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_an_uploaded_pickle_is_refused_without_running_it(page, tmp_path):
    target = tmp_path / "pwned"
    upload = tmp_path / "model.pt"
    upload.write_bytes(pickle.dumps({"state_dict": _CreatesAFile(str(target))}))
    panel = open_tab(page, "Checkpoints")
    panel.get_by_text("Upload a file").click()
    page.wait_for_selector(IDLE)
    panel.locator("input[type='file']").set_input_files(str(upload))
    error = panel.locator("[data-testid='stAlertContentError']").filter(has_text="Checkpoint refused")
    error.wait_for()
    assert "pickle" in error.inner_text()
    assert not target.exists()


def test_runs_tab_shows_both_runs_on_the_pareto_chart(page, artifacts_dir):
    panel = open_tab(page, "Runs")
    panel.locator(".js-plotly-plot").first.wait_for()
    titles = panel.locator(".js-plotly-plot .gtitle").all_text_contents()
    assert "Accuracy against parameters" in titles
    legend = " ".join(panel.locator(".js-plotly-plot .legendtext").all_text_contents())
    assert "Pareto frontier" in legend
    points = panel.locator(".js-plotly-plot").first.locator(".scatterlayer .point")
    assert points.count() == 2
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "runs.png"), full_page=True)
