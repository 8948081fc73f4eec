"""In-place updates (`+= -= *= /=`, `t[idx] = v`, `fill_`, `zero_`, `copy_`) and the version checks behind them.

Every in-place op writes into the tensor's own array, so views of it (slices, reshape, transpose, detach) see the
change, as in PyTorch. What happens to the graph depends on whether the op is recorded:

- Not recorded (under `no_grad`, or nothing involved requires grad): the array is updated and nothing else; a leaf
  keeps its identity and `requires_grad`. This is the optimizer's `with no_grad(): w -= lr * w.grad`.
- Recorded (gradients on, and the tensor or the value requires grad): on a leaf that requires grad it raises
  `InPlaceError`, as PyTorch does. Otherwise the tensor's history is *rebased*: a copy of its old value takes over
  its old history (`old`), the op runs out of place on `old`, and the tensor gets that op as its `grad_fn`. An op
  that consumed the tensor before keeps its edge to `old`: `_topological_order` sends it there (`as_it_was`), as
  PyTorch's edges point at the grad_fn as it was.

Versions. Every write is counted on the memory it changes (the array's root `base`), so a tensor and its views share
one count (`Tensor._version`), and stamped with a global clock that every Function also records when it is made.
If an op in the graph ran before a write, backward checks each such op (`VersionCheck`): an array it saved for
backward must not have been written since it ran, nor may its output have been written and then read by a later op.
Otherwise `InPlaceError` names the op and the shape, where a silently wrong gradient would follow (`opt.step()`
between the forward pass and `backward()`, for one). While nothing was written since the forward pass, backward pays
one integer comparison per node.
"""

from __future__ import annotations

import bisect
import functools
import weakref
from typing import Any

import numpy as np

from tinygrad_np import tensor as _engine
from tinygrad_np.errors import UserError
from tinygrad_np.tensor import ArrayLike, Function, Tensor


class InPlaceError(UserError, RuntimeError):
    """An in-place op that autograd can't record, or a backward that needs a value an in-place op overwrote."""


# ---- versions: writes counted per memory block ----------------------------------------------------------------

# id(root array) -> [weak reference to it, number of writes, clocks of the recent writes, clock of the last one
# forgotten]. A check that reaches further back than the recent writes counts the array as written then.
_writes: dict[int, list[Any]] = {}
_RECENT_WRITES = 32


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _forget(key: int, ref: weakref.ref) -> None:
    entry = _writes.get(key)
    if entry is not None and entry[0] is ref:
        del _writes[key]


def _entry(array: np.ndarray) -> list[Any] | None:
    root = _root(array)
    entry = _writes.get(id(root))
    return entry if entry is not None and entry[0]() is root else None


def mark_written(array: np.ndarray, changed: bool = True) -> None:
    """Count a write into `array` (and so into every array sharing its memory) and, if it `changed` the values, move
    the clock on. (`t[i] = t[i]` counts, as in PyTorch, and changes nothing.) Optimizers call this once per parameter
    and step, so it is written for speed."""
    root = _root(array)
    key = id(root)
    entry = _writes.get(key)
    if entry is None or entry[0]() is not root:
        entry = _writes[key] = [weakref.ref(root, functools.partial(_forget, key)), 0, [], 0]
    entry[1] += 1
    if changed:
        clock = _engine._clock = _engine._clock + 1
        clocks = entry[2]
        clocks.append(clock)
        if len(clocks) > _RECENT_WRITES:
            entry[3] = clocks.pop(0)


def increment_version(tensor: Tensor) -> None:
    """Record that `tensor.data` was changed in place by code outside the engine (as `optimizer.step()` does), so a
    backward that saved the old values raises instead of using the new ones (PyTorch's `increment_version`)."""
    mark_written(tensor.data)


def version(array: np.ndarray) -> int:
    """How many writes the memory under `array` has had through tinygrad_np."""
    entry = _entry(array)
    return 0 if entry is None else entry[1]


def _last_write(array: np.ndarray) -> int:
    entry = _entry(array)
    return 0 if entry is None or not entry[2] else entry[2][-1]


def _first_write_after(array: np.ndarray, clock: int) -> int | None:
    entry = _entry(array)
    if entry is None:
        return None
    if clock < entry[3]:
        return clock + 1  # forgotten: assume the earliest
    later = bisect.bisect_right(entry[2], clock)
    return entry[2][later] if later < len(entry[2]) else None


class VersionCheck:
    """What backward checks in a graph where an op ran before an in-place write. Built before backward starts, since
    backward releases each op (and its inputs) as it goes."""

    @staticmethod
    def if_needed(order: list[Tensor], clock: int) -> VersionCheck | None:
        """A check for the graph `order` if one of its ops ran before the clock reached `clock`, else None."""
        for node in order:
            ctx = node._ctx
            if ctx is not None and ctx._clock < clock:
                return VersionCheck(order, clock)
        return None

    def __init__(self, order: list[Tensor], clock: int) -> None:
        self.clock = clock
        # per tensor, the clock of the latest op that consumed it: a write before then fed that op a changed value
        self.last_use: dict[int, int] = {}
        for node in order:
            ctx = node._ctx
            if ctx is not None:
                for parent in ctx.inputs:
                    self.last_use[id(parent)] = max(self.last_use.get(id(parent), 0), ctx._clock)

    def check(self, node: Tensor, ctx: Function) -> None:
        if ctx._clock == self.clock:
            return  # nothing was written since the op ran
        _check_saved(ctx)
        written = _first_write_after(node.data, vars(ctx).get("rebased_at", ctx._clock))
        if written is not None and written <= self.last_use.get(id(node), 0):
            raise InPlaceError(
                f"the output of {ctx.name} (shape {node.shape}) was modified in place after {ctx.name} computed it "
                "(under no_grad, or through a view or a detach() that shares its memory), and then used: its "
                "gradient would be that of the value before; modify a copy, or do the update out of place"
            )


def _check_saved(ctx: Function) -> None:
    """Raise unless the arrays `ctx` saved for backward are as they were when it ran."""
    made, needs = ctx._clock, ctx.needs_input_grad
    for name, saved in vars(ctx).items():
        if name in ctx.saved_for and not needs[ctx.saved_for[name]]:
            continue
        if type(saved) is np.ndarray and _last_write(saved) > made:
            raise InPlaceError(
                f"{ctx.name}'s backward needs a tensor of shape {saved.shape} that it saved, but the tensor was "
                f"modified in place (now at version {version(saved)}) after {ctx.name} ran: by an in-place op or "
                "an optimizer's step(); run the forward pass again after the change (call opt.step() after "
                "loss.backward()), or change a copy"
            )


def as_it_was(tensor: Tensor, clock: int) -> Tensor:
    """The tensor an op made at `clock` consumed: `tensor`, or the `old` that took over its history when an in-place
    op rebased it after that op was made."""
    ctx = tensor._ctx
    while ctx is not None and clock < vars(ctx).get("rebased_at", -1):
        tensor = ctx.rebased_from
        ctx = tensor._ctx
    return tensor


def resolve_inputs(ctx: Function) -> None:
    """Point ctx's edges at its inputs as they were when it ran (after an in-place op rebased one of them)."""
    if not ctx.released:
        ctx.inputs = tuple([as_it_was(t, ctx._clock) for t in ctx.inputs])


# ---- the in-place ops ------------------------------------------------------------------------------------------

_UFUNCS = {"+=": np.add, "-=": np.subtract, "*=": np.multiply, "/=": np.true_divide}


def update(target: Tensor, other: ArrayLike, op: str, function: type[Function]) -> Tensor:
    """`target op= other` in place; `function` is the out-of-place op it records when gradients are on."""
    value = target._lift(other)
    try:
        fits = np.broadcast_shapes(target.shape, value.shape) == target.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{op}: a tensor of shape {target.shape} can't take the broadcast shape of {target.shape} and "
            f"{value.shape} in place; write it out of place (t = t {op[0]} other)"
        )
    if _recorded(target, value):
        return _record(target, op, "same_kind", lambda old: function.apply(old, old if value is target else value))
    _write(target, op, lambda data: _UFUNCS[op](data, value.data, out=data, casting="same_kind"))
    return target


def setitem(target: Tensor, index: Any, value: ArrayLike, op: str = "setitem") -> Tensor:
    """`target[index] = value` in place (`fill_` and `copy_` are `target[...] = value`); values are cast to
    target's dtype, as in PyTorch."""
    value = target._lift(value)
    # `t[i] += v` is `tmp = t[i]; tmp += v; t[i] = tmp`: tmp is a view that already wrote the values into t
    written = _is_view_at(value.data, target.data, index)
    if _recorded(target, value):
        apply = lambda old: SetItem.apply(old, old if value is target else value, index=index)  # noqa: E731
        return _record(target, op, "unsafe", apply, write=not written)
    if written:
        mark_written(target.data, changed=False)
        return target

    def assign(data: np.ndarray) -> None:
        try:
            data[index] = value.data
        except IndexError as err:
            raise ValueError(f"{op}: index {index!r} doesn't fit shape {data.shape}: {err}") from None

    _write(target, op, assign)
    return target


def _is_view_at(array: np.ndarray, data: np.ndarray, index: Any) -> bool:
    """Whether `array` is the very memory `data[index]` names (a view of it, element for element)."""
    if array.base is None:
        return False
    try:
        region = data[index]
    except (IndexError, TypeError, ValueError):
        return False
    return (
        type(region) is np.ndarray and region.base is not None and region.dtype == array.dtype
        and region.shape == array.shape and region.strides == array.strides
        and region.__array_interface__["data"][0] == array.__array_interface__["data"][0]
    )


def _recorded(target: Tensor, value: Tensor) -> bool:
    return _engine._grad_mode.enabled and (target.requires_grad or value.requires_grad)


def _write(target: Tensor, op: str, write: Any) -> None:
    try:
        write(target.data)
    except ValueError as err:
        if not target.data.flags.writeable:
            raise InPlaceError(
                f"{op}: the tensor's data (shape {target.shape}) is read-only (a broadcast view or a read-only "
                "array); make a writable copy first: Tensor(t.data.copy())"
            ) from None
        raise ValueError(f"{op}: {err} (tensor shape {target.shape})") from None
    except TypeError as err:  # NumPy's casting error: a float result into an integer tensor, say
        raise TypeError(f"{op}: {err}; the tensor has dtype {target.dtype}, which can't hold the result") from None
    mark_written(target.data)


def _record(target: Tensor, op: str, casting: str, apply: Any, write: bool = True) -> Tensor:
    _refuse_leaf(target, op)
    old = Tensor._make(target.data.copy(), target.requires_grad, target._ctx)
    out = apply(old)
    if write:
        _write(target, op, lambda data: np.copyto(data, out.data, casting=casting))
    else:
        mark_written(target.data, changed=False)
    # The op read its inputs before its write (ctx._clock); the tensor holds its output from rebased_at on, and the
    # ops made before then consumed `old`. The clock moves on even without a write, so that "before" is strict.
    _engine._clock += 1
    ctx = out._ctx
    ctx.rebased_at, ctx.rebased_from = _engine._clock, old
    old._hooks, target._hooks = target._hooks, None  # hooks registered before the op see the old value's gradient
    target._ctx, target.requires_grad = ctx, True
    _engine._last_rebase = _engine._clock
    return target


def _refuse_leaf(target: Tensor, op: str) -> None:
    """PyTorch's rule: a leaf that requires grad, or a view of one, is changed only under no_grad."""
    tensor, view = target, ""
    while tensor._ctx is not None and not tensor._ctx.released and tensor.data.base is not None:
        parent = tensor._ctx.inputs[0]
        if not np.may_share_memory(tensor.data, parent.data):
            break
        tensor, view = parent, "a view of "
    if tensor.requires_grad and tensor._ctx is None:
        raise InPlaceError(
            f"{op} on {view}a leaf tensor that requires grad (shape {tensor.shape}): autograd needs its value; "
            "update parameters under `with tg.no_grad():` (as optimizers do), or change a copy"
        )


class SetItem(Function):
    """y = a with y[index] = v;  da = g with g[index] = 0, dv = g[index] (summed where v was broadcast)"""

    def forward(self, a: np.ndarray, v: np.ndarray, index: Any) -> np.ndarray:
        self.index, self.v_ndim = index, v.ndim
        out = a.copy()
        try:
            out[index] = v
        except IndexError as err:
            raise ValueError(f"index {index!r} doesn't fit shape {a.shape}: {err}") from None
        return out

    def backward(self, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        need_a, need_v = self.needs_input_grad
        da = dv = None
        if need_a:
            da = g.copy()
            da[self.index] = 0
        if need_v:
            dv = g[self.index]
            if self.v_ndim > dv.ndim:  # NumPy assigned a (1, n) value into an (n,) slot: give dv its leading 1s
                dv = dv.reshape((1,) * (self.v_ndim - dv.ndim) + dv.shape)
        return da, dv

    def graph_backward(self, g: Tensor, y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        need_a, need_v = self.needs_input_grad
        da = dv = None
        if need_a:  # g with its index zeroed is itself a SetItem of g, linear in g
            da = SetItem.apply(g, Tensor(np.zeros((), dtype=g.dtype)), index=self.index)
        if need_v:
            dv = g[self.index]
            if self.v_ndim > dv.ndim:
                dv = dv.reshape((1,) * (self.v_ndim - dv.ndim) + dv.shape)
        return da, dv
