"""detect_anomaly(): the first NaN/Inf in forward or backward stops the run, naming the op, the line, the shapes."""

from pathlib import Path

import numpy as np
import pytest

from tinygrad_np import AnomalyError, Function, Tensor, detect_anomaly, nn, no_grad, optim
from tinygrad_np.anomaly import is_anomaly_enabled

# The ops below divide by zero and take logs of negatives on purpose; NumPy's warnings about that are noise here.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

THIS_FILE = Path(__file__).resolve()


def line_of(marker: str) -> int:
    """The line number of the one line in this file that ends with `# marker` (where an op is created)."""
    lines = [i for i, text in enumerate(THIS_FILE.read_text().splitlines(), 1) if text.endswith(f"# {marker}")]
    assert len(lines) == 1, marker
    return lines[0]


def assert_site(error: AnomalyError, marker: str) -> None:
    line = line_of(marker)
    assert error.site is not None
    assert Path(error.site[0]).resolve() == THIS_FILE and error.site[1] == line
    assert f"test_anomaly.py:{line} `" in str(error)


# ---- forward --------------------------------------------------------------------------------------------


def test_nan_from_log_of_a_negative_number_stops_the_forward_pass():
    x = Tensor(np.array([[1.0, -1.0, 2.0, 3.0]] * 3), requires_grad=True)
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        loss = x.log().sum()  # log-of-negative
        loss.backward()
    error = caught.value
    assert isinstance(error, FloatingPointError)
    assert (error.op, error.phase, error.input_shapes, error.input_index) == ("Log", "forward", ((3, 4),), None)
    assert str(error).startswith("Log produced nan (3 of 12 values) in forward at ")
    assert str(error).endswith(
        "`loss = x.log().sum()  # log-of-negative`; input shapes: (3, 4); every input was finite (largest magnitude 3)"
    )
    assert_site(error, "log-of-negative")


def test_inf_from_one_over_zero_names_the_division_and_both_shapes():
    x = Tensor(np.array([2.0, 0.0, 4.0]), requires_grad=True)
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        y = 1 / x  # one-over-zero
        y.sum().backward()
    assert caught.value.op == "Div"
    assert "Div produced inf (1 of 3 values) in forward" in str(caught.value)
    assert "input shapes: (), (3,)" in str(caught.value)
    assert_site(caught.value, "one-over-zero")


def test_minus_inf_and_float32_overflow_are_anomalies_too():
    with detect_anomaly(), pytest.raises(AnomalyError, match=r"Log produced -inf \(1 of 2 values\)"):
        Tensor(np.array([0.0, 1.0])).log()
    with detect_anomaly(), pytest.raises(AnomalyError, match=r"Exp produced inf \(1 of 2 values\)"):
        Tensor(np.array([1.0, 100.0], dtype=np.float32)).exp()  # e^100 > float32's max, 3.4e38


def test_forward_is_checked_under_no_grad_too():
    with detect_anomaly(), no_grad(), pytest.raises(AnomalyError, match="Sqrt produced nan"):
        Tensor(np.array([-4.0])).sqrt()


def test_the_reported_line_is_the_users_not_the_layers():
    model = nn.Sequential(nn.Linear(3, 4, generator=0), nn.ReLU(), nn.Linear(4, 2, generator=1))
    model[2].weight.data[1, 0] = np.inf  # e.g. an optimizer step that overflowed
    x = Tensor(np.ones((5, 3), dtype=np.float32))
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        model(x)  # calls-the-model
    error = caught.value
    assert error.op == "Linear" and error.input_shapes == ((5, 4), (2, 4), (2,))
    assert_site(error, "calls-the-model")
    assert "input 1 held inf (1 of 8 values) already: it came from the data, a parameter" in str(error)


def test_an_overflow_of_finite_inputs_says_so_whatever_it_came_out_as():
    # A matrix product that overflows gives inf or nan (inf - inf) depending on the BLAS kernel's order of
    # additions; the message names every kind it holds and says that the inputs were finite, so it is right both ways.
    class Overflow(Function):
        def forward(self, a):
            return np.array([np.inf, np.nan, -np.inf, 1.0], dtype=a.dtype)

    x = Tensor(np.array([3e38, -1.0], dtype=np.float32))
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        Overflow.apply(x)
    message = str(caught.value)
    assert message.startswith("Overflow produced nan, inf and -inf (3 of 4 values) in forward")
    assert "every input was finite (largest magnitude 3e+38)" in message


def test_a_diverging_training_run_stops_at_the_first_overflow():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 2)), rng.standard_normal((8, 1))
    model = nn.Linear(2, 1, generator=0, dtype=np.float64)
    optimizer = optim.SGD(model.parameters(), lr=1e200)  # absurd on purpose: the second forward overflows
    steps = 0
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        for _ in range(3):
            optimizer.zero_grad()
            loss = nn.MSELoss()(model(Tensor(x)), y)  # the-loss
            loss.backward()
            optimizer.step()
            steps += 1
    assert caught.value.phase == "forward" and "produced inf" in str(caught.value)
    assert_site(caught.value, "the-loss")
    assert steps == 1


# ---- backward -------------------------------------------------------------------------------------------


def test_inf_that_appears_only_in_backward_names_the_op_and_the_line_that_created_it():
    d = Tensor(np.array([[0.0, 4.0], [9.0, 1.0]]), requires_grad=True)
    with detect_anomaly():
        r = d.sqrt()  # sqrt-at-zero
        loss = (r * 3.0).sum()  # finite: sqrt(0) = 0
        with pytest.raises(AnomalyError) as caught:
            loss.backward()  # d sqrt(x)/dx = 1 / (2 sqrt(x)) = inf at 0, and the upstream gradient is 3
    error = caught.value
    assert (error.op, error.phase, error.input_index) == ("Sqrt", "backward", 0)
    assert str(error).startswith("Sqrt produced inf (1 of 4 values) in backward (gradient for input 0) at ")
    assert str(error).endswith("`r = d.sqrt()  # sqrt-at-zero`; input shapes: (2, 2)")
    assert_site(error, "sqrt-at-zero")


class NaNGradient(Function):
    """y = 2a; a deliberately broken backward that returns NaN in its second element."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        return 2 * a

    def backward(self, g: np.ndarray) -> np.ndarray:
        grad = 2 * g
        grad.reshape(-1)[1] = np.nan
        return grad


def test_nan_that_appears_only_in_backward_of_a_user_defined_function():
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    with detect_anomaly():
        y = b * NaNGradient.apply(a)  # custom-op
        with pytest.raises(AnomalyError) as caught:
            y.sum().backward()
    assert (caught.value.op, caught.value.input_index) == ("NaNGradient", 0)
    assert "NaNGradient produced nan (1 of 3 values) in backward (gradient for input 0)" in str(caught.value)
    assert_site(caught.value, "custom-op")
    assert a.grad is None  # it stopped before accumulating anything into the leaf


def test_a_non_finite_gradient_passed_to_backward_is_reported_as_such():
    x = Tensor(np.ones(2), requires_grad=True)
    with detect_anomaly():
        y = x * 2.0
        with pytest.raises(AnomalyError, match=r"the gradient flowing into it already held nan \(1 of 2 values\)"):
            y.backward(np.array([1.0, np.nan]))


def test_a_graph_built_before_detection_was_on_says_its_line_is_unknown():
    d = Tensor(np.zeros(2), requires_grad=True)
    r = d.sqrt()
    with detect_anomaly(), pytest.raises(AnomalyError, match=r"at an unknown line \(the op was created before"):
        r.sum().backward()


# ---- on, off, and harmless -------------------------------------------------------------------------------


def test_finite_computations_give_bit_identical_results_with_detection_on():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((16, 5)).astype(np.float32), rng.integers(0, 3, 16)

    def train_step() -> tuple[float, list[np.ndarray]]:
        model = nn.Sequential(
            nn.Linear(5, 8, generator=0), nn.Tanh(), nn.Dropout(0.2, generator=1), nn.Linear(8, 3, generator=2)
        )
        loss = nn.CrossEntropyLoss()(model(Tensor(x)), labels)
        loss.backward()
        return loss.item(), [p.grad for p in model.parameters()]

    plain_loss, plain_grads = train_step()
    with detect_anomaly():
        checked_loss, checked_grads = train_step()
    assert checked_loss == plain_loss
    for plain, checked in zip(plain_grads, checked_grads, strict=True):
        np.testing.assert_array_equal(plain, checked)


def test_off_by_default_and_restored_after_the_block_even_on_error():
    assert not is_anomaly_enabled()
    nan = Tensor(np.array([-1.0])).log()  # no error: detection is off
    assert np.isnan(nan.item())
    with pytest.raises(AnomalyError), detect_anomaly():
        assert is_anomaly_enabled()
        Tensor(np.array([-1.0])).log()
    assert not is_anomaly_enabled()
    with detect_anomaly():
        with detect_anomaly(False):  # turns it off inside, so a command-line flag can be passed straight in
            assert not is_anomaly_enabled()
            Tensor(np.array([-1.0])).log()
        assert is_anomaly_enabled()
    assert not is_anomaly_enabled()


def test_works_as_a_decorator():
    @detect_anomaly()
    def step(x: Tensor) -> Tensor:
        return (x - 1.0).log()

    assert step(Tensor(np.array([2.0]))).item() == 0.0
    with pytest.raises(AnomalyError, match="Log produced -inf"):
        step(Tensor(np.array([1.0])))
    assert not is_anomaly_enabled()
