"""A small CNN with every layer a convolutional network is made of, for the tests of what surrounds the layers
(model files, checkpoints, ONNX, the command line, pictures)."""

from __future__ import annotations

import numpy as np

from tinygrad_np import Tensor, nn, no_grad
from tinygrad_np.spec import SpecSequential


def small_cnn(dtype: str = "float32", seed: int = 0) -> SpecSequential:
    """An untrained CNN reading (N, 1, 28, 28) into 10 scores, in eval mode; its BatchNorm statistics and affine
    parameters moved away from their initial 0s and 1s (so that a mix-up of mean and variance would show)."""
    rng = np.random.default_rng(seed)
    model = SpecSequential(
        nn.Conv2d(1, 6, 5, padding=2, generator=rng, dtype=dtype), nn.BatchNorm2d(6, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=(2, 1), dilation=(1, 2), padding="valid", bias=False, generator=rng, dtype=dtype),
        nn.ReLU(), nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.Flatten(),
        nn.BatchNorm1d(8 * 7 * 11, dtype=dtype), nn.Linear(8 * 7 * 11, 10, generator=rng, dtype=dtype),
        input_size=[1, 28, 28], seed=None, dtype=dtype,
    )
    with no_grad():
        for _ in range(3):
            model(Tensor(rng.random((32, 1, 28, 28)).astype(dtype)))
    for name, tensor in model.named_parameters():
        if name in ("1.weight", "1.bias", "8.weight", "8.bias"):
            tensor.data = rng.uniform(0.5, 1.5, tensor.shape).astype(dtype)
    return model.eval()
