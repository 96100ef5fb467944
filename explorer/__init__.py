"""Architecture Explorer: design small CNNs under a parameter budget, see their cost, train and compare them."""

from explorer.config import ArchConfig, ConvBlock, TrainConfig
from explorer.cost import DEFAULT_BUDGET, ModelCost, fit_to_budget, model_cost
from explorer.errors import CheckpointError, ConfigError, DataError, ExplorerError, TrainingError
from explorer.model import build_model
from explorer.presets import PRESETS, RECIPES

__all__ = [
    "ArchConfig", "ConvBlock", "TrainConfig", "ModelCost", "model_cost", "fit_to_budget", "build_model",
    "PRESETS", "RECIPES", "DEFAULT_BUDGET", "ExplorerError", "ConfigError", "DataError", "TrainingError",
    "CheckpointError",
]
