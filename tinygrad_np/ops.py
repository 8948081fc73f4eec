"""The differentiable primitives: one small Function per op, forward directly above backward.

Notation in the docstrings: `g` is the gradient flowing into the op's output, `da` the one it sends to input
`a`. Gradients may keep the broadcast shape; the engine (`tensor._backward`) reduces them to each input's.
Convention: an upstream gradient of exactly 0 contributes exactly 0, even where the local derivative is
infinite (log at 0, sqrt at 0, division by 0). So the branch that `where` didn't take never turns into NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_np.tensor import ArrayLike, Function, Tensor

Axis = int | tuple[int, ...] | None


def _zero_where_no_grad(grad: np.ndarray, product: np.ndarray) -> np.ndarray:
    """`product` is g * f'(x); where g == 0 make it exactly 0, even if f'(x) was infinite (0 * inf = NaN)."""
    if np.isfinite(product).all():
        return product
    return np.where(grad == 0, 0, product)


def _normalize_axis(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    normalized = []
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
        normalized.append(ax % max(ndim, 1))
    return tuple(normalized)


def _expand_reduced(grad: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Put back the reduced axes as size-1 dimensions, so the gradient broadcasts against the input."""
    return grad if keepdims else np.expand_dims(grad, axes)


# NumPy reduces a short contiguous axis one row at a time: on 60,000 x 10 logits, max(axis=1) takes 2.7 ms and
# sum(axis=1) 1.2 ms, more than the exp itself; and sum(axis=0) of 60,000 x 10 gradients takes 0.9 ms. einsum's
# sums, and a max taken one column at a time, are a few vectorised passes (0.24-0.38 ms). Classifiers have many
# rows and few classes, so the fused layers and losses reduce with these.


def _row_max(a: np.ndarray) -> np.ndarray:
    """a.max(axis=1, keepdims=True) of a 2-D array; column by column when it is long and narrow."""
    rows, columns = a.shape
    if rows < 1024 or not 0 < columns <= 16:
        return a.max(axis=1, keepdims=True)
    out = a[:, :1].copy()
    for j in range(1, columns):
        np.maximum(out, a[:, j : j + 1], out=out)
    return out


def _row_sum(a: np.ndarray) -> np.ndarray:
    """a.sum(axis=1, keepdims=True) of a 2-D array."""
    return np.einsum("ij->i", a)[:, None]


def _column_sum(a: np.ndarray) -> np.ndarray:
    """a.sum(axis=0) of a 2-D array."""
    return np.einsum("ij->j", a)


# ---- elementwise: binary ------------------------------------------------------------------------------


class Add(Function):
    """y = a + b;  da = g, db = g"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return g, g


class Sub(Function):
    """y = a - b;  da = g, db = -g"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return g, (-g if self.needs_input_grad[1] else None)


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        return a * b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        return (g * self.b if need_a else None), (g * self.a if need_b else None)


class Div(Function):
    """y = a / b;  da = g / b, db = -g * y / b"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.b = b
        self.y = a / b
        return self.y

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        with np.errstate(divide="ignore", invalid="ignore"):
            da = _zero_where_no_grad(g, g / self.b) if need_a else None
            db = _zero_where_no_grad(g, -g * self.y / self.b) if need_b else None
        return da, db


class Pow(Function):
    """y = a ** b;  da = g * b * a ** (b - 1), db = g * y * log(a)  (db taken as 0 where a == 0)"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        self.y = a**b
        return self.y

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        a, b = self.a, self.b
        with np.errstate(divide="ignore", invalid="ignore"):
            da = _zero_where_no_grad(g, g * b * a ** (b - 1)) if need_a else None
            if need_b:
                # d(a^b)/db = a^b log a; at a == 0 (with b > 0) a^b is flat at 0 in b.
                log_a = np.log(np.where(a == 0, 1, a))
                db = _zero_where_no_grad(g, g * self.y * log_a)
            else:
                db = None
        return da, db


class PowScalar(Function):
    """y = a ** p (p a constant);  da = g * p * a ** (p - 1)"""

    def forward(self, a: np.ndarray, exponent: float) -> np.ndarray:
        self.a, self.p = a, exponent
        return a**exponent

    def backward(self, g: np.ndarray) -> np.ndarray:
        if self.p == 0:  # a^0 is constant 1, even at a = 0 where p * a^(p-1) would be 0 * inf
            return np.zeros_like(g)
        if self.p == 2:
            return g * 2 * self.a
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad(g, g * self.p * self.a ** (self.p - 1))


class Maximum(Function):
    """y = max(a, b);  da = g where a > b, db = g where b > a; ties split g evenly (as PyTorch does)"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        return np.maximum(a, b)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        share_a = (self.a > self.b) + 0.5 * (self.a == self.b)
        return g * share_a.astype(g.dtype), g * (1 - share_a).astype(g.dtype)


class Where(Function):
    """y = cond ? a : b;  da = cond ? g : 0, db = cond ? 0 : g  (cond is a constant boolean array)"""

    def forward(self, a: np.ndarray, b: np.ndarray, cond: np.ndarray) -> np.ndarray:
        self.cond = cond
        return np.where(cond, a, b)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        return (np.where(self.cond, g, 0) if need_a else None), (
            np.where(self.cond, 0, g) if need_b else None
        )


# ---- elementwise: unary -------------------------------------------------------------------------------


class Neg(Function):
    """y = -a;  da = -g"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        return -a

    def backward(self, g: np.ndarray) -> np.ndarray:
        return -g


class Exp(Function):
    """y = exp(a);  da = g * y"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.exp(a)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * self.y


class Log(Function):
    """y = log(a);  da = g / a"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.a = a
        return np.log(a)

    def backward(self, g: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad(g, g / self.a)


class Sqrt(Function):
    """y = sqrt(a);  da = g / (2 y)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.sqrt(a)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad(g, g / (2 * self.y))


class Tanh(Function):
    """y = tanh(a);  da = g * (1 - y^2)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.tanh(a)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * (1 - self.y * self.y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-a));  da = g * y * (1 - y)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        # exp of -|a| never overflows; the two branches are the same function for a >= 0 and a < 0.
        e = np.exp(-np.abs(a))
        self.y = np.where(a >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * self.y * (1 - self.y)


class ReLU(Function):
    """y = max(a, 0);  da = g * (a > 0)  (the subgradient at 0 is 0, as in PyTorch)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.maximum(a, 0)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * (self.y > 0)


class Abs(Function):
    """y = |a|;  da = g * sign(a)  (0 at 0)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.a = a
        return np.abs(a)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * np.sign(self.a)


class Clip(Function):
    """y = min(max(a, low), high);  da = g where low <= a <= high, else 0"""

    def forward(self, a: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
        self.inside = np.ones(a.shape, dtype=bool)
        if low is not None:
            self.inside &= a >= low
        if high is not None:
            self.inside &= a <= high
        return np.clip(a, low, high)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * self.inside


class Cast(Function):
    """y = a as another dtype;  da = g as a's dtype"""

    def forward(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return a.astype(dtype)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g  # the engine casts every gradient to its input's dtype


# ---- reductions ---------------------------------------------------------------------------------------


class Sum(Function):
    """y = sum(a, axis);  da = g broadcast back over the summed axes"""

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.shape, self.keepdims = a.shape, keepdims
        self.axes = _normalize_axis(axis, a.ndim)
        return a.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return np.broadcast_to(_expand_reduced(g, self.axes, self.keepdims), self.shape)


class Mean(Function):
    """y = sum(a, axis) / n;  da = g / n broadcast back over the reduced axes"""

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.shape, self.keepdims = a.shape, keepdims
        self.axes = _normalize_axis(axis, a.ndim)
        self.count = int(np.prod([a.shape[ax] for ax in self.axes]))
        return a.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return np.broadcast_to(_expand_reduced(g, self.axes, self.keepdims) / self.count, self.shape)


class Max(Function):
    """y = max(a, axis);  da = g at the maxima, shared evenly between ties, 0 elsewhere"""

    reduce = staticmethod(np.max)

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        if a.size == 0:
            raise ValueError(f"{type(self).__name__.lower()}() of an empty tensor")
        self.axes = _normalize_axis(axis, a.ndim)
        extreme = self.reduce(a, axis=self.axes, keepdims=True)
        self.winners = a == extreme
        self.keepdims = keepdims
        return extreme if keepdims else np.squeeze(extreme, axis=self.axes)

    def backward(self, g: np.ndarray) -> np.ndarray:
        ties = self.winners.sum(axis=self.axes, keepdims=True)
        return self.winners * (_expand_reduced(g, self.axes, self.keepdims) / ties)


class Min(Max):
    """y = min(a, axis);  da = g at the minima, shared evenly between ties, 0 elsewhere"""

    reduce = staticmethod(np.min)


class LogSumExp(Function):
    """y = log(sum(exp(a), axis));  da = g * exp(a - y)  (shifted by the max, so exp never overflows)"""

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.axes, self.keepdims = _normalize_axis(axis, a.ndim), keepdims
        shift = a.max(axis=self.axes, keepdims=True)
        shift = np.where(np.isfinite(shift), shift, 0)  # all -inf: keep -inf instead of NaN
        with np.errstate(divide="ignore"):
            out = np.log(np.exp(a - shift).sum(axis=self.axes, keepdims=True)) + shift
        self.a, self.out = a, out
        return out if keepdims else np.squeeze(out, axis=self.axes)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _expand_reduced(g, self.axes, self.keepdims) * np.exp(self.a - self.out)


class Softmax(Function):
    """y = exp(a) / sum(exp(a), axis);  da = y * (g - sum(g * y, axis))"""

    def forward(self, a: np.ndarray, axis: int) -> np.ndarray:
        self.axis = axis
        e = np.exp(a - a.max(axis=axis, keepdims=True))  # the shift cancels and keeps exp finite
        self.y = e / e.sum(axis=axis, keepdims=True)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        y = self.y
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = a - logsumexp(a, axis);  da = g - softmax(a) * sum(g, axis)"""

    def forward(self, a: np.ndarray, axis: int) -> np.ndarray:
        self.axis = axis
        shifted = a - a.max(axis=axis, keepdims=True)
        self.y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g - np.exp(self.y) * g.sum(axis=self.axis, keepdims=True)


# ---- shape --------------------------------------------------------------------------------------------


class Reshape(Function):
    """y = a reshaped;  da = g reshaped back"""

    def forward(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g.reshape(self.shape)


class Transpose(Function):
    """y = a with its axes permuted;  da = g with the inverse permutation"""

    def forward(self, a: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
        self.inverse = None if axes is None else tuple(np.argsort(axes))
        return np.transpose(a, axes)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return np.transpose(g, self.inverse)


def _is_advanced(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (np.ndarray, list)) for p in parts)


class GetItem(Function):
    """y = a[index];  da = zeros with g scattered back at index (repeated indices accumulate)"""

    def forward(self, a: np.ndarray, index: Any) -> np.ndarray:
        self.shape, self.index = a.shape, index
        try:
            return a[index]
        except IndexError as err:
            raise ValueError(f"index {index!r} doesn't fit shape {a.shape}: {err}") from None

    def backward(self, g: np.ndarray) -> np.ndarray:
        grad = np.zeros(self.shape, dtype=g.dtype)
        if _is_advanced(self.index):
            np.add.at(grad, self.index, g)  # unlike `grad[index] += g`, adds once per repeat
        else:
            grad[self.index] = g
        return grad


class Concatenate(Function):
    """y = [a1, a2, ...] joined along axis;  da_i = the slice of g that a_i filled"""

    def forward(self, *arrays: np.ndarray, axis: int) -> np.ndarray:
        self.axis = axis
        self.splits = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(g, self.splits, axis=self.axis))


class Stack(Function):
    """y = [a1, a2, ...] stacked along a new axis;  da_i = g[..., i, ...]"""

    def forward(self, *arrays: np.ndarray, axis: int) -> np.ndarray:
        out = np.stack(arrays, axis=axis)
        self.axis = axis % out.ndim
        return out

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.moveaxis(g, self.axis, 0))


# ---- matmul -------------------------------------------------------------------------------------------


def _matmul_error(a: np.ndarray, b: np.ndarray) -> ValueError:
    if a.ndim == 0 or b.ndim == 0:
        return ValueError(
            f"matmul needs operands with at least 1 dimension, got shapes {a.shape} and {b.shape}"
        )
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        return ValueError(
            f"shapes {a.shape} and {b.shape} don't align: the last dimension of the first ({a.shape[-1]}) "
            f"must equal the {'only' if b.ndim == 1 else 'second-to-last'} dimension of the second ({inner_b})"
        )
    return ValueError(f"batch dimensions of {a.shape} and {b.shape} don't broadcast")


class MatMul(Function):
    """y = a @ b;  da = g @ b^T, db = a^T @ g  (1-D operands are promoted and squeezed as in NumPy)"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        try:
            return np.matmul(a, b)
        except ValueError:
            raise _matmul_error(a, b) from None

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        a, b = self.a, self.b
        need_a, need_b = self.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:  # inner product, g is a scalar
            return (g * b if need_a else None), (g * a if need_b else None)
        if b.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
            da = g[..., None] * b if need_a else None
            db = np.matmul(np.swapaxes(a, -1, -2), g[..., None])[..., 0] if need_b else None
            return da, db
        if a.ndim == 1:  # (k,) @ (..., k, m) -> (..., m)
            da = np.matmul(g[..., None, :], np.swapaxes(b, -1, -2))[..., 0, :] if need_a else None
            db = a[:, None] * g[..., None, :] if need_b else None
            return da, db
        da = np.matmul(g, np.swapaxes(b, -1, -2)) if need_a else None
        db = np.matmul(np.swapaxes(a, -1, -2), g) if need_b else None
        return da, db


class Linear(Function):
    """y = x @ W^T + b (one fused node for nn.Linear);  dx = g @ W, dW = g^T @ x, db = sum(g) over the batch"""

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"input has {x.shape[-1] if x.ndim else 'no'} features in its last dimension (shape {x.shape}) "
                f"but the layer expects {weight.shape[1]} (weight shape {weight.shape})"
            )
        self.x, self.weight = x, weight
        out = x @ weight.T
        if bias is not None:
            out += bias  # out is fresh from the matmul: adding in place saves an array
        return out

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        need_x, need_w, *need_b = self.needs_input_grad
        x, g2 = self.x, g
        if g.ndim != 2:  # one row per example: fold leading batch dimensions, or make a single example a row
            x, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        dx = g @ self.weight if need_x else None
        dw = g2.T @ x if need_w else None
        if not need_b:
            return dx, dw
        return dx, dw, (_column_sum(g2) if need_b[0] else None)


# ---- losses (fused: numerically delicate, and their gradients are the textbook ones) -------------------
#
# Both take PyTorch's layouts: (C,) unbatched, (N, C), or (N, C, d1, ...) with the class axis second; they work
# on rows, one per prediction (the class axis moved last). `ignored` marks predictions whose label is the
# ignore_index (their label is then not read); `weight` holds one weight per class. 'mean' divides by the
# total weight of the predictions kept, w[t_i] summed over kept i (their count when unweighted), as PyTorch
# does: an all-ignored batch gives 0 / 0 = nan, and a zero gradient.


def _as_rows(a: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C);  (N, C) as is;  (N, C, d1, ...) -> (N d1 ..., C)."""
    if a.ndim == 2:
        return a
    return a[None] if a.ndim == 1 else np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _from_rows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo `_as_rows` for an array of the input's shape."""
    if len(shape) == 2:
        return rows
    return rows[0] if len(shape) == 1 else np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


class _ClassIndexLoss:
    """What the two class-index losses share: labels as rows, the reduction and its gradient's scale."""

    def _targets(self, shape: tuple[int, ...], labels: np.ndarray, weight: Any, ignored: Any, reduction: str) -> None:
        self.shape, self.labels_shape, self.reduction = shape, labels.shape, reduction
        labels = labels.reshape(-1)
        self.targets = labels if ignored is None else np.where(ignored.reshape(-1), 0, labels)
        self.ignored = None if ignored is None else ignored.reshape(-1)
        self.rows = np.arange(len(labels))
        self.weight = weight
        self.target_weight = None if weight is None else weight[self.targets]  # w[t_i]

    def _reduce(self, losses: np.ndarray) -> np.ndarray:
        """losses holds one loss per row, 0 where ignored."""
        if self.reduction == "none":
            return losses.reshape(self.labels_shape)
        if self.reduction == "sum":
            return losses.sum()
        if self.target_weight is None:  # a Python int, so float32 losses stay float32
            self.total_weight = len(self.rows) if self.ignored is None else int(np.count_nonzero(~self.ignored))
        else:
            kept = self.target_weight if self.ignored is None else np.where(self.ignored, 0, self.target_weight)
            self.total_weight = kept.sum()
        if not self.total_weight:  # nothing kept (or all of weight 0): 0 / 0 = nan, even with smoothing, as in
            return np.array(np.nan, dtype=losses.dtype)  # PyTorch, which divides the two terms separately
        return losses.sum() / self.total_weight

    def _row_scales(self, g: np.ndarray) -> np.ndarray:
        """d(output) / d(loss_i) times g, per row; exactly 0 for ignored rows."""
        if self.reduction == "none":
            scales = g.reshape(-1)
        elif self.reduction == "sum":
            scales = np.broadcast_to(g, self.rows.shape)
        else:  # a mean over zero total weight is 0 / 0: its gradient is nan too (where not ignored), as in PyTorch
            scale = g / self.total_weight if self.total_weight else np.full_like(g, np.nan)
            scales = np.broadcast_to(scale, self.rows.shape)
        return scales if self.ignored is None else np.where(self.ignored, 0, scales)


class CrossEntropy(_ClassIndexLoss, Function):
    """y = -mean_i log softmax(z_i)[t_i];  dz = g * (softmax(z) - onehot(t)) / m

    That is the common case. In general, per row i (0 where t_i is ignored), with class weights w and smoothing s:
    l_i = (1 - s) w[t_i] (lse(z_i) - z_i[t_i]) + (s / C) sum_c w_c (lse(z_i) - z_ic), reduced ('mean': / sum w[t_i]);
    dz_i = g_i [((1 - s) w[t_i] + (s / C) sum w) softmax(z_i) - (1 - s) w[t_i] onehot(t_i) - (s / C) w].
    """

    def forward(
        self,
        logits: np.ndarray,
        labels: np.ndarray,
        weight: np.ndarray | None = None,
        ignored: np.ndarray | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> np.ndarray:
        self._targets(logits.shape, labels, weight, ignored, reduction)
        self.smoothing = label_smoothing
        z = _as_rows(logits)
        shifted = z - _row_max(z)
        picked = shifted[self.rows, self.targets]
        if label_smoothing:  # sum_c w_c (z_ic - max_i), taken before `shifted` is overwritten
            smooth_sum = _row_sum(shifted)[:, 0] if weight is None else shifted @ weight
        probs = np.exp(shifted, out=shifted)  # `shifted` isn't needed any more: reuse its memory
        total = _row_sum(probs)
        probs /= total
        self.probs = probs
        log_total = np.log(total[:, 0])
        self.plain = weight is None and ignored is None and not label_smoothing and reduction == "mean"
        if self.plain:  # the common case, one pass fewer: -mean_i log softmax(z_i)[t_i]
            self.total_weight = len(self.rows)
            with np.errstate(invalid="ignore"):  # an empty batch: 0 / 0 = nan, as in PyTorch
                return -(picked - log_total).sum() / self.total_weight
        losses = log_total - picked  # -log softmax(z_i)[t_i]
        if weight is not None:
            losses *= self.target_weight
        if label_smoothing:
            class_weight = z.shape[1] if weight is None else weight.sum()
            losses = (1 - label_smoothing) * losses + label_smoothing / z.shape[1] * (
                class_weight * log_total - smooth_sum
            )
        if ignored is not None:
            losses[self.ignored] = 0
        return self._reduce(losses)

    def backward(self, g: np.ndarray) -> np.ndarray:
        if self.plain:
            with np.errstate(divide="ignore", invalid="ignore"):  # an empty batch, whose gradient is empty
                scale = g / self.total_weight
            grad = self.probs * scale  # one pass, where copy-then-scale made two
            grad[self.rows, self.targets] -= scale
            return _from_rows(grad, self.shape)
        s, classes = self.smoothing, self.probs.shape[1]
        scales = self._row_scales(g)
        target_part = scales * (1 - s) if self.target_weight is None else scales * ((1 - s) * self.target_weight)
        if s:
            class_weight = classes if self.weight is None else self.weight.sum()
            grad = self.probs * (target_part + scales * (s / classes * class_weight))[:, None]
            smoothing_part = scales * (s / classes)
            grad -= smoothing_part[:, None] if self.weight is None else np.outer(smoothing_part, self.weight)
        else:
            grad = self.probs * target_part[:, None]
        grad[self.rows, self.targets] -= target_part
        return _from_rows(grad, self.shape)


class NLLLoss(_ClassIndexLoss, Function):
    """y = -mean_i p_i[t_i] (p holds log-probabilities);  dp[i, t_i] = -g / m, 0 elsewhere

    That is the common case. In general, per row i (0 where t_i is ignored), with class weights w:
    l_i = -w[t_i] p_i[t_i], reduced ('mean': / sum w[t_i]);  dp_i[t_i] = -g_i w[t_i].
    """

    def forward(
        self,
        log_probs: np.ndarray,
        labels: np.ndarray,
        weight: np.ndarray | None = None,
        ignored: np.ndarray | None = None,
        reduction: str = "mean",
    ) -> np.ndarray:
        self._targets(log_probs.shape, labels, weight, ignored, reduction)
        losses = -_as_rows(log_probs)[self.rows, self.targets]
        if weight is not None:
            losses *= self.target_weight
        if ignored is not None:
            losses[self.ignored] = 0
        return self._reduce(losses)

    def backward(self, g: np.ndarray) -> np.ndarray:
        scales = self._row_scales(g)
        grad = np.zeros((len(self.rows), self.shape[0] if len(self.shape) == 1 else self.shape[1]), dtype=g.dtype)
        grad[self.rows, self.targets] = -scales if self.target_weight is None else -scales * self.target_weight
        return _from_rows(grad, self.shape)


# ---- functions over several tensors -------------------------------------------------------------------


def _as_tensor(x: ArrayLike) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def where(condition: ArrayLike, a: ArrayLike, b: ArrayLike) -> Tensor:
    """Elementwise `a if condition else b`; the untaken side gets exactly zero gradient."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition)
    if cond.dtype != np.bool_:
        raise TypeError(
            f"where() needs a boolean condition, got dtype {cond.dtype}; compare first, e.g. x > 0"
        )
    ta = a if isinstance(a, Tensor) else (b._lift(a) if isinstance(b, Tensor) else Tensor(a))
    tb = b if isinstance(b, Tensor) else ta._lift(b)
    return Where.apply(ta, tb, cond=cond)


def maximum(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Elementwise max(a, b); ties share the gradient evenly."""
    ta = a if isinstance(a, Tensor) else _as_tensor(b)._lift(a)
    return Maximum.apply(ta, ta._lift(b))


def concatenate(tensors: Sequence[ArrayLike], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (numpy.concatenate)."""
    if not tensors:
        raise ValueError("concatenate() needs at least one tensor")
    return Concatenate.apply(*[_as_tensor(t) for t in tensors], axis=axis)


def stack(tensors: Sequence[ArrayLike], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis (numpy.stack)."""
    if not tensors:
        raise ValueError("stack() needs at least one tensor")
    return Stack.apply(*[_as_tensor(t) for t in tensors], axis=axis)
