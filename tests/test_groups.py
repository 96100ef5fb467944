"""Seeds and noise: `train --repeat N` makes a group of runs, `runs --groups` summarizes each group and `compare`
tests two of them (store.groups on top of store.stats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from history_helpers import LARGE, SMALL, make_run
from scipy import stats as scipy_stats

from explorer.cli import main
from explorer.store.groups import compare, group_summaries, repeat_specs, resolve

TINY = '{"conv":[{"out_channels":16,"pool":"max"},{"out_channels":32,"pool":"max"}],"batchnorm":true,"head":"maxpool"}'


def grouped_run(runs_dir: Path, run_id: str, group: str, accuracy: float, **options) -> Path:
    """A hand-made run (history_helpers.make_run) recorded in `group`."""
    folder = make_run(runs_dir, run_id, accuracies=(0.1, accuracy), checkpoint=False, **options)
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps(record | {"group": group}))
    return folder


@pytest.fixture()
def two_groups(runs_dir: Path) -> Path:
    for i, accuracy in enumerate((0.50, 0.52, 0.54)):
        grouped_run(runs_dir, f"a{i}", "g-a", accuracy, name="wide", arch=LARGE, created=f"2024-01-0{i + 4}")
    for i, accuracy in enumerate((0.40, 0.41, 0.42)):
        grouped_run(runs_dir, f"b{i}", "g-b", accuracy, name="narrow", arch=SMALL, created=f"2024-01-0{i + 1}")
    return runs_dir


def test_repeat_trains_n_seeds_as_one_group(runs_dir: Path, capsys) -> None:
    argv = ["train", "--arch", TINY, "--data", "synthetic:600", "--recipe", "study", "--optimizer", "adam",
            "--lr", "0.003", "--batch-size", "32", "--epochs", "2", "--seed", "5", "--repeat", "3", "--json"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/run.json"))]
    assert len(records) == 3 and sorted(r["train"]["seed"] for r in records) == [5, 6, 7]
    assert len({r["group"] for r in records}) == 1 and records[0]["group"].startswith("g-")
    finals = [line for line in lines if "run_dir" in line]
    assert len(finals) == 3 and len({line["test_accuracy"] for line in finals}) > 1  # the seeds differ
    group = lines[-1]
    accuracies = [r["summary"]["final_test_accuracy"] for r in records]
    assert group["type"] == "group" and group["id"] == records[0]["group"] and group["n"] == 3
    assert group["mean"] == pytest.approx(sum(accuracies) / 3)
    assert group["mean"] > 0.2  # learnable synthetic data: well above chance (0.1)
    assert group["low"] < group["mean"] < group["high"]
    assert main(["runs", "--groups", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["counted"] == group["counted"]


def test_group_summary_is_n_mean_std_and_t_interval(two_groups: Path) -> None:
    # Runs that did not finish are listed in the group but not counted.
    grouped_run(two_groups, "a-stopped", "g-a", 0.1, status="stopped", created="2024-01-09")
    groups = {g.id: g for g in group_summaries(two_groups)}
    assert list(groups) == ["g-a", "g-b"]  # newest first
    wide = groups["g-a"]
    assert len(wide.run_ids) == 4 and wide.counted == ("a2", "a1", "a0")
    summary = wide.summary
    assert (summary.n, summary.mean, summary.std) == (3, pytest.approx(0.52), pytest.approx(0.02))
    half = scipy_stats.t.ppf(0.975, 2) * 0.02 / 3 ** 0.5
    assert (summary.low, summary.high) == (pytest.approx(0.52 - half), pytest.approx(0.52 + half))
    assert wide.name == "wide" and wide.data == ("synthetic:40",) and wide.images_per_second == 100.0


def test_compare_gives_interval_p_value_and_verdict(two_groups: Path, capsys) -> None:
    a, b, result = compare("g-a", "g-b", two_groups)
    assert result.verdict == "A better" and result.diff == pytest.approx(0.11)
    welch = scipy_stats.ttest_ind([0.5, 0.52, 0.54], [0.4, 0.41, 0.42], equal_var=False)
    assert result.p_value == pytest.approx(welch.pvalue)
    assert compare("g-b", "g-a", two_groups)[2].verdict == "B better"
    grouped_run(two_groups, "c0", "g-c", 0.49, created="2024-01-10")
    grouped_run(two_groups, "c1", "g-c", 0.55, created="2024-01-11")
    assert compare("g-a", "g-c", two_groups)[2].verdict == "within noise"
    assert main(["compare", "g-a", "g-b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "A better" and out["a"]["n"] == 3 and out["low"] > 0
    assert main(["compare", "g-a", "g-b"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(": A better")


@pytest.mark.parametrize(("a", "b", "words"), [
    ("g-single", "g-a", ["g-single has 1 finished run", "--group g-single"]),
    ("a0", "g-b", ["run a0 has 1 finished run", "give its group id g-a"]),
    ("g-a", "loose", ["run loose has 1", "--repeat 3"]),
    ("g-a", "g-other-data", ["synthetic:40", "cifar10", "different datasets"]),
    ("g-a", "nope", ["'nope' is neither a run id nor a group id", "runs --groups"]),
])
def test_compare_refuses_with_one_line_saying_what_to_change(two_groups: Path, capsys, a, b, words) -> None:
    grouped_run(two_groups, "s0", "g-single", 0.3)
    make_run(two_groups, "loose", accuracies=(0.3,), checkpoint=False)
    grouped_run(two_groups, "o0", "g-other-data", 0.3, data="cifar10")
    grouped_run(two_groups, "o1", "g-other-data", 0.35, data="cifar10")
    assert main(["compare", a, b]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(word in err for word in words), err


def test_runs_groups_table_flags_a_group_without_interval(two_groups: Path, capsys) -> None:
    grouped_run(two_groups, "s0", "g-single", 0.3)
    assert main(["runs", "--groups"]) == 0
    out = capsys.readouterr().out
    assert "52.00%" in out and "2.00%" in out and " 3/3" in out
    assert "! g-single: 1 finished run(s), no interval" in out and "--group g-single" in out
    assert resolve("g-single", two_groups).summary.std != resolve("g-single", two_groups).summary.std  # NaN


def test_bad_repeat_is_refused(runs_dir: Path, capsys) -> None:
    base = ["train", "--arch", TINY, "--data", "synthetic:200", "--epochs", "1"]
    assert main([*base, "--repeat", "0"]) == 2
    assert "repeat 0 is out of range: give 1 to 50 seeds" in capsys.readouterr().err
    assert main([*base, "--repeat", "2", "--resume", "x"]) == 2
    assert "cannot be combined with --resume" in capsys.readouterr().err
    assert not list(runs_dir.iterdir())  # nothing was created


def test_repeat_specs_keep_everything_but_the_seed() -> None:
    from explorer.engine.config import TrainConfig
    from explorer.store.runner import RunSpec

    spec = RunSpec(SMALL, TrainConfig(seed=3, lr=0.02), "synthetic", name="n", preset=None, recipe="fast")
    specs = repeat_specs(spec, 3)
    assert [s.train.seed for s in specs] == [3, 4, 5] and len({s.group for s in specs}) == 1
    assert all(s.train.replace(seed=3) == spec.train and s.name == "n" and s.recipe == "fast" for s in specs)
    assert repeat_specs(spec, 1) == [spec]  # one run: no group
