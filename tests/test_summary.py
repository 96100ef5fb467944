"""torchinfo wrapper: rows, totals, and agreement with the analytic cost model."""

from __future__ import annotations

import pytest

from explorer import PRESETS, ArchConfig, ConvBlock, model_cost
from explorer.arch.summary import COLUMNS, torchinfo_summary
from explorer.errors import ConfigError


def test_tutorial_net_matches_the_test_vectors():
    summary = torchinfo_summary(PRESETS["tutorial"])
    assert summary.total_params == 62_006
    assert summary.trainable_params == 62_006
    assert summary.mult_adds == 658_238
    assert list(summary.rows.columns) == COLUMNS
    conv1 = summary.rows.iloc[0]
    assert (conv1["layer"], conv1["type"], conv1["output shape"]) == ("features.0.conv", "Conv2d", "6 × 28 × 28")
    assert (conv1["params"], conv1["mult-adds"]) == (456, 456 * 28 * 28)
    # One image: the batch dimension never shows up, and Identity placeholders are left out.
    assert "Identity" not in set(summary.rows["type"])
    assert summary.rows["params"].sum() == 62_006


def test_batchnorm_rows_count_two_c_mult_adds():
    summary = torchinfo_summary(PRESETS["study-bn"])
    bn = summary.rows[summary.rows["layer"] == "features.1.bn"].iloc[0]
    assert (bn["type"], bn["params"], bn["mult-adds"]) == ("BatchNorm2d", 100, 100)
    assert summary.total_params == 164_310


@pytest.mark.parametrize("name", ["tutorial", "study-wide", "study-bn", "modern"])
def test_agrees_with_the_cost_model(name):
    cfg = PRESETS[name]
    summary = torchinfo_summary(cfg)
    cost = model_cost(cfg)
    assert summary.total_params == cost.params
    assert summary.mult_adds == cost.torchinfo_mult_adds


def test_input_shape_and_classes_follow_the_arguments():
    summary = torchinfo_summary(PRESETS["tutorial"], (1, 28, 28), num_classes=5)
    assert summary.rows.iloc[-1]["output shape"] == "5"
    assert summary.rows.iloc[0]["output shape"] == "6 × 24 × 24"
    assert summary.total_params == model_cost(PRESETS["tutorial"], (1, 28, 28), 5).params


def test_impossible_config_raises_config_error():
    cfg = ArchConfig(conv=tuple(ConvBlock(8, kernel=5, padding="valid") for _ in range(8)))
    with pytest.raises(ConfigError, match="conv"):
        torchinfo_summary(cfg)
