"""A small MLP class the way NumPy tutorials write one when they mimic Keras: state kept on the object.

Row layout, weights w1 of shape (n_in, n_hidden), biases b1 of shape (1, n_hidden), a tanh hidden layer,
linear outputs and the mean squared error over every output (PyTorch's MSELoss), plus weight decay
weight_decay/2 * ||w||^2 on the weights. forward() keeps what backward() needs on self.
"""

import numpy as np


class MLP:
    def __init__(self, n_in, n_hidden, n_out, weight_decay=0.0, seed=0):
        rng = np.random.default_rng(seed)
        limit1 = np.sqrt(6 / (n_in + n_hidden))
        limit2 = np.sqrt(6 / (n_hidden + n_out))
        self.w1 = rng.uniform(-limit1, limit1, (n_in, n_hidden))
        self.b1 = np.zeros((1, n_hidden))
        self.w2 = rng.uniform(-limit2, limit2, (n_hidden, n_out))
        self.b2 = np.zeros((1, n_out))
        self.weight_decay = weight_decay

    def forward(self, x):
        self.x = x
        self.z1 = x @ self.w1 + self.b1
        self.a1 = np.tanh(self.z1)
        self.out = self.a1 @ self.w2 + self.b2
        return self.out

    def loss(self, y):
        penalty = 0.5 * self.weight_decay * (np.sum(self.w1**2) + np.sum(self.w2**2))
        return np.mean((self.out - y) ** 2) + penalty

    def backward(self, y):
        d_out = 2 * (self.out - y) / y.size
        grad_w2 = self.a1.T @ d_out + self.weight_decay * self.w2
        grad_b2 = d_out.sum(axis=0)
        d_z1 = (d_out @ self.w2.T) * (1 - self.a1**2)
        grad_w1 = self.x.T @ d_z1 + self.weight_decay * self.w1
        grad_b1 = d_z1.sum(axis=0)
        return {"w1": grad_w1, "b1": grad_b1, "w2": grad_w2, "b2": grad_b2}

    def step(self, grads, lr=0.1):
        for name, grad in grads.items():
            setattr(self, name, getattr(self, name) - lr * grad)
