"""Optimizers and learning-rate schedules, in PyTorch's vocabulary."""

from tinygrad_np.optim.adam import Adam, AdamW
from tinygrad_np.optim.groups import param_groups
from tinygrad_np.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from tinygrad_np.optim.optimizer import Optimizer
from tinygrad_np.optim.rmsprop import RMSprop
from tinygrad_np.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "Optimizer",
    "RMSprop",
    "StepLR",
    "param_groups",
]
