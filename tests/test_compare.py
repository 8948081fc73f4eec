"""The manual-vs-autograd report: correct hand-derived gradients PASS, every classic mistake FAILs where it is,
and with the numerical third source the report blames the side that is wrong."""

import functools
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tinygrad_np import nn, ops
from tinygrad_np.cli import main
from tinygrad_np.compare import (
    FAIL,
    PASS,
    THRESHOLDS,
    WARN,
    ManualCodeError,
    assert_gradients_match,
    compare_arrays,
    compare_gradients,
    compare_model,
)
from tinygrad_np.models import mlp as reference
from tinygrad_np.models import two_layer as tutorial

# ---------------------------------------------------------------------------------------------- compare_gradients


def test_identical_gradients_pass_with_exact_metrics():
    g = np.random.default_rng(0).normal(size=(4, 3))
    item = compare_gradients({"w": g}, {"w": g.copy()})["w"]
    assert item.verdict == PASS
    assert item.pair.error == item.pair.max_abs_diff == item.pair.max_rel_diff == 0
    assert item.pair.cosine == pytest.approx(1.0)
    assert item.pair.norm_ratio == pytest.approx(1.0)


def test_metrics_say_what_they_mean():
    a = np.array([[1.0, -4.0], [2.0, 0.5]])
    b = a / 2
    pair = compare_gradients({"w": a}, {"w": b})["w"].pair
    assert pair.max_abs_diff == 2.0 and pair.worst_index == (0, 1)
    assert (pair.worst_a, pair.worst_b) == (-4.0, -2.0)
    assert pair.error == pytest.approx(2.0 / 4.0)  # max|a-b| / max(|a|, |b|)
    assert pair.max_rel_diff == pytest.approx(0.5)
    assert pair.cosine == pytest.approx(1.0)
    assert pair.norm_ratio == pytest.approx(2.0)
    assert pair.verdict == FAIL
    assert "constant factor" in pair.note


@pytest.mark.parametrize(
    ("relative", "float32", "float64"),
    [(1e-12, PASS, PASS), (1e-6, PASS, WARN), (1e-3, WARN, FAIL), (1e-1, FAIL, FAIL)],
)
def test_verdict_thresholds_depend_on_the_dtype(relative, float32, float64):
    """A perturbation that is rounding noise in float32 is a warning sign in float64."""
    a = np.random.default_rng(1).normal(size=(5, 5))
    a.flat[np.argmax(np.abs(a))] = 1.0  # scale 1 exactly (max |a|)
    b = a.copy()
    b[0, 0] += relative
    assert compare_arrays(a, b).verdict == float64
    assert compare_arrays(a.astype(np.float32), b.astype(np.float32)).verdict == float32
    # One float32 side is enough: precision is that of the less precise array.
    assert compare_arrays(a, b.astype(np.float32)).verdict == float32 if relative > 1e-7 else PASS


def test_documented_thresholds():
    assert THRESHOLDS["float64"] == (1e-9, 1e-6)
    assert THRESHOLDS["float32"] == (1e-4, 1e-2)
    assert compare_arrays(np.ones(3), np.ones(3)).thresholds == THRESHOLDS["float64"]
    assert compare_arrays(np.ones(3, np.float32), np.ones(3)).thresholds == THRESHOLDS["float32"]


def test_shape_mismatch_missing_and_extra_names_fail_without_crashing():
    a = {"W1": np.ones((3, 5)), "b1": np.ones((3, 1)), "W2": np.ones((2, 3))}
    b = {"W1": np.ones((5, 3)), "b1": np.ones(()), "extra": np.ones(2)}
    report = compare_gradients(a, b)
    assert [item.name for item in report.gradients] == ["W1", "b1", "W2", "extra"]
    assert all(item.verdict == FAIL for item in report.gradients)
    assert "transposed" in report["W1"].pair.note
    assert "summed over all axes" in report["b1"].pair.note
    assert report["W2"].pair.note == "only in autograd, missing in manual"
    assert report["extra"].pair.note == "only in manual, missing in autograd"
    text = report.format()
    assert "(3, 5) vs (5, 3)" in text and "missing" in text
    assert not report.passed


def test_nan_or_inf_fails_and_names_the_side():
    a, b = np.ones((2, 2)), np.ones((2, 2))
    b[1, 0] = np.nan
    pair = compare_arrays(a, b, labels=("autograd", "manual"))
    assert pair.verdict == FAIL and pair.worst_index == (1, 0)
    assert "NaN/inf in manual" in pair.note


def test_zero_gradients():
    assert compare_arrays(np.zeros(4), np.zeros(4)).verdict == PASS
    assert compare_arrays(np.zeros(4), np.array([0, 0, 1e-3, 0])).verdict == FAIL
    assert compare_arrays(np.zeros((0, 3)), np.zeros((0, 3))).verdict == PASS


@pytest.mark.parametrize(
    ("wrong", "blamed"), [("a", "autograd"), ("b", "manual"), ("both", "unclear")]
)
def test_a_reference_blames_the_side_that_disagrees_with_it(wrong, blamed):
    truth = np.random.default_rng(2).normal(size=(3, 3))
    a = truth * 2 if wrong in ("a", "both") else truth + 1e-12
    b = -truth if wrong in ("b", "both") else truth - 1e-12
    report = compare_gradients({"w": a, "ok": truth}, {"w": b, "ok": truth}, reference={"w": truth, "ok": truth})
    assert report["w"].blame == blamed
    assert report["ok"].blame == "" and report["ok"].verdict == PASS
    assert report.blamed == {"w": blamed}
    assert f"blame: w -> {blamed}" in report.format()


def test_a_masked_reference_is_compared_on_its_checked_entries_only():
    truth = np.arange(1.0, 7.0).reshape(2, 3)
    sampled = np.ma.masked_array(truth * np.array([[1, 1, 99], [1, 99, 1]]), mask=[[0, 0, 1], [0, 1, 0]])
    pair = compare_arrays(truth, sampled, numerical=True)
    assert pair.verdict == PASS and pair.compared == 4


def test_the_table_is_aligned_and_complete():
    rng = np.random.default_rng(3)
    a = {"dW1": rng.normal(size=(10, 784)), "db1": rng.normal(size=(10, 1))}
    report = compare_gradients(a, {"dW1": a["dW1"] * 1.5, "db1": a["db1"]})
    lines = report.format().splitlines()
    header = next(line for line in lines if line.startswith("name"))
    rows = lines[lines.index(header) + 2:lines.index(header) + 4]
    column = header.index("verdict")
    assert [row[column:column + 4] for row in rows] == [FAIL, PASS]
    for word in ("shape", "error", "max|a-b|", "max rel", "cosine", "|a|/|b|", "worst at", "autograd", "manual"):
        assert word in header
    assert str(report) == report.format()
    assert lines[-1] == "result: FAIL"


def test_json_is_standard_and_holds_everything():
    a = {"w": np.array([1.0, np.nan]), "v": np.ones(2)}
    report = compare_gradients(a, {"w": np.ones(2), "v": np.ones(2)}, names=("engine", "by hand"))
    data = json.loads(report.to_json())  # allow_nan=False inside: no NaN literals
    assert data["passed"] is False and data["verdict"] == FAIL and data["names"] == ["engine", "by hand"]
    (w,) = [item for item in data["gradients"] if item["name"] == "w"]
    assert w["verdict"] == FAIL and w["shape_a"] == [2] and w["cosine"] == "nan"
    assert data["thresholds"]["float32"] == [1e-4, 1e-2]
    assert report.to_dict() == data


def test_assert_gradients_match_raises_with_the_readable_table():
    good = {"w": np.ones((2, 2))}
    assert assert_gradients_match(good, {"w": np.ones((2, 2))}).passed
    with pytest.raises(AssertionError) as failure:
        assert_gradients_match(good, {"w": -np.ones((2, 2))})
    assert "sign error" in str(failure.value) and "verdict" in str(failure.value)
    warned = {"w": np.ones((2, 2)) + 1e-7}
    with pytest.raises(AssertionError, match="WARN"):
        assert_gradients_match(good, warned)
    assert assert_gradients_match(good, warned, allow_warn=True).verdict == WARN


def test_compare_gradients_names_wrong_arguments():
    with pytest.raises(TypeError, match="mapping"):
        compare_gradients([np.ones(2)], {"w": np.ones(2)})
    with pytest.raises(ValueError, match="two labels"):
        compare_gradients({}, {}, names=("only one",))


# ---------------------------------------------------------------------------------------------- compare_model


def digits(m: int, seed: int = 0, features: int = 784, classes: int = 10):
    """A random batch in [0, 1) (like images / 255) and random labels."""
    rng = np.random.default_rng(seed)
    return rng.random((m, features)), rng.integers(0, classes, m)


@st.composite
def architectures(draw):
    """(input_size, hidden_sizes, m, dtype): depth 1-4, random widths, batch 1 included, float32 and float64."""
    hidden = tuple(draw(st.lists(st.integers(1, 16), min_size=1, max_size=4)))
    return draw(st.integers(1, 30)), hidden, draw(st.integers(1, 12)), draw(st.sampled_from([np.float32, np.float64]))


@given(architecture=architectures(), seed=st.integers(0, 2**32 - 1))
@example(architecture=(5, (3, 3, 3, 3), 1, np.float32), seed=0)
def test_correct_hand_derived_gradients_pass_on_random_architectures(architecture, seed):
    input_size, hidden, m, dtype = architecture
    model = reference.mlp(input_size, hidden, 10, generator=seed, dtype=dtype)
    x, y = digits(m, seed, input_size)
    report = compare_model(model, reference.manual_backward, x, y, manual_forward=reference.manual_forward,
                           layout="column")
    assert report.verdict == PASS, report.format()
    assert len(report.gradients) == 2 * (len(hidden) + 1) and len(report.forward) == 2 * (len(hidden) + 1)


@given(architecture=architectures(), seed=st.integers(0, 2**32 - 1), weight_decay=st.sampled_from([0.0, 0.05]),
       dropout=st.sampled_from([0.0, 0.5]))
def test_weight_decay_and_dropout_masks_pass_through_compare_model(architecture, seed, weight_decay, dropout):
    input_size, hidden, m, dtype = architecture
    model = reference.mlp(input_size, hidden, 10, dropout=dropout, generator=seed, dtype=dtype)
    x, y = digits(m, seed, input_size)
    masks = reference.draw_dropout_masks(hidden, m, dropout, seed) if dropout else None
    hand = {"dropout_masks": masks, "dropout": dropout}
    report = compare_model(model, functools.partial(reference.manual_backward, weight_decay=weight_decay, **hand),
                           x, y, manual_forward=functools.partial(reference.manual_forward, **hand),
                           layout="column", l2=weight_decay, dropout_masks=masks)
    assert report.verdict == PASS, report.format()


def tutorial_case(m: int = 16, seed: int = 0):
    model = tutorial.two_layer(seed, dtype=np.float64, init="tutorial")
    return (model, *digits(m, seed))


def test_the_tutorials_code_as_written_passes_and_nobody_is_blamed():
    model, x, y = tutorial_case()
    report = compare_model(model, tutorial.backward_prop, x, y, manual_forward=tutorial.forward_prop, layout="column",
                           numerical=True, numerical_entries=200)
    assert report.verdict == PASS, report.format()
    assert [item.name for item in report.forward] == ["Z1", "A1", "Z2", "A2"]
    assert [(item.name, item.alias) for item in report.gradients] == [
        ("dW1", "0.weight"), ("db1", "0.bias"), ("dW2", "2.weight"), ("db2", "2.bias")]
    assert all(item.reference_a.verdict == item.reference_b.verdict == PASS for item in report.gradients)
    assert report.blamed == {}
    assert any("dW1 200 of 7840" in note for note in report.notes)


# Each planted bug is the tutorial's backward_prop with one line changed, as people really get it wrong.
def _backward(Z1, A1, Z2, A2, W1, W2, X, Y, bug):
    m = X.shape[1]
    dZ2 = A2 - tutorial.one_hot(Y)
    dW2 = 1 / m * dZ2.dot(A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = W2.T.dot(dZ2) * tutorial.relu_deriv(Z1)
    dW1 = 1 / m * dZ1.dot(X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    if bug == "missing 1/m":
        dW2 = dZ2.dot(A1.T)
    elif bug == "missing ReLU mask":
        dZ1 = W2.T.dot(dZ2)
        dW1, db1 = 1 / m * dZ1.dot(X.T), 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    elif bug == "transposed dW (square)":
        dW2 = 1 / m * A1.dot(dZ2.T)
    elif bug == "transposed dW":
        dW1 = 1 / m * X.dot(dZ1.T)
    elif bug == "bias summed over the wrong axis":
        db2 = 1 / m * np.sum(dZ2, axis=0, keepdims=True)
    elif bug == "bias summed over everything (the original tutorial)":
        db1 = 1 / m * np.sum(dZ1)
    elif bug == "sign error":
        db1 = -db1
    return dW1, db1, dW2, db2


PLANTED_BUGS = {
    "missing 1/m": (["dW2"], "missing 1/m"),
    "missing ReLU mask": (["dW1", "db1"], "missing ReLU mask: the gradient flows where Z1 <= 0"),
    "transposed dW (square)": (["dW2"], "transposed"),
    "transposed dW": (["dW1"], "transposed"),
    "bias summed over the wrong axis": (["db2"], "wrong axis"),
    "bias summed over everything (the original tutorial)": (["db1"], "summed over all axes"),
    "sign error": (["db1"], "sign error"),
}


@pytest.mark.parametrize("bug", list(PLANTED_BUGS))
def test_each_planted_bug_fails_on_its_parameter_and_the_numerical_check_blames_the_hand_derivation(bug):
    failing, hint = PLANTED_BUGS[bug]
    model, x, y = tutorial_case()
    report = compare_model(model, functools.partial(_backward, bug=bug), x, y, manual_forward=tutorial.forward_prop,
                           layout="column", numerical=True, numerical_entries=200)
    assert report.failed == failing, report.format()
    assert report.blamed == dict.fromkeys(failing, "manual"), report.format()
    assert all(item.verdict == PASS for item in report.forward)  # the forward pass was right all along
    assert all(hint in report[name].pair.note for name in failing), report.format()
    assert not report.passed


def test_the_unshifted_softmax_overflows_and_the_forward_table_says_where():
    """With a logit above 709 the tutorial's original softmax gives NaN; the shifted one (autograd's) does not."""
    model, x, y = tutorial_case()
    params = tutorial.tutorial_params_from_model(model)
    params["b2"][3] = 800.0
    tutorial.load_tutorial_params(model, **params)

    def forward_prop_unshifted(W1, b1, W2, b2, X):
        Z1 = W1.dot(X) + b1
        A1 = tutorial.relu(Z1)
        Z2 = W2.dot(A1) + b2
        return Z1, A1, Z2, tutorial.softmax_unshifted(Z2)

    report = compare_model(model, tutorial.backward_prop, x, y, manual_forward=forward_prop_unshifted, layout="column",
                           numerical=True, numerical_entries=200)
    assert [item.verdict for item in report.forward] == [PASS, PASS, PASS, FAIL]
    assert "NaN/inf in manual" in report["A2"].pair.note
    assert report.notes[0].startswith("the forward pass differs first at A2")
    assert report.failed == ["dW1", "db1", "dW2", "db2"]
    assert set(report.blamed.values()) == {"manual"}
    # The same batch with the tutorial's shifted softmax is fine: the overflow was the only problem.
    assert compare_model(model, tutorial.backward_prop, x, y, manual_forward=tutorial.forward_prop,
                         layout="column").verdict == PASS


@st.composite
def bugs_in_deep_nets(draw):
    hidden = tuple(draw(st.lists(st.integers(4, 12), min_size=1, max_size=4)))
    layer = draw(st.integers(1, len(hidden) + 1))
    bug = draw(st.sampled_from(["missing 1/m", "sign error", "wrong weight decay"]))
    return hidden, layer, bug, draw(st.integers(2, 12))


@given(case=bugs_in_deep_nets(), seed=st.integers(0, 2**32 - 1))
def test_a_bug_at_any_depth_fails_on_that_layer_only(case, seed):
    hidden, layer, bug, m = case
    model = reference.mlp(8, hidden, 10, generator=seed, dtype=np.float64)
    x, y = digits(m, seed, 8)

    def buggy_backward(params, X, Y):
        grads = reference.manual_backward(params, X, Y, weight_decay=0.1)
        if bug == "missing 1/m":
            grads[f"dW{layer}"] = grads[f"dW{layer}"] * m - 0.1 * params[f"W{layer}"] * (m - 1)
        elif bug == "sign error":
            grads[f"db{layer}"] = -grads[f"db{layer}"]
        else:  # the bias decayed too
            grads[f"db{layer}"] = grads[f"db{layer}"] + 0.1 * params[f"b{layer}"]
        return grads

    correct = reference.manual_backward(reference.params_from_model(model), x.T, y, weight_decay=0.1)
    name = f"dW{layer}" if bug == "missing 1/m" else f"db{layer}"
    changed = buggy_backward(reference.params_from_model(model), x.T, y)[name] - correct[name]
    assume(np.max(np.abs(changed)) > 1e-3 * np.max(np.abs(correct[name])))  # a dead layer hides any bug
    report = compare_model(model, buggy_backward, x, y, layout="column", l2=0.1)
    assert report.failed == [name], report.format()


def test_the_numerical_check_blames_autograd_when_the_engine_is_wrong(monkeypatch):
    """A broken Linear backward (weight gradient off by 1.5x) is caught and blamed on autograd, not on the tutorial."""
    original = ops.Linear.backward

    def broken(self, g):
        dx, dw, *rest = original(self, g)
        return (dx, None if dw is None else 1.5 * dw, *rest)

    monkeypatch.setattr(ops.Linear, "backward", broken)
    model, x, y = tutorial_case(m=8)
    report = compare_model(model, tutorial.manual_backward, x, y, layout="column", numerical=True,
                           numerical_entries=100)
    assert report.failed == ["dW1", "dW2"]
    assert report.blamed == {"dW1": "autograd", "dW2": "autograd"}


def test_a_wrong_forward_pass_is_found_before_its_gradients():
    model, x, y = tutorial_case()

    def forward_without_b1(params, X):
        return tutorial.manual_forward({**params, "b1": np.zeros_like(params["b1"])}, X)

    report = compare_model(model, tutorial.manual_backward, x, y, manual_forward=forward_without_b1,
                           layout="column")
    assert report.forward[0].name == "Z1" and report.forward[0].verdict == FAIL
    assert report.notes[0] == "the forward pass differs first at Z1: fix it before reading the gradients"


def test_the_torch_layout_compares_code_written_the_modules_way():
    model = reference.mlp(6, (5,), 4, generator=1, dtype=np.float64)
    x, y = digits(7, 1, 6, classes=4)

    def row_backward(params, x, y):
        """y = x W^T + b with x (m, in); the same math, transposed."""
        Z1 = x @ params["W1"].T + params["b1"]
        A1 = np.maximum(Z1, 0)
        Z2 = A1 @ params["W2"].T + params["b2"]
        dZ2 = (tutorial.softmax(Z2.T) - tutorial.one_hot(y, 4)).T / len(x)
        dZ1 = dZ2 @ params["W2"] * (Z1 > 0)
        return {"dW1": dZ1.T @ x, "db1": dZ1.sum(axis=0), "dW2": dZ2.T @ A1, "db2": dZ2.sum(axis=0)}

    report = compare_model(model, row_backward, x, y, layout="torch")
    assert report.verdict == PASS, report.format()
    assert [(item.name, item.alias) for item in report.gradients][:2] == [("dW1", "0.weight"), ("db1", "0.bias")]

    def column_biases(params, x, y):
        grads = row_backward(params, x, y)
        return {**grads, "db1": grads["db1"][:, None]}

    report = compare_model(model, column_biases, x, y, layout="torch")
    assert report.failed == ["db1"] and "broadcasts b - lr * db1 to (5, 5)" in report["db1"].pair.note


def test_reduction_sum_moves_the_1_over_m_to_the_autograd_side():
    model, x, y = tutorial_case(m=5)

    def summed(params, X, Y):
        return {name: grad * X.shape[1] for name, grad in tutorial.manual_backward(params, X, Y).items()}

    assert compare_model(model, summed, x, y, layout="column", reduction="sum").verdict == PASS
    report = compare_model(model, summed, x, y, layout="column")
    assert set(report.failed) == {"dW1", "db1", "dW2", "db2"}
    assert "equals the gradient with reduction='sum'" in report["dW2"].pair.note
    assert "every manual gradient is that of the summed loss (no 1/m): a missing 1/m" in report.notes[0]


def test_a_tuple_in_the_tutorials_order_is_accepted():
    model, x, y = tutorial_case(m=3)

    def as_tuple(params, X, Y):
        grads = tutorial.manual_backward(params, X, Y)
        return grads["dW1"], grads["db1"], grads["dW2"], grads["db2"]

    assert compare_model(model, as_tuple, x, y, layout="column").verdict == PASS


def test_compare_model_leaves_the_model_and_its_grads_alone():
    model, x, y = tutorial_case(m=4)
    before = model.state_dict()
    sentinel = np.full((10, 784), 7.0)
    model[0].weight.grad = sentinel

    def meddling(params, X, Y):
        grads = tutorial.manual_backward(params, X, Y)
        params["W1"][...] = 0  # the hand-written side gets copies
        X[...] = 0
        return grads

    assert compare_model(model, meddling, x, y, layout="column", numerical=True, numerical_entries=20).passed
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    assert model[0].weight.grad is sentinel and model[2].weight.grad is None
    assert x.any()


def test_a_relu_input_at_its_kink_is_flagged_for_the_numerical_check():
    model, x, y = tutorial_case(m=4)
    params = tutorial.tutorial_params_from_model(model)
    params["W1"][0] = 0.0
    params["b1"][0] = 0.0  # Z1[0] == 0 for every example
    tutorial.load_tutorial_params(model, **params)
    report = compare_model(model, tutorial.manual_backward, x, y, layout="column", numerical=True,
                           numerical_entries=20)
    assert any("kink" in note for note in report.notes)


def test_float32_models_pass_against_float64_numerical_gradients():
    model = tutorial.two_layer(0, dtype=np.float32, init="tutorial")
    x, y = digits(32, 0)
    report = compare_model(model, tutorial.manual_backward, x.astype(np.float32), y, layout="column", numerical=True,
                           numerical_entries=100, manual_forward=tutorial.manual_forward)
    assert report.verdict == PASS, report.format()
    assert report["dW1"].pair.thresholds == THRESHOLDS["float32"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, x, y: compare_model(nn.Linear(784, 10), tutorial.manual_backward, x, y), TypeError,
         "nn.Sequential"),
        (lambda m, x, y: compare_model(nn.Sequential(nn.Linear(784, 10), nn.Flatten(), nn.Linear(10, 10)),
                                       tutorial.manual_backward, x, y), TypeError, "layer 1 is Flatten"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x, y), ValueError,
         "can't tell the layout.*pass layout='column'"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x.T, y, layout="column"), ValueError,
         r"X is x.T"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x, y.astype(float), layout="column"), ValueError,
         "integer"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x, y + 10, layout="column"), ValueError,
         r"\[0, 10\)"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x, y, layout="col"), ValueError,
         "unknown layout 'col'"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x, y, layout="column", reduction="none"),
         ValueError, "reduction"),
        (lambda m, x, y: compare_model(m, lambda params, X, Y: 3, x, y, layout="column"), ManualCodeError,
         "returned 3, with no gradients in it"),
        (lambda m, x, y: compare_model(m, lambda p, X, Y: 3, x, y, layout="column"), ManualCodeError,
         r"takes p, which can't be bound by name.*arguments=\{\.\.\.\}"),
        (lambda m, x, y: compare_model(m, tutorial.manual_backward, x, y, layout="column",
                                       dropout_masks=[np.ones((10, 4))]),
         ValueError, r"one mask per Dropout layer \(0\)"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    model, x, y = tutorial_case(m=4)
    with pytest.raises(error, match=message):
        call(model, x, y)


def test_dropout_mask_shapes_are_checked_in_the_conventions_layout():
    model = reference.mlp(6, (5,), 3, dropout=0.5, dtype=np.float64)
    x, y = digits(4, 0, 6, classes=3)
    with pytest.raises(ValueError, match=r"\(5, 4\) in the column layout"):
        compare_model(model, reference.manual_backward, x, y, layout="column", dropout_masks=[np.ones((4, 5))])
    everything_dropped = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(1.0), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="nothing is kept"):
        compare_model(everything_dropped, reference.manual_backward, x, y, layout="column",
                      dropout_masks=[np.zeros((5, 4))])


class _Tables(HTMLParser):
    """Every table cell of an HTML document as (text, style), row by row, table by table."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ["", dict(attrs).get("style", "")]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(tuple(self.cell))
            self.cell = None


def test_the_html_report_is_a_table_with_coloured_verdicts_and_the_blame():
    model, x, y = tutorial_case()
    report = compare_model(model, functools.partial(_backward, bug="sign error"), x, y,
                           manual_forward=tutorial.forward_prop, layout="column", numerical=True, numerical_entries=50)
    page = report._repr_html_()
    ElementTree.fromstring(page)  # well-formed as XML too: every tag closed, no HTML-only entities
    parser = _Tables()
    parser.feed(page)
    forward, gradients = parser.tables
    assert [text for text, _ in forward[0]][-1] == "verdict" and len(forward) == 1 + 4
    header = [text for text, _ in gradients[0]]
    assert header[:2] == ["name", "shape"] and header[-4:] == ["verdict", "autograd vs numerical",
                                                               "manual vs numerical", "blame"]
    rows = {row[0][0]: dict(zip(header, row, strict=True)) for row in gradients[1:]}
    assert list(rows) == ["dW1 [0.weight]", "db1 [0.bias]", "dW2 [2.weight]", "db2 [2.bias]"]
    assert rows["db1 [0.bias]"]["verdict"][0] == "FAIL"
    assert "#f9d0d0" in rows["db1 [0.bias]"]["verdict"][1] and rows["db1 [0.bias]"]["blame"][0] == "manual"
    assert rows["dW1 [0.weight]"]["verdict"][0] == "PASS" and "#d9f2d9" in rows["dW1 [0.weight]"]["verdict"][1]
    assert rows["dW1 [0.weight]"]["blame"][0] == "-" and "background" not in rows["dW1 [0.weight]"]["name"][1]
    assert rows["db1 [0.bias]"]["manual vs numerical"][0].startswith("FAIL")
    assert "manual == -autograd: a sign error" in page and "result: <span" in page and "db1 -&gt; manual" in page


# ---------------------------------------------------------------------------------------------- the CLI


def run_cli(capsys, *argv):
    status = main(["compare", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_tutorial_network_on_the_offline_sample(capsys):
    status, out, _ = run_cli(capsys, "--offline", "--batch-size", "16", "--numerical", "--numerical-entries", "50")
    assert status == 0, out
    assert "dW1 [0.weight]" in out and "forward (per layer):" in out and out.rstrip().endswith("result: PASS")


def test_cli_json_for_an_mlp_with_dropout_and_weight_decay(capsys):
    status, out, _ = run_cli(capsys, "--offline", "--hidden-sizes", "16", "8", "--dropout", "0.3",
                             "--weight-decay", "0.01", "--dtype", "float32", "--batch-size", "8", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["passed"] is True
    assert [item["alias"] for item in data["gradients"]] == ["0.weight", "0.bias", "3.weight", "3.bias",
                                                             "6.weight", "6.bias"]


def test_cli_exits_1_when_the_hand_derivation_is_wrong(capsys, monkeypatch):
    monkeypatch.setattr(tutorial, "backward_prop", functools.partial(_backward, bug="sign error"))
    status, out, _ = run_cli(capsys, "--offline", "--batch-size", "8", "--numerical", "--numerical-entries", "20")
    assert status == 1
    assert "db1 -> manual" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--batch-size", "0"], "--batch-size"), (["--dropout", "0.5"], "needs an MLP"),
     (["--hidden-sizes", "0"], "positive")],
)
def test_cli_exits_2_with_a_message_on_unusable_input(capsys, argv, message):
    status, _, err = run_cli(capsys, "--offline", *argv)
    assert status == 2 and message in err


COLUMN_TANH = """
import numpy as np


def init_params(n_x, n_h, n_y, seed=0):
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(size=(n_h, n_x)) * 0.05, "b1": np.zeros((n_h, 1)),
            "W2": rng.normal(size=(n_y, n_h)) * 0.5, "b2": np.zeros((n_y, 1))}


def forward_prop(X, params):
    Z1 = params["W1"] @ X + params["b1"]
    A1 = np.tanh(Z1)
    Z2 = params["W2"] @ A1 + params["b2"]
    A2 = np.exp(Z2 - Z2.max(0)) / np.exp(Z2 - Z2.max(0)).sum(0)
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def backward_prop(params, cache, X, one_hot_Y, lambd):
    m = X.shape[1]
    dZ2 = cache["A2"] - one_hot_Y
    dZ1 = params["W2"].T @ dZ2 * (1 - cache["A1"] ** 2)
    return {"dW1": dZ1 @ X.T / m + lambd / m * params["W1"], "db1": dZ1.sum(1, keepdims=True) / m,
            "dW2": dZ2 @ cache["A1"].T / m + lambd / m * params["W2"], "db2": dZ2.sum(1, keepdims=True) / m}
"""


@pytest.fixture
def column_tanh(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(COLUMN_TANH)
    return path


def test_cli_compares_your_own_file_with_its_l2_term_as_written(capsys, column_tanh):
    common = ["--offline", "--batch-size", "12", "--manual", str(column_tanh), "--hidden-sizes", "8"]
    status, out, _ = run_cli(capsys, *common, "--l2", "lambd/m * W", "--arg", "lambd=0.5", "--numerical")
    assert status == 0, out
    assert "model: Linear(784, 8) -> Tanh -> Linear(8, 10)" in out
    assert "parameters: yours, from init_params()" in out and "hidden activation tanh, read off your forward" in out
    assert "layout: column: X (features, m) = x.T, W (out, in), b (n, 1) (detected from your parameters' shapes)" in out
    assert "forward (per layer):" in out and out.rstrip().endswith("result: PASS")
    status, out, _ = run_cli(capsys, *common, "--arg", "lambd=0.5")  # the L2 term left undeclared
    assert status == 1
    assert "dW1 [0.weight]: an L2 term differs (c = 0.0416667)" in out


def test_cli_blames_a_planted_bug_in_your_file(capsys, tmp_path):
    source = Path("examples/backprop/torch_layout_style.py").read_text().replace("db3 = g3.sum(0)", "db3 = g3.sum(1)")
    (tmp_path / "net.py").write_text(source)
    status, out, _ = run_cli(capsys, "--offline", "--batch-size", "12", "--manual", str(tmp_path / "net.py"),
                             "--loss", "nll", "--numerical", "--numerical-entries", "50")
    assert status == 1
    assert "bias summed over the wrong axis" in out and "result: FAIL (blame: db3 -> manual)" in out


def test_cli_reaches_a_method_of_a_module_level_object_one_example_at_a_time(capsys, tmp_path):
    source = Path("examples/backprop/nielsen_style.py").read_text() + "\nnet = Network([784, 16, 10])\n"
    (tmp_path / "net.py").write_text(source)
    status, out, _ = run_cli(capsys, "--offline", "--batch-size", "12", "--manual",
                             f"{tmp_path / 'net.py'}:net.backprop", "--loss", "quadratic", "--per-example",
                             "--activation", "sigmoid", "--output-activation", "sigmoid")
    assert status == 0, out
    assert "parameters: yours, from Network (self.biases, self.weights)" in out
    assert "per example: 12 calls, the gradients averaged" in out


@pytest.mark.parametrize(
    ("source", "argv", "message"),
    [
        (None, ["--manual", "no_such_net.py"], "no_such_net.py does not exist; give my_net.py or my_net.py:forward"),
        (COLUMN_TANH, ["--hidden-sizes", "8", "--manual", "{path}:forward_prop,backprop"], "has no 'backprop'; it "
                                                                                           "defines backward_prop"),
        (COLUMN_TANH, ["--manual", "{path}"], r"init_params\(\) takes n_h, which needs --hidden-sizes"),
        (COLUMN_TANH, ["--hidden-sizes", "8", "--manual", "{path}"], "takes lambd, which can't be bound by name"),
        (COLUMN_TANH.replace("(1 - cache[\"A1\"] ** 2)", "(1 - cache[\"A1\"] ** 2).T"),
         ["--hidden-sizes", "8", "--manual", "{path}", "--arg", "lambd=1"],
         r"your backward function backward_prop raised ValueError: operands could not be broadcast together .* at "
         r"my_net.py:\d+ \(dZ1 = .*\); it was called with params=\{W1: \(8, 784\), .*X=\(784, 12\)"),
        ("raise ImportError('no module named mnist_loader')\n", ["--manual", "{path}"],
         "importing .*my_net.py raised ImportError: no module named mnist_loader"),
        ("import sys\nsys.exit(5)\n", ["--manual", "{path}"], r"importing .*my_net.py called exit\(5\)"),
        ((Path(__file__).resolve().parents[1] / "examples/backprop/torch_layout_style.py").read_text(),
         ["--manual", "{path}", "--loss", "nll", "--l2", "reg * np.sum(W * W)"],
         r"l2='reg \* np.sum\(W \* W\)' uses 'reg', which is not W, m or a given constant; .*--arg reg=0.7"),
        (None, ["--layout", "row"], "--layout describe your own code: use them with --manual"),
        (COLUMN_TANH, ["--hidden-sizes", "8", "--manual", "{path}", "--weight-decay", "0.1"],
         "--dropout and --weight-decay are for the reference networks"),
    ],
    ids=["no file", "no such function", "init needs sizes", "unbound argument", "the code raises",
         "the file raises on import", "the file exits on import", "an l2 term with an unknown name",
         "own-code option without --manual", "reference-network option"],
)
def test_cli_manual_errors_are_one_line_and_exit_2(capsys, tmp_path, source, argv, message):
    path = tmp_path / "my_net.py"
    if source is not None:
        path.write_text(source)
    status, _, err = run_cli(capsys, "--offline", "--batch-size", "12", *[a.format(path=path) for a in argv])
    assert status == 2
    errors = [line for line in err.splitlines() if line.startswith("tinygrad-np compare: error: ")]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1] and re.search(message, errors[0]), err


def test_cli_manual_that_is_no_python_file_says_what_it_is(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "net.py").mkdir()
    for path, what in ((tmp_path / "notes.txt", "is not a Python file"), (tmp_path / "net.py", "is a directory")):
        status, _, err = run_cli(capsys, "--offline", "--manual", str(path))
        assert status == 2 and err.strip().splitlines()[-1] == (
            f"tinygrad-np compare: error: {path} {what}; give my_net.py or my_net.py:forward,backward"
        )


def test_cli_refuses_an_argument_without_a_value(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "--manual", "x.py", "--arg", "lambd")
    assert exit_.value.code == 2 and "expected NAME=VALUE" in capsys.readouterr().err


def test_cli_on_full_mnist(capsys, mnist_dir):
    status, out, _ = run_cli(capsys, "--data-dir", str(mnist_dir), "--split", "test", "--batch-size", "128")
    assert status == 0, out
