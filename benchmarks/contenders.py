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
from tinygrad_np.models.cnn import cnn
from tinygrad_np.models.mlp import mlp, params_from_model
from tinygrad_np.models.two_layer import tutorial_params_from_model, two_layer
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor

Optimizer = Literal["sgd", "adam"]
ADAM_LR = 1e-3


def tinygrad_model(hidden_sizes: tuple[int, ...], seed: int) -> nn.Sequential:
    """784-h-...-10 with ReLUs, He init; (10,) is the tutorial's two_layer() network."""
    return two_layer(seed) if hidden_sizes == (10,) else mlp(784, hidden_sizes, 10, generator=seed)


def cnn_model(seed: int) -> nn.Sequential:
    """models.cnn's LeNet-style network (the cnn recipe's), on (N, 1, 28, 28), weights drawn from `seed`."""
    return cnn(generator=seed)


def torch_twin(torch: ModuleType, model: nn.Sequential) -> Any:
    """The same Sequential in PyTorch, holding a copy of `model`'s parameters and buffers (the state-dict names
    are PyTorch's, so they load as they are)."""
    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None))
        elif isinstance(layer, nn.Conv2d):
            layers.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                          layer.padding, layer.dilation, bias=layer.bias is not None))
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                             ceil_mode=layer.ceil_mode))
        elif isinstance(layer, nn.AvgPool2d):
            layers.append(torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                                             layer.count_include_pad, layer.divisor_override))
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            twin = torch.nn.BatchNorm1d if isinstance(layer, nn.BatchNorm1d) else torch.nn.BatchNorm2d
            layers.append(twin(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats))
        elif isinstance(layer, nn.Flatten):
            layers.append(torch.nn.Flatten(layer.start_dim))
        elif isinstance(layer, nn.ReLU):
            layers.append(torch.nn.ReLU())
        else:
            raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
    dtypes = {array.dtype for array in model.state_dict().values() if array.dtype.kind == "f"}
    twin_model = torch.nn.Sequential(*layers).to(torch.float64 if np.dtype(np.float64) in dtypes else torch.float32)
    twin_model.load_state_dict({name: torch.from_numpy(array) for name, array in model.state_dict().items()})
    return twin_model


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
        self.model = torch_twin(torch, model)
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
