"""The Optimizer base: parameter groups, per-parameter state, zero_grad(), step() and state dicts, as in PyTorch."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tinygrad_np.inplace import increment_version
from tinygrad_np.tensor import Tensor, enable_grad

ParamGroup = dict[str, Any]


class Optimizer:
    """Parameters in groups, each group a dict of "params" and its own hyperparameters.

    `params` is an iterable of Tensors (one group) or of dicts `{"params": [...], "lr": ..., ...}`; a group
    takes every hyperparameter it doesn't name from `defaults`, the constructor's arguments. Subclasses
    implement `check_hyperparameters` (the one place a value is validated) and
    `_update(param, grad, state, group)`; state lives in `self.state[p]`, a dict of ndarrays and a "step" count.
    """

    state_keys: tuple[str, ...] = ()  # every key `_update` may keep in a parameter's state

    def __init__(self, params: Iterable[Tensor] | Iterable[ParamGroup], defaults: dict[str, Any]) -> None:
        if callable(getattr(params, "parameters", None)):
            raise TypeError(f"optimizer got the {type(params).__name__} model itself; pass model.parameters()")
        if isinstance(params, Tensor):
            raise TypeError("optimizer got a single Tensor; pass a list of parameters, e.g. [w]")
        self.defaults = self.check_hyperparameters(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[ParamGroup] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list; pass model.parameters()")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)
        self._work: dict[np.dtype, np.ndarray] = {}

    def check_hyperparameters(self, settings: dict[str, Any]) -> dict[str, Any]:
        """`settings` with each value checked and normalised; ValueError naming the first bad one."""
        raise NotImplementedError

    def add_param_group(self, param_group: ParamGroup) -> None:
        """Add a group (a layer unfrozen mid-training, say); what it doesn't set comes from `defaults`."""
        index = len(self.param_groups)
        if not isinstance(param_group, dict):
            raise TypeError(f"parameter group {index} must be a dict with 'params', got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"parameter group {index} has no 'params' entry")
        params = param_group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"parameter group {index} holds a set; pass a list, so the order is the same every run")
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"parameter {i} of group {index} is a {type(p).__name__}, not a Tensor")
            if not p.requires_grad:
                raise TypeError(f"parameter {i} of group {index} is a Tensor that doesn't require grad")
            if not p.is_leaf:
                raise ValueError(f"parameter {i} of group {index} is not a leaf (it was computed); optimize leaves")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"parameter group {index} lists a parameter twice")
        if {id(p) for p in params} & {id(q) for q in self._params()}:
            raise ValueError("some parameters appear in more than one parameter group")
        unknown = sorted(set(param_group) - set(self.defaults) - {"params", "initial_lr"})
        if unknown:
            raise ValueError(
                f"parameter group {index} sets {', '.join(unknown)}, which {type(self).__name__} doesn't take; "
                f"it takes {', '.join(self.defaults)}"
            )
        settings = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        try:
            checked = self.check_hyperparameters({k: settings[k] for k in self.defaults})
        except ValueError as err:
            raise ValueError(f"parameter group {index}: {err}") from None
        if "initial_lr" in settings:
            checked["initial_lr"] = check_non_negative("initial_lr", settings["initial_lr"])
        self.param_groups.append({"params": params, **checked})

    def _params(self) -> list[Tensor]:
        """Every parameter, group after group: the numbering `state_dict` uses."""
        return [p for group in self.param_groups for p in group["params"]]

    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's (for the one-group case)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = check_non_negative("lr", value)
        for group in self.param_groups:
            group["lr"] = value

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, in place; returns `closure()` if given (it re-evaluates
        the loss, with gradients recorded)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        state = self.state
        for group in self.param_groups:
            for p in group["params"]:
                grad, param = p.grad, p.data
                if grad is None:
                    continue
                if type(grad) is not np.ndarray:  # a 0-d gradient may be a NumPy scalar; updates need an array
                    grad = np.asarray(grad)
                if grad.shape != param.shape:
                    raise ValueError(f"a parameter of shape {param.shape} has a gradient of shape {grad.shape}")
                self._update(param, grad, state[p], group)
                increment_version(p)  # a graph that saved p's old value now raises at backward, not lies
        return loss

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup) -> None:
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

    # ---- state dicts -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """{"type", "state", "param_groups"} in plain types (no pickle needed), as PyTorch lays it out, except
        that "state" is a list indexed by the parameter numbers in "params" (PyTorch: a dict keyed by them),
        because a checkpoint stores it as JSON, whose keys are strings."""
        groups, start = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            settings = {k: v for k, v in group.items() if k != "params"}
            groups.append({**settings, "params": list(range(start, start + count))})
            start += count
        states = [
            {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self.state.get(p, {}).items()}
            for p in self._params()
        ]
        return {"type": type(self).__name__, "state": states, "param_groups": groups}

    def check_state_dict(self, state_dict: dict[str, Any]) -> list[dict[str, Any]]:
        """Raise ValueError unless this optimizer could have written `state_dict`; changes nothing.

        Every saved group's hyperparameters go through `check_hyperparameters`, the constructor's checks, so a
        damaged file can't set betas[1] = 2 or a negative learning rate. Returns the checked group settings."""
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise ValueError(f"optimizer state must be a dict, got {type(state_dict).__name__}")
        if state_dict.get("type") != name:
            raise ValueError(f"optimizer state is for {state_dict.get('type')}, not {name}")
        groups, states = state_dict.get("param_groups"), state_dict.get("state")
        if not isinstance(groups, list) or not isinstance(states, list):
            raise ValueError("optimizer state must hold the lists 'param_groups' and 'state', as state_dict() writes")
        params = self._params()
        if len(states) != len(params):
            raise ValueError(f"optimizer state has {len(states)} parameters, this optimizer has {len(params)}")
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"optimizer state has {len(groups)} parameter groups, this optimizer has {len(self.param_groups)}"
            )
        settings, start = [], 0
        for index, (saved, group) in enumerate(zip(groups, self.param_groups, strict=True)):
            count = len(group["params"])
            if not isinstance(saved, dict) or saved.get("params") != list(range(start, start + count)):
                raise ValueError(
                    f"parameter group {index} of the optimizer state must list parameters {start} to "
                    f"{start + count - 1}, as this optimizer's group holds {count}"
                )
            start += count
            missing = sorted(set(self.defaults) - set(saved))
            unknown = sorted(set(saved) - set(self.defaults) - {"params", "initial_lr"})
            if missing or unknown:
                raise ValueError(
                    f"parameter group {index} of the optimizer state must hold {', '.join(self.defaults)}"
                    + (f"; it lacks {', '.join(missing)}" if missing else "")
                    + (f"; it has unknown {', '.join(unknown)}" if unknown else "")
                )
            try:
                checked = self.check_hyperparameters({k: saved[k] for k in self.defaults})
                if "initial_lr" in saved:
                    checked["initial_lr"] = check_non_negative("initial_lr", saved["initial_lr"])
            except ValueError as err:
                raise ValueError(f"parameter group {index} of the optimizer state: {err}") from None
            settings.append(checked)
        for i, (p, entry) in enumerate(zip(params, states, strict=True)):
            _check_parameter_state(i, p, entry, self.state_keys)
        return settings

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` returned: each group's hyperparameters and each parameter's state, cast
        to the parameter's dtype. Everything is checked before anything changes."""
        settings = self.check_state_dict(state_dict)
        for group, checked in zip(self.param_groups, settings, strict=True):
            params = group["params"]
            group.clear()  # as in PyTorch, the saved group replaces this one (an initial_lr it lacks goes too)
            group.update({"params": params, **checked})
        self.state = defaultdict(dict)
        for p, entry in zip(self._params(), state_dict["state"], strict=True):
            if entry:
                self.state[p] = {k: int(v) if k == "step" else np.array(v, dtype=p.dtype) for k, v in entry.items()}

    def __repr__(self) -> str:
        """PyTorch's layout: each group's settings, sorted by name."""
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


def _check_parameter_state(index: int, param: Tensor, entry: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(entry, dict) or not set(entry) <= set(keys):
        raise ValueError(f"optimizer state of parameter {index} must be a dict with keys from {sorted(keys)}")
    if entry and "step" in keys and "step" not in entry:
        raise ValueError(f"optimizer state of parameter {index} has no 'step' count")
    for key, value in entry.items():
        if key == "step":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**53:
                raise ValueError(f"optimizer state 'step' of parameter {index} must be a whole number >= 0")
            continue
        array = np.asarray(value)
        if array.shape != param.shape:
            raise ValueError(f"optimizer state {key!r} of parameter {index} has shape {array.shape}, not {param.shape}")
        if array.dtype.kind != "f" or not np.isfinite(array).all():
            raise ValueError(f"optimizer state {key!r} of parameter {index} must hold finite real numbers")


def buffer(state: dict[str, Any], key: str, like: np.ndarray) -> np.ndarray:
    """state[key], made as zeros shaped like `like` on first use. np.zeros_like gives a 0-d *array* for a 0-d
    parameter, which in-place updates change; an expression of 0-d arrays would be an immutable NumPy scalar."""
    array = state.get(key)
    if array is None:
        array = state[key] = np.zeros_like(like)
    return array


# ---- hyperparameter checks (the messages name the argument and the value, for the CLI to show) ---------------


def _check(name: str, value: Any, rule: str, holds: Callable[[float], bool]) -> float:
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    try:
        number = float(value) if is_number else math.nan
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not (math.isfinite(number) and holds(number)):
        raise ValueError(f"{name} must be {rule}, got {value if is_number else repr(value)}")
    return number


def check_finite(name: str, value: Any) -> float:
    return _check(name, value, "a finite number", lambda x: True)


def check_non_negative(name: str, value: Any) -> float:
    return _check(name, value, "a finite number >= 0", lambda x: x >= 0)


def check_unit_interval(name: str, value: Any) -> float:
    return _check(name, value, "in [0, 1)", lambda x: 0 <= x < 1)


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
