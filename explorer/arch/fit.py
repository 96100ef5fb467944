"""Fitting a network to a parameter budget by its largest contributors, and what a fit changed.

`cost.fit_to_budget` scales every width by one factor, so a net that is over budget because of one wide layer
(fc1 = 2,000) loses its narrow convolutions too. `fit_largest` shrinks, step by step, the width whose cut saves
the most parameters (locked layers never change), so the layer that caused the overrun takes the cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from explorer.arch.config import ArchConfig
from explorer.arch.cost import DEFAULT_BUDGET, model_cost
from explorer.errors import ConfigError

STEP = 0.9  # each greedy step cuts one width by 10 %: small enough that the cut lands on the largest contributor


@dataclass(frozen=True)
class WidthChange:
    layer: str
    before: int
    after: int

    def __str__(self) -> str:
        return f"{self.layer} {self.before:,} → {self.after:,} ({self.after / self.before - 1:+.0%})"


def widths(cfg: ArchConfig) -> dict[str, int]:
    """Every width by layer name: conv1.., fc1.. (the names of the cost table)."""
    named = {f"conv{i}": b.out_channels for i, b in enumerate(cfg.conv, 1)}
    return named | {f"fc{i}": units for i, units in enumerate(cfg.fc, 1)}


def with_widths(cfg: ArchConfig, new: dict[str, int]) -> ArchConfig:
    """`cfg` with the widths of `new` (layer name -> width); layers not named keep theirs."""
    conv = tuple(dataclasses.replace(b, out_channels=new.get(f"conv{i}", b.out_channels))
                 for i, b in enumerate(cfg.conv, 1))
    fc = tuple(new.get(f"fc{i}", units) for i, units in enumerate(cfg.fc, 1))
    return dataclasses.replace(cfg, conv=conv, fc=fc)


def width_changes(before: ArchConfig, after: ArchConfig) -> list[WidthChange]:
    """The widths a fit changed, in layer order (same layout of blocks and FC layers)."""
    old, new = widths(before), widths(after)
    return [WidthChange(name, old[name], new[name]) for name in old if name in new and old[name] != new[name]]


def _tied_groups(cfg: ArchConfig) -> list[list[str]]:
    """Layers that must share one width: a residual block keeps its input's channel count."""
    groups: list[list[str]] = []
    for i, block in enumerate(cfg.conv, 1):
        if block.residual and i > 1:
            groups[-1].append(f"conv{i}")
        else:
            groups.append([f"conv{i}"])
    return groups + [[f"fc{i}"] for i in range(1, len(cfg.fc) + 1)]


def fit_largest(cfg: ArchConfig, budget: int = DEFAULT_BUDGET, input_shape: tuple[int, int, int] = (3, 32, 32),
                num_classes: int = 10, locked: Collection[str] = ()) -> ArchConfig:
    """`cfg` within `budget` by cutting the widths that save the most parameters first, 10 % at a time; the
    last cut is refined to the widest value that fits. Locked layers (names such as 'conv1', 'fc1') keep their
    width; a net already within the budget is returned unchanged. ConfigError when no cut can reach the budget."""
    def params(current: dict[str, int]) -> int:
        return model_cost(with_widths(cfg, current), input_shape, num_classes).params

    current = widths(cfg)
    groups = [g for g in _tied_groups(cfg) if not set(g) & set(locked)]
    while (total := params(current)) > budget:
        cuts = [(total - params(trial), trial) for trial in (_cut(current, g) for g in groups) if trial]
        if not cuts:
            raise ConfigError(f"with every unlocked width at 1 this network still has {total:,} parameters, over "
                              f"the budget of {budget:,}; unlock layers, use a global pooling head or more pooling, "
                              "or raise the budget.")
        _, trial = max(cuts, key=lambda cut: cut[0])
        current = _refined(current, trial, budget, params) if params(trial) <= budget else trial
    return with_widths(cfg, current)


def _cut(current: dict[str, int], group: list[str]) -> dict[str, int] | None:
    width = current[group[0]]
    if width <= 1:
        return None
    return current | dict.fromkeys(group, min(width - 1, int(width * STEP)))


def _refined(current: dict[str, int], trial: dict[str, int], budget: int, params) -> dict[str, int]:
    """The widest value between the last cut and the width before it that still fits (bisection)."""
    group = [name for name in trial if trial[name] != current[name]]
    low, high = trial[group[0]], current[group[0]]  # low fits, high does not
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if params(current | dict.fromkeys(group, mid)) <= budget else (low, mid)
    return current | dict.fromkeys(group, low)
