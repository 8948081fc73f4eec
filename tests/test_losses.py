"""Losses: every option of cross_entropy, nll_loss and mse_loss equals torch.nn.functional's value and gradient to
1e-10 in float64 (Hypothesis over layouts, weights, ignore_index, smoothing and reductions); the fused common case
is the textbook softmax - onehot; bad arguments get errors that name what is wrong."""

import importlib.util

import numpy as np
import pytest
from conftest import require
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinygrad_np import Tensor, nn, ops
from tinygrad_np.nn import functional as F


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


REDUCTIONS = ["mean", "sum", "none"]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# ---- against torch.nn.functional, every option -------------------------------------------------------------


@st.composite
def class_loss_cases(draw):
    """Scores of any layout PyTorch takes, labels (some ignored), optional class weights, reduction, smoothing."""
    classes = draw(st.integers(1, 5))
    layout = draw(st.sampled_from(["unbatched", "batched", "spatial"]))
    if layout == "unbatched":
        shape = (classes,)
    elif layout == "batched":
        shape = (draw(st.integers(0, 6)), classes)
    else:
        shape = (draw(st.integers(0, 3)), classes, *draw(st.lists(st.integers(0, 3), min_size=1, max_size=2)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    label_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    ignore_index = draw(st.sampled_from([-100, -1, 0, classes - 1, classes + 2]))
    labels = rng.integers(0, classes, label_shape)
    ignore_share = draw(st.sampled_from([0.0, 0.3, 1.0]))
    labels = np.where(rng.random(label_shape) < ignore_share, ignore_index, labels)
    weight = None
    if draw(st.booleans()):  # some weights exactly 0: a mean over zero total weight is nan, as in torch
        weight = rng.uniform(0, 2, classes) * (rng.random(classes) > 0.2)
    return dict(
        scores=rng.normal(0, 3, shape),
        labels=labels,
        weight=weight,
        ignore_index=ignore_index,
        reduction=draw(st.sampled_from(REDUCTIONS)),
        label_smoothing=draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0, 1)),
        upstream=rng.standard_normal(label_shape),  # a non-uniform upstream gradient
    )


def assert_equals_torch(torch, ours, theirs, case, **options):
    """Value and gradient of `ours(scores, labels, ...)` against `theirs`, in float64, to 1e-10."""
    scores = Tensor(case["scores"], requires_grad=True)
    torch_scores = torch.tensor(case["scores"], requires_grad=True)
    weight = case["weight"]
    common = dict(ignore_index=case["ignore_index"], reduction=case["reduction"], **options)
    loss = ours(scores, case["labels"], weight, **common)
    expected = theirs(
        torch_scores, torch.tensor(case["labels"]), None if weight is None else torch.tensor(weight), **common
    )
    assert loss.shape == tuple(expected.shape) and loss.dtype == np.float64
    np.testing.assert_allclose(loss.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = case["upstream"] if case["reduction"] == "none" else np.float64(case["upstream"].sum())
    loss.backward(upstream)
    expected.backward(torch.tensor(upstream))
    np.testing.assert_allclose(scores.grad, torch_scores.grad.numpy(), rtol=1e-10, atol=1e-12)


@given(case=class_loss_cases())
def test_cross_entropy_equals_torch_for_every_option(torch, case):
    assert_equals_torch(
        torch, F.cross_entropy, torch.nn.functional.cross_entropy, case, label_smoothing=case["label_smoothing"]
    )


@given(case=class_loss_cases())
def test_nll_loss_equals_torch_for_every_option(torch, case):
    assert_equals_torch(torch, F.nll_loss, torch.nn.functional.nll_loss, case)


@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**32 - 1),
)
def test_mse_loss_equals_torch_for_every_reduction(torch, shape, reduction, seed):
    rng = np.random.default_rng(seed)
    prediction, target, upstream = (rng.standard_normal(shape) for _ in range(3))
    ours = [Tensor(prediction, requires_grad=True), Tensor(target, requires_grad=True)]
    theirs = [torch.tensor(prediction, requires_grad=True), torch.tensor(target, requires_grad=True)]
    loss = F.mse_loss(*ours, reduction=reduction)
    expected = torch.nn.functional.mse_loss(*theirs, reduction=reduction)
    np.testing.assert_allclose(loss.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = upstream if reduction == "none" else np.float64(upstream.sum())
    loss.backward(upstream)
    expected.backward(torch.tensor(upstream))
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine.grad, reference.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_an_all_ignored_batch_gives_nan_and_a_zero_gradient_as_in_torch(torch):
    logits = np.random.default_rng(0).standard_normal((3, 4))
    labels = np.array([-100, -100, -100])
    for smoothing, weight in [(0.0, None), (0.2, None), (0.3, np.array([1.0, 2.0, 0.5, 1.0]))]:
        z = Tensor(logits, requires_grad=True)
        loss = F.cross_entropy(z, labels, weight, label_smoothing=smoothing)
        loss.backward()
        assert np.isnan(loss.item())
        np.testing.assert_array_equal(z.grad, np.zeros((3, 4)))
    assert F.cross_entropy(Tensor(logits), labels, reduction="sum").item() == 0.0
    empty = F.cross_entropy(Tensor(np.zeros((0, 4))), np.zeros(0, dtype=np.int64))
    expected = torch.nn.functional.cross_entropy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert np.isnan(empty.item()) and np.isnan(expected.item())


def test_labels_that_all_weigh_zero_give_nan_even_with_smoothing_as_in_torch(torch):
    # torch divides the nll term (0 / 0) and the smoothing term (x / 0) separately, so the mean is nan, not inf.
    logits, labels, weight = np.array([[0.5, -1.0], [2.0, 0.3]]), np.array([0, 0]), np.array([0.0, 1.5])
    case = dict(scores=logits, labels=labels, weight=weight, ignore_index=-100, reduction="mean", upstream=np.ones(2))
    for smoothing in (0.0, 0.1):
        assert_equals_torch(torch, F.cross_entropy, torch.nn.functional.cross_entropy, case, label_smoothing=smoothing)
    assert_equals_torch(torch, F.nll_loss, torch.nn.functional.nll_loss, case)


# ---- the fused common case ------------------------------------------------------------------------------------


def test_cross_entropy_equals_numpy_and_its_gradient_is_softmax_minus_onehot_over_m(rng):
    m, classes = 7, 10
    logits = rng.standard_normal((m, classes)) * 3
    labels = rng.integers(0, classes, m)
    z = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, labels)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), -_log_softmax(logits)[np.arange(m), labels].mean(), rtol=1e-14)
    loss.backward()
    onehot = np.eye(classes)[labels]
    probs = np.exp(_log_softmax(logits))
    np.testing.assert_allclose(z.grad, (probs - onehot) / m, rtol=1e-13, atol=1e-17)
    assert nn.CrossEntropyLoss()(Tensor(logits), labels).item() == loss.item()


def test_the_fused_path_and_the_general_one_agree(rng):
    # Unit weights and an ignore_index no label uses take the general path; the numbers must not move.
    logits, labels = rng.standard_normal((50, 6)), rng.integers(0, 6, 50)
    results = []
    for options in [{}, {"weight": np.ones(6)}, {"ignore_index": 7}, {"label_smoothing": 1e-300}]:
        z = Tensor(logits, requires_grad=True)
        loss = F.cross_entropy(z, labels, **options)
        loss.backward()
        results.append((loss.item(), z.grad))
    for value, grad in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=1e-14)
        np.testing.assert_allclose(grad, results[0][1], rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize(
    "options",
    [{}, {"weight": np.ones(4)}, {"label_smoothing": 0.1}, {"ignore_index": 0}, {"reduction": "none"}],
    ids=["fused", "weight", "smoothing", "ignore", "none"],
)
def test_float32_losses_and_gradients_stay_float32(options):
    z = Tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(z, np.array([0, 1, 2, 3, 0]), **options)
    loss.sum().backward()
    assert loss.dtype == np.float32 and z.grad.dtype == np.float32


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]])
    loss = F.cross_entropy(Tensor(logits), np.array([0, 0]))
    np.testing.assert_allclose(loss.item(), (0 + 1000) / 2, rtol=1e-15)
    smoothed = F.cross_entropy(Tensor(logits), np.array([0, 0]), label_smoothing=0.5)
    assert np.isfinite(smoothed.item())


def test_nll_loss_picks_the_labelled_log_probability_and_log_softmax_plus_nll_is_cross_entropy(rng):
    m = 5
    log_probs = _log_softmax(rng.standard_normal((m, 3)))
    labels = np.array([0, 2, 1, 1, 0])
    p = Tensor(log_probs, requires_grad=True)
    loss = F.nll_loss(p, labels)
    np.testing.assert_allclose(loss.item(), -log_probs[np.arange(m), labels].mean(), rtol=1e-15)
    loss.backward()
    expected = np.zeros((m, 3))
    expected[np.arange(m), labels] = -1 / m
    np.testing.assert_array_equal(p.grad, expected)

    logits = rng.standard_normal((m, 3))
    weight = np.array([0.5, 2.0, 1.0])
    for options in [{}, {"weight": weight, "ignore_index": 1}]:
        a = Tensor(logits, requires_grad=True)
        b = Tensor(logits, requires_grad=True)
        two_step = nn.NLLLoss(**options)(nn.LogSoftmax(axis=1)(a), labels)
        fused = nn.CrossEntropyLoss(**options)(b, labels)
        np.testing.assert_allclose(two_step.item(), fused.item(), rtol=1e-14)
        two_step.backward()
        fused.backward()
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-17)


def test_the_ops_still_take_labels_alone():
    # The fused Functions keep their old call (the differential fuzzer and the engine tests use it).
    logits = Tensor(np.zeros((4, 10)), requires_grad=True)
    loss = ops.CrossEntropy.apply(logits, labels=np.zeros(4, dtype=np.int64))
    np.testing.assert_allclose(loss.item(), np.log(10))
    assert ops.NLLLoss.apply(Tensor(np.full((2, 3), -1.0)), labels=np.array([0, 2])).item() == 1.0


def test_mse_loss_and_its_gradient(rng):
    prediction, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    p = Tensor(prediction, requires_grad=True)
    loss = nn.MSELoss()(p, target)
    np.testing.assert_allclose(loss.item(), ((prediction - target) ** 2).mean(), rtol=1e-15)
    loss.backward()
    np.testing.assert_allclose(p.grad, 2 * (prediction - target) / prediction.size, rtol=1e-14)
    assert nn.MSELoss(reduction="sum")(Tensor(prediction), target).item() == pytest.approx(loss.item() * 12, rel=1e-14)
    assert nn.MSELoss(reduction="none")(Tensor(prediction), target).shape == (4, 3)


# ---- modules take the functions' arguments ---------------------------------------------------------------


def test_loss_modules_equal_their_functions(rng):
    logits, labels = rng.standard_normal((6, 4, 2)), rng.integers(0, 4, (6, 2))
    weight = np.array([1.0, 0.5, 2.0, 0.0])
    options = dict(ignore_index=2, reduction="none")
    module = nn.CrossEntropyLoss(weight, label_smoothing=0.2, **options)
    np.testing.assert_array_equal(
        module(Tensor(logits), labels).data,
        F.cross_entropy(Tensor(logits), labels, weight, label_smoothing=0.2, **options).data,
    )
    np.testing.assert_array_equal(
        nn.NLLLoss(weight=weight, **options)(Tensor(logits), labels).data,
        F.nll_loss(Tensor(logits), labels, weight, **options).data,
    )
    assert list(module.parameters()) == []  # the class weights are a setting, not something to train


# ---- bad arguments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_classification_losses_reject_bad_labels_clearly(loss):
    name = loss.__name__
    logits = Tensor(np.zeros((3, 4)))
    with pytest.raises(TypeError, match=rf"{name}: labels must be integer class indices, got dtype float64"):
        loss(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels have shape \(3, 1\), but input of shape \(3, 4\) needs .* \(3,\)"):
        loss(logits, np.array([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r"labels have shape \(2,\), but input of shape \(3, 4\)"):
        loss(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"label 4 is out of range for 4 classes \(0..3\) and isn't ignore_index"):
        loss(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"label -1 is out of range"):
        loss(logits, np.array([0, -1, 1]))
    assert np.isfinite(loss(logits, np.array([0, -1, 1]), ignore_index=-1).item())
    with pytest.raises(ValueError, match=r"labels have shape \(1,\), but input of shape \(4,\) needs .* shape \(\)"):
        loss(Tensor(np.zeros(4)), np.array([0]))
    with pytest.raises(ValueError, match=r"expected input of shape \(classes,\), \(batch, classes\) .*, got \(\)"):
        loss(Tensor(np.zeros(())), np.array(0))
    with pytest.raises(TypeError, match=r"input must hold floating-point scores, got dtype int64"):
        loss(Tensor(np.zeros((3, 4), dtype=np.int64)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"the input has no classes"):
        loss(Tensor(np.zeros((2, 0))), np.array([-100, -100]))
    with pytest.raises(TypeError, match=r"ignore_index must be an integer, got 1.5"):
        loss(logits, np.array([0, 1, 2]), ignore_index=1.5)


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_classification_losses_reject_bad_weights_and_reductions(loss):
    logits, labels = Tensor(np.zeros((3, 4))), np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"weight has shape \(3,\), but the input has 4 classes"):
        loss(logits, labels, np.ones(3))
    with pytest.raises(ValueError, match=r"weight must be a 1-D array of finite numbers, .* float64 \(4, 1\)"):
        loss(logits, labels, np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"weight must be a 1-D array of finite numbers"):
        loss(logits, labels, np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        loss(logits, labels, reduction="avg")


def test_label_smoothing_outside_0_1_and_bad_module_settings_fail_at_once():
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\], got 1.5"):
        F.cross_entropy(Tensor(np.zeros((1, 2))), np.array([0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be .* got 'batchmean'"):
        nn.CrossEntropyLoss(reduction="batchmean")
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\], got -0.1"):
        nn.CrossEntropyLoss(label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"NLLLoss: weight must be a 1-D array"):
        nn.NLLLoss(weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"MSELoss: reduction must be"):
        nn.MSELoss(reduction="mean ")


def test_mse_loss_refuses_to_broadcast_mismatched_shapes():
    with pytest.raises(ValueError, match=r"prediction has shape \(4, 1\) but target has shape \(4,\)"):
        F.mse_loss(Tensor(np.zeros((4, 1))), np.zeros(4))
