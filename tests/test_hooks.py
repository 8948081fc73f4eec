"""Tensor.register_hook and Module.register_forward_hook, against PyTorch's behaviour (float64)."""

import importlib.util

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, nn


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


X = np.array([0.5, -1.0, 2.0])


def as_array(grad):
    """A hook's argument, from either framework, as a new ndarray."""
    return np.array(grad.data if isinstance(grad, Tensor) else grad.detach().numpy())


def _fan_out_with_hooks(x, seen, scale_leaf):
    """h is used twice: its hook must be called once, with the sum of both paths."""
    h = x * x
    h.register_hook(lambda g: seen.append(as_array(g)))
    h.register_hook(lambda g: g * 3)  # a replacement, seen by everything upstream
    x.register_hook(lambda g: g * scale_leaf)
    return (h * 2 + h.exp()).sum()


def test_tensor_hooks_match_pytorch(torch):
    ours_seen, theirs_seen = [], []
    x = Tensor(X.copy(), requires_grad=True)
    _fan_out_with_hooks(x, ours_seen, 0.5).backward()
    tx = torch.tensor(X.copy(), requires_grad=True)
    _fan_out_with_hooks(tx, theirs_seen, 0.5).backward()
    assert len(ours_seen) == len(theirs_seen) == 1
    np.testing.assert_allclose(ours_seen[0], theirs_seen[0], rtol=1e-12)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)


def test_a_retained_gradient_is_the_hooked_one(torch):
    for framework in ("ours", "torch"):
        x = Tensor(X.copy(), requires_grad=True) if framework == "ours" else torch.tensor(X.copy(), requires_grad=True)
        h = x * 2
        h.retain_grad()
        h.register_hook(lambda g: g + 1)
        h.sum().backward()
        grad = h.grad if framework == "ours" else h.grad.numpy()
        np.testing.assert_array_equal(grad, [2.0, 2.0, 2.0])
        np.testing.assert_array_equal(np.asarray(x.grad), [4.0, 4.0, 4.0])


def test_removed_hooks_are_not_called_and_hooks_run_in_order():
    calls = []
    x = Tensor(X.copy(), requires_grad=True)
    first = x.register_hook(lambda g: calls.append("first"))
    x.register_hook(lambda g: calls.append("second"))
    with x.register_hook(lambda g: calls.append("scoped")):
        (x * 1).sum().backward()
    first.remove()
    first.remove()  # twice is harmless, as in PyTorch
    (x * 1).sum().backward()
    assert calls == ["first", "second", "scoped", "second"]


def test_a_kept_gradient_is_not_changed_by_later_accumulation():
    kept = []
    x = Tensor(X.copy(), requires_grad=True)
    x.register_hook(kept.append)
    for _ in range(2):
        (x * x).sum().backward()
    np.testing.assert_array_equal(kept[0].data, 2 * X)
    np.testing.assert_array_equal(x.grad, 4 * X)


def test_hook_errors(torch):
    with pytest.raises(RuntimeError, match="doesn't require grad"):
        Tensor(X).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        torch.tensor(X).register_hook(lambda g: g)
    x = Tensor(X.copy(), requires_grad=True)
    x.register_hook(lambda g: np.ones(2))
    with pytest.raises(RuntimeError, match=r"changed the gradient's shape from \(3,\) to \(2,\)"):
        x.sum().backward()


def test_hooks_before_an_in_place_op_see_the_old_value_gradient(torch):
    """PyTorch: a hook registered before x is modified in place gets the gradient w.r.t. x before the change."""
    results = []
    for framework in ("ours", "torch"):
        seen = []
        a = Tensor(X.copy(), requires_grad=True) if framework == "ours" else torch.tensor(X.copy(), requires_grad=True)
        x = a * 1
        x.register_hook(lambda g, seen=seen: seen.append(("before", as_array(g))))
        x *= 3
        x.register_hook(lambda g, seen=seen: seen.append(("after", as_array(g))))
        (x * x).sum().backward()
        results.append(seen)
    ours, theirs = results
    assert [name for name, _ in ours] == [name for name, _ in theirs] == ["after", "before"]
    for (_, mine), (_, reference) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-12)


# ---- forward hooks -------------------------------------------------------------------------------------------


def test_forward_hooks_match_pytorch(torch):
    layer = nn.Linear(3, 2, generator=0, dtype=np.float64)
    weight, bias = layer.weight.data, layer.bias.data
    reference = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(weight))
        reference.bias.copy_(torch.from_numpy(bias))
    captured = {}
    for name, module in (("ours", layer), ("torch", reference)):
        def hook(mod, inputs, output, name=name, module=module):
            assert mod is module and isinstance(inputs, tuple) and len(inputs) == 1
            captured[name] = np.array(output.data if name == "ours" else output.detach().numpy())
            return output * 2  # a replacement output: what the caller gets, and differentiates

        handle = module.register_forward_hook(hook)
        x = X.reshape(1, 3).copy()
        out = module(Tensor(x) if name == "ours" else torch.from_numpy(x))
        out.sum().backward()
        captured[name + " out"] = np.array(out.data if name == "ours" else out.detach().numpy())
        captured[name + " grad"] = np.array(module.weight.grad if name == "ours" else module.weight.grad.numpy())
        handle.remove()
        again = module(Tensor(x) if name == "ours" else torch.from_numpy(x))
        captured[name + " removed"] = np.array(again.data if name == "ours" else again.detach().numpy())
    for key in ("", " out", " grad", " removed"):
        np.testing.assert_allclose(captured["ours" + key], captured["torch" + key], rtol=1e-12)
    np.testing.assert_allclose(captured["ours removed"], captured["ours"])


def test_an_activation_histogram_from_forward_hooks():
    model = nn.Sequential(nn.Linear(4, 8, generator=0), nn.ReLU(), nn.Linear(8, 3, generator=1))
    activations = {}
    handles = [module.register_forward_hook(lambda m, i, o, name=name: activations.setdefault(name, o.data.copy()))
               for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
    with tg.no_grad():
        model(np.random.default_rng(0).random((16, 4), dtype=np.float32))
    assert list(activations) == ["1"] and activations["1"].shape == (16, 8) and (activations["1"] >= 0).all()
    for handle in handles:
        handle.remove()
    assert not model[1]._forward_hooks
