"""Bring your own backprop: six independent from-scratch networks, in the styles people write them, compared as written.

Each implementation in `examples/backprop/` PASSes with at most five lines of glue (checked below). Then every
classic mistake is planted in it, as a one-line edit of its source, and must FAIL on exactly the gradients it
touches, be blamed on the hand-written side by the numerical referee, and get a hint naming the mistake.
A mistake that cannot be made in a style (a missing 1/m in code that sums on purpose) is listed with why.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tinygrad_np import nn
from tinygrad_np.compare import FAIL, PASS, compare_model
from tinygrad_np.data import load_mnist

CORPUS_DIR = Path(__file__).resolve().parents[1] / "examples" / "backprop"
BATCH = 24  # unlike every layer width, so a shape that holds m can't pass for one that holds units


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_mnist(offline=True, verbose=False).arrays("train")
    return x[:BATCH].astype(np.float64), y[:BATCH]


def load(path: Path) -> ModuleType:
    """The user's file, imported from where it lies (as `tinygrad-np compare --manual` does)."""
    spec = importlib.util.spec_from_file_location(f"corpus_{path.stem}_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # inspect.getsource finds a module's file through sys.modules
    spec.loader.exec_module(module)
    return module


def binary_cross_entropy(output, y):
    """The per-unit cross-entropy of sigmoid outputs, which the library has no loss for: a loss callable."""
    t = np.eye(output.shape[1])[y]
    return -(t * output.log() + (1 - t) * (1 - output).log()).sum() / len(y)


# ---- the glue: at most five lines per implementation -------------------------------------------------------


def ng_glue(ng):
    return {"manual_backward": ng.backward_propagation, "manual_forward": ng.forward_propagation,
            "params": ng.initialize_parameters(784, 16, 10)}


def nielsen_glue(nielsen):
    return {"manual_backward": nielsen.Network([784, 16, 10]).backprop}


def cs231n_glue(cs231n):
    return {"manual_backward": cs231n.TwoLayerNet(784, 16, 10, std=0.05).loss}


def lazyprogrammer_glue(lp):
    def backward(X, T, Y, Z, W1, W2, reg):
        return (lp.derivative_w1(X, Z, T, Y, W1, W2, reg), lp.derivative_b1(T, Y, W2, Z),
                lp.derivative_w2(Z, T, Y, W2, reg), lp.derivative_b2(T, Y))
    return {"manual_backward": backward, "manual_forward": lp.forward, "params": lp.init_weights(784, 16, 10)}


def numpy_mlp_glue(mlp):
    net = mlp.MLP(784, 16, 10, weight_decay=0.01)
    return {"manual_backward": net.backward, "manual_forward": net.forward}


def torch_layout_glue(torch_style):
    return {"manual_backward": torch_style.backward, "manual_forward": torch_style.forward,
            "params": torch_style.init_params()}


@dataclass
class Implementation:
    style: str
    layers: Callable[[], list[nn.Module]]
    glue: Callable[[ModuleType], dict[str, Any]]
    declared: dict[str, Any] = field(default_factory=dict)


CORPUS = {
    "ng_style": Implementation(
        "column; tanh hidden, sigmoid outputs, per-unit cross-entropy (a loss callable); L2 as lambd/m * W; "
        "dict in, cache between, dict with extras out",
        lambda: [nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 10), nn.Sigmoid()], ng_glue,
        {"loss": binary_cross_entropy, "l2": "lambd/m * W", "arguments": {"lambd": 0.7}, "targets": "one_hot"}),
    "nielsen_style": Implementation(
        "column, per example; sigmoid everywhere, quadratic cost 1/2 ||a - y||^2; lists of weights and biases "
        "on an object; returns (nabla_b, nabla_w)",
        lambda: [nn.Linear(784, 16), nn.Sigmoid(), nn.Linear(16, 10), nn.Sigmoid()], nielsen_glue,
        {"loss": "quadratic", "per_example": True}),
    "cs231n_style": Implementation(
        "row, W (in, out), b (n,); ReLU, softmax cross-entropy; L2 as reg * sum(W * W); params dict on an object; "
        "returns (loss, grads)",
        lambda: [nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)], cs231n_glue,
        {"l2": "reg * np.sum(W * W)", "arguments": {"reg": 0.05}}),
    "lazyprogrammer_style": Implementation(
        "row, W (in, out), b (n,); sigmoid hidden, softmax; gradient ascent on the summed log-likelihood with "
        "reg/2 ||W||^2; one function per parameter",
        lambda: [nn.Linear(784, 16), nn.Sigmoid(), nn.Linear(16, 10)], lazyprogrammer_glue,
        {"reduction": "sum", "maximize": True, "l2": "reg * W", "arguments": {"reg": 0.01}}),
    "numpy_mlp_style": Implementation(
        "row, W (in, out), b (1, n); tanh hidden, linear outputs, MSE over every output; weight decay "
        "wd/2 ||W||^2; state on the object between forward and backward",
        lambda: [nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 10)], numpy_mlp_glue,
        {"loss": "mse", "l2": "wd/2 * ||W||^2", "arguments": {"wd": 0.01}}),
    "torch_layout_style": Implementation(
        "PyTorch's layout, W (out, in), b (n,); two leaky-ReLU hidden layers, log_softmax and NLL; returns the "
        "gradients last layer first",
        lambda: [nn.Linear(784, 32), nn.LeakyReLU(), nn.Linear(32, 16), nn.LeakyReLU(), nn.Linear(16, 10),
                 nn.LogSoftmax()], torch_layout_glue,
        {"loss": "nll"}),
}


def compare(name: str, module: ModuleType, digits, **changes) -> Any:
    implementation = CORPUS[name]
    declared = {**implementation.declared, **changes}
    model = nn.Sequential(*implementation.layers()).double()
    x, y = digits
    return compare_model(model, x=x, y=y, numerical=True, numerical_entries=100, **implementation.glue(module),
                         **{key: value for key, value in declared.items() if value is not None})


@pytest.mark.parametrize("name", list(CORPUS))
def test_each_implementation_passes_as_written(name, digits):
    report = compare(name, load(CORPUS_DIR / f"{name}.py"), digits)
    assert report.verdict == PASS, report.format()
    assert all(item.reference_b.verdict == PASS for item in report.gradients), report.format()
    assert all(item.verdict == PASS for item in report.forward)


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_glue_is_at_most_five_lines(name):
    lines = inspect.getsource(CORPUS[name].glue).strip().splitlines()[1:]  # the body, without the def line
    assert len(lines) <= 5, "\n".join(lines)


# ---- planted bugs: one edit of the source each ------------------------------------------------------------


@dataclass
class Plant:
    """Replace `old` by `new` (every occurrence; there must be one) or change a declaration; what must FAIL."""

    edits: list[tuple[str, str]]
    failing: list[str]
    hint: str
    declared: dict[str, Any] = field(default_factory=dict)


BUGS = ONE_OVER_M, TRANSPOSED, MASK, DERIVATIVE, AXIS, SIGN, L2 = (
    "missing 1/m", "transposed dW", "missing mask", "wrong activation derivative", "bias summed over the wrong axis",
    "sign error", "undeclared L2")
NOT_APPLICABLE = {
    ("nielsen_style", ONE_OVER_M): "per-example backprop has no 1/m: the average over the mini-batch is taken "
                                      "outside it (in update_mini_batch here, by per_example=True in the tool)",
    ("lazyprogrammer_style", ONE_OVER_M): "it sums over the examples on purpose (reduction='sum'): there is no "
                                             "1/m to miss",
}
ALL_2 = ["dW1", "db1", "dW2", "db2"]
PLANTS: dict[str, dict[str, Plant]] = {
    "ng_style": {
        ONE_OVER_M: Plant([("dW2 = 1 / m * np.dot(dZ2, A1.T)", "dW2 = np.dot(dZ2, A1.T)")], ["dW2"], "missing 1/m"),
        TRANSPOSED: Plant([("np.dot(dZ1, X.T) + lambd / m * W1", "np.dot(X, dZ1.T) + lambd / m * W1.T")], ["dW1"],
                          "transposed"),
        MASK: Plant([(" * (1 - np.power(A1, 2))", "")], ["dW1", "db1"], "tanh's derivative left out"),
        DERIVATIVE: Plant([("(1 - np.power(A1, 2))", "(1 - A1)")], ["dW1", "db1"], "1 - tanh instead of 1 - tanh^2"),
        AXIS: Plant([("np.sum(dZ2, axis=1, keepdims=True)", "np.sum(dZ2, axis=0, keepdims=True)")], ["db2"],
                    "wrong axis"),
        SIGN: Plant([("dZ2 = A2 - Y", "dZ2 = Y - A2")], ALL_2, "sign error"),
        L2: Plant([], ["dW1", "dW2"], "L2 term differs", {"l2": None}),
    },
    "nielsen_style": {
        TRANSPOSED: Plant([("nabla_w[-1] = np.dot(delta, activations[-2].transpose())",
                            "nabla_w[-1] = np.dot(activations[-2], delta.transpose())")], ["dW2"], "transposed"),
        MASK: Plant([("delta = np.dot(self.weights[-layer + 1].transpose(), delta) * sp",
                      "delta = np.dot(self.weights[-layer + 1].transpose(), delta)")], ["dW1", "db1"],
                    "sigmoid's derivative left out"),
        DERIVATIVE: Plant([("return sigmoid(z) * (1 - sigmoid(z))", "return sigmoid(z)")], ALL_2,
                          "without the (1 - s)"),
        AXIS: Plant([("nabla_b[-1] = delta", "nabla_b[-1] = np.sum(delta, axis=0)")], ["db2"], "wrong axis"),
        SIGN: Plant([("return output_activations - y", "return y - output_activations")], ALL_2, "sign error"),
        L2: Plant([("nabla_w[-1] = np.dot(delta, activations[-2].transpose())",
                    "nabla_w[-1] = np.dot(delta, activations[-2].transpose()) + 0.001 * self.weights[-1]")], ["dW2"],
                  "L2 term differs (c = 0.001)"),
    },
    "cs231n_style": {
        ONE_OVER_M: Plant([("        dscores /= N\n", "")], ALL_2, "missing 1/m"),
        TRANSPOSED: Plant([("X.T.dot(dhidden) + 2 * reg * W1", "dhidden.T.dot(X) + 2 * reg * W1.T")], ["dW1"],
                          "transposed"),
        MASK: Plant([("        dhidden[hidden <= 0] = 0\n", "")], ["dW1", "db1"], "missing ReLU mask"),
        DERIVATIVE: Plant([("dhidden[hidden <= 0] = 0", "dhidden *= hidden")], ["dW1", "db1"],
                          "used as ReLU's derivative"),
        AXIS: Plant([('grads["b2"] = np.sum(dscores, axis=0)', 'grads["b2"] = np.sum(dscores, axis=1)')], ["db2"],
                    "wrong axis"),
        SIGN: Plant([('grads["b2"] = np.sum(dscores, axis=0)', 'grads["b2"] = -np.sum(dscores, axis=0)')], ["db2"],
                    "sign error"),
        L2: Plant([], ["dW1", "dW2"], "L2 term differs (c = 0.1)", {"l2": None}),
    },
    "lazyprogrammer_style": {
        TRANSPOSED: Plant([("return X.T.dot(dZ) - reg * W1", "return dZ.T.dot(X) - reg * W1.T")], ["dW1"],
                          "transposed"),
        MASK: Plant([(" * Z * (1 - Z)", "")], ["dW1", "db1"], "sigmoid's derivative left out"),
        DERIVATIVE: Plant([(" * Z * (1 - Z)", " * Z")], ["dW1", "db1"], "without the (1 - s)"),
        AXIS: Plant([("return (T - Y).sum(axis=0)", "return (T - Y).sum(axis=1)")], ["db2"], "wrong axis"),
        SIGN: Plant([("return (T - Y).sum(axis=0)", "return (Y - T).sum(axis=0)")], ["db2"], "sign error"),
        L2: Plant([], ["dW1", "dW2"], "L2 term differs (c = -0.01)", {"l2": None}),
    },
    "numpy_mlp_style": {
        ONE_OVER_M: Plant([("/ y.size", "/ y.shape[1]")], ALL_2, "missing 1/m"),
        TRANSPOSED: Plant([("self.x.T @ d_z1 + self.weight_decay * self.w1",
                            "d_z1.T @ self.x + self.weight_decay * self.w1.T")], ["dW1"], "transposed"),
        MASK: Plant([(" * (1 - self.a1**2)", "")], ["dW1", "db1"], "tanh's derivative left out"),
        DERIVATIVE: Plant([("(1 - self.a1**2)", "(1 - self.z1**2)")], ["dW1", "db1"],
                          "the derivative taken of Z, not of A"),
        AXIS: Plant([("grad_b2 = d_out.sum(axis=0)", "grad_b2 = d_out.sum(axis=1)")], ["db2"], "wrong axis"),
        SIGN: Plant([("(1 - self.a1**2)", "(self.a1**2 - 1)")], ["dW1", "db1"], "sign error"),
        L2: Plant([], ["dW1", "dW2"], "L2 term differs (c = 0.01)", {"l2": None}),
    },
    "torch_layout_style": {
        ONE_OVER_M: Plant([("    g3 /= n\n", "")], ["dW1", "db1", "dW2", "db2", "dW3", "db3"], "missing 1/m"),
        TRANSPOSED: Plant([("dW1 = g1.T @ x", "dW1 = x.T @ g1")], ["dW1"], "transposed"),
        MASK: Plant([("g2 = (g3 @ W3) * leaky_relu_grad(z2)", "g2 = g3 @ W3")], ALL_2,
                    "missing leaky-ReLU mask: slope 1 where Z2 <= 0"),
        DERIVATIVE: Plant([("np.where(z > 0, 1.0, SLOPE)", "np.where(z > 0, 1.0, 0.0)")], ALL_2,
                          "ReLU's derivative, not leaky ReLU's (every leaky_relu layer"),
        AXIS: Plant([("db3 = g3.sum(0)", "db3 = g3.sum(1)")], ["db3"], "wrong axis"),
        SIGN: Plant([("db3 = g3.sum(0)", "db3 = -g3.sum(0)")], ["db3"], "sign error"),
        L2: Plant([("dW1 = g1.T @ x", "dW1 = g1.T @ x + 1e-3 * W1")], ["dW1"], "L2 term differs (c = 0.001)"),
    },
}
CASES = [(name, bug) for name in CORPUS for bug in BUGS if (name, bug) not in NOT_APPLICABLE]


def test_every_bug_is_planted_in_every_implementation_or_said_why_not():
    for name in CORPUS:
        for bug in BUGS:
            assert (bug in PLANTS[name]) != ((name, bug) in NOT_APPLICABLE), (name, bug)


def plant(name: str, bug: str, tmp_path: Path) -> tuple[ModuleType, Plant]:
    planted = PLANTS[name][bug]
    source = (CORPUS_DIR / f"{name}.py").read_text()
    for old, new in planted.edits:
        assert old in source, f"{old!r} is not in {name}.py any more: update the planted bug"
        source = source.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return load(path), planted


@pytest.mark.parametrize(("name", "bug"), CASES)
def test_a_planted_bug_is_caught_blamed_on_the_hand_derivation_and_named(name, bug, digits, tmp_path):
    module, planted = plant(name, bug, tmp_path)
    report = compare(name, module, digits, **planted.declared)
    text = report.format()
    order = [item.name for item in report.gradients]
    assert report.failed == sorted(planted.failing, key=order.index), text
    assert report.blamed == dict.fromkeys(planted.failing, "manual"), text
    assert all(item.verdict == PASS for item in report.forward), text  # the forward pass was right all along
    for item in report.gradients:
        if item.verdict == FAIL:
            assert planted.hint in f"{item.pair.note}\n" + "\n".join(report.notes), (item.name, text)
