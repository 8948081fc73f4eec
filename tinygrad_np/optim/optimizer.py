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
                self._update(i, p.data, np.asarray(p.grad))  # a 0-d grad may be a NumPy scalar

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

    def state_keys(self) -> tuple[str, ...]:
        """The arrays `_update` keeps per parameter (none before the parameter's first step)."""
        return ()

    def check_state_dict(self, state_dict: dict[str, Any]) -> Optimizer:
        """Raise ValueError unless this optimizer could have written `state_dict`; changes nothing.

        Returns an optimizer built from the saved hyperparameters, so the constructor's checks apply: a
        damaged file can't set beta2 = 2 or a negative learning rate."""
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {state_dict.get('type')}, not {type(self).__name__}")
        hyperparameters = state_dict["hyperparameters"]
        if not isinstance(hyperparameters, dict) or set(hyperparameters) != set(self.hyperparameters()):
            raise ValueError(f"optimizer state must name the hyperparameters {sorted(self.hyperparameters())}")
        try:
            checked = type(self)(self.params, **hyperparameters)
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"optimizer state has invalid hyperparameters ({err})") from None
        step_count = state_dict["step_count"]
        states = state_dict["state"]
        if not isinstance(states, list):
            raise ValueError("optimizer state must hold a list with one entry per parameter")
        if len(states) != len(self.params):
            raise ValueError(f"optimizer state has {len(states)} parameters, this optimizer has {len(self.params)}")
        # A state dict from before param_steps existed: every parameter that has state took every step.
        param_steps = state_dict.get("param_steps", [step_count if s else 0 for s in states])
        if not (
            type(step_count) is int
            and 0 <= step_count < 2**53
            and isinstance(param_steps, list)
            and len(param_steps) == len(self.params)
            and all(type(n) is int and 0 <= n <= step_count for n in param_steps)
        ):
            raise ValueError("optimizer step counts must be whole numbers with 0 <= param_steps <= step_count")
        keys = set(checked.state_keys())
        for i, (p, arrays) in enumerate(zip(self.params, states, strict=True)):
            if not isinstance(arrays, dict) or (arrays and set(arrays) != keys):
                raise ValueError(f"optimizer state of parameter {i} must be empty or hold {sorted(keys)}")
            for key, value in arrays.items():
                array = np.asarray(value)
                if array.shape != p.shape:
                    raise ValueError(f"optimizer state {key!r} of parameter {i} has shape {array.shape}, not {p.shape}")
                if array.dtype.kind != "f" or not np.isfinite(array).all():
                    raise ValueError(f"optimizer state {key!r} of parameter {i} must hold finite real numbers")
        return checked

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; everything is checked before anything changes."""
        checked = self.check_state_dict(state_dict)
        states = state_dict["state"]
        self.state = [
            {k: np.array(v, dtype=p.dtype) for k, v in s.items()} for p, s in zip(self.params, states, strict=True)
        ]
        self.step_count = state_dict["step_count"]
        self.param_steps = list(state_dict.get("param_steps", [self.step_count if s else 0 for s in states]))
        for key in state_dict["hyperparameters"]:
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
