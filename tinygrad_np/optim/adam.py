"""Adam and AdamW: momentum and RMS scaling, with bias correction; AdamW decouples weight decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.optim.optimizer import (
    Optimizer,
    ParamGroup,
    buffer,
    check_flag,
    check_non_negative,
    check_unit_interval,
)
from tinygrad_np.tensor import Tensor


class Adam(Optimizer):
    """g = grad + wd p (or p *= 1 - lr wd, decoupled);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    v_max = max(v_max, v) with amsgrad;  p -= lr (m / (1 - b1^t)) / (sqrt(v or v_max / (1 - b2^t)) + eps)"""

    state_keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults)

    def check_hyperparameters(self, settings: dict[str, Any]) -> dict[str, Any]:
        betas = settings["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        return {
            "lr": check_non_negative("lr", settings["lr"]),
            "betas": (check_unit_interval("betas[0]", betas[0]), check_unit_interval("betas[1]", betas[1])),
            "eps": check_non_negative("eps", settings["eps"]),
            "weight_decay": check_non_negative("weight_decay", settings["weight_decay"]),
            "amsgrad": check_flag("amsgrad", settings["amsgrad"]),
            "maximize": check_flag("maximize", settings["maximize"]),
            "decoupled_weight_decay": check_flag("decoupled_weight_decay", settings["decoupled_weight_decay"]),
        }

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup) -> None:
        (beta1, beta2), lr, weight_decay = group["betas"], group["lr"], group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        if weight_decay:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        t = state["step"] = state.get("step", 0) + 1
        m, v = buffer(state, "exp_avg", param), buffer(state, "exp_avg_sq", param)
        work = self._scratch(param)
        m *= beta1
        m += np.multiply(grad, 1 - beta1, out=work)
        v *= beta2
        np.multiply(grad, grad, out=work)
        work *= 1 - beta2
        v += work
        if group["amsgrad"]:  # normalise by the largest second moment so far, so steps never grow back
            v_max = buffer(state, "max_exp_avg_sq", param)
            v = np.maximum(v_max, v, out=v_max)
        # Bias correction: m and v start at 0, so early averages underestimate; m_hat = m / c1, v_hat = v / c2
        # with c = 1 - beta^t. lr m_hat / (sqrt(v_hat) + eps) = lr sqrt(c2) / c1 * m / (sqrt(v) + eps sqrt(c2)):
        # the corrections fold into two scalars, one pass fewer over the parameter.
        root_c2 = math.sqrt(1 - beta2**t)
        np.sqrt(v, out=work)
        work += group["eps"] * root_c2
        np.divide(m, work, out=work)
        work *= lr * root_c2 / (1 - beta1**t)
        param -= work


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr wd p, then the Adam step on the bare gradient."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)
