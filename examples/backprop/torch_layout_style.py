"""A deeper net in PyTorch's layout, written with NumPy functions by someone checking their understanding.

x is (N, features); each weight is (out_features, in_features) and each bias (out_features,), as in
torch.nn.Linear, so a layer is z = x @ W.T + b. Two leaky-ReLU hidden layers (negative_slope 0.01),
log_softmax outputs and the mean negative log-likelihood (torch.nn.NLLLoss). The backward pass returns
the gradients in the order it computes them, last layer first.
"""

import numpy as np

SLOPE = 0.01


def init_params(sizes=(784, 32, 16, 10), seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)))
        params.append(rng.uniform(-bound, bound, fan_out))
    return params


def leaky_relu(z):
    return np.where(z > 0, z, SLOPE * z)


def leaky_relu_grad(z):
    return np.where(z > 0, 1.0, SLOPE)


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def forward(x, W1, b1, W2, b2, W3, b3):
    z1 = x @ W1.T + b1
    h1 = leaky_relu(z1)
    z2 = h1 @ W2.T + b2
    h2 = leaky_relu(z2)
    z3 = h2 @ W3.T + b3
    logp = log_softmax(z3)
    return z1, h1, z2, h2, z3, logp


def nll(logp, labels):
    return -logp[np.arange(len(labels)), labels].mean()


def backward(x, labels, W1, W2, W3, z1, h1, z2, h2, logp):
    n = x.shape[0]
    g3 = np.exp(logp)
    g3[np.arange(n), labels] -= 1
    g3 /= n
    dW3 = g3.T @ h2
    db3 = g3.sum(0)
    g2 = (g3 @ W3) * leaky_relu_grad(z2)
    dW2 = g2.T @ h1
    db2 = g2.sum(0)
    g1 = (g2 @ W2) * leaky_relu_grad(z1)
    dW1 = g1.T @ x
    db1 = g1.sum(0)
    return dW3, db3, dW2, db2, dW1, db1
