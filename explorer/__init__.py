"""Architecture Explorer: design small CNNs under a parameter budget, see their cost, train and compare them."""

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.cost import DEFAULT_BUDGET, ModelCost, fit_to_budget, model_cost
from explorer.arch.model import build_model
from explorer.arch.presets import PRESETS
from explorer.engine.config import TrainConfig
from explorer.engine.recipes import RECIPES
from explorer.errors import CheckpointError, ConfigError, DataError, ExplorerError, TrainingError

__all__ = [
    "ArchConfig", "ConvBlock", "TrainConfig", "ModelCost", "model_cost", "fit_to_budget", "build_model",
    "PRESETS", "RECIPES", "DEFAULT_BUDGET", "ExplorerError", "ConfigError", "DataError", "TrainingError",
    "CheckpointError",
]
