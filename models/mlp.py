"""A multilayer perceptron of any depth: as a module, and with backprop derived by hand (the tutorial, generalised).

`mlp()` builds ``Sequential(Linear, ReLU, [Dropout], ..., Linear)`` with tinygrad_np from `mlp_spec`. The functions
below are the tutorial's column-layout derivation (``X`` is features x m) for L Linear layers::

    A0 = X;  Z_l = W_l A_{l-1} + b_l;  A_l = ReLU(Z_l) * M_l / (1 - p)   (l < L);  A_L = softmax(Z_L)
    loss = mean_i CE(A_L[:, i], Y_i) + weight_decay / 2 * sum_l ||W_l||^2
    dZ_L = A_L - Y_onehot
    dW_l = dZ_l A_{l-1}^T / m + weight_decay * W_l;   db_l = sum_cols(dZ_l) / m
    dZ_{l-1} = (W_l^T dZ_l) * M_{l-1} / (1 - p) * (Z_{l-1} > 0)

Weight decay is an L2 penalty on the weights only: biases are not decayed (decaying a bias pulls a unit's
threshold to 0 and does nothing against overfitting). With tinygrad_np the same gradient comes from adding
``weight_decay / 2 * (W ** 2).sum()`` per weight to the loss, or from ``optim.SGD(weights, weight_decay=wd)``
and a second ``SGD(biases)``.

Dropout is inverted dropout (PyTorch's ``nn.Dropout``): a kept unit is scaled by 1 / (1 - p) during training,
so evaluation needs no rescaling. The masks M_l (1 = kept) are *given*, never drawn inside, so the
hand-derived gradients are deterministic and comparable with autograd on the same masks; `draw_dropout_masks`
draws them from a seed. Without masks there is no dropout (evaluation mode).

Names follow the tutorial: parameters ``W1, b1, ..., WL, bL`` with ``b_l`` a column (n_l, 1); activations
``Z1, A1, ..., ZL, AL``; gradients ``dW1, db1, ...``. `params_from_model` / `load_params` map them to the
module's state dict: ``W_l == state[f"{k}.weight"]``, ``b_l == state[f"{k}.bias"][:, None]``, where k is the
index of the l-th Linear in the Sequential (0, 2, 4, ... without dropout; 0, 3, 6, ... with it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare.layout import load_model_params, model_params, parameter_names
from tinygrad_np.creation import as_generator
from tinygrad_np.models.two_layer import one_hot, relu, relu_deriv, softmax
from tinygrad_np.nn.init import Init
from tinygrad_np.spec import mlp_spec, model_from_spec


def mlp(
    input_size: int = 784,
    hidden_sizes: Sequence[int] = (128,),
    num_classes: int = 10,
    dropout: float = 0.0,
    generator: int | np.random.Generator = 0,
    dtype: type | np.dtype = np.float32,
    init: Init = "he",
) -> nn.Sequential:
    """Linear(input_size, h1) -> ReLU [-> Dropout(p)] -> ... -> Linear(h_last, num_classes); no softmax.

    The Dropout layers draw their masks from the same seed or Generator the weights came from.
    """
    spec = mlp_spec(input_size, list(hidden_sizes), num_classes, dropout=dropout, init=init,
                    dtype=np.dtype(dtype).name)
    return model_from_spec(spec, seed=generator)


# ----------------------------------------------------------------------------------------------------------
# The module <-> hand-derived mapping.
# ----------------------------------------------------------------------------------------------------------


def tutorial_names(model: nn.Module) -> dict[str, str]:
    """{"W1": "0.weight", "b1": "0.bias", "W2": "2.weight", ...}: tutorial name -> state-dict name."""
    return parameter_names(model)


def params_from_model(model: nn.Module) -> dict[str, np.ndarray]:
    """W_l = weight (out, in), b_l = bias[:, None] (out, 1), copied, dtype kept."""
    return model_params(model, "column")


def load_params(model: nn.Module, params: Mapping[str, np.ndarray]) -> nn.Module:
    """Copy W_l, b_l (tutorial layout) into the module's Linear layers, cast to each parameter's dtype."""
    return load_model_params(model, params, "column")


# ----------------------------------------------------------------------------------------------------------
# Hand-derived forward and backward, column layout.
# ----------------------------------------------------------------------------------------------------------


def num_layers(params: Mapping[str, np.ndarray]) -> int:
    """L, the number of Linear layers, from the names W1..WL (which must be consecutive)."""
    count = sum(1 for name in params if name.startswith("W"))
    if count == 0 or any(f"W{layer}" not in params or f"b{layer}" not in params for layer in range(1, count + 1)):
        raise ValueError(f"params must hold W1, b1, ..., WL, bL with no gaps; got {sorted(params)}")
    return count


def init_params(
    layer_sizes: Sequence[int], generator: int | np.random.Generator = 0
) -> dict[str, np.ndarray]:
    """He init W_l ~ N(0, 2 / n_{l-1}), b_l = 0, for layer_sizes = [input, hidden..., classes]; float64."""
    rng = as_generator(generator)
    params = {}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(layer_sizes), start=1):
        params[f"W{layer}"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
        params[f"b{layer}"] = np.zeros((fan_out, 1))
    return params


def draw_dropout_masks(
    hidden_sizes: Sequence[int], batch_size: int, p: float, generator: int | np.random.Generator = 0
) -> list[np.ndarray]:
    """One keep-mask per hidden layer, (n_l, m) of 0/1 in float64, each unit kept with probability 1 - p."""
    rng = as_generator(generator)
    return [(rng.random((size, batch_size)) >= p).astype(np.float64) for size in hidden_sizes]


def _check_masks(params: Mapping[str, np.ndarray], X: np.ndarray, masks: Sequence[np.ndarray] | None, p: float):
    if masks is None:
        return
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must lie in [0, 1) when masks are given, got {p}")
    hidden = num_layers(params) - 1
    if len(masks) != hidden:
        raise ValueError(f"need one dropout mask per hidden layer ({hidden}), got {len(masks)}")
    for layer, mask in enumerate(masks, start=1):
        wanted = (params[f"W{layer}"].shape[0], X.shape[1])
        if np.shape(mask) != wanted:
            raise ValueError(f"dropout mask {layer} must be (units, m) = {wanted} (column layout), "
                             f"got {np.shape(mask)}")


def forward(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    dropout_masks: Sequence[np.ndarray] | None = None,
    dropout: float = 0.0,
) -> dict[str, np.ndarray]:
    """Z_l = W_l A_{l-1} + b_l; A_l = ReLU(Z_l) * M_l / (1 - p) for l < L; A_L = softmax(Z_L); all cached."""
    L = num_layers(params)
    if X.ndim != 2 or X.shape[0] != params["W1"].shape[1]:
        raise ValueError(f"X must be (features, m) = ({params['W1'].shape[1]}, m), one column per example; "
                         f"got shape {X.shape} (row layout? pass X = x.T)")
    _check_masks(params, X, dropout_masks, dropout)
    cache: dict[str, np.ndarray] = {}
    A = X
    for layer in range(1, L + 1):
        Z = params[f"W{layer}"].dot(A) + params[f"b{layer}"]
        if layer < L:
            A = relu(Z)
            if dropout_masks is not None:
                A = A * dropout_masks[layer - 1] / (1.0 - dropout)
        else:
            A = softmax(Z)
        cache[f"Z{layer}"], cache[f"A{layer}"] = Z, A
    return cache


def backward(
    params: Mapping[str, np.ndarray],
    cache: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    weight_decay: float = 0.0,
    dropout_masks: Sequence[np.ndarray] | None = None,
    dropout: float = 0.0,
) -> dict[str, np.ndarray]:
    """dZ_L = A_L - Y; dW_l = dZ_l A_{l-1}^T / m + wd W_l; db_l = sum_cols(dZ_l) / m; dZ_{l-1} = W_l^T dZ_l ..."""
    L = num_layers(params)
    m = X.shape[1]
    grads: dict[str, np.ndarray] = {}
    dZ = cache[f"A{L}"] - one_hot(Y, num_classes=cache[f"A{L}"].shape[0], dtype=cache[f"A{L}"].dtype)
    for layer in range(L, 0, -1):
        A_prev = X if layer == 1 else cache[f"A{layer - 1}"]
        W = params[f"W{layer}"]
        grads[f"dW{layer}"] = dZ.dot(A_prev.T) / m
        if weight_decay:
            grads[f"dW{layer}"] += weight_decay * W
        grads[f"db{layer}"] = np.sum(dZ, axis=1, keepdims=True) / m
        if layer > 1:
            dA = W.T.dot(dZ)
            if dropout_masks is not None:
                dA = dA * dropout_masks[layer - 2] / (1.0 - dropout)
            dZ = dA * relu_deriv(cache[f"Z{layer - 1}"])
    return grads


def loss(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    weight_decay: float = 0.0,
    dropout_masks: Sequence[np.ndarray] | None = None,
    dropout: float = 0.0,
) -> float:
    """mean_i -log A_L[Y_i, i] + weight_decay / 2 * sum_l ||W_l||^2 (the loss `backward` differentiates)."""
    A = forward(params, X, dropout_masks, dropout)[f"A{num_layers(params)}"]
    penalty = sum(float(np.sum(W**2)) for name, W in params.items() if name.startswith("W"))
    return float(-np.mean(np.log(A[Y, np.arange(Y.size)]))) + weight_decay / 2 * penalty


def update_params(
    params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], alpha: float
) -> dict[str, np.ndarray]:
    """W -= alpha dW; b -= alpha db (new arrays)."""
    return {name: value - alpha * grads[f"d{name}"] for name, value in params.items()}


def manual_forward(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    dropout_masks: Sequence[np.ndarray] | None = None,
    dropout: float = 0.0,
) -> dict[str, np.ndarray]:
    """`forward` in the compare package's contract: {"W1", "b1", ...}, X -> {"Z1", "A1", ..., "ZL", "AL"}."""
    return forward(params, X, dropout_masks, dropout)


def manual_backward(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    weight_decay: float = 0.0,
    dropout_masks: Sequence[np.ndarray] | None = None,
    dropout: float = 0.0,
) -> dict[str, np.ndarray]:
    """`forward` + `backward` in the compare package's contract: -> {"dW1", "db1", ..., "dWL", "dbL"}."""
    cache = forward(params, X, dropout_masks, dropout)
    return backward(params, cache, X, Y, weight_decay, dropout_masks, dropout)
