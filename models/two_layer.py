"""The MNIST-from-scratch tutorial's 784-10-10 network: as a module, and as the tutorial wrote it by hand.

Two faces of one network:

* `two_layer()` builds it with tinygrad_np from its declarative spec, ``mlp_spec(784, [10], 10)``:
  ``Sequential(Linear(784, 10), ReLU(), Linear(10, 10))``, trained with softmax cross-entropy (mean over the
  batch). Row layout: ``x`` is (m, 784), ``y = x W^T + b``.
* `init_params`, `forward_prop`, `backward_prop`, `update_params` are the tutorial's NumPy code in its column
  layout (``X`` is 784 x m, one column per image), kept as the reference the autograd engine is checked
  against::

      Z1 = W1 X + b1;  A1 = ReLU(Z1);  Z2 = W2 A1 + b2;  A2 = softmax(Z2)
      dZ2 = A2 - Y_onehot;  dW2 = dZ2 A1^T / m;  db2 = sum_cols(dZ2) / m
      dZ1 = (W2^T dZ2) * (Z1 > 0);  dW1 = dZ1 X^T / m;  db1 = sum_cols(dZ1) / m
      W -= alpha dW;  b -= alpha db

Where this differs from the code in the original video/notebook, and why:

* ``m`` is ``X.shape[1]`` (the original read a global ``m``, the training-set size, so any other batch size
  gave gradients scaled by the wrong 1/m).
* ``db = sum(dZ, axis=1, keepdims=True) / m`` (the original ``np.sum(dZ2)`` summed over *all* elements and
  returned one scalar; broadcasting then moved every bias by the same amount).
* `one_hot` takes ``num_classes=10`` (the original used ``Y.max() + 1``, a wrong shape for a batch without a 9).
* `softmax` shifts each column by its maximum; the original ``np.exp(Z) / sum(np.exp(Z))``, kept as
  `softmax_unshifted`, overflows to inf/inf = NaN once a logit passes ~709 in float64 (~88.7 in float32).

The mapping between the two faces (`tutorial_params_from_model`, `load_tutorial_params`)::

    W1 == state["0.weight"]         (10, 784)    b1 == state["0.bias"][:, None]   (10, 1)
    W2 == state["2.weight"]         (10, 10)     b2 == state["2.bias"][:, None]   (10, 1)
    X  == x.T                       (784, m)     Z1 == (x @ W1.T + b1.T).T == layer 0's output, transposed
    dW1 == model[0].weight.grad     db1 == model[0].bias.grad[:, None]   (both with the mean loss)

The 1/m sits in the same place on both sides: the tutorial's ``dZ2 = A2 - Y`` is the gradient of the *summed*
loss with respect to Z2 and it divides by m in dW and db; ``cross_entropy`` takes the mean, so its gradient
with respect to the logits already holds the 1/m. The weight gradients are therefore equal, not off by m.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare.layout import load_model_params, model_params
from tinygrad_np.creation import as_generator
from tinygrad_np.nn.init import Init
from tinygrad_np.spec import mlp_spec, model_from_spec

INPUT_SIZE = 784
HIDDEN_SIZE = 10
NUM_CLASSES = 10


def two_layer(
    generator: int | np.random.Generator = 0,
    dtype: type | np.dtype = np.float32,
    init: Init = "he",
) -> nn.Sequential:
    """The tutorial's network as a module: Linear(784, 10) -> ReLU -> Linear(10, 10); train with cross_entropy.

    ``init="tutorial"`` draws like `init_params` (U(-0.5, 0.5), W1, b1, W2, b2 in that order), so
    ``two_layer(seed, np.float64, "tutorial")`` holds exactly ``init_params(seed)``.
    """
    spec = mlp_spec(INPUT_SIZE, [HIDDEN_SIZE], NUM_CLASSES, init=init, dtype=np.dtype(dtype).name)
    return model_from_spec(spec, seed=generator)


# ----------------------------------------------------------------------------------------------------------
# The tutorial's reference code, column layout (X is features x m).
# ----------------------------------------------------------------------------------------------------------


def init_params(generator: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tutorial's init: every weight and bias uniform in [-0.5, 0.5); W1 (10, 784), b1 (10, 1), W2, b2."""
    rng = as_generator(generator)
    W1 = rng.random((HIDDEN_SIZE, INPUT_SIZE)) - 0.5
    b1 = rng.random((HIDDEN_SIZE, 1)) - 0.5
    W2 = rng.random((NUM_CLASSES, HIDDEN_SIZE)) - 0.5
    b2 = rng.random((NUM_CLASSES, 1)) - 0.5
    return W1, b1, W2, b2


def relu(Z: np.ndarray) -> np.ndarray:
    """A = max(Z, 0)."""
    return np.maximum(Z, 0)


def relu_deriv(Z: np.ndarray) -> np.ndarray:
    """dA/dZ = 1 where Z > 0, else 0 (0 at the kink, as PyTorch)."""
    return Z > 0


def softmax(Z: np.ndarray) -> np.ndarray:
    """A = exp(Z - max_col Z) / sum_col exp(Z - max_col Z); the shift changes nothing but keeps exp finite."""
    shifted = Z - Z.max(axis=0, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=0, keepdims=True)


def softmax_unshifted(Z: np.ndarray) -> np.ndarray:
    """The tutorial's original A = exp(Z) / sum(exp(Z)); overflows (inf / inf = NaN) for logits above ~709."""
    # Python's built-in sum over a 2-D array adds its rows, i.e. sums each column, exactly as the tutorial did.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(Z) / sum(np.exp(Z))


def _check_column_batch(X: np.ndarray, W1: np.ndarray) -> None:
    """Name the layout mistake (row-major x passed as X) instead of letting matmul raise about dimensions."""
    if X.ndim != 2 or X.shape[0] != W1.shape[1]:
        hint = " (row layout (m, features)? pass X = x.T)" if X.ndim == 2 and X.shape[1] == W1.shape[1] else ""
        raise ValueError(
            f"X must be (features, m) = ({W1.shape[1]}, m), one column per example; got shape {X.shape}{hint}"
        )


def forward_prop(
    W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Z1 = W1 X + b1; A1 = ReLU(Z1); Z2 = W2 A1 + b2; A2 = softmax(Z2)."""
    _check_column_batch(X, W1)
    Z1 = W1.dot(X) + b1
    A1 = relu(Z1)
    Z2 = W2.dot(A1) + b2
    A2 = softmax(Z2)
    return Z1, A1, Z2, A2


def one_hot(Y: np.ndarray, num_classes: int = NUM_CLASSES, dtype: type | np.dtype = np.float64) -> np.ndarray:
    """Y_onehot[k, i] = 1 if Y[i] == k: shape (num_classes, m), one column per example."""
    Y = np.asarray(Y)
    if Y.ndim != 1 or not np.issubdtype(Y.dtype, np.integer):
        raise ValueError(f"Y must be a 1-D array of integer class labels, got dtype {Y.dtype} shape {Y.shape}")
    if Y.size and (Y.min() < 0 or Y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got min {Y.min()}, max {Y.max()}")
    one_hot_Y = np.zeros((Y.size, num_classes), dtype=dtype)
    one_hot_Y[np.arange(Y.size), Y] = 1
    return one_hot_Y.T


def backward_prop(
    Z1: np.ndarray,
    A1: np.ndarray,
    Z2: np.ndarray,
    A2: np.ndarray,
    W1: np.ndarray,
    W2: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dZ2 = A2 - Y; dW2 = dZ2 A1^T/m; db2 = sum_cols dZ2/m; dZ1 = W2^T dZ2 * (Z1>0); dW1 = dZ1 X^T/m; db1."""
    m = X.shape[1]
    one_hot_Y = one_hot(Y, num_classes=A2.shape[0], dtype=A2.dtype)  # float64 here would promote every product
    dZ2 = A2 - one_hot_Y
    dW2 = 1 / m * dZ2.dot(A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = W2.T.dot(dZ2) * relu_deriv(Z1)
    dW1 = 1 / m * dZ1.dot(X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    return dW1, db1, dW2, db2


def update_params(
    W1: np.ndarray,
    b1: np.ndarray,
    W2: np.ndarray,
    b2: np.ndarray,
    dW1: np.ndarray,
    db1: np.ndarray,
    dW2: np.ndarray,
    db2: np.ndarray,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W -= alpha dW; b -= alpha db (new arrays: the caller's are left untouched)."""
    W1 = W1 - alpha * dW1
    b1 = b1 - alpha * db1
    W2 = W2 - alpha * dW2
    b2 = b2 - alpha * db2
    return W1, b1, W2, b2


def get_predictions(A2: np.ndarray) -> np.ndarray:
    """The most probable class of each column."""
    return np.argmax(A2, axis=0)


def get_accuracy(predictions: np.ndarray, Y: np.ndarray) -> float:
    """The fraction of predictions equal to the labels."""
    return float(np.mean(predictions == Y))


def cross_entropy_loss(A2: np.ndarray, Y: np.ndarray) -> float:
    """L = -mean_i log A2[Y_i, i] (the loss whose gradient backward_prop computes)."""
    return float(-np.mean(np.log(A2[Y, np.arange(Y.size)])))


def gradient_descent(
    X: np.ndarray,
    Y: np.ndarray,
    alpha: float,
    iterations: int,
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    generator: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tutorial's training loop: full-batch gradient descent from `params` (or `init_params(generator)`)."""
    W1, b1, W2, b2 = init_params(generator) if params is None else params
    for _ in range(iterations):
        Z1, A1, Z2, A2 = forward_prop(W1, b1, W2, b2, X)
        dW1, db1, dW2, db2 = backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
        W1, b1, W2, b2 = update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha)
    return W1, b1, W2, b2


# ----------------------------------------------------------------------------------------------------------
# The compare package's contract (tinygrad_np.compare, layout="column"): dicts keyed by tutorial names.
# ----------------------------------------------------------------------------------------------------------


def manual_forward(params: Mapping[str, np.ndarray], X: np.ndarray) -> dict[str, np.ndarray]:
    """The tutorial's forward_prop with dict in/out: {"W1", "b1", "W2", "b2"} -> {"Z1", "A1", "Z2", "A2"}."""
    Z1, A1, Z2, A2 = forward_prop(params["W1"], params["b1"], params["W2"], params["b2"], X)
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def manual_backward(params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """The tutorial's forward_prop + backward_prop with dict in/out: -> {"dW1", "db1", "dW2", "db2"}."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    Z1, A1, Z2, A2 = forward_prop(W1, b1, W2, b2, X)
    dW1, db1, dW2, db2 = backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


# ----------------------------------------------------------------------------------------------------------
# The mapping between the module's state dict (row layout) and the tutorial's arrays (column layout).
# ----------------------------------------------------------------------------------------------------------


def _check_is_two_layer(model: nn.Module) -> None:
    expected = {"0.weight": (HIDDEN_SIZE, INPUT_SIZE), "0.bias": (HIDDEN_SIZE,),
                "2.weight": (NUM_CLASSES, HIDDEN_SIZE), "2.bias": (NUM_CLASSES,)}
    got = {name: tuple(np.shape(value)) for name, value in model.state_dict().items()}
    if got != expected:
        raise ValueError(f"expected the tutorial's two_layer() network with parameters {expected}, got {got}")


def tutorial_params_from_model(model: nn.Module) -> dict[str, np.ndarray]:
    """W1 = 0.weight, b1 = 0.bias[:, None], W2 = 2.weight, b2 = 2.bias[:, None] (copies, dtype kept)."""
    _check_is_two_layer(model)
    return model_params(model, "column")


def load_tutorial_params(
    model: nn.Module, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray
) -> nn.Module:
    """Copy the tutorial's arrays into the module: 0.weight = W1, 0.bias = b1[:, 0], ... (in the model's dtype)."""
    _check_is_two_layer(model)
    return load_model_params(model, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, "column")
