"""RMSprop: divide each step by a running root-mean-square of recent gradients (optionally centred)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.optim.optimizer import Optimizer, ParamGroup, buffer, check_flag, check_non_negative
from tinygrad_np.tensor import Tensor


class RMSprop(Optimizer):
    """g = grad + wd p;  s = alpha s + (1 - alpha) g^2;  a = alpha a + (1 - alpha) g  (centered);
    d = sqrt(s - a^2 if centered else s) + eps;  b = mu b + g / d, p -= lr b  (p -= lr g / d when mu = 0)"""

    state_keys = ("step", "square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[ParamGroup],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
            maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def check_hyperparameters(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "lr": check_non_negative("lr", settings["lr"]),
            "momentum": check_non_negative("momentum", settings["momentum"]),
            "alpha": check_non_negative("alpha", settings["alpha"]),
            "eps": check_non_negative("eps", settings["eps"]),
            "centered": check_flag("centered", settings["centered"]),
            "weight_decay": check_non_negative("weight_decay", settings["weight_decay"]),
            "maximize": check_flag("maximize", settings["maximize"]),
        }

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup) -> None:
        alpha, work = group["alpha"], self._scratch(param)  # every temporary lives in `work`: no allocation
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        state["step"] = state.get("step", 0) + 1
        square_avg = buffer(state, "square_avg", param)
        square_avg *= alpha
        np.multiply(grad, grad, out=work)
        work *= 1 - alpha
        square_avg += work
        if group["centered"]:  # the variance, not the raw second moment: s - a^2
            grad_avg = buffer(state, "grad_avg", param)
            grad_avg *= alpha
            grad_avg += np.multiply(grad, 1 - alpha, out=work)
            np.multiply(grad_avg, grad_avg, out=work)
            np.subtract(square_avg, work, out=work)
            np.sqrt(work, out=work)
        else:
            np.sqrt(square_avg, out=work)
        work += group["eps"]
        np.divide(grad, work, out=work)
        if group["momentum"] > 0:
            velocity = buffer(state, "momentum_buffer", param)
            velocity *= group["momentum"]
            velocity += work
            np.multiply(velocity, group["lr"], out=work)
        else:
            work *= group["lr"]
        param -= work
