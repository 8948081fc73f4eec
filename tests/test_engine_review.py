"""The engine bugs an adversarial review against PyTorch found on 2026-12-01, each as the case that showed it and
as its class. The differential fuzzer (test_fuzz_engine.py) searches the same classes at random: hooks record the
grad mode they run in, grad() is taken with respect to random intermediates, and `transpose(d0, d1)` and `permute`
are ops of its table.
"""

import importlib.util
import threading

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, nn
from tinygrad_np.inplace import InPlaceError
from tinygrad_np.nn import functional as F


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


# ---- grad() runs only the ops between its outputs and its inputs -----------------------------------------------


def test_grad_with_respect_to_an_intermediate_leaves_the_graph_below_it():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.exp()
    (gy,) = tg.grad((y * 3).sum(), y)  # frees the product and the sum, not the exp below y
    np.testing.assert_array_equal(gy.data, [3.0, 3.0])
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(2 * x.data), rtol=1e-15)


def test_grad_with_respect_to_an_intermediate_whose_own_history_was_freed():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.exp()
    y.sum().backward()  # frees the exp
    (gy,) = tg.grad((y * 3).sum(), y)
    np.testing.assert_array_equal(gy.data, [3.0, 3.0])
    # With a second input, a path below y might lead to it, and the freed exp no longer knows: that raises.
    with pytest.raises(RuntimeError, match="already freed"):
        tg.grad((y * 3).sum(), [y, x])


# ---- a backward pass records only when it is recorded itself --------------------------------------------------


def test_hooks_run_with_grad_mode_off_and_may_update_a_parameter_in_place(torch):
    def run(framework, leaf):
        w, x = leaf(np.ones(2)), leaf(np.ones(2))
        h = x * 3
        seen = []

        def hook(g):
            nonlocal w
            seen.append(framework.is_grad_enabled())
            w -= 0.1 * g  # PyTorch runs hooks with grad mode off, so an in-place update of a leaf is allowed
            assert not (g * w).requires_grad  # and nothing a hook computes is recorded

        h.register_hook(hook)
        (h * w).sum().backward()
        return seen, np.array(w.detach().numpy() if hasattr(w, "detach") else w.data)

    ours = run(tg, lambda data: Tensor(data, requires_grad=True))
    theirs = run(torch, lambda data: torch.tensor(data, requires_grad=True))
    assert ours[0] == theirs[0] == [False]
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert tg.is_grad_enabled()  # and back on after backward


def test_grad_mode_during_backward_is_restored_after_an_error():
    x = Tensor(np.ones(2), requires_grad=True)
    h = x * 2

    def hook(g):
        raise KeyError("from a hook")

    h.register_hook(hook)
    with pytest.raises(KeyError):
        h.sum().backward()
    assert tg.is_grad_enabled()
    with tg.no_grad(), pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2).sum().backward()  # made under no_grad
    assert tg.is_grad_enabled()


def test_with_create_graph_hooks_run_recording():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * x
    seen = []
    h.register_hook(lambda g: seen.append(tg.is_grad_enabled()))
    h.sum().backward(create_graph=True)
    assert seen == [True] and x.grad.requires_grad


def test_set_grad_enabled_as_a_call_a_block_and_a_decorator(torch):
    for framework in (tg, torch):
        assert framework.is_grad_enabled()
        framework.set_grad_enabled(False)
        assert not framework.is_grad_enabled()
        framework.set_grad_enabled(True)
        with framework.set_grad_enabled(False):
            assert not framework.is_grad_enabled()
            with framework.set_grad_enabled(True):
                assert framework.is_grad_enabled()
            assert not framework.is_grad_enabled()
        assert framework.is_grad_enabled()

        @framework.set_grad_enabled(False)
        def off(framework=framework):
            return framework.is_grad_enabled()

        assert framework.is_grad_enabled() and off() is False and framework.is_grad_enabled()
    x = Tensor(np.ones(2), requires_grad=True)
    with tg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad


def test_set_grad_enabled_is_per_thread():
    seen = {}

    def other():
        seen["other"] = tg.is_grad_enabled()

    with tg.set_grad_enabled(False):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == {"other": True} and tg.is_grad_enabled()


# ---- F.linear with any bias that broadcasts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_shape", "bias_shape"),
    [((3, 4), (5,)), ((3, 4), (1, 5)), ((3, 4), (3, 5)), ((2, 1, 4), (2, 1, 5)), ((2, 3, 4), (1, 5)), ((4,), (5,)),
     ((4,), ()), ((3, 4), (1,)), ((0, 4), (1, 5))],
)
def test_linear_bias_of_any_broadcasting_shape_matches_pytorch(torch, x_shape, bias_shape):
    rng = np.random.default_rng(0)
    x, weight, bias = rng.standard_normal(x_shape), rng.standard_normal((5, 4)), rng.standard_normal(bias_shape)
    ours = [Tensor(a, requires_grad=True) for a in (x, weight, bias)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    out, reference = F.linear(*ours), torch.nn.functional.linear(*theirs)
    upstream = rng.standard_normal(reference.shape)
    out.backward(upstream)
    reference.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(out.data, reference.detach().numpy(), rtol=1e-12, atol=1e-12)
    for mine, their in zip(ours, theirs, strict=True):
        assert mine.grad.shape == tuple(their.shape)
        np.testing.assert_allclose(mine.grad, their.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_linear_refuses_a_bias_or_weight_that_does_not_fit():
    x, weight = Tensor(np.ones((3, 4))), Tensor(np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"bias of shape \(4,\) doesn't broadcast .* \(shape \(5,\)\)"):
        F.linear(x, weight, Tensor(np.ones(4)))
    with pytest.raises(ValueError, match=r"weight must be 2-D .* got shape \(4,\)"):
        F.linear(x, Tensor(np.ones(4)))


# ---- NumPy's array protocol: np.array copies ----------------------------------------------------------------------


def test_np_array_of_a_tensor_is_a_copy_and_np_asarray_a_view():
    t = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    copied = np.array(t)
    copied[0] = 99.0
    np.testing.assert_array_equal(t.data, [1.0, 2.0])
    assert np.shares_memory(np.asarray(t), t.data) and np.shares_memory(np.array(t, copy=False), t.data)
    cast = np.array(t, dtype=np.float32)
    assert cast.dtype == np.float32 and not np.shares_memory(cast, t.data)
    assert np.asarray(t, dtype=np.float64) is t.data
    with pytest.raises(ValueError, match="without a copy"):
        np.array(t, dtype=np.float32, copy=False)


# ---- argument checks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [-0.5, 1.5, float("nan"), float("inf")])
def test_dropout_refuses_a_probability_outside_0_to_1_in_both_forms(p):
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        F.dropout(Tensor(np.ones(4)), p=p, generator=0)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        nn.Dropout(p)


@pytest.mark.parametrize("axis", [1.0, (0, 1.0), "0", [0.5]])
def test_axes_that_are_not_integers_name_the_op_and_the_shape(axis):
    x = Tensor(np.ones((2, 3)))
    for op in (x.sum, x.mean, x.max, x.logsumexp, x.softmax):
        with pytest.raises(TypeError, match=r"^\w+: axes must be integers.*\(input shapes: \(2, 3\)\)"):
            op(axis)


# ---- transpose: two ints swap (PyTorch's), one tuple permutes (NumPy's) ----------------------------------------


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 3, 4), (2, 3, 4, 5)])
def test_transpose_of_two_axes_swaps_them_as_in_pytorch(torch, shape):
    rng = np.random.default_rng(0)
    data = rng.standard_normal(shape)
    bound = max(len(shape), 1)
    for first in range(-bound, bound):
        for second in range(-bound, bound):
            x, reference = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
            out, expected = x.transpose(first, second), reference.transpose(first, second)
            assert out.shape == tuple(expected.shape)
            np.testing.assert_array_equal(out.data, expected.detach().numpy())
            np.testing.assert_array_equal(x.swapaxes(first, second).data, out.data)
            upstream = rng.standard_normal(out.shape)
            out.backward(upstream)
            expected.backward(torch.from_numpy(upstream))
            np.testing.assert_array_equal(x.grad, reference.grad.numpy())


def test_a_matrix_transposed_every_way():
    m = Tensor(np.arange(6.0).reshape(2, 3))
    for way in (m.T, m.transpose(), m.transpose(0, 1), m.transpose(1, 0), m.transpose(-1, -2), m.transpose((1, 0)),
                m.permute(1, 0), m.permute((1, 0)), m.swapaxes(0, 1)):
        np.testing.assert_array_equal(way.data, m.data.T)
    np.testing.assert_array_equal(m.transpose((0, 1)).data, m.data)  # NumPy's identity order, as one tuple
    with pytest.raises(ValueError, match="permute needs the order"):
        m.permute()


def test_in_place_on_a_leaf_outside_a_hook_still_raises():
    w = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(InPlaceError):
        w -= 1.0
