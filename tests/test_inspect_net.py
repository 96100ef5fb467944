"""Inside a net: activations match the cost table's shapes, filters, top-k, Grad-CAM finds the informative half
of an image, saliency when there is no spatial map, and the pictures composed for the page."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import model_cost
from explorer.arch.model import build_model
from explorer.arch.presets import PRESETS
from explorer.errors import DataError
from explorer.inspect import net

GREY_NET = ArchConfig(conv=(ConvBlock(6, kernel=5, padding="valid", pool="max"), ConvBlock(12, stride=2),
                            ConvBlock(12, residual=True, pool="avg")), fc=(32,), batchnorm=True)


def random_image(shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def block_output_shapes(cfg: ArchConfig, shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """What the cost table shows as each conv block's output: the last row named conv<i> or conv<i>.*."""
    layers = model_cost(cfg, shape, 10).layers
    return [tuple([row for row in layers if row.name == f"conv{i}" or row.name.startswith(f"conv{i}.")][-1]
                  .out_shape) for i in range(1, len(cfg.conv) + 1)]


@pytest.mark.parametrize("preset, shape", [("tutorial", (3, 32, 32)), ("study-bn-dropout", (3, 32, 32)),
                                           ("modern", (3, 32, 32)), ("fast", (3, 32, 32)), ("best", (3, 32, 32)),
                                           ("fast", (1, 28, 28)), ("grey", (1, 28, 28))])
def test_activation_shapes_equal_the_cost_table(preset: str, shape) -> None:
    cfg = GREY_NET if preset == "grey" else PRESETS[preset]
    model = build_model(cfg, shape, 10)
    maps = net.feature_maps(model, random_image(shape), [0.5] * shape[0], [0.25] * shape[0])
    assert [name for name, _ in maps] == [f"conv{i}" for i in range(1, len(cfg.conv) + 1)]
    assert [tuple(t.shape) for _, t in maps] == block_output_shapes(cfg, shape)
    if preset == "grey":
        assert [tuple(t.shape) for _, t in maps] == [(6, 12, 12), (12, 6, 6), (12, 3, 3)]


def test_feature_maps_are_the_blocks_outputs_and_leave_no_hooks() -> None:
    model = build_model(GREY_NET, (1, 28, 28), 10)
    model.train()
    pixels = random_image((1, 28, 28), 3)
    maps = dict(net.feature_maps(model, pixels, [0.4], [0.2]))
    assert model.training  # the mode the model came in with
    assert all(not block._forward_hooks for block in model.features)
    with torch.no_grad():
        model.eval()
        x = (pixels.float() / 255 - 0.4) / 0.2
        expected = model.features[:2](x[None])[0]
    assert torch.allclose(maps["conv2"], expected, atol=1e-6)


def test_top_k_matches_softmax_of_the_logits() -> None:
    model = build_model(PRESETS["tutorial"], (3, 32, 32), 10).eval()
    pixels, mean, std = random_image((3, 32, 32), 1), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    predictions = net.top_k(model, pixels, mean, std, k=5)
    with torch.no_grad():
        x = (pixels.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        probs = model(x[None]).softmax(1)[0]
    values, indices = probs.topk(5)
    assert [p.index for p in predictions] == indices.tolist()
    assert [p.probability for p in predictions] == pytest.approx(values.tolist(), abs=1e-6)
    assert predictions[0].probability >= predictions[-1].probability
    assert len(net.top_k(build_model(GREY_NET, (1, 28, 28), 3), random_image((1, 28, 28)), [0.5], [0.5])) == 3


def test_wrong_image_shape_is_refused() -> None:
    model = build_model(GREY_NET, (1, 28, 28), 10)
    with pytest.raises(DataError, match="the image is 3×28×28 but the net takes 1×28×28"):
        net.top_k(model, random_image((3, 28, 28)), [0.5], [0.5])
    with pytest.raises(DataError, match="class index 12"):
        net.grad_cam(model, random_image((1, 28, 28)), [0.5], [0.5], 12)


def test_first_layer_filters_and_their_tiles() -> None:
    model = build_model(PRESETS["fast"], (3, 32, 32), 10)
    weights = net.first_layer_filters(model)
    assert tuple(weights.shape) == (26, 3, 3, 3)
    assert torch.equal(weights, model.features[0].conv.weight.detach())
    grid = net.filter_grid(weights, tile=36, pad=2)
    # 26 filters in 6 columns, 5 rows of 36-pixel tiles (3x3 enlarged 12 times) with 2-pixel gaps.
    assert tuple(grid.shape) == (5 * 38 - 2, 6 * 38 - 2, 3) and grid.dtype == torch.uint8
    # A filter's largest weight (by magnitude) is 0 or 255 in its tile: each filter is scaled on its own.
    first = grid[:36, :36]
    assert int(first.max()) == 255 or int(first.min()) == 0
    grey = net.filter_grid(net.first_layer_filters(build_model(GREY_NET, (1, 28, 28), 10)))
    assert bool((grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all())


def test_map_grid_shows_the_strongest_channels_first() -> None:
    maps = torch.zeros(5, 4, 4)
    maps[3] = 2.0
    maps[1] = 1.0
    grid, shown = net.map_grid(maps, max_maps=2, min_tile=8, pad=1)
    assert shown == [3, 1]
    assert tuple(grid.shape) == (8, 2 * 8 + 1, 3)
    assert grid[0, 0].tolist() == net.colormap(torch.tensor(1.0)).tolist()  # the strongest map at the top of the scale


def test_colormap_and_overlay() -> None:
    assert net.colormap(torch.tensor([0.0, 1.0])).tolist() == [[0, 0, 4], [252, 255, 164]]
    heat = torch.zeros(8, 8)
    heat[:, 4:] = 1.0
    picture = net.overlay(torch.zeros(3, 8, 8, dtype=torch.uint8), heat, size=32, opacity=1.0)
    assert tuple(picture.shape) == (32, 32, 3)
    assert picture[:, :8].float().mean() < 10 and picture[:, -8:].float().mean() > 200


def half_informative_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3×16×16 images: the left half is noise in both classes; the right half holds horizontal stripes (class 0)
    or vertical stripes (class 1) under a little noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randint(0, 256, (n, 3, 16, 16), generator=gen).float()
    rows = (torch.arange(16) // 2 % 2).float().view(16, 1).expand(16, 8)
    cols = (torch.arange(8) // 2 % 2).float().view(1, 8).expand(16, 8)
    stripes = torch.where(y.view(-1, 1, 1) == 0, rows, cols) * 200 + 28
    x[:, :, :, 8:] = stripes[:, None] + torch.randn(n, 3, 16, 8, generator=gen) * 20
    return x.clamp(0, 255).round().to(torch.uint8), y


def test_grad_cam_highlights_the_informative_half() -> None:
    torch.manual_seed(0)
    cfg = ArchConfig(conv=(ConvBlock(8), ConvBlock(16, pool="max")), head="avgpool")
    model = build_model(cfg, (3, 16, 16), 2)
    mean, std = [0.5] * 3, [0.25] * 3
    x, y = half_informative_data(256, seed=1)
    inputs = (x.float() / 255 - 0.5) / 0.25
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(4):
        for batch in torch.randperm(256).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    test_x, test_y = half_informative_data(16, seed=2)
    with torch.no_grad():
        accuracy = (model((test_x.float() / 255 - 0.5) / 0.25).argmax(1) == test_y).float().mean()
    assert accuracy == 1.0  # the net has learnt the stripes, so its evidence is on the right
    informative, other = [], []
    for image, label in zip(test_x, test_y):
        result = net.heat_map(model, image, mean, std, int(label))
        assert result.method == "Grad-CAM on conv2" and tuple(result.heat.shape) == (16, 16)
        assert 0.0 <= float(result.heat.min()) and float(result.heat.max()) <= 1.0
        informative.append(float(result.heat[:, 8:].mean()))
        other.append(float(result.heat[:, :8].mean()))
    assert sum(informative) / 16 > 2 * sum(other) / 16
    assert sum(i > o for i, o in zip(informative, other)) >= 14


def test_saliency_when_the_last_block_has_no_spatial_map() -> None:
    # Three pooled blocks take 8x8 down to 1x1: nothing for Grad-CAM to place, so gradient saliency.
    cfg = ArchConfig(conv=(ConvBlock(4, pool="max"), ConvBlock(4, pool="max"), ConvBlock(4, pool="max")))
    torch.manual_seed(0)
    model = build_model(cfg, (1, 8, 8), 3)
    result = net.heat_map(model, random_image((1, 8, 8)), [0.5], [0.5], 1)
    assert result.method == "gradient saliency (conv3 is 1×1)"
    assert tuple(result.heat.shape) == (8, 8) and float(result.heat.max()) == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())  # only the input's gradient was taken


def test_top_k_chart_keeps_the_net_order_and_marks_the_truth() -> None:
    from explorer.ui.inspect_panel import top_k_spec

    predictions = [net.Prediction(3, 0.5), net.Prediction(0, 0.3), net.Prediction(2, 0.2)]
    spec = top_k_spec(predictions, ["cat", "dog", "ship", "truck"], true_index=0)
    assert spec["title"] == "Top 3 predictions"
    assert spec["encoding"]["y"]["sort"] == ["truck", "cat", "ship"]
    assert spec["data"]["values"] == [{"class": "truck", "probability": 0.5, "truth": "other"},
                                      {"class": "cat", "probability": 0.3, "truth": "true class"},
                                      {"class": "ship", "probability": 0.2, "truth": "other"}]


def test_block_labels_use_the_cost_table() -> None:
    from explorer.ui.inspect_panel import block_label

    rows = list(model_cost(PRESETS["fast"], (3, 32, 32), 10).layers)
    assert block_label(rows, "conv1", 26, 26) == ("**conv1** · Conv2d 26×32×32 → MaxPool2d → BatchNorm2d → GELU → "
                                                  "**26×16×16** · the 26 channels, most active first")
    assert block_label(rows, "conv4", 64, 206).endswith("→ **206×4×4** · the 64 most active of 206 channels, "
                                                        "most active first")


def test_the_page_shows_a_test_image_of_a_saved_checkpoint(runs_dir) -> None:
    """AppTest (no browser): the page draws a prediction, heat maps, one picture per block and the filters."""
    import streamlit as st
    from history_helpers import SMALL, make_run
    from streamlit.testing.v1 import AppTest

    from explorer.engine.data import load_dataset
    from explorer.store.checkpoint import load_checkpoint

    make_run(runs_dir, "r1", arch=SMALL, data="synthetic:40")
    st.cache_resource.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.switch_page("explorer/ui/pages/inspect.py").run()
    assert not at.exception and not at.error
    loaded, dataset = load_checkpoint(runs_dir / "r1"), load_dataset("synthetic:40")
    best = net.top_k(loaded.model, dataset.test_x[0], loaded.mean, loaded.std)[0]
    texts = [m.value for m in at.markdown]
    verdict = "right" if best.index == int(dataset.test_y[0]) else "wrong"
    assert f"Predicted **{loaded.classes[best.index]}** ({best.probability:.1%}) — {verdict}" in texts
    assert any(t.startswith("**conv2** · Conv2d 8×16×16 → ReLU → MaxPool2d → **8×8×8**") for t in texts)
    assert at.selectbox(key="inspect.filter").options[-1] == "misclassified"
    st.cache_resource.clear()
