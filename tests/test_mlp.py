"""MLPs of any depth: the hand-derived backprop (weight decay, dropout masks) is what autograd computes."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tinygrad_np import Tensor, nn, optim
from tinygrad_np.models import mlp as reference
from tinygrad_np.nn import functional as F

TOLERANCE = 1e-10


@st.composite
def architectures(draw, max_hidden_layers: int = 4):
    """(input_size, hidden_sizes, num_classes, m): depth 1-4, small random widths, batch 1 included."""
    hidden = tuple(draw(st.lists(st.integers(1, 12), min_size=1, max_size=max_hidden_layers)))
    return draw(st.integers(1, 20)), hidden, draw(st.integers(2, 10)), draw(st.integers(1, 9))


def make_case(architecture, seed: int, dropout: float = 0.0):
    """A float64 model with random weights (nonzero biases), a batch, labels, and masks if dropout > 0."""
    input_size, hidden, classes, m = architecture
    rng = np.random.default_rng(seed)
    model = reference.mlp(input_size, hidden, classes, dropout=dropout, generator=rng, dtype=np.float64)
    params = {name: rng.normal(0, 1 / np.sqrt(value.shape[1] if name.startswith("W") else 4), value.shape)
              for name, value in reference.params_from_model(model).items()}
    reference.load_params(model, params)
    x, y = rng.normal(size=(m, input_size)), rng.integers(0, classes, m)
    masks = reference.draw_dropout_masks(hidden, m, dropout, rng) if dropout else None
    return model, params, x, y, masks


def autograd_grads(model, x, y, weight_decay=0.0, masks=None):
    """Run the Sequential layer by layer (Dropout replaced by the given keep-masks), loss + L2, backward."""
    model.zero_grad()
    out, masks_left = Tensor(x), list(masks or [])
    for layer in model:
        if isinstance(layer, nn.Dropout):
            if masks is not None:
                out = out * Tensor(masks_left.pop(0).T / (1 - layer.p))
        else:
            out = layer(out)
    loss = F.cross_entropy(out, y)
    for name, parameter in model.named_parameters():
        if name.endswith(".weight"):
            loss = loss + (parameter * parameter).sum() * (weight_decay / 2)
    loss.backward()
    return {name: parameter.grad for name, parameter in model.named_parameters()}, float(loss.data)


def assert_grads_match(model, auto, manual, tolerance=TOLERANCE):
    for name, state_name in reference.tutorial_names(model).items():
        expected = manual[f"d{name}"]
        actual = auto[state_name][:, None] if name.startswith("b") else auto[state_name]
        assert actual.shape == expected.shape, name
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance, err_msg=name)


# ---------------------------------------------------------------------------------------------- the module


def test_mlp_layers_and_names():
    model = reference.mlp(784, (128, 64), 10)
    assert [type(layer).__name__ for layer in model] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert reference.tutorial_names(model) == {"W1": "0.weight", "b1": "0.bias", "W2": "2.weight", "b2": "2.bias",
                                               "W3": "4.weight", "b3": "4.bias"}
    dropped = reference.mlp(784, (128, 64), 10, dropout=0.2)
    assert [type(layer).__name__ for layer in dropped] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert reference.tutorial_names(dropped)["W3"] == "6.weight"
    assert {value.shape for value in reference.params_from_model(dropped).values()} >= {(128, 784), (128, 1)}


def test_mlp_defaults_and_seed():
    model = reference.mlp()
    assert [value.shape for value in model.state_dict().values()] == [(128, 784), (128,), (10, 128), (10,)]
    assert model.state_dict()["0.weight"].dtype == np.float32
    np.testing.assert_array_equal(reference.mlp(generator=5).state_dict()["2.weight"],
                                  reference.mlp(generator=5).state_dict()["2.weight"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"hidden_sizes": (0,)}, "positive"), ({"input_size": -3}, "positive"), ({"dropout": 1.0}, r"\[0, 1\)"),
     ({"dropout": -0.1}, r"\[0, 1\)")],
)
def test_mlp_names_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        reference.mlp(**kwargs)


def test_params_round_trip_and_shape_errors():
    model = reference.mlp(6, (5, 4), 3, dtype=np.float64)
    params = {name: np.full(value.shape, float(i)) for i, (name, value) in
              enumerate(reference.params_from_model(model).items())}
    back = reference.params_from_model(reference.load_params(model, params))
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value)
    with pytest.raises(ValueError, match="b2 must have shape"):
        reference.load_params(model, {**params, "b2": params["b2"][:, 0]})
    with pytest.raises(ValueError, match="expected exactly the parameters"):
        reference.load_params(model, {name: value for name, value in params.items() if name != "W3"})


# ---------------------------------------------------------------------------------------------- the gradients


@given(architecture=architectures(), seed=st.integers(0, 2**32 - 1))
@example(architecture=(3, (4,), 2, 1), seed=0)
def test_autograd_gradients_equal_the_hand_derived_ones(architecture, seed):
    model, params, x, y, _ = make_case(architecture, seed)
    auto, auto_loss = autograd_grads(model, x, y)
    manual = reference.backward(params, reference.forward(params, x.T), x.T, y)
    assert_grads_match(model, auto, manual)
    assert reference.loss(params, x.T, y) == pytest.approx(auto_loss, rel=1e-12)


@given(architecture=architectures(), seed=st.integers(0, 2**32 - 1), weight_decay=st.floats(1e-4, 1.0),
       dropout=st.sampled_from([0.0, 0.1, 0.5, 0.8]))
@example(architecture=(3, (4, 4, 4, 4), 2, 1), seed=0, weight_decay=0.5, dropout=0.5)
def test_weight_decay_and_dropout_masks_match_autograd(architecture, seed, weight_decay, dropout):
    """dW += wd W (biases not decayed); dropout scales kept units by 1/(1-p) in both passes."""
    model, params, x, y, masks = make_case(architecture, seed, dropout)
    auto, auto_loss = autograd_grads(model, x, y, weight_decay, masks)
    cache = reference.forward(params, x.T, masks, dropout)
    manual = reference.backward(params, cache, x.T, y, weight_decay, masks, dropout)
    assert_grads_match(model, auto, manual)
    assert reference.loss(params, x.T, y, weight_decay, masks, dropout) == pytest.approx(auto_loss, rel=1e-12)


def test_weight_decay_leaves_biases_alone():
    _, params, x, y, _ = make_case((4, (3,), 3, 5), seed=1)
    cache = reference.forward(params, x.T)
    plain = reference.backward(params, cache, x.T, y)
    decayed = reference.backward(params, cache, x.T, y, weight_decay=0.3)
    for name in params:
        expected = plain[f"d{name}"] + (0.3 * params[name] if name.startswith("W") else 0)
        np.testing.assert_allclose(decayed[f"d{name}"], expected, rtol=1e-14)


def test_dropped_units_get_no_gradient_and_kept_ones_are_scaled():
    _, params, x, y, _ = make_case((5, (6,), 3, 4), seed=2)
    masks = [np.ones((6, 4))]
    masks[0][2, :] = 0  # unit 2 dropped for every example
    cache = reference.forward(params, x.T, masks, 0.5)
    grads = reference.backward(params, cache, x.T, y, dropout_masks=masks, dropout=0.5)
    np.testing.assert_array_equal(cache["A1"][2], 0)
    np.testing.assert_array_equal(grads["dW1"][2], 0)
    np.testing.assert_array_equal(grads["db1"][2], 0)
    np.testing.assert_allclose(cache["A1"][0], 2 * np.maximum(cache["Z1"][0], 0))


def test_real_nn_dropout_in_training_mode_matches_the_masks_it_drew():
    """nn.Dropout's own random masks (read off its output) fed to the hand-derived backward give its gradients."""
    model, params, x, y, _ = make_case((6, (8, 7), 4, 5), seed=3, dropout=0.4)
    model.train()
    model.zero_grad()
    out, masks = Tensor(x), []
    for layer in model:
        before = out
        out = layer(out)
        if isinstance(layer, nn.Dropout):
            # Where the input is positive the output says whether the unit was kept; elsewhere nothing
            # depends on the mask (ReLU already zeroed the value and its gradient), so 1 is as good as any.
            masks.append(np.where(before.data > 0, out.data != 0, 1.0).T)
    F.cross_entropy(out, y).backward()
    auto = {name: parameter.grad for name, parameter in model.named_parameters()}
    assert any((mask == 0).any() for mask in masks)  # it did drop something
    manual = reference.manual_backward(params, x.T, y, dropout_masks=masks, dropout=0.4)
    assert_grads_match(model, auto, manual)


def test_numerical_gradient_of_the_loss_matches_backward():
    """The reference checked on its own: central differences of `loss` (weight decay and dropout on)."""
    _, params, x, y, masks = make_case((4, (5, 3), 3, 6), seed=4, dropout=0.3)
    grads = reference.manual_backward(params, x.T, y, weight_decay=0.1, dropout_masks=masks, dropout=0.3)
    h = 1e-6
    for name, value in params.items():
        for index in np.ndindex(value.shape):
            step = np.zeros_like(value)
            step[index] = h
            plus = reference.loss({**params, name: value + step}, x.T, y, 0.1, masks, 0.3)
            minus = reference.loss({**params, name: value - step}, x.T, y, 0.1, masks, 0.3)
            assert abs((plus - minus) / (2 * h) - grads[f"d{name}"][index]) < 1e-7, (name, index)


@given(architecture=architectures(max_hidden_layers=3), seed=st.integers(0, 2**32 - 1),
       steps=st.integers(1, 15), weight_decay=st.sampled_from([0.0, 0.01, 0.1]),
       dropout=st.sampled_from([0.0, 0.3]))
@example(architecture=(4, (3, 3, 3), 3, 1), seed=0, steps=15, weight_decay=0.1, dropout=0.3)
def test_sgd_training_follows_the_hand_derived_updates(architecture, seed, steps, weight_decay, dropout):
    """Trajectory equivalence: optim.SGD (weight_decay on weights only) == W -= lr (dW + wd W), step after step."""
    model, params, x, y, _ = make_case(architecture, seed, dropout)
    hidden = architecture[1]
    weights = [p for name, p in model.named_parameters() if name.endswith(".weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith(".bias")]
    optimizers = [optim.SGD(weights, lr=0.2, weight_decay=weight_decay), optim.SGD(biases, lr=0.2)]
    mask_rng = np.random.default_rng(seed)
    for _ in range(steps):
        masks = reference.draw_dropout_masks(hidden, len(x), dropout, mask_rng) if dropout else None
        for optimizer in optimizers:
            optimizer.zero_grad()
        autograd_grads(model, x, y, 0.0, masks)  # the L2 term is the optimizer's weight_decay here
        for optimizer in optimizers:
            optimizer.step()
        grads = reference.manual_backward(params, x.T, y, weight_decay, masks, dropout)
        params = reference.update_params(params, grads, 0.2)
    trained = reference.params_from_model(model)
    for name, value in params.items():
        np.testing.assert_allclose(trained[name], value, rtol=1e-9, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------------------------------------- bad input


def test_forward_names_the_layout_and_mask_mistakes():
    _, params, x, _, _ = make_case((4, (5,), 3, 6), seed=5)
    with pytest.raises(ValueError, match=r"pass X = x\.T"):
        reference.forward(params, x)
    with pytest.raises(ValueError, match="one dropout mask per hidden layer"):
        reference.forward(params, x.T, [np.ones((5, 6))] * 2, 0.5)
    with pytest.raises(ValueError, match=r"must be \(units, m\) = \(5, 6\)"):
        reference.forward(params, x.T, [np.ones((6, 5))], 0.5)
    with pytest.raises(ValueError, match="no gaps"):
        reference.forward({"W1": params["W1"], "b1": params["b1"], "W3": params["W2"], "b3": params["b2"]}, x.T)
