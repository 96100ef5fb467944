"""The Inside a net page in headless Chromium: a saved checkpoint (a tiny net fitted for a moment on synthetic
data), an uploaded PNG -> the notes on what was done to it, the top-5 chart, Grad-CAM and every block's feature
maps; a test image of a chosen class; a file that is not an image refused in one line.

Uses Debian's /usr/bin/chromium (never a downloaded browser) and runs whenever it is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import BROWSER_MARKS, IDLE, artifacts_path, go_to, opened_page, running_app
from history_helpers import LARGE, make_run
from PIL import Image

from explorer.engine.data import load_dataset
from explorer.inspect import net
from explorer.inspect.images import load_image
from explorer.store.checkpoint import load_checkpoint

DATA = "synthetic:200"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    runs_dir = tmp_path_factory.mktemp("runs")
    make_run(runs_dir, "r1-inspect", name="inspected net", arch=LARGE, accuracies=(0.1, 0.0), data=DATA,
             fit_steps=30)
    return runs_dir


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, runs: Path) -> Iterator[str]:
    with running_app(runs, tmp_path_factory.mktemp("cwd")) as url:
        yield url


@pytest.fixture
def page(app_url):
    with opened_page(app_url, height=2600) as page:
        yield page


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    """A synthetic test image enlarged to 64×48 RGBA: the page must crop, resize and drop the alpha."""
    image = load_dataset(DATA).test_x[3].permute(1, 2, 0).numpy()
    path = tmp_path_factory.mktemp("upload") / "shape.png"
    Image.fromarray(image).resize((64, 64), Image.NEAREST).crop((0, 8, 64, 56)).convert("RGBA").save(path)
    return path


def predicted_line(panel) -> str:
    return panel.get_by_text("Predicted", exact=False).filter(has_text="%").first.inner_text()


def test_uploaded_png_shows_top5_and_feature_maps(page, runs, png):
    panel = go_to(page, "Inside a net")
    panel.get_by_text("Upload an image").click()
    page.wait_for_selector(IDLE)
    panel.locator("input[type='file']").set_input_files(str(png))
    panel.locator(".vega-embed").first.wait_for()
    page.wait_for_selector(IDLE)
    # The page says what it did to the upload.
    for note in ("cropped the centre 48×48 of 64×48 (the net's images are 32×32)", "resized 48×48 → 32×32",
                 "dropped the alpha channel (every pixel is opaque)"):
        assert panel.get_by_text(note, exact=True).count() == 1, note
    # The top class and its probability are those the net gives the converted image.
    loaded = load_checkpoint(runs / "r1-inspect")
    pixels = load_image(png.read_bytes(), loaded.input_shape).pixels
    best = net.top_k(loaded.model, pixels, loaded.mean, loaded.std)[0]
    assert predicted_line(panel) == f"Predicted {loaded.classes[best.index]} ({best.probability:.1%})"
    assert panel.locator(".vega-embed").count() == 1
    # One feature-map picture per conv block, labelled with the cost table's shapes.
    assert panel.get_by_text("conv1 · Conv2d 8×32×32 → ReLU → MaxPool2d → 8×16×16").count() == 1
    assert panel.get_by_text("conv2 · Conv2d 16×16×16 → ReLU → MaxPool2d → 16×8×8").count() == 1
    # image + Grad-CAM (predicted class only: the truth is unknown) + 2 blocks + filters.
    assert panel.locator("[data-testid='stImage']").count() == 1 + 1 + 1 + 2 + 1
    assert panel.get_by_text("Grad-CAM on conv2", exact=False).count() == 1
    assert panel.locator("[data-testid='stAlertContentError']").count() == 0
    page.wait_for_timeout(500)  # let the chart finish drawing before the picture
    page.screenshot(path=str(artifacts_path() / "inspect-upload.png"), full_page=True)


def test_test_image_of_a_class_with_grad_cam_for_the_true_class(page, runs):
    panel = go_to(page, "Inside a net")
    dataset = load_dataset(DATA)
    name = dataset.classes[2]
    panel.get_by_role("combobox", name="Test images").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_selector(IDLE)
    index = int((dataset.test_y == 2).nonzero()[0])
    panel.get_by_text(f"test image {index + 1:,} of {DATA} · true class {name}").wait_for(timeout=20_000)
    page.wait_for_selector(IDLE)
    loaded = load_checkpoint(runs / "r1-inspect")
    best = net.top_k(loaded.model, dataset.test_x[index], loaded.mean, loaded.std)[0]
    verdict = "right" if best.index == 2 else "wrong"
    assert predicted_line(panel) == f"Predicted {loaded.classes[best.index]} ({best.probability:.1%}) — {verdict}"
    heat_captions = 1 if best.index == 2 else 2
    assert panel.get_by_text(f"true class: {name}").count() == (0 if best.index == 2 else 1)
    assert panel.locator("[data-testid='stImage']").count() == 1 + 1 + heat_captions + 2 + 1


def test_a_file_that_is_not_an_image_is_refused(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"these are my notes, not a picture\n")
    panel = go_to(page, "Inside a net")
    panel.get_by_text("Upload an image").click()
    page.wait_for_selector(IDLE)
    panel.locator("input[type='file']").set_input_files(str(fake))
    error = panel.locator("[data-testid='stAlertContentError']").filter(has_text="Image refused")
    error.wait_for()
    assert "not an image Pillow can read (it looks like text)" in error.inner_text()
    assert panel.locator(".vega-embed").count() == 0

