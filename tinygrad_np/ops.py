"""The differentiable primitives: one small Function per op, forward directly above backward.

Notation in the docstrings: `g` is the gradient flowing into the op's output, `da` the one it sends to input
`a`. Gradients may keep the broadcast shape; the engine (`tensor._backward`) reduces them to each input's.
Convention: through log, sqrt, pow and division an upstream gradient of exactly 0 contributes exactly 0, even
where the local derivative is infinite (at 0) or NaN. So the branch that `where` didn't take never turns into NaN.

Twice differentiable: each op also has `graph_backward(g, y)`, the same formula written with Tensor ops, directly
below `backward`. `backward(create_graph=True)` and `tinygrad_np.grad(..., create_graph=True)` call it instead of
`backward`, and record the Tensor ops it applies, so the gradient can be differentiated again (and again: its ops
have a `graph_backward` of their own). To make an op twice differentiable, write `graph_backward(self, g, y)`:
`g` is the upstream gradient as a Tensor, `y` the op's output Tensor, `self.inputs` its input Tensors; return one
Tensor (or None) per input, like `backward`, using Tensor operators and methods, `where`, `broadcast_to`, and
indexing (whose gradient is `ScatterAdd`). Values the forward saved as arrays (masks, indices, shapes) enter as
constants; values that depend on an input (a, b, y) must be the Tensors, or the second derivative misses them.
Keep the two formulas term for term alike: the differential fuzzer (tests/test_fuzz_engine.py) checks `backward`
at first order and `graph_backward` at second and third order, against PyTorch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from tinygrad_np.parallel import matmul as _matmul  # large 2-D products split between threads, same bits
from tinygrad_np.tensor import ArrayLike, Function, Tensor, accurate_sum, as_tensor

Axis = int | tuple[int, ...] | None


def _zero_where_no_grad(grad: np.ndarray, product: np.ndarray) -> np.ndarray:
    """`product` is g * f'(x); where g == 0 make it exactly 0, even if f'(x) was infinite (0 * inf = NaN)."""
    if np.isfinite(product).all():
        return product
    return np.where(grad == 0, 0, product)


def _masked(grad: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """grad where mask, exactly 0 elsewhere, also where grad is inf or NaN (PyTorch's where(mask, g, 0)). A product
    is several times faster than np.where; only a non-finite gradient, where inf * 0 = NaN, needs the where."""
    product = grad * mask
    if np.isfinite(product).all():
        return product
    return np.where(mask, grad, 0)


def _zero_where_no_grad_graph(g: Tensor, product: Tensor) -> Tensor:
    """`_zero_where_no_grad` in Tensor ops: exactly 0 (with slope 0) only where g == 0 and the product isn't finite."""
    undefined = (g.data == 0) & ~np.isfinite(product.data)
    return where(undefined, 0.0, product) if undefined.any() else product


def _constant(array: np.ndarray) -> Tensor:
    return Tensor._make(np.asarray(array), False, None)


class AxesTypeError(TypeError):
    """Axes that are not integers: a TypeError, as in NumPy and PyTorch, that `Function.apply` prefixes with the op's
    name and input shapes, as it does every ValueError of a forward."""


def normalize_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """Axes as non-negative ints (None: all of them), checked. Every op that takes axes reads them through here.

    As in PyTorch, a 0-d tensor accepts axis 0 and -1, which name the tensor itself: no axis to reduce or permute.
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axes: tuple[Any, ...] = (axis,)
    else:
        try:
            axes = tuple(axis)
        except TypeError:
            raise AxesTypeError(f"axes must be integers, or a tuple or list of them, got {axis!r}") from None
    bound = max(ndim, 1)
    normalized = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or isinstance(ax, bool):
            raise AxesTypeError(f"axes must be integers, got {ax!r}")
        if not -bound <= ax < bound:
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimension{'' if ndim == 1 else 's'}")
        normalized.append(int(ax) % bound)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"axis {axis} names a dimension twice")
    return tuple(normalized) if ndim else ()


def _expand_reduced(grad: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Put back the reduced axes as size-1 dimensions, so the gradient broadcasts against the input."""
    return grad if keepdims else np.expand_dims(grad, axes)


def _expand_reduced_graph(g: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """`_expand_reduced` for a Tensor."""
    if keepdims:
        return g
    shape = list(g.shape)
    for ax in sorted(axes):
        shape.insert(ax, 1)
    return g.reshape(tuple(shape))


# NumPy reduces a short contiguous axis one row at a time: on 60,000 x 10 logits, max(axis=1) takes 2.7 ms and
# sum(axis=1) 1.2 ms, more than the exp itself. einsum's sums, and a max taken one column at a time, are a few
# vectorised passes (0.24-0.38 ms). Classifiers have many rows and few classes, so the fused losses reduce with
# these. (Sums over the batch, the bias gradients, go through `accurate_sum`.)


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


# ---- elementwise: binary ------------------------------------------------------------------------------


class Add(Function):
    """y = a + b;  da = g, db = g"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return g, g

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return g, g


class Sub(Function):
    """y = a - b;  da = g, db = -g"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return g, (-g if self.needs_input_grad[1] else None)

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return g, -g


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a"""

    saved_for: ClassVar[dict[str, int]] = {"a": 1, "b": 0}

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        return a * b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        return (g * self.b if need_a else None), (g * self.a if need_b else None)

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.inputs
        return g * b, g * a


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

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        _, b = self.inputs
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad_graph(g, g / b), _zero_where_no_grad_graph(g, -g * y / b)


class Pow(Function):
    """y = a ** b;  da = g * b * a ** (b - 1) (0 where b == 0), db = g * y * log(a) (0 where a == 0 and b >= 0)

    Where a factor is constant (a^0 in a, 0^b in b), the gradient is 0 whatever the upstream, NaN included, as in
    PyTorch.
    """

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        self.y = a**b
        return self.y

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        a, b = self.a, self.b
        da = db = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if need_a:  # a^0 is constant 1, even at a = 0 where b * a^(b-1) would be 0 * inf (PyTorch's rule)
                da = np.where(b == 0, 0, _zero_where_no_grad(g, g * b * a ** (b - 1)))
            if need_b:  # 0^b is flat at 0 (b > 0) or 1 (b = 0) in b; for b < 0 the slope is -inf, as in PyTorch
                db = np.where((a == 0) & (b >= 0), 0, _zero_where_no_grad(g, g * self.y * np.log(a)))
        return da, db

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        need_a, need_b = self.needs_input_grad
        a, b = self.inputs
        da = db = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if need_a:
                da = where(b.data == 0, 0.0, _zero_where_no_grad_graph(g, g * b * a ** (b - 1)))
            if need_b:
                db = where((a.data == 0) & (b.data >= 0), 0.0, _zero_where_no_grad_graph(g, g * y * a.log()))
        return da, db


class PowScalar(Function):
    """y = a ** p (p a constant);  da = g * p * a ** (p - 1)"""

    def forward(self, a: np.ndarray, exponent: float) -> np.ndarray:
        self.a, self.p = a, exponent
        self.y = a**exponent
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        if self.p == 0:  # a^0 is constant 1, even at a = 0 where p * a^(p-1) would be 0 * inf
            return np.zeros_like(g)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.p == 2:
                local = 2 * self.a
            elif self.p == 0.5:  # NumPy computes a ** 0.5 as sqrt(a) (NaN at -inf): its slope is sqrt's, as in PyTorch
                local = 0.5 / self.y
            else:
                local = self.p * self.a ** (self.p - 1)
            return _zero_where_no_grad(g, g * local)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        (a,) = self.inputs
        if self.p == 0:
            return _constant(np.zeros_like(g.data))
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.p == 2:
                local = 2 * a
            elif self.p == 0.5:
                local = 0.5 / y
            else:
                local = self.p * a ** (self.p - 1)
            return _zero_where_no_grad_graph(g, g * local)


class Maximum(Function):
    """y = max(a, b);  da = g * ((a > b) + (a == b) / 2), db = g * ((b > a) + (a == b) / 2); NaN: g to both"""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        return np.maximum(a, b)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_b = self.needs_input_grad
        a, b = self.a, self.b
        shared = np.where(a == b, g / 2, g)
        return (np.where(a < b, 0, shared) if need_a else None), (np.where(b < a, 0, shared) if need_b else None)

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.a, self.b
        shared = where(a == b, g / 2, g)
        return where(a < b, 0.0, shared), where(b < a, 0.0, shared)


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

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return where(self.cond, g, 0.0), where(self.cond, 0.0, g)


# ---- elementwise: unary -------------------------------------------------------------------------------


class Neg(Function):
    """y = -a;  da = -g"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        return -a

    def backward(self, g: np.ndarray) -> np.ndarray:
        return -g

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return -g


class Exp(Function):
    """y = exp(a);  da = g * y"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.exp(a)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * self.y

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g * y


class Log(Function):
    """y = log(a);  da = g / a"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.a = a
        return np.log(a)

    def backward(self, g: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad(g, g / self.a)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad_graph(g, g / self.inputs[0])


class Sqrt(Function):
    """y = sqrt(a);  da = g / (2 y)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.sqrt(a)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad(g, g / (2 * self.y))

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _zero_where_no_grad_graph(g, g / (2 * y))


class Tanh(Function):
    """y = tanh(a);  da = g * (1 - y^2)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.tanh(a)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * (1 - self.y * self.y)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g * (1 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-a));  da = g * y * (1 - y)"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        # exp of -|a| never overflows; the two branches are the same function for a >= 0 and a < 0.
        e = np.exp(-np.abs(a))
        self.y = np.where(a >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * self.y * (1 - self.y)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g * y * (1 - y)


class ReLU(Function):
    """y = max(a, 0);  da = g * (a > 0); 0 at the kink, and g where a is NaN, as in PyTorch"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.y = np.maximum(a, 0)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _masked(g, self.y != 0)  # y is max(a, 0): 0 where a <= 0, NaN where a is

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return where(y.data != 0, g, 0.0)


class Abs(Function):
    """y = |a|;  da = g * sign(a); sign is 0 at 0 and at NaN, as in PyTorch"""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.a = a
        return np.abs(a)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * ((self.a > 0).astype(g.dtype) - (self.a < 0))

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g * ((self.a > 0).astype(g.dtype) - (self.a < 0))


class Clip(Function):
    """y = min(max(a, low), high);  da = g where low <= a <= high, else 0; the bounds are inside, NaN is not"""

    def forward(self, a: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
        self.inside = np.ones(a.shape, dtype=bool)
        if low is not None:
            self.inside &= a >= low
        if high is not None:
            self.inside &= a <= high
        return np.clip(a, low, high)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _masked(g, self.inside)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return where(self.inside, g, 0.0)


class Cast(Function):
    """y = a as another dtype;  da = g as a's dtype"""

    def forward(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return a.astype(dtype)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g  # the engine casts every gradient to its input's dtype

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g


# ---- reductions ---------------------------------------------------------------------------------------


class Sum(Function):
    """y = sum(a, axis);  da = g broadcast back over the summed axes"""

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.shape, self.keepdims = a.shape, keepdims
        self.axes = normalize_axes(axis, a.ndim)
        return accurate_sum(a, self.axes, keepdims)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return np.broadcast_to(_expand_reduced(g, self.axes, self.keepdims), self.shape)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return broadcast_to(_expand_reduced_graph(g, self.axes, self.keepdims), self.shape)


class Mean(Function):
    """y = sum(a, axis) / n;  da = g / n broadcast back over the reduced axes  (NaN over no elements)"""

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.shape, self.keepdims = a.shape, keepdims
        self.axes = normalize_axes(axis, a.ndim)
        self.count = int(np.prod([a.shape[ax] for ax in self.axes]))
        with np.errstate(invalid="ignore"):  # 0 / 0 for an empty axis: NaN, as in PyTorch
            return accurate_sum(a, self.axes, keepdims) / self.count

    def backward(self, g: np.ndarray) -> np.ndarray:
        if not self.count:  # the mean of nothing: the input is empty, so is its gradient
            return np.zeros(self.shape, dtype=g.dtype)
        return np.broadcast_to(_expand_reduced(g, self.axes, self.keepdims) / self.count, self.shape)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        if not self.count:
            return _constant(np.zeros(self.shape, dtype=g.dtype))
        return broadcast_to(_expand_reduced_graph(g, self.axes, self.keepdims) / self.count, self.shape)


class Max(Function):
    """y = max(a, axis);  da = g at the maxima, shared evenly between ties, 0 elsewhere"""

    reduce = staticmethod(np.max)

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.axes = normalize_axes(axis, a.ndim)
        empty = [ax for ax in self.axes if a.shape[ax] == 0]
        if empty:
            raise ValueError(
                f"{type(self).__name__.lower()}() over axis {empty[0]} of size 0: an empty set has no extreme; "
                "reduce over other axes, or check the shapes"
            )
        extreme = self.reduce(a, axis=self.axes, keepdims=True)
        self.winners = a == extreme
        self.keepdims = keepdims
        return extreme if keepdims else np.squeeze(extreme, axis=self.axes)

    def backward(self, g: np.ndarray) -> np.ndarray:
        ties = self.winners.sum(axis=self.axes, keepdims=True)
        return self.winners * (_expand_reduced(g, self.axes, self.keepdims) / ties)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        ties = self.winners.sum(axis=self.axes, keepdims=True)
        return (_expand_reduced_graph(g, self.axes, self.keepdims) / ties) * self.winners


class Min(Max):
    """y = min(a, axis);  da = g at the minima, shared evenly between ties, 0 elsewhere"""

    reduce = staticmethod(np.min)


class LogSumExp(Function):
    """y = log(sum(exp(a), axis));  da = g * exp(a - y); shifted by the max, so exp can't overflow; -inf over nothing"""

    def forward(self, a: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
        self.axes, self.keepdims = normalize_axes(axis, a.ndim), keepdims
        shift = _max_or_minus_inf(a, self.axes)
        shift = np.where(np.isfinite(shift), shift, 0)  # all -inf: keep -inf instead of NaN
        with np.errstate(divide="ignore"):
            out = np.log(accurate_sum(np.exp(a - shift), self.axes, keepdims=True)) + shift
        self.a, self.out = a, out
        return out if keepdims else np.squeeze(out, axis=self.axes)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _expand_reduced(g, self.axes, self.keepdims) * np.exp(self.a - self.out)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        out = _expand_reduced_graph(y, self.axes, self.keepdims)
        return _expand_reduced_graph(g, self.axes, self.keepdims) * (self.inputs[0] - out).exp()


def _max_or_minus_inf(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """a.max(axes, keepdims=True), -inf over an empty axis (where the softmax family has nothing to shift)."""
    if any(a.shape[ax] == 0 for ax in axes):
        return np.full([1 if ax in axes else n for ax, n in enumerate(a.shape)], -np.inf, dtype=a.dtype)
    return a.max(axis=axes, keepdims=True)


class Softmax(Function):
    """y = exp(a) / sum(exp(a), axis);  da = y * (g - sum(g * y, axis))"""

    def forward(self, a: np.ndarray, axis: int) -> np.ndarray:
        self.axes = normalize_axes(axis, a.ndim)
        e = np.exp(a - _max_or_minus_inf(a, self.axes))  # the shift cancels and keeps exp finite
        self.y = e / accurate_sum(e, self.axes, keepdims=True)
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        y = self.y
        return y * (g - accurate_sum(g * y, self.axes, keepdims=True))

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return y * (g - (g * y).sum(self.axes, keepdims=True))


class LogSoftmax(Function):
    """y = a - logsumexp(a, axis);  da = g - softmax(a) * sum(g, axis)"""

    def forward(self, a: np.ndarray, axis: int) -> np.ndarray:
        self.axes = normalize_axes(axis, a.ndim)
        shifted = a - _max_or_minus_inf(a, self.axes)
        with np.errstate(divide="ignore"):  # log(0) of an empty axis: the output is empty anyway
            self.y = shifted - np.log(accurate_sum(np.exp(shifted), self.axes, keepdims=True))
        return self.y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g - np.exp(self.y) * accurate_sum(g, self.axes, keepdims=True)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g - y.exp() * g.sum(self.axes, keepdims=True)


# ---- shape --------------------------------------------------------------------------------------------


class Reshape(Function):
    """y = a reshaped;  da = g reshaped back"""

    def forward(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g.reshape(self.shape)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g.reshape(self.shape)


class Transpose(Function):
    """y = a with its axes permuted (reversed when none are given, or two swapped);  da = g permuted back"""

    def forward(self, a: np.ndarray, axes: tuple[int, ...] | None, swap: tuple[int, int] | None = None) -> np.ndarray:
        if swap is not None:  # PyTorch's transpose(d0, d1): those two axes exchanged
            first, second = (normalize_axes(ax, a.ndim) for ax in swap)
            swapped = list(range(a.ndim))
            if a.ndim:
                swapped[first[0]], swapped[second[0]] = swapped[second[0]], swapped[first[0]]
            order = tuple(swapped)
        elif axes is None:
            order = tuple(reversed(range(a.ndim)))
        else:
            order = normalize_axes(axes, a.ndim)
            if len(axes) != a.ndim or sorted(order) != list(range(a.ndim)):
                raise ValueError(f"axes {axes} are not a permutation of the tensor's {a.ndim} dimensions")
        self.inverse = tuple(order.index(ax) for ax in range(a.ndim))
        return np.transpose(a, order)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return np.transpose(g, self.inverse)

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g.transpose(self.inverse) if self.inverse else g.transpose()


_BASIC_INDEX = (int, np.integer, slice, type(None), type(Ellipsis))


def _is_basic(index: Any) -> bool:
    """Whether NumPy reads `index` as basic indexing (ints, slices, None, ...), which picks each element at most
    once. Anything else, a list, tuple or array of indices or a boolean mask, may pick one element many times."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(part, _BASIC_INDEX) and not isinstance(part, bool) for part in parts)


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
        if _is_basic(self.index):
            grad[self.index] = g
        else:
            np.add.at(grad, self.index, g)  # unlike `grad[index] += g`, adds once per repeat
        return grad

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return ScatterAdd.apply(g, shape=self.shape, index=self.index)


class ScatterAdd(Function):
    """y = zeros(shape) with a added at index (GetItem's gradient);  da = g[index]"""

    def forward(self, a: np.ndarray, shape: tuple[int, ...], index: Any) -> np.ndarray:
        self.index = index
        out = np.zeros(shape, dtype=a.dtype)
        if _is_basic(index):
            out[index] = a
        else:
            np.add.at(out, index, a)
        return out

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g[self.index]

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return GetItem.apply(g, index=self.index)


class BroadcastTo(Function):
    """y = a broadcast to shape (Sum's gradient);  da = g summed over the broadcast axes"""

    def forward(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(np.broadcast_to(a, shape))  # a copy: a tensor's data is writable

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g  # the engine sums a gradient over the axes broadcasting stretched

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        return g


def broadcast_to(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """`a` broadcast to `shape` (numpy.broadcast_to), as a new tensor; its gradient is summed back."""
    return a if a.shape == tuple(shape) else BroadcastTo.apply(a, shape=tuple(shape))


class Concatenate(Function):
    """y = [a1, a2, ...] joined along axis;  da_i = the slice of g that a_i filled"""

    def forward(self, *arrays: np.ndarray, axis: int) -> np.ndarray:
        if arrays[0].ndim == 0:
            raise ValueError("0-d tensors have no axis to concatenate along; stack them instead")
        (self.axis,) = normalize_axes(axis, arrays[0].ndim)
        out = np.concatenate(arrays, axis=self.axis)  # checks that the other dimensions match
        self.splits = np.cumsum([a.shape[self.axis] for a in arrays])[:-1]
        return out

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(g, self.splits, axis=self.axis))

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        bounds = [0, *self.splits.tolist(), g.shape[self.axis]]
        lead = (slice(None),) * self.axis
        return tuple(g[(*lead, slice(start, stop))] for start, stop in itertools.pairwise(bounds))


class Stack(Function):
    """y = [a1, a2, ...] stacked along a new axis;  da_i = g[..., i, ...]"""

    def forward(self, *arrays: np.ndarray, axis: int) -> np.ndarray:
        (self.axis,) = normalize_axes(axis, arrays[0].ndim + 1)
        return np.stack(arrays, axis=self.axis)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.moveaxis(g, self.axis, 0))

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        lead = (slice(None),) * self.axis
        return tuple(g[(*lead, i)] for i in range(g.shape[self.axis]))


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

    saved_for: ClassVar[dict[str, int]] = {"a": 1, "b": 0}

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.a, self.b = a, b
        try:
            return _matmul(a, b)
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
        da = _matmul(g, np.swapaxes(b, -1, -2)) if need_a else None
        db = _matmul(np.swapaxes(a, -1, -2), g) if need_b else None
        return da, db

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
        if b.ndim == 1:
            da = g[..., None] * b if need_a else None
            db = (_swap_last(a) @ g[..., None])[..., 0] if need_b else None
            return da, db
        if a.ndim == 1:
            da = (g[..., None, :] @ _swap_last(b))[..., 0, :] if need_a else None
            db = a[:, None] * g[..., None, :] if need_b else None
            return da, db
        return (g @ _swap_last(b) if need_a else None), (_swap_last(a) @ g if need_b else None)


def _swap_last(t: Tensor) -> Tensor:
    """t with its last two axes swapped (np.swapaxes(t, -1, -2))."""
    order = list(range(t.ndim))
    order[-2:] = order[-1], order[-2]
    return t.transpose(order)


class Linear(Function):
    """y = x @ W^T + b (one fused node for nn.Linear);  dx = g @ W, dW = g^T @ x, db = sum(g) over the batch"""

    saved_for: ClassVar[dict[str, int]] = {"x": 1, "weight": 0}

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"input has {x.shape[-1] if x.ndim else 'no'} features in its last dimension (shape {x.shape}) "
                f"but the layer expects {weight.shape[1]} (weight shape {weight.shape})"
            )
        self.x, self.weight = x, weight
        out = _matmul(x, weight.T)
        if bias is None:
            return out
        if bias.dtype == out.dtype:
            out += bias  # out is fresh from the matmul: adding in place saves an array
            return out
        return out + bias  # mixed precision: NumPy's promotion picks the result's dtype

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        need_x, need_w, *need_b = self.needs_input_grad
        x, g2 = self.x, g
        if g.ndim != 2:  # one row per example: fold leading batch dimensions, or make a single example a row
            rows = int(np.prod(g.shape[:-1]))  # not -1, which can't be inferred when there are no features
            x, g2 = x.reshape(rows, x.shape[-1]), g.reshape(rows, g.shape[-1])
        dx = _matmul(g, self.weight) if need_x else None
        dw = _matmul(g2.T, x) if need_w else None
        if not need_b:
            return dx, dw
        return dx, dw, (accurate_sum(g2, 0) if need_b[0] else None)

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor | None, ...]:
        need_x, need_w, *need_b = self.needs_input_grad
        x, weight = self.inputs[:2]
        g2 = g
        if g.ndim != 2:
            rows = int(np.prod(g.shape[:-1]))
            x, g2 = x.reshape(rows, x.shape[-1]), g.reshape(rows, g.shape[-1])
        dx = g @ weight if need_x else None
        dw = g2.T @ x if need_w else None
        if not need_b:
            return dx, dw
        return dx, dw, (g2.sum(0) if need_b[0] else None)


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


def _as_rows_graph(a: Tensor) -> Tensor:
    """`_as_rows` for a Tensor."""
    if a.ndim <= 2:
        return a if a.ndim == 2 else a.reshape(1, a.shape[0])
    return a.transpose(0, *range(2, a.ndim), 1).reshape(-1, a.shape[1])


def _from_rows_graph(rows: Tensor, shape: tuple[int, ...]) -> Tensor:
    """`_from_rows` for a Tensor."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    return rows.reshape(shape[0], *shape[2:], shape[1]).transpose(0, len(shape) - 1, *range(1, len(shape) - 1))


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

    def _row_scales_graph(self, g: Tensor) -> Tensor:
        """`_row_scales` for a Tensor."""
        rows = len(self.rows)
        if self.reduction == "none":
            scales = g.reshape(rows)
        elif self.reduction == "sum":
            scales = broadcast_to(g, (rows,))
        else:
            scales = broadcast_to(g / self.total_weight if self.total_weight else g * np.nan, (rows,))
        return scales if self.ignored is None else where(self.ignored, 0.0, scales)


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

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        """The general formula above, dz_i = g_i (c_i softmax(z_i) - d_i), with softmax a Tensor op: its slope in z is
        the second derivative. c_i = (1 - s) w[t_i] + (s / C) sum w and d_i = (1 - s) w[t_i] onehot(t_i) + (s / C) w
        are constants."""
        s, classes = self.smoothing, self.probs.shape[1]
        dtype = self.probs.dtype
        weight = np.ones(classes, dtype) if self.weight is None else self.weight
        target_part = (1 - s) * (np.ones(len(self.rows), dtype) if self.target_weight is None else self.target_weight)
        c = (target_part + s / classes * weight.sum()).astype(dtype)
        d = np.broadcast_to((s / classes * weight).astype(dtype), self.probs.shape).copy()
        d[self.rows, self.targets] += target_part
        probs = _as_rows_graph(self.inputs[0]).softmax(axis=1)
        grad = self._row_scales_graph(g).reshape(-1, 1) * (probs * c[:, None] - d)
        return _from_rows_graph(grad, self.shape)


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

    def graph_backward(self, g: Tensor, y: Tensor) -> Tensor:
        scales = self._row_scales_graph(g)
        picked = -scales if self.target_weight is None else -scales * self.target_weight.astype(g.dtype)
        classes = self.shape[0] if len(self.shape) == 1 else self.shape[1]
        targets = np.zeros((len(self.rows), classes), dtype=bool)
        targets[self.rows, self.targets] = True
        return _from_rows_graph(where(targets, picked.reshape(-1, 1), 0.0), self.shape)


# ---- functions over several tensors -------------------------------------------------------------------


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
    ta = a if isinstance(a, Tensor) else as_tensor(b)._lift(a)
    return Maximum.apply(ta, ta._lift(b))


def concatenate(tensors: Sequence[ArrayLike], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (numpy.concatenate)."""
    if not tensors:
        raise ValueError("concatenate() needs at least one tensor")
    return Concatenate.apply(*[as_tensor(t) for t in tensors], axis=axis)


def stack(tensors: Sequence[ArrayLike], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis (numpy.stack)."""
    if not tensors:
        raise ValueError("stack() needs at least one tensor")
    return Stack.apply(*[as_tensor(t) for t in tensors], axis=axis)
