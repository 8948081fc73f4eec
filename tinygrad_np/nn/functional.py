"""Stateless functions behind the layers and losses (`import tinygrad_np.nn.functional as F`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tinygrad_np import ops, ops_conv
from tinygrad_np.creation import as_generator
from tinygrad_np.tensor import ArrayLike, Seed, Tensor, accurate_sum
from tinygrad_np.tensor import as_tensor as _tensor


def linear(x: ArrayLike, weight: Tensor, bias: ArrayLike | None = None) -> Tensor:
    """y = x W^T + b, one fused node when b has one value per output feature (nn.Linear's); any other bias that
    broadcasts against x W^T is added by a node of its own, whose gradient sums over what broadcasting stretched."""
    x, weight = _tensor(x), _tensor(weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if bias is None:
        return ops.Linear.apply(x, weight)
    bias = _tensor(bias)
    if bias.shape == (weight.shape[0],):
        return ops.Linear.apply(x, weight, bias)
    out = ops.Linear.apply(x, weight)
    try:
        np.broadcast_shapes(out.shape, bias.shape)
    except ValueError:
        raise ValueError(
            f"linear: bias of shape {bias.shape} doesn't broadcast against the output's {out.shape}; give "
            f"{weight.shape[0]} values, one per output feature (shape ({weight.shape[0]},))"
        ) from None
    return out + bias


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
    if not 0 <= p <= 1:  # also refuses nan
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    x = _tensor(x)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = as_generator(generator).random(x.shape) >= p
    return x * Tensor(keep.astype(x.dtype) / x.dtype.type(1 - p))


# ---- convolutional networks: PyTorch's arguments (int or pair) and definitions -----------------------------


def conv2d(
    input: ArrayLike,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
) -> Tensor:
    """2-D cross-correlation of (N, C, H, W) or unbatched (C, H, W) input with weight (O, C, KH, KW), plus bias (O,).

    padding: zeros on each side (an int or a (height, width) pair), "valid" (none) or "same" (stride 1 only; an
    even kernel gets the extra row and column at the bottom and right, as in PyTorch)."""
    x = _tensor(input)
    stride_ = _pair("conv2d", "stride", stride, 1)
    dilation_ = _pair("conv2d", "dilation", dilation, 1)
    weight_shape = weight.shape
    if len(weight_shape) != 4:
        raise ValueError(f"conv2d: weight must be (out_channels, in_channels, KH, KW), got shape {weight_shape}")
    kernel = weight_shape[2:]
    pads = conv_padding("conv2d", padding, kernel, stride_, dilation_)
    _check_images("conv2d", x)
    if x.shape[-3] != weight_shape[1]:
        raise ValueError(f"conv2d: input of shape {x.shape} has {x.shape[-3]} channels, but the weight of shape "
                         f"{weight_shape} expects {weight_shape[1]}")
    if bias is not None and bias.shape != weight_shape[:1]:
        raise ValueError(f"conv2d: bias must have shape ({weight_shape[0]},), one per output channel, got {bias.shape}")
    _check_windows("conv2d", x.shape, kernel, pads, dilation_)
    return _unbatched(x, lambda x4: ops_conv.Conv2d.apply(
        *(x4, weight) if bias is None else (x4, weight, bias), stride=stride_, padding=pads, dilation=dilation_))


def max_pool2d(
    input: ArrayLike,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """The maximum of each window of (N, C, H, W) or (C, H, W) input; stride defaults to the kernel size.

    The gradient goes to one element per window, the first maximum in row-major order (or the last NaN), as in
    PyTorch; overlapping windows add up."""
    x = _tensor(input)
    kernel, stride_, padding_, dilation_ = _pool_arguments("max_pool2d", kernel_size, stride, padding, dilation)
    _check_images("max_pool2d", x)
    _check_pool_padding("max_pool2d", kernel, padding_)
    pads = _pool_padding("max_pool2d", x.shape, kernel, stride_, padding_, dilation_, ceil_mode)
    return _unbatched(x, lambda x4: ops_conv.MaxPool2d.apply(x4, kernel=kernel, stride=stride_, padding=pads,
                                                               dilation=dilation_))


def avg_pool2d(
    input: ArrayLike,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """The mean of each window of (N, C, H, W) or (C, H, W) input; stride defaults to the kernel size.

    Each window's sum is divided by `divisor_override` if given, else by its size counting the zero padding
    (count_include_pad) or not; windows that ceil_mode adds past the padding count only what they cover."""
    x = _tensor(input)
    kernel, stride_, padding_, _ = _pool_arguments("avg_pool2d", kernel_size, stride, padding, 1)
    if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(
            divisor_override, (int, np.integer)) or divisor_override == 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a nonzero integer or None, got {divisor_override!r}")
    _check_images("avg_pool2d", x)
    _check_pool_padding("avg_pool2d", kernel, padding_)
    pads = _pool_padding("avg_pool2d", x.shape, kernel, stride_, padding_, (1, 1), ceil_mode)
    return _unbatched(x, lambda x4: ops_conv.AvgPool2d.apply(
        x4, kernel=kernel, stride=stride_, padding=pads, count_include_pad=bool(count_include_pad),
        divisor_override=None if divisor_override is None else int(divisor_override)))


def batch_norm(
    input: ArrayLike,
    running_mean: Tensor | np.ndarray | None,
    running_var: Tensor | np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1 of (N, C, ...)).

    Training: the batch's mean and biased variance, and the running statistics (when given) move toward them:
    running = (1 - momentum) running + momentum * batch, with the unbiased variance, in place, as in PyTorch.
    Otherwise the running statistics normalize."""
    x = _tensor(input)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {x.shape}")
    channels = x.shape[1]
    stats = {"running_mean": running_mean, "running_var": running_var, "weight": weight, "bias": bias}
    for name, value in stats.items():
        if value is not None and np.shape(value) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},), one per channel of the input of shape "
                             f"{x.shape}, got {np.shape(value)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation needs running_mean and running_var (or training=True)")
    affine = [t for t in (weight, bias) if t is not None]
    if not training:
        mean, var = _data(running_mean), _data(running_var)
        return ops_conv.BatchNorm.apply(x, *affine, mean=mean, var=var, eps=eps, batch_stats=False,
                                        has_weight=weight is not None)
    axes = (0, *range(2, x.ndim))
    count = x.size // max(channels, 1)
    if count == 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of shape "
                         f"{x.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty batch: NaN statistics, as in PyTorch
        mean = accurate_sum(x.data, axes) / count
        centered = x.data - mean.astype(x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))
        var = accurate_sum(centered * centered, axes) / count
    for stat, batch in ((running_mean, mean), (running_var, var * count / max(count - 1, 1))):
        if stat is not None:
            target = _data(stat)
            target[...] = (1 - momentum) * target + momentum * batch
    return ops_conv.BatchNorm.apply(x, *affine, mean=mean, var=var, eps=eps, batch_stats=True,
                                    has_weight=weight is not None)


def conv_padding(op: str, padding: Any, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """((top, bottom), (left, right)) from conv2d's padding: an int, a pair, "valid" (none) or "same" (stride 1
    only; an even kernel gets the extra row and column at the bottom and right, as in PyTorch)."""
    if not isinstance(padding, str):
        return tuple((p, p) for p in _pair(op, "padding", padding, 0))
    if padding not in ("valid", "same"):
        raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a pair of ints, got {padding!r}")
    if padding == "same" and stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
    totals = [0, 0] if padding == "valid" else [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return tuple((total // 2, total - total // 2) for total in totals)


def _data(value: Tensor | np.ndarray | None) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def _pair(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each at least `minimum`, as a pair (PyTorch's `_pair`)."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum for v in pair)):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, each at least {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _pool_arguments(op: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> tuple[tuple[int, int], ...]:
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride_ = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _pair(
        op, "stride", stride, 1)
    return kernel, stride_, _pair(op, "padding", padding, 0), _pair(op, "dilation", dilation, 1)


def _check_images(op: str, x: Tensor) -> None:
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected floating-point input, got dtype {x.dtype}")


def _check_pool_padding(op: str, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
    """PyTorch's rule for both poolings: padding at most half the kernel size (rounded down), dilation aside."""
    if any(p > k // 2 for k, p in zip(kernel, padding, strict=True)):
        raise ValueError(f"{op}: padding {padding} is more than half the kernel size {kernel}")


def _check_windows(op: str, shape: tuple[int, ...], kernel: Any, pads: Any, dilation: tuple[int, int]) -> None:
    """At least one window fits along each axis: the padded input is as large as the (dilated) kernel."""
    padded = [n + before + after for n, (before, after) in zip(shape[-2:], pads, strict=True)]
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    if any(p < e for p, e in zip(padded, extent, strict=True)):
        raise ValueError(f"{op}: the padded input is {padded[0]}x{padded[1]} (input of shape {shape}), smaller than "
                         f"the {extent[0]}x{extent[1]} window; use a smaller kernel or more padding")


def _pool_padding(op: str, shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int], ceil_mode: bool) -> tuple[tuple[int, int], ...]:
    """((top, bottom), (left, right)): `padding` before, and after it what the last window reads (PyTorch's output
    size: with ceil_mode a partial window is kept if it starts inside the input or its left padding, so a window
    larger than the padded input still gives one output)."""
    pads, sizes = [], []
    for n, k, s, p, d in zip(shape[-2:], kernel, stride, padding, dilation, strict=True):
        out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        sizes.append(out)
        pads.append((p, max(0, (out - 1) * s + d * (k - 1) + 1 - n - p)))
    if min(sizes) < 1:
        extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
        raise ValueError(f"{op}: the input of shape {shape} with padding {padding} is smaller than the "
                         f"{extent[0]}x{extent[1]} window (output size {sizes[0]}x{sizes[1]}); use a smaller kernel, "
                         "more padding or ceil_mode=True")
    return tuple(pads)


def _unbatched(x: Tensor, op: Callable[[Tensor], Tensor]) -> Tensor:
    """op on (N, C, H, W); a (C, H, W) input goes through as a batch of one and comes out without the batch axis."""
    if x.ndim == 4:
        return op(x)
    out = op(x.reshape(1, *x.shape))
    return out.reshape(out.shape[1:])


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
