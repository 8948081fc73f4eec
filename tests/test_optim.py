"""optim: each update equals the textbook formula written out here and torch.optim (float64, 100 steps, every
option, parameter groups, 0-d parameters); state round trips; bad settings and bad state are refused clearly."""

import importlib.util
import itertools
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from conftest import require
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np import Tensor, nn, optim
from tinygrad_np.checkpoint import load_state, save_state
from tinygrad_np.nn import functional as F


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


# (name, our optimizer, reference): the same settings twice.
CASES = [
    ("sgd", lambda p: optim.SGD(p, lr=0.1), lambda: sgd_reference(0.1)),
    ("sgd-momentum", lambda p: optim.SGD(p, lr=0.05, momentum=0.9), lambda: sgd_reference(0.05, momentum=0.9)),
    (
        "sgd-nesterov",
        lambda p: optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
        lambda: sgd_reference(0.05, momentum=0.8, nesterov=True),
    ),
    (
        "sgd-weight-decay",
        lambda p: optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1),
        lambda: sgd_reference(0.05, momentum=0.5, weight_decay=0.1),
    ),
    (
        "rmsprop",
        lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6),
        lambda: rmsprop_reference(0.01, alpha=0.9, eps=1e-6),
    ),
    (
        "rmsprop-weight-decay",
        lambda p: optim.RMSprop(p, lr=0.01, weight_decay=0.2),
        lambda: rmsprop_reference(0.01, weight_decay=0.2),
    ),
    (
        "adam",
        lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        lambda: adam_reference(0.01, betas=(0.8, 0.99), eps=1e-6),
    ),
    (
        "adam-weight-decay",
        lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1),
        lambda: adam_reference(0.01, weight_decay=0.1),
    ),
    (
        "adamw",
        lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
        lambda: adam_reference(0.01, weight_decay=0.1, decoupled=True),
    ),
    (  # both default to weight_decay=0.01
        "adamw-defaults",
        lambda p: optim.AdamW(p),
        lambda: adam_reference(1e-3, weight_decay=0.01, decoupled=True),
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


@pytest.mark.parametrize(("name", "make", "reference"), CASES, ids=IDS)
def test_updates_equal_the_textbook_formulas(name, make, reference):
    for step, (got, want) in enumerate(zip(run_ours(make), reference(), strict=True)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15, err_msg=f"{name}, step {step + 1}")


rates = st.floats(1e-4, 0.5)
unit = st.floats(0.0, 0.99)
decays = st.sampled_from([0.0, 1e-3, 0.1])


@given(lr=rates, momentum=unit, nesterov=st.booleans(), weight_decay=decays)
def test_sgd_equals_the_formula_for_any_settings(lr, momentum, nesterov, weight_decay):
    nesterov = nesterov and momentum > 0
    history = run_ours(
        lambda p: optim.SGD(p, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    )
    np.testing.assert_allclose(history, sgd_reference(lr, momentum, nesterov, weight_decay), rtol=1e-12, atol=1e-14)


@given(lr=rates, alpha=unit, eps=st.sampled_from([1e-8, 1e-3]), weight_decay=decays)
def test_rmsprop_equals_the_formula_for_any_settings(lr, alpha, eps, weight_decay):
    history = run_ours(lambda p: optim.RMSprop(p, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))
    np.testing.assert_allclose(history, rmsprop_reference(lr, alpha, eps, weight_decay), rtol=1e-12, atol=1e-14)


@given(lr=rates, beta1=unit, beta2=unit, weight_decay=decays, decoupled=st.booleans())
def test_adam_and_adamw_equal_the_formula_for_any_settings(lr, beta1, beta2, weight_decay, decoupled):
    kind = optim.AdamW if decoupled else optim.Adam
    history = run_ours(lambda p: kind(p, lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=weight_decay))
    expected = adam_reference(lr, (beta1, beta2), 1e-8, weight_decay, decoupled)
    np.testing.assert_allclose(history, expected, rtol=1e-12, atol=1e-14)


def test_plain_sgd_is_the_tutorials_update_bit_for_bit():
    # The tutorial: W1 = W1 - alpha * dW1.
    p = START.copy()
    for got, g in zip(run_ours(lambda params: optim.SGD(params, lr=0.1)), GRADS, strict=True):
        p = p - 0.1 * g
        np.testing.assert_array_equal(got, p)


@pytest.mark.parametrize(("name", "make", "reference"), CASES, ids=IDS)
def test_float32_parameters_and_state_stay_float32(name, make, reference):
    param = nn.Parameter(START.astype(np.float32))
    optimizer = make([param])
    for g in GRADS[:2]:
        param.grad = g.astype(np.float32)
        optimizer.step()
    assert param.dtype == np.float32
    arrays = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, np.ndarray)]
    assert all(array.dtype == np.float32 for array in arrays)
    np.testing.assert_allclose(param.data, reference()[1], rtol=1e-5, atol=1e-6)


# ---- against torch.optim: every option, parameter groups, 0-d parameters, 100 steps ---------------------------

# Three parameters in two groups: a matrix and a 0-d scalar in the first, a vector in the second, which sets its
# own lr and weight_decay. The scalar has no gradient every fifth step, so its step count falls behind.
SHAPES = [(3, 4), (), (4,)]
STEPS = 100


def options(**choices: list) -> list[dict]:
    return [dict(zip(choices, values, strict=True)) for values in itertools.product(*choices.values())]


SGD_OPTIONS = [
    o
    for o in options(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=[False, True], maximize=[False, True])
    if not o["nesterov"] or (o["momentum"] and not o["dampening"])
]
ADAM_OPTIONS = options(amsgrad=[False, True], maximize=[False, True], weight_decay=[0.0, 0.05])
RMSPROP_OPTIONS = options(centered=[False, True], momentum=[0.0, 0.8], maximize=[False, True], alpha=[0.99, 0.5])
TORCH_CASES = (
    [("SGD", dict(lr=0.03, weight_decay=0.01, **o)) for o in SGD_OPTIONS]
    + [("Adam", dict(lr=0.02, **o)) for o in ADAM_OPTIONS]
    + [("AdamW", dict(lr=0.02, **o)) for o in ADAM_OPTIONS]
    + [("RMSprop", dict(lr=0.005, weight_decay=0.01, **o)) for o in RMSPROP_OPTIONS]
)


def _case_id(case: tuple[str, dict]) -> str:
    name, settings = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in settings.items())


def _groups(params: list, weight_decay: float) -> list[dict]:
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.004, "weight_decay": weight_decay}]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[_case_id(c) for c in TORCH_CASES])
def test_each_optimizer_equals_torch_over_100_steps_with_groups_and_a_0d_parameter(torch, case):
    name, settings = case
    rng = np.random.default_rng(zlib.crc32(_case_id(case).encode()))
    starts = [rng.standard_normal(shape) for shape in SHAPES]
    ours = [nn.Parameter(start.copy()) for start in starts]
    theirs = [torch.tensor(start, requires_grad=True) for start in starts]
    extra = {"foreach": False}  # torch's plain per-tensor loop, the reference implementation
    optimizer = getattr(optim, name)(_groups(ours, 0.2), **settings)
    torch_optimizer = getattr(torch.optim, name)(_groups(theirs, 0.2), **settings, **extra)
    for step in range(STEPS):
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            g = None if i == 1 and step % 5 == 4 else rng.standard_normal(p.shape) * rng.uniform(0.1, 3)
            p.grad, q.grad = g, None if g is None else torch.tensor(g)
        optimizer.step()
        torch_optimizer.step()
    for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
        assert p.shape == SHAPES[i] and type(p.data) is np.ndarray
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"parameter {i}")
        for key, value in torch_optimizer.state[q].items():
            if value is not None:
                np.testing.assert_allclose(optimizer.state[p][key], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_a_0d_parameter_is_updated_as_torch_does(torch, name):
    # Issue 11: NumPy returns scalars for 0-d arithmetic; SGD's momentum buffer was such a scalar, and the
    # in-place updates rebound it instead of changing it, so the buffer stayed at the first gradient
    # (five steps of (p * 2).backward() from 1.0 gave -0.72 where torch gives -1.62882).
    for weight_decay in (0.0, 0.5):
        settings = dict(lr=0.1, weight_decay=weight_decay) | ({"momentum": 0.9} if name in ("SGD", "RMSprop") else {})
        param = Tensor(np.array(1.0), requires_grad=True)
        torch_param = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
        optimizer = getattr(optim, name)([param], **settings)
        torch_optimizer = getattr(torch.optim, name)([torch_param], **settings)
        for _ in range(5):
            optimizer.zero_grad()
            torch_optimizer.zero_grad()
            (param * 2.0).backward()
            (torch_param * 2.0).backward()
            optimizer.step()
            torch_optimizer.step()
        np.testing.assert_allclose(param.item(), torch_param.item(), rtol=1e-13)
        assert param.shape == () and type(param.data) is np.ndarray
    if name == "SGD":
        assert torch_param.item() == pytest.approx(-1.914220312500, rel=1e-12)  # the numbers
        assert all(type(v) is np.ndarray for v in optimizer.state[param].values())


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
    assert (optimizer.state[always]["step"], optimizer.state[late]["step"]) == (4, 2)
    # The first step of Adam moves each element by lr exactly (m_hat / sqrt(v_hat) = sign(g)).
    first, fresh = nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(2))
    adam = optim.Adam([first, fresh], lr=0.1, eps=0.0)
    first.grad = np.ones(1)
    adam.step()
    fresh.grad = np.array([3.0, -0.5])
    adam.step()
    np.testing.assert_allclose(fresh.data, [-0.1, 0.1], rtol=1e-15)


def test_amsgrad_normalises_by_the_largest_second_moment_so_far():
    # One big gradient, then small ones: Adam's v decays and its steps grow again; AMSGrad keeps max(v).
    def run(amsgrad: bool) -> tuple[list[float], list[float], optim.Adam]:
        p = nn.Parameter(np.zeros(1))
        adam = optim.Adam([p], lr=0.1, betas=(0.0, 0.9), amsgrad=amsgrad)
        moves, second_moments = [], []
        for g in [100.0] + [1.0] * 30:
            before = p.data.copy()
            p.grad = np.array([g])
            adam.step()
            moves.append(abs((p.data - before).item()))
            second_moments.append(adam.state[p]["exp_avg_sq"].item())
        return moves, second_moments, adam

    plain, _, _ = run(False)
    ams, second_moments, adam = run(True)
    (state,) = adam.state.values()
    assert state["max_exp_avg_sq"].item() == max(second_moments) == second_moments[0]
    assert plain[-1] > 4 * ams[-1]


def test_step_with_a_closure_returns_its_loss_with_gradients_recorded():
    w = nn.Parameter(np.array([1.0, -2.0]))
    optimizer = optim.SGD([w], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.item() == 5.0
    np.testing.assert_allclose(w.data, [0.8, -1.6], rtol=1e-15)


def test_a_parameter_without_a_gradient_is_left_alone():
    used, unused = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = optim.SGD([used, unused], lr=0.1, momentum=0.9)
    used.grad = np.array([1.0, -1.0])
    optimizer.step()
    np.testing.assert_array_equal(unused.data, np.ones(2))
    assert unused not in optimizer.state and "momentum_buffer" in optimizer.state[used]


def test_a_gradient_of_the_wrong_shape_is_refused():
    w = nn.Parameter(np.ones((2, 3)))
    optimizer = optim.Adam([w])
    w.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"a parameter of shape \(2, 3\) has a gradient of shape \(3,\)"):
        optimizer.step()


def test_zero_grad_clears_the_gradients_of_every_group():
    params = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))]
    optimizer = optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}])
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


# ---- parameter groups ------------------------------------------------------------------------------------------


def test_groups_take_the_defaults_they_do_not_set_as_torch_does(torch):
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    ours = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "nesterov": True}], lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD(
        [{"params": [torch.ones(2, requires_grad=True)]}, {"params": torch.ones(3, requires_grad=True), "lr": 0.5,
         "nesterov": True}], lr=0.1, momentum=0.9,
    )  # fmt: skip
    for group, torch_group in zip(ours.param_groups, theirs.param_groups, strict=True):
        assert {k: v for k, v in group.items() if k != "params"} == {k: torch_group[k] for k in ours.defaults}
    assert ours.param_groups[1]["params"] == [b]  # a bare Tensor becomes a one-element list


def test_add_param_group_fills_in_defaults_and_its_parameters_train():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = optim.Adam([a], lr=0.1, amsgrad=True)
    optimizer.add_param_group({"params": [b], "lr": 0.01})
    assert optimizer.param_groups[1]["lr"] == 0.01 and optimizer.param_groups[1]["amsgrad"] is True
    a.grad, b.grad = np.ones(2), np.ones(2)
    optimizer.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.99)


def test_the_lr_property_reads_the_first_group_and_sets_every_group():
    optimizer = optim.SGD([{"params": [nn.Parameter(np.ones(1))]}, {"params": [nn.Parameter(np.ones(1))], "lr": 1}])
    assert optimizer.lr == 1e-3  # PyTorch's default
    optimizer.lr = 0.25
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -1"):
        optimizer.lr = -1


@pytest.mark.parametrize(
    ("groups", "error", "message"),
    [
        ([{"params": [1]}], TypeError, r"parameter 0 of group 0 is a int, not a Tensor"),
        ([{"params": {nn.Parameter(np.ones(1))}}], TypeError, r"holds a set; pass a list"),
        ([{"lr": 0.1}], ValueError, r"parameter group 0 has no 'params' entry"),
        ([{"params": [Tensor(np.ones(2))]}], TypeError, r"parameter 0 of group 0 is a Tensor that doesn't require"),
        ([{"params": [nn.Parameter(np.ones(1)) * 2]}], ValueError, r"is not a leaf"),
        ([{"params": [nn.Parameter(np.ones(1))], "lr": -0.5}], ValueError, r"parameter group 0: lr must be .* -0.5"),
        ([{"params": [nn.Parameter(np.ones(1))], "mementum": 0.9}], ValueError, r"sets mementum, which SGD doesn't"),
    ],
)
def test_bad_parameter_groups_are_refused_naming_what_is_wrong(groups, error, message):
    with pytest.raises(error, match=message):
        optim.SGD(groups, lr=0.1)


def test_a_parameter_twice_is_refused():
    w = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="lists a parameter twice"):
        optim.SGD([w, w], lr=0.1)
    optimizer = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="appear in more than one parameter group"):
        optimizer.add_param_group({"params": [w]})


def test_param_groups_exempts_biases_from_weight_decay():
    model = nn.Sequential(nn.Linear(3, 4, generator=0), nn.ReLU(), nn.Linear(4, 2, generator=0))
    groups = optim.param_groups(model, no_weight_decay=("bias",))
    assert [len(g["params"]) for g in groups] == [2, 2]
    assert groups[0]["params"] == [model[0].weight, model[2].weight] and "weight_decay" not in groups[0]
    assert groups[1] == {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}
    optimizer = optim.AdamW(groups, lr=0.01, weight_decay=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    # Zero gradients: AdamW's step is then decay alone, which the biases must not get.
    for p in model.parameters():
        p.grad = np.zeros(p.shape, dtype=p.dtype)
    biases, weights = [model[0].bias.data.copy()], [model[0].weight.data.copy()]
    optimizer.step()
    np.testing.assert_array_equal(model[0].bias.data, biases[0])
    np.testing.assert_allclose(model[0].weight.data, weights[0] * (1 - 0.01 * 0.1), rtol=1e-6)


def test_param_groups_matches_dotted_names_and_wildcards_and_refuses_a_typo():
    model = nn.Sequential(nn.Linear(3, 4, generator=0), nn.ReLU(), nn.Linear(4, 2, generator=0))
    groups = optim.param_groups(model, no_weight_decay="0.*")
    assert groups[1]["params"] == [model[0].weight, model[0].bias]
    assert len(optim.param_groups(model, no_weight_decay=("*",))) == 1  # everything exempt: one group
    assert optim.param_groups(model, no_weight_decay=())[0]["params"] == list(model.parameters())
    with pytest.raises(ValueError, match=r"no parameter of the model matches 'biass'; .* 0.weight, 0.bias"):
        optim.param_groups(model, no_weight_decay=("biass",))


# ---- state dicts ------------------------------------------------------------------------------------------------


def _grouped(name: str, seed: int = 0) -> tuple[list[nn.Parameter], optim.Optimizer]:
    rng = np.random.default_rng(seed)
    params = [nn.Parameter(rng.standard_normal(shape)) for shape in SHAPES]
    settings = {
        "SGD": dict(momentum=0.9, dampening=0.1),
        "Adam": dict(amsgrad=True),
        "AdamW": dict(),
        "RMSprop": dict(centered=True, momentum=0.5),
    }[name]
    return params, getattr(optim, name)(_groups(params, 0.3), lr=0.01, **settings)


def _train(params: list[nn.Parameter], optimizer: optim.Optimizer, steps: range) -> None:
    for step in steps:
        rng = np.random.default_rng(1000 + step)
        for i, p in enumerate(params):
            p.grad = None if i == 1 and step % 3 == 0 else rng.standard_normal(p.shape)
        optimizer.step()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
@pytest.mark.parametrize("through_a_file", [False, True], ids=["in-memory", "checkpoint-file"])
def test_state_dict_with_groups_resumes_bit_identically(tmp_path, name, through_a_file):
    params, optimizer = _grouped(name)
    _train(params, optimizer, range(7))
    saved_params, saved = [p.data.copy() for p in params], optimizer.state_dict()
    if through_a_file:  # the checkpoint stores arrays in the npz and the rest as JSON
        saved = load_state(save_state({"optimizer": saved}, tmp_path / "state.npz"))["optimizer"]
    _train(params, optimizer, range(7, 12))  # the original keeps going; aliased saved state would change too

    resumed, other = _grouped(name, seed=99)
    for p, data in zip(resumed, saved_params, strict=True):
        p.data[...] = data
    other.param_groups[1]["lr"] = 123.0  # the saved hyperparameters replace these
    other.load_state_dict(saved)
    assert [g["lr"] for g in other.param_groups] == [0.01, 0.004]
    _train(resumed, other, range(7, 12))
    for got, want in zip(resumed, params, strict=True):
        np.testing.assert_array_equal(got.data, want.data)
    assert repr(other) == repr(optimizer)


def test_state_dict_layout_is_torchs_with_a_list_for_state(torch):
    params, optimizer = _grouped("Adam")
    _train(params, optimizer, range(3))
    state = optimizer.state_dict()
    assert set(state) == {"type", "state", "param_groups"} and state["type"] == "Adam"
    assert [g["params"] for g in state["param_groups"]] == [[0, 1], [2]]
    assert state["state"][1]["step"] == 2 and state["state"][0]["step"] == 3
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    theirs = torch.optim.Adam([{"params": [torch.zeros(1, requires_grad=True)]}], amsgrad=True).state_dict()
    assert set(state["param_groups"][0]) <= set(theirs["param_groups"][0])  # the same names for the same settings


def test_a_state_dict_from_before_the_first_step_loads():
    _, optimizer = _grouped("RMSprop")
    state = optimizer.state_dict()
    assert state["state"] == [{}, {}, {}]
    _grouped("RMSprop")[1].load_state_dict(state)


def _damaged(change: Callable[[dict], None]) -> dict:
    params, optimizer = _grouped("Adam")
    _train(params, optimizer, range(2))
    state = optimizer.state_dict()
    change(state)
    return state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(type="SGD"), "optimizer state is for SGD, not Adam"),
        (lambda s: s.pop("param_groups"), "must hold the lists 'param_groups' and 'state'"),
        (lambda s: s["state"].pop(), "optimizer state has 2 parameters, this optimizer has 3"),
        (lambda s: s["param_groups"].pop(), "optimizer state has 1 parameter groups, this optimizer has 2"),
        (lambda s: s["param_groups"][0].update(params=[0]), "group 0 of the optimizer state must list parameters 0 to"),
        (lambda s: s["param_groups"][1].pop("eps"), "group 1 of the optimizer state must hold .*; it lacks eps"),
        (lambda s: s["param_groups"][1].update(speed=1), "it has unknown speed"),
        (lambda s: s["param_groups"][1].update(betas=[0.9, 2.0]), r"group 1 .*: betas\[1\] must be in \[0, 1\), got 2"),
        (lambda s: s["param_groups"][0].update(lr="fast"), "group 0 .*: lr must be a finite number >= 0, got 'fast'"),
        (lambda s: s["param_groups"][0].update(amsgrad="yes"), "amsgrad must be True or False, got 'yes'"),
        (lambda s: s["param_groups"][0].update(initial_lr=-1.0), "initial_lr must be a finite number >= 0"),
        (lambda s: s["state"][0].update(step=-1), "'step' of parameter 0 must be a whole number >= 0"),
        (lambda s: s["state"][0].update(step=1.5), "'step' of parameter 0 must be a whole number"),
        (lambda s: s["state"][0].pop("step"), "state of parameter 0 has no 'step' count"),
        (lambda s: s["state"][2].update(velocity=np.zeros(4)), "parameter 2 must be a dict with keys from"),
        (lambda s: s["state"][0].update(exp_avg=np.zeros(3)), r"'exp_avg' of parameter 0 has shape \(3,\), not \(3, 4"),
        (lambda s: s["state"][2].update(exp_avg_sq=np.full(4, np.nan)), "'exp_avg_sq' of parameter 2 must hold finite"),
        (lambda s: s["state"][2].update(exp_avg=np.zeros(4, int)), "'exp_avg' of parameter 2 must hold finite real"),
    ],
)
def test_a_damaged_state_dict_is_refused_and_changes_nothing(change, message):
    params, optimizer = _grouped("Adam", seed=5)
    _train(params, optimizer, range(1))
    before = repr(optimizer), {p: {k: np.copy(v) for k, v in s.items()} for p, s in optimizer.state.items()}
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_dict(_damaged(change))
    assert repr(optimizer) == before[0]
    for p, state in optimizer.state.items():
        for key, value in state.items():
            np.testing.assert_array_equal(value, before[1][p][key])


def test_load_state_dict_rejects_state_from_another_model():
    params = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones((2, 2)))]
    adam = optim.Adam(params)
    for p in params:
        p.grad = np.ones(p.shape)
    adam.step()
    swapped = [nn.Parameter(np.ones((2, 2))), nn.Parameter(np.ones(2))]
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(2,\), not \(2, 2\)"):
        optim.Adam(swapped).load_state_dict(adam.state_dict())


# ---- hyperparameters: checked once, in the constructor, with messages naming the argument and value -----------


def _param() -> list[nn.Parameter]:
    return [nn.Parameter(np.ones(2))]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: optim.SGD(_param(), lr=-0.1), r"^lr must be a finite number >= 0, got -0.1$"),
        (lambda: optim.Adam(_param(), lr=float("nan")), r"^lr must be a finite number >= 0, got nan$"),
        (lambda: optim.RMSprop(_param(), lr=float("inf")), r"^lr must be a finite number >= 0, got inf$"),
        (lambda: optim.SGD(_param(), lr="0.1"), r"^lr must be a finite number >= 0, got '0.1'$"),
        (lambda: optim.SGD(_param(), lr=10**400), r"^lr must be a finite number >= 0, got 10000"),
        (lambda: optim.SGD(_param(), momentum=-0.5), r"^momentum must be a finite number >= 0, got -0.5$"),
        (lambda: optim.SGD(_param(), dampening=float("nan")), r"^dampening must be a finite number, got nan$"),
        (lambda: optim.SGD(_param(), weight_decay=-1), r"^weight_decay must be a finite number >= 0, got -1$"),
        (lambda: optim.SGD(_param(), nesterov=True), r"^nesterov=True needs momentum > 0 and dampening 0, got mo"),
        (lambda: optim.SGD(_param(), momentum=0.9, dampening=0.1, nesterov=True), r"and dampening 0.1$"),
        (lambda: optim.SGD(_param(), maximize=1), r"^maximize must be True or False, got 1$"),
        (lambda: optim.RMSprop(_param(), alpha=-0.1), r"^alpha must be a finite number >= 0, got -0.1$"),
        (lambda: optim.RMSprop(_param(), eps=-1e-8), r"^eps must be a finite number >= 0, got -1e-08$"),
        (lambda: optim.RMSprop(_param(), momentum=-1), r"^momentum must be a finite number >= 0, got -1$"),
        (lambda: optim.RMSprop(_param(), centered=None), r"^centered must be True or False, got None$"),
        (lambda: optim.Adam(_param(), betas=(1.0, 0.999)), r"^betas\[0\] must be in \[0, 1\), got 1.0$"),
        (lambda: optim.AdamW(_param(), betas=(0.9, 1.5)), r"^betas\[1\] must be in \[0, 1\), got 1.5$"),
        (lambda: optim.Adam(_param(), betas=(-0.1, 0.9)), r"^betas\[0\] must be in \[0, 1\), got -0.1$"),
        (lambda: optim.Adam(_param(), betas=0.9), r"^betas must be a pair \(beta1, beta2\), got 0.9$"),
        (lambda: optim.Adam(_param(), eps=-1.0), r"^eps must be a finite number >= 0, got -1.0$"),
        (lambda: optim.Adam(_param(), amsgrad="no"), r"^amsgrad must be True or False, got 'no'$"),
        (lambda: optim.AdamW(_param(), weight_decay=-0.01), r"^weight_decay must be a finite number >= 0, got -0.01$"),
        (lambda: optim.Adam([]), r"empty parameter list; pass model.parameters\(\)"),
    ],
)
def test_bad_hyperparameters_raise_errors_naming_the_argument_and_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_torchs_boundary_values_are_accepted():
    # PyTorch's rules: lr = 0, momentum >= 1, alpha > 1 and eps = 0 are legal (if odd); so they are here.
    optim.SGD(_param(), lr=0.0, momentum=1.5)
    optim.RMSprop(_param(), alpha=2.0, eps=0.0)
    optim.Adam(_param(), lr=0, betas=(0.0, 0.0), eps=0)


def test_parameters_must_be_tensors_that_require_grad():
    with pytest.raises(TypeError, match="parameter 1 of group 0 is a Tensor that doesn't require grad"):
        optim.SGD([nn.Parameter(np.ones(2)), Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(TypeError, match=r"a single Tensor; pass a list of parameters"):
        optim.SGD(nn.Parameter(np.ones(2)), lr=0.1)


def test_passing_the_model_instead_of_its_parameters_says_so():
    for model in (nn.Linear(2, 2, generator=0), nn.Sequential(nn.Linear(2, 2, generator=0))):
        with pytest.raises(TypeError, match=r"model.parameters\(\)"):
            optim.SGD(model, lr=0.1)


def test_repr_lists_each_groups_settings_like_torch():
    optimizer = optim.SGD([{"params": _param()}, {"params": _param(), "lr": 0.5}], lr=0.1)
    text = repr(optimizer)
    assert text.startswith("SGD (\nParameter Group 0\n    dampening: 0.0\n    lr: 0.1\n") and text.endswith(")")
    assert "Parameter Group 1\n    dampening: 0.0\n    lr: 0.5\n" in text


# ---- learning-rate schedules ---------------------------------------------------------------------------------


def _lrs(scheduler: optim.LRScheduler, epochs: int) -> list[list[float]]:
    lrs = [scheduler.get_last_lr()]
    for _ in range(epochs):
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


def _two_groups(module, lrs=(0.1, 0.03), initial=None):
    """An optimizer (ours or torch's) with two groups; `initial` sets each group's initial_lr (to resume)."""
    make = (lambda: nn.Parameter(np.ones(1))) if module is optim else (lambda: module.zeros(1, requires_grad=True))
    tensors = [make() for _ in lrs]
    groups = [{"params": [t], "lr": lr} for t, lr in zip(tensors, lrs, strict=True)]
    for group, lr in zip(groups, initial or [], strict=False):
        group["initial_lr"] = lr
    return (optim.SGD if module is optim else module.optim.SGD)(groups, lr=0.1)


SCHEDULES = {
    "step": lambda lib, o, last: lib.StepLR(o, step_size=3, gamma=0.5, last_epoch=last),
    "cosine": lambda lib, o, last: lib.CosineAnnealingLR(o, T_max=7, eta_min=0.002, last_epoch=last),
    "cosine-T_max-1": lambda lib, o, last: lib.CosineAnnealingLR(o, T_max=1, last_epoch=last),
}


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("last_epoch", [-1, 0, 4, 9])
def test_schedules_equal_torchs_per_group_past_T_max_and_resumed_with_last_epoch(torch, kind, last_epoch):
    # 3 * T_max steps (T_max = 7): down to eta_min, back up to the base at 14, down again at 21; PyTorch's
    # recursive arithmetic, copied, gives the same floats, so the sequences are compared for equality.
    initial = None if last_epoch == -1 else (0.2, 0.05)  # a resumed optimizer's groups carry initial_lr
    ours = SCHEDULES[kind](optim, _two_groups(optim, initial=initial), last_epoch)
    theirs = SCHEDULES[kind](torch.optim.lr_scheduler, _two_groups(torch, initial=initial), last_epoch)
    assert ours.last_epoch == theirs.last_epoch and ours.base_lrs == theirs.base_lrs
    expected = [theirs.get_last_lr()]
    for _ in range(21):
        theirs.optimizer.step()
        theirs.step()
        expected.append(theirs.get_last_lr())
    assert _lrs(ours, 21) == expected


def test_cosine_annealing_climbs_back_after_T_max_as_torch_does():
    optimizer = optim.SGD(_param(), lr=0.1)
    lrs = [lr for (lr,) in _lrs(optim.CosineAnnealingLR(optimizer, T_max=8, eta_min=0.001), 24)]
    closed_form = [0.001 + (0.1 - 0.001) * (1 + np.cos(np.pi * t / 8)) / 2 for t in range(25)]
    np.testing.assert_allclose(lrs, closed_form, rtol=1e-12)  # the recursion tracks the closed form
    assert lrs[8] == pytest.approx(0.001) and lrs[16] == pytest.approx(0.1) and lrs[24] == pytest.approx(0.001)
    assert optimizer.lr == lrs[-1]


def test_step_lr_decays_by_gamma_every_step_size_epochs():
    optimizer = optim.SGD(_param(), lr=0.1)
    lrs = [lr for (lr,) in _lrs(optim.StepLR(optimizer, step_size=3, gamma=0.5), 10)]
    np.testing.assert_allclose(lrs, [0.1 * 0.5 ** (epoch // 3) for epoch in range(11)], rtol=1e-15)
    assert lrs[:4] == [0.1, 0.1, 0.1, 0.05]


def test_a_scheduler_keeps_initial_lr_in_the_groups_and_resuming_needs_it():
    optimizer = optim.SGD([{"params": _param(), "lr": 0.4}, {"params": _param(), "lr": 0.2}])
    optim.StepLR(optimizer, step_size=2)
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.4, 0.2]
    with pytest.raises(ValueError, match=r"parameter group 0 has no 'initial_lr', .* last_epoch=3"):
        optim.StepLR(optim.SGD(_param(), lr=0.1), step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="last_epoch must be an integer >= -1, got -2"):
        optim.StepLR(optimizer, step_size=2, last_epoch=-2)
    with pytest.raises(TypeError, match="a scheduler needs an Optimizer, got list"):
        optim.StepLR([], step_size=2)


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_scheduler_and_optimizer_state_resume_the_schedule_exactly(tmp_path, kind):
    def make(seed_lr: float):
        optimizer = _two_groups(optim, lrs=(seed_lr, seed_lr / 3))
        return optimizer, SCHEDULES[kind](optim, optimizer, -1)

    optimizer, scheduler = make(0.1)
    for _ in range(5):
        scheduler.step()
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    state = load_state(save_state(state, tmp_path / "state.npz"))  # through JSON, as a checkpoint stores it
    other_optimizer, other = make(7.0)  # made with other lrs: the state must replace them
    other_optimizer.load_state_dict(state["optimizer"])
    other.load_state_dict(state["scheduler"])
    assert other.get_last_lr() == scheduler.get_last_lr() and other.base_lrs == scheduler.base_lrs
    assert _lrs(other, 20) == _lrs(scheduler, 20)


def test_a_scheduler_made_before_add_param_group_says_so():
    optimizer = optim.SGD(_param(), lr=0.1)
    scheduler = optim.StepLR(optimizer, step_size=2)
    optimizer.add_param_group({"params": _param()})
    with pytest.raises(ValueError, match="2 parameter groups, but this scheduler was made for 1"):
        scheduler.step()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda o: optim.StepLR(o, step_size=0), r"step_size must be an integer >= 1, got 0"),
        (lambda o: optim.StepLR(o, step_size=1.5), r"step_size must be an integer >= 1, got 1.5"),
        (lambda o: optim.StepLR(o, step_size=1, gamma=0.0), r"gamma must be in \(0, 1\], got 0.0"),
        (lambda o: optim.StepLR(o, step_size=1, gamma=1.5), r"gamma must be in \(0, 1\], got 1.5"),
        (lambda o: optim.CosineAnnealingLR(o, T_max=0), r"T_max must be an integer >= 1, got 0"),
        (lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=-1), r"eta_min must be a finite number >= 0, got -1"),
    ],
)
def test_bad_schedule_settings_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make(optim.SGD(_param(), lr=0.1))


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"base_lr": 0.1, "last_epoch": 0}, "must hold base_lrs, last_epoch and _last_lr"),
        ({"base_lrs": [-1.0], "last_epoch": 0, "_last_lr": [0.1]}, r"base_lrs\[0\] must be a finite number >= 0"),
        ({"base_lrs": [0.1], "last_epoch": 0, "_last_lr": [np.nan]}, r"_last_lr\[0\] must be a finite number"),
        ({"base_lrs": [0.1], "last_epoch": -1, "_last_lr": [0.1]}, "last_epoch -1; it must be an integer >= 0"),
        ({"base_lrs": [0.1, 0.1], "last_epoch": 0, "_last_lr": [0.1, 0.1]}, "2 groups, the optimizer has 1"),
    ],
)
def test_a_damaged_scheduler_state_is_refused(state, message):
    optimizer = optim.SGD(_param(), lr=0.1)
    scheduler = optim.StepLR(optimizer, step_size=2)
    with pytest.raises(ValueError, match=message):
        scheduler.load_state_dict(state)
    assert scheduler.state_dict() == {"base_lrs": [0.1], "last_epoch": 0, "_last_lr": [0.1]}


# ---- the trainer's checkpoints keep groups -------------------------------------------------------------------


def _grouped_trainer():
    """A trainer whose optimizer has groups (no decay on biases) and a cosine schedule run past its T_max."""
    from tinygrad_np.models.mlp import mlp
    from tinygrad_np.train import Trainer

    data = np.random.default_rng(1)
    images, labels = data.random((48, 20), dtype=np.float32), data.integers(0, 4, 48)
    model = mlp(input_size=20, hidden_sizes=(8,), num_classes=4, dropout=0.2, generator=3)
    groups = optim.param_groups(model, no_weight_decay=("bias",))
    optimizer = optim.AdamW(groups, lr=0.02, weight_decay=0.1, amsgrad=True)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=2, eta_min=0.001)
    return Trainer(model, optimizer, F.cross_entropy, (images, labels), batch_size=10, scheduler=scheduler, seed=5)


def test_a_trainer_with_parameter_groups_resumes_from_its_checkpoint_bit_identically(tmp_path):
    from tinygrad_np.checkpoint import CheckpointManager
    from tinygrad_np.train import TrainingInterrupted

    reference = _grouped_trainer()
    reference.fit(4)
    trainer, batches = _grouped_trainer(), 0

    def stop_in_epoch_three(t) -> None:
        nonlocal batches
        batches += 1
        if batches == 12:
            t.request_stop()

    with pytest.raises(TrainingInterrupted):
        trainer.fit(4, on_batch_end=stop_in_epoch_three)
    manager = CheckpointManager(tmp_path, {"groups": "no decay on biases"})
    manager.save(trainer)
    resumed = _grouped_trainer()
    manager.restore(resumed)
    resumed.fit(4)
    for p, q in zip(resumed.model.parameters(), reference.model.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    ours, theirs = resumed.optimizer.state_dict(), reference.optimizer.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    assert [g["weight_decay"] for g in ours["param_groups"]] == [0.1, 0.0]
    for a, b in zip(ours["state"], theirs["state"], strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in reference.history]


def test_a_checkpoint_from_before_parameter_groups_is_refused_naming_the_versions(tmp_path, monkeypatch):
    from tinygrad_np import checkpoint
    from tinygrad_np.checkpoint import CheckpointError

    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)
    path = save_state({"optimizer": {}}, tmp_path / "old.npz")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="has format version 1; this tinygrad_np reads version 2"):
        load_state(path)
