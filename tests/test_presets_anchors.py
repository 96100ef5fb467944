"""The presets that reproduce the published anchors (resnet20, tiniest, se-resnet) and the `long` recipe: exact
costs, within budget, one tiny training step with the recipe's settings, and the README table that shows them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from explorer import build_model, model_cost
from explorer.arch.plan import layer_shapes
from explorer.arch.presets import ANCHORS, PRESETS
from explorer.engine.recipes import RECIPES
from explorer.engine.train import train

BUDGET = {"resnet20": 256_000, "tiniest": 100_000, "se-resnet": 256_000}
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", list(ANCHORS))
def test_anchor_presets_cost_exactly_what_pytorch_counts_and_fit_their_budget(name: str) -> None:
    cfg = PRESETS[name]
    model = build_model(cfg).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    cost = model_cost(cfg)
    assert cost.params == sum(p.numel() for p in model.parameters()) <= BUDGET[name]
    assert cost.flops == counter.get_total_flops()


def test_anchor_presets_have_the_published_layouts() -> None:
    resnet, tiniest, se_resnet = PRESETS["resnet20"], PRESETS["tiniest"], PRESETS["se-resnet"]
    assert [b.block for b in resnet.conv] == ["plain"] + ["basic"] * 9  # stem + 3 stages of 3 basic blocks
    assert [b.out_channels for b in resnet.conv] == [16] * 4 + [32] * 3 + [60] * 3  # last stage trimmed 64 -> 60
    assert [b.stride for b in resnet.conv] == [1, 1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert model_cost(resnet).params == 248_794
    shapes = [plan.out_shape for plan in layer_shapes(tiniest, (3, 32, 32))]
    assert shapes == [(48, 32, 32)] * 3 + [(80, 16, 16)] * 3  # one downsampling: 48 ch at 32x32, 80 at 16x16
    assert [b.block for b in tiniest.conv] == ["plain"] + ["convnext"] * 5
    assert any(b.dilation == 2 for b in tiniest.conv) and tiniest.conv[0].norm == "layer"
    assert all(b.se == 0.0625 for b in se_resnet.conv[1:]) and se_resnet.activation == "mish"


def test_the_long_recipe_is_the_anchors_long_recipe() -> None:
    long = RECIPES["long"]
    assert (long.epochs, long.optimizer, long.schedule, long.warmup_epochs, long.ema) == (200, "adamw", "cosine",
                                                                                         2.0, 0.999)
    assert long.mixup > 0 and long.mix_ramp_epochs == 100 and long.rotate == 15.0
    assert set(long.augment) == {"flip", "crop"}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_takes_a_step_of_the_long_recipe_and_every_parameter_learns(name: str) -> None:
    """Two batches of 32 synthetic images with the long recipe's settings (mixup from the first step, warm-up
    within the one epoch): a finite loss, and AdamW's first moment is non-zero for every parameter, so a
    gradient reached each one through the soft-target loss."""
    from explorer.engine.data import load_dataset

    steps = RECIPES["long"].replace(epochs=1, warmup_epochs=0.5, mix_ramp_epochs=0, batch_size=32,
                                    test_batch_size=64, device="cpu", precision="fp32", log_every=1)
    result = train(PRESETS[name], steps, load_dataset("synthetic:64"))
    assert result.status == "finished" and result.epochs_done == 1
    assert math.isfinite(result.metrics["train_loss"]) and 0.0 <= result.metrics["test_accuracy"] <= 1.0
    state = result.optimizer_state["state_dict"]["state"]
    assert len(state) == len(list(result.model.parameters()))  # every parameter is in the optimizer
    assert all(float(s["step"]) == 2 and s["exp_avg"].abs().sum() > 0 for s in state.values())


def _readme_row(name: str) -> str:
    section = README.read_text().split("## Best in budget", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README's Best in budget table has no single row for {name}"
    return rows[0]


@pytest.mark.parametrize("name", list(ANCHORS))
def test_readme_table_shows_each_anchor_preset_with_its_costs_and_both_accuracies(name: str) -> None:
    row = _readme_row(name)
    cost, anchor = model_cost(PRESETS[name]), ANCHORS[name]
    assert f"{cost.params:,}" in row and f"{cost.flops / 1e6:.1f} M" in row
    assert anchor.net in row and anchor.params in row and anchor.accuracy in row
    ours = row.split(" | ")[5]  # preset, params, FLOPs, published net, published figure, ours, how it differs
    assert ours == "not yet measured" or re.fullmatch(r"\*\*\d+\.\d %\*\* \(\d+ epochs, .+\)", ours), ours


def test_readme_names_the_long_recipe() -> None:
    section = README.read_text().split("## Best in budget", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"`long` \(.*AdamW", section, re.S)
