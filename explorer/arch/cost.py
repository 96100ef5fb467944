"""Analytic per-layer cost of an ArchConfig: params, MACs, op counts, memory, budget. No forward pass.

Conventions (batch 1, inference):
- MAC = one multiply-accumulate. Conv: out_elements * (in_ch / groups * kH * kW). Linear: in * out.
- FLOPs = 2 * (conv + linear MACs), as torch.utils.flop_counter.FlopCounterMode counts.
- multiplications / additions: conv and linear multiply-adds, bias adds, residual adds.
- comparisons: ReLU 1 per element, max-pool k*k-1 per output, global max-pool H*W-1 per channel.
- elementwise: BatchNorm (scale + shift, 2 per element), LayerNorm / GroupNorm (5 per element: mean, variance,
  normalize, scale, shift), other activations (1 per element, LeakyReLU's multiply), average pooling (k*k per
  output), squeeze-excitation's mean (1 per element) and sigmoid (1 per channel); its scaling is multiplications.
- torchinfo_mult_adds: what torchinfo reports as "Mult-Adds" at batch 1 (conv: params * H_out * W_out,
  other layers with parameters: their parameter count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import prod

from explorer.arch.config import ArchConfig
from explorer.arch.plan import LayerPlan, head_features, layer_shapes
from explorer.errors import ConfigError

BYTES_PER_FLOAT = 4
DEFAULT_BUDGET = 256_000
BUDGET_RANGE = (1_000, 100_000_000)  # what the sidebar and a link may set
# What may be built in this process at all, whatever the budget: a design (a link, the sidebar, a search trial,
# a checkpoint's metadata) is costed first, and one over these is never allocated (no model, summary, diagram).
MAX_BUILD_PARAMS = 50_000_000
MAX_BUILD_ACTIVATION_BYTES = 256 * 2**20  # one image's activations (a batch multiplies them)
MAX_BUILD_CLASSES = 10_000


class TooLargeToBuild(ConfigError):
    """A valid design too big to allocate here (parameters, activation memory or classes over the limits)."""


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    out_shape: tuple[int, ...]
    params: int = 0
    buffers: int = 0
    macs: int = 0
    multiplications: int = 0
    additions: int = 0
    comparisons: int = 0
    elementwise: int = 0
    torchinfo_mult_adds: int = 0

    @property
    def activation_bytes(self) -> int:
        return prod(self.out_shape) * BYTES_PER_FLOAT

    def to_dict(self) -> dict:
        return asdict(self) | {"out_shape": list(self.out_shape), "activation_bytes": self.activation_bytes}


@dataclass(frozen=True)
class ModelCost:
    layers: tuple[LayerCost, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    budget: int = DEFAULT_BUDGET
    totals: dict = field(default_factory=dict)

    def _sum(self, attr: str) -> int:
        return sum(getattr(layer, attr) for layer in self.layers)

    @property
    def params(self) -> int:
        return self._sum("params")

    @property
    def buffers(self) -> int:
        return self._sum("buffers")

    @property
    def macs(self) -> int:
        return self._sum("macs")

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def multiplications(self) -> int:
        return self._sum("multiplications")

    @property
    def additions(self) -> int:
        return self._sum("additions")

    @property
    def comparisons(self) -> int:
        return self._sum("comparisons")

    @property
    def elementwise(self) -> int:
        return self._sum("elementwise")

    @property
    def torchinfo_mult_adds(self) -> int:
        return self._sum("torchinfo_mult_adds")

    @property
    def param_bytes(self) -> int:
        return (self.params + self.buffers) * BYTES_PER_FLOAT

    @property
    def activation_bytes(self) -> int:
        """Sum of every layer's output at batch 1 (what a training step keeps for backward)."""
        return sum(layer.activation_bytes for layer in self.layers) + prod(self.input_shape) * BYTES_PER_FLOAT

    @property
    def within_budget(self) -> bool:
        return self.params <= self.budget

    @property
    def remaining(self) -> int:
        return self.budget - self.params

    def to_dict(self) -> dict:
        return {
            "params": self.params, "buffers": self.buffers, "macs": self.macs, "flops": self.flops,
            "multiplications": self.multiplications, "additions": self.additions,
            "comparisons": self.comparisons, "elementwise": self.elementwise,
            "torchinfo_mult_adds": self.torchinfo_mult_adds,
            "param_bytes": self.param_bytes, "activation_bytes": self.activation_bytes,
            "budget": self.budget, "within_budget": self.within_budget, "remaining": self.remaining,
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "layers": [layer.to_dict() | {"budget_share": layer.params / self.budget} for layer in self.layers],
        }


def _conv(name: str, layer: LayerPlan) -> LayerCost:
    out = layer.out_shape
    out_elems = prod(out)
    taps = layer.in_shape[0] // layer.groups * layer.kernel * layer.kernel  # inputs each output sums
    macs = out_elems * taps
    params = out[0] * taps + (out[0] if layer.bias else 0)
    # out*(K-1) additions inside the dot products + 1 bias add per output = MACs additions.
    return LayerCost(name, "Conv2d", out, params=params, macs=macs, multiplications=macs,
                     additions=macs if layer.bias else macs - out_elems, torchinfo_mult_adds=params * out[1] * out[2])


def _linear(name: str, n_in: int, n_out: int) -> LayerCost:
    params = n_in * n_out + n_out
    macs = n_in * n_out
    return LayerCost(name, "Linear", (n_out,), params=params, macs=macs, multiplications=macs, additions=macs,
                     torchinfo_mult_adds=params)


def _batchnorm(name: str, shape: tuple[int, ...]) -> LayerCost:
    c = shape[0]
    kind = "BatchNorm2d" if len(shape) == 3 else "BatchNorm1d"
    # running mean/var are buffers (+ num_batches_tracked, 1 element).
    return LayerCost(name, kind, shape, params=2 * c, buffers=2 * c + 1, elementwise=2 * prod(shape),
                     torchinfo_mult_adds=2 * c)


def _activation(name: str, activation: str, shape: tuple[int, ...]) -> LayerCost:
    n = prod(shape)
    if activation == "relu":
        return LayerCost(name, "ReLU", shape, comparisons=n)
    if activation == "leaky_relu":
        return LayerCost(name, "LeakyReLU", shape, comparisons=n, elementwise=n)
    return LayerCost(name, {"gelu": "GELU", "silu": "SiLU", "mish": "Mish"}[activation], shape, elementwise=n)


def _pool(name: str, pool: str, out: tuple[int, int, int]) -> LayerCost:
    n = prod(out)
    if pool == "max":
        return LayerCost(name, "MaxPool2d", out, comparisons=3 * n)
    return LayerCost(name, "AvgPool2d", out, elementwise=4 * n)


def _norm(layer: LayerPlan) -> LayerCost:
    if layer.variant == "batch":
        return _batchnorm(layer.name, layer.out_shape)
    c, n = layer.out_shape[0], prod(layer.out_shape)
    # LayerNorm / GroupNorm compute their statistics at inference too: mean, variance, normalize, scale, shift.
    kind = "LayerNorm2d" if layer.variant == "layer" else "GroupNorm"
    return LayerCost(layer.name, kind, layer.out_shape, params=2 * c, elementwise=5 * n, torchinfo_mult_adds=2 * c)


def _squeeze_excite(layer: LayerPlan) -> list[LayerCost]:
    """mean over H x W -> 1x1 conv C -> hidden -> ReLU -> 1x1 conv hidden -> C -> sigmoid -> scale the map."""
    c, hidden, n = layer.out_shape[0], layer.hidden, prod(layer.out_shape)
    squeezed = LayerPlan(layer.name, "", "conv", (c, 1, 1), (hidden, 1, 1))
    return [LayerCost(f"{layer.name}.mean", "Mean", (c,), elementwise=n),
            _conv(f"{layer.name}.reduce", squeezed),
            _activation(f"{layer.name}.act", "relu", (hidden, 1, 1)),
            _conv(f"{layer.name}.expand", LayerPlan(layer.name, "", "conv", (hidden, 1, 1), (c, 1, 1))),
            LayerCost(f"{layer.name}.gate", "Sigmoid", (c, 1, 1), elementwise=c),
            LayerCost(f"{layer.name}.scale", "Mul", layer.out_shape, multiplications=n)]


def _layer_rows(layer: LayerPlan) -> list[LayerCost]:
    if layer.op == "conv":
        return [_conv(layer.name, layer)]
    if layer.op == "norm":
        return [_norm(layer)]
    if layer.op == "act":
        return [_activation(layer.name, layer.variant, layer.out_shape)]
    if layer.op == "pool":
        return [_pool(layer.name, layer.variant, layer.out_shape)]
    if layer.op == "se":
        return _squeeze_excite(layer)
    return [LayerCost(layer.name, "Add", layer.out_shape, additions=prod(layer.out_shape))]


def _conv_stage(cfg: ArchConfig, input_shape: tuple[int, int, int]) -> list[LayerCost]:
    """The conv blocks' rows in the order their layers run, read from the shape plan."""
    return [row for plan in layer_shapes(cfg, input_shape) for layer in plan.layers for row in _layer_rows(layer)]


def _head(cfg: ArchConfig, input_shape: tuple[int, int, int]) -> list[LayerCost]:
    c, h, w = layer_shapes(cfg, input_shape)[-1].out_shape
    if cfg.head == "flatten":
        return []
    if cfg.head == "avgpool":
        return [LayerCost("head.avgpool", "AdaptiveAvgPool2d", (c,), elementwise=c * h * w)]
    return [LayerCost("head.maxpool", "AdaptiveMaxPool2d", (c,), comparisons=c * (h * w - 1))]


def _fc_stage(cfg: ArchConfig, input_shape: tuple[int, int, int], num_classes: int) -> list[LayerCost]:
    rows: list[LayerCost] = []
    width = head_features(cfg, input_shape)
    for i, units in enumerate(cfg.fc, 1):
        rows.append(_linear(f"fc{i}", width, units))
        if cfg.batchnorm:
            rows.append(_batchnorm(f"fc{i}.bn", (units,)))
        rows.append(_activation(f"fc{i}.act", cfg.activation, (units,)))
        width = units
    rows.append(_linear("output", width, num_classes))
    return rows


def model_cost(cfg: ArchConfig, input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10,
               budget: int = DEFAULT_BUDGET) -> ModelCost:
    """Per-layer and total cost of `cfg` on one image of `input_shape`; ConfigError if it cannot be built."""
    input_shape = tuple(input_shape)
    layers = _conv_stage(cfg, input_shape) + _head(cfg, input_shape) + _fc_stage(cfg, input_shape, num_classes)
    return ModelCost(tuple(layers), input_shape, num_classes, budget)


def fit_to_budget(cfg: ArchConfig, budget: int = DEFAULT_BUDGET, input_shape: tuple[int, int, int] = (3, 32, 32),
                  num_classes: int = 10) -> ArchConfig:
    """The largest uniform width scaling of `cfg` whose parameter count fits `budget` (bisection on the factor)."""
    def params(factor: float) -> int:
        return model_cost(cfg.scaled(factor), input_shape, num_classes).params

    low, high = 0.0, 1.0
    while params(high) <= budget and high < 64:
        low, high = high, high * 2
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if params(mid) <= budget else (low, mid)
    if low == 0.0:
        if params(1e-9) > budget:
            raise ConfigError(
                f"even with every width at 1 this network has {params(1e-9):,} parameters, over the budget of "
                f"{budget:,}; use a global pooling head, more pooling, or a larger budget.")
        low = 1e-9
    return cfg.scaled(low)


def build_refusal(cost: ModelCost) -> str | None:
    """Why the network `cost` describes must not be built here (it would take too much memory), else None.
    The one rule for every path that builds a model from user input."""
    if cost.num_classes > MAX_BUILD_CLASSES:
        return (f"{cost.num_classes:,} classes is over the limit of {MAX_BUILD_CLASSES:,}; explorer's networks are "
                "small classifiers.")
    if cost.params > MAX_BUILD_PARAMS:
        return (f"this network has {cost.params:,} parameters, over the limit of {MAX_BUILD_PARAMS:,} that may be "
                "built here. Use fewer or narrower layers.")
    if cost.activation_bytes > MAX_BUILD_ACTIVATION_BYTES:
        return (f"this network needs {cost.activation_bytes / 2**20:,.0f} MiB of activations per image, over the "
                f"limit of {MAX_BUILD_ACTIVATION_BYTES / 2**20:,.0f} MiB that may be built here. Use a smaller "
                "input, fewer channels at full resolution, or pool earlier.")
    return None


def buildable_cost(cfg: ArchConfig, input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10,
                   budget: int = DEFAULT_BUDGET) -> ModelCost:
    """model_cost, and TooLargeToBuild when build_refusal refuses the network (nothing is allocated)."""
    cost = model_cost(cfg, input_shape, num_classes, budget)
    refusal = build_refusal(cost)
    if refusal:
        raise TooLargeToBuild(refusal)
    return cost
