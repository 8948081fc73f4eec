"""A one-hidden-layer classifier the way many "deep learning in Python" courses write it: gradient ascent.

Row layout with W1 (D, M) and b1 (M,), sigmoid hidden units, a softmax output, and an indicator matrix T
(N by K) for the targets. Training maximises the log-likelihood sum(T * log(Y)) minus reg/2 ||W||^2 by
gradient *ascent*, so each derivative below is the gradient of the log-likelihood (T - Y, not Y - T), summed
over the examples (no 1/N), one small function per parameter. Note that in this style Y is the network's
output and Z the hidden layer's activation.
"""

import numpy as np


def init_weights(D, M, K, seed=1):
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((D, M)) / np.sqrt(D)
    b1 = np.zeros(M)
    W2 = rng.standard_normal((M, K)) / np.sqrt(M)
    b2 = np.zeros(K)
    return W1, b1, W2, b2


def forward(X, W1, b1, W2, b2):
    Z = 1 / (1 + np.exp(-X.dot(W1) - b1))
    A = Z.dot(W2) + b2
    expA = np.exp(A)
    Y = expA / expA.sum(axis=1, keepdims=True)
    return Y, Z


def derivative_w2(Z, T, Y, W2, reg=0.0):
    return Z.T.dot(T - Y) - reg * W2


def derivative_b2(T, Y):
    return (T - Y).sum(axis=0)


def derivative_w1(X, Z, T, Y, W1, W2, reg=0.0):
    dZ = (T - Y).dot(W2.T) * Z * (1 - Z)
    return X.T.dot(dZ) - reg * W1


def derivative_b1(T, Y, W2, Z):
    return ((T - Y).dot(W2.T) * Z * (1 - Z)).sum(axis=0)


def log_likelihood(T, Y):
    return (T * np.log(Y)).sum()


def train(X, T, M, learning_rate=1e-3, reg=0.01, epochs=100):
    W1, b1, W2, b2 = init_weights(X.shape[1], M, T.shape[1])
    for _ in range(epochs):
        Y, Z = forward(X, W1, b1, W2, b2)
        W2 += learning_rate * derivative_w2(Z, T, Y, W2, reg)
        b2 += learning_rate * derivative_b2(T, Y)
        W1 += learning_rate * derivative_w1(X, Z, T, Y, W1, W2, reg)
        b1 += learning_rate * derivative_b1(T, Y, W2, Z)
    return W1, b1, W2, b2
