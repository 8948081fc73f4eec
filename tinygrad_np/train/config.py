"""What a training run is: its hyperparameters (TrainConfig), the named recipes, and the objects they build."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_np import nn, optim
from tinygrad_np.errors import UserError

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (what `tinygrad-np train` takes, and what metrics record)."""

    model: str = "two_layer"
    hidden_sizes: tuple[int, ...] = (10,)
    init: str = "he"
    optimizer: str = "adam"
    lr: float = 0.005
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    dropout: float = 0.0
    epochs: int = 10
    batch_size: int | None = 64
    step_size: int | None = None
    gamma: float = 0.1
    cosine: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Refuse impossible values with a message naming the option."""
        _require(self.lr > 0 and np.isfinite(self.lr), f"learning rate must be a positive number, got {self.lr}")
        _require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        _require(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")
        _require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _require(
            self.batch_size is None or self.batch_size >= 1,
            f"batch size must be a positive integer or 'full', got {self.batch_size}",
        )
        _require(self.step_size is None or self.step_size >= 1, f"step size must be >= 1, got {self.step_size}")
        _require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        _require(all(h >= 1 for h in self.hidden_sizes), f"hidden sizes must be positive, got {self.hidden_sizes}")
        _require(self.model in ("two_layer", "mlp"), f"model must be two_layer or mlp, got {self.model!r}")
        _require(self.seed >= 0, f"seed must be a non-negative integer, got {self.seed}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


# The recipes: the tutorial's setup as it was, and ours for each model.
RECIPES: dict[str, dict[str, Any]] = {
    # 784-10-10, W and b ~ U(-0.5, 0.5), full-batch gradient descent with alpha = 0.10, 500 iterations,
    # with step decay; the tutorial leaves its schedule open, so we halve alpha every 200 iterations.
    "tutorial": dict(
        model="two_layer",
        hidden_sizes=(10,),
        init="tutorial",
        optimizer="sgd",
        lr=0.10,
        epochs=500,
        batch_size=None,
        step_size=200,
        gamma=0.5,
    ),
    # The same 784-10-10 network, trained well: He init, Adam, mini-batches, cosine decay.
    "two_layer": dict(
        model="two_layer",
        hidden_sizes=(10,),
        init="he",
        optimizer="adam",
        lr=0.01,
        epochs=15,
        batch_size=128,
        cosine=True,
    ),
    # A wider, deeper MLP with dropout and decoupled weight decay.
    "mlp": dict(
        model="mlp",
        hidden_sizes=(256, 128),
        init="he",
        optimizer="adamw",
        lr=0.002,
        weight_decay=0.01,
        dropout=0.1,
        epochs=15,
        batch_size=128,
        cosine=True,
    ),
}


def build_model(config: TrainConfig, input_size: int = 784, num_classes: int = 10) -> nn.Module:
    """The network a config names: the tutorial's 784-10-10 (two_layer) or an MLP of any depth."""
    # models/ sits beside the package; imported here so that `import tinygrad_np` stays light.
    from tinygrad_np.models.mlp import mlp
    from tinygrad_np.models.two_layer import two_layer

    if config.model == "two_layer":
        return two_layer(generator=config.seed, init=config.init)
    return mlp(
        input_size=input_size,
        hidden_sizes=config.hidden_sizes,
        num_classes=num_classes,
        dropout=config.dropout,
        init=config.init,
        generator=config.seed,
    )


def build_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> optim.Optimizer:
    if config.optimizer == "sgd":
        return optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    if config.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: optim.Optimizer) -> optim.LRScheduler | None:
    if config.cosine:
        return optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.step_size:
        return optim.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return None
