"""Neural-network building blocks, in PyTorch's vocabulary."""

from tinygrad_np.nn import functional, init
from tinygrad_np.nn.batchnorm import BatchNorm1d, BatchNorm2d
from tinygrad_np.nn.conv import Conv2d
from tinygrad_np.nn.layers import Dropout, Flatten, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tinygrad_np.nn.losses import CrossEntropyLoss, MSELoss, NLLLoss
from tinygrad_np.nn.module import Buffer, Module, Parameter, Sequential
from tinygrad_np.nn.pooling import AvgPool2d, MaxPool2d

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
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
