"""optim: each update equals the textbook formula written out in NumPy here (and torch.optim); state round trips."""

import importlib.util
import math
from collections.abc import Callable

import numpy as np
import pytest
from conftest import require
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np import Tensor, nn, optim


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


# A fixed starting point and a fixed, non-uniform gradient sequence (signs flip, magnitudes differ).
START = np.array([[0.5, -1.5, 2.0], [0.0, 3.0, -0.25]])
GRADS = [np.random.default_rng(step).standard_normal(START.shape) * (step + 1) for step in range(5)]


# ---- the textbook updates, written out independently of tinygrad_np -------------------------------------


def sgd_reference(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    p, velocity, history = START.copy(), None, []
    for g in GRADS:
        g = g + weight_decay * p
        if momentum:
            velocity = g.copy() if velocity is None else momentum * velocity + g
            g = g + momentum * velocity if nesterov else velocity
        p = p - lr * g
        history.append(p)
    return history


def rmsprop_reference(lr, alpha=0.99, eps=1e-8, weight_decay=0.0):
    p, square_avg, history = START.copy(), np.zeros_like(START), []
    for g in GRADS:
        g = g + weight_decay * p
        square_avg = alpha * square_avg + (1 - alpha) * g**2
        p = p - lr * g / (np.sqrt(square_avg) + eps)
        history.append(p)
    return history


def adam_reference(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    beta1, beta2 = betas
    p, m, v, history = START.copy(), np.zeros_like(START), np.zeros_like(START), []
    for t, g in enumerate(GRADS, start=1):
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append(p)
    return history


# (name, our optimizer, reference, torch optimizer): the same settings three times.
CASES = [
    ("sgd", lambda p: optim.SGD(p, lr=0.1), lambda: sgd_reference(0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    (
        "sgd-momentum",
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
        lambda: sgd_reference(0.05, momentum=0.9),
        lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9),
    ),
    (
        "sgd-nesterov",
        lambda p: optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
        lambda: sgd_reference(0.05, momentum=0.8, nesterov=True),
        lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    (
        "sgd-weight-decay",
        lambda p: optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1),
        lambda: sgd_reference(0.05, momentum=0.5, weight_decay=0.1),
        lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1),
    ),
    (
        "rmsprop",
        lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6),
        lambda: rmsprop_reference(0.01, alpha=0.9, eps=1e-6),
        lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6),
    ),
    (
        "rmsprop-weight-decay",
        lambda p: optim.RMSprop(p, lr=0.01, weight_decay=0.2),
        lambda: rmsprop_reference(0.01, weight_decay=0.2),
        lambda t, p: t.optim.RMSprop(p, lr=0.01, weight_decay=0.2),
    ),
    (
        "adam",
        lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        lambda: adam_reference(0.01, betas=(0.8, 0.99), eps=1e-6),
        lambda t, p: t.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    ),
    (
        "adam-weight-decay",
        lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1),
        lambda: adam_reference(0.01, weight_decay=0.1),
        lambda t, p: t.optim.Adam(p, lr=0.01, weight_decay=0.1),
    ),
    (
        "adamw",
        lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
        lambda: adam_reference(0.01, weight_decay=0.1, decoupled=True),
        lambda t, p: t.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
    (
        "adamw-defaults",  # both default to weight_decay=0.01
        lambda p: optim.AdamW(p),
        lambda: adam_reference(1e-3, weight_decay=0.01, decoupled=True),
        lambda t, p: t.optim.AdamW(p),
    ),
]
IDS = [case[0] for case in CASES]


def run_ours(make: Callable, grads=GRADS, dtype=np.float64) -> list[np.ndarray]:
    param = nn.Parameter(START.astype(dtype))
    optimizer = make([param])
    history = []
    for g in grads:
        param.grad = g.astype(dtype)
        optimizer.step()
        history.append(param.data.copy())
    return history


@pytest.mark.parametrize(("name", "make", "reference", "make_torch"), CASES, ids=IDS)
def test_updates_equal_the_textbook_formulas(name, make, reference, make_torch):
    for step, (got, want) in enumerate(zip(run_ours(make), reference(), strict=True)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15, err_msg=f"{name}, step {step + 1}")


@pytest.mark.parametrize(("name", "make", "reference", "make_torch"), CASES, ids=IDS)
def test_updates_equal_torch_optim(torch, name, make, reference, make_torch):
    param = torch.tensor(START, requires_grad=True)
    optimizer = make_torch(torch, [param])
    for step, (g, got) in enumerate(zip(GRADS, run_ours(make), strict=True)):
        param.grad = torch.tensor(g)
        optimizer.step()
        np.testing.assert_allclose(got, param.detach().numpy(), rtol=1e-13, atol=1e-15, err_msg=f"step {step + 1}")


rates = st.floats(1e-4, 0.5)
unit = st.floats(0.0, 0.99)
decays = st.sampled_from([0.0, 1e-3, 0.1])


@given(lr=rates, momentum=unit, nesterov=st.booleans(), weight_decay=decays)
def test_sgd_equals_the_formula_for_any_settings(lr, momentum, nesterov, weight_decay):
    nesterov = nesterov and momentum > 0
    history = run_ours(lambda p: optim.SGD(p, lr, momentum, nesterov, weight_decay))
    np.testing.assert_allclose(history, sgd_reference(lr, momentum, nesterov, weight_decay), rtol=1e-12, atol=1e-14)


@given(lr=rates, alpha=unit, eps=st.sampled_from([1e-8, 1e-3]), weight_decay=decays)
def test_rmsprop_equals_the_formula_for_any_settings(lr, alpha, eps, weight_decay):
    history = run_ours(lambda p: optim.RMSprop(p, lr, alpha, eps, weight_decay))
    np.testing.assert_allclose(history, rmsprop_reference(lr, alpha, eps, weight_decay), rtol=1e-12, atol=1e-14)


@given(lr=rates, beta1=unit, beta2=unit, weight_decay=decays, decoupled=st.booleans())
def test_adam_and_adamw_equal_the_formula_for_any_settings(lr, beta1, beta2, weight_decay, decoupled):
    kind = optim.AdamW if decoupled else optim.Adam
    history = run_ours(lambda p: kind(p, lr, (beta1, beta2), 1e-8, weight_decay))
    expected = adam_reference(lr, (beta1, beta2), 1e-8, weight_decay, decoupled)
    np.testing.assert_allclose(history, expected, rtol=1e-12, atol=1e-14)


def test_plain_sgd_is_the_tutorials_update_bit_for_bit():
    # The tutorial: W1 = W1 - alpha * dW1.
    p = START.copy()
    for got, g in zip(run_ours(lambda params: optim.SGD(params, lr=0.1)), GRADS, strict=True):
        p = p - 0.1 * g
        np.testing.assert_array_equal(got, p)


@pytest.mark.parametrize(("name", "make", "reference", "make_torch"), CASES, ids=IDS)
def test_float32_parameters_and_state_stay_float32(name, make, reference, make_torch):
    param = nn.Parameter(START.astype(np.float32))
    optimizer = make([param])
    for g in GRADS[:2]:
        param.grad = g.astype(np.float32)
        optimizer.step()
    assert param.dtype == np.float32
    assert all(value.dtype == np.float32 for state in optimizer.state for value in state.values())
    np.testing.assert_allclose(param.data, reference()[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "make", "reference", "make_torch"), CASES, ids=IDS)
def test_state_dict_round_trip_reproduces_the_next_steps_exactly(name, make, reference, make_torch):
    param = nn.Parameter(START.copy())
    optimizer = make([param])
    for g in GRADS[:3]:
        param.grad = g
        optimizer.step()
    saved_param, saved_state = param.data.copy(), optimizer.state_dict()

    for g in GRADS[3:]:  # the original keeps going; if the saved state aliased its arrays, it would change too
        param.grad = g
        optimizer.step()

    resumed = nn.Parameter(saved_param)
    other = make([resumed])
    other.load_state_dict(saved_state)
    assert other.step_count == 3
    for g in GRADS[3:]:
        resumed.grad = g
        other.step()
    np.testing.assert_array_equal(resumed.data, param.data)


def test_a_parameter_without_a_gradient_is_left_alone():
    used, unused = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = optim.SGD([used, unused], lr=0.1, momentum=0.9)
    used.grad = np.array([1.0, -1.0])
    optimizer.step()
    np.testing.assert_array_equal(unused.data, np.ones(2))
    assert optimizer.state[1] == {}


def test_adam_bias_correction_counts_each_parameters_own_steps(torch):
    # A parameter that first gets a gradient at step 3 (a frozen-then-unfrozen layer, or an unused head) takes a
    # first Adam step, bias-corrected with t = 1, as in torch; not one corrected as if it had been averaging for 3.
    late = nn.Parameter(np.ones(2))
    always = nn.Parameter(np.ones(2))
    optimizer = optim.Adam([always, late], lr=0.1)
    torch_late = torch.ones(2, dtype=torch.float64, requires_grad=True)
    torch_always = torch.ones(2, dtype=torch.float64, requires_grad=True)
    torch_optimizer = torch.optim.Adam([torch_always, torch_late], lr=0.1)
    for step in range(4):
        g = np.array([1.0, -2.0]) * (step + 1)
        always.grad, torch_always.grad = g, torch.tensor(g)
        if step >= 2:
            late.grad, torch_late.grad = g, torch.tensor(g)
        optimizer.step()
        torch_optimizer.step()
        np.testing.assert_allclose(late.data, torch_late.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(always.data, torch_always.detach().numpy(), rtol=1e-14)
    # The first step of Adam moves each element by lr exactly (m_hat / sqrt(v_hat) = sign(g)).
    fresh = nn.Parameter(np.zeros(2))
    adam = optim.Adam([nn.Parameter(np.zeros(1)), fresh], lr=0.1, eps=0.0)
    adam.params[0].grad = np.ones(1)
    adam.step()
    fresh.grad = np.array([3.0, -0.5])
    adam.step()
    np.testing.assert_allclose(fresh.data, [-0.1, 0.1], rtol=1e-15)


def test_state_dict_round_trip_keeps_each_parameters_step_count():
    def make(params):
        return optim.Adam(params, lr=0.1)

    params = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))]
    optimizer = make(params)
    for step, g in enumerate(GRADS):
        if step == 3:
            saved = [p.data.copy() for p in params], optimizer.state_dict()
        params[0].grad = g[0, :2]
        params[1].grad = g[1, :2] if step >= 2 else None  # the second joins late
        optimizer.step()
    assert optimizer.param_steps == [5, 3]
    resumed = [nn.Parameter(data) for data in saved[0]]
    other = make(resumed)
    other.load_state_dict(saved[1])
    assert other.param_steps == [3, 1]
    for g in GRADS[3:]:
        resumed[0].grad, resumed[1].grad = g[0, :2], g[1, :2]
        other.step()
    for got, want in zip(resumed, params, strict=True):
        np.testing.assert_array_equal(got.data, want.data)


def test_zero_grad_clears_the_gradients():
    params = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))]
    optimizer = optim.Adam(params)
    for p in params:
        p.grad = np.ones(p.shape)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


def test_training_a_linear_model_reaches_the_least_squares_solution():
    # End to end through autograd: SGD with momentum on MSE converges to the normal-equations answer.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.01 * rng.standard_normal((64, 1))
    model = nn.Linear(3, 1, generator=0, dtype=np.float64)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(600):
        optimizer.zero_grad()
        nn.MSELoss()(model(Tensor(x)), y).backward()
        optimizer.step()
    design = np.hstack([x, np.ones((64, 1))])
    solution = np.linalg.lstsq(design, y, rcond=None)[0][:, 0]
    np.testing.assert_allclose(model.weight.data[0], solution[:3], atol=1e-8)
    np.testing.assert_allclose(model.bias.data, solution[3:], atol=1e-8)


# ---- bad settings and bad state ------------------------------------------------------------------------


def _param() -> list[nn.Parameter]:
    return [nn.Parameter(np.ones(2))]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: optim.SGD(_param(), lr=-0.1), r"learning rate must be a finite number >= 0, got -0.1"),
        (lambda: optim.Adam(_param(), lr=float("nan")), r"learning rate must be a finite number >= 0, got nan"),
        (lambda: optim.SGD(_param(), lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (lambda: optim.SGD(_param(), lr=0.1, momentum=-0.5), r"momentum must be in \[0, 1\), got -0.5"),
        (lambda: optim.SGD(_param(), lr=0.1, nesterov=True), r"Nesterov momentum needs momentum > 0"),
        (lambda: optim.SGD(_param(), lr=0.1, weight_decay=-1), r"weight_decay must be a finite number >= 0"),
        (lambda: optim.RMSprop(_param(), alpha=1.0), r"alpha must be in \[0, 1\), got 1.0"),
        (lambda: optim.Adam(_param(), betas=(1.0, 0.999)), r"beta1 must be in \[0, 1\), got 1.0"),
        (lambda: optim.AdamW(_param(), betas=(0.9, 1.5)), r"beta2 must be in \[0, 1\), got 1.5"),
        (lambda: optim.Adam([]), r"empty parameter list; pass model.parameters\(\)"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_parameters_must_be_tensors_that_require_grad():
    with pytest.raises(TypeError, match="parameter 1 is not a Tensor that requires grad"):
        optim.SGD([nn.Parameter(np.ones(2)), Tensor(np.ones(2))], lr=0.1)


def test_passing_the_model_instead_of_its_parameters_says_so():
    for model in (nn.Linear(2, 2, generator=0), nn.Sequential(nn.Linear(2, 2, generator=0))):
        with pytest.raises(TypeError, match=r"model.parameters\(\)"):
            optim.SGD(model, lr=0.1)


def test_load_state_dict_rejects_state_from_another_optimizer_or_model():
    params = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones((2, 2)))]
    adam = optim.Adam(params)
    for p in params:
        p.grad = np.ones(p.shape)
    adam.step()
    with pytest.raises(ValueError, match="optimizer state is for Adam, not SGD"):
        optim.SGD(params, lr=0.1).load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match="optimizer state has 2 parameters, this optimizer has 1"):
        optim.Adam(params[:1]).load_state_dict(adam.state_dict())
    swapped = [nn.Parameter(np.ones((2, 2))), nn.Parameter(np.ones(2))]
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(2,\), not \(2, 2\)"):
        optim.Adam(swapped).load_state_dict(adam.state_dict())


def test_state_dict_restores_the_hyperparameters():
    adam = optim.Adam(_param(), lr=0.02, betas=(0.85, 0.95), eps=1e-7, weight_decay=0.3)
    other = optim.Adam(_param())
    other.load_state_dict(adam.state_dict())
    assert (other.lr, other.betas, other.eps, other.weight_decay) == (0.02, (0.85, 0.95), 1e-7, 0.3)
    assert repr(other) == "Adam(lr=0.02, betas=[0.85, 0.95], eps=1e-07, weight_decay=0.3)"


# ---- learning-rate schedules ---------------------------------------------------------------------------


def _lrs(scheduler: optim.LRScheduler, epochs: int) -> list[float]:
    lrs = [scheduler.optimizer.lr]
    for _ in range(epochs):
        scheduler.step()
        lrs.append(scheduler.optimizer.lr)
    return lrs


def test_step_lr_decays_by_gamma_every_step_size_epochs():
    optimizer = optim.SGD(_param(), lr=0.1)
    lrs = _lrs(optim.StepLR(optimizer, step_size=3, gamma=0.5), 10)
    expected = [0.1 * 0.5 ** (epoch // 3) for epoch in range(11)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-15)
    assert lrs[:4] == [0.1, 0.1, 0.1, 0.05]


def test_cosine_annealing_follows_half_a_cosine_then_holds_eta_min():
    optimizer = optim.SGD(_param(), lr=0.1)
    lrs = _lrs(optim.CosineAnnealingLR(optimizer, T_max=8, eta_min=0.001), 12)
    expected = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * min(t, 8) / 8)) / 2 for t in range(13)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-14)
    assert lrs[0] == 0.1 and lrs[4] == pytest.approx(0.0505, rel=1e-14) and lrs[8] == pytest.approx(0.001)
    assert lrs[9:] == [lrs[8]] * 4  # after T_max it stays at eta_min (PyTorch would climb back up)


def test_schedules_match_torch(torch):
    def torch_lrs(make, epochs):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = make(optimizer)
        lrs = [optimizer.param_groups[0]["lr"]]
        for _ in range(epochs):
            optimizer.step()
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
        return lrs

    ours = _lrs(optim.StepLR(optim.SGD(_param(), lr=0.1), step_size=4, gamma=0.3), 12)
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.3), 12)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    ours = _lrs(optim.CosineAnnealingLR(optim.SGD(_param(), lr=0.1), T_max=10, eta_min=0.002), 10)
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.002), 10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: optim.StepLR(o, step_size=2, gamma=0.5),
        lambda o: optim.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
    ],
    ids=["step", "cosine"],
)
def test_scheduler_state_dict_round_trip(make):
    original = make(optim.SGD(_param(), lr=0.1))
    for _ in range(3):
        original.step()
    resumed_optimizer = optim.SGD(_param(), lr=0.1)
    resumed = make(resumed_optimizer)
    resumed.load_state_dict(original.state_dict())
    assert resumed_optimizer.lr == original.optimizer.lr  # loading sets the optimizer's lr at once
    assert _lrs(resumed, 5) == _lrs(original, 5)


def test_scheduler_base_lr_comes_from_the_optimizer_and_survives_a_changed_lr():
    optimizer = optim.SGD(_param(), lr=0.2)
    scheduler = optim.StepLR(optimizer, step_size=1, gamma=0.5)
    state = scheduler.state_dict()
    assert state == {"base_lr": 0.2, "last_epoch": 0}
    fresh = optim.SGD(_param(), lr=123.0)
    optim.StepLR(fresh, step_size=1, gamma=0.5).load_state_dict({"base_lr": 0.2, "last_epoch": 2})
    assert fresh.lr == 0.05


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda o: optim.StepLR(o, step_size=0), r"step_size must be >= 1, got 0"),
        (lambda o: optim.StepLR(o, step_size=1, gamma=0.0), r"gamma must be in \(0, 1\], got 0.0"),
        (lambda o: optim.StepLR(o, step_size=1, gamma=1.5), r"gamma must be in \(0, 1\], got 1.5"),
        (lambda o: optim.CosineAnnealingLR(o, T_max=0), r"T_max must be >= 1, got 0"),
    ],
)
def test_bad_schedule_settings_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make(optim.SGD(_param(), lr=0.1))


def test_a_state_dict_with_impossible_hyperparameters_is_refused_and_changes_nothing():
    param = Tensor(np.ones(3), requires_grad=True)
    adam = optim.Adam([param], lr=0.01)
    state = adam.state_dict()
    state["hyperparameters"]["betas"] = [0.9, 2.0]
    with pytest.raises(ValueError, match="beta2 must be in"):
        adam.load_state_dict(state)
    assert adam.betas == (0.9, 0.999)
    scheduler = optim.StepLR(adam, step_size=2)
    with pytest.raises(ValueError, match="base_lr"):
        scheduler.load_state_dict({"base_lr": -1.0, "last_epoch": 0})


@pytest.mark.parametrize(("name", "make", "reference", "make_torch"), CASES, ids=IDS)
def test_a_0d_parameter_is_updated_as_torch_does(torch, name, make, reference, make_torch):
    # Issue 11: NumPy returns scalars for 0-d arithmetic; SGD's momentum buffer was such a scalar, and the
    # in-place updates rebound it instead of changing it, so the buffer stayed at the first gradient.
    param = Tensor(np.array(1.0), requires_grad=True)
    torch_param = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    optimizer, torch_optimizer = make([param]), make_torch(torch, [torch_param])
    for step in range(5):
        optimizer.zero_grad()
        torch_optimizer.zero_grad()
        (param * 2.0).backward()
        (torch_param * 2.0).backward()
        optimizer.step()
        torch_optimizer.step()
        np.testing.assert_allclose(param.item(), torch_param.item(), rtol=1e-13, err_msg=f"step {step + 1}")
    assert param.shape == () and type(param.data) is np.ndarray
