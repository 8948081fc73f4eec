"""The hand-written NumPy contenders: the tutorial's backprop from models/, and a textbook Adam.

Forward and backward passes are `models.two_layer`'s and `models.mlp`'s, unchanged; they build the one-hot
matrix in the activations' dtype, so a float32 run stays float32 end to end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinygrad_np.models import mlp as mlp_reference
from tinygrad_np.models import two_layer


def tutorial_step(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], X: np.ndarray, Y: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One iteration of the tutorial's gradient_descent loop: forward_prop, backward_prop, update_params."""
    W1, b1, W2, b2 = params
    Z1, A1, Z2, A2 = two_layer.forward_prop(W1, b1, W2, b2, X)
    dW1, db1, dW2, db2 = two_layer.backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
    return two_layer.update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha)


# ---- an MLP of any depth with Adam, mini-batches ------------------------------------------------------


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
            grad, m, v = grads[f"d{name}"], self.m[name], self.v[name]
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad * grad
            param -= step_size * m / (np.sqrt(v / correction2) + self.eps)


def mlp_step(params: dict[str, np.ndarray], adam: NumpyAdam, X: np.ndarray, Y: np.ndarray) -> None:
    """forward (models.mlp), backward, Adam: one mini-batch, column layout (X is features x m), in place."""
    cache = mlp_reference.forward(params, X)
    adam.step(params, mlp_reference.backward(params, cache, X, Y))
