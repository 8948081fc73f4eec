"""Hooks: functions the engine calls with a tensor's gradient, or a Module with its output, and their handles."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from tinygrad_np.tensor import Tensor

_next_id = itertools.count()


class RemovableHandle:
    """What `register_hook` and `register_forward_hook` return: `.remove()` takes the hook out (also as a `with`)."""

    def __init__(self, hooks: dict[int, Callable[..., Any]], hook: Callable[..., Any]) -> None:
        self._hooks, self.id = hooks, next(_next_id)
        hooks[self.id] = hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def run_tensor_hooks(node: Tensor, grad: np.ndarray) -> np.ndarray:
    """`grad` passed through node's hooks in the order registered; a hook returning a value replaces it."""
    for hook in list(node._hooks.values()):
        result = hook(Tensor._make(grad, False, None))
        if result is None:
            continue
        replaced = np.asarray(result.data if isinstance(result, Tensor) else result)
        if replaced.shape != grad.shape:
            raise RuntimeError(
                f"hook {getattr(hook, '__name__', hook)!s} changed the gradient's shape from {grad.shape} to "
                f"{replaced.shape}; return a gradient of the tensor's shape (or None to keep it)"
            )
        grad = replaced.astype(node.dtype, copy=False)
    return grad
