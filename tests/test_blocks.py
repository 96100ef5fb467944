"""The block vocabulary (block types, groups, dilation, squeeze-excitation, norms, Mish): the shape plan, the
model built from it and the analytic cost, checked against numel, FlopCounterMode and torchinfo."""

import pytest
import torch
import torchinfo
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from explorer import ArchConfig, ConfigError, ConvBlock, build_model, model_cost
from explorer.arch.config import ACTIVATIONS, BLOCKS, HEADS, NORMS
from explorer.arch.plan import layer_shapes

VALID = {"checked": 0}  # how many configs the exactness test really built (hypothesis may reject some)


def measured(cfg: ArchConfig, input_shape: tuple[int, int, int], classes: int) -> tuple[int, int, int]:
    """(numel of the parameters, FlopCounterMode FLOPs, torchinfo mult-adds) of the built model at batch 1."""
    model = build_model(cfg, input_shape, classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.zeros(1, *input_shape))
    assert out.shape == (1, classes)
    stats = torchinfo.summary(model, input_size=(1, *input_shape), device="cpu", verbose=0, mode="eval")
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops(), stats.total_mult_adds


@st.composite
def new_blocks(draw) -> ConvBlock:
    kind = draw(st.sampled_from(BLOCKS))
    depthwise_only = kind in ("inverted", "convnext")
    return ConvBlock(
        out_channels=4 * draw(st.integers(1, 6)),
        kernel=draw(st.sampled_from((1, 3, 5, 7))),
        padding="same" if kind != "plain" else draw(st.sampled_from(("same", "valid"))),
        stride=draw(st.sampled_from((1, 2))),
        pool=draw(st.sampled_from(("none", "max", "avg"))),
        block=kind,
        groups=draw(st.sampled_from((1, 0) if depthwise_only else (1, 2, 4, 0))),
        dilation=draw(st.sampled_from((1, 2, 3))),
        expand=draw(st.integers(1, 4)),
        se=draw(st.sampled_from((0.0, 0.25, 0.5))),
        norm=draw(st.sampled_from([n for n in NORMS if not (kind == "convnext" and n == "none")])),
    )


@st.composite
def configs(draw) -> tuple[ArchConfig, tuple[int, int, int], int]:
    cfg = ArchConfig(
        conv=tuple(draw(st.lists(new_blocks(), min_size=1, max_size=4))),
        fc=tuple(draw(st.lists(st.integers(1, 32), max_size=1))),
        batchnorm=draw(st.booleans()),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        pool_first=draw(st.booleans()),
        head=draw(st.sampled_from(HEADS)),
    )
    shape = (draw(st.sampled_from((1, 3, 4))), draw(st.integers(6, 24)), draw(st.integers(6, 24)))
    return cfg, shape, draw(st.integers(2, 10))


@settings(max_examples=130, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(configs())
def test_new_blocks_cost_exactly_what_pytorch_counts(case) -> None:
    cfg, shape, classes = case
    try:
        cfg.validate(shape)
    except ConfigError:
        assume(False)
    cost = model_cost(cfg, shape, classes)
    assert (cost.params, cost.flops, cost.torchinfo_mult_adds) == measured(cfg, shape, classes)
    VALID["checked"] += 1


def test_the_exactness_test_checked_at_least_100_configs() -> None:
    """Runs after the hypothesis test in this file (pytest keeps file order): the goal is >= 100 mutated configs."""
    if VALID["checked"] == 0:
        pytest.skip("run the whole file: the count comes from the hypothesis test above")
    assert VALID["checked"] >= 100


def _cfg(*blocks: ConvBlock, **net) -> ArchConfig:
    return ArchConfig(conv=blocks, head="avgpool", **net)


def test_every_block_type_has_its_layers_and_a_skip_where_it_should() -> None:
    plans = layer_shapes(_cfg(ConvBlock(16), ConvBlock(32, block="basic", stride=2),
                              ConvBlock(32, block="bottleneck"), ConvBlock(32, block="inverted", expand=2),
                              ConvBlock(48, block="convnext")), (3, 16, 16))
    kinds = [[layer.op for layer in plan.main] for plan in plans]
    assert kinds[1] == ["conv", "act", "conv"]  # no BatchNorm toggle: norm auto is none
    assert kinds[2] == ["conv", "act", "conv", "act", "conv"]
    assert [layer.module for layer in plans[3].main] == ["conv", "act", "conv2", "act2", "conv3"]
    assert plans[3].main[2].groups == 64  # depthwise on 32 x 2 channels
    assert [layer.op for layer in plans[4].main] == ["conv", "norm", "conv", "act", "conv"]
    assert plans[4].main[1].variant == "layer"  # convnext's auto norm
    assert plans[0].shortcut is None
    assert [layer.name for layer in plans[1].shortcut] == ["conv2.proj"]  # 16 -> 32 channels, stride 2
    assert plans[2].shortcut == () and plans[3].shortcut == ()  # identity: the shape is kept
    assert [layer.name for layer in plans[4].shortcut] == ["conv5.proj", "conv5.proj_norm"]  # 32 -> 48
    assert plans[1].out_shape == (32, 8, 8) and plans[4].out_shape == (48, 8, 8)


def test_basic_block_matches_a_hand_counted_resnet_block() -> None:
    # 16 -> 32 channels, stride 2 on 3 x 8 x 8 after a 16-channel stem: conv 16*32*9, conv 32*32*9, proj 16*32,
    # three BatchNorms of 32 (2 x 32 each), no conv biases (a norm follows each).
    cfg = _cfg(ConvBlock(16, kernel=1), ConvBlock(32, block="basic", stride=2), batchnorm=True)
    cost = model_cost(cfg, (3, 8, 8), 10)
    block = sum(layer.params for layer in cost.layers if layer.name.startswith("conv2"))
    assert block == 16 * 32 * 9 + 32 * 32 * 9 + 16 * 32 + 3 * 2 * 32
    macs = sum(layer.macs for layer in cost.layers if layer.name.startswith("conv2"))
    assert macs == 4 * 4 * (32 * 16 * 9 + 32 * 32 * 9 + 32 * 16)


def test_squeeze_excitation_costs_its_two_small_layers() -> None:
    base, se = (model_cost(_cfg(ConvBlock(32, se=ratio)), (3, 8, 8)) for ratio in (0.0, 0.25))
    assert se.params - base.params == (32 * 8 + 8) + (8 * 32 + 32)
    assert se.macs - base.macs == 2 * 32 * 8


def test_groups_and_dilation_change_params_and_shape_as_expected() -> None:
    depthwise = model_cost(_cfg(ConvBlock(8, kernel=1), ConvBlock(8, groups="depthwise")), (3, 8, 8))
    dense = model_cost(_cfg(ConvBlock(8, kernel=1), ConvBlock(8)), (3, 8, 8))
    assert dense.params - depthwise.params == 8 * 8 * 9 - 8 * 9
    # dilation 2 with 'valid' padding: a 3x3 kernel spans 5 pixels, 8 -> 4
    assert layer_shapes(_cfg(ConvBlock(4, padding="valid", dilation=2)), (3, 8, 8))[0].out_shape == (4, 4, 4)
    assert layer_shapes(_cfg(ConvBlock(4, dilation=3)), (3, 8, 8))[0].out_shape == (4, 8, 8)


@pytest.mark.parametrize("blocks, message", [
    ((ConvBlock(6), ConvBlock(8, groups=4)), r"conv2 groups: 4 groups do not divide the k×k conv's 6 input"),
    ((ConvBlock(8, block="convnext", norm="none"),), r"conv1 norm: a convnext block needs a norm"),
    ((ConvBlock(8, block="basic", padding="valid"),), r"conv1 padding: a basic block needs padding 'same'"),
    ((ConvBlock(8), ConvBlock(8, groups=0, stride=2, pool="max"), ConvBlock(8, groups=0, stride=2, pool="max")),
     r"conv3: max-pooling a 1x1 map leaves nothing"),
    ((ConvBlock(8, kernel=7, padding="valid", dilation=3),), r"conv1: the 8x8 feature map is smaller than its 7x7 "
                                                             r"kernel \(dilated to 19x19\)"),
])
def test_impossible_blocks_get_one_message_naming_the_field_and_the_fix(blocks, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(*blocks).validate((3, 8, 8))


def test_depthwise_is_a_word_for_groups_zero_in_json_and_flags() -> None:
    from explorer import schema

    cfg = ArchConfig.from_dict({"conv": [{"out_channels": 8, "groups": "depthwise"}]})
    assert cfg.conv[0].groups == 0 and cfg.to_dict()["conv"][0]["groups"] == 0
    assert ConvBlock(8, groups="depthwise") == cfg.conv[0]
    assert schema.parse_text(schema.spec_of(ConvBlock, "groups"), "depthwise") == 0
    with pytest.raises(ConfigError, match="conv1 groups"):
        ArchConfig.from_dict({"conv": [{"out_channels": 8, "groups": "pointwise"}]})


def test_residual_on_a_block_with_its_own_skip_changes_nothing() -> None:
    with_switch = _cfg(ConvBlock(8), ConvBlock(16, block="basic", residual=True))
    assert model_cost(with_switch) == model_cost(_cfg(ConvBlock(8), ConvBlock(16, block="basic")))
    # the k x k conv of inverted and convnext blocks is depthwise whatever groups says
    for kind in ("inverted", "convnext"):
        assert model_cost(_cfg(ConvBlock(8), ConvBlock(16, block=kind, groups=2))) == model_cost(
            _cfg(ConvBlock(8), ConvBlock(16, block=kind)))


def test_old_configs_keep_their_defaults_and_their_meaning() -> None:
    old = {"conv": [{"out_channels": 8, "kernel": 3, "padding": "same", "stride": 1, "pool": "max",
                     "residual": False}], "fc": [], "batchnorm": True, "dropout": 0.0, "dropout_conv": False,
           "activation": "gelu", "head": "maxpool"}
    cfg = ArchConfig.from_dict(old)
    block = cfg.conv[0]
    assert (block.block, block.groups, block.dilation, block.se, block.norm) == ("plain", 1, 1, 0.0, "auto")
    assert list(build_model(cfg, (3, 8, 8)).state_dict()) == [
        "features.0.conv.weight", "features.0.conv.bias", "features.0.bn.weight", "features.0.bn.bias",
        "features.0.bn.running_mean", "features.0.bn.running_var", "features.0.bn.num_batches_tracked",
        "classifier.0.weight", "classifier.0.bias"]


@pytest.mark.parametrize("norm", ["batch", "layer", "group", "none"])
def test_each_norm_is_the_module_it_names(norm: str) -> None:
    model = build_model(_cfg(ConvBlock(16, block="basic", norm=norm)), (3, 8, 8))
    kinds = {type(m).__name__ for m in model.features[0].modules()}
    expected = {"batch": "BatchNorm2d", "layer": "LayerNorm2d", "group": "GroupNorm", "none": None}[norm]
    assert (expected in kinds) if expected else not kinds & {"BatchNorm2d", "LayerNorm2d", "GroupNorm"}
    if norm == "layer":  # channels-last LayerNorm: each position's channels have mean 0, std 1 (before scale)
        ln = model.features[0].norm
        y = ln(torch.randn(2, 16, 4, 4) * 3 + 1)
        assert torch.allclose(y.mean(1), torch.zeros(2, 4, 4), atol=1e-5)


def test_a_checkpoint_saved_by_main_before_the_new_blocks_loads_and_predicts_the_same() -> None:
    """tests/data/main-2026-12-05.*: saved by main at 94c9815 (pool first, a residual block, BatchNorm, dropout)."""
    import json
    from pathlib import Path

    from explorer.store.checkpoint import load_checkpoint

    data = Path(__file__).parent / "data"
    expected = json.loads((data / "main-2026-12-05.logits.json").read_text())
    loaded = load_checkpoint(data / "main-2026-12-05.safetensors")
    assert all(b.block == "plain" and b.norm == "auto" for b in loaded.arch.conv)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = loaded.model.eval()(x)
    assert torch.allclose(logits, torch.tensor(expected["logits"]), atol=1e-6)
    assert model_cost(loaded.arch, (3, 16, 16), 4).params == expected["params"]


def test_fit_to_budget_keeps_groups_dividing_the_widths() -> None:
    from explorer import fit_to_budget

    cfg = _cfg(ConvBlock(16), ConvBlock(32, groups=4), ConvBlock(64, groups="depthwise", block="basic"),
               ConvBlock(64, block="bottleneck", groups=2, expand=2), ConvBlock(96, block="inverted"))
    assert model_cost(cfg, (3, 16, 16)).params > 40_000
    fitted = fit_to_budget(cfg, budget=20_000, input_shape=(3, 16, 16))
    assert 15_000 < model_cost(fitted, (3, 16, 16)).params <= 20_000
    widths = [b.out_channels for b in fitted.conv]
    assert widths[0] < 16 and widths[0] % 4 == 0 and widths[1] % 4 == 0  # conv2's 4 groups split both
    assert widths[2] == 2 * widths[1] and widths[3] % 4 == 0  # depthwise x 2; bottleneck: 2 groups x expand 2


VOCABULARY_NET = ArchConfig(
    conv=(ConvBlock(8, block="basic", norm="batch", se=0.25), ConvBlock(16, block="bottleneck", stride=2, groups=2,
                                                                       expand=2, norm="group"),
          ConvBlock(16, block="inverted", expand=2, dilation=2, pool="avg"), ConvBlock(24, block="convnext", kernel=7),
          ConvBlock(24, groups="depthwise", norm="layer", pool="max")),
    activation="mish", head="avgpool", fc=(12,))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_every_new_block_exports_and_predicts_what_the_checkpoint_does(tmp_path, fmt: str) -> None:
    pytest.importorskip("onnxruntime")
    from explorer.inspect.export import check_images, export_model
    from explorer.store.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = build_model(VOCABULARY_NET, (3, 16, 16), 4)
    path = save_checkpoint(tmp_path / "ckpt", model, {"data": "synthetic:64", "classes": list("abcd")})
    loaded = load_checkpoint(path)
    result = export_model(loaded, fmt, check_images(loaded), "net." + fmt)
    assert result.check.agree == 64 and result.check.max_abs_diff < 1e-4
    assert "bottleneck, 2 groups, expand 2, group norm" in result.card and "inverted" in result.card


def test_the_diagram_draws_one_box_per_block_with_skips_and_projections() -> None:
    from explorer.ui.arch_diagram import diagram_blocks, diagram_svg

    cost = model_cost(VOCABULARY_NET, (3, 16, 16), 4)
    blocks = {b.name: b for b in diagram_blocks(cost)}
    assert [n for n in blocks if n.startswith("conv")] == ["conv1", "conv2", "conv3", "conv3.pool", "conv4", "conv5",
                                                          "conv5.pool"]
    assert sum(b.params for b in blocks.values()) == cost.params  # every row's parameters are in some box
    # conv1: 3 -> 8 channels (projected); conv2: stride 2 (projected); conv3 keeps its shape (identity skip)
    assert [(blocks[n].residual, blocks[n].projection) for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [
        (True, True), (True, True), (True, False), (True, True), (False, False)]
    assert blocks["conv2"].shape == (16, 8, 8) and blocks["conv1"].shape == (8, 16, 16)  # not the SE's squeeze
    svg = diagram_svg(cost)
    assert svg.count('class="skip"') == 4 and svg.count('data-projection="true"') == 3


def test_a_link_carries_the_new_blocks_and_training_vocabulary() -> None:
    from explorer import RECIPES
    from explorer.ui.links import Design, decode, encode

    train = RECIPES["fast"].replace(mixup=0.4, mix_ramp_epochs=3, rotate=15.0, cutout=8, color_jitter=0.2,
                                    sharpen=1.0, optimizer="adamw", schedule="cosine", warmup_epochs=1.0)
    design = Design(arch=VOCABULARY_NET, train=train, preset=None, recipe=None)
    back = decode(encode(design))
    assert back.arch == VOCABULARY_NET and back.train == train


def test_a_search_over_the_new_vocabulary_samples_nets_that_build_as_costed() -> None:
    import optuna

    from explorer.search.space import check_space, sample, space_around

    space = space_around("fast")
    space["arch"] |= {"block": {"choices": list(BLOCKS)}, "groups": {"choices": [1, 0, 2]},
                      "dilation": {"choices": [1, 2]}, "expand": {"low": 1, "high": 4}, "se": {"low": 0.0, "high": 0.5},
                      "norm": {"choices": ["auto", "layer", "group"]}, "activation": {"choices": ["gelu", "mish"]}}
    space["train"] |= {"mixup": {"low": 0.0, "high": 1.0}, "cutout": {"low": 0, "high": 16},
                       "rotate": {"low": 0.0, "high": 20.0}}
    check_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    built, kinds = 0, set()
    for _ in range(40):
        trial = study.ask()
        try:
            arch, train = sample(trial, space, epochs=2)
            cost = model_cost(arch)  # the analytic rejection: a ConfigError here is a rejected trial
        except ConfigError:
            study.tell(trial, 0.0)
            continue
        study.tell(trial, 0.0)
        assert 0.0 <= train.mixup <= 1.0 and 0 <= train.cutout <= 16
        model = build_model(arch)
        assert sum(p.numel() for p in model.parameters()) == cost.params
        kinds |= {b.block for b in arch.conv}
        built += 1
    assert built >= 10 and len(kinds) >= 3  # the rest: groups that do not divide a sampled width (rejected)


def test_pool_first_changes_only_plain_blocks() -> None:
    cfg = _cfg(ConvBlock(8, pool="max"), ConvBlock(16, block="basic", pool="max"), batchnorm=True, pool_first=True)
    plans = layer_shapes(cfg, (3, 16, 16))
    assert plans[0].main[1].op == "pool"  # plain: conv -> pool -> bn -> act
    assert [layer.op for layer in plans[1].post] == ["act", "pool"] and plans[1].out_shape == (16, 4, 4)
