"""Issue 20, hardening II: hostile files and designs, the data notes, and one place for each fact.

One section per item; each test failed on the code before its fix. The new names are imported inside the tests
so that each one fails for its own reason there. Readers that could hang (a FIFO) or eat the machine
(/dev/zero) run in a child process under a memory limit and a timeout, so a regression fails the test instead of
ending the test run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import make_image_folder
from history_helpers import make_run
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import model_cost
from explorer.cli import main
from explorer.engine.data import load_dataset
from explorer.errors import ConfigError, DataError
from explorer.ui import links

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TINY_ARCH = '{"conv":[{"out_channels":4,"pool":"max"}],"head":"avgpool"}'

# ---------------------------------------------------------------- 1. only regular files, never past a size

READERS = r'''
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (2 * 2**30, 2 * 2**30))  # reading /dev/zero whole ends here, not in OOM
from pathlib import Path
from explorer.cli import main
from explorer.engine.folders import _decode_image
from explorer.errors import ExplorerError
from explorer.store.checkpoint import load_checkpoint

checkpoint, paths = sys.argv[1], sys.argv[2:]
results = {}
for path in paths:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["predict", checkpoint, path])
    results[f"predict {path}"] = [code, err.getvalue()]
    for name, read in (("checkpoint", load_checkpoint), ("folder", lambda p: _decode_image(Path(p)))):
        try:
            read(path)
            results[f"{name} {path}"] = "read"
        except ExplorerError as error:
            results[f"{name} {path}"] = str(error)
print(json.dumps(results))
'''


def test_every_reader_refuses_a_device_a_fifo_and_a_socket_without_hanging(runs_dir, tmp_path) -> None:
    run = make_run(runs_dir, "r1")
    fifo, sock_path, zero = tmp_path / "pipe.png", tmp_path / "sock.png", tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")  # a name with a suffix, as a checkpoint or an image has
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading blocks on the old code
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        done = subprocess.run([sys.executable, "-c", READERS, str(run), str(zero), str(fifo), str(sock_path)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300,
                              env=os.environ | {"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"})
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.splitlines()[-1])
    kinds = {str(zero): "a character device", str(fifo): "a FIFO (named pipe)", str(sock_path): "a socket"}
    assert len(results) == 9
    for path, kind in kinds.items():
        code, err = results[f"predict {path}"]
        assert code == 2 and err.count("\n") == 1 and f"{path} is {kind}, not a regular file" in err
        for reader in ("checkpoint", "folder"):
            assert f"{path} is {kind}, not a regular file" in results[f"{reader} {path}"]


def test_predict_refuses_a_file_over_the_image_size_rule_unread(runs_dir, tmp_path, monkeypatch, capsys) -> None:
    from explorer.files import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

    assert MAX_IMAGE_BYTES == 4 * MAX_IMAGE_PIXELS + 2**20  # 64 Mpixel of uncompressed RGBA, plus headers
    make_run(runs_dir, "r1")
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no disk used
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the whole file must not be read"))
    assert main(["predict", "r1", str(big)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(big) in err and f"over the limit of {MAX_IMAGE_BYTES:,} bytes" in err


def test_an_upload_and_a_folder_image_over_the_size_rule_are_refused(tmp_path, monkeypatch) -> None:
    import explorer.engine.folders as folders
    import explorer.inspect.images as images

    folder = make_image_folder(tmp_path / "imgs", per_class=2, size=(16, 16))
    data = (folder / "train" / "a" / "0.png").read_bytes()
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(data) - 1)
    with pytest.raises(DataError, match=f"over the limit of {len(data) - 1:,} bytes"):
        images.load_image(data, (3, 32, 32))
    monkeypatch.setattr(folders, "MAX_IMAGE_BYTES", len(data) - 1)
    with pytest.raises(DataError, match=r"\d\.png is \d[\d,]* bytes, over the limit"):
        load_dataset(f"folder:{folder}")


# ---------------------------------------------------------------- 2. a design is costed before it is built


def issue_link() -> dict[str, str]:
    """The issue's link: 8 blocks x 1,024 channels, input 3x1,024x1,024, global pooling, budget 100 M."""
    arch = ArchConfig(conv=(ConvBlock(1024),) * 8, head="avgpool")
    return links.encode(links.Design(arch=arch, preset=None, budget=100_000_000, input_shape=(3, 1024, 1024)))


def test_the_issues_link_is_read_but_never_built(monkeypatch) -> None:
    from explorer.arch import model as model_module
    from explorer.arch.cost import MAX_BUILD_ACTIVATION_BYTES, MAX_BUILD_PARAMS, TooLargeToBuild, build_refusal
    from explorer.arch.model import build_model
    from explorer.arch.summary import torchinfo_summary

    design = links.decode(issue_link())  # a valid design within every widget's range...
    cost = model_cost(design.arch, design.input_shape, design.num_classes)
    assert cost.params > MAX_BUILD_PARAMS and cost.activation_bytes > MAX_BUILD_ACTIVATION_BYTES
    assert "parameters, over the limit of 50,000,000" in build_refusal(cost)  # ...that is never allocated
    monkeypatch.setattr(model_module, "Net", lambda *a: pytest.fail("nothing may be allocated"))
    for build in (build_model, torchinfo_summary):
        with pytest.raises(TooLargeToBuild, match="over the limit of 50,000,000"):
            build(design.arch, design.input_shape, design.num_classes)
    wide = ArchConfig(conv=(ConvBlock(32, pool="max"),), head="avgpool")  # 1,226 params, 300 MiB at 1024²
    refusal = build_refusal(model_cost(wide, (3, 1024, 1024)))
    assert "300 MiB of activations per image, over the limit of 256 MiB" in refusal
    flatten = ArchConfig(conv=(ConvBlock(256),), fc=(1024,))  # the issue's flatten head at 3x64x64: 1 G params
    assert build_refusal(model_cost(flatten, (3, 64, 64))) is not None
    assert build_refusal(model_cost(ArchConfig(conv=(ConvBlock(32),)), (3, 32, 32))) is None


def test_the_architecture_page_skips_summary_and_diagram_and_the_train_page_start(monkeypatch) -> None:
    from explorer.engine.recipes import RECIPES
    from explorer.ui import arch_diagram, arch_panel
    from explorer.ui.state import Selection
    from explorer.ui.train_panel import start_blocker

    monkeypatch.setattr(arch_panel, "torchinfo_summary", lambda *a: pytest.fail("torchinfo must not build it"))
    monkeypatch.setattr(arch_diagram, "diagram_html", lambda *a, **k: pytest.fail("no diagram for it"))
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in issue_link().items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    warning = next(w.value for w in at.warning if "skipped" in w.value)
    assert "torchinfo summary" in warning and "over the limit of 50,000,000" in warning
    design = links.decode(issue_link())
    params = model_cost(design.arch, design.input_shape).params
    assert next(m.value for m in at.metric if m.label == "Parameters") == f"{params:,}"  # the costs still show
    selection = Selection(cfg=design.arch, error=None, preset=None, input_shape=design.input_shape,
                          num_classes=10, budget=design.budget)
    assert "over the limit of 50,000,000" in start_blocker(selection, RECIPES["fast"], "synthetic")


def test_a_search_trial_over_the_build_limits_is_rejected_untrained(runs_dir, monkeypatch) -> None:
    import explorer.search.trial as trial
    from explorer.search.study import create_search, load_search, make_settings, rows
    from explorer.search.worker import run_worker

    monkeypatch.setattr(trial, "validation_split", lambda *a: pytest.fail("a refused trial loads no data"))
    space = {"recipe": "fast", "arch": {"depth": 8, "width": {"low": 1024, "high": 1024}, "pool": "none",
                                        "head": "avgpool"}, "train": {"batch_size": 64}}
    storage = f"journal:{runs_dir / 'searches' / 'huge' / 'journal.log'}"
    create_search("huge", storage, make_settings(space, "synthetic:200", trial_epochs=1, budget=100_000_000))
    run_worker("huge", storage, trials=1, runs_dir=runs_dir)
    study, _ = load_search("huge", storage)
    (row,) = rows(study)
    assert row["state"] == "rejected" and "over the limit of 50,000,000" in row["rejected"]


def test_the_input_class_and_budget_limits_are_declared_once() -> None:
    from explorer.arch import config, cost

    assert links.SIZE_RANGE == (1, config.MAX_INPUT_SIZE) and links.CHANNELS_RANGE == (1, config.MAX_INPUT_CHANNELS)
    assert links.CLASSES_RANGE is config.CLASSES_RANGE and links.BUDGET_RANGE is cost.BUDGET_RANGE
    sidebar = (ROOT / "explorer" / "ui" / "sidebar.py").read_text()
    assert "1024" not in sidebar and "100_000_000" not in sidebar and "1000" not in sidebar
    with pytest.raises(ConfigError, match=f"at most {config.MAX_INPUT_CHANNELS} channels"):
        ArchConfig(conv=(ConvBlock(8),)).validate((config.MAX_INPUT_CHANNELS + 1, 32, 32))


# ---------------------------------------------------------------- 6. the data notes are printed


def test_train_prints_the_data_notes_and_pillows_warning_stays_silent(tmp_path, runs_dir, monkeypatch,
                                                                       capsys) -> None:
    folder = make_image_folder(tmp_path / "imgs", per_class=4, size=(16, 16))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "train" / "a" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40: over it, under Pillow's error at twice it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--arch", TINY_ARCH, "--data", f"folder:{folder}", "--epochs", "1",
                     "--batch-size", "8", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("data note: skipped 1 image"))
    assert str(folder / "train" / "a" / "huge.png") in note
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def notes_script() -> None:
    """The Train page's live view of a run whose record holds data notes."""
    from explorer.store.events import parse_event
    from explorer.ui.train_panel import live_view

    class Reader:
        def read(self):
            return [parse_event({"type": "loading", "time": 1.0, "data": "folder:x"})], []

    class Runner:
        def reader(self, run_id: str) -> Reader:
            return Reader()

        def status(self, run_id: str) -> dict:
            return {"id": run_id, "status": "running", "data_notes": ["skipped 1 image(s): x/huge.png"]}

    live_view(Runner(), "run-1", now=2.0)


def test_the_train_page_shows_the_data_notes() -> None:
    at = AppTest.from_function(notes_script, default_timeout=30).run()
    assert not at.exception
    assert [c.value for c in at.caption if c.value.startswith("Data note")] == [
        "Data note: skipped 1 image(s): x/huge.png"]


# ---------------------------------------------------------------- 7. the decode cache says why it is not used


def test_an_unusable_decode_cache_is_logged_once_and_decoded_again(tmp_path, monkeypatch, caplog) -> None:
    import explorer.engine.data as data

    folder = make_image_folder(tmp_path / "imgs", per_class=3, size=(8, 8))
    first = load_dataset(f"folder:{folder}")
    (cache,) = folder.glob(".explorer-cache-*.pt")
    saved = torch.load(cache, weights_only=True)
    saved["remarks"] = saved.pop("notes")  # a renamed field: every start would decode again, unnoticed
    with caplog.at_level(logging.WARNING, logger="explorer.engine.folders"):
        for _ in range(2):
            monkeypatch.setattr(data, "_MEMO", {})
            torch.save(saved, cache)
            again = load_dataset(f"folder:{folder}")
            assert torch.equal(again.train_x, first.train_x)
    logged = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(logged) == 1 and str(cache) in logged[0] and "remarks" in logged[0]
    cache.write_bytes(b"not a cache")  # damaged: an expected miss, decoded again without a word
    monkeypatch.setattr(data, "_MEMO", {})
    caplog.clear()
    assert torch.equal(load_dataset(f"folder:{folder}").train_x, first.train_x) and not caplog.records


# ---------------------------------------------------------------- 8. the package version is not made up


def test_the_package_version_comes_from_pyproject_and_real_errors_surface(tmp_path, monkeypatch) -> None:
    import importlib.metadata

    import explorer.store.checkpoint as checkpoint

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "architecture-explorer"\nversion = "9.8.7"\n')
    monkeypatch.setattr(checkpoint, "PYPROJECT", pyproject)

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert checkpoint.library_versions()["explorer"] == "9.8.7"

    def broken(name: str) -> str:
        raise RuntimeError("a broken metadata folder")

    monkeypatch.setattr(importlib.metadata, "version", broken)
    with pytest.raises(RuntimeError, match="broken metadata"):
        checkpoint.library_versions()


# ---------------------------------------------------------------- 9. an export failure keeps its traceback


def test_an_export_failure_names_a_log_file_with_the_whole_traceback(runs_dir, monkeypatch) -> None:
    from explorer.inspect.export import CheckImages, ExportError, export_model
    from explorer.store.checkpoint import load_checkpoint

    loaded = load_checkpoint(make_run(runs_dir, "r1"))

    def deep_inside_the_exporter(*args, **kwargs):
        raise RuntimeError("tracer gave up\nsecond line only in the log")

    monkeypatch.setattr(torch.jit, "trace", deep_inside_the_exporter)
    images = CheckImages(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "2 images", False)
    with pytest.raises(ExportError) as err:
        export_model(loaded, "torchscript", images)
    message = str(err.value)
    assert message.startswith("TorchScript export failed: tracer gave up (traceback in ") and "\n" not in message
    log = Path(message.split("(traceback in ")[1].rstrip(")"))
    assert log.parent == runs_dir / ".logs"
    text = log.read_text()
    assert "Traceback" in text and "deep_inside_the_exporter" in text and "second line only in the log" in text


# ---------------------------------------------------------------- 10. one name for one dataset


def test_one_dataset_has_one_source_string_written_and_read(runs_dir) -> None:
    from explorer.engine.data import canonical_source
    from explorer.store.runs import list_runs
    from explorer.store.tables import runs_table

    assert canonical_source("synthetic:2000") == canonical_source(" synthetic ") == "synthetic"
    assert canonical_source("synthetic:0500") == "synthetic:500" and canonical_source(None) is None
    assert canonical_source("folder:/data/x") == "folder:/data/x"
    make_run(runs_dir, "old", data="synthetic:2000")  # written before the fix, by the Search page
    make_run(runs_dir, "new", data="synthetic")
    table = runs_table(list_runs(runs_dir))
    assert set(table["data"]) == {"synthetic"}
    assert load_dataset("synthetic:2000") is load_dataset("synthetic")  # one dataset, one name, one copy


def test_a_run_record_is_written_with_the_canonical_source(runs_dir) -> None:
    from explorer.engine.recipes import RECIPES
    from explorer.store.runner import RunProcess, RunSpec

    spec = RunSpec(ArchConfig.from_json(TINY_ARCH), RECIPES["fast"], "synthetic:2000")
    process = RunProcess(spec, runs_dir=runs_dir)
    process._create_folder()  # what run() does first: the record as it is written, before any data is loaded
    assert json.loads((process.dir / "run.json").read_text())["data"] == "synthetic"


# ---------------------------------------------------------------- the model card's settings come from the schema


def test_the_model_cards_training_settings_use_the_schemas_labels_and_flags(runs_dir) -> None:
    from explorer.inspect.export import model_card
    from explorer.store.checkpoint import load_checkpoint

    loaded = load_checkpoint(make_run(runs_dir, "r1"))
    loaded.meta["train"] = loaded.meta["train"] | {"optimizer": "nesterov", "augment": ["flip", "crop"],
                                                   "tta_flip": True, "retired_setting": 3}
    card = model_card(loaded, "onnx", _check(), "m.onnx")
    assert "- Optimizer (`--optimizer`): SGD + Nesterov" in card
    assert "- Learning rate (`--lr`): 0.01" in card and "- retired_setting: 3" in card
    assert "(`--tta-flip`): on" in card and "(`--augment`): " in card


def _check():
    from explorer.inspect.export import ExportCheck

    return ExportCheck(2, "2 images", False, 2, 0.0, (2, 1), 2)


@pytest.fixture(autouse=True)
def _clear_streamlit_caches():
    yield
    st.cache_resource.clear()
    st.cache_data.clear()
