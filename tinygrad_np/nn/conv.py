"""Conv2d: a learned 2-D convolution, with PyTorch's arguments and default initialisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_np.creation import as_generator
from tinygrad_np.nn import functional as F
from tinygrad_np.nn.init import Init, init_bias, init_weight
from tinygrad_np.nn.module import Module, Parameter
from tinygrad_np.tensor import ArrayLike, Seed, Tensor


class Conv2d(Module):
    """y = W * x + b over (N, C, H, W): weight (out_channels, in_channels, KH, KW), bias (out_channels,).

    kernel_size, stride, padding and dilation take an int or a (height, width) pair; padding also "valid" or
    "same". The default init is PyTorch's: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C KH KW."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        *,
        init: Init = "pytorch",
        generator: Seed = None,
        dtype: Any = np.float32,
    ) -> None:
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d needs positive channel counts, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        kernel = F._pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = F._pair("Conv2d", "stride", stride, 1)
        self.dilation = F._pair("Conv2d", "dilation", dilation, 1)
        F.conv_padding("Conv2d", padding, kernel, self.stride, self.dilation)  # checks it
        self.padding: tuple[int, int] | str = padding if isinstance(padding, str) else F._pair(
            "Conv2d", "padding", padding, 0)
        rng = as_generator(generator)
        self.weight = Parameter(init_weight(init, (out_channels, in_channels, *kernel), rng, dtype), dtype=dtype)
        bias_data = init_bias(init, self.weight.shape, rng, dtype)
        self.bias = Parameter(bias_data, dtype=dtype) if bias else None
        self.in_channels, self.out_channels, self.kernel_size, self.init = in_channels, out_channels, kernel, init

    def forward(self, x: ArrayLike) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        return text + ("" if self.bias is not None else ", bias=False")
