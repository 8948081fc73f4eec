"""The tutorial's 784-10-10 network: its hand-derived NumPy backprop is what autograd computes, step for step."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tinygrad_np import Tensor, optim
from tinygrad_np.models import two_layer as tutorial
from tinygrad_np.nn import functional as F

TOLERANCE = 1e-10  # float64: both sides do the same arithmetic in a different order


def random_params(rng: np.random.Generator, scale: float = 0.5):
    """W1 (10, 784), b1 (10, 1), W2 (10, 10), b2 (10, 1), float64."""
    return (
        rng.normal(0, scale / np.sqrt(28), (10, 784)),
        rng.normal(0, scale, (10, 1)),
        rng.normal(0, scale, (10, 10)),
        rng.normal(0, scale, (10, 1)),
    )


def autograd_grads(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The module's gradients of the mean cross-entropy, by state-dict name."""
    model.zero_grad()
    F.cross_entropy(model(Tensor(x)), y).backward()
    return {name: parameter.grad for name, parameter in model.named_parameters()}


def assert_close(actual: np.ndarray, expected: np.ndarray, tolerance: float = TOLERANCE) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)


# ---------------------------------------------------------------------------------------------- the module


def test_two_layer_is_linear_relu_linear_with_the_tutorials_shapes():
    model = tutorial.two_layer()
    assert [type(layer).__name__ for layer in model] == ["Linear", "ReLU", "Linear"]
    shapes = {name: value.shape for name, value in model.state_dict().items()}
    assert shapes == {"0.weight": (10, 784), "0.bias": (10,), "2.weight": (10, 10), "2.bias": (10,)}
    assert all(value.dtype == np.float32 for value in model.state_dict().values())
    assert all(value.dtype == np.float64 for value in tutorial.two_layer(dtype=np.float64).state_dict().values())


def test_two_layer_weights_flow_from_the_seed():
    first, again, other = tutorial.two_layer(3), tutorial.two_layer(3), tutorial.two_layer(4)
    for name, value in first.state_dict().items():
        np.testing.assert_array_equal(value, again.state_dict()[name])
    assert not np.array_equal(first.state_dict()["0.weight"], other.state_dict()["0.weight"])
    # One generator feeds both layers: they must not get the same stream.
    assert not np.array_equal(first.state_dict()["2.weight"], first.state_dict()["0.weight"][:, :10])


def test_tutorial_init_of_the_module_is_exactly_init_params():
    model = tutorial.two_layer(7, dtype=np.float64, init="tutorial")
    params = tutorial.tutorial_params_from_model(model)
    for name, expected in zip(("W1", "b1", "W2", "b2"), tutorial.init_params(7), strict=True):
        np.testing.assert_array_equal(params[name], expected)
    assert params["W1"].min() >= -0.5 and params["W1"].max() < 0.5


# ---------------------------------------------------------------------------------------------- the mapping


def test_mapping_between_the_tutorials_arrays_and_the_state_dict():
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = random_params(rng)
    model = tutorial.load_tutorial_params(tutorial.two_layer(dtype=np.float64), W1, b1, W2, b2)
    state = model.state_dict()
    np.testing.assert_array_equal(state["0.weight"], W1)
    np.testing.assert_array_equal(state["0.bias"][:, None], b1)
    np.testing.assert_array_equal(state["2.weight"], W2)
    np.testing.assert_array_equal(state["2.bias"][:, None], b2)
    back = tutorial.tutorial_params_from_model(model)
    for name, value in zip(("W1", "b1", "W2", "b2"), (W1, b1, W2, b2), strict=True):
        np.testing.assert_array_equal(back[name], value)
    # Copies: changing what came out does not change the model.
    back["W1"][0, 0] += 1.0
    assert model.state_dict()["0.weight"][0, 0] == W1[0, 0]


def test_loading_casts_to_the_models_dtype():
    W1, b1, W2, b2 = tutorial.init_params(0)
    model = tutorial.load_tutorial_params(tutorial.two_layer(dtype=np.float32), W1, b1, W2, b2)
    assert model.state_dict()["0.weight"].dtype == np.float32
    np.testing.assert_array_equal(model.state_dict()["0.weight"], W1.astype(np.float32))


def test_loading_names_the_wrongly_shaped_array():
    W1, b1, W2, b2 = tutorial.init_params(0)
    with pytest.raises(ValueError, match=r"b1 must have shape \(10, 1\)"):
        tutorial.load_tutorial_params(tutorial.two_layer(), W1, b1[:, 0], W2, b2)
    with pytest.raises(ValueError, match=r"W1 must have shape \(10, 784\)"):
        tutorial.load_tutorial_params(tutorial.two_layer(), W1.T, b1, W2, b2)


def test_mapping_refuses_a_model_that_is_not_the_tutorials():
    from tinygrad_np.models.mlp import mlp

    with pytest.raises(ValueError, match="two_layer"):
        tutorial.tutorial_params_from_model(mlp(hidden_sizes=(32,)))


@given(m=st.integers(1, 32), seed=st.integers(0, 2**32 - 1))
@example(m=1, seed=0)
def test_module_forward_is_forward_prop_transposed(m, seed):
    """X == x.T and Z2 == logits.T: the module and the tutorial compute the same function."""
    rng = np.random.default_rng(seed)
    params = random_params(rng)
    x = rng.random((m, 784))
    model = tutorial.load_tutorial_params(tutorial.two_layer(dtype=np.float64), *params)
    Z1, A1, Z2, A2 = tutorial.forward_prop(*params, x.T)
    hidden = model[0](Tensor(x))
    assert_close(hidden.data.T, Z1)
    assert_close(model[1](hidden).data.T, A1)
    assert_close(model(Tensor(x)).data.T, Z2)
    assert_close(A2.sum(axis=0), np.ones(m))


# ---------------------------------------------------------------------------------------------- the gradients


@given(m=st.integers(1, 48), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 0.5, 2.0]))
@example(m=1, seed=0, scale=0.5)
def test_autograd_gradients_equal_the_tutorials_formulas(m, seed, scale):
    """dW1 == 0.weight.grad, db1 == 0.bias.grad[:, None], ... in float64, for any batch size (1 included)."""
    rng = np.random.default_rng(seed)
    params = random_params(rng, scale)
    x = rng.random((m, 784))
    y = rng.integers(0, 10, m)
    model = tutorial.load_tutorial_params(tutorial.two_layer(dtype=np.float64), *params)
    grads = autograd_grads(model, x, y)
    Z1, A1, Z2, A2 = tutorial.forward_prop(*params, x.T)
    dW1, db1, dW2, db2 = tutorial.backward_prop(Z1, A1, Z2, A2, params[0], params[2], x.T, y)
    assert_close(grads["0.weight"], dW1)
    assert_close(grads["0.bias"][:, None], db1)
    assert_close(grads["2.weight"], dW2)
    assert_close(grads["2.bias"][:, None], db2)


def test_the_loss_backward_prop_differentiates_is_cross_entropy():
    """A central difference of cross_entropy_loss matches backward_prop: the reference itself is right."""
    rng = np.random.default_rng(1)
    W1, b1, W2, b2 = random_params(rng)
    X, Y = rng.random((784, 5)), rng.integers(0, 10, 5)
    dW1, db1, dW2, db2 = tutorial.backward_prop(*tutorial.forward_prop(W1, b1, W2, b2, X), W1, W2, X, Y)

    def loss(W1=W1, b1=b1, W2=W2, b2=b2):
        return tutorial.cross_entropy_loss(tutorial.forward_prop(W1, b1, W2, b2, X)[3], Y)

    h = 1e-6
    for (i, j) in [(0, 0), (3, 400), (9, 783)]:
        step = np.zeros_like(W1)
        step[i, j] = h
        assert abs((loss(W1=W1 + step) - loss(W1=W1 - step)) / (2 * h) - dW1[i, j]) < 1e-8
    for i in range(10):
        step = np.zeros_like(b2)
        step[i] = h
        assert abs((loss(b2=b2 + step) - loss(b2=b2 - step)) / (2 * h) - db2[i, 0]) < 1e-8
    step = np.zeros_like(W2)
    step[4, 7] = h
    assert abs((loss(W2=W2 + step) - loss(W2=W2 - step)) / (2 * h) - dW2[4, 7]) < 1e-8
    step = np.zeros_like(b1)
    step[2] = h
    assert abs((loss(b1=b1 + step) - loss(b1=b1 - step)) / (2 * h) - db1[2, 0]) < 1e-8


@given(steps=st.integers(1, 30), m=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
@example(steps=30, m=1, seed=0)
def test_sgd_training_follows_the_tutorials_gradient_descent(steps, m, seed):
    """Trajectory equivalence: after N steps from one seed, module + optim.SGD == the tutorial's loop."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((m, 784)), rng.integers(0, 10, m)
    alpha = 0.1
    model = tutorial.two_layer(seed, dtype=np.float64, init="tutorial")
    optimizer = optim.SGD(model.parameters(), lr=alpha)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(Tensor(x)), y).backward()
        optimizer.step()
    W1, b1, W2, b2 = tutorial.gradient_descent(x.T, y, alpha, steps, generator=seed)
    params = tutorial.tutorial_params_from_model(model)
    for name, value in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)):
        assert_close(params[name], value, 1e-9)


def test_update_params_leaves_the_callers_arrays_alone():
    params = tutorial.init_params(0)
    grads = tuple(np.ones_like(p) for p in params)
    before = [p.copy() for p in params]
    updated = tutorial.update_params(*params, *grads, alpha=0.1)
    for old, original, new in zip(params, before, updated, strict=True):
        np.testing.assert_array_equal(old, original)
        np.testing.assert_allclose(new, original - 0.1)


def test_the_tutorials_loop_learns_real_digits():
    from tinygrad_np.data import load_offline_sample

    images, labels = load_offline_sample().arrays("train")
    X, Y = images[:500].T.astype(np.float64), labels[:500]
    W1, b1, W2, b2 = tutorial.init_params(0)
    before = tutorial.cross_entropy_loss(tutorial.forward_prop(W1, b1, W2, b2, X)[3], Y)
    W1, b1, W2, b2 = tutorial.gradient_descent(X, Y, 0.1, 100, params=(W1, b1, W2, b2))
    A2 = tutorial.forward_prop(W1, b1, W2, b2, X)[3]
    assert tutorial.cross_entropy_loss(A2, Y) < before / 2  # 2.89 -> 0.87 with seed 0
    assert tutorial.get_accuracy(tutorial.get_predictions(A2), Y) > 0.6  # 0.71 with seed 0


# ---------------------------------------------------------------------------------------------- the pieces


def test_softmax_shift_changes_nothing_where_the_unshifted_one_works():
    Z = np.random.default_rng(0).normal(0, 5, (10, 7))
    np.testing.assert_allclose(tutorial.softmax(Z), tutorial.softmax_unshifted(Z), rtol=1e-12)
    np.testing.assert_allclose(tutorial.softmax(Z).sum(axis=0), 1.0)


@pytest.mark.parametrize(("dtype", "logit"), [(np.float64, 710.0), (np.float32, 89.0)])
def test_the_unshifted_softmax_overflows_where_the_shifted_one_does_not(dtype, logit):
    """exp(710) is inf in float64 (exp(89) in float32): inf / inf = NaN. The max shift keeps it finite."""
    Z = np.zeros((10, 3), dtype=dtype)
    Z[4, 1] = logit
    assert np.isnan(tutorial.softmax_unshifted(Z)[:, 1]).any()
    stable = tutorial.softmax(Z)
    assert np.isfinite(stable).all()
    assert stable[4, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(stable.sum(axis=0), 1.0, rtol=1e-6)


def test_one_hot_is_classes_by_m_even_without_a_nine_in_the_batch():
    Y = np.array([3, 0, 3])
    one_hot = tutorial.one_hot(Y)
    assert one_hot.shape == (10, 3)
    np.testing.assert_array_equal(one_hot.argmax(axis=0), Y)
    np.testing.assert_array_equal(one_hot.sum(axis=0), 1)


@pytest.mark.parametrize(
    ("labels", "message"),
    [(np.array([0, 10]), r"\[0, 10\)"), (np.array([-1]), r"\[0, 10\)"), (np.array([0.5]), "integer"),
     (np.zeros((2, 2), dtype=int), "1-D")],
)
def test_one_hot_names_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        tutorial.one_hot(labels)


def test_forward_prop_names_a_row_layout_batch():
    params = tutorial.init_params(0)
    with pytest.raises(ValueError, match=r"pass X = x.T"):
        tutorial.forward_prop(*params, np.zeros((5, 784)))


def test_relu_deriv_is_zero_at_the_kink():
    np.testing.assert_array_equal(tutorial.relu_deriv(np.array([-1.0, 0.0, 2.0])), [False, False, True])
