"""The hand-written NumPy contenders: the tutorial's backprop (models/) in float32, and a textbook Adam.

The forward passes are the ones in `models.two_layer` and `models.mlp`. The backward passes are the same
formulas, with one change: the one-hot matrix is built in the activations' dtype. `models.*.one_hot` builds
float64 (the tutorial's default), and `A2 - one_hot` would then promote every gradient, and the products with
X, to float64: that measures a dtype accident (twice the time on the big matmul), not hand-written backprop.
`tests/test_benchmarks.py` checks that these give the same gradients as the models' functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models import mlp as mlp_reference
from models import two_layer


def one_hot(Y: np.ndarray, num_classes: int, dtype: np.dtype) -> np.ndarray:
    """Y_onehot[k, i] = 1 if Y[i] == k, shape (num_classes, m), in `dtype`."""
    encoded = np.zeros((num_classes, Y.size), dtype=dtype)
    encoded[Y, np.arange(Y.size)] = 1
    return encoded


# ---- the tutorial's 784-10-10 network, full-batch gradient descent ---------------------------------------


def tutorial_backward(
    Z1: np.ndarray, A1: np.ndarray, A2: np.ndarray, W2: np.ndarray, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dZ2 = A2 - Y; dW2 = dZ2 A1^T/m; db2 = sum_cols dZ2/m; dZ1 = W2^T dZ2 * (Z1>0); dW1 = dZ1 X^T/m; db1."""
    m = X.shape[1]
    dZ2 = A2 - one_hot(Y, A2.shape[0], A2.dtype)
    dW2 = 1 / m * dZ2.dot(A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = W2.T.dot(dZ2) * two_layer.relu_deriv(Z1)
    dW1 = 1 / m * dZ1.dot(X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    return dW1, db1, dW2, db2


def tutorial_step(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], X: np.ndarray, Y: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One iteration of the tutorial's gradient_descent loop: forward_prop, backward_prop, update_params."""
    W1, b1, W2, b2 = params
    Z1, A1, _, A2 = two_layer.forward_prop(W1, b1, W2, b2, X)
    dW1, db1, dW2, db2 = tutorial_backward(Z1, A1, A2, W2, X, Y)
    return two_layer.update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha)


# ---- an MLP of any depth with Adam, mini-batches ------------------------------------------------------


def mlp_backward(
    params: dict[str, np.ndarray], cache: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray
) -> dict[str, np.ndarray]:
    """dZ_L = A_L - Y; dW_l = dZ_l A_{l-1}^T / m; db_l = sum_cols(dZ_l) / m; dZ_{l-1} = W_l^T dZ_l * (Z_{l-1} > 0)."""
    L = len(params) // 2
    m = X.shape[1]
    grads = {}
    dZ = cache[f"A{L}"] - one_hot(Y, cache[f"A{L}"].shape[0], X.dtype)
    for layer in range(L, 0, -1):
        A_prev = X if layer == 1 else cache[f"A{layer - 1}"]
        grads[f"W{layer}"] = 1 / m * dZ.dot(A_prev.T)
        grads[f"b{layer}"] = 1 / m * np.sum(dZ, axis=1, keepdims=True)
        if layer > 1:
            dZ = params[f"W{layer}"].T.dot(dZ) * two_layer.relu_deriv(cache[f"Z{layer - 1}"])
    return grads


class NumpyAdam:
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)"""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = {name: np.zeros_like(value) for name, value in params.items()}
        self.v = {name: np.zeros_like(value) for name, value in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        step_size = self.lr / (1 - self.beta1**self.t)
        correction2 = 1 - self.beta2**self.t
        for name, param in params.items():
            grad, m, v = grads[name], self.m[name], self.v[name]
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad * grad
            param -= step_size * m / (np.sqrt(v / correction2) + self.eps)


def mlp_step(params: dict[str, np.ndarray], adam: NumpyAdam, X: np.ndarray, Y: np.ndarray) -> None:
    """forward (models.mlp), backward, Adam: one mini-batch, column layout (X is features x m), in place."""
    cache = mlp_reference.forward(params, X)
    adam.step(params, mlp_backward(params, cache, X, Y))
