"""Adam and AdamW: momentum and RMS scaling, with bias correction; AdamW decouples weight decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.optim.optimizer import Optimizer, _check_non_negative, _check_unit_interval
from tinygrad_np.tensor import Tensor


class Adam(Optimizer):
    """g = grad + wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)"""

    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_unit_interval("beta1", betas[0])
        _check_unit_interval("beta2", betas[1])
        _check_non_negative("eps", eps)
        _check_non_negative("weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), eps, weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def state_keys(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _update(self, index: int, param: np.ndarray, grad: np.ndarray) -> None:
        beta1, beta2 = self.betas
        if self.weight_decay:
            if self.decoupled_weight_decay:
                param *= 1 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * param
        state = self.state[index]
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = np.zeros_like(param), np.zeros_like(param)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        work = self._scratch(param)
        m *= beta1
        np.multiply(grad, 1 - beta1, out=work)
        m += work
        v *= beta2
        np.multiply(grad, grad, out=work)
        work *= 1 - beta2
        v += work
        # Bias correction: m and v start at 0, so early averages underestimate; m_hat = m / c1, v_hat = v / c2
        # with c = 1 - beta^t. lr m_hat / (sqrt(v_hat) + eps) = lr sqrt(c2) / c1 * m / (sqrt(v) + eps sqrt(c2)):
        # the corrections fold into two scalars, one pass fewer over the parameter.
        t = self.param_steps[index]
        root_c2 = math.sqrt(1 - beta2**t)
        np.sqrt(v, out=work)
        work += self.eps * root_c2
        np.divide(m, work, out=work)
        work *= self.lr * root_c2 / (1 - beta1**t)
        param -= work


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr wd p, then the Adam step on the bare gradient."""

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
