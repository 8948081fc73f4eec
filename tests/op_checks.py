"""The checks every differentiable op must pass, shared by the op tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinygrad_np import Tensor
from tinygrad_np.gradcheck import gradcheck


def floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def away_from_zero(low: float = 0.1, high: float = 3.0) -> st.SearchStrategy[float]:
    """Values with |x| in [low, high]: clear of kinks at 0 (ReLU, abs) and poles (1/x)."""
    return st.tuples(floats(low, high), st.sampled_from([-1.0, 1.0])).map(lambda t: t[0] * t[1])


def arrays(shape: tuple[int, ...], elements: st.SearchStrategy[float] | None = None) -> st.SearchStrategy:
    return hnp.arrays(np.float64, shape, elements=elements if elements is not None else floats(-3, 3))


def distinct_arrays(shape: tuple[int, ...]) -> st.SearchStrategy:
    """Arrays with no two equal elements, 0.1 apart, so max/min have no ties to split."""
    return hnp.arrays(np.int64, shape, elements=st.integers(-200, 200), unique=True).map(lambda a: a / 10.0)


seeds = st.integers(0, 2**32 - 1)


def check_op(
    op: Callable[..., Tensor],
    reference: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    seed: int = 0,
    rtol: float = 1e-6,
) -> None:
    """Forward equals NumPy; autograd equals the numerical gradient for a random upstream gradient;
    gradient shapes and dtypes equal the inputs'; the inputs are not mutated."""
    originals = [np.array(x, copy=True) for x in inputs]
    tensors = [Tensor(x) for x in inputs]
    out = op(*tensors)
    expected = reference(*originals)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert out.shape == np.shape(expected)

    result = gradcheck(op, inputs, seed=seed, rtol=rtol, atol=1e-8, raise_exception=False)
    assert result.passed, f"\n{result}"
    for x, original in zip(inputs, originals, strict=True):
        np.testing.assert_array_equal(x, original, err_msg="an op mutated its input")

    # Shapes and dtypes of the gradients, through a fresh graph on leaves of each dtype.
    for dtype in (np.float64, np.float32):
        leaves = [Tensor(x.astype(dtype), requires_grad=True) for x in inputs]
        y = op(*leaves)
        y.backward(np.ones(y.shape))
        for leaf in leaves:
            assert leaf.grad is not None
            assert leaf.grad.shape == leaf.shape and leaf.grad.dtype == leaf.dtype
