"""Training: configurations and recipes (config.py), and the Trainer loop with exact checkpoints (trainer.py)."""

from tinygrad_np.train.config import (
    NETWORKS,
    OPTIMIZERS,
    RECIPES,
    ConfigError,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    network_spec,
    recipe_config,
)
from tinygrad_np.train.trainer import (
    DIVERGENCE_THRESHOLD,
    DivergenceError,
    EpochPosition,
    EpochStats,
    LossFn,
    Trainer,
    TrainingInterrupted,
    evaluate,
    predict_proba,
    stop_on_signals,
)

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "NETWORKS",
    "OPTIMIZERS",
    "RECIPES",
    "ConfigError",
    "DivergenceError",
    "EpochPosition",
    "EpochStats",
    "LossFn",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "network_spec",
    "predict_proba",
    "recipe_config",
    "stop_on_signals",
]
