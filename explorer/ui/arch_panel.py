"""The Architecture page: metric cards, budget gauge, per-layer cost, torchinfo summary, conventions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.arch.config import ArchConfig
from explorer.arch.cost import LayerCost, ModelCost, build_refusal, model_cost
from explorer.arch.summary import SummaryTable, torchinfo_summary
from explorer.errors import ConfigError
from explorer.ui import arch_charts, arch_diagram, blocks_table
from explorer.ui.arch_charts import budget_color
from explorer.ui.charts import OK_COLOR, OVER_COLOR, WARN_COLOR
from explorer.ui.format import human, human_bytes
from explorer.ui.state import Selection

LAYER_COLUMNS = {
    # Wide enough for the longest name ("head.maxpool") and kind ("AdaptiveAvgPool2d"): auto-sizing clipped both.
    "layer": st.column_config.TextColumn("layer", pinned=True, width=110),
    "type": st.column_config.TextColumn("type", width=150),
    "params": st.column_config.NumberColumn("params", format="%,d"),
    "budget share": st.column_config.ProgressColumn("budget share", format="percent", min_value=0.0,
                                                    max_value=1.0),
    "MACs": st.column_config.NumberColumn("MACs", format="%,d"),
    "mults": st.column_config.NumberColumn("mults", format="%,d"),
    "adds": st.column_config.NumberColumn("adds", format="%,d"),
    "compares": st.column_config.NumberColumn("compares", format="%,d"),
    "elementwise": st.column_config.NumberColumn("elementwise", format="%,d"),
    "activations": st.column_config.NumberColumn("activations", format="bytes"),
}
TABLE_ORDER = ["layer", "type", "output shape", "params", "budget share", "MACs", "mults", "adds", "compares",
               "elementwise", "activations"]
SUMMARY_COLUMNS = {
    "params": st.column_config.NumberColumn("params", format="%,d"),
    "mult-adds": st.column_config.NumberColumn("mult-adds", format="%,d"),
}


@st.cache_data(max_entries=256, show_spinner=False)
def cached_summary(cfg_json: str, input_shape: tuple[int, int, int], num_classes: int) -> SummaryTable:
    """torchinfo needs a forward pass (a few ms to ~100 ms): cache it per config, input and classes."""
    return torchinfo_summary(ArchConfig.from_json(cfg_json), input_shape, num_classes)


def _lazy_expander(label: str, key: str):
    """An expander whose body runs only while it is open: a closed one sends nothing to the browser, which then
    neither renders the text on each rerun nor loads the code highlighter (1.5 MB of JavaScript)."""
    return st.expander(label, key=key, on_change="rerun")


def _height(frame: pd.DataFrame, limit: int = 640) -> int:
    """Show every row of short tables (35 px a row + header), scroll the long ones."""
    return min(limit, 38 + 35 * len(frame))


def _row(name: str, kind: str, shape: tuple[int, ...], cost: ModelCost, layer: LayerCost | None = None) -> dict:
    counts = (layer.params, layer.macs, layer.multiplications, layer.additions, layer.comparisons,
              layer.elementwise, layer.activation_bytes) if layer else (0,) * 7
    values = dict(zip(("params", "MACs", "mults", "adds", "compares", "elementwise", "activations"), counts))
    return {"layer": name, "type": kind, "output shape": " × ".join(map(str, shape))} | values | {
        "budget share": values["params"] / cost.budget}


def _dropout_after(cfg: ArchConfig | None, block: str) -> bool:
    """Whether the network has a Dropout at the end of `block` ('conv2', 'fc1', ...), as explorer.arch.model
    builds it. The cost model leaves Dropout out (no parameters, identity at inference); torchinfo lists it."""
    if cfg is None or cfg.dropout <= 0:
        return False
    return block.startswith("fc") or (block.startswith("conv") and cfg.dropout_conv)


def layer_table(cost: ModelCost, cfg: ArchConfig | None = None) -> pd.DataFrame:
    """One row per layer of the analytic cost model, plus the network's Dropout layers when `cfg` is given."""
    rows: list[dict] = []
    for i, layer in enumerate(cost.layers):
        rows.append(_row(layer.name, layer.kind, layer.out_shape, cost, layer))
        block = layer.name.split(".")[0]
        last_of_block = i + 1 == len(cost.layers) or cost.layers[i + 1].name.split(".")[0] != block
        if last_of_block and _dropout_after(cfg, block):
            rows.append(_row(f"{block}.drop", "Dropout", layer.out_shape, cost))
    return pd.DataFrame(rows, columns=TABLE_ORDER)


def budget_delta(params: int, budget: int) -> tuple[str, str]:
    """The Parameters card's delta and its colour: no sign and no arrow ("91,690 left", "11,530 over"), in the
    gauge's colours (green, amber near the budget, red over it), so the card and the gauge read alike."""
    over = params - budget
    color = {OK_COLOR: "green", WARN_COLOR: "orange", OVER_COLOR: "red"}[budget_color(params, budget)]
    return (f"{over:,} over" if over > 0 else f"{-over:,} left"), color


def _metric_cards(cost: ModelCost) -> None:
    delta, color = budget_delta(cost.params, cost.budget)
    cards = st.columns(5)
    cards[0].metric("Parameters", f"{cost.params:,}", delta=delta, delta_color=color, delta_arrow="off", border=True,
                    help=f"Trainable parameters against the budget of {cost.budget:,}.")
    cards[1].metric("MACs / image", human(cost.macs), border=True,
                    help=f"{cost.macs:,} multiply-accumulates (conv + linear) for one image.")
    cards[2].metric("FLOPs / image", human(cost.flops), border=True,
                    help=f"{cost.flops:,} = 2 × MACs, as torch.utils.flop_counter.FlopCounterMode counts.")
    cards[3].metric("Parameter memory", human_bytes(cost.param_bytes), border=True,
                    help=f"float32 parameters + BatchNorm running statistics ({cost.buffers:,} buffer values).")
    cards[4].metric("Activation memory", human_bytes(cost.activation_bytes), border=True,
                    help="float32 outputs of every layer for one image (kept for the backward pass).")


def _op_detail(cost: ModelCost) -> None:
    st.caption(
        f"Detail per image: {cost.multiplications:,} multiplications · {cost.additions:,} additions "
        f"(bias adds included) · {cost.comparisons:,} comparisons (ReLU, max-pool) · "
        f"{cost.elementwise:,} other element-wise ops (BatchNorm, other activations, avg-pool)."
    )


def _conventions(cost: ModelCost, summary: SummaryTable | None) -> None:
    bias_adds = cost.torchinfo_mult_adds - cost.macs
    torchinfo_line = (f"For this network torchinfo reports **{summary.mult_adds:,}** mult-adds "
                      f"= {cost.macs:,} MACs + {bias_adds:,} bias adds and BatchNorm terms." if summary else "")
    with _lazy_expander("How the counts are made (MAC, FLOP, torchinfo, and the study's counter)",
                        "arch.conventions") as section:
        if not section.open:
            return
        st.markdown(f"""
- **MAC** = one multiply-accumulate. Conv: output elements × (input channels × kH × kW).
  Linear: inputs × outputs. This network: **{cost.macs:,} MACs** per image.
- **FLOPs** (the headline number) = **2 × MACs** of conv and linear layers: the convention of
  `torch.utils.flop_counter.FlopCounterMode` and of most papers. This network: **{cost.flops:,}**.
- **Detail**, shown apart because conventions differ: multiplications; additions (the accumulations plus
  one bias add per output, plus residual adds); comparisons (ReLU 1 per element, max-pool k²−1 = 3 per
  output of a 2×2 pool, global max-pool H·W−1 per channel); other element-wise ops (BatchNorm 2 per element
  at inference, GELU/SiLU/LeakyReLU 1 per element, average pooling).
- **torchinfo's "Mult-Adds"** (`LayerInfo.calculate_macs`): for a conv, parameters × output positions
  (weights *and bias*, so MACs + one bias add per output); for every other layer with parameters
  (Linear, BatchNorm), batch × parameters, so MACs + biases for Linear and **2C per BatchNorm**. It
  multiplies by the batch: we run it at batch 1 on the CPU. {torchinfo_line}
- **Parameters** are the trainable `nn.Parameter`s (BatchNorm has 2C); BatchNorm's running mean and
  variance are buffers, counted in the memory card but not against the budget.
- **Why the study's `count_ops` was wrong**: the conv operations were added to the addition and
  multiplication tallies but never to the total; the pooling loop ran after all convs, on the shape left by
  the *last* conv, so every pool was counted on the wrong map; linear multiplications were counted twice
  (`mul_ops += n_ops * 2`). It reported 118,822 "total ops" for the tutorial net, which does 651,720 MACs
  (1,303,440 FLOPs) per image.
""")


def _diagram(cost: ModelCost) -> None:
    """The network as boxes sized by their output (explorer.ui.arch_diagram): an SVG image, cheap to redraw."""
    st.html(arch_diagram.diagram_html(cost, dark=st.context.theme.type == "dark"))
    st.caption("Each box is a layer's output (including the BatchNorm and activation that follow it: the conv's, "
               "or with pool first the pooling's): height = H, "
               "depth = W, width = log₂ channels; under it the output shape and the parameters. Dashed arcs are "
               "residual skips, added where the circle is.")


def _layer_section(cost: ModelCost, cfg: ArchConfig) -> None:
    st.subheader("Where the parameters and the FLOPs go")
    params, flops = st.columns(2)
    params.vega_lite_chart(arch_charts.cost_bars_spec(cost, "params"), key="arch.params_bars")
    flops.vega_lite_chart(arch_charts.cost_bars_spec(cost, "flops"), key="arch.flops_bars")
    table = layer_table(cost, cfg)
    st.dataframe(table, hide_index=True, column_config=LAYER_COLUMNS, key="arch.layers", height=_height(table))


def _summary_section(cfg: ArchConfig, selection: Selection) -> SummaryTable | None:
    st.subheader("torchinfo summary")
    try:
        summary = cached_summary(cfg.to_json(), selection.input_shape, selection.num_classes)
    except ConfigError as err:
        st.error(str(err))
        return None
    st.caption(
        f"Total params {summary.total_params:,} · trainable {summary.trainable_params:,} · "
        f"mult-adds {summary.mult_adds:,} · params {human_bytes(summary.param_bytes)} · "
        f"forward/backward pass {human_bytes(summary.forward_backward_bytes)} (batch 1, CPU)"
    )
    st.dataframe(summary.rows, hide_index=True, column_config=SUMMARY_COLUMNS, key="arch.torchinfo",
                 height=_height(summary.rows))
    return summary


def _config_download(cfg: ArchConfig, selection: Selection) -> None:
    label = "Config JSON (for `python -m explorer stats --config FILE.json`)"
    with _lazy_expander(label, "arch.config_json") as section:
        if not section.open:
            return
        st.code(cfg.to_json(), language="json")
        st.download_button("Download config.json", cfg.to_json(), file_name=f"{selection.preset or 'custom'}.json",
                           mime="application/json", key="arch.download")


def render(selection: Selection) -> None:
    """The Architecture page for the sidebar's selection; a bad config shows st.error and nothing else."""
    if selection.cfg is None:
        st.error(selection.error)
        return
    try:
        cost = model_cost(selection.cfg, selection.input_shape, selection.num_classes, selection.budget)
    except ConfigError as err:
        st.error(str(err))
        return
    c, h, w = selection.input_shape
    name = selection.name
    st.markdown(f"**{name}** on a {c}×{h}×{w} input with {selection.num_classes} classes")
    _metric_cards(cost)
    blocks_table.render(selection.cfg, cost)
    gauge, detail = st.columns([1, 2])
    with gauge:
        st.vega_lite_chart(arch_charts.budget_spec(cost.params, cost.budget), key="arch.gauge")
    with detail:
        if not cost.within_budget:
            st.warning(f"{cost.params:,} parameters: {cost.params - cost.budget:,} over the budget of "
                     f"{cost.budget:,}. Try 'Auto-fit widths to budget', a global pooling head or more pooling.")
        else:
            st.success(f"Within budget: {cost.remaining:,} parameters to spare ({cost.params / cost.budget:.0%} used).")
        _op_detail(cost)
    refusal = build_refusal(cost)  # the one rule: a design over the build limits is costed, never allocated
    if refusal:
        st.warning(f"The diagram and the torchinfo summary are skipped for this design: {refusal}")
    else:
        _diagram(cost)
    _layer_section(cost, selection.cfg)
    summary = None if refusal else _summary_section(selection.cfg, selection)
    _conventions(cost, summary)
    _config_download(selection.cfg, selection)
