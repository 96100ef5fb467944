"""The Checkpoints and Runs tabs in headless Chromium: evaluate a saved checkpoint and see the confusion
matrix and per-class bars; refuse an uploaded pickle; see the runs on the Pareto chart.

Uses Debian's /usr/bin/chromium (never a downloaded browser) and runs whenever it is installed.
Screenshots go to $EXPLORER_ARTIFACTS_DIR, else artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import BROWSER_MARKS, IDLE, artifacts_path, go_to, opened_page, running_app
from history_helpers import LARGE, SMALL, make_run

from explorer.engine.data import load_dataset
from explorer.engine.evaluate import evaluate_checkpoint
from explorer.store.checkpoint import load_checkpoint

DATA = "synthetic:200"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def artifacts_dir() -> Path:
    return artifacts_path()


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
    with running_app(history, tmp_path_factory.mktemp("cwd")) as url:
        yield url


@pytest.fixture
def page(app_url):
    with opened_page(app_url, height=2200) as page:
        yield page


def open_tab(page, name: str):
    return go_to(page, name)


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
    assert "Confusion matrix" in titles
    assert f"Per-class accuracy · overall {expected.accuracy:.1%} (red dashed line)" in titles
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
