"""The settings schema (explorer.schema): every field of every config class is declared once, and its widget,
CLI flag, JSON round trip, validation message and JSON Schema entry all derive from that declaration."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer import PRESETS, ArchConfig, ConfigError, ConvBlock, TrainConfig, schema
from explorer.cli import build_parser, main
from explorer.cli.schema import settings_schema
from explorer.cli.train import train_config_from_args
from explorer.engine.recipes import RECIPES
from explorer.schema import setting
from explorer.ui import state as arch_keys
from explorer.ui import train_state as train_keys
from explorer.ui import widgets

CLASSES = (ConvBlock, ArchConfig, TrainConfig)
ALL_SPECS = [(cls, spec) for cls in CLASSES for spec in schema.specs(cls)]
SCALAR_SPECS = [(cls, s) for cls, s in ALL_SPECS if not s.kind.startswith("list[") or s.kind == "list[str]"]
# A change to one field can need a change to another to stay valid (nll refuses label smoothing).
COMPANIONS = {"loss": {"label_smoothing": 0.0}, "alternate_flips": {"augment": ("flip",)}}
BASE_ARCH = ArchConfig(conv=(ConvBlock(8), ConvBlock(8)), fc=(16,))


def _ids(pairs: list) -> list[str]:
    return [f"{cls.__name__}.{spec.name}" for cls, spec in pairs]


def other_value(spec: schema.Spec, current: Any) -> Any:
    """A valid value of `spec` different from `current`."""
    if spec.kind == "bool":
        return not current
    if spec.kind == "list[str]":
        return tuple(spec.choices) if tuple(current) != tuple(spec.choices) else ()
    if spec.choices:
        return next(c for c in spec.choices if c != current)
    if spec.kind == "int":
        return current + 1 if current + 1 <= spec.high else current - 1
    if spec.kind == "float":
        value = spec.low + (min(spec.high, spec.low + 1.0) - spec.low) / 2
        return value if value != current else spec.low
    if spec.kind == "list[int]":
        return (spec.low + 9,) if tuple(current) != (spec.low + 9,) else ()
    assert spec.kind == "list[nested]"
    return (*current, current[-1])


def changed(obj: Any, name: str) -> Any:
    spec = schema.spec_of(type(obj), name)
    return dataclasses.replace(obj, **{name: other_value(spec, getattr(obj, name))} | COMPANIONS.get(name, {}))


def bad_value(spec: schema.Spec) -> Any:
    if spec.kind == "bool":
        return "yes"
    if spec.choices:
        return ["bogus"] if spec.kind == "list[str]" else "bogus"
    if spec.kind == "list[int]":
        return [spec.high + 1]
    if spec.kind == "list[nested]":
        return []
    return spec.high + 1


# --- the declarations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "spec"), ALL_SPECS, ids=_ids(ALL_SPECS))
def test_every_field_is_fully_declared(cls: type, spec: schema.Spec) -> None:
    assert spec.label and spec.kind in schema.KINDS and spec.scale in ("linear", "log")
    if spec.kind in ("int", "float", "list[int]") and not spec.choices:
        assert spec.low is not None and spec.high is not None and spec.low <= spec.high
        assert spec.step is not None and spec.step > 0
    if spec.kind == "str":
        assert spec.choices, "a text setting must list its choices"
    if spec.choices:
        assert set(spec.labels) <= set(spec.choices)
    if spec.scale == "log":
        assert spec.low > 0
    if not spec.required:
        schema.check_value(spec, spec.default)  # the default obeys its own declaration


def test_the_classes_keep_their_field_names_and_defaults() -> None:
    # Run records and checkpoints on disk hold these names: renaming one breaks every stored run.
    assert schema.names(ConvBlock) == ("out_channels", "kernel", "padding", "stride", "pool", "residual", "block",
                                       "groups", "dilation", "expand", "se", "norm")
    assert schema.names(ArchConfig) == ("conv", "fc", "batchnorm", "dropout", "dropout_conv", "activation",
                                        "pool_first", "head")
    assert TrainConfig().to_dict() == {
        "epochs": 2, "batch_size": 128, "test_batch_size": 1000, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
        "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0.0, "whiten": False, "dirac_init": False,
        "bn_frozen_scale": False, "bn_bias_lr": 1.0, "loss": "cross_entropy", "label_smoothing": 0.0,
        "augment": [], "alternate_flips": False, "crop_padding": 4, "rotate": 0.0, "color_jitter": 0.0,
        "sharpen": 0.0, "cutout": 0, "mixup": 0.0, "cutmix": 0.0, "mix_ramp_epochs": 0, "normalization": "dataset",
        "ema": 0.0,
        "tta_flip": False, "tta_translate": 0, "seed": 0, "device": "auto", "precision": "auto", "log_every": 50}
    assert ConvBlock(8) == ConvBlock(out_channels=8, kernel=3, padding="same", stride=1, pool="none", residual=False,
                                     block="plain", groups=1, dilation=1, expand=4, se=0.0, norm="auto")


def test_a_field_declared_without_setting_is_refused() -> None:
    @dataclass(frozen=True)
    class Loose:
        width: int = 3

    with pytest.raises(TypeError, match=r"Loose.width is not declared with explorer.schema.setting"):
        schema.specs(Loose)


def test_a_new_field_is_one_declaration() -> None:
    """A toy class with one `setting(...)` line gets validation, a flag, a widget and a JSON Schema entry."""

    @dataclass(frozen=True)
    class Toy:
        width: int = setting(4, label="Width", low=1, high=8, step=1, help="how wide")

        def __post_init__(self) -> None:
            schema.check(self)

    with pytest.raises(ConfigError, match=r"^width: 9 is out of range; use a value from 1 to 8\.$"):
        Toy(9)
    parser = build_parser().__class__(prog="toy")
    schema.add_arguments(parser, Toy)
    assert schema.values_from_args(parser.parse_args(["--width", "6"]), Toy) == {"width": 6}
    assert schema.to_cli_args(Toy(6)) == ["--width", "6"]
    # The limits are checked on the server (widgets.refusal), not in the browser: see test_number_boxes.
    assert widgets.widget_call(schema.spec_of(Toy, "width")) == (
        "number_input", {"label": "Width", "help": "how wide", "value": None, "step": 1.0, "format": "%.0f"})
    assert widgets.refusal(schema.spec_of(Toy, "width"), 9) == \
        "Width: 9 is out of range; enter a whole number from 1 to 8."
    assert widgets.refusal(schema.spec_of(Toy, "width"), 2.5) == \
        "Width: 2.5 is not a whole number; enter a whole number from 1 to 8."
    assert schema.json_schema(Toy)["properties"]["width"] | {"minimum": 1, "maximum": 8, "default": 4} == \
        schema.json_schema(Toy)["properties"]["width"]


# --- widgets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "spec"), SCALAR_SPECS, ids=_ids(SCALAR_SPECS))
def test_every_scalar_field_has_a_widget_with_the_schema_limits(cls: type, spec: schema.Spec) -> None:
    name, args = widgets.widget_call(spec)
    assert callable(getattr(st, name)) and args["label"] == spec.label
    if spec.choices:
        assert args["options"] == list(spec.choices)
        assert [args["format_func"](c) for c in spec.choices] == [spec.label_of(c) for c in spec.choices]
    elif spec.kind in ("int", "float") and name == "number_input":
        # No limits in the browser: every typed value reaches the server, which refuses with a message
        # (widgets.refusal). Every box is a float box in the browser, so "2.5" reaches the server as typed;
        # whole-number boxes show no decimals (number_input turns the browser's 5.0 back into 5).
        assert "min_value" not in args and args["value"] is None and type(args["step"]) is float
        assert args.get("format") == (spec.fmt or "%.0f" if spec.kind == "int" else spec.fmt)
        assert widgets.refusal(spec, spec.low) is None and widgets.refusal(spec, spec.high) is None
        assert widgets.refusal(spec, spec.low - 1).endswith(f"from {schema.describe(spec)}.")
    elif spec.kind in ("int", "float"):
        # A slider cannot take a value outside its limits: it gets them, in the field's type.
        wanted = int if spec.kind == "int" else float
        assert (args["min_value"], args["max_value"]) == (spec.low, spec.high)
        assert {type(args[k]) for k in ("min_value", "max_value", "step")} == {wanted}
    else:
        assert spec.kind == "bool" and name in ("checkbox", "toggle")


def test_list_fields_have_a_count_and_item_widgets() -> None:
    fc = schema.spec_of(ArchConfig, "fc")
    name, args = widgets.item_call(fc, 2)
    assert (name, args["label"]) == ("number_input", "fc2 units")
    assert widgets.refusal(widgets.item_spec(fc, 2), 5000) == \
        "fc2 units: 5000 is out of range; enter a whole number from 1 to 4096."
    conv = schema.spec_of(ArchConfig, "conv")
    assert (conv.min_items, conv.max_items) == (1, arch_keys.MAX_CONV_BLOCKS) == (1, 12)
    assert arch_keys.MAX_FC_LAYERS == fc.max_items == 4


def test_ui_state_keys_derive_from_the_schema() -> None:
    assert arch_keys.BLOCK_FIELDS == schema.names(ConvBlock)
    assert set(arch_keys.GLOBAL_FIELDS) == set(schema.names(ArchConfig)) - {"conv", "fc"}
    # The sidebar draws each global field in its group: one without a known group would be invisible.
    assert {schema.spec_of(ArchConfig, n).group for n in arch_keys.GLOBAL_FIELDS} <= {"layers", "classifier"}
    assert train_keys.FIELDS == schema.names(TrainConfig)
    assert train_keys.FLOAT_FIELDS == {"lr", "momentum", "weight_decay", "warmup_epochs", "bn_bias_lr",
                                      "label_smoothing", "ema", "rotate", "color_jitter", "sharpen", "mixup",
                                      "cutmix"}
    for cfg in PRESETS.values():
        assert arch_keys.arch_from_values(arch_keys.arch_to_values(cfg)) == cfg
    for cfg in RECIPES.values():
        values = train_keys.train_to_values(cfg)
        assert train_keys.train_from_values(values) == cfg
        assert isinstance(values[train_keys.key("lr")], float) and isinstance(values[train_keys.key("epochs")], int)


def _draw_every_setting() -> None:
    from explorer import ArchConfig, ConvBlock, TrainConfig, schema
    from explorer.ui import widgets

    for cls in (ConvBlock, ArchConfig, TrainConfig):
        for spec in schema.specs(cls):
            if spec.kind == "list[int]":
                widgets.draw_item(cls, spec.name, 1, f"{cls.__name__}.{spec.name}")
            elif spec.kind != "list[nested]":
                widgets.draw(cls, spec.name, f"{cls.__name__}.{spec.name}")


def test_drawn_widgets_carry_the_schema_limits_help_and_labels() -> None:
    at = AppTest.from_function(_draw_every_setting).run()
    assert not at.exception
    for cls, spec in ALL_SPECS:
        key = f"{cls.__name__}.{spec.name}"
        if spec.kind in ("int", "float", "list[int]") and not spec.choices and spec.widget is None:
            widget = at.number_input(key=key)
            # The limits live on the server (every typed value reaches it, see test_number_boxes): none in the
            # browser, and the box starts at the low end as Streamlit's own default did.
            assert not (widget.proto.has_min or widget.proto.has_max) and widget.step == spec.step
            assert widget.value == spec.low
            # An item of a list (fc2 units) has no help of its own: the list's help describes all of them.
            assert widget.help == ("" if spec.kind == "list[int]" else spec.help)
            assert isinstance(widget.value, int if spec.kind != "float" else float)
        elif spec.kind == "str" and spec.widget is None:
            assert at.selectbox(key=key).options == [spec.label_of(c) for c in spec.choices]
    assert (at.slider(key="ArchConfig.dropout").min, at.slider(key="ArchConfig.dropout").max) == (0.0, 0.9)


# --- JSON round trip -------------------------------------------------------------------------------------------


def _arch_with(cls: type, name: str) -> ArchConfig:
    """BASE_ARCH with field `name` of ArchConfig, or of its second conv block, changed."""
    if cls is ArchConfig:
        return changed(BASE_ARCH, name)
    return dataclasses.replace(BASE_ARCH, conv=(BASE_ARCH.conv[0], changed(BASE_ARCH.conv[1], name)))


ARCH_SPECS = [(c, s) for c, s in ALL_SPECS if c is not TrainConfig]
TRAIN_SPECS = [(c, s) for c, s in ALL_SPECS if c is TrainConfig]


@pytest.mark.parametrize(("cls", "spec"), ARCH_SPECS, ids=_ids(ARCH_SPECS))
def test_every_arch_field_round_trips_through_json(cls: type, spec: schema.Spec) -> None:
    cfg = _arch_with(cls, spec.name)
    assert cfg != BASE_ARCH
    assert ArchConfig.from_json(json.dumps(json.loads(cfg.to_json()))) == cfg


@pytest.mark.parametrize(("cls", "spec"), TRAIN_SPECS, ids=_ids(TRAIN_SPECS))
def test_every_train_field_round_trips_through_json(cls: type, spec: schema.Spec) -> None:
    cfg = changed(TrainConfig(), spec.name)
    assert cfg != TrainConfig()
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# --- command line --------------------------------------------------------------------------------------------


def _train_args(*flags: str, recipe: str = "fast") -> TrainConfig:
    args = build_parser().parse_args(["train", "--preset", "fast", "--data", "synthetic", "--recipe", recipe,
                                      *flags])
    return train_config_from_args(args)[0]


@pytest.mark.parametrize(("cls", "spec"), TRAIN_SPECS, ids=_ids(TRAIN_SPECS))
def test_every_train_field_has_a_flag_that_reproduces_it(cls: type, spec: schema.Spec) -> None:
    base = RECIPES["fast"]
    cfg = changed(base, spec.name)
    flags = schema.to_cli_args(cfg, base)
    assert spec.flag in flags or f"--no-{spec.flag[2:]}" in flags
    assert _train_args(*flags) == cfg


def test_to_cli_args_lists_only_what_differs() -> None:
    cfg = TrainConfig(epochs=4, augment=("flip", "crop"), tta_flip=True)
    assert schema.to_cli_args(cfg) == ["--epochs", "4", "--augment", "flip,crop", "--tta-flip"]
    assert schema.to_cli_args(TrainConfig(), base=cfg) == ["--epochs", "2", "--augment", "none", "--no-tta-flip"]
    assert schema.to_cli_args(RECIPES["best"], base=RECIPES["best"]) == []
    everything = TrainConfig(epochs=3, batch_size=64, test_batch_size=500, optimizer="adamw", lr=3e-4,
                             momentum=0.85, weight_decay=5e-5, schedule="cosine", warmup_epochs=0.5, loss="nll",
                             augment=("crop",), crop_padding=2, normalization="half", ema=0.999, tta_flip=True,
                             seed=7, device="cpu", precision="fp32", log_every=5)
    assert _train_args(*schema.to_cli_args(everything, RECIPES["study"]), recipe="study") == everything


def test_tta_stays_an_alias_of_tta_flip() -> None:
    assert _train_args("--tta", recipe="study").tta_flip is True
    assert _train_args("--no-tta").tta_flip is False
    assert _train_args("--no-tta-flip").tta_flip is False


@pytest.mark.parametrize(("cls", "spec"), ARCH_SPECS, ids=_ids(ARCH_SPECS))
def test_every_arch_field_goes_through_the_arch_flag(cls: type, spec: schema.Spec, capsys) -> None:
    cfg = _arch_with(cls, spec.name)
    assert main(["stats", "--arch", json.dumps(cfg.to_dict()), "--json"]) == 0
    assert ArchConfig.from_dict(json.loads(capsys.readouterr().out)["config"]) == cfg


# --- bad values through every path -----------------------------------------------------------------------------

RANGED = [(c, s) for c, s in TRAIN_SPECS if s.kind != "bool"]


@pytest.mark.parametrize(("cls", "spec"), RANGED, ids=_ids(RANGED))
def test_a_bad_flag_exits_2_with_one_line_naming_the_field(cls: type, spec: schema.Spec, capsys) -> None:
    bad = bad_value(spec)
    text = ",".join(map(str, bad)) if isinstance(bad, list) else str(bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "fast", "--data", "synthetic", spec.flag, text])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"argument {spec.flag}" in lines[0] and f"{spec.name}: " in lines[0]
    allowed = (f"choose one of {', '.join(map(str, spec.choices))}" if spec.choices
               else f"use a value from {schema.value_range(spec)}")
    assert lines[0].endswith(allowed + ".")


def test_a_flag_that_is_not_a_number_is_named(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--preset", "fast", "--data", "synthetic", "--epochs", "many"])
    assert "argument --epochs: epochs: expected a whole number, got 'many'." in capsys.readouterr().err


@pytest.mark.parametrize(("cls", "spec"), ALL_SPECS, ids=_ids(ALL_SPECS))
def test_from_dict_names_the_field_and_what_is_allowed(cls: type, spec: schema.Spec) -> None:
    if cls is TrainConfig:
        data, where = TrainConfig().to_dict() | {spec.name: bad_value(spec)}, spec.name
        build = TrainConfig.from_dict
    else:
        data = BASE_ARCH.to_dict()
        where = spec.name if cls is ArchConfig else f"conv2 {spec.name}"
        target = data if cls is ArchConfig else data["conv"][1]
        target[spec.name] = bad_value(spec)
        build = ArchConfig.from_dict
    with pytest.raises(ConfigError) as err:
        build(data)
    message = str(err.value)
    assert message.startswith(where) or message.startswith(spec.item_label.format(i=1))
    if spec.kind == "list[nested]":
        allowed = f"use {spec.min_items} to {spec.max_items}"
    else:
        allowed = {"bool": "true or false"}.get(spec.kind) or (
            ", ".join(map(str, spec.choices)) if spec.choices else schema.value_range(spec))
    assert allowed in message


def test_a_bad_arch_flag_exits_2_with_one_line(capsys) -> None:
    assert main(["stats", "--arch", '{"conv": [{"out_channels": 8}], "dropout": 2}']) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: dropout: 2 is out of range; use a value from 0 to 0.9."]
    assert main(["stats", "--arch", "{oops"]) == 2
    assert "architecture JSON is not valid JSON" in capsys.readouterr().err


def test_cross_field_checks_name_both_fields() -> None:
    with pytest.raises(ConfigError, match=r"^warmup_epochs: 3 is more than epochs \(2\)"):
        TrainConfig(warmup_epochs=3.0)
    assert TrainConfig(epochs=3, warmup_epochs=3.0).warmup_epochs == 3.0
    with pytest.raises(ConfigError, match="label_smoothing needs the cross_entropy loss"):
        TrainConfig(loss="nll", label_smoothing=0.1)
    with pytest.raises(ConfigError, match="augment: flip, flip names one augmentation twice"):
        TrainConfig(augment=("flip", "flip"))
    with pytest.raises(ConfigError, match=r"conv2: a residual block must keep the shape.*padding 'valid'"):
        ArchConfig(conv=(ConvBlock(8), ConvBlock(8, padding="valid", residual=True)))
    with pytest.raises(ConfigError, match=r"^conv block stride: True is not allowed; choose one of 1, 2\.$"):
        ConvBlock(8, stride=True)


# --- JSON Schema ----------------------------------------------------------------------------------------------


def test_schema_command_prints_a_json_schema_with_every_field(capsys) -> None:
    assert main(["schema", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(json.dumps(settings_schema()))
    jsonschema.Draft202012Validator.check_schema(document)
    for cls, spec in ALL_SPECS:
        prop = document["$defs"][cls.__name__]["properties"][spec.name]
        assert prop["title"] == spec.label and prop["x-scale"] == spec.scale
        assert ("default" in prop) != spec.required
        if cls is TrainConfig:
            assert prop["x-flag"] == spec.flag
    assert document["$defs"]["TrainConfig"]["properties"]["lr"] | {"minimum": 1e-8, "maximum": 100.0} == \
        document["$defs"]["TrainConfig"]["properties"]["lr"]
    assert document["$defs"]["ArchConfig"]["properties"]["activation"]["x-labels"]["gelu"] == "GELU"


def test_json_schema_accepts_every_preset_and_recipe_and_refuses_bad_values() -> None:
    validator = jsonschema.Draft202012Validator(settings_schema())
    for arch in PRESETS.values():
        for recipe in RECIPES.values():
            validator.validate({"arch": arch.to_dict(), "train": recipe.to_dict()})
    bad_block = PRESETS["tutorial"].to_dict()
    bad_block["conv"][0]["kernel"] = 4
    for bad in ({"arch": bad_block}, {"train": {"lr": 0}}, {"train": {"epoch": 3}},
                {"train": {"augment": ["flip", "flip"]}}, {"arch": {"fc": [10]}}):
        assert not validator.is_valid(bad), bad


def test_schema_table_lists_every_field(capsys) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    for _cls, spec in ALL_SPECS:
        assert f"  {spec.name} " in out
    assert "--label-smoothing" in out and "one of sgd, nesterov, adam, adamw, adagrad" in out


@pytest.mark.parametrize("field, value, shown", [
    ("fc", None, "expected a list, got null."),
    ("fc", "x", 'expected a list, got "x".'),
    ("batchnorm", None, "expected true or false, got null."),
])
def test_a_refused_value_is_written_as_json_not_as_a_python_type(field, value, shown) -> None:
    # A link or the search page's JSON box said "got NoneType None": the user wrote null.
    from explorer.arch.config import ArchConfig

    with pytest.raises(ConfigError) as refused:
        ArchConfig.from_dict({"conv": [{"out_channels": 8}], field: value})
    assert str(refused.value).endswith(shown) and "NoneType" not in str(refused.value)
