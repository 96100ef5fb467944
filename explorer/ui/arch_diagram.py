"""The network drawn as a diagram: one box per layer, sized by its output, residual skips as arcs. No Streamlit.

Built from the analytic cost model (explorer.arch.cost.model_cost: no torch model) as an SVG string (about
0.3 ms), shown as an <img> with a data: URI. Why that form: it is redrawn on every rerun of the Architecture
page. Measured in Chromium (main-thread task time per rerun beyond a page without it; medians of 8, on a busy
2-core machine): the <img> ~10 ms, the same SVG inline through st.markdown ~26 ms (the Markdown renderer
parses it), an equivalent Vega-Lite chart ~70 ms (Vega compiles the spec on every change). Inline SVG through
st.html is not possible: it strips SVG (DOMPurify's HTML profile). An <img> neither inherits the page's text
colour nor shows per-element tooltips, so the caller passes the theme's text colour and every block's numbers
are printed under it.

Blocks follow the cost table: a conv row with the BatchNorm, activation and residual add after it is one
block (its parameters include the BatchNorm's); every pooling, global pooling, hidden FC and the output layer
is a block of its own; the input comes first. With ArchConfig.pool_first the cost table runs conv -> pool ->
BatchNorm -> activation in a pooled block without a skip, so the conv box holds the conv alone and the pooling
box holds the BatchNorm (and its parameters) and the activation, at the pooled shape. A feature map (C×H×W)
is a box whose front face is as tall as its H (linear) and as wide as log2 of its channels, and whose depth
follows its W; a vector (C) is a thin bar as tall as log2 of its width.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass

from explorer.arch.cost import LayerCost, ModelCost
from explorer.ui.charts import BASELINE_COLOR, TEST_COLOR, TRAIN_COLOR

# A cost row of one of these kinds starts a block; the rows after it (BatchNorm, activation, Add) join it.
BLOCK_KINDS = {"Conv2d": "conv", "MaxPool2d": "pool", "AvgPool2d": "pool", "AdaptiveAvgPool2d": "head",
               "AdaptiveMaxPool2d": "head", "Linear": "fc"}
COLORS = {"input": BASELINE_COLOR, "conv": TRAIN_COLOR, "pool": TEST_COLOR, "head": "#9467bd", "fc": "#2ca02c",
          "output": "#17becf"}
TOP = 26  # room above the tallest box for the skip arcs
MAX_FACE = 112  # front face height of the largest map, and the cap of a vector's bar
MIN_FACE = 12  # a 1×1 map or a 1-wide vector stays visible
MAX_DEPTH = 26  # depth of the widest map (drawn at 45°, half as long)
GAP = 12  # between columns: the connecting line and the ends of the skip arcs
COLUMN_MIN = 44
CHAR_WIDTH = 6.2  # of an 11 px label character, on average: a column is never narrower than its labels
MIN_SCALE = 0.75  # a wide diagram is shrunk to fit the page down to this scale, then scrolls sideways
LINE = 13  # label line height
FONT = "font-family:'Source Sans Pro',sans-serif;font-size:11px"
LIGHT_TEXT, DARK_TEXT = "#31333f", "#fafafa"  # Streamlit's text colour in its light and dark themes


@dataclass(frozen=True)
class DiagramBlock:
    """One box of the diagram: the cost rows it stands for, its output shape and their parameters."""

    name: str
    kind: str  # input, conv, pool, head, fc, output
    shape: tuple[int, ...]
    params: int = 0
    rows: tuple[str, ...] = ()  # the cost table's layer kinds folded into it, e.g. Conv2d, BatchNorm2d, GELU
    residual: bool = False
    projection: bool = False  # the skip goes through a 1x1 conv (widths or strides differ)

    @property
    def shape_label(self) -> str:
        return "×".join(map(str, self.shape))

    @property
    def title(self) -> str:
        what = " → ".join(self.rows) if self.rows else "the image"
        return f"{self.name}: {what} · output {self.shape_label} · {self.params:,} parameters"


def diagram_blocks(cost: ModelCost) -> list[DiagramBlock]:
    """The input, then one block per conv, pooling, global pooling and linear row of the cost table."""
    blocks = [DiagramBlock("input", "input", tuple(cost.input_shape))]
    for layer in cost.layers:
        kind = BLOCK_KINDS.get(layer.kind)
        # A block's inner convs (conv2.conv2, conv2.se.reduce, conv2.proj ...) join it: one box per block.
        if kind and not (kind == "conv" and "." in layer.name):
            kind = "output" if layer.name == "output" else kind
            blocks.append(DiagramBlock(layer.name, kind, tuple(layer.out_shape), layer.params, (layer.kind,)))
            continue
        last = blocks[-1]  # BatchNorm, activation, inner conv or Add after it: joins the block
        blocks[-1] = DiagramBlock(last.name, last.kind, _block_shape(last, layer), last.params + layer.params,
                                  last.rows + (layer.kind,), last.residual or layer.kind == "Add",
                                  last.projection or layer.name.endswith(".proj"))
    return blocks


def _block_shape(block: DiagramBlock, layer: LayerCost) -> tuple[int, ...]:
    """A block's box shows its output: the shape of its last row on the main path (not the squeeze's 1x1)."""
    inner = ".se." in layer.name or layer.name.endswith((".proj", ".proj_norm", ".se"))
    return block.shape if inner or len(layer.out_shape) != 3 else tuple(layer.out_shape)


@dataclass(frozen=True)
class _Box:
    """Where a block is drawn: front face width/height, the 45° depth offset, and its column."""

    face_w: float
    face_h: float
    depth: float
    column_x: float
    column_w: float

    @property
    def left(self) -> float:
        return self.column_x + (self.column_w - self.face_w - self.depth) / 2

    @property
    def right(self) -> float:
        return self.left + self.face_w + self.depth


def _channel_width(channels: int) -> float:
    # log2: 1 channel -> 7 px, 3 -> 18, 256 -> 71, 1024 -> 87; a linear scale would make 3 channels a sliver.
    return 7 + 8 * math.log2(channels)


def _size(block: DiagramBlock, max_h: int, max_w: int) -> tuple[float, float, float]:
    if len(block.shape) == 3:
        c, h, w = block.shape
        return (_channel_width(c), MIN_FACE + (MAX_FACE - MIN_FACE) * h / max_h,
                (4 + (MAX_DEPTH - 4) * w / max_w) / 2)
    return 10.0, min(MAX_FACE, MIN_FACE + 9 * math.log2(max(block.shape[0], 1))), 0.0


def _layout(blocks: list[DiagramBlock]) -> list[_Box]:
    maps = [b.shape for b in blocks if len(b.shape) == 3]
    max_h, max_w = max(s[1] for s in maps), max(s[2] for s in maps)
    boxes, x = [], GAP / 2
    for block in blocks:
        face_w, face_h, depth = _size(block, max_h, max_w)
        label_w = CHAR_WIDTH * max(len(block.name), len(block.shape_label), len(f"{block.params:,}"))
        width = max(COLUMN_MIN, face_w + depth + 4, label_w)
        boxes.append(_Box(face_w, face_h, depth, x, width))
        x += width + GAP
    return boxes


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _points(*xy: float) -> str:
    return " ".join(f"{_num(a)},{_num(b)}" for a, b in zip(xy[::2], xy[1::2]))


def _box_svg(block: DiagramBlock, box: _Box, mid: float) -> str:
    """The box's faces (front, top, side when it has depth), with its description as the hover tooltip."""
    color, d = COLORS[block.kind], box.depth
    x, y = box.left, mid - (box.face_h - d) / 2
    w, h = box.face_w, box.face_h
    faces = [f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" fill="{color}" '
             f'fill-opacity="0.8" stroke="{color}"/>']
    if d:
        faces.append(f'<polygon points="{_points(x, y, x + d, y - d, x + w + d, y - d, x + w, y)}" '
                     f'fill="{color}" fill-opacity="0.45" stroke="{color}"/>')
        faces.append(f'<polygon points="{_points(x + w, y, x + w + d, y - d, x + w + d, y - d + h, x + w, y + h)}" '
                     f'fill="{color}" fill-opacity="0.6" stroke="{color}"/>')
    return (f'<g class="block" data-name="{html.escape(block.name)}" data-kind="{block.kind}">'
            f'<title>{html.escape(block.title)}</title>{"".join(faces)}</g>')


def _labels_svg(block: DiagramBlock, box: _Box, y: float) -> str:
    cx = _num(box.column_x + box.column_w / 2)
    lines = [(block.name, "font-weight:600"), (block.shape_label, ""), (f"{block.params:,}", "opacity:0.75")]
    return "".join(f'<text class="label" x="{cx}" y="{_num(y + i * LINE)}" text-anchor="middle" '
                   f'style="{style}">{html.escape(text)}</text>' for i, (text, style) in enumerate(lines))


def _skip_svg(block: DiagramBlock, box: _Box, before: _Box, mid: float, color: str) -> str:
    """An arc from the gap before the block (its input) over it to the gap after it, where the sum is taken."""
    x1, x2 = (before.right + box.left) / 2, box.right + GAP / 2
    peak = mid - box.face_h / 2 - box.depth - 12  # clears the box's top face
    ctrl = (peak - 0.25 * mid) / 0.75  # a cubic with both controls at `ctrl` peaks 3/4 of the way up
    through = " through a 1×1 projection" if block.projection else ""
    dashes = "1 2" if block.projection else "4 2"  # dotted: the skip is a conv, not the identity
    projection = str(block.projection).lower()
    return (f'<g class="skip" data-name="{html.escape(block.name)}" data-projection="{projection}"><title>residual: '
            f'the input of {block.name} is added{through} to its output</title><path d="M{_num(x1)},{_num(mid)} '
            f'C{_num(x1)},{_num(ctrl)} {_num(x2)},{_num(ctrl)} {_num(x2)},{_num(mid)}" fill="none" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dashes}"/><circle cx="{_num(x2)}" cy="{_num(mid)}" r="4" '
            f'fill="none" stroke="{color}"/></g>')


def diagram_svg(cost: ModelCost, text_color: str = LIGHT_TEXT) -> str:
    """The whole diagram as one standalone <svg> document; text, links and arcs in `text_color`."""
    blocks = diagram_blocks(cost)
    boxes = _layout(blocks)
    tallest = max(b.face_h + b.depth for b in boxes)
    mid = TOP + tallest / 2
    label_y = TOP + tallest + 16
    width, height = boxes[-1].column_x + boxes[-1].column_w + GAP / 2, label_y + 2 * LINE + 6
    parts = [f'<line x1="{_num(a.right)}" y1="{_num(mid)}" x2="{_num(b.left)}" y2="{_num(mid)}" '
             f'stroke="{text_color}" stroke-opacity="0.5"/>' for a, b in zip(boxes, boxes[1:])]
    for block, box in zip(blocks, boxes):
        parts.append(_box_svg(block, box, mid))
        parts.append(_labels_svg(block, box, label_y))
    parts += [_skip_svg(block, box, boxes[i - 1], mid, text_color)
              for i, (block, box) in enumerate(zip(blocks, boxes)) if block.residual]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" height="{_num(height)}" '
            f'viewBox="0 0 {_num(width)} {_num(height)}" role="img" style="{FONT}" fill="{text_color}">'
            f'<title>{html.escape(_summary(blocks))}</title>{"".join(parts)}</svg>')


def _summary(blocks: list[DiagramBlock]) -> str:
    return "Network: " + " → ".join(f"{b.name} {b.shape_label}" for b in blocks)


def diagram_html(cost: ModelCost, dark: bool = False) -> str:
    """The SVG as an <img> (alt text: the layers and shapes) at its natural size, shrunk to the page's width
    down to MIN_SCALE, past that in a box that scrolls sideways; `dark` for Streamlit's dark theme."""
    svg = diagram_svg(cost, DARK_TEXT if dark else LIGHT_TEXT)
    width = float(re.search(r'width="([\d.]+)"', svg).group(1))
    data = base64.b64encode(svg.encode()).decode()
    alt = html.escape(_summary(diagram_blocks(cost)), quote=True)
    size = f"width:100%;max-width:{_num(width)}px;min-width:{_num(width * MIN_SCALE)}px;height:auto"
    return (f'<div class="arch-diagram" style="overflow-x:auto"><img src="data:image/svg+xml;base64,{data}" '
            f'alt="{alt}" title="{alt}" style="{size}"></div>')
