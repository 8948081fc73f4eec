"""RMSprop: divide each step by a running root-mean-square of recent gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.optim.optimizer import Optimizer, _check_non_negative, _check_unit_interval
from tinygrad_np.tensor import Tensor


class RMSprop(Optimizer):
    """g = grad + wd p;  s = alpha s + (1 - alpha) g^2;  p -= lr g / (sqrt(s) + eps)"""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_unit_interval("alpha", alpha)
        _check_non_negative("eps", eps)
        _check_non_negative("weight_decay", weight_decay)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay}

    def state_keys(self) -> tuple[str, ...]:
        return ("square_avg",)

    def _update(self, index: int, param: np.ndarray, grad: np.ndarray) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        state = self.state[index]
        square_avg = state.get("square_avg")
        if square_avg is None:
            square_avg = state["square_avg"] = np.zeros_like(param)
        work = self._scratch(param)  # every temporary lives here: no allocation per step
        square_avg *= self.alpha
        np.multiply(grad, grad, out=work)
        work *= 1 - self.alpha
        square_avg += work
        np.sqrt(square_avg, out=work)
        work += self.eps
        np.divide(grad, work, out=work)
        work *= self.lr
        param -= work
