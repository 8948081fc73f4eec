"""`grad`: gradients returned as values (torch.autograd.grad), the engine's `_backward` told which inputs to return."""

from __future__ import annotations

from collections.abc import Sequence

from tinygrad_np import tensor
from tinygrad_np.tensor import ArrayLike, Tensor

TensorOrTensors = Tensor | Sequence[Tensor]


def grad(
    outputs: TensorOrTensors,
    inputs: TensorOrTensors,
    grad_outputs: ArrayLike | Sequence[ArrayLike | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """sum_k d(outputs[k] . grad_outputs[k]) / d(inputs[i]), one Tensor per input, as `torch.autograd.grad`.

    A single-element output needs no grad_outputs (ones); any other needs one of its shape. The graph is freed
    unless `retain_graph` (default: `create_graph`). With `create_graph=True` the gradients carry a graph of their
    own. An input that no output depends on raises, unless `allow_unused=True`, which gives None for it.
    """
    outputs = _as_list(outputs, "outputs")
    inputs = _as_list(inputs, "inputs")
    if grad_outputs is None or isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (tuple, list)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad(): {len(grad_outputs)} grad_outputs for {len(outputs)} outputs; give one each")
    for i, output in enumerate(outputs):
        if not output.requires_grad:
            raise RuntimeError(
                f"grad(): output {i} does not require grad: no input of its computation had requires_grad=True "
                "(or it ran under no_grad())"
            )
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"grad(): input {i} (shape {x.shape}) does not require grad, so it has no gradient; "
                               "create it with requires_grad=True")
    seeds = [tensor._seed(out, g, f"grad() of output {i}", create_graph)
             for i, (out, g) in enumerate(zip(outputs, grad_outputs, strict=True))]
    found = tensor._backward(outputs, seeds, create_graph if retain_graph is None else retain_graph, create_graph,
                             inputs)
    assert found is not None
    results: list[Tensor | None] = []
    for i, x in enumerate(inputs):
        value = found[id(x)]
        if value is None and not allow_unused:
            raise RuntimeError(
                f"grad(): input {i} (shape {x.shape}) was not used to compute the outputs, so it has no gradient; "
                "pass allow_unused=True to get None for it"
            )
        results.append(value if value is None or isinstance(value, Tensor) else Tensor._make(value, False, None))
    return tuple(results)


def _as_list(tensors: TensorOrTensors, what: str) -> list[Tensor]:
    listed = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    for i, t in enumerate(listed):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad(): {what} must be Tensors, got a {type(t).__name__} at position {i}")
    if not listed:
        raise ValueError(f"grad(): no {what} given")
    return listed

