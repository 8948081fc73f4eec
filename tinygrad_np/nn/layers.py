"""Layers: Linear and the activations, Dropout, Flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_np.creation import as_generator
from tinygrad_np.nn import functional as F
from tinygrad_np.nn.init import Init, init_bias, init_weight
from tinygrad_np.nn.module import Module, Parameter
from tinygrad_np.tensor import ArrayLike, Seed, Tensor


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features) as in PyTorch (and the tutorial's W1)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: Init = "he",
        generator: Seed = None,
        dtype: Any = np.float32,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got in_features={in_features}, out_features={out_features}")
        rng = as_generator(generator)
        self.weight = Parameter(init_weight(init, (out_features, in_features), rng, dtype), dtype=dtype)
        self.in_features, self.out_features, self.init = in_features, out_features, init
        bias_data = init_bias(init, self.weight.shape, rng, dtype)  # drawn even without a bias: the same stream after
        self.bias = Parameter(bias_data, dtype=dtype) if bias else None

    def forward(self, x: ArrayLike) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """y = max(x, 0)"""

    def forward(self, x: ArrayLike) -> Tensor:
        return F.relu(x)


class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope * x"""

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = negative_slope

    def forward(self, x: ArrayLike) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    """y = tanh(x)"""

    def forward(self, x: ArrayLike) -> Tensor:
        return F._tensor(x).tanh()


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x))"""

    def forward(self, x: ArrayLike) -> Tensor:
        return F._tensor(x).sigmoid()


class Softmax(Module):
    """y = exp(x) / sum(exp(x)) along `axis`"""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, x: ArrayLike) -> Tensor:
        return F.softmax(x, self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Module):
    """y = x - logsumexp(x) along `axis`"""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, x: ArrayLike) -> Tensor:
        return F.log_softmax(x, self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Dropout(Module):
    """While training, zero each element with probability p and scale the rest by 1 / (1 - p); identity in eval."""

    def __init__(self, p: float = 0.5, generator: Seed = None) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.generator = as_generator(generator)

    def forward(self, x: ArrayLike) -> Tensor:
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)"""

    def __init__(self, start_dim: int = 1) -> None:
        self.start_dim = start_dim

    def forward(self, x: ArrayLike) -> Tensor:
        return F._tensor(x).flatten(self.start_dim)
