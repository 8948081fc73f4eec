"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.optim.optimizer import Optimizer, _check_non_negative, _check_unit_interval
from tinygrad_np.tensor import Tensor


class SGD(Optimizer):
    """g = grad + wd p;  v = mu v + g;  p -= lr (g + mu v if nesterov else v)   (v = g at the first step).

    With momentum 0 this is the tutorial's update, p -= lr grad.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_unit_interval("momentum", momentum)
        _check_non_negative("weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def state_keys(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, index: int, param: np.ndarray, grad: np.ndarray) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if self.momentum:
            state = self.state[index]
            velocity = state.get("momentum_buffer")
            if velocity is None:
                # np.array, not grad.copy(): for a 0-d parameter `grad` may be a NumPy scalar, whose copy is
                # another scalar, and the in-place updates below would rebind it instead of changing the state.
                velocity = state["momentum_buffer"] = np.array(grad, dtype=param.dtype)
            else:
                velocity *= self.momentum
                velocity += grad
            grad = grad + self.momentum * velocity if self.nesterov else velocity
        param -= np.multiply(grad, self.lr, out=self._scratch(param))
