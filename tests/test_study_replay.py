"""reproduce-study: the study's steps and conclusions, and the verdict of each on fabricated trial records
(no training): confirmed, within noise, reversed, not enough runs; the CLI's table and its bad input."""

from __future__ import annotations

import json

import optuna
import pytest

from explorer.cli import main
from explorer.search import study_replay
from explorer.search.study import default_storage
from explorer.search.study_replay import CONCLUSIONS, STEPS, conclusion_table, conclusion_verdict, step_table
from explorer.search.sweep import SWEEP_ATTR, load_sweep

# Fabricated test accuracies per step: three seeds each.
VALUES = {
    "tutorial-b16": [0.46, 0.47, 0.45], "tutorial-b20": [0.40, 0.41, 0.42],  # clearly better: confirmed
    "tutorial-b8": [0.50, 0.53, 0.47],  # against b16: +4 points, seeds too spread: within noise
    "tutorial-b4": [0.38, 0.39, 0.37],  # clearly worse than b8 (0.50 mean): reversed
    "bn": [0.69, 0.70, 0.68], "bn-dropout": [0.74, 0.75, 0.73],  # dropout clearly better: "no better" reversed
    "bn-flip": [0.70, 0.66, 0.69],  # within noise of bn: "no gain" confirmed
    "bn-adam": [0.60, 0.61, 0.59],  # worse than SGD: "does not beat SGD" confirmed
    "bn-adagrad": [0.65],  # one run: not enough runs
}


def test_the_study_is_listed_with_its_reported_accuracy_and_every_conclusion_names_two_steps():
    reported = {step.key: step.reported for step in STEPS}
    assert reported["tutorial-b4"] == 0.54 and reported["2-2"] == 0.61 and reported["bn"] == 0.69
    assert reported["bn-adam"] is None  # the study gave no number for its optimizer variants
    assert {c.claim for c in CONCLUSIONS} == {"better", "no better"}
    assert all(c.a in reported and c.b in reported for c in CONCLUSIONS)
    assert len(CONCLUSIONS) == 11 and sum(step.long for step in STEPS) == 2


@pytest.mark.parametrize("claim,ours,expected", [
    ("better", "A better", "confirmed"), ("better", "within noise", "within noise"), ("better", "B better", "reversed"),
    ("no better", "A better", "confirmed"), ("no better", "within noise", "confirmed"),
    ("no better", "B better", "reversed")])
def test_a_claim_against_our_comparison(claim, ours, expected):
    assert conclusion_verdict(claim, ours) == expected


def test_verdicts_of_fabricated_values():
    verdicts = {row["conclusion"]: row for row in conclusion_table(VALUES)}
    assert verdicts["batch 16 is slightly better than batch 20"]["verdict"] == "confirmed"
    b8 = verdicts["batch 8 is better than batch 16"]
    assert b8["verdict"] == "within noise" and b8["low"] < 0 < b8["high"]
    assert b8["diff"] == pytest.approx(0.04) and b8["reported_a"] == 0.52 and b8["reported_b"] == 0.46
    assert verdicts["batch 4 is better than batch 8 (8 kept: faster)"]["verdict"] == "reversed"
    assert verdicts["Dropout does not improve the BatchNorm net"]["verdict"] == "reversed"
    assert verdicts["flip augmentation brings no gain in 2 epochs"]["verdict"] == "confirmed"
    assert verdicts["Adam does not beat SGD"]["verdict"] == "confirmed"
    adagrad = verdicts["Adagrad does not beat SGD"]
    assert adagrad["verdict"] == "not enough runs" and (adagrad["n_a"], adagrad["n_b"]) == (3, 1)
    assert verdicts["widths 2-1 beat the tutorial net"]["verdict"] == "not enough runs"  # never run
    steps = {row["step"]: row for row in step_table(VALUES)}
    assert steps["bn"]["n"] == 3 and steps["bn"]["mean"] == pytest.approx(0.69) and steps["bn"]["reported"] == 0.69
    assert steps["bn"]["low"] < 0.69 < steps["bn"]["high"] and steps["wide"]["n"] == 0


def _fabricate(name: str, storage: str, values: dict[str, list[float]]) -> None:
    """Complete trials with the given test accuracies at each step's grid point, as a worker would record them."""
    study, settings = load_sweep(name, storage)
    points = [p["settings"] for p in settings[SWEEP_ATTR]["points"]]
    distributions = {"point": optuna.distributions.CategoricalDistribution(list(range(len(points)))),
                     "repeat": optuna.distributions.CategoricalDistribution(list(range(3)))}
    for step in STEPS:
        if step.settings not in points or step.long != name.endswith("-long"):
            continue
        index = points.index(step.settings)
        for repeat, accuracy in enumerate(values.get(step.key, [])):
            study.add_trial(optuna.trial.create_trial(
                params={"point": index, "repeat": repeat}, distributions=distributions, value=accuracy,
                user_attrs={"sweep_point": index, "test_accuracy": accuracy, "val_accuracy": accuracy}))


def test_the_cli_reads_fabricated_runs_from_the_two_sweeps(runs_dir, capsys):
    args = ["reproduce-study", "--data", "synthetic:100", "--scale-epochs", "0.5", "--report-only"]
    assert main([*args, "--json"]) == 0  # creates the two sweeps, trains nothing
    empty = json.loads(capsys.readouterr().out)
    assert {row["verdict"] for row in empty["conclusions"]} == {"not enough runs"}
    names = study_replay.sweep_names("study-replay")
    for name in names.values():
        _fabricate(name, default_storage(name, runs_dir), VALUES | {"bn-long": [0.73, 0.74, 0.72],
                                                                     "bn-dropout-long": [0.72, 0.74, 0.73]})
    _, short = load_sweep(names[False], default_storage(names[False], runs_dir))
    _, long = load_sweep(names[True], default_storage(names[True], runs_dir))
    assert (short["trial_epochs"], long["trial_epochs"]) == (1, 6)  # 2 and 12 epochs scaled by 0.5
    assert main([*args, "--json"]) == 0  # the same call again: finds the sweeps, creates nothing new
    result = json.loads(capsys.readouterr().out)
    verdicts = {row["conclusion"]: row["verdict"] for row in result["conclusions"]}
    assert verdicts["batch 4 is better than batch 8 (8 kept: faster)"] == "reversed"
    assert verdicts["trained longer, Dropout brings no great improvement"] == "confirmed"
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "tutorial net, batch 4 (the tutorial's)" in table and "54.0%" in table and "reversed" in table


@pytest.mark.parametrize("extra,words", [
    (["--scale-epochs", "0"], "--scale-epochs 0.0: use a positive factor"),
    (["--repeat", "0"], "--repeat 0: use 1 to"),
    (["--name", "a/b"], "search name 'a/b-short': use a plain name"),
])
def test_bad_replays_exit_2_with_one_line_and_write_nothing(runs_dir, capsys, extra, words):
    assert main(["reproduce-study", "--data", "synthetic:100", "--report-only", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (runs_dir / "searches").exists()


def test_a_replay_with_other_settings_does_not_mix_with_an_earlier_one(runs_dir, capsys):
    assert main(["reproduce-study", "--data", "synthetic:100", "--report-only", "--short-only"]) == 0
    capsys.readouterr()
    assert main(["reproduce-study", "--data", "synthetic:100", "--report-only", "--short-only", "--repeat", "2"]) == 2
    assert "exists with other settings" in capsys.readouterr().err
