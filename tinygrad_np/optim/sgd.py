"""Stochastic gradient descent, with momentum (dampened or Nesterov), weight decay and maximisation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.optim.optimizer import (
    Optimizer,
    ParamGroup,
    check_finite,
    check_flag,
    check_non_negative,
)
from tinygrad_np.tensor import Tensor


class SGD(Optimizer):
    """g = grad + wd p;  v = mu v + (1 - dampening) g  (v = g at the first step);
    p -= lr (g + mu v if nesterov else v)   (with maximize, grad is negated first).

    With momentum 0 this is the tutorial's update, p -= lr grad.
    """

    state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[ParamGroup],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
            maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def check_hyperparameters(self, settings: dict[str, Any]) -> dict[str, Any]:
        checked = {
            "lr": check_non_negative("lr", settings["lr"]),
            "momentum": check_non_negative("momentum", settings["momentum"]),
            "dampening": check_finite("dampening", settings["dampening"]),
            "weight_decay": check_non_negative("weight_decay", settings["weight_decay"]),
            "nesterov": check_flag("nesterov", settings["nesterov"]),
            "maximize": check_flag("maximize", settings["maximize"]),
        }
        if checked["nesterov"] and (checked["momentum"] <= 0 or checked["dampening"] != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening 0, got momentum {checked['momentum']} "
                f"and dampening {checked['dampening']}"
            )
        return checked

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup) -> None:
        momentum, work = group["momentum"], self._scratch(param)
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        if momentum:
            velocity = state.get("momentum_buffer")
            if velocity is None:
                # np.array, not grad.copy(): for a 0-d parameter `grad` may be a NumPy scalar, whose copy is
                # another scalar, and the in-place updates below would rebind it instead of changing the state.
                velocity = state["momentum_buffer"] = np.array(grad, dtype=param.dtype)
            else:
                velocity *= momentum
                if group["dampening"]:
                    velocity += np.multiply(grad, 1 - group["dampening"], out=work)
                else:
                    velocity += grad
            grad = grad + momentum * velocity if group["nesterov"] else velocity
        param -= np.multiply(grad, group["lr"], out=work)
