"""Stateless functions behind the layers and losses (`import tinygrad_np.nn.functional as F`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_np import ops
from tinygrad_np.creation import as_generator
from tinygrad_np.tensor import ArrayLike, Seed, Tensor
from tinygrad_np.tensor import as_tensor as _tensor


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


# ---- losses: PyTorch's arguments and definitions (torch.nn.functional) -----------------------------------

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(loss: str, reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{loss}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_label_smoothing(label_smoothing: Any) -> float:
    if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


def check_class_weight(loss: str, weight: Any) -> np.ndarray | None:
    """One weight per class, as a 1-D array of finite numbers (its length is checked against the input later)."""
    if weight is None:
        return None
    array = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
    if array.ndim != 1 or array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        raise ValueError(
            f"{loss}: weight must be a 1-D array of finite numbers, one per class; got {array.dtype} {array.shape}"
        )
    return array


def _class_targets(
    loss: str, scores: Tensor, labels: Any, weight: Any, ignore_index: int, reduction: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Check a class-index loss's arguments against its input; returns labels, weight and the ignored mask."""
    check_reduction(loss, reduction)
    weight = check_class_weight(loss, weight)
    if scores.ndim == 0:
        raise ValueError(
            f"{loss}: expected input of shape (classes,), (batch, classes) or (batch, classes, d1, ...), got ()"
        )
    if scores.dtype.kind != "f":
        raise TypeError(f"{loss}: the input must hold floating-point scores, got dtype {scores.dtype}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{loss}: ignore_index must be an integer, got {ignore_index!r}")
    array = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"{loss}: labels must be integer class indices, got dtype {array.dtype} "
            "(class probabilities as targets are not supported)"
        )
    classes = scores.shape[0 if scores.ndim == 1 else 1]
    expected = () if scores.ndim == 1 else (scores.shape[0], *scores.shape[2:])
    if array.shape != expected:
        raise ValueError(
            f"{loss}: labels have shape {array.shape}, but input of shape {scores.shape} needs one class index per "
            f"prediction, shape {expected}"
        )
    if classes == 0:
        raise ValueError(f"{loss}: the input has no classes (its class axis, of shape {scores.shape}, has size 0)")
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"{loss}: weight has shape {weight.shape}, but the input has {classes} classes; pass one each")
    outside = array.size and (array.min() < 0 or array.max() >= classes)
    if outside:
        bad = array[((array < 0) | (array >= classes)) & (array != ignore_index)]
        if bad.size:
            raise ValueError(
                f"{loss}: label {bad.flat[0]} is out of range for {classes} classes (0..{classes - 1}) "
                f"and isn't ignore_index ({ignore_index})"
            )
    ignored = array == ignore_index if outside or 0 <= ignore_index < classes else None
    if ignored is not None and not ignored.any():
        ignored = None
    return array, None if weight is None else weight.astype(scores.dtype), ignored


def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """-log softmax(logits)[label] per prediction, fused: its gradient is softmax - onehot (times the weights).

    PyTorch's definition: logits (C,), (N, C) or (N, C, d1, ...) with labels (), (N,) or (N, d1, ...); `weight`
    scales each class's loss; labels equal to `ignore_index` contribute nothing; 'mean' divides by the total
    weight of the labels kept (their count when unweighted), so an all-ignored batch gives nan. With
    `label_smoothing` s the target is (1 - s) onehot + s / C (each class's term weighted by its weight).
    """
    logits = _tensor(logits)
    labels, weight, ignored = _class_targets("cross_entropy", logits, labels, weight, ignore_index, reduction)
    label_smoothing = check_label_smoothing(label_smoothing)
    return ops.CrossEntropy.apply(
        logits, labels=labels, weight=weight, ignored=ignored, reduction=reduction, label_smoothing=label_smoothing
    )


def nll_loss(
    log_probs: ArrayLike,
    labels: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """-weight[label] * log_probs[label] per prediction (log_probs from log_softmax); the layouts, `weight`,
    `ignore_index` and reductions of `cross_entropy`."""
    log_probs = _tensor(log_probs)
    labels, weight, ignored = _class_targets("nll_loss", log_probs, labels, weight, ignore_index, reduction)
    return ops.NLLLoss.apply(log_probs, labels=labels, weight=weight, ignored=ignored, reduction=reduction)


def mse_loss(prediction: ArrayLike, target: ArrayLike, reduction: str = "mean") -> Tensor:
    """(prediction - target)^2 per element, then its mean, its sum, or nothing ('none')."""
    check_reduction("mse_loss", reduction)
    prediction = _tensor(prediction)
    target_shape = np.shape(target.data if isinstance(target, Tensor) else target)
    if target_shape != prediction.shape:
        raise ValueError(
            f"mse_loss: prediction has shape {prediction.shape} but target has shape {target_shape}; "
            "they must match (broadcasting here is almost always a bug)"
        )
    squared = (prediction - target) ** 2
    if reduction == "none":
        return squared
    return squared.sum() if reduction == "sum" else squared.mean()
