"""Training: configurations and recipes (config.py), and the Trainer loop with exact checkpoints (trainer.py)."""

from tinygrad_np.train.config import (
    OPTIMIZERS,
    RECIPES,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
)
from tinygrad_np.train.trainer import (
    DIVERGENCE_THRESHOLD,
    DivergenceError,
    EpochStats,
    Trainer,
    TrainingInterrupted,
    evaluate,
    predict_proba,
    stop_on_sigint,
)

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "OPTIMIZERS",
    "RECIPES",
    "DivergenceError",
    "EpochStats",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "predict_proba",
    "stop_on_sigint",
]
