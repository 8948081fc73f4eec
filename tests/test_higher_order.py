"""Higher-order gradients: grad(create_graph=True), backward(create_graph=True) and autograd.functional, against
PyTorch in float64 to 1e-10 (the differential fuzzer in test_fuzz_engine.py covers every op at second and third
order; here: the tutorial network and an MLP whole, a training step with a gradient penalty, and the API's edges)."""

import importlib.util

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, optim
from tinygrad_np.autograd import functional as AF
from tinygrad_np.inplace import InPlaceError
from tinygrad_np.models import mlp as mlp_model
from tinygrad_np.models import two_layer as tutorial
from tinygrad_np.nn import functional as F

try:
    import torch
except ImportError:  # the comparisons require it (skipped locally, failing on CI)
    torch = None

TOLERANCE = 1e-10


def needs_torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")


def assert_close(ours, theirs, tolerance=TOLERANCE):
    ours = ours.data if isinstance(ours, Tensor) else ours
    theirs = theirs.detach().numpy() if torch is not None and isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance * scale)


def batch(rng, m=32, features=784, classes=10):
    return rng.random((m, features)), rng.integers(0, classes, m)


def torch_network(params, x, y):
    """The same Sequential of Linear and ReLU layers with cross-entropy, in PyTorch, from a list of tensors."""
    h = torch.from_numpy(x)
    for k in range(0, len(params), 2):
        h = torch.nn.functional.linear(h, params[k], params[k + 1])
        if k + 2 < len(params):
            h = torch.relu(h)
    return torch.nn.functional.cross_entropy(h, torch.from_numpy(y))


def network(params, x, y):
    h = Tensor(x)
    for k in range(0, len(params), 2):
        h = F.linear(h, params[k], params[k + 1])
        if k + 2 < len(params):
            h = h.relu()
    return F.cross_entropy(h, y)


def torch_copies(model):
    return [torch.from_numpy(p.data.copy()).requires_grad_(True) for p in model.parameters()]


# ---- the networks, against PyTorch ----------------------------------------------------------------------------


def test_hessian_of_the_tutorial_loss_with_respect_to_w2_equals_pytorchs():
    needs_torch()
    model = tutorial.two_layer(0, np.float64, "tutorial")
    x, y = batch(np.random.default_rng(1))
    W1, b1, W2, b2 = model.parameters()
    ours = AF.hessian(lambda w2: network([W1, b1, w2, b2], x, y), W2)
    t1, tb1, t2, tb2 = torch_copies(model)
    theirs = torch.autograd.functional.hessian(lambda w2: torch_network([t1, tb1, w2, tb2], x, y), t2)
    assert ours.shape == (10, 10, 10, 10)
    assert_close(ours.reshape(100, 100), theirs.reshape(100, 100))
    assert np.abs(theirs.numpy()).max() > 1e-3  # not a Hessian of zeros
    np.testing.assert_allclose(ours.data.reshape(100, 100), ours.data.reshape(100, 100).T, atol=1e-14)


@pytest.mark.parametrize("which", ["tutorial", "mlp"])
def test_hessian_vector_products_with_respect_to_all_parameters_equal_pytorchs(which):
    needs_torch()
    rng = np.random.default_rng(2)
    if which == "tutorial":
        model = tutorial.two_layer(3, np.float64, "tutorial")
        x, y = batch(rng)
    else:
        model = mlp_model.mlp(20, (16, 8), 5, generator=3, dtype=np.float64)
        x, y = batch(rng, m=17, features=20, classes=5)
    params = list(model.parameters())
    vs = [Tensor(rng.standard_normal(p.shape)) for p in params]

    # By hand: the gradient of grad . v, through grad(create_graph=True) ...
    grads = tg.grad(network(params, x, y), params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vs, strict=True))
    by_hand = tg.grad(dot, params)
    # ... and through autograd.functional.hvp.
    loss, products = AF.hvp(lambda *ps: network(list(ps), x, y), tuple(params), tuple(vs))

    copies = torch_copies(model)
    t_loss, theirs = torch.autograd.functional.hvp(lambda *ps: torch_network(list(ps), x, y), tuple(copies),
                                                   tuple(torch.from_numpy(v.data) for v in vs))
    assert_close(loss, t_loss)
    for mine, functional, reference in zip(by_hand, products, theirs, strict=True):
        assert_close(mine, reference)
        assert_close(functional, reference)
    assert all(p.grad is None for p in params), "grad() and hvp() must not touch .grad"


def penalised_sgd_steps(loss, torch_loss, params, copies, steps=3):
    """SGD steps (momentum 0.9) on loss + 0.1 * sum ||dloss/dp||^2 in both frameworks: a second-order term in every
    parameter's update. The penalties agree at every step, the parameters after the last."""
    opt = optim.SGD(params, lr=0.5, momentum=0.9)
    t_opt = torch.optim.SGD(copies, lr=0.5, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        value = loss(params)
        penalty = sum((g * g).sum() for g in tg.grad(value, params, create_graph=True))
        (value + 0.1 * penalty).backward()
        opt.step()

        t_opt.zero_grad()
        t_value = torch_loss(copies)
        t_penalty = sum((g * g).sum() for g in torch.autograd.grad(t_value, copies, create_graph=True))
        (t_value + 0.1 * t_penalty).backward()
        t_opt.step()
        assert_close(penalty, t_penalty)
    for p, t in zip(params, copies, strict=True):
        assert_close(p.data, t.detach().numpy())


def test_a_training_step_with_a_gradient_norm_penalty_equals_pytorchs():
    needs_torch()
    model = mlp_model.mlp(20, (16, 8), 5, generator=4, dtype=np.float64)
    x, y = batch(np.random.default_rng(5), m=23, features=20, classes=5)
    penalised_sgd_steps(lambda ps: network(ps, x, y), lambda ps: torch_network(ps, x, y), list(model.parameters()),
                        torch_copies(model))


# ---- a convolutional network: conv, ReLU, max-pool, batch norm, linear, cross-entropy -------------------------------


def cnn_batch(rng, m=6):
    """(m, 1, 8, 8) images, labels of 5 classes, and the parameters: conv 1 -> 3 channels and conv 3 -> 4 channels,
    3x3 with padding 1, batch norm's weight and bias, Linear(64, 5)."""
    params = [0.5 * rng.standard_normal((3, 1, 3, 3)), 0.1 * rng.standard_normal(3),
              0.3 * rng.standard_normal((4, 3, 3, 3)), 0.1 * rng.standard_normal(4),
              1 + 0.1 * rng.standard_normal(4), 0.1 * rng.standard_normal(4),
              0.2 * rng.standard_normal((5, 64)), 0.1 * rng.standard_normal(5)]
    return rng.standard_normal((m, 1, 8, 8)), rng.integers(0, 5, m), params


def cnn(params, x, y, stats=(None, None), training=True):
    """conv -> ReLU -> max-pool 2 -> conv -> batch norm -> ReLU -> Linear -> cross-entropy"""
    conv1_w, conv1_b, conv2_w, conv2_b, bn_w, bn_b, lin_w, lin_b = params
    h = F.max_pool2d(F.relu(F.conv2d(Tensor(x), conv1_w, conv1_b, padding=1)), 2)
    h = F.relu(F.batch_norm(F.conv2d(h, conv2_w, conv2_b, padding=1), *stats, bn_w, bn_b, training=training))
    return F.cross_entropy(F.linear(h.flatten(1), lin_w, lin_b), y)


def torch_cnn(params, x, y, stats=(None, None), training=True):
    functional = torch.nn.functional
    conv1_w, conv1_b, conv2_w, conv2_b, bn_w, bn_b, lin_w, lin_b = params
    h = functional.max_pool2d(torch.relu(functional.conv2d(torch.from_numpy(x), conv1_w, conv1_b, padding=1)), 2)
    h = torch.relu(functional.batch_norm(functional.conv2d(h, conv2_w, conv2_b, padding=1), *stats, bn_w, bn_b,
                                         training=training))
    return functional.cross_entropy(functional.linear(h.flatten(1), lin_w, lin_b), torch.from_numpy(y))


def ties_in_the_pooling(params, x):
    """How many of the first pooling's 2x2 windows hold their maximum twice or more (ReLU's zeros): where the routing
    convention decides."""
    with tg.no_grad():
        h = F.relu(F.conv2d(Tensor(x), Tensor(params[0]), Tensor(params[1]), padding=1)).data
    windows = h.reshape(*h.shape[:2], 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4)
    return int(((windows == windows.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())


@pytest.mark.parametrize("training", [True, False], ids=["batch statistics", "running statistics"])
def test_hessian_vector_products_through_a_cnn_equal_pytorchs(training):
    needs_torch()
    rng = np.random.default_rng(7)
    x, y, arrays = cnn_batch(rng)
    assert ties_in_the_pooling(arrays, x) > 0
    stats = (None, None) if training else (rng.standard_normal(4), rng.uniform(0.5, 2, 4))
    params = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    vs = [Tensor(rng.standard_normal(a.shape)) for a in arrays]

    grads = tg.grad(cnn(params, x, y, stats, training), params, create_graph=True)
    by_hand = tg.grad(sum((g * v).sum() for g, v in zip(grads, vs, strict=True)), params)
    loss, products = AF.hvp(lambda *ps: cnn(list(ps), x, y, stats, training), tuple(params), tuple(vs))

    copies = [torch.from_numpy(a.copy()).requires_grad_(True) for a in arrays]
    t_stats = tuple(None if s is None else torch.from_numpy(s) for s in stats)
    t_loss, theirs = torch.autograd.functional.hvp(lambda *ps: torch_cnn(list(ps), x, y, t_stats, training),
                                                   tuple(copies), tuple(torch.from_numpy(v.data) for v in vs))
    assert_close(loss, t_loss)
    for mine, functional, reference in zip(by_hand, products, theirs, strict=True):
        assert_close(mine, reference)
        assert_close(functional, reference)
    # Curvature in every parameter, but for the second convolution's bias with batch statistics, whose mean cancels it
    curved = [np.abs(reference.numpy()).max() > 1e-6 for reference in theirs]
    assert curved == [True, True, True, not training, True, True, True, True]


def test_a_cnn_training_step_with_a_gradient_norm_penalty_equals_pytorchs():
    """Through convolutions, max-pool and batch norm, whose running statistics move too."""
    needs_torch()
    x, y, arrays = cnn_batch(np.random.default_rng(8), m=10)
    stats = (np.zeros(4), np.ones(4))
    t_stats = (torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    penalised_sgd_steps(lambda ps: cnn(ps, x, y, stats), lambda ps: torch_cnn(ps, x, y, t_stats),
                        [Tensor(a.copy(), requires_grad=True) for a in arrays],
                        [torch.from_numpy(a.copy()).requires_grad_(True) for a in arrays])
    for ours, theirs in zip(stats, t_stats, strict=True):
        assert_close(ours, theirs.numpy())


@pytest.mark.parametrize("layer", ["conv2d", "batch_norm"])
def test_a_cnn_input_modified_in_place_after_forward_raises_under_create_graph(layer):
    """Their graph_backward reads the input itself (the first order reads copies): a write under no_grad in between
    must raise, not give the second derivative at the new value."""
    rng = np.random.default_rng(9)
    x = Tensor(rng.standard_normal((2, 2, 4, 4)), requires_grad=True)
    weight = Tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    hidden = x * 1.0
    out = F.conv2d(hidden, weight, padding=1) if layer == "conv2d" else F.batch_norm(
        hidden, None, None, weight[:, 0, 0, 0], training=True)
    loss = out.tanh().sum()
    with tg.no_grad():
        hidden += 1.0
    with pytest.raises(InPlaceError, match="modified in place"):
        tg.grad(loss, [x, weight], create_graph=True)


def test_jacobian_and_vjp_equal_pytorchs_for_tuples_of_inputs_and_outputs():
    needs_torch()
    rng = np.random.default_rng(6)
    a, w = rng.standard_normal(3), rng.standard_normal((2, 3))

    def f(x, m):
        return (m @ x).tanh(), (x * x).sum()

    ours = AF.jacobian(f, (Tensor(a), Tensor(w)))
    theirs = torch.autograd.functional.jacobian(f, (torch.from_numpy(a), torch.from_numpy(w)))
    for row, t_row in zip(ours, theirs, strict=True):
        for block, t_block in zip(row, t_row, strict=True):
            assert_close(block, t_block)
    v = rng.standard_normal(2)
    out, products = AF.vjp(lambda x, m: (m @ x).tanh(), (Tensor(a), Tensor(w)), Tensor(v))
    t_out, t_products = torch.autograd.functional.vjp(lambda x, m: (m @ x).tanh(),
                                                      (torch.from_numpy(a), torch.from_numpy(w)), torch.from_numpy(v))
    assert_close(out, t_out)
    for mine, reference in zip(products, t_products, strict=True):
        assert_close(mine, reference)
    # one Tensor in, one out: Tensors, not tuples (PyTorch's convention)
    assert isinstance(AF.jacobian(lambda x: x.exp(), Tensor(a)), Tensor)
    assert isinstance(AF.hessian(lambda x: (x**3).sum(), Tensor(a)), Tensor)


def test_functional_results_are_constants_unless_create_graph():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert not AF.hessian(lambda t: (t**3).sum(), x).requires_grad
    h = AF.hessian(lambda t: (t**3).sum(), x, create_graph=True)  # 6 x on the diagonal, a function of x
    (third,) = tg.grad(h.sum(), x)
    np.testing.assert_array_equal(third.data, [6.0, 6.0])
    _, product = AF.hvp(lambda t: (t * 2).sum(), x, Tensor(np.ones(2)))  # linear: the Hessian is zero
    np.testing.assert_array_equal(product.data, [0.0, 0.0])
    with pytest.raises(RuntimeError, match="independent of input 0"):
        AF.hvp(lambda t: (t * 2).sum(), x, Tensor(np.ones(2)), strict=True)
    with pytest.raises(RuntimeError, match="single-element"):
        AF.hessian(lambda t: t * t, x)


# ---- the class of bugs ----------------------------------------------------------------------------------------


def test_derivatives_of_a_0d_tensor_to_the_third_order():
    x = Tensor(np.array(2.0), requires_grad=True)
    (first,) = tg.grad(x**3, x, create_graph=True)
    (second,) = tg.grad(first, x, create_graph=True)
    (third,) = tg.grad(second, x)
    for value, expected in ((first, 12.0), (second, 12.0), (third, 6.0)):
        assert type(value.data) is np.ndarray and value.shape == () and value.dtype == np.float64
        assert value.item() == expected


def test_the_same_tensor_used_twice_at_every_order():
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    (first,) = tg.grad((x * x * x).sum(), x, create_graph=True)  # 3 x^2
    (second,) = tg.grad((first * first).sum(), x, create_graph=True)  # d/dx 9 x^4 = 36 x^3
    (third,) = tg.grad(second.sum(), x)  # 108 x^2
    np.testing.assert_allclose(first.data, 3 * x.data**2, rtol=1e-15)
    np.testing.assert_allclose(second.data, 36 * x.data**3, rtol=1e-15)
    np.testing.assert_allclose(third.data, 108 * x.data**2, rtol=1e-15)


def test_grad_of_a_non_scalar_needs_grad_outputs():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x
    with pytest.raises(RuntimeError, match="single-element"):
        tg.grad(y, x)
    (g,) = tg.grad(y, x, grad_outputs=np.array([1.0, 0.5, -1.0]))
    np.testing.assert_array_equal(g.data, [2.0, 2.0, -6.0])
    with pytest.raises(ValueError, match="shape"):
        tg.grad(x * x, x, grad_outputs=np.ones(2))
    # several outputs: their weighted gradients add up; an input listed twice gets the same gradient
    a, b = x.sum(), (x * x).sum()
    g1, g2 = tg.grad([a, b], [x, x], grad_outputs=[None, Tensor(np.array(2.0))])
    np.testing.assert_array_equal(g1.data, 1 + 4 * x.data)
    np.testing.assert_array_equal(g2.data, g1.data)


def test_grad_with_respect_to_an_intermediate_tensor():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3
    gh, gx = tg.grad((h * h).sum(), [h, x])
    np.testing.assert_array_equal(gh.data, 2 * h.data)
    np.testing.assert_array_equal(gx.data, 6 * h.data)
    # x lies below h, so grad() went on through x * 3, and freed it (test_engine_review.py: when nothing lies below)
    with pytest.raises(RuntimeError, match="already freed"):
        h.sum().backward()


def test_allow_unused():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    unused = Tensor(np.array(3.0), requires_grad=True)
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        tg.grad((x * x).sum(), [x, unused])
    gx, gu = tg.grad((x * x).sum(), [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_array_equal(gx.data, [2.0, 4.0])


def test_retain_graph_errors_and_defaults():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.exp() * x).sum()
    tg.grad(y, x)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        tg.grad(y, x)
    y = (x.exp() * x).sum()
    tg.grad(y, x, retain_graph=True)
    tg.grad(y, x, create_graph=True)  # create_graph keeps the graph too (retain_graph defaults to it)
    y.backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data) * (1 + x.data), rtol=1e-15)


def test_grad_touches_no_grad_attribute_and_checks_its_arguments():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 2).retain_grad()
    tg.grad((h * h).sum(), x, create_graph=True)
    assert x.grad is None and h.grad is None
    with pytest.raises(RuntimeError, match=r"input 0 .* does not require grad"):
        tg.grad((x * 2).sum(), Tensor(np.ones(2)))
    with pytest.raises(RuntimeError, match="output 0 does not require grad"):
        tg.grad(Tensor(np.ones(2)).sum(), x)
    with pytest.raises(TypeError, match="must be Tensors"):
        tg.grad((x * 2).sum(), [np.ones(2)])


def test_backward_with_create_graph_leaves_a_differentiable_grad():
    """As in PyTorch: .grad becomes a Tensor with a graph, which can be differentiated again."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    first = x.grad
    assert isinstance(first, Tensor) and first.requires_grad
    np.testing.assert_array_equal(first.data, [3.0, 12.0])
    x.zero_grad()
    first.sum().backward()
    assert type(x.grad) is np.ndarray
    np.testing.assert_array_equal(x.grad, [6.0, 12.0])
    # a first-order backward into a Tensor .grad adds to it
    x.grad = None
    (x**3).sum().backward(create_graph=True)
    (x * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [4.0, 13.0])


def test_an_op_without_graph_backward_names_itself():
    class Twice(tg.Function):
        def forward(self, a):
            return 2 * a

        def backward(self, g):
            return 2 * g

    x = Tensor(np.array([1.0]), requires_grad=True)
    tg.grad(Twice.apply(x).sum(), x)  # first order works
    with pytest.raises(RuntimeError, match="Twice is not twice differentiable"):
        tg.grad(Twice.apply(x).sum(), x, create_graph=True)


def test_detect_anomaly_checks_a_recorded_backward_pass():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"Div produced inf .*test_higher_order.py.*"
                                                                   r"computing Sqrt's gradient") as caught:
        tg.grad(x.sqrt().sum(), x, create_graph=True)
    assert caught.value.op == "Div"


def test_pow_sends_zero_through_a_constant_factor_even_from_a_nan_upstream():
    """a ** b with b == 0 is constant in a: PyTorch's gradient there is 0 whatever comes from upstream."""
    a = Tensor(np.array([-1.5, 2.0]), requires_grad=True)
    b = Tensor(np.array([0.0, 0.0]), requires_grad=True)
    (a**b).backward(np.array([np.nan, 1.0]))
    np.testing.assert_array_equal(a.grad, [0.0, 0.0])


def _in_place_program(x, w):
    """In-place ops on intermediates (recorded, their history rebased), then a square: curvature through each."""
    h = x * w + 1.0
    h *= x
    h += w
    h[1] = h[1] * 2.0 + 1.0
    h[:, 2] = (w * w)[2]
    h /= 2.0
    return (h * h).sum()


def test_in_place_ops_on_intermediates_are_differentiable_twice():
    needs_torch()
    rng = np.random.default_rng(7)
    x0, w0, v, u = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(3, 4)), rng.normal(size=4)
    x, w = Tensor(x0, requires_grad=True), Tensor(w0, requires_grad=True)
    gx, gw = tg.grad(_in_place_program(x, w), [x, w], create_graph=True)
    hx, hw = tg.grad((gx * v).sum() + (gw * u).sum(), [x, w])
    tx, tw = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    tgx, tgw = torch.autograd.grad(_in_place_program(tx, tw), [tx, tw], create_graph=True)
    thx, thw = torch.autograd.grad((tgx * torch.tensor(v)).sum() + (tgw * torch.tensor(u)).sum(), [tx, tw])
    for ours, theirs in [(gx, tgx), (gw, tgw), (hx, thx), (hw, thw)]:
        assert_close(ours, theirs)


def test_a_tensor_hook_is_part_of_a_recorded_pass():
    """A hook sees the recorded gradient, and what it returns is differentiated again, as in PyTorch."""
    needs_torch()
    x0 = np.random.default_rng(8).normal(size=(3, 4))
    results = []
    for make, grad in [(lambda a: Tensor(a, requires_grad=True), tg.grad),
                       (lambda a: torch.tensor(a, requires_grad=True), torch.autograd.grad)]:
        x = make(x0)
        y = x * x
        y.register_hook(lambda g: g * 3.0)
        (gx,) = grad(y.sum() * y.sum(), [x], create_graph=True)
        (hx,) = grad(gx.sum(), [x])
        results.append((gx, hx))
    for ours, theirs in zip(*results, strict=True):
        assert_close(ours, theirs)
