"""Sweeps on tiny synthetic data: a 2-point grid x 2 seeds trained by the search's worker, one row per point
with n, mean and interval equal to its run records; the CLI; every bad input refused before anything is written."""

from __future__ import annotations

import json
import statistics

import pytest

from explorer.cli import main
from explorer.errors import ConfigError
from explorer.search import sweep
from explorer.search.study import load_search, rows
from explorer.search.sweep import apply_settings, create_sweep, grid, load_sweep, parse_set, sweep_settings
from explorer.search.worker import run_worker
from explorer.store.runs import read_run
from explorer.store.stats import summarize

# The tutorial net with the fast recipe's optimizer, no augmentation or TTA: learns the synthetic task in 3 epochs.
PLAIN = ["train.augment=none", "train.tta_flip=false", "train.tta_translate=0"]


def _storage(runs_dir, name: str) -> str:
    return f"journal:{runs_dir / 'searches' / name / 'journal.log'}"


def test_a_two_point_grid_with_two_seeds_gives_one_row_per_point_equal_to_its_runs(runs_dir):
    sets = [parse_set("train.batch_size=16,32"), *map(parse_set, PLAIN)]
    settings = sweep_settings(grid(sets), "synthetic:400", 2, "tutorial", "fast", epochs=3)
    storage = _storage(runs_dir, "bs")
    create_sweep("bs", storage, settings)
    run_worker("bs", storage, runs_dir=runs_dir)  # the search's worker: stops when the grid is done

    study, settings = load_sweep("bs", storage)
    summary = sweep.sweep_status(study, settings)
    assert summary["runs"] == 4 and summary["complete"] == 4 and summary["keys"][0] == "train.batch_size"
    points = summary["points"]
    assert [p["settings"]["train.batch_size"] for p in points] == [16, 32]
    everything = []
    for point in points:
        records = [read_run(run_id, runs_dir) for run_id in point["run_ids"]]
        assert point["n"] == 2 and len(records) == 2
        assert {r["train"]["batch_size"] for r in records} == {point["settings"]["train.batch_size"]}
        assert sorted(r["train"]["seed"] for r in records) == [0, 1]  # one seed per repeat
        assert all(r["train"]["epochs"] == 3 and r["search"]["name"] == "bs" for r in records)
        accuracies = [t["test_accuracy"] for t in rows(study) if t["run_id"] in point["run_ids"]]
        expected = summarize(accuracies)
        assert point["mean"] == pytest.approx(statistics.mean(accuracies))
        assert (point["low"], point["high"]) == pytest.approx((expected.low, expected.high))
        everything += accuracies
    assert statistics.mean(everything) > 0.15  # 10 classes: chance is 0.10


def test_grid_settings_change_the_design_and_lists_join_with_plus():
    from explorer.arch.presets import PRESETS
    from explorer.engine.recipes import RECIPES

    assert parse_set("arch.batchnorm=true,false") == ("arch.batchnorm", [True, False])
    assert parse_set("train.augment=flip+crop,none") == ("train.augment", [["flip", "crop"], []])
    assert len(grid([parse_set("train.batch_size=4,8,16,32"), parse_set("arch.batchnorm=true,false")])) == 8
    arch, train = apply_settings(PRESETS["tutorial"], RECIPES["study"],
                                 {"preset": "study-2-2", "arch.kernel": 3, "arch.width_multiplier": 2.0,
                                  "train.optimizer": "adam"})
    assert [b.kernel for b in arch.conv] == [3, 3] and [b.out_channels for b in arch.conv] == [50, 100]
    assert arch.fc == PRESETS["study-2-2"].fc and train.optimizer == "adam" and train.batch_size == 8


def test_cli_create_run_status(runs_dir, capsys):
    assert main(["sweep", "create", "c1", "--set", "train.batch_size=16,32", "--repeat", "1", "--data",
                 "synthetic:100", "--epochs", "1", "--preset", "tutorial", "--recipe", "study", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == 2
    assert main(["sweep", "run", "c1", "--workers", "1", "--json"]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert ran["complete"] == 2 and ran["run"]["exit_codes"] == [0]
    assert main(["sweep", "status", "c1", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(p["settings"], p["n"]) for p in status["points"]] == [({"train.batch_size": 16}, 1),
                                                                  ({"train.batch_size": 32}, 1)]
    assert all(0 <= p["mean"] <= 1 and p["low"] is None for p in status["points"])  # n = 1: no interval
    study, _ = load_search("c1", _storage(runs_dir, "c1"))
    assert sorted(t["state"] for t in rows(study) if t["state"] == "complete") == ["complete"] * 2
    assert main(["sweep", "run", "c1", "--json"]) == 0  # nothing left: no worker starts, nothing trained twice
    assert json.loads(capsys.readouterr().out)["run"]["workers"] == 0


TOO_MANY = ",".join(str(b) for b in range(1, 27))  # 26 batch sizes x 20 repeats = 520 runs


@pytest.mark.parametrize("sets,extra,words", [
    ([f"train.batch_size={TOO_MANY}"], ["--repeat", "20"], f"= 520 runs, over {sweep.MAX_SWEEP_RUNS}"),
    (["train.batch_size=0,8"], [], "train.batch_size: 0 is out of range; use a value from 1"),
    (["arch.dropout=0.5,2"], [], "arch.dropout: 2 is out of range"),
    (["arch.nonsense=1,2"], [], "--set arch.nonsense: no such setting; sweepable settings are preset"),
    (["train.batch_size="], [], "--set train.batch_size: no values"),
    (["train.batch_size"], [], "write NAME=V1,V2"),
    (["arch.batchnorm=maybe"], [], "'maybe' is not true or false"),
    (["train.optimizer=sgd,lion"], [], "'lion' is not allowed; choose one of"),
    (["train.batch_size=8,8"], [], "a value is listed twice"),
    (["train.lr=0.1", "train.lr=0.2"], [], "names one setting twice"),
    (["arch.residual=true"], [], "grid point arch.residual=True: conv1: a residual block must keep the shape"),
    (["train.batch_size=8"], ["--repeat", "0"], "--repeat 0: use 1 to"),
])
def test_bad_sweeps_exit_2_with_one_line_and_write_nothing(runs_dir, capsys, sets, extra, words):
    argv = ["sweep", "create", "bad", "--data", "synthetic:100", "--preset", "tutorial", *extra]
    for text in sets:
        argv += ["--set", text]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (runs_dir / "searches").exists()  # validated before the study (or its folder) exists


def test_a_sweep_name_taken_and_a_search_read_as_a_sweep_are_refused(runs_dir, capsys):
    settings = sweep_settings(grid([parse_set("train.batch_size=8,16")]), "synthetic:100", 1, "tutorial", "study")
    create_sweep("taken", _storage(runs_dir, "taken"), settings)
    with pytest.raises(ConfigError, match="sweep 'taken' already exists .* `python -m explorer sweep run taken`"):
        create_sweep("taken", _storage(runs_dir, "taken"), settings)
    assert main(["sweep", "status", "missing"]) == 2
    assert "no sweep 'missing' at " in capsys.readouterr().err
    search = runs_dir / "space.json"
    search.write_text(json.dumps({"arch": {"widths": [4]}}))
    assert main(["search", "create", "plain", "--space", str(search), "--data", "synthetic:100"]) == 0
    assert main(["sweep", "status", "plain"]) == 2
    assert "'plain' is a search, not a sweep" in capsys.readouterr().err
