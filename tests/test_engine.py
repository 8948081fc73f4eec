"""The engine's contract, and one regression test for each way the small autograd engines broke."""

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import Tensor, no_grad
from tinygrad_np.gradcheck import GradcheckError, gradcheck, numerical_grad

# ---- failures of the anchors ------------------------------------------------------------------------


def test_fan_out_accumulates_a_plus_a():
    a = Tensor([3.0], requires_grad=True)
    (a + a).backward(np.ones(1))
    np.testing.assert_array_equal(a.grad, [2.0])


def test_diamond_accumulates_both_paths():
    a = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    b, c = a * 2.0, a * 3.0
    (b * c).sum().backward()  # d(6 a^2)/da = 12 a
    np.testing.assert_allclose(a.grad, 12 * a.data)


def test_chain_of_100000_ops_has_no_recursion_limit():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


def test_second_backward_through_freed_graph_raises_clearly():
    x = Tensor([2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward_and_leaf_grads_accumulate():
    x = Tensor([2.0, -1.0], requires_grad=True)
    y = (x * x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * first)  # accumulated, not overwritten, not stale
    np.testing.assert_allclose(first, 3 * x.data**2)


def test_no_stale_gradients_on_intermediates_between_backwards():
    # micrograd kept intermediate grads, so a second forward+backward added onto old numbers.
    x = Tensor([1.0, 2.0], requires_grad=True)
    for _ in range(3):
        x.zero_grad()
        h = x * 3.0
        (h * h).sum().backward()
        np.testing.assert_allclose(x.grad, 18 * x.data)
        assert h.grad is None


def test_intermediates_keep_no_grad_unless_retained():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * 2.0
    kept = (x * 5.0).retain_grad()
    (h.sum() + (kept * kept).sum()).backward()
    assert h.grad is None
    np.testing.assert_allclose(kept.grad, 2 * kept.data)


def test_bias_broadcast_of_different_rank_is_reduced():
    x = Tensor(np.ones((5, 10)), requires_grad=True)
    bias = Tensor(np.arange(10.0), requires_grad=True)
    (x + bias).sum().backward()
    assert bias.grad.shape == (10,)
    np.testing.assert_array_equal(bias.grad, np.full(10, 5.0))
    column = Tensor(np.ones((5, 1)), requires_grad=True)
    (x * column).sum().backward()
    np.testing.assert_array_equal(column.grad, np.full((5, 1), 10.0))


def test_float32_stays_float32():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    y = (x * 2.5 + 1.0) / 3.0 - 0.5
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.array([1.0]), dtype=np.float64).dtype == np.float64


def test_mixed_precision_gradient_takes_each_inputs_dtype():
    a = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(3, dtype=np.float64), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_nll_is_averaged_over_the_batch_not_over_all_elements():
    logits = Tensor(np.zeros((4, 10)), requires_grad=True)
    loss = tg.ops.CrossEntropy.apply(logits, labels=np.zeros(4, dtype=np.int64))
    np.testing.assert_allclose(loss.item(), np.log(10))
    loss.backward()
    np.testing.assert_allclose(logits.grad.sum(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(logits.grad[:, 0], (0.1 - 1) / 4)


# ---- semantics ------------------------------------------------------------------------------------------


def test_where_never_leaks_nan_from_the_untaken_branch():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    with np.errstate(all="ignore"):
        y = tg.where(x.data > 0, x.log(), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.5])


def test_relu_subgradient_at_zero_is_zero():
    x = Tensor(np.array([-1.0, 0.0, 1.0]), requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_abs_and_clip_subgradients_at_their_kinks():
    x = Tensor(np.array([0.0, -1.0, 1.0, 2.0]), requires_grad=True)
    x.abs().sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, -1.0, 1.0, 1.0])
    x.zero_grad()
    x.clip(-1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0, 0.0])


def test_max_ties_share_the_gradient_evenly():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([1.0, 1.0], requires_grad=True)
    tg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 1.0])
    np.testing.assert_array_equal(b.grad, [0.5, 0.0])


def test_power_zero_has_zero_gradient_even_at_zero():
    x = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_repeated_integer_indices_accumulate():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([0, 0, 3, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 0.0, 1.0])


def test_no_grad_context_and_decorator_record_nothing():
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.grad_fn is None

    @no_grad()
    def double(t):
        return t * 2.0

    assert not double(x).requires_grad
    assert tg.is_grad_enabled()
    assert (x * 2.0).requires_grad


def test_requires_grad_propagates_like_pytorch():
    a = Tensor([1.0], requires_grad=True)
    b = Tensor([2.0])
    assert (a * b).requires_grad and not (b * b).requires_grad
    assert not a.detach().requires_grad and a.detach().data is a.data
    assert (a * b).grad_fn is not None and a.is_leaf and not (a * b).is_leaf


def test_ops_never_mutate_their_inputs():
    data = np.array([[1.0, -2.0], [3.0, 4.0]])
    keep = data.copy()
    x = Tensor(data, requires_grad=True)
    y = ((x * 2.0).relu() @ x.T).log_softmax(1).sum() + x.max() + x[0].sum()
    y.backward()
    np.testing.assert_array_equal(data, keep)


def test_leaf_grad_is_not_aliased_to_the_upstream_gradient():
    x = Tensor(np.ones(3), requires_grad=True)
    upstream = np.ones(3)
    (x + 0.0).backward(upstream)
    x.grad += 1
    np.testing.assert_array_equal(upstream, np.ones(3))


def test_iterating_gives_differentiable_rows_and_truth_follows_numpy():
    x = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    rows = list(x)
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    (rows[0] * 2.0 + rows[2]).sum().backward()
    np.testing.assert_array_equal(x.grad, [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])
    assert bool(Tensor([1.0])) and not bool(Tensor(0.0))
    with pytest.raises(ValueError):
        bool(x)


def test_argmax_is_not_differentiable():
    x = Tensor(np.array([[1.0, 5.0, 2.0]]), requires_grad=True)
    idx = x.argmax(axis=1)
    assert idx.dtype == np.int64 and not idx.requires_grad
    assert idx.item() == 1


def test_repr_is_readable():
    text = repr(Tensor([1.0, 2.0], requires_grad=True) * 2.0)
    assert text.startswith("Tensor([2., 4.]") and "grad_fn=<MulBackward>" in text and "float32" in text


def test_random_helpers_are_seeded():
    a = tg.randn(3, 4, generator=7)
    b = tg.randn(3, 4, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, tg.randn(3, 4, generator=8).data)
    u = tg.uniform(1000, low=-2, high=3, generator=1)
    assert u.data.min() >= -2 and u.data.max() < 3 and u.dtype == np.float32
    assert tg.zeros(2, 3).shape == (2, 3) and tg.ones((4,)).data.sum() == 4


# ---- errors that help -----------------------------------------------------------------------------------


def test_shape_mismatch_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"Add.*\(2, 3\).*\(4,\)"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\) don't align.*\(3\).*\(4\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


def test_backward_on_a_tensor_without_grad_says_what_to_do():
    with pytest.raises(RuntimeError, match="requires_grad=True"):
        (Tensor([1.0]) * 2.0).backward()


def test_backward_on_a_non_scalar_without_grad_says_what_to_do():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(2, 2\).*\.sum\(\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the tensor has shape \(2, 2\)"):
        (x * 2.0).backward(np.ones(3))


@pytest.mark.parametrize("data", [[1, 2, 3], [True, False]])
def test_integer_or_boolean_data_cannot_require_grad(data):
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(data, requires_grad=True)


# ---- gradcheck itself ---------------------------------------------------------------------------------


def test_gradcheck_reports_the_worst_element_of_a_wrong_gradient():
    class WrongSquare(tg.Function):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, g):
            out = 2 * self.a * g
            out.reshape(-1)[4] += 0.1  # a planted error at flat index 4
            return out

    x = np.linspace(-1, 1, 6).reshape(2, 3)
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongSquare.apply, [x])
    assert "(1, 1)" in str(info.value)
    result = gradcheck(WrongSquare.apply, [x], raise_exception=False)
    assert not result.passed and result.inputs[0].worst_element == (1, 1)


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2.0, [np.ones(3, dtype=np.float32)])


def test_complex_step_matches_central_differences_to_machine_precision():
    x = np.array([0.3, -1.2, 2.0])
    f = lambda t: (t.exp() * t.tanh()).sum()  # noqa: E731
    (complex_step,) = numerical_grad(f, [x], method="complex")
    (central,) = numerical_grad(f, [x])
    exact = np.exp(x) * (np.tanh(x) + 1 - np.tanh(x) ** 2)
    np.testing.assert_allclose(complex_step, exact, rtol=1e-14)
    np.testing.assert_allclose(central, exact, rtol=1e-9)


# ---- what backward may hand out without a copy ----------------------------------------------------------------


def _gradients_share_no_memory(*arrays):
    for i, a in enumerate(arrays):
        for b in arrays[i + 1 :]:
            assert not np.shares_memory(a, b)


def test_no_two_gradients_share_memory():
    # Add hands its upstream to both inputs, reshape a view of it, a retained intermediate keeps its upstream:
    # each leaf's .grad must still be its own array, so that `x.grad += ...` (or an optimizer) touches only x.
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.ones((2, 3)), requires_grad=True)
    c = Tensor(np.ones(6), requires_grad=True)
    kept = (a + b).retain_grad()
    upstream = np.arange(6.0).reshape(2, 3)
    (kept + c.reshape(2, 3)).backward(upstream)
    _gradients_share_no_memory(a.grad, b.grad, c.grad, kept.grad, upstream)
    a.grad += 1
    np.testing.assert_array_equal(b.grad, upstream)


def test_a_gradient_the_op_made_for_one_input_becomes_the_leafs_grad_without_a_copy():
    class Doubled(tg.Function):
        made = None

        def forward(self, a):
            return a * 2

        def backward(self, g):
            Doubled.made = g * 2  # a new array, for this input alone
            return Doubled.made

    x = Tensor(np.ones(3), requires_grad=True)
    Doubled.apply(x).backward(np.ones(3))
    assert x.grad is Doubled.made
