"""Shared plumbing of the browser tests: a headless `streamlit run` on a free port and Debian's chromium.

Never a downloaded browser: Playwright launches /usr/bin/chromium. Screenshots go to $EXPLORER_ARTIFACTS_DIR,
else artifacts/ at the repository root (git-ignored).
"""

from __future__ import annotations

import contextlib
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

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


def artifacts_path() -> Path:
    path = Path(os.environ.get("EXPLORER_ARTIFACTS_DIR") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


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


@contextlib.contextmanager
def running_app(runs_dir: Path, work_dir: Path, app_root: Path = ROOT) -> Iterator[str]:
    """A headless `streamlit run streamlit_app.py` using `runs_dir`, stopped afterwards; yields its URL.
    `app_root` is the checkout whose app runs (the benchmark compares two)."""
    port = _free_port()
    env = dict(os.environ, EXPLORER_RUNS_DIR=str(runs_dir), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "streamlit", "run", str(Path(app_root) / "streamlit_app.py"),
               "--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
               "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"]
    with (work_dir / "streamlit.log").open("w") as log:
        proc = subprocess.Popen(command, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc)
            yield url
        finally:
            stop_process(proc, timeout=15)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def opened_page(url: str, height: int) -> Iterator:
    """A Chromium page on the app, after the first script run has finished."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("[data-testid='stMetricValue']")
        page.wait_for_selector(IDLE)
        yield page
        browser.close()


def go_to(page, title: str):
    """Open the app page `title` from the top navigation; returns the main area once the page is idle."""
    page.locator("[data-testid='stTopNavLink']").filter(has_text=title).click()
    page.locator("[data-testid='stTopNavLink'][aria-current='page']").filter(has_text=title).wait_for()
    page.wait_for_timeout(200)  # let the page's rerun start before waiting for idle
    page.wait_for_selector(IDLE)
    return page.locator("[data-testid='stMain']")
