"""Loss modules, each a thin wrapper over its function in `nn.functional`, taking the same arguments."""

from __future__ import annotations

from tinygrad_np.nn import functional as F
from tinygrad_np.nn.module import Module
from tinygrad_np.tensor import ArrayLike, Tensor


class CrossEntropyLoss(Module):
    """-log softmax(logits)[label], weighted, ignoring, smoothed and reduced as `F.cross_entropy`; takes raw logits."""

    def __init__(
        self,
        weight: ArrayLike | None = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        # Checked now, so a bad setting fails where the loss is made; the weight's length waits for an input.
        self.weight = F.check_class_weight("CrossEntropyLoss", weight)
        self.ignore_index = ignore_index
        self.reduction = F.check_reduction("CrossEntropyLoss", reduction)
        self.label_smoothing = F.check_label_smoothing(label_smoothing)

    def forward(self, logits: Tensor, labels: ArrayLike) -> Tensor:
        return F.cross_entropy(
            logits,
            labels,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(Module):
    """-weight[label] * log_probs[label], as `F.nll_loss`; takes log-probabilities (after LogSoftmax)."""

    def __init__(self, weight: ArrayLike | None = None, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        self.weight = F.check_class_weight("NLLLoss", weight)
        self.ignore_index = ignore_index
        self.reduction = F.check_reduction("NLLLoss", reduction)

    def forward(self, log_probs: Tensor, labels: ArrayLike) -> Tensor:
        return F.nll_loss(log_probs, labels, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MSELoss(Module):
    """(prediction - target)^2, reduced as `F.mse_loss`."""

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = F.check_reduction("MSELoss", reduction)

    def forward(self, prediction: Tensor, target: ArrayLike) -> Tensor:
        return F.mse_loss(prediction, target, reduction=self.reduction)
