"""Tensor, the Function base class, reverse-mode backward and no_grad.

A Tensor wraps an ndarray. Every differentiable op is a small `Function` subclass (in `ops.py`) whose
instance is also the op's context: `forward` stashes what `backward` needs on `self`. Calling an op builds
the graph backwards from its output: each output Tensor points at the Function that made it, which points
at its inputs.

`Tensor.backward` walks that graph in reverse topological order (iteratively, so graph depth is bounded by
memory, not by Python's recursion limit). Gradients of intermediate tensors live in a local dict and are
dropped as soon as they are consumed; only leaves (and tensors that asked with `retain_grad()`) get `.grad`.
Broadcasting is undone here, once, so no op has to think about it. In-place ops, and the version checks that
guard what backward saved, live in `inplace.py`; tensor hooks run here, when a tensor's gradient is complete.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from tinygrad_np.hooks import RemovableHandle

ArrayLike = Any  # anything np.asarray accepts: ndarray, list, scalar
_NUMBERS = (int, float, np.integer, np.floating)  # Python and NumPy numbers (bool excluded where it matters)
Seed = int | np.random.Generator | None


class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()

# The clock of in-place writes (inplace.py): every write moves it on, every Function records it when made, and a
# Function made before a write checks at backward that what it saved is unchanged. `_last_rebase` is the clock of
# the last in-place op recorded in a graph, after which edges made earlier may need pointing at the old value.
_clock = 0
_last_rebase = 0

# The anomaly detector (anomaly._Detector) while `detect_anomaly()` is on, else None: the engine's only cost
# when it is off is this one check per op and per backward node.
_anomaly: Any = None


class _GradModeContext:
    """Gradient recording switched to `enabled` inside a `with` block, or for every call of a decorated function.

    Each entry restores, on exit, the mode it found: one object may be entered again while it is active (nested
    blocks, recursion, several threads). On a generator function the mode covers the generator's body, step by
    step, and the caller has its own mode back at every `yield` (as in PyTorch).
    """

    enabled: bool

    def __init__(self) -> None:
        self._found = threading.local()  # per thread: the mode found at each entry still open, innermost last

    def __enter__(self) -> None:
        self._found.__dict__.setdefault("modes", []).append(_grad_mode.enabled)
        _grad_mode.enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self._found.modes.pop()

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(func):
            return _generator_in_mode(self, func)

        @functools.wraps(func)
        def in_mode(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return in_mode


def _generator_in_mode(mode: _GradModeContext, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def generator(*args: Any, **kwargs: Any) -> Any:
        inner = func(*args, **kwargs)
        resume = functools.partial(inner.send, None)
        while True:
            try:
                with mode:
                    value = resume()
            except StopIteration as stop:
                return stop.value
            try:
                sent = yield value
            except GeneratorExit:
                with mode:
                    inner.close()
                raise
            except BaseException as error:  # thrown in by the caller: raise it inside the body, in the mode
                resume = functools.partial(inner.throw, error)
            else:
                resume = functools.partial(inner.send, sent)

    return generator


class no_grad(_GradModeContext):  # noqa: N801  (PyTorch's name)
    """Record nothing inside: outputs don't require grad and keep no graph. Context manager or decorator."""

    enabled = False


class enable_grad(_GradModeContext):  # noqa: N801
    """Record again inside a `no_grad` block. Context manager or decorator."""

    enabled = True


class set_grad_enabled(_GradModeContext):  # noqa: N801
    """Recording switched on or off (`mode`): from the call on, or, as a `with` block or decorator, inside it only
    (PyTorch's `set_grad_enabled`)."""

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self.enabled = bool(mode)
        self._before: bool | None = _grad_mode.enabled  # what the call switched from, until a block takes it over
        _grad_mode.enabled = self.enabled

    def __enter__(self) -> None:
        before, self._before = self._before, None
        super().__enter__()
        if before is not None:  # `with set_grad_enabled(m):` restores the mode from before the call, not after it
            self._found.modes[-1] = before

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if self._before is not None:  # a decorator switches the mode in the function only
            _grad_mode.enabled, self._before = self._before, None
        return super().__call__(func)


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


class Function:
    """One differentiable op. `forward` and `backward` work on ndarrays; the instance is the op's context.

    `backward(grad_output)` returns one gradient per tensor input (or None where `needs_input_grad` is False);
    gradients may have the broadcast shape and another float dtype (or be NumPy scalars, as 0-d arithmetic gives):
    the engine reduces, casts and wraps them. Return new arrays, `grad_output` itself or views of it, never an
    array the op keeps, and never write into `grad_output`: the engine takes a new array over as a leaf's `.grad`
    without copying it.
    """

    inputs: tuple[Tensor, ...] = ()
    needs_input_grad: tuple[bool, ...] = ()
    released = False
    _clock = 0  # the in-place clock when the op ran
    # An array attribute that backward reads only for one input's gradient: name -> that input's index. The version
    # check (inplace.py) ignores it when that input needs no gradient, as PyTorch saves it only then.
    saved_for: ClassVar[dict[str, int]] = {}

    def forward(self, *arrays: np.ndarray, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray) -> np.ndarray | tuple[np.ndarray | None, ...] | None:
        raise NotImplementedError

    def graph_backward(self, grad_output: Tensor, output: Tensor) -> Tensor | tuple[Tensor | None, ...] | None:
        """`backward` written with Tensor ops, which `create_graph=True` records: the op is then twice differentiable.

        Inputs are `self.inputs` (Tensors), `output` is the op's output Tensor; return what `backward` returns, as
        Tensors (broadcast shapes and other float dtypes are reduced and cast by the engine, with Tensor ops too).
        """
        raise RuntimeError(
            f"{self.name} is not twice differentiable: it has no graph_backward, which create_graph=True needs "
            "(write one with Tensor ops, see tinygrad_np/ops.py), or differentiate with create_graph=False"
        )

    @classmethod
    def apply(cls, *inputs: Tensor, **kwargs: Any) -> Tensor:
        ctx = cls()
        try:
            data = ctx.forward(*[t.data for t in inputs], **kwargs)
        except (ValueError, ops.AxesTypeError) as err:  # bad arguments: named with the op (other errors are bugs)
            shapes = ", ".join(str(t.shape) for t in inputs)
            raise type(err)(f"{cls.__name__}: {err} (input shapes: {shapes})") from None
        if type(data) is not np.ndarray:  # NumPy returns scalars from 0-d ufuncs and full reductions
            data = np.asarray(data)
        if _anomaly is not None:
            _anomaly.forward(ctx, inputs, data)  # records the creating line; raises AnomalyError on NaN/Inf
        if _grad_mode.enabled:
            needs_input_grad = tuple([t.requires_grad for t in inputs])
            if True in needs_input_grad and data.dtype.kind == "f":  # integer results are constants (PyTorch's rule)
                ctx.inputs = inputs
                ctx.needs_input_grad = needs_input_grad
                ctx._clock = _clock
                return Tensor._make(data, True, ctx)
        return Tensor._make(data, False, None)

    @property
    def name(self) -> str:
        return type(self).__name__

    def _release(self) -> None:
        """Drop saved arrays and inputs so the graph's memory is freed; a second backward then fails clearly."""
        self.__dict__.clear()
        self.released = True


def accurate_sum(array: np.ndarray, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> np.ndarray:
    """array.sum(axis, keepdims), with float32 accumulated in float64: every sum the engine takes goes through here.

    NumPy sums pairwise only along a contiguous axis; along any other axis, and in einsum, it adds one row at a
    time, so a float32 bias gradient over 600,000 rows lost five digits. Accumulating in float64 is accurate to
    the final rounding, better than PyTorch's cascade sum, at about twice the time of a plain float32 sum.
    """
    if array.dtype != np.float32:
        total = array.sum(axis=axis, keepdims=keepdims)
    elif array.ndim == 2 and not keepdims and axis in (0, (0,)):  # a bias gradient: einsum is 2-3x faster here
        total = np.einsum("ij->j", array, dtype=np.float64).astype(np.float32)
    else:
        total = np.add.reduce(array, axis=axis, dtype=np.float64, keepdims=keepdims).astype(np.float32)
    return _array(total)


def _sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo NumPy broadcasting: sum over the axes that broadcasting added or stretched from 1."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return accurate_sum(grad, axes).reshape(shape)


def _to_array(data: ArrayLike, dtype: Any = None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    array = np.asarray(data)
    kind = array.dtype.kind
    if kind == "f":
        # float32 by default, as in PyTorch; a float64 ndarray is kept on purpose (gradient checks need it),
        # but Python floats and lists, which NumPy makes float64 by default, become float32.
        keep = array.dtype == np.float32 or (
            array.dtype == np.float64 and isinstance(data, (np.ndarray, np.generic))
        )
        return array if keep else array.astype(np.float32)
    if kind in "OUS":
        raise TypeError(f"Tensor data must be numeric, got an array of dtype {array.dtype}")
    return array


class Tensor:
    """An n-dimensional array that records the ops applied to it, so `backward()` can differentiate them."""

    __slots__ = ("__weakref__", "_ctx", "_hooks", "_retains_grad", "data", "grad", "requires_grad")
    __array_ufunc__ = None  # `ndarray + Tensor` defers to Tensor.__radd__ instead of dropping the graph
    __hash__ = object.__hash__  # `==` is elementwise, identity stays the hash (tensors as dict keys)

    def __init__(self, data: ArrayLike, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _to_array(data, dtype)
        self.grad: np.ndarray | Tensor | None = None  # a Tensor only after backward(create_graph=True)
        self._ctx: Function | None = None
        self._retains_grad = False
        self._hooks: dict[int, Callable[[Tensor], Any]] | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _make(data: np.ndarray, requires_grad: bool, ctx: Function | None) -> Tensor:
        out = object.__new__(Tensor)  # skips __init__'s conversions: ops already produce the right arrays
        out.data = data
        out.grad = None
        out.requires_grad = requires_grad
        out._ctx = ctx
        out._retains_grad = False
        out._hooks = None
        return out

    # ---- properties -------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        return self._ctx

    @property
    def _version(self) -> int:
        """How many times the memory under this tensor was changed in place (shared with its views, as in PyTorch)."""
        return inplace.version(self.data)

    @property
    def T(self) -> Tensor:  # noqa: N802
        return self.transpose()

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        """Rows along the first axis, each differentiable (`for row in x`)."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))

    def __bool__(self) -> bool:
        return bool(self.data)  # NumPy's rule: only single-element tensors have a truth value

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item() needs a single-element tensor, got shape {self.shape}")
        return self.data.item()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def numpy(self) -> np.ndarray:
        return self.data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """NumPy's protocol: np.asarray(t) shares t's memory (as t.numpy()), np.array(t) copies it."""
        if copy is False and dtype is not None and np.dtype(dtype) != self.data.dtype:
            raise ValueError(f"can't view a {self.data.dtype} tensor as {np.dtype(dtype)} without a copy")
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy and array is self.data else array

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory, as in PyTorch)."""
        return Tensor._make(self.data, False, None)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}; "
                "create it from float data or pass dtype=np.float32 (or np.float64)"
            )
        if requires_grad and self.data.dtype.kind == "c":
            raise TypeError("complex tensors can't require gradients; use float32 or float64 data")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use .detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> Tensor:
        """Keep this intermediate tensor's gradient in `.grad` after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that doesn't require grad")
        self._retains_grad = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def register_hook(self, hook: Callable[[Tensor], ArrayLike | None]) -> RemovableHandle:
        """Call `hook(grad)` when this tensor's gradient is complete, in backward; a returned value replaces the
        gradient (for the tensor's `.grad` and for everything upstream). Returns a handle with `.remove()`."""
        if not self.requires_grad:
            raise RuntimeError("register_hook() on a tensor that doesn't require grad: it gets no gradient")
        if self._hooks is None:
            self._hooks = {}
        return RemovableHandle(self._hooks, hook)

    def __repr__(self) -> str:
        """PyTorch's layout, values first: `Tensor([2., 4.], shape=(2,), dtype=float32, grad_fn=<MulBackward>)`.

        Shape and dtype always (large tensors print summarised, and learners look for both); then the op whose
        backward will run (`grad_fn`) or, on a leaf that will receive a gradient, `requires_grad=True`.
        """
        body = np.array2string(self.data, separator=", ", prefix="Tensor(", precision=4, threshold=50)
        extra = f", shape={self.data.shape}, dtype={self.data.dtype}"
        if self._ctx is not None:
            extra += f", grad_fn=<{self._ctx.name}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # ---- backward ---------------------------------------------------------------------------------------

    def backward(self, grad: ArrayLike | None = None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf), weighted by `grad`, into every leaf's `.grad` that requires it.

        Leaves accumulate across calls until zeroed. The graph is freed afterwards; differentiating through
        it again raises unless the first call passed `retain_graph=True`. With `create_graph=True` the backward
        pass is itself recorded (and the graph kept): each `.grad` it reaches becomes a Tensor with a graph of
        its own, which can be differentiated again (see `tinygrad_np.grad` to get gradients without touching
        `.grad`).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation had "
                "requires_grad=True (or it ran under no_grad()); create the parameters with requires_grad=True"
            )
        _backward([self], [_seed(self, grad, "backward()", create_graph)], retain_graph or create_graph, create_graph)

    # ---- operators (each one a Function in ops.py) ------------------------------------------------------

    def _lift(self, other: ArrayLike) -> Tensor:
        """Wrap a constant operand. A Python or NumPy number takes this tensor's dtype, so float32 stays float32
        (PyTorch's rule), and so does an integer tensor's for a whole number that fits it (int32 * 3 is int32, as
        in NumPy 2 and PyTorch); arrays, 0-d ones too, and other mixes promote as in NumPy."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, _NUMBERS) and type(other) is not bool:
            dtype = self.data.dtype
            if dtype.kind == "f" or (
                dtype.kind in "iu" and isinstance(other, (int, np.integer))
                and np.iinfo(dtype).min <= int(other) <= np.iinfo(dtype).max
            ):
                return Tensor._make(np.asarray(other, dtype=dtype), False, None)
        return Tensor(other)

    def __add__(self, other: ArrayLike) -> Tensor:
        return ops.Add.apply(self, self._lift(other))

    def __radd__(self, other: ArrayLike) -> Tensor:
        return ops.Add.apply(self._lift(other), self)

    def __sub__(self, other: ArrayLike) -> Tensor:
        return ops.Sub.apply(self, self._lift(other))

    def __rsub__(self, other: ArrayLike) -> Tensor:
        return ops.Sub.apply(self._lift(other), self)

    def __mul__(self, other: ArrayLike) -> Tensor:
        return ops.Mul.apply(self, self._lift(other))

    def __rmul__(self, other: ArrayLike) -> Tensor:
        return ops.Mul.apply(self._lift(other), self)

    def __truediv__(self, other: ArrayLike) -> Tensor:
        return ops.Div.apply(self, self._lift(other))

    def __rtruediv__(self, other: ArrayLike) -> Tensor:
        return ops.Div.apply(self._lift(other), self)

    def __pow__(self, exponent: ArrayLike) -> Tensor:
        if isinstance(exponent, _NUMBERS) and type(exponent) is not bool:
            return ops.PowScalar.apply(self, exponent=exponent.item() if isinstance(exponent, np.generic) else exponent)
        return ops.Pow.apply(self, self._lift(exponent))

    def __rpow__(self, base: ArrayLike) -> Tensor:
        return ops.Pow.apply(self._lift(base), self)

    def __neg__(self) -> Tensor:
        return ops.Neg.apply(self)

    def __matmul__(self, other: ArrayLike) -> Tensor:
        return ops.MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other: ArrayLike) -> Tensor:
        return ops.MatMul.apply(self._lift(other), self)

    def __getitem__(self, index: Any) -> Tensor:
        return ops.GetItem.apply(self, index=_unwrap_index(index))

    # ---- in place (inplace.py): the tensor's own array changes, so views of it see it -------------------------

    def __iadd__(self, other: ArrayLike) -> Tensor:
        return inplace.update(self, other, "+=", ops.Add)

    def __isub__(self, other: ArrayLike) -> Tensor:
        return inplace.update(self, other, "-=", ops.Sub)

    def __imul__(self, other: ArrayLike) -> Tensor:
        return inplace.update(self, other, "*=", ops.Mul)

    def __itruediv__(self, other: ArrayLike) -> Tensor:
        return inplace.update(self, other, "/=", ops.Div)

    def __setitem__(self, index: Any, value: ArrayLike) -> None:
        inplace.setitem(self, _unwrap_index(index), value)

    def fill_(self, value: float | Tensor) -> Tensor:
        """Every element set to `value` (a number or a 0-d tensor), in place."""
        if isinstance(value, Tensor) and value.ndim:
            raise ValueError(f"fill_ takes a number or a 0-d tensor, got a tensor of shape {value.shape}")
        return inplace.setitem(self, Ellipsis, value, "fill_")

    def zero_(self) -> Tensor:
        return inplace.setitem(self, Ellipsis, 0, "zero_")

    def copy_(self, src: ArrayLike) -> Tensor:
        """`src`'s values (broadcast to this shape, cast to this dtype) copied in, in place; differentiable to src."""
        return inplace.setitem(self, Ellipsis, src, "copy_")

    # Comparisons are not differentiable: they give boolean tensors, e.g. for `where`.
    def __lt__(self, other: ArrayLike) -> Tensor:
        return Tensor(self.data < _data(other))

    def __le__(self, other: ArrayLike) -> Tensor:
        return Tensor(self.data <= _data(other))

    def __gt__(self, other: ArrayLike) -> Tensor:
        return Tensor(self.data > _data(other))

    def __ge__(self, other: ArrayLike) -> Tensor:
        return Tensor(self.data >= _data(other))

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return Tensor(self.data == _data(other))

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return Tensor(self.data != _data(other))

    # ---- methods ----------------------------------------------------------------------------------------

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return ops.Max.apply(self, axis=axis, keepdims=keepdims)

    def min(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return ops.Min.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """Indices of the maxima (int64); not differentiable."""
        return Tensor(np.argmax(self.data, axis=axis, keepdims=keepdims))

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """Indices of the minima (int64); not differentiable."""
        return Tensor(np.argmin(self.data, axis=axis, keepdims=keepdims))

    def exp(self) -> Tensor:
        return ops.Exp.apply(self)

    def log(self) -> Tensor:
        return ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return ops.Sqrt.apply(self)

    def tanh(self) -> Tensor:
        return ops.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        return ops.Sigmoid.apply(self)

    def relu(self) -> Tensor:
        return ops.ReLU.apply(self)

    def abs(self) -> Tensor:
        return ops.Abs.apply(self)

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:
        if min is None and max is None:
            raise ValueError("clip() needs min, max or both")
        return ops.Clip.apply(self, low=min, high=max)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=shape)

    def transpose(self, *axes: int | Sequence[int]) -> Tensor:
        """`t.transpose(d0, d1)`: axes d0 and d1 swapped (PyTorch's). Otherwise NumPy's: `t.transpose()` reverses
        the axes, `t.transpose(order)` or `t.transpose(*order)` permutes them (as `permute`). Two ints always swap,
        so PyTorch's `x.transpose(0, 1)` on a matrix transposes it, where NumPy's would leave it as it is."""
        if len(axes) == 2 and all(isinstance(ax, (int, np.integer)) for ax in axes):
            return self.swapaxes(*axes)
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = tuple(axes[0])
        return ops.Transpose.apply(self, axes=axes or None)

    def permute(self, *dims: int | Sequence[int]) -> Tensor:
        """The axes in the order `dims` (a permutation of all of them), as PyTorch's `permute`."""
        if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
            dims = tuple(dims[0])
        if not dims and self.ndim:
            raise ValueError(f"permute needs the order of all {self.ndim} dimensions, got none")
        return ops.Transpose.apply(self, axes=dims or None)

    def swapaxes(self, axis0: int, axis1: int) -> Tensor:
        """Axes axis0 and axis1 exchanged (`t.transpose(axis0, axis1)`)."""
        return ops.Transpose.apply(self, axes=None, swap=(axis0, axis1))

    def flatten(self, start_dim: int = 0) -> Tensor:
        """Merge dimensions start_dim.. into one (start_dim=1 keeps the batch dimension); a 0-d tensor becomes (1,)."""
        try:
            (start,) = ops.normalize_axes(start_dim, max(self.ndim, 1))
        except ValueError as err:
            raise ValueError(f"flatten: {err} (input shape: {self.shape})") from None
        # The merged size, not -1: a tensor with no elements can't infer it.
        return self.reshape(*self.shape[:start], int(np.prod(self.shape[start:])))

    def softmax(self, axis: int = -1) -> Tensor:
        return ops.Softmax.apply(self, axis=axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return ops.LogSoftmax.apply(self, axis=axis)

    def logsumexp(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return ops.LogSumExp.apply(self, axis=axis, keepdims=keepdims)

    def maximum(self, other: ArrayLike) -> Tensor:
        return ops.Maximum.apply(self, self._lift(other))

    def astype(self, dtype: Any) -> Tensor:
        return ops.Cast.apply(self, dtype=np.dtype(dtype))

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)


def as_tensor(data: ArrayLike) -> Tensor:
    """`data` itself if it is a Tensor, else a constant Tensor of it (float32 unless it is a float64 array)."""
    return data if isinstance(data, Tensor) else Tensor(data)


def _data(x: object) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _unwrap_index(index: Any) -> Any:
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _topological_order(roots: Sequence[Tensor], requiring_grad_only: bool = True) -> list[Tensor]:
    """Tensors that lead to `roots`, inputs before outputs (iterative DFS: no recursion limit on depth)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False) for root in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is not None:
            if ctx._clock < _last_rebase:
                inplace.resolve_inputs(ctx)
            for parent in ctx.inputs:
                if id(parent) not in visited and (parent.requires_grad or not requiring_grad_only):
                    stack.append((parent, False))
    return order


def _seed(root: Tensor, grad: Any, caller: str, create_graph: bool) -> Any:
    """The gradient backward starts from at `root`: `grad` checked (ones when None), an ndarray, or a Tensor when
    the backward pass is recorded (a Tensor `grad` is then kept as it is: its own graph is differentiated too)."""
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"{caller}: with no gradient given, the output must be a single-element tensor, got shape "
                f"{root.shape}; reduce it first (.sum() or .mean()) or give a gradient of its shape (backward's grad=, "
                "grad()'s grad_outputs=)"
            )
        seed = np.ones(root.shape, dtype=root.dtype)
    elif create_graph and isinstance(grad, Tensor):
        if grad.shape != root.shape:
            raise ValueError(f"{caller}: grad has shape {grad.shape} but the tensor has shape {root.shape}")
        return grad if grad.dtype == root.dtype else grad.astype(root.dtype)
    else:
        seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
        if seed.shape != root.shape:
            raise ValueError(f"{caller}: grad has shape {seed.shape} but the tensor has shape {root.shape}")
    return Tensor._make(seed, False, None) if create_graph else seed


def _backward(
    roots: Sequence[Tensor],
    seeds: Sequence[Any],
    retain_graph: bool,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
) -> dict[int, Any] | None:
    """d(roots)/d(leaves), weighted by `seeds`, into the leaves' `.grad`; or, when `inputs` is given, returned as
    {id(input): gradient} for the inputs reached, with no `.grad` touched (what `tinygrad_np.grad` does).

    Gradients are ndarrays; with `create_graph` they are Tensors and every op's `graph_backward` computes them,
    with Tensor ops that are recorded (under `enable_grad`, whatever the caller's mode).
    """
    # As in PyTorch, a backward pass records (hooks' ops, say) only when it is recorded itself: a hook may then
    # update a parameter in place, and its ops keep no graph.
    found = _grad_mode.enabled
    _grad_mode.enabled = create_graph
    try:
        return _backward_pass(roots, seeds, retain_graph, create_graph, inputs)
    finally:
        _grad_mode.enabled = found


def _backward_pass(
    roots: Sequence[Tensor],
    seeds: Sequence[Any],
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence[Tensor] | None,
) -> dict[int, Any] | None:
    # grads[id(t)]: the gradient reaching tensor t so far, summed over the paths seen. `private` holds the ids whose
    # array nothing outside this function can reach (the rule is where it is decided, below): only such an array may
    # take the next sum in place, or become a leaf's .grad without a copy (a Linear's dW, for one, is not copied).
    grads: dict[int, Any] = {}
    for root, seed in zip(roots, seeds, strict=True):
        grads[id(root)] = seed if id(root) not in grads else grads[id(root)] + seed  # the same output twice
    private: set[int] = set()
    order = _topological_order(roots)
    versions = inplace.VersionCheck.if_needed(order, _clock)  # None unless an op here ran before an in-place write
    wanted = onward = None
    if inputs is not None:
        wanted = dict.fromkeys(map(id, inputs))
        order, onward = _leading_to(order, wanted)
    for node in reversed(order):
        key = id(node)
        upstream = grads.pop(key, None)
        if upstream is None:
            continue  # no path from root reached it with a gradient
        if node._hooks:
            upstream = _run_hooks(node, upstream)
            private.discard(key)  # a hook may have kept the array
        ctx = node._ctx
        if ctx is None or node._retains_grad or wanted is not None:
            if wanted is None:
                _accumulate_into(node, upstream, key in private)
            elif key in wanted:
                wanted[key] = upstream if create_graph or key in private else upstream.copy()
            if ctx is None or (onward is not None and key not in onward):
                continue  # a leaf, or an input of grad() below which no other input lies: its graph is left alone
        if ctx.released:
            raise RuntimeError(
                f"backward through a graph that was already freed (at {ctx.name}): the first backward() "
                "frees it to save memory; pass retain_graph=True to that first call to backward twice"
            )
        if versions is not None:
            versions.check(node, ctx)
        if create_graph:
            _recorded_step(ctx, node, upstream, grads)
            continue  # the graph is kept: the gradients just recorded point into it
        returned = ctx.backward(upstream)
        if type(returned) is not tuple:  # one array, or a list (or tuple subclass) of them
            returned = tuple(returned) if isinstance(returned, (tuple, list)) else (returned,)
        if _anomaly is not None:
            _anomaly.backward(ctx, returned, upstream)
        if len(returned) != len(ctx.inputs):
            raise _count_error(ctx, returned)
        for parent, op_grad, needed in zip(ctx.inputs, returned, ctx.needs_input_grad, strict=False):  # counted
            if not needed or op_grad is None:
                continue
            data = parent.data
            if type(op_grad) is np.ndarray and op_grad.shape == data.shape and op_grad.dtype is data.dtype:
                parent_grad = op_grad  # the common case, checked here: this loop runs once per edge of the graph
            else:
                parent_grad = _fit_to(ctx, data, op_grad)
            parent_key = id(parent)
            previous = grads.get(parent_key)
            if previous is None:
                grads[parent_key] = parent_grad
                # Private: the engine made it just now (reducing, casting or wrapping what the op returned), or the
                # op made it for this input alone: a whole array (no view), not the upstream, not returned twice.
                if parent_grad is not op_grad or (
                    op_grad.base is None and op_grad is not upstream and len(set(map(id, returned))) == len(returned)
                ):
                    private.add(parent_key)
            elif parent_key in private:
                np.add(previous, parent_grad, out=previous)
            else:
                grads[parent_key] = _array(previous + parent_grad)
                private.add(parent_key)
        if not retain_graph:
            ctx._release()
    return wanted


def _leading_to(order: list[Tensor], targets: Mapping[int, Any]) -> tuple[list[Tensor], set[int]]:
    """The tensors of `order` (inputs first) that `grad()` visits: the targets, and those from which a path leads
    to one; and the ids of those whose op's backward must run, the ones with a path onward to a target below them.

    A freed graph keeps no inputs, so where a path goes below a freed op is unknown: a tensor made by one counts as
    leading (its backward then raises), except a target when it is the only one, below which nothing is wanted.
    """
    leading = set(targets)
    onward: set[int] = set()
    for node in order:
        ctx = node._ctx
        if ctx is None:
            continue
        if ctx.released:
            through = len(targets) > 1 or id(node) not in targets
        else:
            through = any(id(parent) in leading for parent in ctx.inputs)
        if through:
            leading.add(id(node))
            onward.add(id(node))
    return [node for node in order if id(node) in leading], onward


def _recorded_step(ctx: Function, output: Tensor, upstream: Tensor, grads: dict[int, Any]) -> None:
    """One step of a recorded backward pass: the op's `graph_backward`, the reductions to each input's shape and
    dtype, and the sums over paths, all with Tensor ops, so that the gradients have a graph."""
    with enable_grad():
        try:
            returned = ctx.graph_backward(upstream, output)
        except FloatingPointError as error:  # detect_anomaly's AnomalyError, from an op of the formula: say whose
            error.args = (f"{error.args[0]}; computing {ctx.name}'s gradient with create_graph=True",)
            raise
        if type(returned) is not tuple:
            returned = tuple(returned) if isinstance(returned, (tuple, list)) else (returned,)
        if _anomaly is not None:
            _anomaly.backward(ctx, [None if r is None else _data(r) for r in returned], upstream.data)
        if len(returned) != len(ctx.inputs):
            raise _count_error(ctx, returned)
        for parent, op_grad, needed in zip(ctx.inputs, returned, ctx.needs_input_grad, strict=False):  # counted
            if not needed or op_grad is None:
                continue
            parent_grad = _fit_tensor_to(ctx, parent, as_tensor(op_grad))
            previous = grads.get(id(parent))
            grads[id(parent)] = parent_grad if previous is None else previous + parent_grad


def _count_error(ctx: Function, returned: tuple[Any, ...]) -> RuntimeError:
    return RuntimeError(
        f"{ctx.name}.backward returned {len(returned)} gradients for {len(ctx.inputs)} inputs; "
        "return one per input (None for an input that needs none)"
    )


def _run_hooks(node: Tensor, grad: Any) -> Any:
    """`grad` passed through node's hooks in the order registered; a hook returning a value replaces it. In a
    recorded pass (create_graph) the gradient is a Tensor with a graph: the hook sees it, and what it returns is
    differentiated too."""
    recorded = isinstance(grad, Tensor)
    for hook in list(node._hooks.values()):
        result = hook(grad if recorded else Tensor._make(grad, False, None))
        if result is None:
            continue
        if recorded:
            replaced = result if isinstance(result, Tensor) else Tensor(np.asarray(result))
        else:
            replaced = np.asarray(result.data if isinstance(result, Tensor) else result)
        if replaced.shape != grad.shape:
            raise RuntimeError(
                f"hook {getattr(hook, '__name__', hook)!s} changed the gradient's shape from {grad.shape} to "
                f"{replaced.shape}; return a gradient of the tensor's shape (or None to keep it)"
            )
        if recorded:
            grad = replaced if replaced.dtype == node.dtype else replaced.astype(node.dtype)
        else:
            grad = replaced.astype(node.dtype, copy=False)
    return grad


def _array(value: Any) -> np.ndarray:
    """`value` as an ndarray: NumPy's arithmetic on 0-d arrays gives scalars, which can't be summed into in place."""
    return value if type(value) is np.ndarray else np.asarray(value)


def _broadcast_axes(grad_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of a gradient of `grad_shape` that NumPy broadcasting added to, or stretched from 1 in, `shape`."""
    lead = len(grad_shape) - len(shape)
    return tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad_shape[lead + i] != 1)


def _sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo NumPy broadcasting: sum over the axes that broadcasting added or stretched from 1."""
    return accurate_sum(grad, _broadcast_axes(grad.shape, shape)).reshape(shape)


def _shape_error(ctx: Function, grad_shape: tuple[int, ...], shape: tuple[int, ...]) -> RuntimeError:
    return RuntimeError(f"{ctx.name}.backward returned a gradient of shape {grad_shape} for an input of shape {shape}")


def _fit_to(ctx: Function, data: np.ndarray, grad: Any) -> np.ndarray:
    """An op's gradient for an input holding `data`, as a new ndarray if it must change: of the input's shape
    (broadcasting summed away) and dtype, and an ndarray, not a NumPy scalar (which 0-d arithmetic gives)."""
    if type(grad) is not np.ndarray:
        grad = np.array(grad)  # a copy, also of an ndarray subclass: what the engine made is the engine's
    if grad.shape != data.shape:
        reduced = None
        with contextlib.suppress(ValueError, IndexError):
            reduced = _sum_to_shape(grad, data.shape)
        if reduced is None or reduced.shape != data.shape:
            raise _shape_error(ctx, grad.shape, data.shape)
        grad = reduced
    if grad.dtype != data.dtype:
        grad = grad.astype(data.dtype)
    return grad


def _fit_tensor_to(ctx: Function, parent: Tensor, grad: Tensor) -> Tensor:
    """`_fit_to` for a recorded backward pass: the same reductions and casts, as Tensor ops."""
    if grad.shape != parent.shape:
        reduced = None
        with contextlib.suppress(ValueError, IndexError):
            if np.broadcast_shapes(grad.shape, parent.shape) == grad.shape:
                reduced = grad.sum(_broadcast_axes(grad.shape, parent.shape)).reshape(parent.shape)
        if reduced is None:
            raise _shape_error(ctx, grad.shape, parent.shape)
        grad = reduced
    return grad if grad.dtype == parent.dtype else grad.astype(parent.dtype)


def _accumulate_into(node: Tensor, grad: Any, private: bool) -> None:
    """Into `.grad`: an ndarray, or a Tensor once a recorded backward pass (create_graph) has reached it."""
    if node.grad is None:
        node.grad = grad if private or isinstance(grad, Tensor) else grad.copy()
    elif isinstance(node.grad, Tensor) or isinstance(grad, Tensor):
        node.grad = as_tensor(node.grad) + grad  # out of place: the Tensor already there may be part of a graph
    else:
        node.grad += grad


def iter_graph(root: Tensor) -> Iterator[Tensor]:
    """Every tensor of `root`'s graph, inputs before outputs (also those that don't require grad)."""
    return iter(_topological_order([root], requiring_grad_only=False))


from tinygrad_np import inplace, ops  # noqa: E402  (they subclass Function and use Tensor, defined above)
