"""Learning-rate schedules, stepped once per epoch (or per iteration, for full-batch training)."""

from __future__ import annotations

import math
from typing import Any

from tinygrad_np.optim.optimizer import Optimizer


class LRScheduler:
    """Sets `optimizer.lr` from the number of `step()` calls so far."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def get_lr(self) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    @staticmethod
    def check_state_dict(state_dict: dict[str, Any]) -> None:
        """Raise ValueError unless `state_dict` holds a finite base_lr >= 0 and a whole last_epoch >= 0."""
        base_lr, last_epoch = state_dict["base_lr"], state_dict["last_epoch"]
        if type(base_lr) not in (int, float) or not math.isfinite(base_lr) or base_lr < 0:
            raise ValueError(f"scheduler state has base_lr {base_lr!r}; it must be a finite number >= 0")
        if type(last_epoch) is not int or last_epoch < 0:
            raise ValueError(f"scheduler state has last_epoch {last_epoch!r}; it must be an integer >= 0")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.check_state_dict(state_dict)
        self.base_lr, self.last_epoch = float(state_dict["base_lr"]), state_dict["last_epoch"]
        self.optimizer.lr = self.get_lr()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ^ floor(epoch / step_size): the tutorial's step decay."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def get_lr(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2"""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if T_max < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        super().__init__(optimizer)
        self.T_max, self.eta_min = T_max, eta_min

    def get_lr(self) -> float:
        progress = min(self.last_epoch, self.T_max) / self.T_max
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * progress)) / 2
