"""ArchConfig / TrainConfig validation, JSON round trip, and the messages users see."""

import json

import pytest

from explorer import PRESETS, ArchConfig, ConfigError, ConvBlock, TrainConfig, build_model
from explorer.arch.config import layer_shapes


def test_json_round_trip_keeps_every_preset() -> None:
    for cfg in PRESETS.values():
        assert ArchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        assert ArchConfig.from_json(cfg.to_json()) == cfg


def test_unknown_key_is_named_with_the_valid_ones() -> None:
    data = PRESETS["tutorial"].to_dict() | {"widht": 3}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) widht; valid keys are .*batchnorm"):
        ArchConfig.from_dict(data)


def test_unknown_block_key_names_the_block() -> None:
    data = PRESETS["tutorial"].to_dict()
    data["conv"][1]["chanels"] = 3
    with pytest.raises(ConfigError, match="conv2: unknown key"):
        ArchConfig.from_dict(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"out_channels": 0}, r"conv1 out_channels: 0 is out of range; use a value from 1 to 1024"),
        ({"out_channels": 2000}, r"conv1 out_channels: 2000 is out of range"),
        ({"out_channels": "32"}, r"conv1 out_channels: expected a whole number, got \"32\""),
        ({"kernel": 4}, r"conv1 kernel: 4 is not allowed; choose one of 1, 3, 5, 7"),
        ({"pool": "median"}, r"conv1 pool: 'median' is not allowed"),
    ],
)
def test_block_values_out_of_range_are_named(change: dict, message: str) -> None:
    data = PRESETS["tutorial"].to_dict()
    data["conv"][0] |= change
    with pytest.raises(ConfigError, match=message):
        ArchConfig.from_dict(data)


def test_wrong_types_and_ranges_of_globals() -> None:
    base = PRESETS["tutorial"].to_dict()
    with pytest.raises(ConfigError, match="batchnorm: expected true or false"):
        ArchConfig.from_dict(base | {"batchnorm": "yes"})
    with pytest.raises(ConfigError, match="fc2 units: 5000 is out of range"):
        ArchConfig.from_dict(base | {"fc": [10, 5000]})
    with pytest.raises(ConfigError, match="fc: 5 hidden layers"):
        ArchConfig.from_dict(base | {"fc": [10] * 5})
    with pytest.raises(ConfigError, match="conv: 13 blocks"):
        ArchConfig.from_dict(base | {"conv": [{"out_channels": 4, "padding": "same"}] * 13})
    with pytest.raises(ConfigError, match="not valid JSON"):
        ArchConfig.from_json("{conv: ")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        ArchConfig.from_dict([1, 2])


def test_feature_map_smaller_than_kernel_names_layer_shapes_and_fix() -> None:
    cfg = PRESETS["tutorial"]
    with pytest.raises(ConfigError, match=r"conv2: the 4x4 feature map is smaller than its 5x5 kernel "
                                          r"\(input 12x12\)\. Use padding 'same'"):
        cfg.validate((3, 12, 12))


def test_pooling_to_zero_is_refused() -> None:
    cfg = ArchConfig(conv=(ConvBlock(8, pool="max"), ConvBlock(8, pool="max")))
    with pytest.raises(ConfigError, match=r"conv2: max-pooling a 1x1 map leaves nothing"):
        cfg.validate((3, 2, 2))


def test_residual_needs_same_width_and_shape() -> None:
    with pytest.raises(ConfigError, match=r"conv2: a residual block needs as many input as output channels \(8 in, 16"):
        ArchConfig(conv=(ConvBlock(8), ConvBlock(16, residual=True)))
    with pytest.raises(ConfigError, match="conv2: a residual block must keep the shape"):
        ArchConfig(conv=(ConvBlock(8), ConvBlock(8, stride=2, residual=True)))


def test_tutorial_adapts_to_a_28x28_grayscale_input() -> None:
    import torch

    cfg = PRESETS["tutorial"]
    # 28 -> conv 24 -> pool 12 -> conv 8 -> pool 4: flatten 16*4*4 = 256 features.
    assert layer_shapes(cfg, (1, 28, 28))[-1].out_shape == (16, 4, 4)
    model = build_model(cfg, (1, 28, 28), num_classes=7)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert model.classifier[0].in_features == 256


def test_bad_input_shape_and_classes() -> None:
    with pytest.raises(ConfigError, match="input shape"):
        PRESETS["tutorial"].validate((3, 32))
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(PRESETS["tutorial"], (3, 32, 32), num_classes=1)


def test_scaled_keeps_residual_widths_equal() -> None:
    cfg = PRESETS["best"].scaled(0.37)
    for prev, block in zip(cfg.conv, cfg.conv[1:]):
        if block.residual:
            assert block.out_channels == prev.out_channels


def test_train_config_validation_and_round_trip() -> None:
    cfg = TrainConfig(epochs=3, augment=["flip", "crop"], optimizer="adamw")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="optimizer: 'rmsprop' is not allowed"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="augment: 'rotate' is not allowed"):
        TrainConfig(augment=("rotate",))
    with pytest.raises(ConfigError, match="lr: 0 is out of range"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"epoch": 3})
    assert cfg.replace(lr=None, epochs=5).epochs == 5
