"""models/cnn.py: the LeNet-style network from its spec, and its hand-derived backprop equal to autograd's."""

import numpy as np
import pytest
from engine_programs import assert_close
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np import Tensor
from tinygrad_np.cli import main
from tinygrad_np.compare.network import compare_network
from tinygrad_np.models import cnn as reference
from tinygrad_np.nn import functional as F


def autograd(model, x, y):
    """Every layer's output by the hand-derived code's name, and every parameter's gradient, from autograd."""
    outputs, out = {}, Tensor(x)
    for index, layer in enumerate(model):
        out = layer(out)
        outputs.update({name: out.data for name, i in reference.ACTIVATION_LAYERS.items() if i == index})
    F.cross_entropy(out, y).backward()
    names = reference.tutorial_names(model)
    state = dict(model.named_parameters())
    return outputs, {f"d{name}": state[state_name].grad for name, state_name in names.items()}


def batch(seed, m, quantised):
    """Images in [0, 1]; quantised ones (few grey levels, blank margins) tie inside max-pooling windows."""
    rng = np.random.default_rng(seed)
    x = rng.random((m, 1, 28, 28))
    if quantised:
        x = np.round(x * 2) / 2
        x[:, :, :4] = 0  # blank rows: the ReLUs' zeros tie in every window there
    return x, rng.integers(0, 10, m)


@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 6), quantised=st.booleans())
def test_hand_derived_gradients_equal_autograds(seed, m, quantised):
    model = reference.cnn(channels=(4, 6), hidden_size=12, generator=seed % 1000, dtype=np.float64)
    x, y = batch(seed, m, quantised)
    outputs, grads = autograd(model, x, y)
    params = reference.params_from_model(model)
    forward = reference.forward_prop(params, x)
    for name, value in outputs.items():
        assert_close(forward[name], value, f"forward {name}", 1e-10)
    hand = reference.backward_prop(params, x, y)
    assert list(hand) == ["dW1", "db1", "dW2", "db2", "dW3", "db3", "dW4", "db4"]
    for name, value in grads.items():
        assert_close(hand[name], value, name, 1e-10)


def test_the_default_network_is_lenet_shaped_and_declared_by_its_spec():
    model = reference.cnn()
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes == {"0.weight": (16, 1, 5, 5), "0.bias": (16,), "3.weight": (32, 16, 5, 5), "3.bias": (32,),
                      "7.weight": (128, 512), "7.bias": (128,), "9.weight": (10, 128), "9.bias": (10,)}
    assert [type(layer).__name__ for layer in model] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                                                         "Flatten", "Linear", "ReLU", "Linear"]
    assert model(Tensor(np.zeros((2, 1, 28, 28), np.float32))).shape == (2, 10)


@given(seed=st.integers(0, 2**32 - 1), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_col2im_is_the_adjoint_of_im2col(seed, kernel):
    """<im2col(X), D> = <X, col2im(D)>: col2im adds each window's gradient back where im2col read it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3, 6, 5))
    cols = reference.im2col(x, kernel)
    d = rng.normal(size=cols.shape)
    assert np.isclose(np.sum(cols * d), np.sum(x * reference.col2im(d, x.shape, kernel)), rtol=1e-12)


def test_max_pool_routes_a_tie_to_the_first_maximum_in_row_major_order():
    a = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    np.testing.assert_array_equal(reference.maxpool_backward(np.ones((1, 1, 1, 1)), a)[0, 0], [[0, 1], [0, 0]])


def test_a_row_layout_batch_is_refused_naming_the_shape():
    params = reference.params_from_model(reference.cnn())
    with pytest.raises(ValueError, match=r"X must be images \(m, 1, H, W\), got shape \(2, 784\)"):
        reference.forward_prop(params, np.zeros((2, 784)))


# ---- tinygrad-np compare --model cnn ------------------------------------------------------------------------


def test_compare_model_cnn_puts_both_sides_side_by_side_layer_by_layer(capsys):
    assert main(["compare", "--model", "cnn", "--offline", "--batch-size", "6", "--numerical",
                 "--numerical-entries", "20"]) == 0
    out = capsys.readouterr().out
    for row in ("Z1    (6, 16, 24, 24)", "P2    (6, 32, 4, 4)", "Z4    (6, 10)", "dW1 [0.weight]  (16, 1, 5, 5)",
                "db4 [9.bias]"):
        assert row in out, row
    assert out.count("PASS") >= 18 and "result: PASS" in out


def test_a_slip_in_the_hand_derived_convolution_fails_there_and_the_numerical_check_blames_it():
    """dW2 without its 1/m (the mean's factor): FAIL on dW2 alone, blamed on the manual side."""
    model = reference.cnn(channels=(2, 3), hidden_size=8, dtype=np.float64)
    x, y = batch(1, 4, quantised=False)

    def slipped_backward(params, X, Y):
        grads = reference.backward_prop(params, X, Y)
        return {**grads, "dW2": grads["dW2"] * len(X)}

    report = compare_network(model, reference.forward_prop, slipped_backward, x, y, numerical=True,
                             parameters=reference.tutorial_names(model), layers=reference.ACTIVATION_LAYERS)
    assert report.failed == ["dW2"] and report.blamed == {"dW2": "manual"}
    assert [item.name for item in report.forward] == list(reference.ACTIVATION_LAYERS)
    assert all(item.verdict == "PASS" for item in report.forward)


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "cnn", "--hidden-sizes", "8"], "--hidden-sizes don't apply to --model cnn"),
    (["--model", "cnn", "--dropout", "0.5"], "--dropout don't apply to --model cnn"),
    (["--model", "tutorial", "--hidden-sizes", "8"], "--hidden-sizes is for an MLP: use --model mlp"),
])
def test_compare_refuses_options_the_cnn_or_tutorial_network_would_ignore(capsys, argv, message):
    assert main(["compare", "--offline", *argv]) == 2
    assert message in capsys.readouterr().err
