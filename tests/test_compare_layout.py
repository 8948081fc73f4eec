"""Layouts: detected from the code's own parameters where their shapes decide, asked for where they don't."""

import itertools

import numpy as np
import pytest

from tinygrad_np import nn
from tinygrad_np.compare import FAIL, PASS, compare_model, load_model_params, model_params
from tinygrad_np.compare.layout import benign_bias_shape, named_layout, parameter_names, resolve_layout


def mlp(sizes=(6, 5, 3), bias=True):
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out, bias=bias, generator=fan_in, dtype=np.float64), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def resolve(model, layout, params):
    names = parameter_names(model)
    return resolve_layout(layout, names, {k: v.shape for k, v in model.state_dict().items()}, params)


@pytest.mark.parametrize("name", ["column", "torch", "row"])
def test_each_layout_is_detected_from_the_parameters_shapes_and_said(name):
    model = mlp()
    layout, note = resolve(model, None, model_params(model, name))
    assert layout.name == name
    assert note == "detected from your parameters' shapes"


def test_row_biases_may_be_vectors_or_rows_even_mixed():
    model = mlp()
    params = model_params(model, "row")
    params["b1"] = params["b1"][None, :]  # (1, 5); b2 stays (3,)
    layout, _ = resolve(model, None, params)
    assert layout.name == "row" and layout.forms["b1"] == "(1, n)" and layout.forms["b2"] == "(n,)"
    assert resolve(model, "row", params)[0].forms["b1"] == "(1, n)"


@pytest.mark.parametrize(
    ("sizes", "bias", "layout", "message"),
    [
        ((4, 4, 4), False, "torch", "fit two layouts"),  # square weights, no biases to tell X's orientation
        ((6, 5, 3), False, "torch", "nothing says how X is laid out"),  # (out, in) weights: column or torch
    ],
)
def test_shapes_that_fit_two_layouts_ask_for_one(sizes, bias, layout, message):
    model = mlp(sizes, bias)
    with pytest.raises(ValueError, match=f"{message}.*pass layout='column'"):
        resolve(model, None, model_params(model, layout))
    assert resolve(model, layout, model_params(model, layout))[0].batch == "row"


def test_without_parameters_of_its_own_the_code_must_say_its_layout():
    with pytest.raises(ValueError, match="no parameters of yours to read it from"):
        resolve(mlp(), None, None)


def test_a_named_layout_that_contradicts_the_shapes_is_refused():
    model = mlp()
    with pytest.raises(ValueError, match=r"layout='column' has W1 as \(out, in\), but yours is \(6, 5\) = \(in, out\)"):
        resolve(model, "column", model_params(model, "row"))
    with pytest.raises(ValueError, match=r"your W1 has shape \(7, 5\), but the model's layer needs"):
        resolve(model, None, {**model_params(model, "row"), "W1": np.zeros((7, 5))})
    with pytest.raises(ValueError, match="your parameters lack b2"):
        resolve(model, None, {k: v for k, v in model_params(model, "row").items() if k != "b2"})
    with pytest.raises(ValueError, match="unknown layout 'rows'"):
        resolve(model, "rows", None)


def test_a_per_parameter_map_covers_anything_else():
    model = mlp()
    mapping = {"x": "column", "w1": "(in, out)", "B1": "(n, 1)", "W2": "(out,in)", "b2": "(1, n)"}
    layout, note = resolve(model, mapping, None)
    assert layout.name == "custom" and layout.batch == "column" and note is None
    assert dict(layout.forms) == {"W1": "(in, out)", "b1": "(n, 1)", "W2": "(out, in)", "b2": "(1, n)"}
    with pytest.raises(ValueError, match="names W3, which the model doesn't have"):
        resolve(model, {**mapping, "W3": "(in, out)"}, None)
    with pytest.raises(ValueError, match=r"layout\['b1'\] must be one of \(n, 1\), \(n,\), \(1, n\)"):
        resolve(model, {**mapping, "b1": "(n, 2)"}, None)


@pytest.mark.parametrize("name", ["column", "torch", "row"])
def test_parameters_go_into_a_layout_and_back_unchanged(name):
    model, other = mlp(), mlp((6, 5, 3))
    for parameter in other.parameters():
        parameter.data = parameter.data * 0
    load_model_params(other, model_params(model, name), name)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
        assert other.state_dict()[key].flags.c_contiguous  # a transposed layout is not kept as a view
    layout = named_layout(name, parameter_names(model))
    assert layout.batch_to_user(np.zeros((7, 6))).shape == ((6, 7) if name == "column" else (7, 6))


@pytest.mark.parametrize(
    ("gradient", "bias", "benign"),
    [((1, 5), (5,), True), ((5,), (1, 5), True), ((5,), (5, 1), False), ((1, 5), (5, 1), False),
     ((5, 1), (5,), False), ((5,), (5,), False), ((1,), (5,), False), ((), (1,), True), ((1, 1, 5), (5,), True)],
)
def test_which_bias_gradient_shapes_update_the_bias_the_same(gradient, bias, benign):
    assert benign_bias_shape(gradient, bias) is benign


def test_code_in_a_custom_layout_passes_and_its_hints_speak_that_layout():
    """X as columns but W1 kept (in, out), multiplied as W1.T @ X: the map describes it."""
    model = mlp((6, 5, 3))
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 6)), rng.integers(0, 3, 8)
    mapping = {"X": "column", "W1": "(in, out)", "b1": "(n, 1)", "W2": "(out, in)", "b2": "(n, 1)"}

    def backward(X, Y, W1, b1, W2, b2, transposed=False):
        Z1 = W1.T @ X + b1
        A1 = np.maximum(Z1, 0)
        Z2 = W2 @ A1 + b2
        P = np.exp(Z2 - Z2.max(axis=0)) / np.exp(Z2 - Z2.max(axis=0)).sum(axis=0)
        dZ2 = (P - np.eye(3)[Y].T) / X.shape[1]
        dZ1 = W2.T @ dZ2 * (Z1 > 0)
        dW1 = dZ1 @ X.T if transposed else X @ dZ1.T
        return {"dW1": dW1, "db1": dZ1.sum(axis=1, keepdims=True), "dW2": dZ2 @ A1.T, "db2": dZ2.sum(axis=1)[:, None]}

    assert compare_model(model, backward, x, y, layout=mapping).verdict == PASS
    report = compare_model(model, lambda X, Y, W1, b1, W2, b2: backward(X, Y, W1, b1, W2, b2, True), x, y,
                           layout=mapping)
    assert report["dW1"].verdict == FAIL
    assert "transposed? (dW1 = X dZ1^T / m has W1's shape (in, out))" in report["dW1"].pair.note
