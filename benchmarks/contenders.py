"""The same network trained three ways: tinygrad_np, hand-written NumPy and PyTorch, from identical weights.

A contender holds its training set in its own form (`load`, zero-copy where the framework allows) and takes
one optimizer step on rows `start:stop` (`step`), so a benchmark times exactly the training step, never the
conversion of inputs. The NumPy and PyTorch contenders copy their initial weights from the tinygrad_np model.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np

from tinygrad_np import nn, no_grad, optim
from tinygrad_np.benchmarks import handwritten
from tinygrad_np.models.mlp import mlp, params_from_model
from tinygrad_np.models.two_layer import tutorial_params_from_model, two_layer
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor

Optimizer = Literal["sgd", "adam"]
ADAM_LR = 1e-3


def tinygrad_model(hidden_sizes: tuple[int, ...], seed: int) -> nn.Sequential:
    """784-h-...-10 with ReLUs, He init; (10,) is the tutorial's two_layer() network."""
    return two_layer(seed) if hidden_sizes == (10,) else mlp(784, hidden_sizes, 10, generator=seed)


class TinygradContender:
    name = "tinygrad_np"

    def __init__(self, model: nn.Sequential, optimizer: Optimizer, lr: float) -> None:
        self.model = model
        params = list(model.parameters())
        self.optimizer = optim.SGD(params, lr=lr) if optimizer == "sgd" else optim.Adam(params, lr=lr)

    def load(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def step(self, start: int, stop: int) -> None:
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(Tensor(self.x[start:stop])), self.y[start:stop])
        loss.backward()
        self.optimizer.step()

    def predict(self, x: np.ndarray) -> np.ndarray:
        with no_grad():
            return self.model(Tensor(x)).data.argmax(axis=1)


class NumpyContender:
    """The tutorial's column layout: X is 784 x m (a transposed view of the row-major data, no copy)."""

    name = "numpy"

    def __init__(self, model: nn.Sequential, optimizer: Optimizer, lr: float) -> None:
        self.lr = lr
        # The tutorial's own loop is plain gradient descent on the 784-10-10 net; anything with Adam goes
        # through the general L-layer backprop of models.mlp.
        self.tutorial = optimizer == "sgd"
        if self.tutorial:
            params = tutorial_params_from_model(model)
            self.params: Any = (params["W1"], params["b1"], params["W2"], params["b2"])
        else:
            self.params = params_from_model(model)
            self.adam = handwritten.NumpyAdam(self.params, lr=lr)

    def load(self, x: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = x.T, y

    def step(self, start: int, stop: int) -> None:
        X, Y = self.X[:, start:stop], self.y[start:stop]
        if self.tutorial:
            self.params = handwritten.tutorial_step(self.params, X, Y, self.lr)
        else:
            handwritten.mlp_step(self.params, self.adam, X, Y)


class TorchContender:
    name = "pytorch"

    def __init__(self, torch: ModuleType, model: nn.Sequential, optimizer: Optimizer, lr: float) -> None:
        self.torch = torch
        layers = []
        for layer in model:
            if isinstance(layer, nn.Linear):
                linear = torch.nn.Linear(layer.in_features, layer.out_features)
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(layer.weight.data))
                    linear.bias.copy_(torch.from_numpy(layer.bias.data))
                layers.append(linear)
            elif isinstance(layer, nn.ReLU):
                layers.append(torch.nn.ReLU())
            else:
                raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
        self.model = torch.nn.Sequential(*layers)
        params = self.model.parameters()
        self.optimizer = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)

    def load(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = self.torch.from_numpy(x), self.torch.from_numpy(y)

    def step(self, start: int, stop: int) -> None:
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(self.x[start:stop]), self.y[start:stop])
        loss.backward()
        self.optimizer.step()

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(x)).argmax(dim=1).numpy()


def contenders(
    torch: ModuleType | None, hidden_sizes: tuple[int, ...], optimizer: Optimizer, lr: float, seed: int = 0,
    numpy: bool = True,
) -> dict[str, Any]:
    """{name: contender}, all starting from the same weights (PyTorch left out when it isn't installed)."""
    model = tinygrad_model(hidden_sizes, seed)
    chosen: dict[str, Any] = {}
    if numpy:
        chosen["numpy"] = NumpyContender(model, optimizer, lr)
    if torch is not None:
        chosen["pytorch"] = TorchContender(torch, model, optimizer, lr)
    chosen["tinygrad_np"] = TinygradContender(model, optimizer, lr)  # last: it trains the model we copied from
    return chosen


def epoch(contender: Any, num_rows: int, batch_size: int) -> None:
    """One pass over rows 0..num_rows in order, one step per batch (the last one may be short)."""
    for start in range(0, num_rows, batch_size):
        contender.step(start, min(start + batch_size, num_rows))
