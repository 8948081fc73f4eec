"""Numerical gradients, and `gradcheck`: autograd against them, with the worst element of each input named.

The numerical gradient of <u, f(x)> (u an upstream gradient, random by default so that every output
element is weighted differently) by central differences:
    d/dx_j = (<u, f(x + h e_j)> - <u, f(x - h e_j)>) / 2h        error O(h^2), plus rounding O(eps / h)
or, for functions that are analytic in their inputs, by the complex step:
    d/dx_j = Im <u, f(x + i h e_j)> / h                          error O(h^2), no cancellation at all
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tinygrad_np.tensor import Tensor, no_grad

Method = Literal["central", "complex"]


def _value(output: Any) -> np.ndarray:
    return np.asarray(output.data if isinstance(output, Tensor) else output)


def numerical_grad(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    upstream: Any = None,
    eps: float | None = None,
    method: Method = "central",
) -> list[np.ndarray]:
    """Gradients of <upstream, fn(*inputs)> with respect to each input, by finite differences in float64.

    `fn` takes Tensors and returns a Tensor (or takes and returns ndarrays); it is called without recording
    a graph. `upstream` defaults to ones, i.e. the gradient of fn's sum. `method="complex"` needs fn to be
    analytic and to work on complex data (exp, log, tanh, products, matmul: yes; relu, max, abs: no).
    """
    if method not in ("central", "complex"):
        raise ValueError(f"method must be 'central' or 'complex', got {method!r}")
    dtype = np.complex128 if method == "complex" else np.float64
    base = [np.array(_value(x), dtype=dtype) for x in inputs]
    # The central step balances truncation O(h^2) against rounding O(macheps / h): h ~ macheps^(1/3).
    step = eps if eps is not None else (1e-20 if method == "complex" else 6e-6)

    def evaluate(arrays: list[np.ndarray]) -> np.ndarray:
        with no_grad():
            out = _value(fn(*[Tensor(a) for a in arrays]))
        weights = np.ones(out.shape) if upstream is None else np.asarray(_value(upstream), dtype=np.float64)
        if weights.shape != out.shape:
            raise ValueError(f"upstream has shape {weights.shape} but fn's output has shape {out.shape}")
        return np.sum(weights * out)

    grads = []
    for x in base:
        grad = np.zeros(x.shape, dtype=np.float64)
        flat, flat_grad = x.reshape(-1), grad.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            if method == "complex":
                flat[j] = original + 1j * step
                flat_grad[j] = evaluate(base).imag / step
            else:
                h = step if eps is not None else step * max(1.0, abs(original))
                flat[j] = original + h
                plus = evaluate(base)
                flat[j] = original - h
                minus = evaluate(base)
                flat_grad[j] = (plus - minus).real / (2 * h)
            flat[j] = original
        grads.append(grad)
    return grads


@dataclass
class InputCheck:
    """How one input's autograd gradient compares with the numerical one, and where it is worst."""

    index: int
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    worst_element: tuple[int, ...]
    analytic: float
    numerical: float
    passed: bool


@dataclass
class GradcheckResult:
    inputs: list[InputCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.inputs)

    def __str__(self) -> str:
        lines = [
            f"{'input':>5}  {'shape':<14} {'max abs err':>12} {'max rel err':>12}  {'worst at':<12} "
            f"{'autograd':>14} {'numerical':>14}  result"
        ]
        for c in self.inputs:
            lines.append(
                f"{c.index:>5}  {c.shape!s:<14} {c.max_abs_error:>12.3e} {c.max_rel_error:>12.3e}  "
                f"{c.worst_element!s:<12} {c.analytic:>14.8g} {c.numerical:>14.8g}  {'ok' if c.passed else 'FAIL'}"
            )
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """Autograd and numerical gradients disagree beyond the tolerance."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    upstream: Any = None,
    *,
    eps: float | None = None,
    atol: float = 1e-8,
    rtol: float = 1e-6,
    method: Method = "central",
    seed: int = 0,
    raise_exception: bool = True,
) -> GradcheckResult:
    """Compare fn's autograd gradients with numerical ones, element by element: |a - n| <= atol + rtol |n|.

    Inputs must be float64 (float32 rounding alone exceeds any useful tolerance). `upstream` defaults to a
    random normal array (from `seed`), so a wrong gradient can't hide behind a uniform weighting.
    """
    leaves = []
    for i, x in enumerate(inputs):
        data = _value(x)
        if data.dtype != np.float64:
            raise TypeError(
                f"gradcheck needs float64 inputs, input {i} is {data.dtype}; pass x.astype(np.float64)"
            )
        leaves.append(Tensor(data.copy(), requires_grad=True))
    output = fn(*leaves)
    if not isinstance(output, Tensor):
        raise TypeError(f"fn must return a Tensor, got {type(output).__name__}")
    if upstream is None:
        upstream = np.random.default_rng(seed).standard_normal(output.shape)
    upstream = np.asarray(_value(upstream), dtype=np.float64)
    output.backward(upstream)
    numerical = numerical_grad(fn, [leaf.data for leaf in leaves], upstream, eps=eps, method=method)

    result = GradcheckResult()
    for i, (leaf, num) in enumerate(zip(leaves, numerical, strict=True)):
        analytic = leaf.grad if leaf.grad is not None else np.zeros_like(num)
        error = np.abs(analytic - num)
        excess = error - (atol + rtol * np.abs(num))
        worst = np.unravel_index(np.argmax(excess), num.shape) if num.size else ()
        rel = error / np.maximum(np.abs(num), 1e-300)
        result.inputs.append(
            InputCheck(
                index=i,
                shape=num.shape,
                max_abs_error=float(error.max(initial=0.0)),
                max_rel_error=float(np.where(error == 0, 0, rel).max(initial=0.0)),
                worst_element=tuple(int(k) for k in worst),
                analytic=float(analytic[worst]) if num.size else 0.0,
                numerical=float(num[worst]) if num.size else 0.0,
                passed=bool((excess <= 0).all()) and bool(np.isfinite(analytic).all()),
            )
        )
    if raise_exception and not result.passed:
        raise GradcheckError(f"autograd and numerical gradients disagree:\n{result}")
    return result
