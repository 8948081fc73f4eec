"""Jacobians, Hessians and their products with vectors, with torch.autograd.functional's signatures and results.

`func` takes the inputs (one Tensor, or a tuple of them, passed as separate arguments) and returns a Tensor or a
tuple of Tensors. The inputs are differentiated as given, cut from any graph they belong to. Results follow the
inputs' and outputs' structure: a Tensor where each is a single Tensor, tuples where they are tuples. With
`create_graph=False` results are constants; with `create_graph=True` they can be differentiated again. `strict=True`
raises where an output does not depend on an input; otherwise that block is zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinygrad_np.autograd.gradients import grad
from tinygrad_np.ops import stack
from tinygrad_np.tensor import Tensor, enable_grad

Tensors = Tensor | tuple[Tensor, ...]


def vjp(func: Callable[..., Any], inputs: Tensors, v: Tensors | None = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Tensors, Tensors]:
    """(func(inputs), v^T J): the vector-Jacobian product, one reverse pass. v may be left out for a single-element
    output."""
    is_tuple, xs = _as_tuple(inputs, "inputs", "vjp")
    with enable_grad():
        prepared = _prepared(xs, create_graph)
        out_is_tuple, outputs = _as_tuple(func(*prepared), "outputs of the function", "vjp")
        vs = _vectors(v, outputs, "vjp", "outputs of the function")
        products = _grad(outputs, prepared, vs, create_graph, strict, "vjp")
    return _structure(_results(outputs, create_graph), out_is_tuple), _structure(products, is_tuple)


def hvp(func: Callable[..., Any], inputs: Tensors, v: Tensors | None = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Tensor, Tensors]:
    """(func(inputs), H v): the Hessian of a scalar function times v, by two reverse passes (the gradient of
    grad . v; H is symmetric for a twice differentiable function, so this is also v^T H). v may be left out for a
    single-element input."""
    is_tuple, xs = _as_tuple(inputs, "inputs", "hvp")
    with enable_grad():
        prepared = _prepared(xs, True)
        output = _scalar(func(*prepared), "hvp")
        vs = _vectors(v, prepared, "hvp", "inputs")
        gradients = _grad([output], prepared, None, True, strict, "hvp")
        dot = sum(((g * u).sum() for g, u in zip(gradients, vs, strict=True)), Tensor(np.zeros((), output.dtype)))
        if dot.requires_grad:
            products = _grad([dot], prepared, None, create_graph, strict, "hvp", second=True)
        else:  # the gradient is constant: the Hessian is zero
            products = _zeros_like(prepared, strict, "hvp")
    return _results([output], create_graph)[0], _structure(products, is_tuple)


def jacobian(func: Callable[..., Any], inputs: Tensors, create_graph: bool = False, strict: bool = False) -> Any:
    """d func(inputs) / d inputs, by one reverse pass per output element: block [i][j] has shape
    outputs[i].shape + inputs[j].shape (a Tensor, a tuple, or a tuple of tuples, as in PyTorch)."""
    is_tuple, xs = _as_tuple(inputs, "inputs", "jacobian")
    with enable_grad():
        prepared = _prepared(xs, create_graph)
        out_is_tuple, outputs = _as_tuple(func(*prepared), "outputs of the function", "jacobian")
        blocks = [_jacobian_of(output, prepared, create_graph, strict, i) for i, output in enumerate(outputs)]
    if out_is_tuple:
        return tuple(_structure(row, is_tuple) for row in blocks)
    return _structure(blocks[0], is_tuple)


def hessian(func: Callable[..., Any], inputs: Tensors, create_graph: bool = False, strict: bool = False) -> Any:
    """The Hessian of a scalar function: block [i][j] = d^2 f / d inputs[i] d inputs[j], of shape
    inputs[i].shape + inputs[j].shape (a Tensor for one input, a tuple of tuples for a tuple)."""
    is_tuple, xs = _as_tuple(inputs, "inputs", "hessian")

    def gradient(*args: Tensor) -> tuple[Tensor, ...]:
        output = _scalar(func(*args), "hessian")
        return _grad([output], list(args), None, True, strict, "hessian")

    blocks = jacobian(gradient, tuple(xs), create_graph=create_graph, strict=strict)
    return blocks if is_tuple else blocks[0][0]


# ---- helpers ----------------------------------------------------------------------------------------------------

def _as_tuple(value: Any, what: str, fn: str) -> tuple[bool, list[Tensor]]:
    if isinstance(value, Tensor):
        return False, [value]
    if isinstance(value, (tuple, list)) and value and all(isinstance(t, Tensor) for t in value):
        return True, list(value)
    raise TypeError(f"{fn}: the {what} must be a Tensor or a tuple of Tensors, got {type(value).__name__}")


def _prepared(xs: Sequence[Tensor], create_graph: bool) -> list[Tensor]:
    """Fresh leaves holding the inputs' data, so that differentiating them reaches no graph outside `func`; with
    create_graph, an input that requires grad stays connected to its graph (as in PyTorch), through a reshape."""
    prepared = []
    for x in xs:
        if x.dtype.kind != "f":
            raise TypeError(f"inputs must be floating-point tensors, got dtype {x.dtype}")
        prepared.append(x.reshape(x.shape) if create_graph and x.requires_grad else
                        Tensor._make(x.data, True, None))
    return prepared


def _vectors(v: Tensors | None, like: Sequence[Tensor], fn: str, what: str) -> list[Tensor]:
    if v is None:
        if len(like) != 1 or like[0].size != 1:
            raise RuntimeError(f"{fn}: v can be left out only when the {what} hold a single element; pass v")
        return [Tensor(np.ones(like[0].shape, like[0].dtype))]
    _, vs = _as_tuple(v, "v", fn)
    if len(vs) != len(like) or any(u.shape != t.shape for u, t in zip(vs, like, strict=False)):
        raise ValueError(f"{fn}: v has shapes {[u.shape for u in vs]} but the {what} have {[t.shape for t in like]}")
    return vs


def _scalar(output: Any, fn: str) -> Tensor:
    if not isinstance(output, Tensor) or output.size != 1:
        shape = output.shape if isinstance(output, Tensor) else type(output).__name__
        raise RuntimeError(f"{fn}: the function must return a single-element Tensor, got {shape}")
    return output


def _grad(outputs: Sequence[Tensor], xs: Sequence[Tensor], vs: Sequence[Tensor] | None, create_graph: bool,
          strict: bool, fn: str, second: bool = False) -> tuple[Tensor, ...]:
    """Gradients of `outputs` (weighted by `vs`) for each input: zeros where an input is unused (an error if strict)."""
    live = [i for i, output in enumerate(outputs) if output.requires_grad]
    found: tuple[Tensor | None, ...] = (None,) * len(xs)
    if live:
        found = grad([outputs[i] for i in live], list(xs), None if vs is None else [vs[i] for i in live],
                     retain_graph=True, create_graph=create_graph, allow_unused=True)
    results = []
    for j, (x, g) in enumerate(zip(xs, found, strict=True)):
        if g is None:
            if strict:
                what = "the gradient of the function" if second else "the output of the function"
                raise RuntimeError(f"{fn}: {what} is independent of input {j}, which strict=True does not allow")
            g = Tensor(np.zeros(x.shape, x.dtype))
        results.append(g if create_graph else g.detach())
    return tuple(results)


def _zeros_like(xs: Sequence[Tensor], strict: bool, fn: str) -> tuple[Tensor, ...]:
    if strict:
        raise RuntimeError(f"{fn}: the gradient of the function is independent of input 0, which strict=True does "
                           "not allow")
    return tuple(Tensor(np.zeros(x.shape, x.dtype)) for x in xs)


def _jacobian_of(output: Tensor, xs: Sequence[Tensor], create_graph: bool, strict: bool, index: int
                 ) -> list[Tensor]:
    """The blocks d output / d xs[j], each output.shape + xs[j].shape: one reverse pass per element of output."""
    rows: list[list[Tensor]] = [[] for _ in xs]
    for k in range(output.size):
        onehot = np.zeros(output.size, dtype=output.dtype)
        onehot[k] = 1
        grads = _grad([output], xs, [Tensor(onehot.reshape(output.shape))], create_graph, strict, "jacobian")
        for j, g in enumerate(grads):
            rows[j].append(g)
    blocks = []
    for x, row in zip(xs, rows, strict=True):
        if not row:  # an output with no elements
            blocks.append(Tensor(np.zeros(output.shape + x.shape, x.dtype)))
            continue
        block = stack(row).reshape(output.shape + x.shape)
        blocks.append(block if create_graph else block.detach())
    return blocks


def _results(outputs: Sequence[Tensor], create_graph: bool) -> list[Tensor]:
    return [t if create_graph else t.detach() for t in outputs]


def _structure(items: Sequence[Any], is_tuple: bool) -> Any:
    return tuple(items) if is_tuple else items[0]
