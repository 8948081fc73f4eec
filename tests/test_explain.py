"""explain(loss): the tape's structure for the tutorial's network and an MLP, and its numbers against the gradients."""

import inspect
import io
import re
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import Function, Tensor, nn, ops, ops_conv
from tinygrad_np.cli import main
from tinygrad_np.data import load_offline_sample
from tinygrad_np.models import mlp as mlp_reference
from tinygrad_np.models import two_layer as tutorial
from tinygrad_np.nn import functional as F
from tinygrad_np.tape import _clauses, backward_tape


def batch(size=64, dtype=np.float64):
    x, y = load_offline_sample().arrays("train")
    return x[:size].astype(dtype), y[:size]


def printed_rows(text):
    """{step number: (op, equation, shape, norm as printed)} from the tape's table."""
    rows = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())  # the columns are two or more spaces apart
        if len(cells) == 5 and cells[0].isdigit():
            rows[int(cells[0])] = tuple(cells[1:])
    return rows


def tutorial_loss(size=64):
    x, y = batch(size)
    model = tutorial.two_layer(0, dtype=np.float64, init="tutorial")
    return model, x, y, F.cross_entropy(model(Tensor(x)), y)


# ---- the tutorial's network -------------------------------------------------------------------------------


def test_the_tutorial_networks_tape_is_the_tutorials_six_formulas():
    model, _, _, loss = tutorial_loss()
    tape = backward_tape(loss, model)
    assert [(s.op, s.equation) for s in tape.steps] == [
        ("CrossEntropy", "dZ2 = dloss * (softmax(Z2) - onehot(t)) / m"),
        ("Linear", "dA1 = dZ2 @ W2"),
        ("Linear", "dW2 = dZ2^T @ A1"),
        ("Linear", "db2 = sum(dZ2) over the batch"),
        ("ReLU", "dZ1 = dA1 * (Z1 > 0)"),
        ("Linear", "dW1 = dZ1^T @ X"),
        ("Linear", "db1 = sum(dZ1) over the batch"),
    ]
    assert [(f.text, f.steps) for f in tape.formulas] == [
        ("dZ2 = A2 - Y", (1,)),
        ("dW2 = dZ2 A1^T / m", (3,)),
        ("db2 = sum(dZ2) / m", (4,)),
        ("dZ1 = W2^T dZ2 * (Z1 > 0)", (2, 5)),  # two engine steps: the matmul back through Linear, then the mask
        ("dW1 = dZ1 X^T / m", (6,)),
        ("db1 = sum(dZ1) / m", (7,)),
    ]
    assert dict(tape.legend)["W1"] == "0.weight (10, 784)" and dict(tape.legend)["A1"].startswith("output of layer 1")


def test_each_step_equals_the_tutorials_hand_derived_array():
    model, x, y, loss = tutorial_loss()
    tape = backward_tape(loss, model)
    W1, b1, W2, b2 = (tutorial.tutorial_params_from_model(model)[k] for k in ("W1", "b1", "W2", "b2"))
    X, m = x.T, x.shape[0]
    Z1, A1, Z2, A2 = tutorial.forward_prop(W1, b1, W2, b2, X)
    dW1, db1, dW2, db2 = tutorial.backward_prop(Z1, A1, Z2, A2, W1, W2, X, y)
    dZ2 = A2 - tutorial.one_hot(y)
    dZ1 = W2.T @ dZ2 * tutorial.relu_deriv(Z1)
    # The tape is in rows and differentiates the mean loss: its dZ are the tutorial's transposed, over m.
    expected = {1: dZ2.T / m, 2: (W2.T @ dZ2).T / m, 3: dW2, 4: db2[:, 0], 5: dZ1.T / m, 6: dW1, 7: db1[:, 0]}
    for step in tape.steps:
        np.testing.assert_allclose(step.grad, expected[step.number], rtol=1e-10, atol=1e-14, err_msg=step.equation)


def test_the_printed_norms_are_the_norms_of_the_gradients(capsys):
    model, _, _, loss = tutorial_loss()
    z2 = loss._ctx.inputs[0]
    a1 = z2._ctx.inputs[0]
    z1 = a1._ctx.inputs[0]
    for t in (z1, a1, z2):
        t.retain_grad()  # so the engine keeps them and we can check every line
    tg.explain(loss, model=model)
    rows = printed_rows(capsys.readouterr().out)
    grads = {"dZ2": z2.grad, "dA1": a1.grad, "dW2": model[2].weight.grad, "db2": model[2].bias.grad,
             "dZ1": z1.grad, "dW1": model[0].weight.grad, "db1": model[0].bias.grad}
    assert len(rows) == 8 and rows[0][1:] == ("dloss = 1", "()", "1")
    for number in range(1, 8):
        _, equation, shape, norm = rows[number]
        grad = grads[equation.split(" = ")[0]]
        assert shape == str(grad.shape) and norm == f"{np.linalg.norm(grad):.4g}", rows[number]


def test_explain_is_backward_leaves_get_the_same_gradients():
    model, x, y, loss = tutorial_loss(16)
    tg.explain(loss, model=model, file=io.StringIO())
    twin = tutorial.two_layer(0, dtype=np.float64, init="tutorial")
    F.cross_entropy(twin(Tensor(x)), y).backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert np.array_equal(p.grad, q.grad), name  # bit for bit: the very same computation


# ---- MLPs and other graphs --------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_an_mlps_tape_has_the_tutorials_formulas_for_every_layer(dropout):
    x, y = batch(32)
    model = mlp_reference.mlp(784, (12, 8), 10, dropout=dropout, generator=1, dtype=np.float64)
    tape = backward_tape(F.cross_entropy(model(Tensor(x)), y), model)
    texts = [f.text for f in tape.formulas]
    mask = " * M{} / (1 - p)" if dropout else ""
    assert texts == [
        "dZ3 = A3 - Y", "dW3 = dZ3 A2^T / m", "db3 = sum(dZ3) / m",
        f"dZ2 = W3^T dZ3{mask.format(2)} * (Z2 > 0)", "dW2 = dZ2 A1^T / m", "db2 = sum(dZ2) / m",
        f"dZ1 = W2^T dZ2{mask.format(1)} * (Z1 > 0)", "dW1 = dZ1 X^T / m", "db1 = sum(dZ1) / m",
    ]
    # dZ_l is made of the Linear's dx, the dropout's Mul (if any), then the ReLU's mask, in that order.
    hidden_ops = ["Linear", "Mul", "ReLU"] if dropout else ["Linear", "ReLU"]
    for formula in tape.formulas:
        ops_used = [tape.steps[n - 1].op for n in formula.steps]
        if formula.text.startswith(("dZ2", "dZ1")):
            assert ops_used == hidden_ops, formula
        assert tape.steps[formula.steps[-1] - 1].input == formula.gradient_of[1:]  # the last step gives its value
    params = {state: short for short, state in mlp_reference.tutorial_names(model).items()}  # 0.weight -> W1
    for name, parameter in model.named_parameters():
        contributions = tape.steps_for(params[name])
        assert len(contributions) == 1
        np.testing.assert_array_equal(contributions[0].grad, parameter.grad)


def test_a_tensor_used_twice_gets_one_line_per_contribution_summing_to_its_grad():
    a = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    b = a * 3.0
    tape = backward_tape(((a + a) * b + b.exp()).sum(), names={"a": a, "b": b})
    assert [s.equation for s in tape.steps] == [
        "dt4 = dloss broadcast back over the summed axes",
        "dt3 = dt4",
        "dt1 = dt4",
        "dt2 = dt3 * b",
        "db = dt3 * t2",
        "da = dt2",
        "da += dt2",
        "db += dt1 * t1",
        "da += db * 3",
    ]
    np.testing.assert_allclose(sum(s.grad for s in tape.steps_for("a")), a.grad, rtol=1e-15)
    np.testing.assert_allclose(a.grad, 12 * a.data + 3 * np.exp(3 * a.data), rtol=1e-14)  # d/da (6a^2 + e^3a)
    assert ("t1", "output of Exp (3,)") in tape.legend


def test_other_models_are_named_by_their_parameters_and_get_no_tutorial_formulas():
    x, y = batch(8)
    model = nn.Sequential(nn.Linear(784, 5, generator=0, dtype=np.float64), nn.Tanh(),
                          nn.Linear(5, 10, generator=1, dtype=np.float64))
    tape = backward_tape(F.cross_entropy(model(Tensor(x)), y), model)
    assert [s.input for s in tape.steps if s.tensor.is_leaf] == ["2.weight", "2.bias", "0.weight", "0.bias"]
    equations = [s.equation for s in tape.steps]
    assert "d2.weight = dt3^T @ t2" in equations and "d0.weight = dt1^T @ X" in equations and not tape.formulas
    assert ("X", "the batch (8, 784)") in tape.legend  # the input, as the tutorial's tape names it

    tutorial_net = tutorial.two_layer(0, dtype=np.float64)
    decayed = F.cross_entropy(tutorial_net(Tensor(x)), y) + (tutorial_net[0].weight ** 2).sum() * 0.01
    tape = backward_tape(decayed, tutorial_net)
    assert not tape.formulas  # weight decay adds to dW1: the tutorial's formulas no longer describe it
    assert len(tape.steps_for("W1")) == 2 and tape.steps_for("W1")[1].equation.startswith("dW1 += ")


def test_every_op_has_a_docstring_formula_for_each_input():
    functions = {f for module in (ops, ops_conv) for _, f in inspect.getmembers(module, inspect.isclass)
                 if issubclass(f, Function) and f is not Function}
    assert len(functions) > 30
    for function in functions:
        clauses = _clauses(function)
        assert clauses, f"{function.__name__}'s docstring has no 'da = ...' formula"
        assert all(text.startswith("d") and " = " in text for _, text in clauses), (function.__name__, clauses)
        assert all(not text.rstrip().endswith((",", "the first")) for _, text in clauses), (function.__name__, clauses)


def test_a_cnns_tape_writes_every_convolution_and_pooling_step_as_a_formula():
    # The formulas came from the docstring's first line only: a convolution's, on its second, became
    # "Conv2d.backward(dt5)", and max-pooling's stopped mid-sentence.
    from tinygrad_np.spec import model_from_spec
    from tinygrad_np.train import network_spec

    x, y = batch(2)
    model = model_from_spec(network_spec("cnn"))
    tape = backward_tape(F.cross_entropy(model(Tensor(x.reshape(-1, 1, 28, 28).astype(np.float32))), y), model)
    equations = {step.op: [] for step in tape.steps}
    for step in tape.steps:
        equations[step.op].append(step.equation)
    assert not [e for es in equations.values() for e in es if ".backward(" in e], equations
    assert any(e.startswith("dt") and "col2im(" in e for e in equations["Conv2d"]), equations
    assert any(".weight = " in e and "cols(" in e for e in equations["Conv2d"]), equations
    assert all(e.endswith("routed to each window's maximum, summed where windows overlap")
               for e in equations["MaxPool2d"]), equations
    assert ("X", "the batch (2, 1, 28, 28)") in tape.legend  # the input, named as in the tutorial's tape
    assert any(e.endswith("cols(X)") for e in equations["Conv2d"]), equations


def test_explain_refuses_what_it_cant_show():
    with pytest.raises(TypeError, match="takes the Tensor"):
        tg.explain(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.explain(Tensor(1.0) * 2.0)
    with pytest.raises(ValueError, match="single-element"):
        tg.explain(Tensor(np.ones(3), requires_grad=True) * 2.0)
    loss = (Tensor(np.ones(3), requires_grad=True) * 2.0).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        tg.explain(loss)


def test_the_engine_is_left_as_it_was():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    loss = (x * 2.0).relu().sum()
    ctxs = [t._ctx for t in tg.tensor.iter_graph(loss) if t._ctx is not None]
    backward_tape(loss)
    assert all("backward" not in vars(ctx) for ctx in ctxs)  # the per-instance wrappers are gone
    assert ops.Mul.backward is inspect.getattr_static(ops.Mul, "backward")


def test_the_command_prints_the_tutorial_networks_tape(capsys):
    assert main(["explain", "--offline", "--batch-size", "16", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "dZ1 = W2^T dZ2 * (Z1 > 0)  steps 2, 5" in out and len(printed_rows(out)) == 8
    assert main(["explain", "--offline", "--batch-size", "999999"]) == 2
    assert "--batch-size must be at most 4000" in capsys.readouterr().err


def test_the_readmes_tape_is_what_the_command_prints(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```text\n\$ tinygrad-np explain --offline\n(.*?)```", readme, flags=re.DOTALL)
    assert block, "the README shows `tinygrad-np explain --offline` and its output"
    assert main(["explain", "--offline"]) == 0
    captured = capsys.readouterr()
    assert block[1] == captured.err + captured.out  # stderr's one line about the data comes first
