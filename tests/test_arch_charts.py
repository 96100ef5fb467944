"""The Architecture page's Vega-Lite specs (explorer.ui.arch_charts): the numbers they draw."""

from __future__ import annotations

import json

import pytest

from explorer import PRESETS, model_cost
from explorer.ui.arch_charts import budget_color, budget_spec, cost_bars_spec, cost_by_block
from explorer.ui.charts import OK_COLOR, OVER_COLOR, WARN_COLOR


def test_cost_bars_have_one_bar_per_block_in_network_order():
    cost = model_cost(PRESETS["tutorial"])
    params, flops = cost_bars_spec(cost, "params"), cost_bars_spec(cost, "flops")
    rows = params["data"]["values"]
    assert [r["block"] for r in rows] == ["conv1", "conv2", "fc1", "fc2", "output"]
    assert sum(r["value"] for r in rows) == 62_006
    assert sum(r["value"] for r in flops["data"]["values"]) == 1_303_440
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert params["encoding"]["y"]["sort"] is None  # network order, not alphabetical
    json.dumps(params)  # plain JSON: Streamlit sends it as is


@pytest.mark.parametrize(("params", "color"), [(100_000, OK_COLOR), (240_000, WARN_COLOR), (267_530, OVER_COLOR)])
def test_budget_gauge_colours_the_bar_and_marks_the_budget(params, color):
    assert budget_color(params, 256_000) == color
    spec = budget_spec(params, 256_000)
    zones, bar, tick = spec["layer"]
    assert bar["data"]["values"][0]["params"] == params and bar["mark"]["color"] == color
    assert tick["data"]["values"][0]["budget"] == 256_000
    assert zones["encoding"]["x"]["scale"]["domain"][1] >= params  # the bar always fits
    assert spec["title"]["text"] == f"{params:,} params vs budget 256,000"


def test_cost_by_block_sums_conv_and_batchnorm_params():
    cost = model_cost(PRESETS["study-bn"])
    rows = {r["block"]: r for r in cost_by_block(cost)}
    assert list(rows) == ["conv1", "conv2", "fc1", "fc2", "output"]
    assert rows["conv1"]["params"] == 1_900 + 50
    assert rows["conv2"]["flops"] == 2 * 3_125_000
    assert sum(r["params"] for r in rows.values()) == 164_310
    assert sum(r["flops"] for r in rows.values()) == cost.flops
