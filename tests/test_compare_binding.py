"""Hand-written code called as written: arguments bound by name, results read by name, its own errors said plainly."""

import numpy as np
import pytest

from tinygrad_np import Tensor, nn
from tinygrad_np.compare import FAIL, PASS, LayerKind, ManualCodeError, Slip, compare_model
from tinygrad_np.compare import layers as compare_layers
from tinygrad_np.compare.binding import Source, read_gradients
from tinygrad_np.models import two_layer as tutorial


def tutorial_case(m=12, seed=0):
    rng = np.random.default_rng(seed)
    return tutorial.two_layer(seed, dtype=np.float64, init="tutorial"), rng.random((m, 784)), rng.integers(0, 10, m)


def test_a_tuple_is_read_by_the_names_in_the_return_line_in_any_order():
    model, x, y = tutorial_case()

    def last_layer_first(Z1, A1, Z2, A2, W1, W2, X, Y):
        dW1, db1, dW2, db2 = tutorial.backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
        return dW2, db2, dW1, db1

    report = compare_model(model, last_layer_first, x, y, manual_forward=tutorial.forward_prop, layout="column")
    assert report.verdict == PASS, report.format()


def test_a_dict_with_more_than_gradients_and_a_loss_are_read_and_said():
    model, x, y = tutorial_case()

    def with_extras(params, X, Y):
        grads = tutorial.manual_backward(params, X, Y)
        A2 = tutorial.manual_forward(params, X)["A2"]
        loss = tutorial.cross_entropy_loss(A2, Y)
        return loss, {**{"grad_" + k[1:]: v for k, v in grads.items()}, "dZ2": A2, "dA1": A2}

    report = compare_model(model, with_extras, x, y, layout="column")
    assert report.verdict == PASS, report.format()
    assert "set aside from your backward's result (not parameter gradients): dZ2, dA1" in report.notes
    assert any(note.startswith("your code's own loss") and "equals the declared objective's" in note
               for note in report.notes)
    report = compare_model(model, with_extras, x, y, layout="column", reduction="sum")  # the loss, too, differs
    assert any("differs from the declared objective's" in note for note in report.notes)


def test_lists_of_weight_and_bias_gradients_are_told_apart_by_size_when_no_source_says():
    names, sizes = ["W1", "b1", "W2", "b2"], {"W1": 12, "b1": 3, "W2": 6, "b2": 2}
    nabla_b, nabla_w = [np.ones((3, 1)), np.ones((2, 1))], [np.ones((3, 4)), np.ones((2, 3))]
    for result in ((nabla_b, nabla_w), (nabla_w, nabla_b)):
        read = read_gradients(result, Source(), names, sizes)
        assert {name: value.shape for name, value in read.grads.items()} == {
            "W1": (3, 4), "b1": (3, 1), "W2": (2, 3), "b2": (2, 1)}
    with pytest.raises(ManualCodeError, match=r"returned \[\(3, 1\)\], with no gradients in it"):
        read_gradients([np.ones((3, 1))], Source(), names, sizes)


def test_when_the_users_code_raises_the_error_says_so_with_the_line_and_the_shapes():
    model, x, y = tutorial_case(m=7)

    def backward_prop(W1, b1, W2, b2, X, Y):
        Z1 = X.dot(W1) + b1  # row-layout habit in column-layout code
        return Z1

    with pytest.raises(ManualCodeError) as failure:
        compare_model(model, backward_prop, x, y, layout="column")
    message = str(failure.value)
    assert message.startswith("your backward function "
                              "test_when_the_users_code_raises_the_error_says_so_with_the_line_and_the_shapes"
                              ".<locals>.backward_prop raised ValueError: shapes (784,7) and (10,784) not aligned")
    assert "at test_compare_binding.py:" in message and "(Z1 = X.dot(W1) + b1" in message
    assert "it was called with W1=(10, 784), b1=(10, 1), W2=(10, 10), b2=(10, 1), X=(784, 7), Y=(7,)" in message
    assert isinstance(failure.value.__cause__, ValueError)


def test_an_argument_that_cannot_be_bound_is_named_with_what_can():
    model, x, y = tutorial_case()
    with pytest.raises(ManualCodeError, match=r"takes keep_prob, which can't be bound by name.*what forward returned "
                                              r"\(A1, A2, Z1, Z2\).*arguments=\{\.\.\.\}"):
        compare_model(model, lambda Z1, X, Y, keep_prob: None, x, y, manual_forward=tutorial.forward_prop,
                      layout="column")
    with pytest.raises(ManualCodeError, match="takes W3, b3, but the model has only W1, b1, W2, b2"):
        compare_model(model, lambda X, W3, b3: None, x, y, layout="column")
    assert compare_model(model, lambda params, X, Y, keep_prob=1.0: tutorial.manual_backward(params, X, Y), x, y,
                         layout="column", arguments={"keep_prob": 0.8}).verdict == PASS


class Net:
    """A network object in the tutorial's layout whose methods read self.params."""

    def __init__(self, seed=3):
        rng = np.random.default_rng(seed)
        self.params = {"W1": rng.normal(size=(10, 784)) * 0.05, "b1": np.zeros((10, 1)),
                       "W2": rng.normal(size=(10, 10)), "b2": np.zeros((10, 1))}

    def backward(self, X, Y):
        return tutorial.manual_backward(self.params, X, Y)


def test_a_method_brings_its_objects_parameters_and_gets_them_back_untouched():
    net, (model, x, y) = Net(), tutorial_case()
    before = {name: value.copy() for name, value in net.params.items()}
    original = net.params
    report = compare_model(model, net.backward, x, y)
    assert report.verdict == PASS, report.format()
    assert "parameters: yours, from Net (self.params)" in report.context
    assert "layout: column: X (features, m) = x.T, W (out, in), b (n, 1) (detected from your parameters' shapes; W2 " \
           "square, taken like the other weights)" in report.context
    assert net.params is original and all(np.array_equal(net.params[k], before[k]) for k in before)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_example_code_is_called_once_per_example_and_combined_as_declared(reduction):
    model, x, y = tutorial_case(m=6)
    calls = []

    def one_example(params, X, Y):
        calls.append(X.shape)
        grads = tutorial.manual_backward(params, X, Y)  # the gradient of this one example's loss
        return grads

    report = compare_model(model, one_example, x, y, manual_forward=tutorial.manual_forward, layout="column",
                           per_example=True, reduction=reduction)
    assert report.verdict == PASS, report.format()
    assert calls == [(784, 1)] * 6 and [item.pair.shape_a for item in report.forward] == [(10, 6)] * 4
    assert f"per example: 6 calls, the gradients {'averaged' if reduction == 'mean' else 'summed'}" in report.context


def test_gradient_ascent_code_is_declared_with_maximize():
    model, x, y = tutorial_case()

    def ascent(params, X, Y):
        return {name: -grad for name, grad in tutorial.manual_backward(params, X, Y).items()}

    assert compare_model(model, ascent, x, y, layout="column", maximize=True).verdict == PASS
    report = compare_model(model, ascent, x, y, layout="column", numerical=True, numerical_entries=50)
    assert report.failed == ["dW1", "db1", "dW2", "db2"] and set(report.blamed.values()) == {"manual"}
    assert report.notes[0].startswith("every manual gradient has the opposite sign of the declared objective's: a "
                                      "sign error") and "declare maximize=True" in report.notes[0]


def test_targets_are_handed_over_as_labels_or_one_hot_in_the_codes_layout():
    model, x, y = tutorial_case(m=5)
    seen = {}

    def backward(params, X, Y, one_hot_Y, m):
        seen.update(Y=Y.shape, one_hot=one_hot_Y.shape, m=m)
        return tutorial.manual_backward(params, X, np.argmax(Y, axis=0) if Y.ndim == 2 else Y)

    compare_model(model, backward, x, y, layout="column")
    assert seen == {"Y": (5,), "one_hot": (10, 5), "m": 5}
    compare_model(model, backward, x, y, layout="column", targets="one_hot")
    assert seen["Y"] == (10, 5)
    with pytest.raises(ValueError, match="targets must be 'labels' or 'one_hot'"):
        compare_model(model, backward, x, y, layout="column", targets="onehot")


def test_a_declared_l2_term_missing_from_the_code_is_named_not_mistaken_for_a_mask():
    model, x, y = tutorial_case()
    report = compare_model(model, tutorial.manual_backward, x, y, layout="column", l2="lambd/m * W",
                           arguments={"lambd": 0.7}, numerical=True, numerical_entries=50)
    assert report.failed == ["dW1", "dW2"] and report.blamed == {"dW1": "manual", "dW2": "manual"}
    assert report.notes[0].startswith("every manual gradient equals the declared loss's without the L2 term")


def test_a_declared_l2_term_missing_from_one_weight_is_named_on_that_weight():
    model, x, y = tutorial_case()

    def backward(params, X, Y):
        grads = tutorial.manual_backward(params, X, Y)
        return {**grads, "dW2": grads["dW2"] + 0.7 / X.shape[1] * params["W2"]}  # dW1 lacks it

    report = compare_model(model, backward, x, y, layout="column", l2="lambd/m * W", arguments={"lambd": 0.7})
    assert report.failed == ["dW1"]
    assert "the declared 'lambd/m * W' is missing from this gradient" in report["dW1"].pair.note


def test_the_relu_mask_hint_keys_on_z_at_most_0_and_survives_a_declared_l2_term():
    model, x, y = tutorial_case()

    def no_mask(params, X, Y):
        W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
        _, A1, _, A2 = tutorial.forward_prop(W1, b1, W2, b2, X)
        dZ2 = A2 - tutorial.one_hot(Y)
        dZ1 = W2.T.dot(dZ2)  # no * (Z1 > 0)
        m = X.shape[1]
        return (dZ1.dot(X.T) / m + 0.1 * W1, dZ1.sum(axis=1, keepdims=True) / m, dZ2.dot(A1.T) / m + 0.1 * W2,
                dZ2.sum(axis=1, keepdims=True) / m)

    report = compare_model(model, no_mask, x, y, layout="column", l2=0.1)
    assert report.failed == ["dW1", "db1"]
    assert all(report[name].pair.note.startswith("a missing ReLU mask: the gradient flows where Z1 <= 0")
               for name in report.failed)


def test_a_bias_summed_over_everything_gets_the_row_layouts_formula():
    model, x, y = tutorial_case()

    def row_code(params, X, Y):
        grads = tutorial.manual_backward({k: (v.T if k.startswith("W") else v[:, None]) for k, v in params.items()},
                                         X.T, Y)
        return {"dW1": grads["dW1"].T, "db1": np.sum(grads["db1"]), "dW2": grads["dW2"].T, "db2": grads["db2"][:, 0]}

    report = compare_model(model, row_code, x, y, layout="row")
    assert report.failed == ["db1"]
    assert report["db1"].pair.note == ("autograd has shape (10,), manual (): summed over all axes? "
                                       "(db1 = sum(dZ1, axis=0) / m, summed over the batch axis)")


def test_code_for_another_squared_loss_is_told_so_once():
    model = nn.Sequential(nn.Linear(4, 3, generator=0, dtype=np.float64), nn.Tanh(),
                          nn.Linear(3, 3, generator=1, dtype=np.float64), nn.Sigmoid())
    rng = np.random.default_rng(1)
    x, y = rng.random((9, 4)), rng.integers(0, 3, 9)

    # torch layout: 1/2 ||a - y||^2 averaged over the examples (with k = 2 outputs it would equal PyTorch's MSE)
    def quadratic(X, one_hot_Y, W1, b1, W2, b2):
        A1 = np.tanh(X @ W1.T + b1)
        A2 = 1 / (1 + np.exp(-(A1 @ W2.T + b2)))
        dZ2 = (A2 - one_hot_Y) * A2 * (1 - A2) / X.shape[0]
        dZ1 = dZ2 @ W2 * (1 - A1**2)
        return {"dW1": dZ1.T @ X, "db1": dZ1.sum(0), "dW2": dZ2.T @ A1, "db2": dZ2.sum(0)}

    assert compare_model(model, quadratic, x, y, layout="torch", loss="quadratic").verdict == PASS
    report = compare_model(model, quadratic, x, y, layout="torch", loss="mse")
    assert report.notes[0] == ("every manual gradient is that of loss='quadratic', reduction='mean' (declared: mse "
                               "(mean)): declare the loss your code differentiates")


class Softplus(nn.Module):
    """y = log(1 + exp(x)), a layer the compare package has never heard of."""

    def forward(self, x):
        return (Tensor(np.ones(x.shape)) + x.exp()).log()


def test_a_new_layer_kind_is_one_table_entry(monkeypatch):
    kind = LayerKind("softplus", "activation", "dZ{l} = dA{l} * sigmoid(Z{l})",
                     (Slip("softplus's derivative left out", lambda z, a, layer: np.ones_like(z)),))
    monkeypatch.setitem(compare_layers.LAYER_KINDS, Softplus, kind)
    model = nn.Sequential(nn.Linear(5, 4, generator=0, dtype=np.float64), Softplus(),
                          nn.Linear(4, 3, generator=1, dtype=np.float64))
    rng = np.random.default_rng(2)
    x, y = rng.random((7, 5)), rng.integers(0, 3, 7)

    def backward(X, Y, W1, b1, W2, b2, slip=False):
        Z1 = X @ W1.T + b1
        A1 = np.log1p(np.exp(Z1))
        Z2 = A1 @ W2.T + b2
        P = np.exp(Z2) / np.exp(Z2).sum(axis=1, keepdims=True)
        dZ2 = (P - np.eye(3)[Y]) / len(X)
        dZ1 = dZ2 @ W2 * (1.0 if slip else 1 / (1 + np.exp(-Z1)))
        return {"dW1": dZ1.T @ X, "db1": dZ1.sum(0), "dW2": dZ2.T @ A1, "db2": dZ2.sum(0)}

    assert compare_model(model, backward, x, y, layout="torch").verdict == PASS
    report = compare_model(model, lambda X, Y, W1, b1, W2, b2: backward(X, Y, W1, b1, W2, b2, slip=True), x, y,
                           layout="torch")
    assert report.failed == ["dW1", "db1"] and report["dW1"].verdict == FAIL
    assert report["dW1"].pair.note == ("softplus's derivative left out (layer 1, softplus; the right one: "
                                       "dZ1 = dA1 * sigmoid(Z1))")


def test_a_softmax_layer_with_a_squared_loss_and_dropout_masks():
    """Softmax and Dropout as layers of the Sequential, PyTorch's MSE on the probabilities, judged numerically."""
    model = nn.Sequential(nn.Linear(5, 4, generator=0, dtype=np.float64), nn.Sigmoid(), nn.Dropout(0.25),
                          nn.Linear(4, 3, generator=1, dtype=np.float64), nn.Softmax())
    rng = np.random.default_rng(3)
    x, y = rng.random((6, 5)), rng.integers(0, 3, 6)
    masks = [(rng.random((6, 4)) > 0.25).astype(float)]

    def backward(x, one_hot_Y, W1, b1, W2, b2, D1):
        A1 = 1 / (1 + np.exp(-(x @ W1.T + b1)))
        H = A1 * D1 / 0.75
        Z2 = H @ W2.T + b2
        P = np.exp(Z2) / np.exp(Z2).sum(axis=1, keepdims=True)
        dP = 2 * (P - one_hot_Y) / P.size
        dZ2 = P * (dP - (dP * P).sum(axis=1, keepdims=True))  # the softmax's Jacobian, row by row
        dZ1 = dZ2 @ W2 * D1 / 0.75 * A1 * (1 - A1)
        return {"dW1": dZ1.T @ x, "db1": dZ1.sum(0), "dW2": dZ2.T @ H, "db2": dZ2.sum(0)}

    report = compare_model(model, backward, x, y, layout="torch", loss="mse", dropout_masks=masks, numerical=True)
    assert report.verdict == PASS, report.format()
    assert all(item.reference_b.verdict == PASS for item in report.gradients)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_network_your_code_implements_is_built_from_a_spec(dtype):
    """One way to build a network (issue 14): compare's models are specs, with every activation of its table."""
    from tinygrad_np.compare.layers import ACTIVATIONS
    from tinygrad_np.compare.manual import build_model
    from tinygrad_np.spec import model_from_spec, spec_from_model

    for name, layer in ACTIVATIONS.items():
        model = build_model([6, 5, 4, 3], name, output_activation=name, dtype=dtype, generator=2)
        spec = spec_from_model(model)
        assert [entry["type"] for entry in spec["layers"]] == ["Linear", layer.__name__] * 3
        assert spec["dtype"] == np.dtype(dtype).name
        assert all(entry["init"] == "he" for entry in spec["layers"] if entry["type"] == "Linear")
        rebuilt = model_from_spec(spec, 2)  # the same seed draws the same weights
        for (key, ours), theirs in zip(model.state_dict().items(), rebuilt.state_dict().values(), strict=True):
            np.testing.assert_array_equal(ours, theirs, err_msg=key)
    logits = spec_from_model(build_model([6, 5, 3], "relu"))  # cross-entropy: the output layer stays logits
    assert [entry["type"] for entry in logits["layers"]] == ["Linear", "ReLU", "Linear"]
