"""What compare differentiates: the losses with their reductions, the L2 term as people write it, and its sign."""

import numpy as np
import pytest

from tinygrad_np import Tensor
from tinygrad_np.compare.objective import L2, Objective, ObjectiveError, make_objective, parse_l2


@pytest.mark.parametrize(
    ("written", "constants", "m", "coefficient"),
    [
        ("lambd/m * W", {"lambd": 0.7}, 64, 0.7 / 64),  # Andrew Ng's course: the gradient's form
        ("lambd / m * W3", {"lambd": 0.7}, 64, 0.7 / 64),
        ("(lambd/m)*W", {"lambd": 0.7}, 10, 0.07),
        ("lambd / (2 * m) * np.sum(np.square(W))", {"lambd": 0.7}, 10, 0.07),  # ... and its cost's form
        ("reg * np.sum(W * W)", {"reg": 0.05}, 1, 0.1),  # CS231n: the gradient is 2 * reg * W
        ("reg * sum(W^2)", {"reg": 0.05}, 1, 0.1),  # as the issue writes it: ^ is a power here
        ("0.5 * reg * np.sum(W1 * W1)", {"reg": 0.05}, 1, 0.05),
        ("(W * W).sum() * reg", {"reg": 0.05}, 1, 0.1),
        ("wd/2 * ||W||^2", {"wd": 0.01}, 1, 0.01),  # weight decay: W^2 binds tighter than *, as written
        ("wd / 2 * np.linalg.norm(W) ** 2", {"wd": 0.01}, 1, 0.01),
        ("wd * W", {"wd": 0.01}, 1, 0.01),
        ("2e-3 * W", {}, 1, 2e-3),
        (0.01, {}, 1, 0.01),  # a number is PyTorch's weight_decay
    ],
)
def test_l2_is_declared_as_written_and_becomes_c_in_dw_plus_c_w(written, constants, m, coefficient):
    l2 = parse_l2(written, constants, m)
    assert l2.coefficient == pytest.approx(coefficient, rel=1e-12)
    assert l2.written == (written if isinstance(written, str) else "0.01/2 * ||W||^2")


@pytest.mark.parametrize("nothing", [None, 0, 0.0, "0 * W", "lambd/m * W"])
def test_no_l2_term_is_none(nothing):
    assert parse_l2(nothing, {"lambd": 0.0}, 4) is None


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("lambd/m * W", r"uses 'lambd', which is not W, m or a given constant.*arguments=\{'lambd': 0.7\}"),
        ("W + 1", "neither a gradient term linear in W"),
        ("0.1 * sum(W**2) + W", "neither a gradient term linear in W"),
        ("__import__('os').getcwd()", "can't read"),  # nothing is evaluated beyond arithmetic
        ("lambd/m *", "not an expression"),
        ("-0.1 * W", "negative coefficient"),
        (-0.1, "must be >= 0"),
        (float("nan"), "must be >= 0"),
        ("W +", "not an expression"),
        ("foo(W)", "can't read 'foo\\(W\\)'"),
        ("W ** W", "neither a gradient term"),
        ("1e400 * W", "not finite"),
        ("W / 0", "not finite"),
        ("1 / 0 * W", "can't be computed .*division by zero"),
        ("10.0 ** 400 * W", "can't be computed"),
    ],
)
def test_an_l2_term_that_cannot_be_read_gets_a_clear_error(written, message):
    # A UserError: the command line prints its one line and exits 2 (tests/test_cli_errors.py)
    with pytest.raises(ObjectiveError, match=message):
        parse_l2(written, {}, 8)


def test_l2_forms_show_c_the_ways_people_write_it():
    text = L2("", 0.1).forms(m=20)
    assert "'lambd/m * W' with lambd = 2 (m = 20)" in text
    assert "'reg * sum(W**2)' with reg = 0.05" in text and "'wd/2 * ||W||^2' with wd = 0.1" in text


def _output_and_target(rng, m=5, k=4):
    a = rng.standard_normal((m, k))
    labels = rng.integers(0, k, m)
    return a, labels, np.eye(k)[labels]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_each_loss_is_its_formula_with_its_reduction(rng, reduction):
    a, labels, target = _output_and_target(rng)
    m, k = a.shape
    log_softmax = a - a.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    per_example = {
        "cross_entropy": -log_softmax[np.arange(m), labels],
        "nll": -a[np.arange(m), labels],
        "quadratic": 0.5 * ((a - target) ** 2).sum(axis=1),
    }
    for loss, values in per_example.items():
        value = Objective(loss, reduction)(Tensor(a), labels, target, []).data
        np.testing.assert_allclose(value, values.mean() if reduction == "mean" else values.sum(), rtol=1e-13)
    mse = Objective("mse", reduction)(Tensor(a), labels, target, []).data  # PyTorch's: over every element
    squares = (a - target) ** 2
    np.testing.assert_allclose(mse, squares.mean() if reduction == "mean" else squares.sum(), rtol=1e-13)
    assert squares.size == m * k


def test_the_l2_term_and_the_sign_are_part_of_the_objective(rng):
    a, labels, target = _output_and_target(rng)
    weights = [Tensor(rng.standard_normal((3, 4)), requires_grad=True), Tensor(rng.standard_normal((4, 2)))]
    plain = Objective("quadratic")(Tensor(a), labels, target, []).data
    l2 = parse_l2("lambd/m * W", {"lambd": 0.5}, 5)
    with_l2 = Objective("quadratic", l2=l2)(Tensor(a), labels, target, weights)
    penalty = 0.1 / 2 * sum(float(np.sum(w.data ** 2)) for w in weights)
    np.testing.assert_allclose(with_l2.data, plain + penalty, rtol=1e-13)
    with_l2.backward()
    np.testing.assert_allclose(weights[0].grad, 0.1 * weights[0].data, rtol=1e-13)  # d/dW c/2 ||W||^2 = c W
    maximized = Objective("quadratic", l2=l2, maximize=True)(Tensor(a), labels, target, weights).data
    np.testing.assert_allclose(maximized, -(plain + penalty), rtol=1e-13)


def test_a_loss_callable_must_give_a_scalar_tensor(rng):
    a, labels, target = _output_and_target(rng)
    assert Objective(lambda out, y: (out * out).sum())(Tensor(a), labels, target, []).shape == ()
    with pytest.raises(TypeError, match="must return a scalar Tensor"):
        Objective(lambda out, y: out * out)(Tensor(a), labels, target, [])
    with pytest.raises(TypeError, match="got float"):
        Objective(lambda out, y: 1.0)(Tensor(a), labels, target, [])


def test_a_declaration_that_is_not_one_gets_a_clear_error():
    with pytest.raises(ValueError, match="loss must be one of cross_entropy, nll, mse, quadratic or a callable"):
        make_objective("hinge", "mean", None, False, {}, 4)
    with pytest.raises(ValueError, match="reduction must be 'mean'"):
        make_objective("mse", "none", None, False, {}, 4)


def test_the_alternatives_a_hand_derivation_may_have_differentiated_instead():
    declared = Objective("mse", "mean", L2("wd * W", 0.1), maximize=False)
    changes = [change for change, _ in declared.alternatives()]
    assert changes[:3] == ["maximize=True (the opposite sign)", "no L2 term", "reduction='sum'"]
    assert "loss='quadratic', reduction='mean'" in changes and "loss='mse', reduction='mean'" not in changes
    assert [change for change, _ in Objective(lambda out, y: out.sum()).alternatives()] == [
        "maximize=True (the opposite sign)"]
