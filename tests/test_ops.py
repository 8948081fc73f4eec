"""Every differentiable op: forward equals NumPy, gradient equals a numerical one (float64, rtol 1e-6)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_checks import arrays, away_from_zero, check_op, distinct_arrays, floats, seeds

import tinygrad_np as tg
from tinygrad_np import Tensor, ops

two_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4)
three_shapes = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=4, max_side=4)


# ---- elementwise: binary ------------------------------------------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
}


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data(), shapes=two_shapes, seed=seeds)
def test_binary(name, data, shapes, seed):
    op, reference = BINARY[name]
    a = data.draw(arrays(shapes.input_shapes[0]))
    b = data.draw(arrays(shapes.input_shapes[1]))
    check_op(op, reference, [a, b], seed)


@given(data=st.data(), shapes=two_shapes, seed=seeds)
def test_div(data, shapes, seed):
    a = data.draw(arrays(shapes.input_shapes[0]))
    b = data.draw(arrays(shapes.input_shapes[1], away_from_zero(0.5, 3)))
    check_op(lambda x, y: x / y, np.divide, [a, b], seed)


@given(data=st.data(), shapes=two_shapes, seed=seeds)
def test_pow_tensor_exponent(data, shapes, seed):
    a = data.draw(arrays(shapes.input_shapes[0], floats(0.2, 3)))
    b = data.draw(arrays(shapes.input_shapes[1], floats(-2, 2)))
    check_op(lambda x, y: x**y, np.power, [a, b], seed)


@given(data=st.data(), shape=shapes, exponent=st.sampled_from([2, 3, -1, 0.5, -1.5, 1.7]), seed=seeds)
def test_pow_scalar_exponent(data, shape, exponent, seed):
    a = data.draw(arrays(shape, floats(0.2, 3)))
    check_op(lambda x: x**exponent, lambda x: x**exponent, [a], seed)


@given(data=st.data(), shapes=two_shapes, seed=seeds)
def test_maximum(data, shapes, seed):
    # a on the half-tenths, b on the tenths: never equal, so no tie sits under the numerical gradient
    a = data.draw(hnp.arrays(np.int64, shapes.input_shapes[0], elements=st.integers(-30, 30))) / 10 + 0.05
    b = data.draw(hnp.arrays(np.int64, shapes.input_shapes[1], elements=st.integers(-30, 30))) / 10
    check_op(tg.maximum, np.maximum, [a, b], seed)


@given(data=st.data(), shapes=three_shapes, seed=seeds)
def test_where(data, shapes, seed):
    cond = data.draw(hnp.arrays(np.bool_, shapes.input_shapes[0]))
    a = data.draw(arrays(shapes.input_shapes[1]))
    b = data.draw(arrays(shapes.input_shapes[2]))
    check_op(lambda x, y: tg.where(cond, x, y), lambda x, y: np.where(cond, x, y), [a, b], seed)


@given(data=st.data(), shape=shapes, scalar=away_from_zero(0.5, 3), seed=seeds)
def test_reflected_operators_with_python_scalars(data, shape, scalar, seed):
    a = data.draw(arrays(shape, away_from_zero(0.5, 2)))
    check_op(lambda x: scalar - x, lambda x: scalar - x, [a], seed)
    check_op(lambda x: scalar / x, lambda x: scalar / x, [a], seed)
    check_op(lambda x: scalar + x * scalar, lambda x: scalar + x * scalar, [a], seed)
    check_op(lambda x: abs(scalar) ** x, lambda x: abs(scalar) ** x, [a], seed)


# ---- elementwise: unary -------------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, np.negative, floats(-3, 3)),
    "exp": (Tensor.exp, np.exp, floats(-3, 3)),
    "log": (Tensor.log, np.log, floats(0.1, 5)),
    "sqrt": (Tensor.sqrt, np.sqrt, floats(0.1, 5)),
    "tanh": (Tensor.tanh, np.tanh, floats(-3, 3)),
    "sigmoid": (Tensor.sigmoid, lambda x: 1 / (1 + np.exp(-x)), floats(-6, 6)),
    "relu": (Tensor.relu, lambda x: np.maximum(x, 0), away_from_zero(0.01, 3)),
    "abs": (Tensor.abs, np.abs, away_from_zero(0.01, 3)),
    "clip": (
        lambda x: x.clip(-1, 1),
        lambda x: np.clip(x, -1, 1),
        st.sampled_from([-1, 1]).flatmap(
            lambda s: floats(0.01, 0.99).map(lambda v: s * v) | floats(1.01, 3).map(lambda v: s * v)
        ),
    ),
}


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data(), shape=shapes, seed=seeds)
def test_unary(name, data, shape, seed):
    op, reference, elements = UNARY[name]
    check_op(op, reference, [data.draw(arrays(shape, elements))], seed)


# ---- reductions ---------------------------------------------------------------------------------------


@st.composite
def shape_and_axis(draw, min_dims=0):
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=4, min_side=1, max_side=4))
    if not shape:
        return shape, None
    axis = draw(
        st.none()
        | st.integers(-len(shape), len(shape) - 1)
        | st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True).map(tuple)
    )
    return shape, axis


REDUCTIONS = {
    "sum": (Tensor.sum, np.sum),
    "mean": (Tensor.mean, np.mean),
    "max": (Tensor.max, np.max),
    "min": (Tensor.min, np.min),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@given(data=st.data(), shape_axis=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_reduction(name, data, shape_axis, keepdims, seed):
    method, reference = REDUCTIONS[name]
    shape, axis = shape_axis
    x = data.draw(distinct_arrays(shape))  # distinct: max/min have one winner
    check_op(
        lambda t: method(t, axis=axis, keepdims=keepdims),
        lambda a: reference(a, axis=axis, keepdims=keepdims),
        [x],
        seed,
    )


def _np_logsumexp(a, axis=None, keepdims=False):
    shift = a.max(axis=axis, keepdims=True)
    out = np.log(np.exp(a - shift).sum(axis=axis, keepdims=True)) + shift
    return out if keepdims else np.squeeze(out, axis=axis)


@given(data=st.data(), shape_axis=shape_and_axis(min_dims=1), keepdims=st.booleans(), seed=seeds)
def test_logsumexp(data, shape_axis, keepdims, seed):
    shape, axis = shape_axis
    x = data.draw(arrays(shape, floats(-5, 5)))
    check_op(
        lambda t: t.logsumexp(axis=axis, keepdims=keepdims),
        lambda a: _np_logsumexp(a, axis, keepdims),
        [x],
        seed,
    )


@given(data=st.data(), shape=nonscalar_shapes, seed=seeds)
def test_softmax_and_log_softmax(data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(arrays(shape, floats(-5, 5)))

    def np_softmax(a):
        e = np.exp(a - a.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    check_op(lambda t: t.softmax(axis), np_softmax, [x], seed)
    check_op(lambda t: t.log_softmax(axis), lambda a: np.log(np_softmax(a)), [x], seed)


def test_softmax_family_is_stable_for_huge_logits():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    np.testing.assert_allclose(x.softmax(1).data, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(x.log_softmax(1).data, [[0.0, -1000.0, -2000.0]])
    np.testing.assert_allclose(x.logsumexp(1).data, [1000.0])
    x.log_softmax(1).sum().backward()
    assert np.isfinite(x.grad).all()


# ---- shape --------------------------------------------------------------------------------------------


@given(data=st.data(), shape=shapes, seed=seeds)
def test_reshape_and_flatten(data, shape, seed):
    x = data.draw(arrays(shape))
    check_op(lambda t: t.reshape(-1), lambda a: a.reshape(-1), [x], seed)
    check_op(lambda t: t.reshape(*reversed(shape)), lambda a: a.reshape(tuple(reversed(shape))), [x], seed)
    start = data.draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))
    kept, merged = shape[: start % max(len(shape), 1)], shape[start % max(len(shape), 1) :]
    check_op(lambda t: t.flatten(start), lambda a: a.reshape(*kept, math.prod(merged)), [x], seed)


@given(data=st.data(), shape=shapes, seed=seeds)
def test_transpose(data, shape, seed):
    x = data.draw(arrays(shape))
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    check_op(lambda t: t.transpose(axes), lambda a: np.transpose(a, axes), [x], seed)  # NumPy's order, one tuple
    check_op(lambda t: t.permute(*axes), lambda a: np.transpose(a, axes), [x], seed)
    check_op(lambda t: t.T, lambda a: a.T, [x], seed)
    bound = max(len(shape), 1)
    first, second = (data.draw(st.integers(-bound, bound - 1)) for _ in range(2))
    swapped = (lambda a: np.swapaxes(a, first, second)) if shape else (lambda a: a)
    check_op(lambda t: t.transpose(first, second), swapped, [x], seed)  # two ints: PyTorch's swap


@given(data=st.data(), shape=nonscalar_shapes, seed=seeds)
def test_basic_indexing(data, shape, seed):
    x = data.draw(arrays(shape))
    index = data.draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    check_op(lambda t: t[index], lambda a: a[index], [x], seed)


@given(data=st.data(), shape=nonscalar_shapes, seed=seeds)
def test_integer_array_indexing_accumulates_repeats(data, shape, seed):
    x = data.draw(arrays(shape))
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(max_dims=2, max_side=5)))
    check_op(lambda t: t[index], lambda a: a[index], [x], seed)


@given(data=st.data(), shape=nonscalar_shapes, count=st.integers(1, 3), seed=seeds)
def test_concatenate_and_stack(data, shape, count, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    parts = [data.draw(arrays(shape)) for _ in range(count)]
    check_op(lambda *ts: tg.concatenate(ts, axis=axis), lambda *a: np.concatenate(a, axis=axis), parts, seed)
    stack_axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check_op(lambda *ts: tg.stack(ts, axis=stack_axis), lambda *a: np.stack(a, axis=stack_axis), parts, seed)


# ---- matmul -------------------------------------------------------------------------------------------


@given(
    data=st.data(),
    shapes=hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=3, max_side=4),
    seed=seeds,
)
def test_matmul(data, shapes, seed):
    a = data.draw(arrays(shapes.input_shapes[0]))
    b = data.draw(arrays(shapes.input_shapes[1]))
    check_op(lambda x, y: x @ y, np.matmul, [a, b], seed)


@given(
    data=st.data(),
    batch=st.integers(1, 5),
    sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    batch_dims=st.sampled_from(["one example", "batch", "batch of batches"]),
    seed=seeds,
)
def test_fused_linear(data, batch, sizes, batch_dims, seed):
    in_features, out_features = sizes
    leading = {"one example": (), "batch": (batch,), "batch of batches": (2, batch)}[batch_dims]
    x = data.draw(arrays((*leading, in_features)))
    w = data.draw(arrays((out_features, in_features)))
    b = data.draw(arrays((out_features,)))
    check_op(lambda x, w, b: ops.Linear.apply(x, w, b), lambda x, w, b: x @ w.T + b, [x, w, b], seed)
    check_op(lambda x, w: ops.Linear.apply(x, w), lambda x, w: x @ w.T, [x, w], seed)


# ---- losses -------------------------------------------------------------------------------------------


@given(data=st.data(), batch=st.integers(1, 6), classes=st.integers(2, 6), seed=seeds)
def test_cross_entropy_and_nll(data, batch, classes, seed):
    logits = data.draw(arrays((batch, classes), floats(-5, 5)))
    labels = data.draw(hnp.arrays(np.int64, (batch,), elements=st.integers(0, classes - 1)))

    def np_log_softmax(z):
        s = z - z.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))

    expected = lambda z: -np_log_softmax(z)[np.arange(batch), labels].mean()  # noqa: E731
    check_op(lambda z: ops.CrossEntropy.apply(z, labels=labels), expected, [logits], seed)
    check_op(lambda z: ops.NLLLoss.apply(z.log_softmax(1), labels=labels), expected, [logits], seed)
