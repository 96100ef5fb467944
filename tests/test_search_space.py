"""Search spaces: derived from the schema, refused with one line naming the field, sampled into valid configs."""

from __future__ import annotations

import copy
import json

import optuna
import pytest

from explorer.arch.config import MAX_CONV_BLOCKS, ArchConfig
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
        assert 1 <= len(arch.conv) <= MAX_CONV_BLOCKS and cfg.epochs == 3
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
    (lambda s: s["arch"].update(depth={"low": 1, "high": 13}), "space arch.depth: 13 is out of range"),
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


# ------------------------------------------------------------------------------------------- from the schema


def _declared_searchable(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls) if f.metadata["spec"].searchable}


def test_the_space_holds_exactly_the_fields_the_schema_declares_searchable():
    from explorer.arch.config import ConvBlock
    from explorer.engine.config import TrainConfig
    from explorer.search.space import BLOCK_FIELDS, KNOBS, section_specs

    assert set(BLOCK_FIELDS) == _declared_searchable(ConvBlock) and "out_channels" not in BLOCK_FIELDS
    assert set(section_specs("arch")) == set(KNOBS) | _declared_searchable(ConvBlock) | \
        _declared_searchable(ArchConfig)
    assert set(section_specs("train")) == _declared_searchable(TrainConfig)
    assert {"epochs", "seed", "device"}.isdisjoint(section_specs("train"))
    with pytest.raises(ConfigError, match="space train.epochs: unknown field"):
        check_space(copy.deepcopy(TINY) | {"train": {"epochs": 3}})


def test_every_searchable_field_is_accepted_and_sampled_at_its_value():
    """Each searchable field, fixed at a value other than its default, reaches the sampled config: a field marked
    searchable=True is in the space with nothing else to write."""
    from explorer.arch.config import ConvBlock
    from explorer.engine.config import TrainConfig
    from explorer.schema import searchable_specs

    def other(spec):
        if spec.kind == "bool":
            return not spec.default
        if spec.kind == "list[str]":
            return list(spec.choices[:1])
        if spec.choices:
            return next(c for c in spec.choices if c != spec.default)
        return min(spec.search_span[1], spec.default + 0.5) if spec.kind == "float" else \
            int(min(spec.high, spec.default + 1))

    for cls, section in ((ConvBlock, "arch"), (ArchConfig, "arch"), (TrainConfig, "train")):
        for spec in searchable_specs(cls):
            space = copy.deepcopy(TINY)
            space[section] = {**space[section], spec.name: other(spec)}
            space["arch"]["depth"] = 2  # block 2: a residual skip is never sampled on block 1
            check_space(space)
            trial = optuna.create_study().ask()
            try:
                arch, train = sample(trial, space)
            except ConfigError:
                continue  # a combination the config itself refuses (e.g. label smoothing with the NLL loss)
            got = getattr(train if section == "train" else (arch.conv[-1] if cls is ConvBlock else arch), spec.name)
            wanted = other(spec)
            assert (list(got) if isinstance(got, tuple) else got) == wanted, spec.name


def test_a_search_range_narrower_than_the_limits_is_declared_once_and_used():
    from explorer.engine.config import TrainConfig
    from explorer.schema import setting, spec_of, specs

    assert spec_of(ArchConfig, "dropout").search_span == (0.0, 0.3) and spec_of(ArchConfig, "dropout").high == 0.9
    assert space_around("fast")["arch"]["dropout"] == {"low": 0.0, "high": 0.3}
    assert space_around("fast")["train"]["label_smoothing"] == {"low": 0.0, "high": 0.3}
    assert spec_of(TrainConfig, "lr").search_span == (1e-8, 100.0)  # no search_range: the limits
    from explorer.schema import json_schema

    dropout = json_schema(ArchConfig)["properties"]["dropout"]
    assert dropout["x-searchable"] is True and dropout["x-search-range"] == [0.0, 0.3]
    assert "x-searchable" not in json_schema(TrainConfig)["properties"]["epochs"]

    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Bad:
        x: float = setting(0.0, label="x", low=0.0, high=1.0, searchable=True, search_range=(0.0, 2.0))

    with pytest.raises(TypeError, match="search_range"):
        specs(Bad)


def test_space_around_keeps_the_files_it_wrote_before():
    """`search space --preset fast` as it was before the schema flag (a file users keep): it still loads, and the
    flag-derived space_around writes it unchanged."""
    before = {"recipe": "fast",
              "arch": {"depth": {"low": 3, "high": 6}, "widths": [26, 52, 103, 206],
                       "width_multiplier": {"low": 0.5, "high": 1.5}, "kernel": {"choices": [3, 5]},
                       "padding": "same", "pool": {"choices": ["none", "max"]}, "residual": {"choices": [False, True]},
                       "batchnorm": True, "pool_first": {"choices": [False, True]},
                       "dropout": {"low": 0.0, "high": 0.3},
                       "activation": {"choices": ["gelu", "relu"]}, "head": {"choices": ["avgpool", "maxpool"]},
                       "fc_layers": {"low": 0, "high": 1}, "fc_units": {"low": 32, "high": 256, "log": True}}}
    now = space_around("fast")
    assert load_space(json.dumps(before | {"train": now["train"]}))
    assert {k: now["arch"][k] for k in before["arch"]} == before["arch"]


def test_docs_list_the_searchable_fields_as_the_schema_declares_them():
    from pathlib import Path

    from explorer.search.space import fields_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "search.md").read_text()
    listed = docs.split("<!-- fields_table: begin -->\n", 1)[1].split("\n<!-- fields_table: end -->", 1)[0]
    assert listed == fields_table()
    assert "| arch | `pool_first` |" in listed and "`epochs`" not in listed
