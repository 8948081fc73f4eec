"""Random programs over tinygrad_np's ops, run in tinygrad_np and in PyTorch, and compared (the fuzzer's machinery).

A `Program` is a list of nodes: leaves (data, requires_grad) and steps (an op of the table in engine_ops.py applied
to earlier nodes or constants, with fixed keyword arguments, maybe inside nested no_grad/enable_grad blocks, maybe
with retain_grad), and a `Loss` to differentiate. `programs(ops)` is the Hypothesis strategy that writes them:
its `Builder` runs each step in PyTorch as it goes, so a later step sees real shapes and values, and a step that
PyTorch rejects is left out. `run(program, framework)` interprets a program and records every value, dtype and
requires_grad flag and, after each backward pass, every leaf's and retained gradient; `assert_same` compares the
records of the two frameworks.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_np as tg
from tinygrad_np import Tensor

try:
    import torch
except ImportError:  # the fuzz tests require it (skipped locally, failing on CI)
    torch = None

# Leaf data: quantised values hit ties, kinks (relu, abs, clip at 0 and +-1) and zeros (log, sqrt, division)
# exactly; generic values have none of those; "with nan" is for the NaN conventions.
QUANTISED = np.array([-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0])
UPSTREAM = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0])  # upstream gradients, zero included
DATA_KINDS = ("quantised", "quantised", "generic", "positive", "mixed")
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4).filter(lambda s: int(np.prod(s)) <= 64)


def leaf_data(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    draws = {
        "quantised": lambda: rng.choice(QUANTISED, size=shape),
        "generic": lambda: rng.uniform(-2, 2, size=shape),
        "positive": lambda: rng.choice(QUANTISED[QUANTISED > 0], size=shape) + rng.uniform(0, 0.25, shape).round(2),
        "mixed": lambda: np.where(rng.random(shape) < 0.5, rng.choice(QUANTISED, shape), rng.uniform(-2, 2, shape)),
        "with nan": lambda: np.where(rng.random(shape) < 0.3, np.nan, rng.choice(QUANTISED, size=shape)),
    }
    return np.asarray(draws[kind]())  # NumPy draws a scalar for shape ()


# ---- the program ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One entry of the op table: how to draw its operands, and the op in each framework."""

    operands: Callable[[Builder], tuple[tuple[int | Const, ...], dict[str, Any]] | None]
    ours: Callable[..., Any]
    theirs: Callable[..., Any]


@dataclass(frozen=True)
class Const:
    """A constant operand: a Python or NumPy number, or an ndarray."""

    value: Any

    def __repr__(self) -> str:
        value = self.value
        if isinstance(value, np.ndarray):
            return _array_repr(value)
        return f"np.{type(value).__name__}({value!r})" if isinstance(value, np.generic) else repr(value)


def _array_repr(array: np.ndarray) -> str:
    if array.size == 0:
        return f"np.zeros({array.shape}, dtype=np.{array.dtype})"
    return f"np.array({array.tolist()!r}, dtype=np.{array.dtype})"


@dataclass(frozen=True)
class Leaf:
    data: np.ndarray
    requires_grad: bool


@dataclass(frozen=True)
class Step:
    name: str
    op: Op
    args: tuple[int | Const, ...]  # node indices or constants
    params: tuple[tuple[str, Any], ...] = ()
    grad_modes: tuple[str, ...] = ()  # nested blocks, outermost first: "no_grad" or "enable_grad"
    retain_grad: bool = False


@dataclass(frozen=True)
class Loss:
    """Where backward starts: sum_k (targets[k] * upstreams[k]).sum(), or (direct) targets[0].backward(upstream)."""

    targets: tuple[int, ...]
    upstreams: tuple[np.ndarray | None, ...]
    direct: bool
    twice: bool  # backward(retain_graph=True), then backward again: leaf gradients accumulate
    grad_first: tuple[int, ...] = ()  # before backward: grad(the same loss, these nodes, retain_graph=True)


@dataclass(frozen=True)
class Program:
    nodes: tuple[Leaf | Step, ...]
    loss: Loss | None

    def __repr__(self) -> str:  # a program as the code it stands for
        lines = []
        for i, node in enumerate(self.nodes):
            if isinstance(node, Leaf):
                grad = ", requires_grad=True" if node.requires_grad else ""
                lines.append(f"v{i} = Tensor({_array_repr(node.data)}{grad})")
                continue
            args = ", ".join(f"v{a}" if isinstance(a, int) else repr(a) for a in node.args)
            params = "".join(f", {k}={v!r}" for k, v in node.params)
            modes = "".join(f"with {mode}(): " for mode in node.grad_modes)
            lines.append(f"{modes}v{i} = {node.name}({args}{params}){'.retain_grad()' if node.retain_grad else ''}")
        loss = self.loss
        if loss is not None:
            if loss.direct:
                upstream = None if loss.upstreams[0] is None else loss.upstreams[0].tolist()
                lines.append(f"v{loss.targets[0]}.backward({upstream!r})")
            else:
                pairs = zip(loss.targets, loss.upstreams, strict=True)
                lines.append(f"({' + '.join(f'(v{t} * {u.tolist()!r}).sum()' for t, u in pairs)}).backward()")
            if loss.twice:
                lines.append("(backward twice, the first with retain_graph=True)")
            if loss.grad_first:
                wrt = ", ".join(f"v{i}" for i in loss.grad_first)
                lines.append(f"(before backward: tg.grad(that loss, [{wrt}], retain_graph=True, allow_unused=True))")
        return "Program:\n    " + "\n    ".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis prints a failing example
        printer.text(repr(self))


# ---- the builder: writes a program while running it in PyTorch ----------------------------------------------------

ShapeTest = Callable[[tuple[int, ...]], bool]


@dataclass
class Node:
    """What the builder knows of a node: PyTorch's value for it."""

    value: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.value.detach().numpy().dtype


class Builder:
    """What an op's `operands` function draws through: existing nodes, fresh leaves, numbers, axes, shapes."""

    def __init__(self, draw: Callable[..., Any], dtypes: Sequence[Any], data_kinds: Sequence[str]) -> None:
        self.draw = draw
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.data_kinds = data_kinds
        self.program: list[Leaf | Step] = []
        self.nodes: list[Node] = []

    def node(self, index: int) -> Node:
        return self.nodes[index]

    def is_computed(self, index: int | Const) -> bool:
        return isinstance(index, int) and isinstance(self.program[index], Step)

    def fresh(self, shape: tuple[int, ...] | None = None, where: ShapeTest = lambda shape: True) -> int:
        """A new leaf of `shape` (or of a drawn one that passes `where`), of a drawn dtype and kind of data."""
        draw = self.draw
        shape = shape if shape is not None else draw(SHAPES.filter(where))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        data = leaf_data(rng, draw(st.sampled_from(self.data_kinds)), shape).astype(draw(st.sampled_from(self.dtypes)))
        requires_grad = draw(st.integers(0, 5)) > 0
        self.program.append(Leaf(data, requires_grad))
        self.nodes.append(Node(torch.from_numpy(data.copy()).requires_grad_(requires_grad)))
        return len(self.program) - 1

    def existing(self, where: ShapeTest = lambda shape: True, kind: str = "f") -> int | None:
        """An earlier node whose shape passes `where` and whose dtype is of `kind` ("f", "i", "b"), or None."""
        candidates = [i for i, n in enumerate(self.nodes) if n.dtype.kind == kind and where(n.shape)]
        if not candidates:
            return None
        # The newest half of the time: programs grow into chains and diamonds, not many short branches.
        return candidates[-1] if self.draw(st.booleans()) else self.draw(st.sampled_from(candidates))

    def operand(self, where: ShapeTest = lambda shape: True, shape: tuple[int, ...] | None = None,
                fresh_shapes: st.SearchStrategy | None = None) -> int:
        """A float node whose shape passes `where` (or is `shape`): mostly an existing one, else a fresh leaf (of a
        shape from `fresh_shapes` where a filter on all shapes would rarely pass)."""
        test = where if shape is None else (lambda s: s == shape)
        found = self.existing(test)
        if found is not None and self.draw(st.integers(0, 4)) > 0:
            return found
        return self.fresh(self.draw(fresh_shapes) if fresh_shapes is not None else shape, where=test)

    def axis(self, ndim: int, tuples: bool = True, none: bool = True) -> Any:
        """None, one axis of either sign (0 or -1 for a 0-d tensor), or a tuple of distinct axes of mixed signs."""
        bound = max(ndim, 1)
        choices = [st.integers(-bound, bound - 1)] + ([st.none()] if none else [])
        if tuples and ndim >= 1:
            choices.append(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).flatmap(
                lambda axes: st.tuples(*[st.sampled_from([a, a - ndim]) for a in axes])))
        return self.draw(st.one_of(*choices))

    def broadcastable_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts with `shape`: leading axes dropped (or some added), some sides set to 1."""
        draw = self.draw
        dropped = draw(st.integers(0, len(shape)))
        kept = shape[dropped:]
        ones = [draw(st.integers(0, 3)) == 0 for _ in kept]
        lead = () if dropped else tuple(draw(st.lists(st.integers(1, 3), max_size=max(0, 2 - len(shape)))))
        return lead + tuple(1 if one else n for n, one in zip(kept, ones, strict=True))

    def number(self) -> Const:
        """A constant operand: a Python float, or a NumPy float64, float32 or int64."""
        value = float(self.draw(st.sampled_from([*QUANTISED, 0.25, 3.0, -0.75])))
        form = self.draw(st.sampled_from([float, float, np.float64, np.float32, lambda v: np.int64(round(v))]))
        return Const(form(value))

    def constant_array(self, shape: tuple[int, ...]) -> Const:
        rng = np.random.default_rng(self.draw(st.integers(0, 2**32 - 1)))
        return Const(leaf_data(rng, "quantised", shape).astype(self.draw(st.sampled_from(self.dtypes))))

    def other_operand(self, first: int) -> int | Const:
        """The second operand of a broadcasting op: the same tensor, another node or a fresh leaf that broadcasts
        with the first, a number, or a constant array."""
        shape = self.node(first).shape
        form = self.draw(st.sampled_from(["same", "existing", "fresh", "fresh", "number", "array"]))
        if form == "same":
            return first
        if form == "existing":
            found = self.existing(lambda s: broadcasts(s, shape))
            if found is not None:
                return found
        if form == "number":
            return self.number()
        if form == "array":
            return self.constant_array(self.broadcastable_shape(shape))
        return self.fresh(self.broadcastable_shape(shape))


def broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


GRAD_MODES = st.sampled_from(
    [(), (), (), (), (), (), ("no_grad",), ("no_grad", "no_grad"), ("no_grad", "enable_grad"), ("enable_grad",),
     ("no_grad", "enable_grad", "no_grad"), ("no_grad", "no_grad", "enable_grad")]
)


@st.composite
def programs(
    draw: Callable[..., Any],
    ops: Mapping[str, Op],
    dtypes: Sequence[Any] = (np.float64,),
    max_steps: int = 8,
    data_kinds: Sequence[str] = DATA_KINDS,
    order: Sequence[str] | None = None,
    grad_modes: st.SearchStrategy = GRAD_MODES,
) -> Program:
    """Up to max_steps steps drawn from `ops` (or the ops named in `order`, one step each, in that order) on leaves
    of the given dtypes and kinds of data, each step in blocks drawn from `grad_modes`, and a loss."""
    builder = Builder(draw, dtypes, data_kinds)
    for _ in range(draw(st.integers(1, 3))):
        builder.fresh()
    names = sorted(ops)
    for k in range(len(order) if order is not None else draw(st.integers(1, max_steps))):
        name = order[k] if order is not None else draw(st.sampled_from(names))
        chosen = ops[name].operands(builder)
        if chosen is None:
            continue  # nothing in the program so far that this op takes
        args, params = chosen
        step = Step(name, ops[name], tuple(args), tuple(params.items()), draw(grad_modes))
        try:
            value = run_step(step, [node.value for node in builder.nodes], TORCH)
        except (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError):
            continue  # PyTorch rejects it (a max over an empty axis, say): not a program to compare
        if value.requires_grad and draw(st.integers(0, 4)) == 0:
            step = Step(step.name, step.op, step.args, step.params, step.grad_modes, retain_grad=True)
        builder.program.append(step)
        builder.nodes.append(Node(value))
    return Program(tuple(builder.program), _draw_loss(draw, builder))


def _draw_loss(draw: Callable[..., Any], builder: Builder) -> Loss | None:
    differentiable = [i for i, node in enumerate(builder.nodes) if node.value.requires_grad]
    if not differentiable:
        return None
    last = differentiable[-1]
    targets = tuple(dict.fromkeys([last, *draw(st.lists(st.sampled_from(differentiable), max_size=2))]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    upstreams = tuple(rng.choice(UPSTREAM, builder.node(t).shape).astype(builder.node(t).dtype) for t in targets)
    twice = draw(st.integers(0, 3)) == 0
    # grad() with respect to leaves and intermediates, one of them maybe the loss's own target
    grad_first = tuple(dict.fromkeys(draw(st.lists(st.sampled_from(differentiable), max_size=2))))
    if len(targets) == 1 and draw(st.booleans()):
        implicit = builder.node(last).value.numel() == 1 and draw(st.booleans())  # backward() with no argument
        return Loss(targets, (None,) if implicit else upstreams, direct=True, twice=twice, grad_first=grad_first)
    return Loss(targets, upstreams, direct=False, twice=twice, grad_first=grad_first)


# ---- the interpreter --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framework:
    name: str
    leaf: Callable[[np.ndarray, bool], Any]
    constant: Callable[[Any], Any]
    array: Callable[[Any], np.ndarray]
    mode: Callable[[str], Any]  # a fresh no_grad() or enable_grad()
    recording: Callable[[], bool]


TINYGRAD = Framework(
    "tinygrad_np", lambda data, rg: Tensor(data.copy(), requires_grad=rg), lambda value: value, lambda t: t.data,
    lambda mode: tg.no_grad() if mode == "no_grad" else tg.enable_grad(),
    tg.is_grad_enabled,
)
TORCH = Framework(
    "PyTorch",
    lambda data, rg: torch.from_numpy(data.copy()).requires_grad_(rg),
    lambda value: torch.from_numpy(value.copy()) if isinstance(value, np.ndarray) else value,
    lambda t: t.detach().numpy(),
    lambda mode: torch.no_grad() if mode == "no_grad" else torch.enable_grad(),
    lambda: torch.is_grad_enabled(),
)


def run_step(step: Step, values: Sequence[Any], framework: Framework, shared_modes: Mapping[str, Any] | None = None
             ) -> Any:
    """One step. Mode blocks enter the objects in `shared_modes` where given (one no_grad object entered again and
    again: tinygrad_np promises that works), else fresh ones."""
    shared_modes = shared_modes or {}
    args = [values[a] if isinstance(a, int) else framework.constant(a.value) for a in step.args]
    with contextlib.ExitStack() as blocks:
        for mode in step.grad_modes:
            blocks.enter_context(shared_modes[mode] if mode in shared_modes else framework.mode(mode))
        out = (step.op.ours if framework is TINYGRAD else step.op.theirs)(*args, **dict(step.params))
    if framework is TORCH and out.requires_grad and out.grad_fn is None and all(out is not a for a in args):
        # PyTorch marks a view taken under no_grad as requiring grad (with no grad_fn); tinygrad_np's no_grad
        # makes nothing that requires grad (README, Conventions)
        out = out.detach()
    return out


@dataclass
class Record:
    """What one framework computed: per node its value and requires_grad; per backward pass the gradients."""

    values: list[np.ndarray] = field(default_factory=list)
    requires_grad: list[bool] = field(default_factory=list)
    grads: list[dict[int, np.ndarray | None]] = field(default_factory=list)  # one per backward pass
    recording_after: bool = True  # whether gradient recording is on again when the program is done
    recording_in_hooks: set[bool] = field(default_factory=set)  # is_grad_enabled() as backward ran each tensor hook
    first_grads: list[np.ndarray | None] = field(default_factory=list)  # what the grad() before backward gave
    shared_memory: list[str] = field(default_factory=list)  # gradients that share memory with another array
    error: str | None = None


def forward(program: Program, framework: Framework) -> list[Any]:
    """The program's values in `framework`, with no backward pass."""
    values: list[Any] = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for node in program.nodes:
            if isinstance(node, Leaf):
                values.append(framework.leaf(node.data, node.requires_grad))
            else:
                values.append(run_step(node, values, framework))
    return values


def run(program: Program, framework: Framework) -> Record:
    record = Record()
    shared_modes = {"no_grad": tg.no_grad(), "enable_grad": tg.enable_grad()} if framework is TINYGRAD else {}
    values: list[Any] = []
    watched: list[int] = []  # leaves that require grad, and retained intermediates
    try:
        # NumPy's floating-point warnings and PyTorch's about empty gradients are not what this compares
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, node in enumerate(program.nodes):
                if isinstance(node, Leaf):
                    value = framework.leaf(node.data, node.requires_grad)
                else:
                    value = run_step(node, values, framework, shared_modes)
                    if node.retain_grad:
                        value.retain_grad()
                if node.retain_grad if isinstance(node, Step) else node.requires_grad:
                    watched.append(i)
                values.append(value)
                record.values.append(np.array(framework.array(value), copy=True))  # as it is now: in place may follow
                record.requires_grad.append(bool(value.requires_grad))
            for value in values:
                if value.requires_grad:  # a hook on every tensor that may get a gradient: the mode it runs in
                    value.register_hook(lambda grad: record.recording_in_hooks.add(framework.recording()))
            if program.loss is not None and program.loss.grad_first:
                record.first_grads = _grad_first(program.loss, values, framework)
            for retain_graph in [True, False] if program.loss and program.loss.twice else [False]:
                if program.loss is not None:
                    _backward(program.loss, values, framework, retain_graph)
                    if framework is TINYGRAD:
                        record.shared_memory += _sharing_memory(values, watched)
                    record.grads.append({i: None if values[i].grad is None else np.array(
                        framework.array(values[i].grad), copy=True) for i in watched})
    except Exception as error:  # reported with the program: it must run in both
        record.error = f"{type(error).__name__}: {error}"
    record.recording_after = framework.recording()
    if not record.recording_after:
        framework.mode("enable_grad").__enter__()  # reported; switched back on so the next program starts clean
    return record


def _sharing_memory(values: Sequence[Tensor], watched: Sequence[int]) -> list[str]:
    """Each .grad must be an array of its own: `x.grad += ...` (or an optimizer's step) touches x's and nothing else.
    (A step may return its input itself, F.dropout with p = 0: one tensor under two names.)"""
    grads = [(f"v{i}.grad", values[i].grad, values[i]) for i in watched if values[i].grad is not None]
    others = grads + [(f"v{i}.data", value.data, value) for i, value in enumerate(values)]
    found = []
    for k, (name, grad, owner) in enumerate(grads):
        for other_name, other, other_owner in others[k + 1 :]:
            if other_owner is not owner and np.may_share_memory(grad, other):
                found.append(f"{name} and {other_name}")
    return found


def _grad_first(loss: Loss, values: Sequence[Any], framework: Framework) -> list[np.ndarray | None]:
    """grad() of the loss with respect to `loss.grad_first`, the graph kept for the backward passes that follow."""
    outputs, upstreams = loss_outputs(loss, values, framework)
    wrt = [values[i] for i in loss.grad_first]
    if framework is TINYGRAD:
        found = tg.grad(outputs, wrt, upstreams, retain_graph=True, allow_unused=True)
    else:
        found = torch.autograd.grad(outputs, wrt, upstreams, retain_graph=True, allow_unused=True)
        for value in values:  # PyTorch fills retain_grad()'s .grad on grad()'s path; tinygrad_np's grad() touches
            if value.retains_grad:  # no .grad (README, Conventions)
                value.grad = None
    return [None if g is None else np.array(framework.array(g), copy=True) for g in found]


def _backward(loss: Loss, values: Sequence[Any], framework: Framework, retain_graph: bool) -> None:
    if loss.direct:
        upstream = loss.upstreams[0]
        values[loss.targets[0]].backward(None if upstream is None else framework.constant(upstream),
                                         retain_graph=retain_graph)
        return
    terms = [(values[t] * framework.constant(u)).sum() for t, u in zip(loss.targets, loss.upstreams, strict=True)]
    sum(terms[1:], terms[0]).backward(retain_graph=retain_graph)  # 0-d terms: both frameworks promote them alike


# ---- comparing ---------------------------------------------------------------------------------------------------


def assert_same(program: Program, ours: Record, theirs: Record) -> None:
    """Same values, dtypes, requires_grad flags and gradients, to 1e-10 (float64) or 2e-4 (any float32 in it)."""
    assert ours.error is None and theirs.error is None, f"tinygrad_np: {ours.error}; PyTorch: {theirs.error}"
    assert ours.recording_after == theirs.recording_after, "gradient recording is still off after the program"
    assert ours.recording_in_hooks == theirs.recording_in_hooks, (
        f"hooks ran with is_grad_enabled() {sorted(ours.recording_in_hooks)}, PyTorch's "
        f"{sorted(theirs.recording_in_hooks)}")
    assert not ours.shared_memory, f"gradients share memory: {', '.join(ours.shared_memory)}"
    float32 = any(value.dtype == np.float32 for value in theirs.values)
    tolerance = 2e-4 if float32 else 1e-10
    for i, node in enumerate(program.nodes):
        label = f"v{i} ({node.name if isinstance(node, Step) else 'leaf'})"
        assert ours.requires_grad[i] == theirs.requires_grad[i], f"{label}: requires_grad is {ours.requires_grad[i]}"
        assert_close(ours.values[i], theirs.values[i], f"{label}, forward", tolerance)
    assert len(ours.grads) == len(theirs.grads)
    assert len(ours.first_grads) == len(theirs.first_grads)
    for i, mine, reference in zip(program.loss.grad_first if program.loss else (), ours.first_grads,
                                  theirs.first_grads, strict=True):
        assert_close(mine, reference, f"grad() with respect to v{i}", tolerance)
    for k, (mine, reference) in enumerate(zip(ours.grads, theirs.grads, strict=True)):
        for i in reference:
            assert_close(mine[i], reference[i], f"v{i}.grad after backward {k + 1}", tolerance)


def assert_same_in_place(program: Program, ours: Record, theirs: Record) -> str:
    """assert_same, where a backward that a version check refuses (an in-place op changed a value it needed) may
    refuse in one framework and not the other: PyTorch and tinygrad_np save different arrays for some ops, and
    tinygrad_np refuses writes through views that PyTorch rebases (README, Conventions). Then every forward value must
    still agree. Returns which case it was, for the statistics."""
    refused = (ours.error or "").startswith("InPlaceError"), "modified by an inplace operation" in (theirs.error or "")
    if not any(refused):
        assert_same(program, ours, theirs)
        return "gradients compared"
    assert ours.error is None or refused[0], f"tinygrad_np: {ours.error}"
    assert theirs.error is None or refused[1], f"PyTorch: {theirs.error}"
    assert len(ours.values) == len(theirs.values) == len(program.nodes), "a step failed in one framework only"
    float32 = any(value.dtype == np.float32 for value in theirs.values)
    for i, (mine, reference) in enumerate(zip(ours.values, theirs.values, strict=True)):
        assert_close(mine, reference, f"v{i}, forward", 2e-4 if float32 else 1e-10)
    return {(True, True): "both refused backward", (True, False): "tinygrad_np refused backward",
            (False, True): "PyTorch refused backward"}[refused]


def assert_close(ours: np.ndarray | None, theirs: np.ndarray | None, what: str, tolerance: float) -> None:
    """Equal shapes, dtypes, NaNs and infinities; finite values within `tolerance`, relative to each value and to
    the largest magnitude in the array (a sum's rounding error scales with its terms)."""
    if ours is None or theirs is None:
        assert ours is None and theirs is None, f"{what}: tinygrad_np has {ours!r}, PyTorch {theirs!r}"
        return
    assert type(ours) is np.ndarray, f"{what}: tinygrad_np gave a {type(ours).__name__}, not an ndarray"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, PyTorch's {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype}, PyTorch's {theirs.dtype}"
    if ours.dtype.kind != "f":
        np.testing.assert_array_equal(ours, theirs, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{what}: NaN in different places")
    finite = np.isfinite(theirs)
    np.testing.assert_array_equal(ours[~finite], theirs[~finite], err_msg=f"{what}: infinities differ")
    scale = max(1.0, float(np.abs(theirs[finite]).max(initial=0.0)))
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=tolerance, atol=tolerance * scale, err_msg=what)


# ---- higher order: gradients of gradients -------------------------------------------------------------------------


@dataclass
class HigherRecord:
    """Per order k = 1, 2, ...: the k-th gradients of the program's loss with respect to each leaf that requires
    grad (None where the loss doesn't depend on it), each order taken as the gradient of sum_i (grad_i * v_i).sum()."""

    grads: list[dict[int, np.ndarray | None]] = field(default_factory=list)
    float32: bool = False  # whether a value of the program is float32 (then it is compared to 2e-4)
    error: str | None = None


def run_higher(program: Program, framework: Framework, order: int, seed: int) -> HigherRecord:
    """The program's forward pass, then `order` gradients, each one recorded (create_graph=True) and contracted
    with random vectors v (from `seed`) into the scalar that the next one differentiates."""
    record = HigherRecord()
    differentiate = tg.grad if framework is TINYGRAD else functools.partial(torch.autograd.grad, allow_unused=True)
    extra = {"allow_unused": True} if framework is TINYGRAD else {}
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values: list[Any] = []
            for node in program.nodes:
                values.append(framework.leaf(node.data, node.requires_grad) if isinstance(node, Leaf) else
                              run_step(node, values, framework))
            record.float32 = any(framework.array(value).dtype == np.float32 for value in values)
            leaves = [i for i, node in enumerate(program.nodes) if isinstance(node, Leaf) and node.requires_grad]
            outputs, upstreams = loss_outputs(program.loss, values, framework)
            rng = np.random.default_rng(seed)
            for _ in range(order):
                if outputs is None or not all(output.requires_grad for output in outputs):  # a constant
                    grads = [None] * len(leaves)
                else:
                    grads = differentiate(outputs, [values[i] for i in leaves], upstreams, create_graph=True, **extra)
                # numpy(force=True): PyTorch gives some zero gradients as a ZeroTensor, which .numpy() refuses
                array = framework.array if framework is TINYGRAD else lambda g: g.detach().numpy(force=True)
                record.grads.append({i: None if g is None else np.array(array(g), copy=True)
                                     for i, g in zip(leaves, grads, strict=True)})
                vs = [rng.choice(UPSTREAM, program.nodes[i].data.shape) for i in leaves]  # the same in both
                terms = [(g * framework.constant(v.astype(program.nodes[i].data.dtype))).sum()
                         for i, g, v in zip(leaves, grads, vs, strict=True) if g is not None and g.requires_grad]
                outputs, upstreams = ([sum(terms[1:], terms[0])] if terms else None), None
    except Exception as error:  # reported with the program: it must run in both
        record.error = f"{type(error).__name__}: {error}"
    return record


def loss_outputs(loss: Loss, values: Sequence[Any], framework: Framework) -> tuple[list[Any], Any]:
    """What backward differentiates: the outputs and their upstream gradients (None: the output is a scalar)."""
    if loss.direct:
        upstream = loss.upstreams[0]
        return [values[loss.targets[0]]], None if upstream is None else [framework.constant(upstream)]
    terms = [(values[t] * framework.constant(u)).sum() for t, u in zip(loss.targets, loss.upstreams, strict=True)]
    return [sum(terms[1:], terms[0])], None


def assert_same_higher(program: Program, ours: HigherRecord, theirs: HigherRecord) -> None:
    """The same gradients at every order, to 1e-10 (float64; 2e-4 with a float32 value in the program): a gradient
    one framework leaves out (None) is zero.

    Compared where PyTorch's is finite. Where it is NaN or infinite, tinygrad_np's zero-upstream convention
    (README, Conventions) decides: it holds in every op of a recorded backward pass, while the reference applies it
    only to the op that was differentiated, not to the ops of that op's own gradient. (The first-order fuzzer checks
    NaN and infinity placement.)
    """
    assert ours.error is None and theirs.error is None, f"tinygrad_np: {ours.error}; PyTorch: {theirs.error}"
    assert len(ours.grads) == len(theirs.grads)
    tolerance = 2e-4 if theirs.float32 else 1e-10
    for k, (mine, reference) in enumerate(zip(ours.grads, theirs.grads, strict=True)):
        for i in reference:
            shape, dtype = program.nodes[i].data.shape, program.nodes[i].data.dtype
            a = np.zeros(shape, dtype) if mine[i] is None else mine[i]
            b = np.zeros(shape, dtype) if reference[i] is None else reference[i]
            what = f"v{i}: gradient of order {k + 1}"
            assert type(a) is np.ndarray and a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a!r} vs {b!r}"
            finite = np.isfinite(b)
            assert_close(a[finite], b[finite], what, tolerance)
