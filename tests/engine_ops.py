"""The fuzzer's op table: every differentiable op and function of tinygrad_np, and its PyTorch twin.

To add an op, add one entry to `OPS`:

    "cumsum": Op(one_tensor_and(axis=single_axis), lambda x, axis: x.cumsum(axis), lambda x, axis: x.cumsum(axis)),

`operands(builder)` draws the inputs (node indices, or `Const`s for numbers and arrays) and the keyword arguments
through the `Builder` (engine_programs.py), or returns None when the program so far has nothing the op takes;
the two functions compute the op on tinygrad_np Tensors and on torch tensors. Reuse a drawer below where the op
takes what another takes (`one_tensor`, `broadcast_pair`, `one_tensor_and(axis=any_axis, keepdims=flag)`, ...).
Where tinygrad_np's convention differs from PyTorch's on purpose (README, "Conventions"), the PyTorch function
applies the documented difference: `promote` (NumPy's type promotion), `zero_upstream_gives_zero`, `_new_node`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from engine_programs import QUANTISED, Builder, Const, Node, Op, broadcasts
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_np as tg
from tinygrad_np import Tensor, nn
from tinygrad_np.nn import functional as F

try:
    import torch
except ImportError:  # the fuzz tests require it (skipped locally, failing on CI)
    torch = None

Operands = tuple[tuple[int | Const, ...], dict[str, Any]]


# ---- PyTorch, with tinygrad_np's documented differences -------------------------------------------------------------


def promote(*operands: Any) -> list[Any]:
    """Tensors of different dtypes promote as in NumPy: float64 wins even when it is 0-d (PyTorch would keep float32
    for a 0-d float64 operand). Numbers stay numbers: both frameworks give them the tensor's dtype."""
    tensors = [o for o in operands if isinstance(o, torch.Tensor)]
    if len({t.dtype for t in tensors}) <= 1:
        return list(operands)
    common = getattr(torch, str(np.result_type(*[t.detach().numpy().dtype for t in tensors])))
    return [o.to(common) if isinstance(o, torch.Tensor) else o for o in operands]


def _tensors(*operands: Any) -> list[Any]:
    """Numbers as 0-d tensors of the other operand's dtype (torch.maximum and torch.where want tensors), promoted."""
    dtype = next(o.dtype for o in operands if isinstance(o, torch.Tensor))
    return promote(*[o if isinstance(o, torch.Tensor) else torch.tensor(o, dtype=dtype) for o in operands])


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: fn(*promote(a, b))


if torch is not None:

    class _ZeroUpstream(torch.autograd.Function):
        """An elementwise function whose gradient is exactly 0 wherever the upstream gradient is 0."""

        @staticmethod
        def forward(ctx: Any, fn: Callable[..., Any], *inputs: Any) -> Any:
            ctx.fn = fn
            ctx.save_for_backward(*inputs)
            return fn(*inputs)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            # Recorded (create_graph=True): differentiate through views of the saved inputs, so that this gradient
            # has a graph too (a view each: the same tensor may be saved twice); else through detached copies.
            recorded = torch.is_grad_enabled()
            needs = ctx.needs_input_grad[1:]
            inputs = [x.view_as(x) if recorded and need else x.detach().requires_grad_(need)
                      for x, need in zip(ctx.saved_tensors, needs, strict=True)]
            wanted = [x for x, need in zip(inputs, needs, strict=True) if need]
            with torch.enable_grad():
                grads = iter(torch.autograd.grad(ctx.fn(*inputs), wanted, grad, create_graph=recorded))
            return None, *[_zero_where_undefined(grad, next(grads)) if need else None for need in needs]

    def _zero_where_undefined(upstream: Any, product: Any) -> Any:
        return torch.where((upstream == 0) & ~torch.isfinite(product), 0, product)


def zero_upstream_gives_zero(fn: Callable[..., Any], *operands: Any) -> Any:
    """PyTorch's op with tinygrad_np's convention: where the upstream gradient is exactly 0, so is the gradient,
    even where the local derivative is infinite (log, sqrt, pow and division at 0; PyTorch gives 0 * inf = NaN).
    The tensors are broadcast first, so that each output element has its own upstream."""
    operands = promote(*operands)
    expanded = torch.broadcast_tensors(*[o for o in operands if isinstance(o, torch.Tensor)])

    def elementwise(*tensors: Any) -> Any:
        it = iter(tensors)
        return fn(*[next(it) if isinstance(o, torch.Tensor) else o for o in operands])

    return _ZeroUpstream.apply(elementwise, *expanded)


def _new_node(x: Any, out: Any) -> Any:
    """PyTorch's flatten returns the tensor itself when there is nothing to merge; tinygrad_np's is a new node (a
    reshape, like PyTorch's own reshape), which matters to retain_grad."""
    return out.view(out.shape) if out is x else out


def _torch_reduction(name: str) -> Callable[..., Any]:
    def reduce(x: Any, axis: Any, keepdims: bool) -> Any:
        dims = tuple(range(x.ndim)) if axis is None else axis
        return getattr(torch, name)(x, dim=dims if dims != () else 0, keepdim=keepdims)  # () is "every dim"

    return reduce


def _torch_index(x: Any, index: Any, as_tensor: bool) -> Any:
    """NumPy's indexing in PyTorch (which has no negative steps): the flat positions NumPy picks, gathered, so that
    repeats accumulate in backward."""
    positions = np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(tuple(x.shape))[index]
    return x.reshape(-1)[torch.from_numpy(np.array(positions, dtype=np.int64))]  # a copy: contiguous, 0-d kept


def _torch_dropout(x: Any, p: float, seed: int) -> Any:
    """F.dropout's definition: keep an element where a uniform draw from the seed is >= p, scale by 1 / (1 - p);
    p = 0 gives the tensor itself (as PyTorch's dropout does)."""
    if p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = np.random.default_rng(seed).random(tuple(x.shape)) >= p
    dtype = x.detach().numpy().dtype
    return x * torch.from_numpy(keep.astype(dtype) / dtype.type(1 - p))


def _torch_mse_loss(prediction: Any, target: Any, reduction: str) -> Any:
    """torch.nn.functional.mse_loss, as tinygrad_np composes it: (prediction - target) ** 2, so that the square's
    zero-upstream rule holds inside it too (PyTorch's fused loss gives 0 * inf = NaN at an infinite difference)."""
    squared = zero_upstream_gives_zero(lambda d: d**2, torch.sub(*_tensors(prediction, target)))
    return squared if reduction == "none" else squared.sum() if reduction == "sum" else squared.mean()


def _torch_linear(x: Any, weight: Any, bias: Any = None) -> Any:
    return torch.nn.functional.linear(*promote(x, weight, *([] if bias is None else [bias])))


def _ours_index(x: Tensor, index: Any, as_tensor: bool) -> Tensor:
    if not as_tensor:
        return x[index]
    wrap = lambda part: Tensor(part) if isinstance(part, np.ndarray) else part  # noqa: E731
    return x[tuple(wrap(p) for p in index)] if isinstance(index, tuple) else x[wrap(index)]


RELATIONS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
             ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


# ---- operand drawers ----------------------------------------------------------------------------------------------

# Arrays of indices, labels and masks from a drawn seed: element by element they would fill Hypothesis's buffer.
seeded = st.integers(0, 2**32 - 1).map(np.random.default_rng)


def one_tensor(builder: Builder) -> Operands:
    return (builder.operand(),), {}


def one_tensor_and(**drawers: Callable[[Builder, Node], Any]) -> Callable[[Builder], Operands]:
    """One tensor, and keyword arguments each drawn for it: `one_tensor_and(axis=any_axis, keepdims=flag)`."""

    def operands(builder: Builder) -> Operands:
        x = builder.operand()
        return (x,), {name: drawer(builder, builder.node(x)) for name, drawer in drawers.items()}

    return operands


def broadcast_pair(builder: Builder) -> Operands:
    """Two operands that broadcast, maybe the same tensor twice; a number or an array on either side."""
    first = builder.operand()
    other = builder.other_operand(first)
    return ((other, first) if isinstance(other, Const) and builder.draw(st.booleans()) else (first, other)), {}


def tensor_pair(builder: Builder) -> Operands:
    """Two tensors that broadcast, maybe the same one twice."""
    first = builder.operand()
    other = builder.other_operand(first)
    if isinstance(other, Const):
        other = builder.fresh(builder.broadcastable_shape(builder.node(first).shape))
    return (first, other), {}


def singular_at_zero(operands: Callable[[Builder], Operands | None], position: int) -> Callable[..., Any]:
    """For division, log, sqrt and pow, infinite (or of infinite slope) at 0: no operand at `position` that an
    earlier step computed as exactly 0. The sign of such a zero, and so of the infinity, depends on the order of
    the additions in a sum or a matrix product, in NumPy and in PyTorch alike. Zeros in the leaves are welcome."""

    def drawer(builder: Builder) -> Operands | None:
        chosen = operands(builder)
        if chosen is None:
            return None
        arg = chosen[0][position]
        return None if builder.is_computed(arg) and bool((builder.node(arg).value == 0).any()) else chosen

    return drawer


def any_axis(builder: Builder, node: Node) -> Any:
    return builder.axis(len(node.shape))


def single_axis(builder: Builder, node: Node) -> int:
    return builder.axis(len(node.shape), tuples=False, none=False)


def flag(builder: Builder, node: Node) -> bool:
    return builder.draw(st.booleans())


def clip_bounds(builder: Builder, node: Node) -> tuple[float | None, float | None]:
    low = builder.draw(st.sampled_from([None, -1.0, -0.5, 0.0]))
    return low, builder.draw(st.sampled_from([None, 0.0, 0.5, 1.0] if low is not None else [0.5, 1.0]))


def slope(builder: Builder, node: Node) -> float:
    return builder.draw(st.sampled_from([0.01, 0.0, 0.5, -1.0, 2.0]))


def exponent(builder: Builder, node: Node) -> Any:
    """A Python or NumPy number. Both frameworks compute x ** 0.5 as sqrt (so (-inf) ** 0.5 is NaN, not pow's inf);
    PyTorch also computes x ** -0.5 as rsqrt ((-inf) ** -0.5 is NaN, pow's is 0), which NumPy doesn't: not drawn."""
    value = builder.draw(st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, 1.5, -1.5, 2.5]))
    if builder.draw(st.integers(0, 2)) == 0:
        return np.int64(value) if isinstance(value, int) else np.float64(value)
    return value


def new_shape(builder: Builder, node: Node) -> tuple[int, ...]:
    """A shape of the same size: reversed, flat, with a 1 added, regrouped; maybe with one side given as -1."""
    shape, draw = node.shape, builder.draw
    size = int(np.prod(shape))
    candidates = [tuple(reversed(shape)), (size,), (1, *shape), (*shape, 1)] + ([()] if size == 1 else [])
    divisors = [d for d in range(2, size) if size % d == 0]
    if divisors:
        d = draw(st.sampled_from(divisors))
        candidates.append((d, size // d))
    target = draw(st.sampled_from(candidates))
    if target and size > 0 and draw(st.booleans()):
        k = draw(st.integers(0, len(target) - 1))
        target = (*target[:k], -1, *target[k + 1 :])
    return target


def permutation(builder: Builder, node: Node) -> tuple[int, ...] | None:
    """A permutation with each axis given as positive or negative, or None (x.transpose(): reversed)."""
    ndim = len(node.shape)
    if builder.draw(st.integers(0, 4)) == 0:
        return None
    return tuple(builder.draw(st.sampled_from([a, a - ndim])) for a in builder.draw(st.permutations(range(ndim))))


def two_axes(builder: Builder, node: Node) -> tuple[int, int]:
    """Two axes to swap, each positive or negative, maybe the same one (a 0-d tensor's are 0 and -1)."""
    ndim = max(len(node.shape), 1)
    return builder.draw(st.integers(-ndim, ndim - 1)), builder.draw(st.integers(-ndim, ndim - 1))


@st.composite
def indices(draw: Callable[..., Any], shape: tuple[int, ...]) -> tuple[Any, bool]:
    """Every kind of index NumPy takes, and whether its arrays come as Tensors."""
    kind = draw(st.sampled_from(["basic", "integer", "integer", "mask", "nested tuple"]))
    if kind == "basic" or shape[0] == 0:  # slices with steps of either sign, ints, None, Ellipsis
        return draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True)), False
    as_tensor = draw(st.integers(0, 3)) == 0
    if kind == "mask":
        mask = draw(seeded).random(shape[: draw(st.integers(1, len(shape)))]) < 0.5
        return (mask if draw(st.booleans()) else (mask, Ellipsis)), as_tensor
    if kind == "nested tuple":  # x[((0, 0, 1),)]: a tuple inside the index is a list of indices
        return (tuple(draw(st.lists(st.integers(-shape[0], shape[0] - 1), max_size=4))),), False
    # Integer arrays (with repeats) on some axes, broadcast together, as arrays, lists or tuples; slices elsewhere.
    on = [ax for ax, n in enumerate(shape) if n > 0 and draw(st.integers(0, 2)) > 0] or [0]
    index_shape = draw(st.sampled_from([(), (1,), (2,), (3,), (2, 2), (0,)]))
    form = draw(st.sampled_from(["array", "list", "tuple"]))
    parts: list[Any] = []
    for ax, n in enumerate(shape):
        if ax in on:
            picks = draw(seeded).integers(-n, n, index_shape)
            tuple_form = form == "tuple" and picks.ndim == 1
            parts.append(picks.tolist() if form == "list" else tuple(picks.tolist()) if tuple_form else picks)
        else:
            ends = st.none() | st.integers(-n, n)
            parts.append(draw(st.builds(slice, ends, ends, st.sampled_from([None, 1, 2, -1, -2]))))
    if draw(st.integers(0, 3)) == 0:
        parts.insert(draw(st.integers(0, len(parts))), None)
    if isinstance(parts[-1], slice) and parts[-1] == slice(None) and draw(st.booleans()):
        parts[-1] = Ellipsis
    return tuple(parts), as_tensor and form == "array"


def an_index(builder: Builder) -> Operands:
    x = builder.operand(lambda shape: len(shape) > 0)
    index, as_tensor = builder.draw(indices(builder.node(x).shape))
    return (x,), {"index": index, "as_tensor": as_tensor}


def rows(builder: Builder) -> Operands:
    return (builder.operand(lambda shape: len(shape) > 0 and shape[0] > 0),), {}


def joined(new_axis: bool) -> Callable[[Builder], Operands]:
    """1 to 3 tensors (the same one again, or others) for stack, or for concatenate with sizes along `axis` that
    may differ, 0 included."""

    def operands(builder: Builder) -> Operands:
        first = builder.operand(lambda shape: new_axis or len(shape) > 0)
        shape = builder.node(first).shape
        axis = builder.axis(len(shape) + new_axis, tuples=False, none=False)
        parts = [first]
        for _ in range(builder.draw(st.integers(0, 2))):
            other = list(shape)
            if not new_axis:
                other[axis % len(shape)] = builder.draw(st.integers(0, 3))
            parts.append(first if builder.draw(st.booleans()) else builder.operand(shape=tuple(other)))
        return tuple(parts), {"axis": axis}

    return operands


def where_operands(builder: Builder) -> Operands:
    """A condition (a constant boolean array, or a comparison computed earlier) and two operands, all broadcasting."""
    first = builder.operand()
    other = builder.other_operand(first)
    shape = np.broadcast_shapes(builder.node(first).shape, np.shape(other.value) if isinstance(other, Const) else
                                builder.node(other).shape)
    cond_shape = builder.broadcastable_shape(shape) if builder.draw(st.booleans()) else shape
    computed = builder.existing(lambda s: broadcasts(s, cond_shape) and len(s) <= len(cond_shape), kind="b")
    cond = computed if computed is not None and builder.draw(st.booleans()) else Const(
        builder.draw(seeded).random(cond_shape) < 0.5)
    return ((cond, other, first) if builder.draw(st.booleans()) else (cond, first, other)), {}


def comparison(builder: Builder) -> Operands:
    args, _ = tensor_pair(builder)
    return args, {"relation": builder.draw(st.sampled_from(sorted(RELATIONS)))}


def matmul_operands(builder: Builder) -> Operands:
    """x @ y for a vector, matrix or batch of matrices y that fits x; x @ x; or a constant array @ x."""
    draw = builder.draw
    x = builder.operand(lambda shape: len(shape) >= 1)
    shape = builder.node(x).shape
    m = draw(st.integers(0, 3))
    if draw(st.integers(0, 4)) == 0:  # ndarray @ Tensor: the reflected operator
        inner = shape[-2] if len(shape) >= 2 else shape[0]
        return (builder.constant_array(draw(st.sampled_from([(inner,), (m, inner)]))), x), {}
    k = shape[-1]
    if len(shape) == 2 and shape[0] == k and draw(st.integers(0, 3)) == 0:
        return (x, x), {}
    form = draw(st.sampled_from(["vector", "matrix", "batched"]))
    other = {"vector": (k,), "matrix": (k, m), "batched": (*builder.broadcastable_shape(shape[:-2]), k, m)}[form]
    return (x, builder.operand(shape=other)), {}


def linear_operands(builder: Builder) -> Operands:
    x = builder.operand(lambda shape: len(shape) >= 1)
    weight = builder.fresh((builder.draw(st.integers(1, 3)), builder.node(x).shape[-1]))
    if builder.draw(st.booleans()):
        return (x, weight), {}
    return (x, weight, builder.fresh(builder.node(weight).shape[:1])), {}


LAYOUTS = {  # scores of shape (C,), (N, C) or (N, C, d); batches of 0 included
    1: st.tuples(st.integers(1, 4)),
    2: st.tuples(st.integers(0, 4), st.integers(1, 4)),
    3: st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 3)),
}


def classifier_operands(smoothing: bool) -> Callable[[Builder], Operands]:
    """Scores in any of PyTorch's layouts, integer labels (some maybe ignore_index), and the options: class weights,
    ignore_index, reduction, and for cross_entropy label smoothing."""

    def operands(builder: Builder) -> Operands:
        draw = builder.draw
        ndim = draw(st.sampled_from(sorted(LAYOUTS)))
        scores = builder.operand(lambda s: len(s) == ndim and s[min(ndim, 2) - 1] > 0, fresh_shapes=LAYOUTS[ndim])
        shape = builder.node(scores).shape
        classes = shape[min(ndim, 2) - 1]
        rng = draw(seeded)
        labels = rng.integers(0, classes, () if ndim == 1 else (shape[0], *shape[2:]))
        params: dict[str, Any] = {"labels": labels}
        if draw(st.booleans()):  # some labels ignored: the default -100, or a class
            params["ignore_index"] = ignore = draw(st.sampled_from([-100, 0]))
            labels[rng.random(labels.shape) < 0.3] = ignore
        if draw(st.booleans()):
            params["weight"] = rng.choice(QUANTISED[QUANTISED >= 0], classes)
        params["reduction"] = draw(st.sampled_from(["mean", "mean", "sum", "none"]))
        if smoothing and draw(st.booleans()):
            params["label_smoothing"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
        return (scores,), params

    return operands


def _torch_class_loss(name: str) -> Callable[..., Any]:
    def loss(x: Any, labels: np.ndarray, weight: np.ndarray | None = None, **options: Any) -> Any:
        weight = None if weight is None else torch.from_numpy(weight).to(x.dtype)
        return getattr(torch.nn.functional, name)(x, torch.from_numpy(np.asarray(labels)), weight, **options)

    return loss


def mse_operands(builder: Builder) -> Operands:
    prediction = builder.operand()
    shape = builder.node(prediction).shape
    target = builder.operand(shape=shape) if builder.draw(st.booleans()) else builder.constant_array(shape)
    return (prediction, target), {"reduction": builder.draw(st.sampled_from(["mean", "sum", "none"]))}


def dropout_operands(builder: Builder) -> Operands:
    p = builder.draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    return (builder.operand(),), {"p": p, "seed": builder.draw(st.integers(0, 100))}


def cast_operands(builder: Builder) -> Operands:
    """float <-> float; float -> int64 (finite values only: NaN has no integer); int64 -> float."""
    x = builder.existing(kind="i")
    if x is None or builder.draw(st.booleans()):
        x = builder.operand()
    targets = ["float32", "float64"]
    if builder.node(x).dtype.kind == "f" and bool(torch.isfinite(builder.node(x).value).all()):
        targets.append("int64")
    return (x,), {"dtype": builder.draw(st.sampled_from(targets))}


# Images (N, C, H, W) or unbatched (C, H, W) for the convolutional ops; batches of 0 included.
IMAGES = st.tuples(st.integers(0, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)) | st.tuples(
    st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))
PAIRS = st.integers(1, 3) | st.tuples(st.integers(1, 3), st.integers(1, 3))


def _image(builder: Builder) -> int:
    return builder.operand(lambda s: len(s) in (3, 4) and all(n > 0 for n in s[-3:]), fresh_shapes=IMAGES)


def conv_operands(builder: Builder) -> Operands:
    """An image, a weight (O, C, KH, KW) that fits its channels, maybe a bias; stride, padding (an int, a pair,
    "valid" or "same") and dilation. Geometry PyTorch rejects (a kernel larger than the padded input) is left out."""
    draw = builder.draw
    x = _image(builder)
    channels = builder.node(x).shape[-3]
    kernel = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    weight = builder.fresh((draw(st.integers(1, 3)), channels, *kernel))
    args = (x, weight) if draw(st.booleans()) else (x, weight, builder.fresh(builder.node(weight).shape[:1]))
    padding = draw(st.integers(0, 2) | st.tuples(st.integers(0, 2), st.integers(0, 2)) | st.sampled_from(
        ["valid", "same"]))
    stride = 1 if padding == "same" else draw(PAIRS)
    return args, {"stride": stride, "padding": padding, "dilation": draw(PAIRS)}


def pool_operands(max_pool: bool) -> Callable[[Builder], Operands | None]:
    """An image and a pooling geometry PyTorch takes: padding at most half the kernel; for max-pooling a dilation,
    for average pooling count_include_pad and divisor_override; ceil_mode for both."""

    def operands(builder: Builder) -> Operands | None:
        draw = builder.draw
        x = _image(builder)
        kernel = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
        params: dict[str, Any] = {
            "kernel_size": kernel, "stride": draw(st.none() | PAIRS),
            "padding": tuple(draw(st.integers(0, k // 2)) for k in kernel), "ceil_mode": draw(st.booleans())}
        if not max_pool:
            params["count_include_pad"] = draw(st.booleans())
            params["divisor_override"] = draw(st.sampled_from([None, None, 1, 3]))
            return (x,), params
        params["dilation"] = draw(PAIRS)
        if window_wholly_in_padding(builder.node(x).shape, params):
            return None  # PyTorch 2.13 writes out of bounds there (README, Conventions)
        return (x,), params

    return operands


def window_wholly_in_padding(shape: tuple[int, ...], params: dict[str, Any]) -> bool:
    """Whether some max-pooling window reads only padding along an axis (with PyTorch's output size, ceil_mode
    included): a dilation can step over the input."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    kernel, padding, dilation = pair(params["kernel_size"]), pair(params["padding"]), pair(params["dilation"])
    stride = kernel if params["stride"] is None else pair(params["stride"])
    for n, k, s, p, d in zip(shape[-2:], kernel, stride, padding, dilation, strict=True):
        out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if params["ceil_mode"] else 0)) // s + 1
        if params["ceil_mode"] and (out - 1) * s >= n + p:
            out -= 1
        if any(not any(0 <= o * s - p + i * d < n for i in range(k)) for o in range(out)):
            return True
    return False


def batch_norm_operands(builder: Builder) -> Operands:
    """(N, C, ...) input, maybe a weight and a bias (C,), training or not, running statistics drawn from a seed
    (required in eval), momentum and eps."""
    draw = builder.draw
    x = builder.operand(lambda s: len(s) >= 2 and s[1] > 0, fresh_shapes=st.tuples(
        st.integers(0, 4), st.integers(1, 3)) | IMAGES.filter(lambda s: len(s) == 4))
    channels = builder.node(x).shape[1]
    affine = tuple(builder.fresh((channels,)) for _ in range(draw(st.integers(0, 2))))
    training = draw(st.booleans())
    running = draw(st.integers(0, 2**16)) if not training or draw(st.booleans()) else None
    return (x, *affine), {"training": training, "running": running, "momentum": draw(st.sampled_from([0.1, 0.5])),
                          "eps": draw(st.sampled_from([1e-5, 1e-2]))}


def _torch_conv2d(*args: Any, **params: Any) -> Any:
    """PyTorch's conv2d, without its note that padding="same" with an even kernel copies the input."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using padding='same'")
        return torch.nn.functional.conv2d(*promote(*args), **params)


def _batch_norm(functional: Callable[..., Any], wrap: Callable[[np.ndarray], Any]) -> Callable[..., Any]:
    """functional(x, running_mean, running_var, weight, bias, ...) with fresh running statistics from the seed
    `running` (batch_norm updates them in place in training), of the dtype x, weight and bias promote to."""

    def call(x: Any, *affine: Any, running: int | None, **params: Any) -> Any:
        stats = [None, None]
        if running is not None:
            rng = np.random.default_rng(running)
            dtype, channels = np.result_type(*[t.detach().numpy() for t in (x, *affine)]), x.shape[1]
            stats = [wrap(rng.normal(0, 1, channels).astype(dtype)), wrap(rng.uniform(0.5, 2, channels).astype(dtype))]
        return functional(x, *stats, *affine, **params)

    return call


def _torch_batch_norm(x: Any, *args: Any, **params: Any) -> Any:
    """PyTorch's batch_norm, handed a contiguous upstream gradient: PyTorch 2.13's CPU backward reads an upstream that
    is channels-last contiguous, of a contiguous input, with the input's strides, in training and in eval. For x of
    shape (1, 2, 3, 1) and `y.permute(3, 2, 1, 0)` downstream, two of x's six gradients came back with the wrong sign
    (found by test_grad_runs_only_the_ops_between_the_outputs_and_its_input, 2026-12-01; the class of pytorch#64100)."""
    out = torch.nn.functional.batch_norm(*promote(x, *args), **params)
    if out.requires_grad:
        out.register_hook(lambda grad: None if grad is None else grad.contiguous())
    return out


def _torch_batch_norm_composite(x: Any, mean: Any, var: Any, *affine: Any, training: bool, momentum: float,
                                eps: float) -> Any:
    """batch_norm's definition in PyTorch's elementary ops, the reference at third order: PyTorch's fused op takes
    its saved batch statistics as constants when it differentiates its own double backward, so its third derivatives
    in training mode are wrong (for x of shape (2, 1) they don't sum to 0 over the batch, as derivatives of a function
    that shifting x leaves unchanged must). Its running statistics are not updated: the programs don't read them."""
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    axes = (0, *range(2, x.ndim))
    x, *affine = promote(x, *affine)
    if training and x.numel() == x.shape[1]:
        raise ValueError("Expected more than 1 value per channel when training")  # as PyTorch's fused op
    if training:
        mean = x.mean(axes, keepdim=True)
        var = ((x - mean) * (x - mean)).mean(axes, keepdim=True)
    else:
        mean, var = mean.reshape(per_channel), var.reshape(per_channel)
    y = (x - mean) / torch.sqrt(var + eps)
    if affine:
        y = y * affine[0].reshape(per_channel)
    return y + affine[1].reshape(per_channel) if len(affine) > 1 else y


def _unary(ours: Callable[[Tensor], Tensor], theirs: Callable[[Any], Any]) -> Op:
    return Op(one_tensor, ours, theirs)


# ---- the table ------------------------------------------------------------------------------------------------------

REDUCTIONS = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin", "logsumexp": "logsumexp"}

OPS: dict[str, Op] = {
    # elementwise, binary; a constant may stand on either side (the reflected operators)
    "add": Op(broadcast_pair, lambda a, b: a + b, _binary(lambda a, b: a + b)),
    "sub": Op(broadcast_pair, lambda a, b: a - b, _binary(lambda a, b: a - b)),
    "mul": Op(broadcast_pair, lambda a, b: a * b, _binary(lambda a, b: a * b)),
    "div": Op(singular_at_zero(broadcast_pair, 1), lambda a, b: a / b,
              lambda a, b: zero_upstream_gives_zero(lambda x, y: x / y, a, b)),
    "pow": Op(singular_at_zero(tensor_pair, 0), lambda a, b: a**b,
              lambda a, b: zero_upstream_gives_zero(lambda x, y: x**y, a, b)),
    "maximum": Op(broadcast_pair, tg.maximum, lambda a, b: torch.maximum(*_tensors(a, b))),
    "Tensor.maximum": Op(tensor_pair, Tensor.maximum, lambda a, b: torch.maximum(*_tensors(a, b))),
    "where": Op(where_operands, tg.where, lambda cond, a, b: torch.where(cond, *_tensors(a, b))),
    "compare": Op(comparison, lambda a, b, relation: RELATIONS[relation](a, b),
                  lambda a, b, relation: RELATIONS[relation](*promote(a, b))),
    # elementwise, unary
    "neg": _unary(lambda x: -x, lambda x: -x),
    "exp": _unary(Tensor.exp, torch.exp if torch else None),
    "log": Op(singular_at_zero(one_tensor, 0), Tensor.log, lambda x: zero_upstream_gives_zero(torch.log, x)),
    "sqrt": Op(singular_at_zero(one_tensor, 0), Tensor.sqrt, lambda x: zero_upstream_gives_zero(torch.sqrt, x)),
    "pow scalar": Op(singular_at_zero(one_tensor_and(p=exponent), 0), lambda x, p: x**p,
                     lambda x, p: zero_upstream_gives_zero(lambda y: y ** np.asarray(p).item(), x)),
    "tanh": _unary(Tensor.tanh, torch.tanh if torch else None),
    "sigmoid": _unary(Tensor.sigmoid, torch.sigmoid if torch else None),
    "relu": _unary(Tensor.relu, torch.relu if torch else None),
    "F.relu": _unary(F.relu, torch.relu if torch else None),
    "F.leaky_relu": Op(one_tensor_and(negative_slope=slope), F.leaky_relu,
                       lambda x, negative_slope: torch.nn.functional.leaky_relu(x, negative_slope)),
    "abs": _unary(Tensor.abs, torch.abs if torch else None),
    "clip": Op(one_tensor_and(bounds=clip_bounds), lambda x, bounds: x.clip(*bounds),
               lambda x, bounds: x.clamp(*bounds)),
    # astype, float() and double() copy, like NumPy's astype (PyTorch's .to() returns the tensor itself when it
    # already has the dtype)
    "astype": Op(cast_operands, lambda x, dtype: x.astype(dtype),
                 lambda x, dtype: x.to(getattr(torch, dtype), copy=True)),
    "float": _unary(Tensor.float, lambda x: x.to(torch.float32, copy=True)),
    "double": _unary(Tensor.double, lambda x: x.to(torch.float64, copy=True)),
    "detach": _unary(Tensor.detach, lambda x: x.detach()),
    # reductions and the softmax family
    **{
        name: Op(one_tensor_and(axis=any_axis, keepdims=flag),
                 lambda x, axis, keepdims, name=name: getattr(x, name)(axis=axis, keepdims=keepdims),
                 _torch_reduction(theirs) if torch else None)
        for name, theirs in REDUCTIONS.items()
    },
    "softmax": Op(one_tensor_and(axis=single_axis), Tensor.softmax, lambda x, axis: x.softmax(axis)),
    "log_softmax": Op(one_tensor_and(axis=single_axis), Tensor.log_softmax, lambda x, axis: x.log_softmax(axis)),
    "F.softmax": Op(one_tensor_and(axis=single_axis), F.softmax, lambda x, axis: x.softmax(axis)),
    "F.log_softmax": Op(one_tensor_and(axis=single_axis), F.log_softmax, lambda x, axis: x.log_softmax(axis)),
    # shape
    "reshape": Op(one_tensor_and(shape=new_shape), lambda x, shape: x.reshape(shape),
                  lambda x, shape: x.reshape(shape)),
    # NumPy's transpose: none (reversed) or the order as one tuple; PyTorch's: two ints swap those axes, whatever
    # the dimensions (on a matrix, NumPy's transpose(0, 1) would be the identity).
    "transpose": Op(one_tensor_and(axes=permutation),
                    lambda x, axes: x.transpose() if axes is None else x.transpose(axes),
                    lambda x, axes: x.permute(*(reversed(range(x.ndim)) if axes is None else axes))),
    "permute": Op(one_tensor_and(axes=permutation),
                  lambda x, axes: x.permute(*(reversed(range(x.ndim)) if axes is None else axes)),
                  lambda x, axes: x.permute(*(reversed(range(x.ndim)) if axes is None else axes))),
    "transpose(d0, d1)": Op(one_tensor_and(axes=two_axes), lambda x, axes: x.transpose(*axes),
                            lambda x, axes: x.transpose(*axes)),
    "T": _unary(lambda x: x.T, lambda x: x.permute(*reversed(range(x.ndim)))),
    "flatten": Op(one_tensor_and(start_dim=single_axis), Tensor.flatten,
                  lambda x, start_dim: _new_node(x, x.flatten(start_dim))),
    "getitem": Op(an_index, _ours_index, _torch_index),
    "rows": Op(rows, lambda x: tg.stack(list(x)), lambda x: torch.stack(list(x))),  # iterating over a tensor
    "concatenate": Op(joined(new_axis=False), lambda *xs, axis: tg.concatenate(xs, axis=axis),
                      lambda *xs, axis: torch.cat(promote(*xs), dim=axis)),
    "stack": Op(joined(new_axis=True), lambda *xs, axis: tg.stack(xs, axis=axis),
                lambda *xs, axis: torch.stack(promote(*xs), dim=axis)),
    # matmul, the layer functions, the losses
    "matmul": Op(matmul_operands, lambda a, b: a @ b, _binary(lambda a, b: a @ b)),
    "F.linear": Op(linear_operands, F.linear, _torch_linear),
    "F.dropout": Op(dropout_operands, lambda x, p, seed: F.dropout(x, p, training=True, generator=seed),
                    _torch_dropout),
    "F.cross_entropy": Op(classifier_operands(smoothing=True), F.cross_entropy, _torch_class_loss("cross_entropy")),
    "F.nll_loss": Op(classifier_operands(smoothing=False), F.nll_loss, _torch_class_loss("nll_loss")),
    "F.mse_loss": Op(mse_operands, F.mse_loss, _torch_mse_loss),
    # convolutional networks
    "F.conv2d": Op(conv_operands, F.conv2d, _torch_conv2d),
    "F.max_pool2d": Op(pool_operands(max_pool=True), F.max_pool2d,
                       lambda x, **params: torch.nn.functional.max_pool2d(x, **params)),
    "F.avg_pool2d": Op(pool_operands(max_pool=False), F.avg_pool2d,
                       lambda x, **params: torch.nn.functional.avg_pool2d(x, **params)),
    "F.batch_norm": Op(batch_norm_operands, _batch_norm(F.batch_norm, lambda a: a),
                       _batch_norm(_torch_batch_norm, lambda a: torch.from_numpy(a))),
    "nn.Flatten": Op(one_tensor_and(start_dim=single_axis), lambda x, start_dim: nn.Flatten(start_dim)(x),
                     lambda x, start_dim: _new_node(x, torch.nn.Flatten(start_dim)(x))),
}


# ---- in place -------------------------------------------------------------------------------------------------------
#
# An in-place step returns its target itself, so the program's new node and the target are one tensor. Its target is
# never memory that another node shares in tinygrad_np (a view, a detach, a dropout that returned its input, or a
# tensor such a node was taken from): PyTorch's twins of those ops (getitem gathers) make copies, and views written
# through are a documented difference (README, Conventions). Indices with repeats only ever assign a number, since
# which of several values lands is unspecified in both frameworks.

ALIASING = {"getitem", "reshape", "transpose", "permute", "transpose(d0, d1)", "T", "flatten", "detach", "F.dropout"}
IN_PLACE = {"+=": "add_", "-=": "sub_", "*=": "mul_", "/=": "div_"}


def _aliases(builder: Builder, index: int) -> set[int]:
    """The nodes that are one tensor with node `index` (in-place steps return their target)."""
    group = {index}
    for i, node in reversed(list(enumerate(builder.program))):
        if getattr(node, "name", None) in INPLACE_OPS and (i in group or node.args[0] in group):
            group |= {i, node.args[0]}
    return group


def _shares_memory(builder: Builder, index: int) -> bool:
    group = _aliases(builder, index)
    for i, node in enumerate(builder.program):
        if getattr(node, "name", None) in ALIASING and (i in group or any(a in group for a in node.args)):
            return True
    return False


def _target(builder: Builder, where: Callable[[tuple[int, ...]], bool] = lambda shape: True) -> int | None:
    target = builder.operand(where)
    return None if _shares_memory(builder, target) else target


def _fits_into(builder: Builder, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to `shape` itself (an in-place op can't grow its target)."""
    drawn = builder.broadcastable_shape(shape)
    return drawn if broadcasts(drawn, shape) and np.broadcast_shapes(drawn, shape) == shape else shape


def _has_zero(builder: Builder, operand: int | Const) -> bool:
    value = operand.value if isinstance(operand, Const) else builder.node(operand).value.detach().numpy()
    return bool((np.asarray(value) == 0).any())


def in_place_operands(nonzero: bool) -> Callable[[Builder], Operands | None]:
    """A target and a value that broadcasts to its shape: itself, another node, a fresh leaf, a number or an array;
    for /=, with no zeros in the value (its slope there is infinite: another convention, tested out of place)."""

    def drawer(builder: Builder) -> Operands | None:
        target = _target(builder)
        if target is None:
            return None
        shape = builder.node(target).shape
        form = builder.draw(st.sampled_from(["same", "existing", "fresh", "fresh", "number", "array"]))
        found = builder.existing(lambda s: broadcasts(s, shape) and np.broadcast_shapes(s, shape) == shape)
        value: int | Const = (
            target if form == "same" else builder.number() if form == "number"
            else builder.constant_array(_fits_into(builder, shape)) if form == "array"
            else found if form == "existing" and found is not None else builder.fresh(_fits_into(builder, shape))
        )
        if nonzero and _has_zero(builder, value):
            return None
        return (target, value), {}

    return drawer


def _is_basic(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


def setitem_operands(builder: Builder) -> Operands | None:
    target = _target(builder, lambda shape: len(shape) > 0)
    if target is None:
        return None
    shape = builder.node(target).shape
    index, as_tensor = builder.draw(indices(shape))
    try:
        region = np.empty(shape)[index].shape
    except IndexError:
        return None
    if _is_basic(index) and builder.draw(st.booleans()):
        value: int | Const = builder.operand(shape=_fits_into(builder, region))
    else:
        value = builder.number()
    return (target, value), {"index": index, "as_tensor": as_tensor}


def _ours_in_place(op: str) -> Callable[[Tensor, Any], Tensor]:
    def update(x: Tensor, value: Any) -> Tensor:
        return {"+=": x.__iadd__, "-=": x.__isub__, "*=": x.__imul__, "/=": x.__itruediv__}[op](value)

    return update


def _ours_setitem(x: Tensor, value: Any, index: Any, as_tensor: bool) -> Tensor:
    wrap = (lambda part: Tensor(part) if isinstance(part, np.ndarray) else part) if as_tensor else (lambda p: p)
    x[tuple(wrap(p) for p in index) if isinstance(index, tuple) else wrap(index)] = value
    return x


def _torch_setitem(x: Any, value: Any, index: Any, as_tensor: bool) -> Any:
    """NumPy's assignment in PyTorch: put_ at the flat positions NumPy picks (PyTorch has no negative steps)."""
    positions = np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(tuple(x.shape))[index]
    value = value.to(x.dtype) if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=x.dtype)
    return x.put_(torch.from_numpy(np.array(positions, dtype=np.int64)).reshape(-1),
                  torch.broadcast_to(value, positions.shape).reshape(-1))


def fill_operands(builder: Builder) -> Operands | None:
    target = _target(builder)
    return None if target is None else ((target,), {"value": builder.number().value})


def copy_operands(builder: Builder) -> Operands | None:
    target = _target(builder)
    if target is None:
        return None
    return (target, builder.operand(shape=_fits_into(builder, builder.node(target).shape))), {}


INPLACE_OPS: dict[str, Op] = {
    **{
        name: Op(in_place_operands(nonzero=name == "/="), _ours_in_place(name),
                 lambda x, value, method=method: getattr(x, method)(value))
        for name, method in IN_PLACE.items()
    },
    "setitem": Op(setitem_operands, _ours_setitem, _torch_setitem),
    "fill_": Op(fill_operands, lambda x, value: x.fill_(value), lambda x, value: x.fill_(value)),
    "zero_": Op(lambda builder: (lambda t: None if t is None else ((t,), {}))(_target(builder)), Tensor.zero_,
                lambda x: x.zero_()),
    "copy_": Op(copy_operands, Tensor.copy_, lambda x, src: x.copy_(src)),
}


# At third order, batch_norm against its definition in PyTorch's elementary ops (see _torch_batch_norm_composite).
THIRD_ORDER_OPS = {**OPS, "F.batch_norm": Op(batch_norm_operands, OPS["F.batch_norm"].ours, _batch_norm(
    _torch_batch_norm_composite, lambda a: torch.from_numpy(a)))}
