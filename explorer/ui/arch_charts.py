"""The Architecture page's charts as Vega-Lite specs (plain dicts, no Streamlit).

Why not Plotly, like the training charts: the Architecture page reruns on every slider move, and in the
browser a Plotly figure costs about 60 ms of main-thread time per rerun (redrawn even when unchanged) and its
4.7 MB script about 0.7 s at first render; a small Vega-Lite chart costs a fraction of that. The numbers are
the architecture's cost per block.
"""

from __future__ import annotations

from explorer.arch.cost import ModelCost
from explorer.ui.charts import OK_COLOR, OVER_COLOR, TEST_COLOR, TRAIN_COLOR, WARN_COLOR

BAR_STEP = 24  # pixels per block: the chart grows with the network


def cost_by_block(cost: ModelCost) -> list[dict]:
    """Params and FLOPs summed per block ('conv2' holds conv2, conv2.bn, ...), in network order."""
    blocks: dict[str, dict] = {}
    for layer in cost.layers:
        name = layer.name.split(".")[0]
        row = blocks.setdefault(name, {"block": name, "params": 0, "flops": 0})
        row["params"] += layer.params
        row["flops"] += 2 * layer.macs
    return [row for row in blocks.values() if row["params"] or row["flops"]]


def budget_color(params: int, budget: int) -> str:
    """Green within 90 % of the budget, amber up to it, red over it."""
    if params > budget:
        return OVER_COLOR
    return WARN_COLOR if params > 0.9 * budget else OK_COLOR


def cost_bars_spec(cost: ModelCost, metric: str) -> dict:
    """Horizontal bars of `metric` ("params" or "flops") per block, in network order, share in the tooltip."""
    total = cost.params if metric == "params" else cost.flops
    rows = [{"block": r["block"], "value": r[metric], "share": r[metric] / total if total else 0.0}
            for r in cost_by_block(cost)]
    title = "Parameters" if metric == "params" else "FLOPs (2 × MACs)"
    return {
        "title": title,
        "data": {"values": rows},
        "height": {"step": BAR_STEP},
        "mark": {"type": "bar", "color": TRAIN_COLOR if metric == "params" else TEST_COLOR},
        "encoding": {
            "y": {"field": "block", "type": "nominal", "sort": None, "title": None},
            "x": {"field": "value", "type": "quantitative", "title": None, "axis": {"format": "~s"}},
            "tooltip": [{"field": "block", "type": "nominal"},
                        {"field": "value", "type": "quantitative", "title": title, "format": ","},
                        {"field": "share", "type": "quantitative", "format": ".1%"}],
        },
    }


def budget_spec(params: int, budget: int) -> dict:
    """A bullet gauge: the budget zone (green) and the zone over it (red), the parameter bar coloured green,
    amber or red (budget_color), a tick at the budget."""
    top = max(budget * 1.25, params * 1.05)
    color = budget_color(params, budget)
    zones = [{"from": 0, "to": budget, "zone": "within"}, {"from": budget, "to": top, "zone": "over"}]
    # One band (y = a constant): the zones fill it, the parameter bar is a thinner bar on top, the budget a tick.
    band = {"field": "row", "type": "nominal", "axis": None}
    return {
        "title": {"text": f"{params:,} params vs budget {budget:,}", "color": color},
        "height": {"step": 40},
        "layer": [
            {"data": {"values": [z | {"row": 0} for z in zones]}, "mark": {"type": "bar", "opacity": 0.2},
             "encoding": {"x": {"field": "from", "type": "quantitative", "scale": {"domain": [0, top], "nice": False},
                                "axis": {"format": "~s", "title": None}},
                          "x2": {"field": "to"}, "y": band,
                          "color": {"field": "zone", "type": "nominal", "legend": None,
                                    "scale": {"domain": ["within", "over"], "range": [OK_COLOR, OVER_COLOR]}}}},
            {"data": {"values": [{"params": params, "row": 0}]}, "mark": {"type": "bar", "color": color, "size": 16},
             "encoding": {"x": {"field": "params", "type": "quantitative"}, "y": band,
                          "tooltip": [{"field": "params", "type": "quantitative", "format": ","}]}},
            {"data": {"values": [{"budget": budget, "row": 0}]},
             "mark": {"type": "tick", "thickness": 3, "size": 38, "color": OVER_COLOR},
             "encoding": {"x": {"field": "budget", "type": "quantitative"}, "y": band}},
        ],
    }
