"""Weight initialisation schemes, each drawing from a seed or Generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np

from tinygrad_np.creation import as_generator
from tinygrad_np.tensor import Seed

# The one place the schemes are named: specs, the command line and Linear all take their names from here.
Init = Literal["he", "xavier", "tutorial"]
INITS: tuple[Init, ...] = get_args(Init)


def he_normal(shape: tuple[int, int], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ N(0, 2 / fan_in): keeps activations' variance constant through ReLU layers (He et al. 2015)."""
    fan_in = shape[1]
    return (as_generator(generator).standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(shape: tuple[int, int], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)): for tanh/sigmoid layers (Glorot & Bengio 2010)."""
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return as_generator(generator).uniform(-limit, limit, shape).astype(dtype)


def tutorial_uniform(shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ U(-0.5, 0.5), the tutorial's `np.random.rand(...) - 0.5` (used for weights and biases alike)."""
    return (as_generator(generator).random(shape) - 0.5).astype(dtype)



def init_weight(scheme: Init, shape: tuple[int, int], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """A weight matrix (out_features, in_features) drawn by the named scheme."""
    if scheme not in INITS:
        raise ValueError(f"init must be one of {sorted(INITS)}, got {scheme!r}")
    return _SCHEMES[scheme](shape, generator, dtype)


# In the order Init names them.
_SCHEMES: dict[str, Callable[..., np.ndarray]] = dict(
    zip(INITS, (he_normal, xavier_uniform, tutorial_uniform), strict=True)
)
