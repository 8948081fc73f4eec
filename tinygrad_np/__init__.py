"""tinygrad_np: a small, fast, honest reverse-mode autograd framework in NumPy."""

from tinygrad_np import autograd, nn, optim
from tinygrad_np.anomaly import AnomalyError, detect_anomaly
from tinygrad_np.autograd import grad
from tinygrad_np.creation import as_generator, full, manual_seed, ones, randn, uniform, zeros
from tinygrad_np.inplace import InPlaceError, increment_version
from tinygrad_np.ops import concatenate, maximum, stack, where
from tinygrad_np.tape import explain
from tinygrad_np.tensor import Function, Tensor, enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__version__ = "0.1.0"

__all__ = [
    "AnomalyError",
    "Function",
    "InPlaceError",
    "Tensor",
    "as_generator",
    "autograd",
    "concatenate",
    "detect_anomaly",
    "enable_grad",
    "explain",
    "full",
    "grad",
    "increment_version",
    "is_grad_enabled",
    "manual_seed",
    "maximum",
    "nn",
    "no_grad",
    "ones",
    "optim",
    "randn",
    "set_grad_enabled",
    "stack",
    "uniform",
    "where",
    "zeros",
]
