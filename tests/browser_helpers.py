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
        prepare(page)
        page.goto(url)
        page.wait_for_selector("[data-testid='stMetricValue']")
        page.wait_for_selector(IDLE)
        yield page
        browser.close()


def go_to(page, title: str):
    """Open the app page `title` from the top navigation; returns the main area once its script run is over."""
    watch_reruns(page)
    page.locator("[data-testid='stTopNavLink']").filter(has_text=title).click()
    page.locator("[data-testid='stTopNavLink'][aria-current='page']").filter(has_text=title).wait_for()
    wait_rerun(page)  # the page's own script run, started and ended
    return page.locator("[data-testid='stMain']")


# Installed in every page before the app loads: counts the server's websocket messages, so a test can wait for
# the reply to what it did (a fast script run can start and end between two looks at the script-state flag).
COUNT_MESSAGES_JS = """
window.__explorerMessages = 0;
const ExplorerSocket = window.WebSocket;
window.WebSocket = class extends ExplorerSocket {
  constructor(...args) { super(...args); this.addEventListener('message', () => { window.__explorerMessages++; }); }
};
"""


def prepare(page) -> None:
    """Count the app's messages in `page` (call before page.goto)."""
    page.add_init_script(COUNT_MESSAGES_JS)


def watch_reruns(page) -> None:
    """Remember how many messages the server has sent; wait_rerun() then waits for the next script run."""
    page.evaluate("() => { window.__explorerArmed = window.__explorerMessages; }")


def wait_rerun(page) -> None:
    """Wait until the server has answered since watch_reruns() (its script run started) and the page is idle
    again, two frames later (the script-state flag is drawn a frame after the message that sets it)."""
    page.wait_for_function("() => window.__explorerMessages > window.__explorerArmed")
    page.wait_for_function("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
                           ".then(() => true)")
    page.wait_for_selector(IDLE)


TABLE = ".st-key-arch-blocks"  # the Architecture page's blocks table (a data editor)
ROW_PX = HEADER_PX = 35  # Streamlit's data editor rows and header


def edit_width_cell(page, row: int, text: str, attempts: int = 3, timeout_ms: float = 5000) -> None:
    """Type `text` into the width cell of block row `row` (from 0) of the blocks table and commit it with Enter.
    The grid draws on a canvas: the cell is selected by a click at its place (the row names' column has a fixed
    width, explorer.ui.blocks_table.INDEX_PX) and opened with Enter, as a keyboard user does. Now and then the
    editor does not open (the cell stays selected): then the edit is made again; `timeout_ms` per attempt."""
    from explorer.ui.blocks_table import INDEX_PX

    cell = f"{TABLE} #glide-cell-1-{row}"
    for attempt in range(attempts):
        try:
            _type_into_cell(page, row, text, INDEX_PX)
            page.wait_for_function(f"(text) => document.querySelector('{cell}')?.textContent === text", arg=text,
                                   timeout=timeout_ms)
            return
        except Exception:  # Playwright's TimeoutError: the editor did not open
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")


def _type_into_cell(page, row: int, text: str, index_px: int) -> None:
    grid = page.locator(f"{TABLE} [data-testid='stDataFrame']")
    grid.wait_for()
    grid.scroll_into_view_if_needed()  # a click outside the viewport reaches nothing
    box = grid.bounding_box()
    page.mouse.click(box["x"] + index_px + 20, box["y"] + HEADER_PX + row * ROW_PX + ROW_PX // 2)
    page.keyboard.press("Enter")
    # Type only once the cell's editor has the focus: keys sent while it mounts are lost.
    # (the grid's own editor: another box of the page may hold the focus, and would get the text)
    page.wait_for_function("() => document.activeElement?.classList.contains('gdg-input')", timeout=5000)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.wait_for_function("(text) => document.activeElement?.value === text", arg=text, timeout=5000)
    # Two frames for the editor to take the typed value in: an Enter right after the keys commits the old one.
    page.wait_for_function("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
                           ".then(() => true)")
    watch_reruns(page)
    page.keyboard.press("Enter")
