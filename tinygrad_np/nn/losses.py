"""Loss modules, each a thin wrapper over its function in `nn.functional`."""

from __future__ import annotations

from tinygrad_np.nn import functional as F
from tinygrad_np.nn.module import Module
from tinygrad_np.tensor import ArrayLike, Tensor


class CrossEntropyLoss(Module):
    """-mean_i log softmax(logits_i)[labels_i]; takes raw logits."""

    def forward(self, logits: Tensor, labels: ArrayLike) -> Tensor:
        return F.cross_entropy(logits, labels)


class NLLLoss(Module):
    """-mean_i log_probs[i, labels_i]; takes log-probabilities (after LogSoftmax)."""

    def forward(self, log_probs: Tensor, labels: ArrayLike) -> Tensor:
        return F.nll_loss(log_probs, labels)


class MSELoss(Module):
    """mean((prediction - target)^2)"""

    def forward(self, prediction: Tensor, target: ArrayLike) -> Tensor:
        return F.mse_loss(prediction, target)
