"""In-place ops and version counters, against PyTorch in float64.

Each program below is written once in the syntax both frameworks share (`+=`, `t[i] = v`, `fill_`, `zero_`,
`copy_`), run in tinygrad_np and in PyTorch, and must give the same values and gradients to 1e-10.
"""

import importlib.util

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, nn, optim
from tinygrad_np.errors import UserError
from tinygrad_np.inplace import InPlaceError
from tinygrad_np.nn import functional as F


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


A = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
B = np.array([[1.0, 2.0, -0.5], [0.3, -2.0, 1.25]])


def run_both(torch, program, arrays=(A, B), requires_grad=(True, True)):
    """program(*leaves) -> output, run in both frameworks; returns ((value, grads), (value, grads)) as ndarrays."""
    return [run(torch, program, framework, arrays, requires_grad) for framework in ("ours", "torch")]


def run(torch, program, framework, arrays=(A, B), requires_grad=(True, True)):
    """program(*leaves) in one framework ("ours" or "torch"), backward with a fixed random upstream: (value, grads)."""
    if framework == "ours":
        leaves = [Tensor(a.copy(), requires_grad=r) for a, r in zip(arrays, requires_grad, strict=True)]
    else:
        leaves = [torch.tensor(a.copy(), requires_grad=r) for a, r in zip(arrays, requires_grad, strict=True)]
    out = program(*leaves)
    upstream = np.random.default_rng(0).uniform(-1, 1, tuple(out.shape))
    out.backward(upstream if framework == "ours" else torch.tensor(upstream))
    value = out.data if framework == "ours" else out.detach().numpy()
    return np.array(value), [np.asarray(x.grad) if r else None for x, r in zip(leaves, requires_grad, strict=True)]


def assert_same(torch, program, **kwargs):
    (ours, our_grads), (theirs, their_grads) = run_both(torch, program, **kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    for mine, reference in zip(our_grads, their_grads, strict=True):
        assert (mine is None) == (reference is None)
        if mine is not None:
            np.testing.assert_allclose(mine, reference, rtol=1e-10, atol=1e-10)


def _consumed_then_scaled(a, b):
    x = a * 2
    y = x * 3  # consumed before the in-place op: its gradient must not go through it
    x *= b
    return y + x


def _twice_with_a_consumer_between(a, b):
    x = a + 1
    first = x * 3 + x  # saves nothing of x (x * x would: PyTorch and tinygrad_np then raise)
    x += b
    second = x * 3
    x /= b
    return first + second + x


def _setitem_from_graph(a, b):
    h = a * 1.0
    h[0] = b[1] * b[1]
    h[:, 1:] = h[:, :2] * 0.5 + b[:, 1:]  # a value computed from h itself
    return h


def _augmented_item(a, b):
    h = a * 1.0
    h[:, 0] += 10 * b[:, 1]  # tmp = h[:, 0]; tmp += v; h[:, 0] = tmp
    h[1] *= b[0]
    return h * h


def _constant_buffer_joins_the_graph(a, b):
    buffer = a.detach() * 0  # a constant: it becomes part of the graph when a value that requires grad lands in it
    buffer[1] = b[0].exp()
    return buffer * a


def _advanced_and_mask_indices(a, b):
    h = a + 0.0
    h[[1, 0], [2, 2]] = b[0, :2]
    h[b > 0.5] = 7.0
    return h.sum(1)


def _fill_zero_copy(a, b):
    x = a * b
    z = x * 1.0
    z.zero_()
    y = x + z
    y.fill_(2.0)
    w = y * a
    w.copy_(b[0] * 3)  # src broadcast to w's shape; its gradient is summed back
    return w + x


def _division_and_subtraction(a, b):
    x = a.exp() + 1  # exp saved its output: changing that in place raises, in PyTorch too
    x -= b
    x /= b * b + 1
    return x


@pytest.mark.parametrize("program", [
    _consumed_then_scaled, _twice_with_a_consumer_between, _setitem_from_graph, _augmented_item,
    _constant_buffer_joins_the_graph, _advanced_and_mask_indices, _fill_zero_copy, _division_and_subtraction,
])
def test_recorded_in_place_ops_differentiate_as_pytorch(torch, program):
    assert_same(torch, program)


def test_a_0d_intermediate_in_place(torch):
    def program(a, b):
        x = a * b
        x += a
        x /= b
        return x

    assert_same(torch, program, arrays=(np.array(1.5), np.array(-2.0)))


def test_the_same_tensor_on_both_sides(torch):
    """`x *= x` and `x[...] = x * x`: PyTorch raises (mul_ saved x, then bumped it); tinygrad_np computes the
    gradient of the out-of-place program, which PyTorch gives for `x = x * x`."""
    def ours(a, b):
        x = a * b
        x *= x
        x += x
        return x

    def out_of_place(a, b):
        x = a * b
        x = x * x
        x = x + x
        return x

    (value, grads), (reference, reference_grads) = run(torch, ours, "ours"), run(torch, out_of_place, "torch")
    np.testing.assert_allclose(value, reference, rtol=1e-10)
    for mine, theirs in zip(grads, reference_grads, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10)


def test_an_input_that_needs_no_grad_modified_in_place(torch):
    def program(a, b):
        b *= 2  # a leaf that doesn't require grad: changed in place, then it stays a constant
        b += a  # now it joins the graph
        return b * a

    assert_same(torch, program, requires_grad=(True, False))


def test_float32_tensor_keeps_its_dtype_with_a_float64_operand(torch):
    x32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y64 = Tensor(np.array([0.5, 1.0, 2.0]), requires_grad=True)
    h = x32 * 1
    h *= y64
    h.sum().backward()
    assert h.dtype == np.float32 and x32.grad.dtype == np.float32 and y64.grad.dtype == np.float64
    np.testing.assert_array_equal(y64.grad, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(x32.grad, [0.5, 1.0, 2.0])


# ---- under no_grad: the optimizer's update -------------------------------------------------------------------


def test_manual_update_under_no_grad_keeps_the_leaf(torch):
    w = Tensor(A.copy(), requires_grad=True)
    data = w.data
    tw = torch.tensor(A.copy(), requires_grad=True)
    for _ in range(3):
        for x, no_grad in ((w, tg.no_grad), (tw, torch.no_grad)):
            loss = (x * x * x).sum()
            loss.backward()
            with no_grad():
                x -= 0.1 * x.grad
            x.grad = None
    assert w.data is data and w.requires_grad and w.is_leaf
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-12)
    assert w._version == tw._version == 3


def test_each_in_place_op_under_no_grad_counts_one_version(torch):
    ours, theirs = Tensor(A.copy(), requires_grad=True), torch.tensor(A.copy(), requires_grad=True)
    for x, no_grad in ((ours, tg.no_grad), (theirs, torch.no_grad)):
        with no_grad():
            x += 1
            x -= 0.5
            x *= 2
            x /= 4
            x[0, 1] = 9.0
            x[1] += 1  # a view's write, then setitem: two in PyTorch
            x.fill_(3.0)
            x.zero_()
            x.copy_(x * 0 + 2.0)
    assert ours._version == theirs._version
    np.testing.assert_array_equal(ours.data, theirs.detach().numpy())


def test_views_share_the_version_and_the_data(torch):
    base = Tensor(np.arange(6.0))
    view = base.reshape(2, 3)[1]
    view += 10
    assert base._version == view._version == 1
    np.testing.assert_array_equal(base.data, [0, 1, 2, 13, 14, 15])
    t = torch.arange(6.0, dtype=torch.float64)
    t.reshape(2, 3)[1].add_(10)
    assert t._version == 1


# ---- what can't be done --------------------------------------------------------------------------------------


@pytest.mark.parametrize("update", [
    lambda w: w.__iadd__(1), lambda w: w.__imul__(2.0), lambda w: w.__setitem__(0, 1.0), lambda w: w.fill_(0.0),
    lambda w: w.zero_(), lambda w: w.copy_(w.detach() * 0), lambda w: w[1:].__isub__(1.0), lambda w: w.reshape(3, 1)
    .__itruediv__(2.0),
])
def test_a_leaf_that_requires_grad_refuses_in_place_ops_while_recording(torch, update):
    with pytest.raises(InPlaceError, match=r"leaf tensor that requires grad \(shape \(3,\)\).*no_grad"):
        update(Tensor(np.ones(3), requires_grad=True))
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        update(torch.ones(3, dtype=torch.float64, requires_grad=True))
    assert issubclass(InPlaceError, UserError)


def test_bad_in_place_arguments_raise_clearly(torch):
    with pytest.raises(ValueError, match=r"\+=: a tensor of shape \(3,\) can't take the broadcast shape"):
        x = Tensor(np.ones(3))
        x += np.ones((2, 3))
    with pytest.raises(TypeError, match="dtype int64"):
        n = Tensor(np.arange(3))
        n += 1.5
    with pytest.raises(InPlaceError, match="read-only"):
        r = Tensor(np.broadcast_to(np.ones(3), (2, 3)))
        r *= 2
    with pytest.raises(ValueError, match="fill_ takes a number or a 0-d tensor"):
        Tensor(np.ones(3)).fill_(Tensor(np.ones(2)))
    with pytest.raises(ValueError, match="setitem: index"):
        Tensor(np.ones(3))[5] = 1.0


# ---- version checks ---------------------------------------------------------------------------------------------


def _tutorial_network():
    return nn.Sequential(nn.Linear(4, 10, generator=0), nn.ReLU(), nn.Linear(10, 10, generator=1))


def test_optimizer_step_between_forward_and_backward_raises(torch):
    model = _tutorial_network()
    opt = optim.SGD(model.parameters(), lr=0.1)
    images, labels = np.random.default_rng(0).random((8, 4), dtype=np.float32), np.arange(8) % 10
    loss = F.cross_entropy(model(images), labels)
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(InPlaceError, match=r"Linear's backward needs a tensor of shape \(10, 10\) that it saved"):
        loss.backward()
    # PyTorch raises too: the second layer saved its weight for the first layer's gradient
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.ReLU(), torch.nn.Linear(10, 10))
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(images)), torch.from_numpy(labels))
    tloss.backward(retain_graph=True)
    topt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        tloss.backward()
    # after a fresh forward pass, all is well
    opt.zero_grad()
    F.cross_entropy(model(images), labels).backward()


def test_a_saved_output_changed_under_no_grad_raises_naming_the_op(torch):
    x = Tensor(np.array([0.5, 1.0]), requires_grad=True)
    y = x.exp()
    with tg.no_grad():
        y += 1
    with pytest.raises(InPlaceError, match=r"Exp's backward needs a tensor of shape \(2,\)"):
        y.sum().backward()
    tx = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    ty = tx.exp()
    with torch.no_grad():
        ty += 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        ty.sum().backward()


def test_what_an_op_did_not_need_may_change(torch):
    """Mul saves a only for b's gradient (PyTorch the same): a constant factor's product survives w's update."""
    def program(w, c):
        y = w * c
        with (tg.no_grad() if isinstance(w, Tensor) else torch.no_grad()):
            w -= 1.0
        return y

    assert_same(torch, program, requires_grad=(True, False))


def test_an_intermediate_changed_through_a_view_raises():
    """PyTorch rebases the base's history through the view; tinygrad_np raises at backward (README, Conventions)."""
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    x = a * 2
    view = x[:2]
    view *= 3
    with pytest.raises(InPlaceError, match=r"the output of Mul \(shape \(3,\)\) was modified in place"):
        (x * x).sum().backward()


def test_detect_anomaly_sees_in_place_ops():
    a = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    with tg.detect_anomaly(), np.errstate(invalid="ignore"), pytest.raises(tg.AnomalyError, match="Log produced nan"):
        x = a * 1
        x += x.log()
