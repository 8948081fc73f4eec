"""Parameter groups built from a model's parameter names: the usual "no weight decay on biases" recipe."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from tinygrad_np.nn.module import Module


def param_groups(model: Module, no_weight_decay: str | Iterable[str] = ("bias",)) -> list[dict[str, Any]]:
    """[{"params": decayed}, {"params": exempt, "weight_decay": 0.0}], for any optimizer's constructor.

    A parameter is exempt when a pattern matches its dotted name ("0.bias") or the name's last part ("bias"),
    with shell wildcards: ("bias",) exempts every bias, ("0.*",) the first layer. The decayed group takes the
    optimizer's weight_decay. An empty group is left out; a pattern that matches nothing is an error (a typo
    would otherwise decay what it meant to exempt).
    """
    patterns = (no_weight_decay,) if isinstance(no_weight_decay, str) else tuple(no_weight_decay)
    named = list(model.named_parameters())

    def exempt(name: str, pattern: str) -> bool:
        return fnmatchcase(name, pattern) or fnmatchcase(name.rpartition(".")[2], pattern)

    for pattern in patterns:
        if not any(exempt(name, pattern) for name, _ in named):
            examples = ", ".join(name for name, _ in named[:4])
            raise ValueError(f"no parameter of the model matches {pattern!r}; its parameters are named {examples}")
    decayed = [p for name, p in named if not any(exempt(name, pattern) for pattern in patterns)]
    excluded = [p for name, p in named if any(exempt(name, pattern) for pattern in patterns)]
    groups: list[dict[str, Any]] = [{"params": decayed}] if decayed else []
    return groups + ([{"params": excluded, "weight_decay": 0.0}] if excluded else [])
