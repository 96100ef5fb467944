"""The analytic cost model against PyTorch's own counters: numel, FlopCounterMode and torchinfo."""

import pytest
import torch
import torchinfo
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from explorer import PRESETS, ArchConfig, ConfigError, ConvBlock, build_model, fit_to_budget, model_cost
from explorer.arch.config import ACTIVATIONS, HEADS, KERNELS, PADDINGS, POOLS

# (params, FlopCounterMode FLOPs) of the study's networks: DESIGN.md's test vectors and the study's summaries.
STUDY_VECTORS = {
    "tutorial": (62_006, 1_303_440),
    "study-wide": (267_530, 14_430_464),
    "study-2-2": (163_860, 9_451_000),
    "study-bn": (164_310, 9_451_000),
    "study-bn-dropout": (164_310, 9_451_000),
}


def measured(cfg: ArchConfig, input_shape=(3, 32, 32), num_classes=10) -> tuple[int, int]:
    model = build_model(cfg, input_shape, num_classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


@pytest.mark.parametrize("name", sorted(STUDY_VECTORS))
def test_study_networks_match_the_study(name: str) -> None:
    cost = model_cost(PRESETS[name])
    assert (cost.params, cost.flops) == STUDY_VECTORS[name]


def test_tutorial_net_detail() -> None:
    cost = model_cost(PRESETS["tutorial"])
    assert cost.macs == 651_720
    assert cost.torchinfo_mult_adds == 658_238
    # ReLU: 1 comparison per element; 2x2 max-pool: 3 per output.
    relu = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84
    pool = 3 * (6 * 14 * 14 + 16 * 5 * 5)
    assert cost.comparisons == relu + pool
    assert cost.multiplications == cost.macs
    assert cost.additions == cost.macs  # K-1 adds per dot product + 1 bias add
    assert cost.within_budget and cost.remaining == 256_000 - 62_006


def test_budget_flags_the_wide_net() -> None:
    cost = model_cost(PRESETS["study-wide"])
    assert not cost.within_budget and cost.remaining == 256_000 - 267_530
    assert model_cost(PRESETS["study-wide"], budget=300_000).within_budget


def test_batchnorm_params_and_buffers() -> None:
    bn, plain = model_cost(PRESETS["study-bn"]), model_cost(PRESETS["study-2-2"])
    assert bn.params - plain.params == 2 * (25 + 50 + 100 + 50)
    assert bn.buffers == sum(b.numel() for b in build_model(PRESETS["study-bn"]).buffers())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_matches_numel_flopcounter_and_torchinfo(name: str) -> None:
    cfg = PRESETS[name]
    cost = model_cost(cfg)
    assert (cost.params, cost.flops) == measured(cfg)
    stats = torchinfo.summary(build_model(cfg), input_size=(1, 3, 32, 32), device="cpu", verbose=0)
    assert cost.torchinfo_mult_adds == stats.total_mult_adds
    assert cost.params == stats.trainable_params


blocks = st.builds(
    ConvBlock,
    out_channels=st.integers(1, 24),
    kernel=st.sampled_from(KERNELS),
    padding=st.sampled_from(PADDINGS),
    stride=st.sampled_from((1, 2)),
    pool=st.sampled_from(POOLS),
)


@st.composite
def configs(draw) -> tuple[ArchConfig, tuple[int, int, int], int]:
    conv = []
    for block in draw(st.lists(blocks, min_size=1, max_size=4)):
        if conv and draw(st.integers(0, 3)) == 0:
            # A residual block copies its predecessor's width and keeps the shape.
            block = ConvBlock(conv[-1].out_channels, kernel=block.kernel, pool=block.pool, residual=True)
        conv.append(block)
    cfg = ArchConfig(
        conv=tuple(conv),
        fc=tuple(draw(st.lists(st.integers(1, 48), max_size=3))),
        batchnorm=draw(st.booleans()),
        dropout=draw(st.sampled_from((0.0, 0.3))),
        dropout_conv=draw(st.booleans()),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        pool_first=draw(st.booleans()),
        head=draw(st.sampled_from(HEADS)),
    )
    shape = (draw(st.integers(1, 3)), draw(st.integers(4, 40)), draw(st.integers(4, 40)))
    return cfg, shape, draw(st.integers(2, 12))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(configs())
def test_random_configs_match_numel_and_flopcounter(case) -> None:
    cfg, shape, classes = case
    try:
        cfg.validate(shape)
    except ConfigError:
        assume(False)
    cost = model_cost(cfg, shape, classes)
    assert (cost.params, cost.flops) == measured(cfg, shape, classes)
    assert cost.layers[-1].out_shape == (classes,)


def test_fit_to_budget_scales_to_the_largest_net_within() -> None:
    fitted = fit_to_budget(PRESETS["study-wide"], budget=256_000)
    params = model_cost(fitted).params
    assert params <= 256_000
    # One more channel on every layer would not fit: it is the largest uniform scaling.
    assert model_cost(fitted.scaled(1.05)).params > 256_000
    assert params > 240_000
    grown = fit_to_budget(PRESETS["tutorial"], budget=256_000)
    assert 200_000 < model_cost(grown).params <= 256_000


def test_fit_to_budget_refuses_what_cannot_fit() -> None:
    with pytest.raises(ConfigError, match="over the budget"):
        fit_to_budget(PRESETS["tutorial"], budget=100, input_shape=(3, 32, 32))
