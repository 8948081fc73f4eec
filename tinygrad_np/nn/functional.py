"""Stateless functions behind the layers and losses (`import tinygrad_np.nn.functional as F`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_np import ops
from tinygrad_np.creation import as_generator
from tinygrad_np.tensor import ArrayLike, Seed, Tensor


def _tensor(x: ArrayLike) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def linear(x: ArrayLike, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b, one fused node."""
    inputs = (_tensor(x), weight) if bias is None else (_tensor(x), weight, bias)
    return ops.Linear.apply(*inputs)


def relu(x: ArrayLike) -> Tensor:
    return _tensor(x).relu()


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> Tensor:
    """y = x if x > 0 else negative_slope * x;  dx = g if x > 0 else negative_slope * g (PyTorch's at 0)"""
    x = _tensor(x)
    return ops.where(x > 0, x, x * negative_slope)


def softmax(x: ArrayLike, axis: int = -1) -> Tensor:
    return _tensor(x).softmax(axis)


def log_softmax(x: ArrayLike, axis: int = -1) -> Tensor:
    return _tensor(x).log_softmax(axis)


def dropout(x: ArrayLike, p: float = 0.5, training: bool = True, generator: Seed = None) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p)."""
    x = _tensor(x)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = as_generator(generator).random(x.shape) >= p
    return x * Tensor(keep.astype(x.dtype) / x.dtype.type(1 - p))


def _labels(labels: Any, logits: Tensor, loss: str) -> np.ndarray:
    array = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 2:
        raise ValueError(f"{loss}: expected input of shape (batch, classes), got {logits.shape}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{loss}: labels must be integer class indices, got dtype {array.dtype}")
    if array.shape != (logits.shape[0],):
        raise ValueError(
            f"{loss}: labels have shape {array.shape} but the input has {logits.shape[0]} rows; "
            "pass one class index per row"
        )
    classes = logits.shape[1]
    if array.size and (array.min() < 0 or array.max() >= classes):
        bad = array[(array < 0) | (array >= classes)][0]
        raise ValueError(f"{loss}: label {bad} is out of range for {classes} classes (0..{classes - 1})")
    return array


def cross_entropy(logits: Tensor, labels: ArrayLike) -> Tensor:
    """-mean_i log softmax(logits_i)[labels_i], fused: its gradient is (softmax - onehot) / batch."""
    logits = _tensor(logits)
    return ops.CrossEntropy.apply(logits, labels=_labels(labels, logits, "cross_entropy"))


def nll_loss(log_probs: Tensor, labels: ArrayLike) -> Tensor:
    """-mean_i log_probs[i, labels_i] (log_probs from log_softmax)."""
    log_probs = _tensor(log_probs)
    return ops.NLLLoss.apply(log_probs, labels=_labels(labels, log_probs, "nll_loss"))


def mse_loss(prediction: Tensor, target: ArrayLike) -> Tensor:
    """mean((prediction - target)^2) over every element."""
    prediction = _tensor(prediction)
    target_shape = np.shape(target.data if isinstance(target, Tensor) else target)
    if target_shape != prediction.shape:
        raise ValueError(
            f"mse_loss: prediction has shape {prediction.shape} but target has shape {target_shape}; "
            "they must match (broadcasting here is almost always a bug)"
        )
    difference = prediction - target
    return (difference * difference).mean()
