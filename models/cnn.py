"""A LeNet-style convolutional network for MNIST: as a module, and with its backprop derived by hand in NumPy.

`cnn()` builds it with tinygrad_np from its declarative spec, `cnn_spec()`::

    Conv2d(1, 16, 5) -> ReLU -> MaxPool2d(2) -> Conv2d(16, 32, 5) -> ReLU -> MaxPool2d(2)
    -> Flatten -> Linear(512, 128) -> ReLU -> Linear(128, 10)

trained with softmax cross-entropy (mean over the batch). Images come in as (m, 1, 28, 28): 28 -> 24 (conv 5x5)
-> 12 (pool) -> 8 (conv) -> 4 (pool), so 32 x 4 x 4 = 512 features reach the first Linear.

The functions below are the same network written out the way the tutorial writes its two-layer net, every
derivative by hand, in PyTorch's shapes (the images' batch axis first: the tutorial's column layout has no
natural form for images)::

    Z1 = conv(X, W1) + b1;  A1 = ReLU(Z1);  P1 = maxpool(A1)
    Z2 = conv(P1, W2) + b2; A2 = ReLU(Z2);  P2 = maxpool(A2);  F = flatten(P2)
    Z3 = F W3^T + b3;       A3 = ReLU(Z3);  Z4 = A3 W4^T + b4;  A4 = softmax(Z4)

    dZ4 = (A4 - Y_onehot) / m;  dW4 = dZ4^T A3;  db4 = sum_rows dZ4
    dZ3 = (dZ4 W4) * (Z3 > 0);  dW3 = dZ3^T F;   db3 = sum_rows dZ3;  dP2 = unflatten(dZ3 W3)
    dZ2 = route(dP2, A2) * (Z2 > 0);  dW2, db2, dP1 = conv_backward(dZ2, P1, W2)
    dZ1 = route(dP1, A1) * (Z1 > 0);  dW1, db1, _ = conv_backward(dZ1, X, W1)

The convolution (stride 1, no padding, cross-correlation as in PyTorch) is a matrix product over im2col: each
output pixel's window of the input becomes one row of `cols` (m OH OW rows, C KH KW columns), so
``Z = cols W^T + b`` with W as (O, C KH KW). Its backward is the matrix product's:
``dW = dZ^T cols``, ``db = sum dZ`` and ``dcols = dZ W``, and col2im adds each row of dcols back onto the window
it was read from (windows overlap, so input pixels collect from up to KH KW outputs). Max-pooling (2x2, stride
2: windows don't overlap) routes each output's gradient to the one input that was its maximum: the first in
row-major order on a tie, as PyTorch does (a window of ReLU zeros is a tie).

The 1/m sits in dZ4, as ``cross_entropy``'s mean puts it there: every gradient equals autograd's.
Parameters by name, mapped to the module's state dict (`tutorial_names`): W1 = "0.weight" (16, 1, 5, 5),
b1 = "0.bias" (16,), W2 = "3.weight" (32, 16, 5, 5), b2 = "3.bias", W3 = "7.weight" (128, 512), b3 = "7.bias",
W4 = "9.weight" (10, 128), b4 = "9.bias".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinygrad_np import nn
from tinygrad_np.models.two_layer import one_hot, relu, relu_deriv
from tinygrad_np.spec import cnn_spec, model_from_spec

# The layers' positions in the Sequential, and their names in the hand-derived code.
PARAMETER_LAYERS = {"1": 0, "2": 3, "3": 7, "4": 9}
# Each layer's output by the hand-derived code's name, for the forward table: Z1 = layer 0's output, ...
ACTIVATION_LAYERS = {"Z1": 0, "A1": 1, "P1": 2, "Z2": 3, "A2": 4, "P2": 5, "F": 6, "Z3": 7, "A3": 8, "Z4": 9}


def cnn(
    channels: Sequence[int] = (16, 32),
    hidden_size: int = 128,
    generator: int | np.random.Generator = 0,
    dtype: type | np.dtype = np.float32,
) -> nn.Sequential:
    """The network above as a module (PyTorch's default init), weights drawn from `generator`."""
    return model_from_spec(cnn_spec(channels, hidden_size, dtype=np.dtype(dtype).name), seed=generator)


def tutorial_names(model: nn.Module) -> dict[str, str]:
    """{"W1": "0.weight", "b1": "0.bias", ..., "b4": "9.bias"}: the hand-derived name -> state-dict name."""
    names = {}
    for number, index in PARAMETER_LAYERS.items():
        names[f"W{number}"], names[f"b{number}"] = f"{index}.weight", f"{index}.bias"
    missing = sorted(set(names.values()) - set(model.state_dict()))
    if missing:
        raise ValueError(f"expected the cnn() network (parameters {sorted(names.values())}); {missing} are missing")
    return names


def params_from_model(model: nn.Module) -> dict[str, np.ndarray]:
    """W1, b1, ..., W4, b4: copies of the module's parameters, in their own shapes and dtype."""
    state = model.state_dict()
    return {name: state[state_name].copy() for name, state_name in tutorial_names(model).items()}


# ---- the layers, by hand ------------------------------------------------------------------------------------


def im2col(X: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """(m, C, H, W) -> (m OH OW, C KH KW): row (n, i, j) holds the window X[n, :, i:i+KH, j:j+KW], flattened."""
    m, channels = X.shape[:2]
    windows = sliding_window_view(X, kernel, axis=(2, 3))  # (m, C, OH, OW, KH, KW), a view
    out_h, out_w = windows.shape[2:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(m * out_h * out_w, channels * kernel[0] * kernel[1])


def col2im(dcols: np.ndarray, shape: tuple[int, ...], kernel: tuple[int, int]) -> np.ndarray:
    """The adjoint of im2col: each row of dcols added back onto the window it came from (overlaps summed)."""
    m, channels, height, width = shape
    kh, kw = kernel
    out_h, out_w = height - kh + 1, width - kw + 1
    pieces = dcols.reshape(m, out_h, out_w, channels, kh, kw)
    dX = np.zeros(shape, dtype=dcols.dtype)
    for i in range(kh):  # one kernel offset at a time: all windows' (i, j) elements at once
        for j in range(kw):
            dX[:, :, i : i + out_h, j : j + out_w] += pieces[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dX


def conv_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Z[n, o] = sum_c W[o, c] (x) X[n, c] + b[o] (cross-correlation): Z = im2col(X) W^T + b, back to (m, O, OH, OW)."""
    m, (out_channels, _, kh, kw) = X.shape[0], W.shape
    out_h, out_w = X.shape[2] - kh + 1, X.shape[3] - kw + 1
    Z = im2col(X, (kh, kw)) @ W.reshape(out_channels, -1).T + b
    return Z.reshape(m, out_h, out_w, out_channels).transpose(0, 3, 1, 2)


def conv_backward(dZ: np.ndarray, X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dW = dZ^T im2col(X), db = sum dZ over batch and pixels, dX = col2im(dZ W)."""
    out_channels, _, kh, kw = W.shape
    dZ_rows = dZ.transpose(0, 2, 3, 1).reshape(-1, out_channels)  # (m OH OW, O): one row per output pixel
    dW = (dZ_rows.T @ im2col(X, (kh, kw))).reshape(W.shape)
    db = dZ_rows.sum(axis=0)
    dX = col2im(dZ_rows @ W.reshape(out_channels, -1), X.shape, (kh, kw))
    return dW, db, dX


def _windows(A: np.ndarray) -> np.ndarray:
    """(m, C, H, W) -> (m, C, H/2, W/2, 4): each 2x2 window's elements in row-major order."""
    m, channels, height, width = A.shape
    return A.reshape(m, channels, height // 2, 2, width // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        m, channels, height // 2, width // 2, 4)


def maxpool_forward(A: np.ndarray) -> np.ndarray:
    """P = the maximum of each 2x2 window (stride 2; H and W even)."""
    return _windows(A).max(axis=-1)


def maxpool_backward(dP: np.ndarray, A: np.ndarray) -> np.ndarray:
    """dA = dP routed to each window's maximum (argmax: the first one on a tie), 0 elsewhere."""
    m, channels, height, width = A.shape
    winners = _windows(A).argmax(axis=-1)  # (m, C, H/2, W/2)
    routed = (np.arange(4) == winners[..., None]) * dP[..., None]  # (m, C, H/2, W/2, 4)
    return routed.reshape(m, channels, height // 2, width // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(A.shape)


def softmax_rows(Z: np.ndarray) -> np.ndarray:
    """A = exp(Z - max_row Z) / sum_row exp(Z - max_row Z)."""
    exp = np.exp(Z - Z.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


# ---- the network, by hand -----------------------------------------------------------------------------------


def forward_prop(params: Mapping[str, np.ndarray], X: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output by name: Z1, A1, P1, Z2, A2, P2, F, Z3, A3, Z4 and A4 = softmax(Z4)."""
    if X.ndim != 4 or X.shape[1] != params["W1"].shape[1]:
        raise ValueError(f"X must be images (m, {params['W1'].shape[1]}, H, W), got shape {X.shape}")
    out: dict[str, np.ndarray] = {}
    out["Z1"] = conv_forward(X, params["W1"], params["b1"])
    out["A1"] = relu(out["Z1"])
    out["P1"] = maxpool_forward(out["A1"])
    out["Z2"] = conv_forward(out["P1"], params["W2"], params["b2"])
    out["A2"] = relu(out["Z2"])
    out["P2"] = maxpool_forward(out["A2"])
    out["F"] = out["P2"].reshape(len(X), -1)
    out["Z3"] = out["F"] @ params["W3"].T + params["b3"]
    out["A3"] = relu(out["Z3"])
    out["Z4"] = out["A3"] @ params["W4"].T + params["b4"]
    out["A4"] = softmax_rows(out["Z4"])
    return out


def backward_prop(params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """dW1, db1, ..., dW4, db4 of the mean cross-entropy, layer by layer from the output back (see the module)."""
    out = forward_prop(params, X)
    m = len(X)
    dZ4 = (out["A4"] - one_hot(Y, out["A4"].shape[1], out["A4"].dtype).T) / m
    grads = {"dW4": dZ4.T @ out["A3"], "db4": dZ4.sum(axis=0)}
    dZ3 = (dZ4 @ params["W4"]) * relu_deriv(out["Z3"])
    grads["dW3"], grads["db3"] = dZ3.T @ out["F"], dZ3.sum(axis=0)
    dP2 = (dZ3 @ params["W3"]).reshape(out["P2"].shape)
    dZ2 = maxpool_backward(dP2, out["A2"]) * relu_deriv(out["Z2"])
    grads["dW2"], grads["db2"], dP1 = conv_backward(dZ2, out["P1"], params["W2"])
    dZ1 = maxpool_backward(dP1, out["A1"]) * relu_deriv(out["Z1"])
    grads["dW1"], grads["db1"], _ = conv_backward(dZ1, X, params["W1"])
    return {name: grads[name] for name in sorted(grads, key=lambda name: (name[-1], name[1]))}  # dW1, db1, dW2, ...


def cross_entropy_loss(A4: np.ndarray, Y: np.ndarray) -> float:
    """L = -mean_i log A4[i, Y_i]."""
    return float(-np.mean(np.log(A4[np.arange(len(Y)), Y])))
