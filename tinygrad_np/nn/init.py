"""Weight initialisation schemes, each drawing from a seed or Generator.

Shapes are PyTorch's: (out_features, in_features) for Linear, (out_channels, in_channels, KH, KW) for Conv2d.
fan_in and fan_out count one output's and one input's connections, times the kernel's size for a convolution
(PyTorch's `_calculate_fan_in_and_fan_out`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np

from tinygrad_np.creation import as_generator
from tinygrad_np.tensor import Seed

# The one place the schemes are named: specs, the command line and the layers all take their names from here.
Init = Literal["he", "xavier", "tutorial", "pytorch"]
INITS: tuple[Init, ...] = get_args(Init)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: in * receptive field, out * receptive field."""
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def he_normal(shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ N(0, 2 / fan_in): keeps activations' variance constant through ReLU layers (He et al. 2015)."""
    fan_in, _ = fans(shape)
    return (as_generator(generator).standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)): for tanh/sigmoid layers (Glorot & Bengio 2010)."""
    limit = np.sqrt(6.0 / sum(fans(shape)))
    return as_generator(generator).uniform(-limit, limit, shape).astype(dtype)


def tutorial_uniform(shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ U(-0.5, 0.5), the tutorial's `np.random.rand(...) - 0.5` (used for weights and biases alike)."""
    return (as_generator(generator).random(shape) - 0.5).astype(dtype)


def pytorch_uniform(shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """W ~ U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)): PyTorch's default for Linear and Conv2d
    (kaiming_uniform_ with a = sqrt(5), whose bound gain * sqrt(3 / fan_in) is exactly this)."""
    bound = 1 / np.sqrt(fans(shape)[0])
    return as_generator(generator).uniform(-bound, bound, shape).astype(dtype)


def init_weight(scheme: Init, shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32) -> np.ndarray:
    """A weight (out, in, *kernel) drawn by the named scheme."""
    if scheme not in INITS:
        raise ValueError(f"init must be one of {sorted(INITS)}, got {scheme!r}")
    return _SCHEMES[scheme](shape, generator, dtype)


def init_bias(scheme: Init, weight_shape: tuple[int, ...], generator: Seed = None, dtype: Any = np.float32
              ) -> np.ndarray:
    """The bias (out,) that goes with a weight drawn by `scheme`: zeros for he and xavier, the tutorial's
    U(-0.5, 0.5), or PyTorch's U(-1 / sqrt(fan_in), 1 / sqrt(fan_in))."""
    out = weight_shape[0]
    if scheme == "tutorial":
        return tutorial_uniform((out,), generator, dtype)
    if scheme == "pytorch":
        bound = 1 / np.sqrt(fans(weight_shape)[0])
        return as_generator(generator).uniform(-bound, bound, out).astype(dtype)
    return np.zeros(out, dtype)


# In the order Init names them.
_SCHEMES: dict[str, Callable[..., np.ndarray]] = dict(
    zip(INITS, (he_normal, xavier_uniform, tutorial_uniform, pytorch_uniform), strict=True)
)
