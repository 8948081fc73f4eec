"""The Optimizer base: a list of parameters, a learning rate, per-parameter state, zero_grad()."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.tensor import Tensor


class Optimizer:
    """Subclasses implement `_update(index, param, grad)`; state lives in `self.state[index]` as ndarrays."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        if callable(getattr(params, "parameters", None)):
            raise TypeError(f"optimizer got the {type(params).__name__} model itself; pass model.parameters()")
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list; pass model.parameters()")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"parameter {i} is not a Tensor that requires grad")
        _check_non_negative("learning rate", lr)
        self.lr = float(lr)
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        self.step_count = 0
        # Updates each parameter has had: one that had no gradient at some step() is behind step_count,
        # and Adam's bias correction must use its own count (as torch keeps a "step" per parameter).
        self.param_steps = [0 for _ in self.params]
        self._work: dict[np.dtype, np.ndarray] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.param_steps[i] += 1
                self._update(i, p.data, p.grad)

    def _update(self, index: int, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A work array shaped like `like`, one buffer shared by all parameters of a dtype.

        Updates write their temporaries here (`out=`) instead of allocating a parameter-sized array per
        operation: the allocations and first-touch page faults cost more than the arithmetic (Adam took 30%
        longer on a 784-128-10 MLP), and the buffer costs one largest parameter of memory.
        """
        buffer = self._work.get(like.dtype)
        if buffer is None or buffer.size < like.size:
            buffer = self._work[like.dtype] = np.empty(like.size, dtype=like.dtype)
        return buffer[: like.size].reshape(like.shape)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and per-parameter arrays; plain types only (no pickle needed)."""
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "step_count": self.step_count,
            "param_steps": list(self.param_steps),
            "state": [{k: v.copy() for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {state_dict.get('type')}, not {type(self).__name__}")
        hyperparameters = state_dict["hyperparameters"]
        try:  # the constructor's checks, so a damaged file can't set beta2 = 2 or a negative learning rate
            checked = type(self)(self.params, **hyperparameters)
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"optimizer state has invalid hyperparameters ({err})") from None
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(f"optimizer state has {len(states)} parameters, this optimizer has {len(self.params)}")
        for i, (p, s) in enumerate(zip(self.params, states, strict=True)):
            for key, value in s.items():
                if np.shape(value) != p.shape:
                    raise ValueError(
                        f"optimizer state {key!r} of parameter {i} has shape {np.shape(value)}, not {p.shape}"
                    )
        self.state = [
            {k: np.array(v, dtype=p.dtype) for k, v in s.items()} for p, s in zip(self.params, states, strict=True)
        ]
        self.step_count = int(state_dict["step_count"])
        # A state dict from before param_steps existed: every parameter that has state took every step.
        default = [self.step_count if s else 0 for s in states]
        param_steps = [int(n) for n in state_dict.get("param_steps", default)]
        if len(param_steps) != len(self.params):
            raise ValueError(f"optimizer state has {len(param_steps)} step counts for {len(self.params)} parameters")
        self.param_steps = param_steps
        for key in hyperparameters:
            setattr(self, key, getattr(checked, key))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({settings})"


def _check_non_negative(name: str, value: float) -> None:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _check_unit_interval(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
