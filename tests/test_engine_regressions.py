"""The engine bugs of issue 11, each as the exact case that showed it and as the class it belongs to.

(Item 4, SGD's momentum on a 0-d parameter, is the optimizer's and is tested in test_optim.py.) The differential
fuzzer (test_fuzz_engine.py) searches the same classes at random; these tests pin them down by name.
"""

import importlib.util
import itertools
import math
import threading

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, nn
from tinygrad_np.gradcheck import gradcheck
from tinygrad_np.nn import functional as F


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


def _scalar(value: float = 2.0) -> Tensor:
    return Tensor(np.array(value), requires_grad=True)  # float64: exact comparisons below


def _assert_0d_grad(x: Tensor, expected: float) -> None:
    assert type(x.grad) is np.ndarray and x.grad.shape == () and x.grad.dtype == x.dtype, repr(x.grad)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-13)


# ---- 1. a 0-d tensor used more than once ----------------------------------------------------------------------


def test_scalar_used_twice_in_a_product():
    x = _scalar(2.0)
    (x * x).backward()
    _assert_0d_grad(x, 4.0)


@pytest.mark.parametrize(
    ("program", "derivative"),
    [
        (lambda x: x + x + x, lambda v: 3.0),
        (lambda x: (lambda loss: loss + loss * loss)(x * 3.0), lambda v: 3.0 + 18.0 * v),
        (lambda x: sum([x, x, x]), lambda v: 3.0),
    ],
    ids=["x + x + x", "loss + loss * loss", "sum([x, x, x])"],
)
def test_scalar_used_three_times(program, derivative):
    x = _scalar(2.0)
    program(x).backward()
    _assert_0d_grad(x, derivative(2.0))


def test_a_learned_temperature_shared_by_three_heads():
    temperature = Tensor(np.float32(0.5), requires_grad=True)
    logits = Tensor(np.arange(12.0, dtype=np.float32).reshape(4, 3) / 4)
    labels = np.array([0, 2, 1, 2])
    loss = sum(F.cross_entropy(logits * temperature * scale, labels) for scale in (1.0, 2.0, 3.0))
    loss.backward()
    grad = temperature.grad
    assert type(grad) is np.ndarray and grad.shape == () and grad.dtype == np.float32
    numerical = gradcheck(lambda t: sum(F.cross_entropy(logits.double() * t * s, labels) for s in (1.0, 2.0, 3.0)),
                          [np.array(0.5)], raise_exception=False)
    assert numerical.passed, numerical


def test_a_0d_parameter_used_three_times_in_a_module():
    class Scaled(nn.Module):
        def __init__(self):
            self.scale = nn.Parameter(np.array(1.5))

        def forward(self, x):
            return ((x * self.scale).relu() * self.scale + self.scale).sum()

    model = Scaled()
    x = Tensor(np.array([1.0, -2.0, 3.0]))
    model(x).backward()
    # d/ds sum(relu(x s) s + s) = sum over x > 0 of 2 x s, plus 3
    _assert_0d_grad(model.scale, 2 * (1.0 + 3.0) * 1.5 + 3.0)


# Every differentiable op with a 0-d input, fed the same 0-d tensor twice (both operands, or two uses).
ZERO_D_USED_TWICE = {
    "add": lambda x: x + x,
    "sub": lambda x: x - x * 2.0,
    "mul": lambda x: x * x,
    "div": lambda x: x / (x + 3.0),
    "pow": lambda x: x ** (x * 0.5),
    "pow scalar": lambda x: x**3 + x**2,
    "maximum": lambda x: tg.maximum(x, x * 0.5),
    "where": lambda x: tg.where(np.array(True), x, x),
    "neg": lambda x: -x + x * x,
    "exp": lambda x: x.exp() * x,
    "log": lambda x: x.log() + x,
    "sqrt": lambda x: x.sqrt() * x,
    "tanh": lambda x: x.tanh() * x,
    "sigmoid": lambda x: x.sigmoid() + x,
    "relu": lambda x: x.relu() * x,
    "abs": lambda x: x.abs() * x,
    "clip": lambda x: x.clip(-1.0, 5.0) * x,
    "cast": lambda x: x.astype(np.float64) * x,  # float32 -> float64 and back in the gradient
    "sum": lambda x: x.sum() * x.sum(axis=0),
    "mean": lambda x: x.mean() + x.mean(axis=-1, keepdims=True) * x,
    "max": lambda x: x.max() * x.max(axis=0),
    "min": lambda x: x.min() * x,
    "logsumexp": lambda x: x.logsumexp() * x,
    "softmax": lambda x: x.softmax(0) * x + x.log_softmax(-1) * x,
    "reshape": lambda x: x.reshape(1, 1).reshape(()) * x,
    "transpose": lambda x: x.transpose() * x.T,
    "flatten": lambda x: x.flatten()[0] * x,
    "getitem": lambda x: x[None][0] * x[...],
    "concatenate": lambda x: tg.concatenate([x.reshape(1), x.reshape(1)]).sum() * x,
    "stack": lambda x: tg.stack([x, x]).sum() * x,
    "matmul": lambda x: x.reshape(1) @ x.reshape(1) + x,
    "linear": lambda x: F.linear(x.reshape(1, 1), x.reshape(1, 1), x.reshape(1)).sum() * x,
    "mse_loss": lambda x: F.mse_loss(x, np.array(0.5)) * x,
}


@pytest.mark.parametrize("name", ZERO_D_USED_TWICE)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_op_with_a_0d_input_used_twice(name, dtype):
    program = ZERO_D_USED_TWICE[name]
    x = Tensor(np.array(1.25, dtype=dtype), requires_grad=True)
    out = program(x)
    assert out.shape == () and type(out.data) is np.ndarray
    out.backward(retain_graph=True)
    out.backward()  # a second pass accumulates into the same 0-d array
    assert type(x.grad) is np.ndarray and x.grad.shape == () and x.grad.dtype == dtype, repr(x.grad)
    if dtype == np.float64:
        twice = gradcheck(lambda t: program(t) * 2.0, [np.array(1.25)], upstream=np.array(1.0), raise_exception=False)
        np.testing.assert_allclose(x.grad, twice.inputs[0].analytic, rtol=1e-13)
        assert twice.passed, twice


# ---- 2. transpose with negative axes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "axes"),
    [((3, 3), (-1, 0)), ((3, 3, 3), (0, -1, 1)), ((3, 3, 3), (-1, 0, 1)), ((3, 3, 3), (1, -1, 0)),
     ((2, 3, 3), (0, -1, 1))],
)
def test_transpose_with_mixed_sign_axes(shape, axes):
    data = np.random.default_rng(0).standard_normal(shape)
    gradcheck(lambda t: t.transpose(*axes), [data])


def _every_permutation_with_every_sign(max_rank: int = 4):
    for rank in range(max_rank + 1):
        for order in itertools.permutations(range(rank)):
            for signs in itertools.product((False, True), repeat=rank):
                axes = tuple(ax - rank if negative else ax for ax, negative in zip(order, signs, strict=True))
                yield rank, order, axes


def test_transpose_gradient_for_every_permutation_of_every_rank_up_to_4_with_every_sign():
    rng = np.random.default_rng(0)
    count = 0
    for rank, order, axes in _every_permutation_with_every_sign():
        shape = (2, 3, 4, 5)[:rank]
        x = Tensor(rng.standard_normal(shape), requires_grad=True)
        y = x.transpose(axes) if axes else x.transpose()  # NumPy's order as one tuple (two ints would swap)
        expected = np.transpose(x.data, order if axes else None)
        np.testing.assert_array_equal(y.data, expected)
        upstream = rng.standard_normal(y.shape)
        y.backward(upstream)
        # <u, transpose(x)> = <transpose^-1(u), x>
        np.testing.assert_array_equal(x.grad, np.transpose(upstream, np.argsort(order) if axes else None))
        count += 1
    assert count == sum(math.factorial(rank) * 2**rank for rank in range(5))


def test_transpose_rejects_what_is_not_a_permutation():
    x = Tensor(np.zeros((2, 3, 4)))
    for axes in [(0, 1), (0, 1, 1), (0, -3, 1), (0, 1, 3)]:
        with pytest.raises(ValueError, match=r"Transpose: .*\(input shapes: \(2, 3, 4\)\)"):
            x.transpose(axes)
        with pytest.raises(ValueError, match=r"Transpose: .*\(input shapes: \(2, 3, 4\)\)"):
            x.permute(*axes)


# ---- 3. indices given as tuples, with repeats -------------------------------------------------------------------


def _scatter_reference(shape, index, upstream):
    """d<u, x[index]>/dx by counting: the flat position of every picked element, weighted by u."""
    positions = np.arange(int(np.prod(shape))).reshape(shape)[index]
    return np.bincount(positions.ravel(), weights=np.ravel(upstream), minlength=int(np.prod(shape))).reshape(shape)


def test_tuple_indices_with_repeats_accumulate():
    x = Tensor(np.zeros((3, 3)), requires_grad=True)
    rows, cols = zip(*[(0, 1), (0, 1), (2, 0)], strict=True)
    x[rows, cols].sum().backward()
    assert x.grad[0, 1] == 2 and x.grad[2, 0] == 1 and x.grad.sum() == 3


INDEX_FORMS = {
    "tuple, tuple": ((0, 0, 2), (1, 1, 0)),
    "nested tuple": ((0, 0, 1),),
    "tuple then slice": ((1, 1), slice(None)),
    "slice then tuple": (slice(None), (2, 2, 2)),
    "list": [0, 0, 1],
    "list of lists": ([0, 0], [2, 2]),
    "array": np.array([2, 2, 0, 2]),
    "2-D array": np.array([[0, 0], [2, 0]]),
    "array, tuple": (np.array([1, 1]), (0, 0)),
    "negative repeats": ([-1, 2, -1],),
    "ellipsis then list": (Ellipsis, [1, 1, -2]),
    "None, list, slice": (None, [0, 0], slice(0, 2)),
    "list, slice with step, list": ([0, 0, 1], slice(None, None, 2)),
    "boolean mask": np.array([[True, False, True], [False, False, False], [True, True, False]]),
    "row mask then repeats": (np.array([True, False, True]), [1, 1]),
    "empty list": ([],),
    "int array from a Tensor": Tensor(np.array([1, 1, 0])),
}


@pytest.mark.parametrize("name", INDEX_FORMS)
def test_every_index_form_with_repeats_matches_the_counting_reference(name):
    index = INDEX_FORMS[name]
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    y = x[index]
    numpy_index = index.data if isinstance(index, Tensor) else index
    np.testing.assert_array_equal(y.data, x.data[numpy_index])
    upstream = rng.standard_normal(y.shape)
    y.backward(upstream)
    np.testing.assert_allclose(x.grad, _scatter_reference(x.shape, numpy_index, upstream), rtol=1e-14)


# ---- 5. a ** b at a = 0 -----------------------------------------------------------------------------------------


def test_tensor_power_at_zero_to_the_zero_has_zero_gradient():
    a, b = _scalar(0.0), _scalar(0.0)
    (a**b).backward()
    _assert_0d_grad(a, 0.0)
    _assert_0d_grad(b, 0.0)
    x = _scalar(0.0)
    (x ** np.int64(0)).backward()
    _assert_0d_grad(x, 0.0)


@pytest.mark.parametrize("exponent_kind", ["tensor", "python", "numpy"])
def test_power_matches_pytorch_at_every_special_point(torch, exponent_kind):
    bases = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5])
    exponents = [0.0, 1.0, 2.0, 3.0, 0.5, -0.5, -1.0, -2.0, 1.5]
    for exponent in exponents:
        a = Tensor(bases.copy(), requires_grad=True)
        ta = torch.tensor(bases, requires_grad=True)
        upstream = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 1.0])
        with np.errstate(all="ignore"):  # NumPy's warnings for 0 ** -1 and (-1) ** 0.5
            if exponent_kind == "tensor":
                b = Tensor(np.full(bases.shape, exponent), requires_grad=True)
                tb = torch.tensor(np.full(bases.shape, exponent), requires_grad=True)
                ours, theirs = a**b, ta**tb
            else:
                power = exponent if exponent_kind == "python" else np.float64(exponent)
                # PyTorch computes a Python -0.5 as rsqrt, (-0.0) ** -0.5 = -inf; NumPy and tinygrad_np use pow
                ours, theirs = a**power, ta ** (torch.tensor(exponent) if exponent == -0.5 else exponent)
            ours.backward(upstream)
        theirs.backward(torch.tensor(upstream))
        np.testing.assert_array_equal(ours.data, theirs.detach().numpy(), err_msg=f"forward, b = {exponent}")
        np.testing.assert_array_equal(a.grad, ta.grad.numpy(), err_msg=f"da, b = {exponent}")
        if exponent_kind == "tensor":
            np.testing.assert_array_equal(b.grad, tb.grad.numpy(), err_msg=f"db, b = {exponent}")


def test_numpy_scalars_are_weak_like_python_numbers():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    for y in (x * np.float64(2.0), x ** np.float64(2.0), x + np.int64(1), x ** np.int64(2), np.float64(2.0) - x):
        assert y.dtype == np.float32


# ---- 6. casting to an integer type ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.bool_])
def test_an_integer_or_boolean_result_never_requires_grad(dtype):
    x = Tensor(np.array([1.7, -2.2, 0.0]), requires_grad=True)
    cast = x.astype(dtype)
    assert not cast.requires_grad and cast.grad_fn is None and cast.is_leaf
    y = (cast.astype(np.float64) * x).sum()  # the integer path carries no gradient: d/dx = int(x)
    y.backward()
    np.testing.assert_array_equal(x.grad, x.data.astype(dtype).astype(np.float64))
    with pytest.raises(RuntimeError, match="does not require grad"):
        cast.astype(np.float64).sum().backward()


def test_float_casts_keep_the_graph_and_cast_the_gradient_back():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x.astype(np.float32)
    assert y.requires_grad and y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, 2 * x.data)


# ---- 7. no_grad is re-entrant -----------------------------------------------------------------------------------


def test_one_no_grad_object_entered_twice():
    x = Tensor([1.0], requires_grad=True)
    block = tg.no_grad()
    with block:
        with block:
            assert not (x * 2.0).requires_grad
        assert not (x * 2.0).requires_grad
    assert tg.is_grad_enabled() and (x * 2.0).requires_grad


def test_a_recursive_function_decorated_with_no_grad():
    x = Tensor([1.0], requires_grad=True)

    @tg.no_grad()
    def depth(n):
        assert not tg.is_grad_enabled()
        return (x * 1.0).requires_grad if n == 0 else depth(n - 1)

    assert depth(5) is False
    assert tg.is_grad_enabled()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0])


def test_enable_grad_inside_no_grad_and_exceptions_restore_the_mode():
    x = Tensor([1.0], requires_grad=True)
    off, on = tg.no_grad(), tg.enable_grad()
    with off:
        with on:
            assert (x * 2.0).requires_grad
            with off:
                assert not (x * 2.0).requires_grad
            assert (x * 2.0).requires_grad
        assert not (x * 2.0).requires_grad
    with pytest.raises(KeyError), off:
        raise KeyError
    assert tg.is_grad_enabled()


def test_a_decorated_generator_runs_its_body_without_grad_and_the_caller_keeps_its_mode():
    x = Tensor([1.0], requires_grad=True)

    @tg.no_grad()
    def doubled(n):
        for _ in range(n):
            received = yield (x * 2.0).requires_grad, tg.is_grad_enabled()
            assert received is None or not tg.is_grad_enabled()

    steps = doubled(3)
    for recorded, enabled in steps:
        assert recorded is False and enabled is False
        assert tg.is_grad_enabled()  # the caller's mode between steps
    gen = doubled(2)
    next(gen)
    assert gen.send("hello") == (False, False)
    with pytest.raises(ValueError, match="thrown"):
        gen.throw(ValueError("thrown"))
    assert tg.is_grad_enabled()


def test_no_grad_in_threads_is_per_thread():
    x = Tensor([1.0], requires_grad=True)
    block, results, entered, release = tg.no_grad(), {}, threading.Event(), threading.Event()

    def inside():
        with block:
            entered.set()
            release.wait(5)
            results["inside"] = (x * 2.0).requires_grad
        results["after"] = (x * 2.0).requires_grad

    worker = threading.Thread(target=inside)
    worker.start()
    entered.wait(5)
    with block:
        release.set()
        worker.join(5)
    assert results == {"inside": False, "after": True}
    assert tg.is_grad_enabled()


# ---- 8. empty tensors and the axes of 0-d tensors ---------------------------------------------------------------


def _torch_or_error(fn):
    try:
        return fn()
    except (IndexError, RuntimeError, ValueError):
        return None


REDUCTIONS = {
    "sum": (lambda t, axis: t.sum(axis=axis), lambda t, axis: t.sum(dim=axis)),
    "mean": (lambda t, axis: t.mean(axis=axis), lambda t, axis: t.mean(dim=axis)),
    "max": (lambda t, axis: t.max(axis=axis), lambda t, axis: t.amax(dim=axis)),
    "min": (lambda t, axis: t.min(axis=axis), lambda t, axis: t.amin(dim=axis)),
    "logsumexp": (lambda t, axis: t.logsumexp(axis=axis), lambda t, axis: t.logsumexp(dim=axis)),
    "softmax": (lambda t, axis: t.softmax(axis), lambda t, axis: t.softmax(dim=axis)),
    "log_softmax": (lambda t, axis: t.log_softmax(axis), lambda t, axis: t.log_softmax(dim=axis)),
}
EMPTY_AND_0D_CASES = [
    ((0, 3), 1), ((0, 3), 0), ((0, 3), -1), ((0, 3), (0, 1)), ((2, 0), 1), ((2, 0), 0), ((2, 0, 3), (0, 2)),
    ((2, 0, 3), -2), ((0,), 0), ((), 0), ((), -1), ((), (0,)),
]


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize(("shape", "axis"), EMPTY_AND_0D_CASES)
def test_reductions_over_empty_and_0d_follow_pytorch(torch, name, shape, axis):
    if name in ("softmax", "log_softmax") and not isinstance(axis, int):
        return  # PyTorch's softmax takes one dim
    ours, theirs = REDUCTIONS[name]
    data = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + 1.0
    expected = _torch_or_error(lambda: theirs(torch.tensor(data), axis))
    x = Tensor(data, requires_grad=True)
    if expected is None:
        with pytest.raises(ValueError, match=r"over axis \d of size 0.*\(input shapes: "):
            ours(x, axis)
        return
    y = ours(x, axis)
    np.testing.assert_array_equal(y.data, expected.detach().numpy())
    upstream = np.linspace(-1, 1, y.size).reshape(y.shape)
    y.backward(upstream)
    torch_x = torch.tensor(data, requires_grad=True)
    theirs(torch_x, axis).backward(torch.tensor(upstream))
    assert type(x.grad) is np.ndarray and x.grad.shape == shape
    np.testing.assert_allclose(x.grad, torch_x.grad.numpy(), rtol=1e-14, atol=1e-15)


def test_the_exact_empty_cases_of_the_issue():
    assert Tensor(np.zeros((0, 3))).max(axis=1).shape == (0,)
    np.testing.assert_array_equal(Tensor(np.zeros((2, 0))).logsumexp(axis=1).data, [-np.inf, -np.inf])
    assert Tensor(np.zeros((2, 0))).softmax(axis=1).shape == (2, 0)
    assert Tensor(np.zeros((2, 0))).log_softmax(axis=1).shape == (2, 0)
    assert Tensor(np.zeros((0, 3))).flatten(1).shape == (0, 3)
    assert Tensor(2.0).sum(axis=0).shape == () and Tensor(2.0).sum(axis=-1).shape == ()
    with pytest.raises(ValueError, match=r"Concatenate: axis 1 is out of range .*\(input shapes: \(1,\)\)"):
        tg.concatenate([Tensor([1.0])], axis=1)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4), (0, 0), ()])
def test_flatten_of_every_start_dim_follows_pytorch(torch, shape):
    for start in range(-max(len(shape), 1), max(len(shape), 1)):
        data = np.zeros(shape)
        x = Tensor(data, requires_grad=True)
        y = x.flatten(start)
        assert y.shape == tuple(torch.tensor(data).flatten(start).shape)
        y.backward(np.ones(y.shape))
        assert x.grad.shape == shape
    with pytest.raises(ValueError, match="flatten: axis"):
        Tensor(np.zeros(shape)).flatten(max(len(shape), 1))


def test_joining_along_an_axis_that_is_not_there_names_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"Concatenate: 0-d tensors have no axis"):
        tg.concatenate([Tensor(1.0), Tensor(2.0)])
    with pytest.raises(ValueError, match=r"Concatenate: .*\(input shapes: \(2,\), \(2, 1\)\)"):
        tg.concatenate([Tensor(np.zeros(2)), Tensor(np.zeros((2, 1)))], axis=0)
    with pytest.raises(ValueError, match=r"Stack: axis 3 is out of range .*\(input shapes: \(2, 2\)\)"):
        tg.stack([Tensor(np.zeros((2, 2)))], axis=3)
    with pytest.raises(ValueError, match=r"Sum: axis \(1, -1\) names a dimension twice"):
        Tensor(np.zeros((2, 2))).sum(axis=(1, -1))
    assert tg.stack([Tensor(1.0), Tensor(2.0)], axis=-1).shape == (2,)


# ---- 9. float32 sums over long axes -----------------------------------------------------------------------------


def _relative_error(result, exact):
    return float(np.max(np.abs(np.asarray(result, dtype=np.float64) - exact)) / np.max(np.abs(exact)))


def test_float32_bias_gradient_over_600000_rows_is_as_accurate_as_pytorch(torch):
    rng = np.random.default_rng(0)
    rows, features = 600_000, 10
    x = rng.standard_normal((rows, 4)).astype(np.float32)
    weight = rng.standard_normal((features, 4)).astype(np.float32)
    upstream = (rng.standard_normal((rows, features)) + 0.5).astype(np.float32)
    exact = upstream.astype(np.float64).sum(axis=0)

    bias = Tensor(np.zeros(features, dtype=np.float32), requires_grad=True)
    F.linear(Tensor(x), Tensor(weight), bias).backward(upstream)
    torch_bias = torch.zeros(features, requires_grad=True)
    torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(weight), torch_bias).backward(
        torch.from_numpy(upstream)
    )
    torch_error = _relative_error(torch_bias.grad.numpy(), exact)
    assert bias.grad.dtype == np.float32
    assert _relative_error(bias.grad, exact) <= max(torch_error, 6e-8)


FLOAT32_SUMS = {
    "broadcast bias, rows": lambda t, b: (t + b[0]).sum(axis=1),  # (N, 10) + (10,): gradient summed over rows
    "sum over rows": lambda t, b: t.sum(axis=0),
    "mean over rows": lambda t, b: t.mean(axis=0) * t.shape[0],
    "sum of a column layout": lambda t, b: t.T.sum(axis=1),
    "full sum": lambda t, b: t.sum(),
    "logsumexp over rows": lambda t, b: t.logsumexp(axis=0),
}


@pytest.mark.parametrize("name", FLOAT32_SUMS)
def test_every_float32_sum_path_is_as_accurate_as_pytorch(torch, name):
    rng = np.random.default_rng(2)
    data = (rng.standard_normal((200_000, 10)) + 0.25).astype(np.float32)
    bias = np.zeros((1, 10), dtype=np.float32)
    program = FLOAT32_SUMS[name]

    x, b = Tensor(data, requires_grad=True), Tensor(bias, requires_grad=True)
    out = program(x, b)
    exact = program(Tensor(data.astype(np.float64)), Tensor(bias.astype(np.float64))).data
    tx, tb = torch.from_numpy(data), torch.from_numpy(bias)
    torch_out = {
        "broadcast bias, rows": lambda: (tx + tb[0]).sum(dim=1),
        "sum over rows": lambda: tx.sum(dim=0),
        "mean over rows": lambda: tx.mean(dim=0) * tx.shape[0],
        "sum of a column layout": lambda: tx.T.sum(dim=1),
        "full sum": lambda: tx.sum(),
        "logsumexp over rows": lambda: tx.logsumexp(dim=0),
    }[name]().numpy()
    assert out.dtype == np.float32
    assert _relative_error(out.data, exact) <= max(_relative_error(torch_out, exact), 6e-8)
    if name == "broadcast bias, rows":  # the bias gradient: a sum over 200,000 rows of the upstream
        upstream = (rng.standard_normal(out.shape) + 0.5).astype(np.float32)
        out.backward(upstream)
        exact_grad = np.tile(upstream.astype(np.float64)[:, None], (1, 10)).sum(axis=0)
        torch_grad = torch.from_numpy(upstream)[:, None].expand(-1, 10).sum(dim=0).numpy()
        assert _relative_error(b.grad[0], exact_grad) <= max(_relative_error(torch_grad, exact_grad), 6e-8)
