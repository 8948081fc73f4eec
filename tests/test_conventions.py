"""The README's table of conventions, row by row, against PyTorch: the same result, or the documented difference.

The differential fuzzer (test_fuzz_engine.py) meets these cases at random, with its PyTorch twin applying the
documented differences; here each row is pinned down by name, and the README's table must list exactly these rows.
"""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


def grads(fn, *arrays, upstream=None, framework="ours", torch=None):
    """Gradients of <upstream, fn(*inputs)> with respect to each input, in tinygrad_np or PyTorch (float64)."""
    if framework == "ours":
        inputs = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
        with np.errstate(all="ignore"):  # NumPy's warnings for log(0) and 1 / 0
            out = fn(*inputs)
            out.backward(np.ones(out.shape) if upstream is None else np.asarray(upstream, dtype=np.float64))
        return [x.grad for x in inputs]
    inputs = [torch.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(torch.ones(out.shape, dtype=torch.float64) if upstream is None else torch.tensor(upstream))
    return [x.grad.numpy() for x in inputs]


def same_as_pytorch(torch, ours, theirs, *arrays, upstream=None, expected=None):
    mine = grads(ours, *arrays, upstream=upstream)
    reference = grads(theirs, *arrays, upstream=upstream, framework="torch", torch=torch)
    for a, b in zip(mine, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    if expected is not None:
        np.testing.assert_array_equal(mine[0], expected)


def max_ties(torch):
    x = [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]
    same_as_pytorch(torch, lambda t: t.max(axis=1), lambda t: t.amax(dim=1), x,
                    expected=[[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    same_as_pytorch(torch, lambda t: t.min(), lambda t: t.amin(), [[1.0, 0.0], [0.0, 4.0]],
                    expected=[[0, 0.5], [0.5, 0]])
    # torch.max(dim) is the other choice: all of it to one index
    t = torch.tensor([1.0, 3.0, 3.0], requires_grad=True)
    t.max(dim=0).values.backward()
    assert t.grad.tolist() in ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0])


def max_returns(torch):
    x = [[1.0, 5.0], [7.0, 2.0]]
    ours, theirs = Tensor(x), torch.tensor(x)
    np.testing.assert_array_equal(ours.max(1).data, theirs.max(1).values.numpy())
    np.testing.assert_array_equal(ours.argmax(1).data, theirs.max(1).indices.numpy())
    np.testing.assert_array_equal(ours.max(1)[0].data, 5.0)  # the first row's maximum, not the values
    assert theirs.max(1)[0].tolist() == [5.0, 7.0]


def transpose_semantics(torch):
    data = np.arange(24.0).reshape(2, 3, 4)
    for axes in [(0, 1), (-1, 0), (2, 2)]:  # two ints: the same swap in both
        same_as_pytorch(torch, lambda t, axes=axes: t.transpose(*axes), lambda t, axes=axes: t.transpose(*axes), data,
                        upstream=data.transpose(_swapped(3, *axes)))
    for order in [(2, 0, 1), (1, 0, 2)]:  # an order: NumPy's transpose, PyTorch's permute
        upstream = np.arange(24.0).reshape(2, 3, 4).transpose(order)
        same_as_pytorch(torch, lambda t, order=order: t.transpose(order), lambda t, order=order: t.permute(order),
                        data, upstream=upstream)
        same_as_pytorch(torch, lambda t, order=order: t.permute(*order), lambda t, order=order: t.permute(*order),
                        data, upstream=upstream)
    matrix = Tensor(np.arange(6.0).reshape(2, 3))
    assert matrix.transpose(0, 1).shape == (3, 2) and matrix.transpose((0, 1)).shape == (2, 3)
    assert tuple(torch.zeros(2, 3).transpose(0, 1).shape) == (3, 2)


def _swapped(ndim, first, second):
    order = list(range(ndim))
    order[first], order[second] = order[second], order[first]
    return order


def grad_and_dot_grad(torch):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3).retain_grad()
    tg.grad((h * h).sum(), x)
    assert h.grad is None and x.grad is None
    t = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    th = t * 3
    th.retain_grad()
    torch.autograd.grad((th * th).sum(), t)
    assert th.grad.tolist() == [6.0, 12.0] and t.grad is None


def maximum_ties(torch):
    same_as_pytorch(torch, tg.maximum, torch.maximum, [1.0, 2.0, 0.0], [1.0, 1.0, 3.0], expected=[0.5, 1.0, 0.0])


def kinks(torch):
    x = [-1.0, 0.0, -0.0, 1.0]
    same_as_pytorch(torch, Tensor.relu, torch.relu, x, expected=[0, 0, 0, 1])
    same_as_pytorch(torch, Tensor.abs, torch.abs, x, expected=[-1, 0, 0, 1])
    same_as_pytorch(torch, lambda t: t.clip(-1.0, 1.0), lambda t: t.clamp(-1.0, 1.0), [-2.0, -1.0, 0.5, 1.0, 2.0],
                    expected=[0, 1, 1, 1, 0])
    same_as_pytorch(torch, lambda t: t.clip(min=0.0), lambda t: t.clamp(min=0.0), [-1.0, 0.0, 1.0], expected=[0, 1, 1])
    # a slope of 0 stops even an infinite or NaN upstream gradient (a where, not inf * 0 = NaN)
    upstream = [np.inf, np.nan, -np.inf]
    same_as_pytorch(torch, Tensor.relu, torch.relu, [-1.0, 0.0, 1.0], upstream=upstream, expected=[0, 0, -np.inf])
    same_as_pytorch(torch, lambda t: t.clip(-0.5, 0.5), lambda t: t.clamp(-0.5, 0.5), [-1.0, 1.0, 0.0],
                    upstream=upstream, expected=[0, 0, -np.inf])


def nan_inputs(torch):
    nan = float("nan")
    x = [nan, 1.0, -1.0]
    same_as_pytorch(torch, Tensor.relu, torch.relu, x, expected=[1, 1, 0])
    same_as_pytorch(torch, Tensor.abs, torch.abs, x, expected=[0, 1, -1])
    same_as_pytorch(torch, lambda t: t.clip(-0.5, 0.5), lambda t: t.clamp(-0.5, 0.5), x, expected=[0, 0, 0])
    same_as_pytorch(torch, tg.maximum, torch.maximum, x, [0.0, nan, 0.0], expected=[1, 1, 0])
    rows = [[nan, 1.0], [2.0, 1.0]]
    for ours, theirs in [(lambda t: t.max(axis=1), lambda t: t.amax(dim=1)),
                         (lambda t: t.logsumexp(axis=1), lambda t: t.logsumexp(dim=1)),
                         (lambda t: t.softmax(1), lambda t: t.softmax(1))]:
        same_as_pytorch(torch, ours, theirs, rows)
    assert np.isnan(grads(lambda t: t.max(axis=1), rows)[0][0]).all()  # the slice holding NaN


def zero_upstream(torch):
    x = [0.0, 1.0, 4.0]
    cond = np.array([False, True, True])
    ours = grads(lambda t: tg.where(cond, t.log() + t.sqrt() + 1.0 / t + t**0.5, 0.0), x)[0]
    np.testing.assert_allclose(ours, [0.0, 1 + 0.5 - 1 + 0.5, 0.25 + 0.25 - 1 / 16 + 0.25])
    theirs = grads(lambda t: torch.where(torch.tensor(cond), t.log() + t.sqrt() + 1.0 / t + t**0.5, 0.0), x,
                   framework="torch", torch=torch)[0]
    assert np.isnan(theirs[0]) and np.allclose(theirs[1:], ours[1:])  # PyTorch: 0 * inf = NaN
    a, b = grads(lambda p, q: p / q, [1.0, 2.0], [0.0, 0.0], upstream=[0.0, 1.0])
    np.testing.assert_array_equal(a, [0.0, np.inf])
    np.testing.assert_array_equal(b, [0.0, -np.inf])


def power_at_zero(torch):
    bases, exponents = [0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.5, -1.0]
    mine = grads(lambda a, b: a**b, bases, exponents)
    reference = grads(lambda a, b: a**b, bases, exponents, framework="torch", torch=torch)
    for a, b in zip(mine, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mine[0], [0.0, 0.0, np.inf, -np.inf])
    np.testing.assert_array_equal(mine[1], [0.0, 0.0, 0.0, -np.inf])


def mixed_dtypes(torch):
    x32 = Tensor(np.ones(3, dtype=np.float32))
    assert (x32 * Tensor(np.float64(2.0))).dtype == np.float64  # a 0-d float64 tensor promotes (NumPy)
    assert (torch.ones(3) * torch.tensor(2.0, dtype=torch.float64)).dtype == torch.float32  # PyTorch doesn't
    assert (x32 * Tensor(np.ones(3))).dtype == np.float64
    for number in (2.0, np.float64(2.0), np.int64(2), 2):
        assert (x32 * number).dtype == np.float32 and (torch.ones(3) * number).dtype == torch.float32
        assert (x32**number).dtype == np.float32


def integer_tensors(torch):
    ints, floats = np.array([1, 2]), np.ones(2, dtype=np.float32)
    assert (Tensor(floats) * Tensor(ints)).dtype == np.float64  # NumPy's promotion of int64 with float32
    assert (torch.from_numpy(floats) * torch.from_numpy(ints)).dtype == torch.float32
    assert (Tensor(ints) / Tensor(ints)).dtype == np.float64 and (torch.tensor([1, 2]) / 2).dtype == torch.float32
    int32 = np.array([1, 2], dtype=np.int32)
    for number in (3, np.int64(3)):  # a whole number keeps an integer tensor's dtype, as in PyTorch
        assert (Tensor(int32) * number).dtype == np.int32 and (number - Tensor(int32)).dtype == np.int32
        assert (torch.from_numpy(int32) * number).dtype == torch.int32
    assert (Tensor(int32) + 2**40).dtype == np.int64  # one that doesn't fit: NumPy's wider type
    assert (Tensor(int32) + 2.5).dtype == np.float64 and (torch.from_numpy(int32) + 2.5).dtype == torch.float32


def integer_results(torch):
    x = Tensor(np.array([1.5, -2.5]), requires_grad=True)
    for result in (x.astype(np.int64), x > 0, x.argmax(), x == x):
        assert not result.requires_grad and result.grad_fn is None
    t = torch.tensor([1.5, -2.5], requires_grad=True)
    assert not t.to(torch.int64).requires_grad and not (t > 0).requires_grad


def views_under_no_grad(torch):
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    t = torch.ones(2, 3, requires_grad=True)
    with tg.no_grad(), torch.no_grad():
        ours = [x.reshape(3, 2), x.T, x[0], x.flatten()]
        theirs = [t.reshape(3, 2), t.T, t[0], t.flatten()]
    assert not any(v.requires_grad for v in ours)
    assert all(v.requires_grad and v.grad_fn is None for v in theirs)


def casts_copy(torch):
    x = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    for same in (x.astype(np.float32), x.float()):
        assert same is not x and same.grad_fn is not None
    t = torch.ones(2, requires_grad=True)
    assert t.float() is t and t.to(torch.float32) is t


def numpy_indexing(torch):
    x = np.arange(6.0)
    np.testing.assert_array_equal(Tensor(x)[::-2].data, x[::-2])
    with pytest.raises(ValueError, match="step must be greater than zero"):
        torch.tensor(x)[::-2]
    same_as_pytorch(torch, lambda t: t[(0, 0, 2),], lambda t: t[(0, 0, 2),], [1.0, 2.0, 3.0], expected=[2, 0, 1])


def empty_axis_tuple(torch):
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(Tensor(x).sum(axis=()).data, x)
    np.testing.assert_array_equal(Tensor(x).max(axis=()).data, x)
    assert torch.tensor(x).sum(dim=()).shape == ()


def empty_reductions(torch):
    empty = np.zeros((2, 0))
    cases = [("sum", lambda t: t.sum(axis=1), lambda t: t.sum(dim=1), [0.0, 0.0]),
             ("mean", lambda t: t.mean(axis=1), lambda t: t.mean(dim=1), [np.nan, np.nan]),
             ("logsumexp", lambda t: t.logsumexp(axis=1), lambda t: t.logsumexp(dim=1), [-np.inf, -np.inf])]
    for _, ours, theirs, expected in cases:
        np.testing.assert_array_equal(ours(Tensor(empty)).data, expected)
        np.testing.assert_array_equal(theirs(torch.tensor(empty)).numpy(), expected)
    assert Tensor(empty).softmax(1).shape == (2, 0) and Tensor(np.zeros((0, 3))).max(axis=1).shape == (0,)
    with pytest.raises(ValueError, match=r"Max: max\(\) over axis 1 of size 0"):
        Tensor(empty).max(axis=1)
    with pytest.raises(IndexError):
        torch.tensor(empty).amax(dim=1)


def zero_d_axes(torch):
    for axis in (0, -1):
        for ours, theirs in [(lambda t, a: t.sum(axis=a), lambda t, a: t.sum(dim=a)),
                             (lambda t, a: t.softmax(a), lambda t, a: t.softmax(a)),
                             (lambda t, a: t.max(axis=a), lambda t, a: t.amax(dim=a))]:
            same_as_pytorch(torch, lambda t, a=axis, f=ours: f(t, a), lambda t, a=axis, f=theirs: f(t, a), 2.0)
    with pytest.raises(ValueError, match="axis 1 is out of range"):
        Tensor(2.0).sum(axis=1)


def float32_sums(torch):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300_000, 3)) + 0.5).astype(np.float32)
    exact = x.astype(np.float64).sum(axis=0)
    ours = Tensor(x).sum(axis=0).data
    theirs = torch.from_numpy(x).sum(dim=0).numpy()
    assert ours.dtype == np.float32
    # float64 accumulation: the only error left is the rounding of the result to float32
    np.testing.assert_array_equal(ours, exact.astype(np.float32))
    assert np.abs(ours - exact).max() <= np.abs(theirs - exact).max()


def backward_twice(torch):
    x = Tensor([1.0], requires_grad=True)
    y = (x + 1.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    t = torch.tensor([1.0], requires_grad=True)
    z = (t + 1.0).sum()
    z.backward()
    z.backward()  # nothing saved, nothing freed: PyTorch lets it through
    assert t.grad.item() == 2.0
    # grad() past a freed op that a path to the requested input might cross: tinygrad_np can't tell, so it raises
    with pytest.raises(RuntimeError, match="already freed"):
        _freed_side_branch(tg.grad, lambda data: Tensor(np.array(data), requires_grad=True))
    (found,) = _freed_side_branch(torch.autograd.grad, lambda data: torch.tensor(data, requires_grad=True))
    assert found.tolist() == [4.0, 8.0]


def _freed_side_branch(framework, leaf):
    x = leaf([1.0, 2.0])
    a = x.exp()
    a.sum().backward()  # frees the exp
    b = x * 2
    return framework((a + b * b).sum(), b)  # a path that never reaches b, through the freed exp


def max_pool_ties(torch):
    """Overlapping 2x2 windows (stride 1) over ties and a NaN: one element per window gets its gradient."""
    from tinygrad_np.nn import functional as F

    x = [[[[1.0, 2.0, 2.0], [2.0, 0.0, np.nan], [1.0, 1.0, 1.0]]]]
    same_as_pytorch(torch, lambda t: F.max_pool2d(t, 2, stride=1), lambda t: torch.nn.functional.max_pool2d(
        t, 2, stride=1), x, expected=[[[[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]]])


def max_pool_window_in_padding(torch):
    """A (1, 1, 7) image, windows of 2 rows dilated by 2 and 1 row of padding: each reads rows -1 and 1, both
    padding. PyTorch 2.13 writes out of bounds in backward here (a heap corruption), so it is not run."""
    from tinygrad_np.nn import functional as F

    x = Tensor(np.arange(7.0).reshape(1, 1, 7), requires_grad=True)
    out = F.max_pool2d(x, (2, 3), padding=(1, 0), dilation=(2, 1))
    out.backward(np.ones(out.shape))
    assert out.shape == (1, 1, 2) and np.all(out.data == -np.inf)
    np.testing.assert_array_equal(x.grad, np.zeros((1, 1, 7)))


def in_place_through_a_view(torch):
    from tinygrad_np.inplace import InPlaceError

    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    x = a * 2
    x[:2] *= 3  # through a view, then put back: x itself is rebased, so this one works
    view = x[1:]
    view += 1  # the write reaches x, whose history doesn't know
    assert x.data.tolist() == [6.0, 13.0, 7.0]
    with pytest.raises(InPlaceError, match=r"the output of SetItem \(shape \(3,\)\) was modified in place"):
        (x * 1.0).sum().backward()
    t = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    tx = t * 2
    tx[:2] *= 3
    tx[1:] += 1
    assert tx.tolist() == [6.0, 13.0, 7.0]
    (tx * 1.0).sum().backward()  # PyTorch rebased tx's history onto the view's op
    assert t.grad.tolist() == [6.0, 6.0, 2.0]
    # a value read through a view before the write is fine in both: the op that read it ran before
    same_as_pytorch(torch, lambda b: _shifted(b * 1.0), lambda b: _shifted(b * 1.0), [1.0, 2.0, 3.0])


def _shifted(x):
    x[1:] = x[:-1] * 2
    return x


def version_counts(torch):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    t = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    for leaf, no_grad in ((x, tg.no_grad), (t, torch.no_grad)):
        with no_grad():
            leaf.detach().reshape(2, 1)[0] += 1  # a view of a view of a detach(): it shares the leaf's count
        assert leaf._version == 2  # the add through the view, and the item assignment that Python's += ends with
        assert (leaf.data if leaf is x else leaf.detach().numpy()).tolist() == [2.0, 2.0]
    # x *= x: PyTorch's mul_ saved x and then changed it; tinygrad_np multiplies a copy of the old value
    same_as_pytorch(torch, lambda b: _squared_in_place(b * 1.0), lambda b: (b * 1.0) * (b * 1.0), [1.5, -2.0])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        _squared_in_place(t * 1.0).sum().backward()
    # Mul checks an operand only when the other needs its gradient (as PyTorch saves it only then)
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = w * np.array([3.0, 4.0])
    with tg.no_grad():
        w -= 1.0
    y.sum().backward()
    assert w.grad.tolist() == [3.0, 4.0]


def _squared_in_place(x):
    x *= x
    return x


CONVENTIONS = {
    "max/min ties": max_ties,
    "max(axis) returns": max_returns,
    "transpose": transpose_semantics,
    "maximum ties": maximum_ties,
    "kinks": kinks,
    "NaN inputs": nan_inputs,
    "zero upstream": zero_upstream,
    "0 ** b": power_at_zero,
    "float32 with float64": mixed_dtypes,
    "integer tensors": integer_tensors,
    "integer results": integer_results,
    "views under no_grad": views_under_no_grad,
    "casts": casts_copy,
    "indexing": numpy_indexing,
    "axis=()": empty_axis_tuple,
    "empty reductions": empty_reductions,
    "0-d axes": zero_d_axes,
    "float32 sums": float32_sums,
    "backward twice": backward_twice,
    "grad() and .grad": grad_and_dot_grad,
    "max-pool ties": max_pool_ties,
    "max-pool window in the padding": max_pool_window_in_padding,
    "in place through a view": in_place_through_a_view,
    "versions": version_counts,
}


@pytest.mark.parametrize("row", CONVENTIONS)
def test_convention(torch, row):
    CONVENTIONS[row](torch)


def test_the_readme_table_lists_exactly_these_conventions():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("### Conventions", 1)[1].split("\n#", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    named = [re.match(r"\| ([^|]+?) \|", line).group(1).replace("`", "") for line in rows]
    assert named == list(CONVENTIONS)
