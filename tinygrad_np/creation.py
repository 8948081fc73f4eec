"""Tensor creation helpers. Random ones draw from a seed or Generator, so the same seed gives the same tensor."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_np.tensor import Seed, Tensor

_default_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator used when a random helper is called without `generator=`."""
    global _default_generator
    _default_generator = np.random.default_rng(seed)


def as_generator(generator: Seed = None) -> np.random.Generator:
    """An int seed becomes a fresh Generator; a Generator is used as is; None means the global one."""
    if generator is None:
        return _default_generator
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"generator must be an int seed or a numpy.random.Generator, got {type(generator).__name__}"
    )


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape


def zeros(*shape: int, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: int, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(
    shape: tuple[int, ...], value: float, dtype: Any = np.float32, requires_grad: bool = False
) -> Tensor:
    return Tensor(np.full(shape, value, dtype=dtype), requires_grad=requires_grad)


def randn(
    *shape: int, generator: Seed = None, dtype: Any = np.float32, requires_grad: bool = False
) -> Tensor:
    """Samples from N(0, 1)."""
    data = as_generator(generator).standard_normal(_shape(shape)).astype(dtype, copy=False)
    return Tensor(data, requires_grad=requires_grad)


def uniform(
    *shape: int,
    low: float = 0.0,
    high: float = 1.0,
    generator: Seed = None,
    dtype: Any = np.float32,
    requires_grad: bool = False,
) -> Tensor:
    """Samples from U[low, high)."""
    data = as_generator(generator).uniform(low, high, _shape(shape)).astype(dtype, copy=False)
    return Tensor(data, requires_grad=requires_grad)
