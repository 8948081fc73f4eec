"""Neural-network building blocks, in PyTorch's vocabulary."""

from tinygrad_np.nn import functional, init
from tinygrad_np.nn.layers import Dropout, Flatten, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tinygrad_np.nn.losses import CrossEntropyLoss, MSELoss, NLLLoss
from tinygrad_np.nn.module import Module, Parameter, Sequential

__all__ = [
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "Module",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "functional",
    "init",
]
