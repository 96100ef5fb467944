"""ArchConfig.pool_first: conv -> pool -> BatchNorm -> activation in pooled blocks without a skip.

The same function as pooling last when max-pool commutes with BN and the activation (eval-mode BN with a positive
scale, a monotone activation); the cost table, the model, torchinfo, the diagram and the design line agree on it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import model_cost
from explorer.arch.model import build_model
from explorer.arch.presets import PRESETS
from explorer.arch.summary import torchinfo_summary
from explorer.inspect import net
from explorer.inspect.export import architecture_line
from explorer.search.space import sample, space_around
from explorer.store.checkpoint import load_checkpoint, save_checkpoint
from explorer.ui.arch_diagram import diagram_blocks, diagram_svg

# Pooled plain blocks (max and avg), an unpooled block, a pooled residual block, a residual block without pooling.
MIXED = ArchConfig(conv=(ConvBlock(8, pool="max"), ConvBlock(12), ConvBlock(12, pool="max", residual=True),
                         ConvBlock(16, kernel=5, padding="valid", pool="avg"), ConvBlock(16, residual=True)),
                   fc=(24,), batchnorm=True, activation="relu", head="avgpool")


def pool_first(cfg: ArchConfig) -> ArchConfig:
    return dataclasses.replace(cfg, pool_first=True)


# The presets as they were before `fast` and `best` took pool_first on.
PLAIN = {name: dataclasses.replace(PRESETS[name], pool_first=False) for name in ("fast", "best")}


def rows(cfg: ArchConfig, shape=(3, 32, 32)) -> dict:
    return {layer.name: layer for layer in model_cost(cfg, shape, 10).layers}


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and a positive scale that are not the identity, so the test has teeth."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=gen))
            module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=gen) + 0.1)
            module.bias.data.copy_(torch.randn(c, generator=gen))


# ----------------------------------------------------------------------------------------- (a) same function


def test_max_pool_first_is_the_same_function_with_eval_batchnorm_and_relu() -> None:
    cfg = ArchConfig(conv=(ConvBlock(8, pool="max"), ConvBlock(12), ConvBlock(12, pool="max", residual=True),
                           ConvBlock(16, pool="max")), fc=(20,), batchnorm=True, activation="relu")
    torch.manual_seed(0)
    after = build_model(cfg).eval()
    randomize_batchnorm(after)
    first = build_model(pool_first(cfg)).eval()
    first.load_state_dict(after.state_dict(), strict=True)  # same module names: same state_dict keys
    assert [u.pool_first for u in first.features] == [True, False, False, True]
    assert not any(u.pool_first for u in after.features)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = after(x), first(x)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
        # The first block alone already differs in where BN runs, yet gives the same map.
        block_after, block_first = after.features[0], first.features[0]
        assert torch.allclose(block_first(x), block_after(x), atol=1e-5, rtol=1e-5)


def test_a_negative_batchnorm_scale_breaks_the_commuting() -> None:
    # Why the argument needs a positive scale: max then a flip is not a flip then max.
    cfg = ArchConfig(conv=(ConvBlock(4, pool="max"),), batchnorm=True, activation="relu", head="avgpool")
    after = build_model(cfg).eval()
    first = build_model(pool_first(cfg)).eval()
    with torch.no_grad():
        after.features[0].bn.weight.fill_(-1.0)
    first.load_state_dict(after.state_dict())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(first.features[0](x), after.features[0](x), atol=1e-3)


def test_pool_first_runs_bn_and_the_activation_on_the_pooled_map() -> None:
    model = build_model(pool_first(MIXED)).eval()
    seen: dict[str, tuple[int, ...]] = {}
    for i, unit in enumerate(model.features, 1):
        for part in ("bn", "act"):
            getattr(unit, part).register_forward_hook(
                lambda _m, inp, _o, key=f"conv{i}.{part}": seen.__setitem__(key, tuple(inp[0].shape[1:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert seen["conv1.bn"] == (8, 16, 16) and seen["conv1.act"] == (8, 16, 16)  # pooled first
    assert seen["conv2.bn"] == (12, 16, 16)  # no pooling: unchanged
    assert seen["conv3.bn"] == (12, 16, 16)  # residual: BN before the sum and the pool, as before
    assert seen["conv4.bn"] == (16, 2, 2)  # 5x5 valid: 8x8 -> 4x4, avg-pooled to 2x2 before BN


# ------------------------------------------------------------------------------------------ (b) cost table


def test_fast_with_pool_first_counts_bn_and_activation_on_a_quarter_of_the_map() -> None:
    plain, first = rows(PLAIN["fast"]), rows(pool_first(PLAIN["fast"]))
    cost_plain, cost_first = model_cost(PLAIN["fast"]), model_cost(pool_first(PLAIN["fast"]))
    assert cost_first.params == cost_plain.params == 255_267
    assert cost_first.macs == cost_plain.macs and cost_first.torchinfo_mult_adds == cost_plain.torchinfo_mult_adds
    # fast: 26 ch at 32x32 -> 16x16, 52 at 16 -> 8, 103 at 8 -> 4 (each max-pooled), 206 at 4x4 (not pooled).
    pooled = {"conv1": (26, 16, 16), "conv2": (52, 8, 8), "conv3": (103, 4, 4)}
    for name, (c, h, w) in pooled.items():
        n = c * h * w
        assert first[f"{name}.bn"].elementwise == 2 * n == plain[f"{name}.bn"].elementwise // 4
        assert first[f"{name}.act"].elementwise == n == plain[f"{name}.act"].elementwise // 4  # GELU
        assert first[f"{name}.bn"].out_shape == first[f"{name}.act"].out_shape == (c, h, w)
        assert first[f"{name}.pool"].comparisons == plain[f"{name}.pool"].comparisons == 3 * n
        assert first[name].macs == plain[name].macs
    assert first["conv4.bn"] == plain["conv4.bn"] and first["conv4.act"] == plain["conv4.act"]
    assert first["conv4.act"].elementwise == 206 * 4 * 4
    saved = sum(2 * c * h * w * 3 + c * h * w * 3 for c, h, w in pooled.values())  # 3/4 of BN (2/elt) + GELU
    assert cost_plain.elementwise - cost_first.elementwise == saved == 104_688
    # Activation memory: BN and GELU outputs shrink 4x too.
    assert cost_plain.activation_bytes - cost_first.activation_bytes == \
        4 * sum(2 * 3 * c * h * w for c, h, w in pooled.values())


def test_rows_run_in_the_executed_order() -> None:
    first = [layer.name for layer in model_cost(pool_first(MIXED)).layers if layer.name.startswith("conv")]
    assert first == ["conv1", "conv1.pool", "conv1.bn", "conv1.act",
                     "conv2", "conv2.bn", "conv2.act",
                     "conv3", "conv3.bn", "conv3.act", "conv3.add", "conv3.pool",
                     "conv4", "conv4.pool", "conv4.bn", "conv4.act",
                     "conv5", "conv5.bn", "conv5.act", "conv5.add"]


def test_residual_blocks_are_unchanged() -> None:
    plain, first = rows(PLAIN["best"]), rows(pool_first(PLAIN["best"]))
    for name in ("conv3", "conv5"):  # best's pooled residual blocks
        for part in ("", ".bn", ".act", ".add", ".pool"):
            assert first[name + part] == plain[name + part]
    assert first["conv1.bn"].elementwise == plain["conv1.bn"].elementwise // 4 == 2 * 21 * 16 * 16


# --------------------------------------------------------------------------- (c) shapes against the real net


def executed_leaves(cfg: ArchConfig, shape: tuple[int, int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(cost-table name, output shape) of every non-Identity module of the conv stage, in the order it ran."""
    model = build_model(cfg, shape, 10).eval()
    seen: list[tuple[str, tuple[int, ...]]] = []
    for i, unit in enumerate(model.features, 1):
        for part in ("conv", "pool", "bn", "act"):
            module = getattr(unit, part)
            if not isinstance(module, nn.Identity):
                name = f"conv{i}" if part == "conv" else f"conv{i}.{part}"
                module.register_forward_hook(lambda _m, _i, out, name=name: seen.append((name, tuple(out.shape[1:]))))
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    return seen


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_cost_rows_equal_the_modules_as_they_run(shape, batchnorm) -> None:
    cfg = dataclasses.replace(pool_first(MIXED), batchnorm=batchnorm)
    table = [(layer.name, layer.out_shape) for layer in model_cost(cfg, shape, 10).layers
             if layer.name.startswith("conv") and not layer.name.endswith(".add")]
    assert executed_leaves(cfg, shape) == table


@pytest.mark.parametrize("cfg", [pool_first(MIXED), pool_first(PLAIN["fast"]), pool_first(PLAIN["best"])],
                         ids=["mixed", "fast", "best"])
def test_torchinfo_and_feature_maps_agree_with_the_cost_table(cfg) -> None:
    cost = model_cost(cfg)
    summary = torchinfo_summary(cfg)
    assert (summary.total_params, summary.mult_adds) == (cost.params, cost.torchinfo_mult_adds)
    # torchinfo lists the conv stage's leaf modules as they ran: the cost table's rows (but the skip's Add).
    listed = [(r["type"], r["output shape"]) for _, r in summary.rows.iterrows() if r["layer"].startswith("features")]
    expected = [(layer.kind, " × ".join(map(str, layer.out_shape))) for layer in cost.layers
                if layer.name.startswith("conv") and layer.kind != "Add"]
    assert listed == expected
    # The Inspect page's per-block maps: the last row of each block.
    model = build_model(cfg).eval()
    maps = net.feature_maps(model, torch.zeros(3, 32, 32, dtype=torch.uint8), [0.5] * 3, [0.25] * 3)
    last = {layer.name.split(".")[0]: layer.out_shape for layer in cost.layers if layer.name.startswith("conv")}
    assert [(name, tuple(t.shape)) for name, t in maps] == list(last.items())


# --------------------------------------------------------------------------------------- (d) stored forms


def test_round_trip_and_old_dicts_load_with_pool_first_off() -> None:
    cfg = pool_first(MIXED)
    assert cfg.to_dict()["pool_first"] is True
    assert ArchConfig.from_dict(cfg.to_dict()) == cfg
    assert ArchConfig.from_json(cfg.to_json()) == cfg
    old = MIXED.to_dict()
    del old["pool_first"]
    loaded = ArchConfig.from_dict(old)
    assert loaded.pool_first is False and loaded == MIXED


def test_checkpoints_keep_the_order_and_old_ones_load_as_before(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model(pool_first(PLAIN["fast"])).eval()
    randomize_batchnorm(model)
    path = save_checkpoint(tmp_path / "new", model, {})
    loaded = load_checkpoint(path)
    assert loaded.arch.pool_first and loaded.model.features[0].pool_first
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model(x))
    # A checkpoint written before the toggle existed: no pool_first key in its architecture.
    data = path.read_bytes()
    meta = json.loads(json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]["explorer"])
    del meta["arch"]["pool_first"]
    old = tmp_path / "old.safetensors"
    old.write_bytes(st_save(st_load(data), metadata={"explorer": json.dumps(meta)}))
    assert load_checkpoint(old).arch == PLAIN["fast"]
    assert not any(u.pool_first for u in load_checkpoint(old).model.features)


# ------------------------------------------------------------------------------- (e) what a person sees


def test_the_diagram_shows_the_pooling_before_batchnorm() -> None:
    blocks = {b.name: b for b in diagram_blocks(model_cost(pool_first(PLAIN["fast"])))}
    assert blocks["conv1"].rows == ("Conv2d",) and blocks["conv1"].shape == (26, 32, 32)
    assert blocks["conv1.pool"].rows == ("MaxPool2d", "BatchNorm2d", "GELU")
    assert blocks["conv1.pool"].params == 2 * 26 and blocks["conv1"].params == 26 * 3 * 9 + 26
    assert blocks["conv4"].rows == ("Conv2d", "BatchNorm2d", "GELU")  # not pooled: as before
    svg = diagram_svg(model_cost(pool_first(PLAIN["fast"])))
    assert "conv1.pool: MaxPool2d → BatchNorm2d → GELU · output 26×16×16 · 52 parameters" in svg
    plain = {b.name: b for b in diagram_blocks(model_cost(PLAIN["fast"]))}
    assert plain["conv1"].rows == ("Conv2d", "BatchNorm2d", "GELU") and plain["conv1.pool"].rows == ("MaxPool2d",)
    best = {b.name: b for b in diagram_blocks(model_cost(pool_first(PLAIN["best"])))}
    assert best["conv3"].rows == ("Conv2d", "BatchNorm2d", "GELU", "Add") and best["conv3"].residual


def test_the_design_line_says_pool_first_only_when_on() -> None:
    assert architecture_line(pool_first(PLAIN["fast"]).to_dict()).endswith("gelu · BatchNorm · pool first")
    assert "pool first" not in architecture_line(PLAIN["fast"].to_dict())
    old = PLAIN["fast"].to_dict()
    del old["pool_first"]  # a run record from before the toggle
    assert architecture_line(old) == architecture_line(PLAIN["fast"].to_dict())


class _Trial:
    """Answers every categorical with its last choice and every range with its low end."""

    def __init__(self) -> None:
        self.asked: dict = {}

    def suggest_categorical(self, name, choices):
        self.asked[name] = choices
        return choices[-1]

    def suggest_int(self, name, low, high, **_):
        return low

    def suggest_float(self, name, low, high, **_):
        return low


def test_the_search_around_a_design_tries_both_orders() -> None:
    space = space_around("fast")
    assert space["arch"]["pool_first"] == {"choices": [False, True]}
    trial = _Trial()
    arch, _ = sample(trial, space)
    assert trial.asked["pool_first"] == [False, True] and arch.pool_first is True
