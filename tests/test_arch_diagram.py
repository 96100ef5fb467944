"""The Architecture page's network diagram (explorer.ui.arch_diagram): blocks, labels, sizes and skip arcs."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer import PRESETS, model_cost
from explorer.arch.config import ArchConfig, ConvBlock
from explorer.ui.arch_diagram import BLOCK_KINDS, DARK_TEXT, LIGHT_TEXT, diagram_blocks, diagram_html, diagram_svg
from explorer.ui.arch_panel import layer_table

SVG = "{http://www.w3.org/2000/svg}"
APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
# (preset, input shape): plain nets, a residual one, and a grayscale 28x28 and a 40x24 input.
CASES = [("tutorial", (3, 32, 32)), ("modern", (3, 32, 32)), ("fast", (3, 32, 32)), ("best", (3, 32, 32)),
         ("best", (1, 28, 28)), ("study-bn-dropout", (1, 28, 28)), ("tutorial", (3, 40, 24))]


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def labels(root: ET.Element) -> list[list[str]]:
    """The three label lines (name, shape, params) under each block, in order."""
    texts = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "label"]
    return [texts[i:i + 3] for i in range(0, len(texts), 3)]


def boxes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-name"): g for g in root.iter(f"{SVG}g") if g.get("class") == "block"}


def right_edge(group: ET.Element) -> float:
    """The rightmost x of a block's faces (the side face of a box)."""
    xs = [float(p.split(",")[0]) for poly in group.iter(f"{SVG}polygon") for p in poly.get("points").split()]
    rect = group.find(f"{SVG}rect")
    return max(xs + [float(rect.get("x")) + float(rect.get("width"))])


def front_face(group: ET.Element) -> tuple[float, float]:
    rect = group.find(f"{SVG}rect")
    return float(rect.get("width")), float(rect.get("height"))


@pytest.mark.parametrize(("preset", "shape"), CASES)
def test_one_block_per_layer_of_the_cost_table_plus_the_input(preset, shape):
    cost = model_cost(PRESETS[preset], shape, 10)
    blocks = diagram_blocks(cost)
    starts = [layer for layer in cost.layers if layer.kind in BLOCK_KINDS]
    assert len(blocks) == 1 + len(starts)
    assert [b.name for b in blocks] == ["input"] + [layer.name for layer in starts]
    assert blocks[0].shape == shape and blocks[0].params == 0
    assert sum(b.params for b in blocks) == cost.params
    root = parsed(diagram_svg(cost))
    assert list(boxes(root)) == [b.name for b in blocks]


@pytest.mark.parametrize(("preset", "shape"), CASES)
def test_labels_show_the_cost_tables_shapes_and_params(preset, shape):
    cfg = PRESETS[preset]
    cost = model_cost(cfg, shape, 10)
    table = layer_table(cost, cfg)
    shown = labels(parsed(diagram_svg(cost)))
    assert shown[0] == ["input", "×".join(map(str, shape)), "0"]
    for name, label_shape, label_params in shown[1:]:
        row = table[table["layer"] == name].iloc[0]
        assert label_shape == row["output shape"].replace(" × ", "×")
        # A block's parameters are its row's plus those of the rows folded into it: the rows after it up to the
        # next block (conv1.bn, ...; with pool first, the pool box holds the BatchNorm).
        start = int(table.index[table["layer"] == name][0])
        folded = [int(table.loc[start, "params"])]
        for i in range(start + 1, len(table)):
            if table.loc[i, "type"] in BLOCK_KINDS:
                break
            folded.append(int(table.loc[i, "params"]))
        assert label_params == f"{sum(folded):,}"


def test_known_numbers_of_the_tutorial_net():
    shown = labels(parsed(diagram_svg(model_cost(PRESETS["tutorial"]))))
    assert shown == [["input", "3×32×32", "0"], ["conv1", "6×28×28", "456"], ["conv1.pool", "6×14×14", "0"],
                     ["conv2", "16×10×10", "2,416"], ["conv2.pool", "16×5×5", "0"], ["fc1", "120", "48,120"],
                     ["fc2", "84", "10,164"], ["output", "10", "850"]]


def test_a_conv_block_holds_its_batchnorm_activation_and_residual_add():
    conv3 = next(b for b in diagram_blocks(model_cost(PRESETS["best"])) if b.name == "conv3")
    assert conv3.rows == ("Conv2d", "BatchNorm2d", "GELU", "Add") and conv3.residual
    assert conv3.params == 42 * 42 * 9 + 42 + 2 * 42


@pytest.mark.parametrize(("preset", "shape"), CASES)
def test_skip_arcs_exactly_over_the_residual_blocks(preset, shape):
    cfg = PRESETS[preset]
    root = parsed(diagram_svg(model_cost(cfg, shape, 10)))
    skips = [g.get("data-name") for g in root.iter(f"{SVG}g") if g.get("class") == "skip"]
    assert skips == [f"conv{i}" for i, block in enumerate(cfg.conv, 1) if block.residual]
    assert bool(skips) == (preset == "best")


def test_a_skip_arc_spans_its_block_from_the_gap_before_to_the_gap_after():
    root = parsed(diagram_svg(model_cost(PRESETS["best"])))
    groups = boxes(root)
    arc = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "skip" and g.get("data-name") == "conv3")
    x1, _, _, _, _, _, x2, _ = map(float, re.findall(r"-?\d+(?:\.\d+)?", arc.find(f"{SVG}path").get("d")))
    assert right_edge(groups["conv2"]) < x1 < float(groups["conv3"].find(f"{SVG}rect").get("x"))
    assert x2 > right_edge(groups["conv3"])


def test_boxes_grow_with_the_map_and_the_channels():
    groups = boxes(parsed(diagram_svg(model_cost(PRESETS["modern"]))))
    (w_in, h_in), (w1, h1), (w3, h3), (w5, h5) = (front_face(groups[n]) for n in ("input", "conv1", "conv3", "conv5"))
    assert h_in == h1 > h3 > h5  # 32x32, 32x32, 16x16, 8x8
    assert w_in < w1 < w3 < w5  # 3, 32, 64, 128 channels: log scale, still ordered
    assert w5 - w3 == pytest.approx(w3 - w1)  # one doubling = one step
    assert w_in > 10  # 3 channels stay readable beside 128


def test_a_residual_first_block_on_a_grayscale_input_gets_its_arc():
    cfg = ArchConfig(conv=(ConvBlock(1, residual=True), ConvBlock(8, pool="max")), head="avgpool")
    root = parsed(diagram_svg(model_cost(cfg, (1, 28, 28), 10)))
    assert [g.get("data-name") for g in root.iter(f"{SVG}g") if g.get("class") == "skip"] == ["conv1"]


def test_the_html_is_an_image_of_the_svg_in_the_themes_text_colour():
    cost = model_cost(PRESETS["best"], (1, 28, 28), 10)
    for dark, color in ((False, LIGHT_TEXT), (True, DARK_TEXT)):
        page = diagram_html(cost, dark=dark)
        data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', page).group(1)
        svg = base64.b64decode(data).decode()
        assert svg == diagram_svg(cost, color)
        assert parsed(svg).get("fill") == color
    assert 'alt="Network: input 1×28×28 → conv1 21×28×28' in diagram_html(cost)


def test_the_architecture_page_shows_the_diagram_of_the_sidebars_network(runs_dir):
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    (page,) = [e.proto.body for e in at.get("html") if "arch-diagram" in e.proto.body]
    svg = base64.b64decode(re.search(r"base64,([^\"]+)", page).group(1)).decode()
    assert labels(parsed(svg))[1] == ["conv1", "25×28×28", "1,950"]  # 25·3·5·5 + 25 + BatchNorm 2·25
    assert svg == diagram_svg(model_cost(PRESETS["study-bn"]))
