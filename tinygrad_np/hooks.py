"""The handle that `Tensor.register_hook` and `Module.register_forward_hook` return."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

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
