"""BatchNorm1d and BatchNorm2d: PyTorch's running statistics, momentum, eps, and train/eval behaviour."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinygrad_np.nn import functional as F
from tinygrad_np.nn.module import Buffer, Module, Parameter
from tinygrad_np.tensor import ArrayLike, Tensor


class _BatchNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1).

    In training (and always without running statistics) the batch's own statistics normalize, and the running
    ones move toward them: running = (1 - momentum) running + momentum * batch, with the unbiased variance
    (momentum=None: the plain average of all batches so far). In eval the running statistics normalize.
    `state_dict` holds weight, bias, running_mean, running_var and num_batches_tracked, as PyTorch's does."""

    input_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive integer, got {num_features!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"{name}: eps must be a finite number >= 0, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
                                     or not math.isfinite(momentum)):
            raise ValueError(f"{name}: momentum must be a finite number or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.weight = Parameter(np.ones(num_features), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(num_features), dtype=dtype) if affine else None
        if track_running_stats:
            self.running_mean: Buffer | None = Buffer(np.zeros(num_features), dtype=dtype)
            self.running_var: Buffer | None = Buffer(np.ones(num_features), dtype=dtype)
            self.num_batches_tracked: Buffer | None = Buffer(np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: ArrayLike) -> Tensor:
        x = F._tensor(x)
        if x.ndim not in self.input_dims:
            shapes = " or ".join(f"({', '.join(['N', 'C', 'L', 'H', 'W'][i] for i in _AXES[n])})"
                                 for n in self.input_dims)
            raise ValueError(f"{type(self).__name__}: expected input of shape {shapes}, got {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # the plain average of every batch so far
                factor = 1.0 / float(self.num_batches_tracked.data)
        batch_stats = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, batch_stats, factor,
                            self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


_AXES = {2: (0, 1), 3: (0, 1, 2), 4: (0, 1, 3, 4)}


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L): statistics per channel C."""

    input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W): statistics per channel C, over N, H and W."""

    input_dims = (4,)
