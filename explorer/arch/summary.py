"""torchinfo summary of an ArchConfig as a pandas DataFrame (one row per leaf module) plus totals.

torchinfo facts that matter here: it moves the model to CUDA when `device` is None, so we always pass
"cpu"; its mult-adds count the batch dimension, so we use batch 1; `cache_forward_pass` caches by the
model's class name, which would make every config of our one Net class collide, so it stays off.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torchinfo import summary
from torchinfo.layer_info import LayerInfo

from explorer.arch.config import ArchConfig
from explorer.arch.model import build_model

COLUMNS = ["layer", "type", "output shape", "params", "mult-adds"]


@dataclass(frozen=True)
class SummaryTable:
    """torchinfo's view of one network at batch 1."""

    rows: pd.DataFrame
    total_params: int
    trainable_params: int
    mult_adds: int
    param_bytes: int
    # Forward + backward activation memory as torchinfo estimates it (2 x outputs of layers with params).
    forward_backward_bytes: int
    input_bytes: int


def _qualified_name(info: LayerInfo) -> str:
    """'features.0.conv' rather than torchinfo's bare 'conv', so rows can be told apart."""
    parts = []
    while info is not None and info.parent_info is not None:
        parts.append(info.var_name)
        info = info.parent_info
    return ".".join(reversed(parts))


def _leaf_rows(infos: list[LayerInfo]) -> pd.DataFrame:
    rows = [
        {
            "layer": _qualified_name(info),
            "type": info.class_name,
            # Drop the batch dimension: the table describes one image.
            "output shape": " × ".join(str(v) for v in info.output_size[1:]),
            "params": int(info.num_params),
            "mult-adds": int(info.macs),
        }
        for info in infos
        if info.is_leaf_layer and info.class_name != "Identity"
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def torchinfo_summary(cfg: ArchConfig, input_shape: tuple[int, int, int] = (3, 32, 32),
                      num_classes: int = 10) -> SummaryTable:
    """Run torchinfo on the built model (batch 1, CPU); ConfigError if the config cannot be built."""
    model = build_model(cfg, input_shape, num_classes)
    with torch.no_grad():
        stats = summary(model, input_size=(1, *input_shape), device="cpu", verbose=0, depth=8,
                        cache_forward_pass=False, mode="eval")
    return SummaryTable(
        rows=_leaf_rows(stats.summary_list),
        total_params=int(stats.total_params),
        trainable_params=int(stats.trainable_params),
        mult_adds=int(stats.total_mult_adds),
        param_bytes=int(stats.total_param_bytes),
        forward_backward_bytes=int(stats.total_output_bytes),
        input_bytes=int(stats.total_input),
    )
