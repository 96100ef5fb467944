"""Search spaces: derived from the schema, refused with one line naming the field, sampled into valid configs."""

from __future__ import annotations

import copy

import optuna
import pytest

from explorer.arch.config import ArchConfig
from explorer.arch.presets import PRESETS
from explorer.errors import ConfigError
from explorer.search.space import check_space, load_space, sample, space_around

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = {"recipe": "fast",
        "arch": {"depth": {"low": 1, "high": 2}, "width": {"low": 4, "high": 8}, "pool": "max", "head": "avgpool"},
        "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 64, "augment": [],
                  "tta_flip": False}}


def _asked(space: dict, n: int = 20, seed: int = 0) -> list:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        try:
            out.append(sample(trial, space, epochs=3))
        except ConfigError as err:
            out.append(err)
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_space_around_every_preset_is_valid_and_samples_build(preset):
    space = space_around(preset)
    assert check_space(space) is space
    samples = _asked(space, 15)
    built = [s for s in samples if not isinstance(s, ConfigError)]
    assert len(built) >= 5  # most samples around a preset are networks that can be built
    for arch, cfg in built:
        assert 1 <= len(arch.conv) <= 8 and cfg.epochs == 3
        for block, previous in zip(arch.conv[1:], arch.conv):
            assert not block.residual or block.out_channels == previous.out_channels


def test_space_around_fast_centres_on_the_preset():
    space = space_around("fast")
    assert space["arch"]["widths"] == [26, 52, 103, 206]
    assert space["arch"]["depth"] == {"low": 3, "high": 6}
    assert space["recipe"] == "fast" and space["train"]["lr"]["low"] == pytest.approx(0.05)
    assert [] in space["train"]["augment"]["choices"] and ["flip", "crop"] in space["train"]["augment"]["choices"]


def test_a_fixed_space_samples_exactly_the_preset():
    preset = PRESETS["fast"]
    fixed = {"arch": {"widths": [b.out_channels for b in preset.conv], "pool": "max", "kernel": 3,
                      "batchnorm": True, "activation": "gelu", "head": "maxpool"},
             "train": {"lr": 0.123, "augment": ["flip"]}}
    (arch, cfg), = _asked(fixed, 1)
    assert arch == ArchConfig(conv=preset.conv[:3] + (preset.conv[3].__class__(206, pool="max"),),
                              batchnorm=True, activation="gelu", head="maxpool")
    assert cfg.lr == 0.123 and cfg.augment == ("flip",) and cfg.optimizer == "nesterov"  # the rest from "fast"


def test_list_choices_go_through_optuna_and_come_back_as_tuples():
    space = copy.deepcopy(TINY)
    space["train"]["augment"] = {"choices": [[], ["flip", "crop"]]}
    seen = {cfg.augment for arch, cfg in _asked(space, 20)}
    assert seen == {(), ("flip", "crop")}


def test_width_multiplier_scales_the_widths_and_repeats_the_last_for_deeper_nets():
    space = {"arch": {"depth": 4, "widths": [10, 20], "width_multiplier": 2.0}}
    (arch, _), = _asked(space, 1)
    assert [b.out_channels for b in arch.conv] == [20, 40, 40, 40]


@pytest.mark.parametrize("change, words", [
    (lambda s: s["arch"].update(depht=3), "space arch.depht: unknown field"),
    (lambda s: s["train"].update(epochs=3), "space train.epochs: unknown field (set by --trial-epochs"),
    (lambda s: s["arch"].update(depth={"low": 5, "high": 2}), "space arch.depth: empty range (low 5 > high 2)"),
    (lambda s: s["arch"].update(depth={"low": 1, "high": 9}), "space arch.depth: 9 is out of range"),
    (lambda s: s["train"].update(lr={"low": 0, "high": 1}), "space train.lr: 0 is out of range"),
    (lambda s: s["arch"].update(dropout={"low": 0, "high": 0.5, "log": True}),
     "space arch.dropout: a log range needs low > 0"),
    (lambda s: s["train"].update(label_smoothing={"low": 0, "high": 0.9}), "space train.label_smoothing: 0.9 is out"),
    (lambda s: s["arch"].update(kernel={"choices": []}), "space arch.kernel: choices must be a non-empty list"),
    (lambda s: s["arch"].update(kernel={"choices": [3, 4]}), "space arch.kernel: 4 is not allowed"),
    (lambda s: s["arch"].update(activation={"low": 1, "high": 2}), "space arch.activation: a range needs a numeric"),
    (lambda s: s["arch"].update(width={"low": 4}), "space arch.width: a range needs both low and high"),
    (lambda s: s["arch"].update(widths=[8, 16]), "space arch.width: give either width"),
    (lambda s: s.update(recipe="nope"), "space recipe: 'nope' is not a recipe"),
    (lambda s: s.update(extra=1), "space: unknown key(s) extra"),
])
def test_a_bad_space_is_refused_with_one_line_naming_the_field(change, words):
    space = copy.deepcopy(TINY)
    change(space)
    with pytest.raises(ConfigError) as err:
        check_space(space)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_load_space_refuses_bad_json_and_unknown_presets():
    with pytest.raises(ConfigError, match="space.json is not valid JSON"):
        load_space("{", "space.json")
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        space_around("nope")
