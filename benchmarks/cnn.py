"""Convolutional networks against PyTorch CPU: Conv2d's forward and backward at MNIST sizes, one epoch of a
LeNet-style CNN with Adam, and the peak memory of that epoch (each framework in a fresh process).

Both frameworks start from the same weights (PyTorch's twin loads tinygrad_np's state dict) and see the same
rows in the same order. A Conv2d case takes the upstream gradient as given, so both compute exactly
dL/dW, dL/db and (where the layer sits inside a network) dL/dx; the first layer's input needs no gradient,
and neither framework computes one.

What bounds tinygrad_np here: each convolution is one im2col copy (the windows, N*OH*OW rows of C*KH*KW) and one
matrix product, and its backward another product plus a col2im scatter-add; PyTorch's CPU convolution
(oneDNN) works on the image in blocks and never builds the whole window matrix. The im2col copy is
KH*KW times the input, and for the first layer (C = 1) the product is (N*OH*OW, 25) x (25, 32): a shape BLAS
runs far below its peak. See the README's CNN rows for the measured ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.benchmarks.contenders import ADAM_LR, TinygradContender, TorchContender, cnn_model, epoch
from tinygrad_np.benchmarks.harness import interleaved, progress, row, section
from tinygrad_np.tensor import Tensor

IMAGE_SHAPE = (1, 28, 28)
# (in_channels, out_channels, kernel, input side, whether the input needs a gradient): the first layer sees
# the 28x28 digit; the second the 32 maps of a first layer after a 2x2 pool (14x14), inside the network.
CONV_CASES: tuple[tuple[int, int, int, int, bool], ...] = (
    (1, 32, 3, 28, False),
    (1, 32, 5, 28, False),
    (32, 64, 3, 14, True),
    (32, 64, 5, 14, True),
)
EPOCH_BATCH_SIZE = 128


def _conv_cases(torch: ModuleType | None, case: tuple[int, int, int, int, bool], batch_size: int,
                seed: int) -> dict[str, Any]:
    """{framework: one forward and backward of the same Conv2d on the same input and upstream gradient}."""
    in_channels, out_channels, kernel, side, input_grad = case
    rng = np.random.default_rng(seed)
    layer = nn.Conv2d(in_channels, out_channels, kernel, generator=rng)
    images = rng.standard_normal((batch_size, in_channels, side, side)).astype(np.float32)
    x = Tensor(images, requires_grad=input_grad)
    upstream = rng.standard_normal((batch_size, out_channels, side - kernel + 1, side - kernel + 1)).astype(np.float32)

    def ours() -> None:
        layer.zero_grad()
        x.grad = None
        layer(x).backward(upstream)

    cases: dict[str, Any] = {}
    if torch is not None:
        twin = torch.nn.Conv2d(in_channels, out_channels, kernel)
        twin.load_state_dict({name: torch.from_numpy(array) for name, array in layer.state_dict().items()})
        x_torch = torch.from_numpy(images).requires_grad_(input_grad)
        upstream_torch = torch.from_numpy(upstream)

        def theirs() -> None:
            twin.zero_grad(set_to_none=True)
            x_torch.grad = None
            twin(x_torch).backward(upstream_torch)

        cases["pytorch"] = theirs
    cases["tinygrad_np"] = ours
    return cases


def conv(torch: ModuleType | None, batch_size: int, repeats: int, settle: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """The forward and backward of one Conv2d layer, per MNIST-sized case."""
    rows = []
    for case in CONV_CASES:
        in_channels, out_channels, kernel, side, input_grad = case
        label = f"{in_channels}->{out_channels}, {kernel}x{kernel}, {side}x{side}" + (", with dx" if input_grad else "")
        progress(f"conv: {label}, batch {batch_size}, {repeats} rounds")
        timings = interleaved(_conv_cases(torch, case, batch_size, seed), repeats, settle=settle)
        rows.append(row(label, timings, 1e3, [("tinygrad_np", "pytorch")]))
    return section(
        f"Conv2d forward + backward, batch {batch_size}, float32, stride 1, no padding",
        "ms per call",
        rows,
        ["the same weights, input and upstream gradient in both; dx is computed only where marked (a layer "
         "inside the network); the first layer's input needs no gradient"],
    )


def cnn_epoch(x: np.ndarray, y: np.ndarray, torch: ModuleType | None, repeats: int, settle: float = 0.0,
              seed: int = 0) -> dict[str, Any]:
    """One epoch of models.cnn's network with Adam, batch 128, rows in order, from the same weights."""
    images = x.reshape(len(x), *IMAGE_SHAPE)
    model = cnn_model(seed)
    racing: dict[str, Any] = {}
    if torch is not None:
        racing["pytorch"] = TorchContender(torch, model, "adam", ADAM_LR)
    racing["tinygrad_np"] = TinygradContender(model, "adam", ADAM_LR)  # last: it trains the model copied from
    for contender in racing.values():
        contender.load(images, y)
    progress(f"cnn: one epoch, {len(x)} images, batch {EPOCH_BATCH_SIZE}, {repeats} rounds")
    cases = {name: (lambda c=contender: epoch(c, len(x), EPOCH_BATCH_SIZE)) for name, contender in racing.items()}
    timings = interleaved(cases, repeats, settle=settle)
    return section(
        f"One epoch ({len(x):,} images) of a LeNet-style CNN, Adam, batch {EPOCH_BATCH_SIZE}, float32",
        "s per epoch",
        [row(f"batch {EPOCH_BATCH_SIZE}", timings, 1.0, [("tinygrad_np", "pytorch")])],
        ["models.cnn (the cnn recipe's network): conv 5x5 1->16, ReLU, max-pool 2, conv 5x5 16->32, ReLU, "
         "max-pool 2, Linear 512->128, ReLU, Linear 128->10; the same initial weights in both, each round "
         "continuing from where the last left off"],
    )


def run(x: np.ndarray, y: np.ndarray, torch: ModuleType | None, conv_batch_size: int, conv_repeats: int,
        epoch_repeats: int, settle: float = 0.0, memory_scenarios: Sequence[str] = ("cnn_epoch",)) -> dict[str, Any]:
    """The conv, cnn_epoch and cnn_memory sections."""
    from tinygrad_np.benchmarks.convergence import memory_section

    return {
        "conv": conv(torch, conv_batch_size, conv_repeats, settle),
        "cnn_epoch": cnn_epoch(x, y, torch, epoch_repeats, settle),
        "cnn_memory": memory_section(x, y, torch, memory_scenarios),
    }
