"""The training loop: a Trainer that owns model, optimizer, schedule and data order, and can be checkpointed.

Everything random (initial weights, shuffling, dropout masks) draws from generators derived from one seed,
and the Trainer's state (`state_dict`) holds all of them, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tinygrad_np import nn, optim
from tinygrad_np.data import DataLoader
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor, no_grad

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


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# The recipes: the tutorial's setup as it was, and ours for each model.
RECIPES: dict[str, dict[str, Any]] = {
    # 784-10-10, W and b ~ U(-0.5, 0.5), full-batch gradient descent with alpha = 0.10, 500 iterations,
    # with the step decay the tutorial suggests (halve alpha every 200 iterations).
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
    from models.mlp import mlp
    from models.two_layer import two_layer

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


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    lr: float
    seconds: float


@no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 10_000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on a dataset, in eval mode, without recording a graph."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        logits = model(Tensor(images[start : start + batch_size]))
        batch_labels = labels[start : start + batch_size]
        total_loss += F.cross_entropy(logits, batch_labels).item() * len(batch_labels)
        correct += int((logits.data.argmax(axis=1) == batch_labels).sum())
    model.train(was_training)
    return total_loss / len(images), correct / len(images)


@no_grad()
def predict_proba(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Class probabilities, (N, 784) float32 in [0, 1] -> (N, 10)."""
    was_training = model.training
    model.eval()
    probabilities = model(Tensor(np.asarray(images, dtype=np.float32))).softmax(axis=1).data
    model.train(was_training)
    return probabilities


@dataclass
class Trainer:
    """Runs epochs of mini-batch training; `state_dict()` captures everything needed to resume exactly."""

    model: nn.Module
    optimizer: optim.Optimizer
    train_data: tuple[np.ndarray, np.ndarray]
    test_data: tuple[np.ndarray, np.ndarray] | None = None
    batch_size: int | None = 64
    scheduler: optim.LRScheduler | None = None
    seed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The data order has its own stream, spawned from the seed, apart from the weights' and dropout's.
        order_seed = np.random.SeedSequence(self.seed).spawn(1)[0]
        self.loader = DataLoader(
            self.train_data,
            batch_size=self.batch_size,
            shuffle=self.batch_size is not None,
            generator=np.random.default_rng(order_seed),
        )

    @property
    def epoch(self) -> int:
        return len(self.history)

    def train_epoch(self, progress: Any = None) -> tuple[float, float]:
        """One pass over the training data; returns mean loss and accuracy over its batches."""
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for images, labels in self.loader:
            self.optimizer.zero_grad()
            logits = self.model(Tensor(images))
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            self.optimizer.step()
            batch_loss = loss.item()
            if not np.isfinite(batch_loss):
                raise FloatingPointError(
                    f"the training loss became {batch_loss} in epoch {self.epoch + 1}; lower the learning rate "
                    "(or run with --detect-anomaly to find the op)"
                )
            total_loss += batch_loss * len(labels)
            correct += int((logits.data.argmax(axis=1) == labels).sum())
            seen += len(labels)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
        return total_loss / seen, correct / seen

    def fit(
        self,
        epochs: int,
        progress: bool = False,
        on_epoch_end: Callable[[Trainer], None] | None = None,
        evaluate_every: int = 1,
    ) -> list[dict[str, Any]]:
        """Train until `epochs` epochs are done in total (a resumed trainer continues where it stopped)."""
        bar = _progress_bar(epochs, self.epoch, len(self.loader), progress)
        try:
            while self.epoch < epochs:
                start = time.perf_counter()
                lr = self.optimizer.lr
                train_loss, train_accuracy = self.train_epoch(bar if bar is not None and bar.per_batch else None)
                test_loss = test_accuracy = None
                last = self.epoch + 1 == epochs
                if self.test_data is not None and (last or (self.epoch + 1) % evaluate_every == 0):
                    test_loss, test_accuracy = evaluate(self.model, *self.test_data)
                if self.scheduler is not None:
                    self.scheduler.step()
                stats = EpochStats(
                    self.epoch + 1,
                    train_loss,
                    train_accuracy,
                    test_loss,
                    test_accuracy,
                    lr,
                    time.perf_counter() - start,
                )
                self.history.append(asdict(stats))
                if bar is not None:
                    if not bar.per_batch:
                        bar.update(1)
                    shown = {"loss": f"{train_loss:.4f}", "acc": f"{train_accuracy:.4f}"}
                    if test_accuracy is not None:
                        shown["test_acc"] = f"{test_accuracy:.4f}"
                    bar.set_postfix(shown)
                if on_epoch_end is not None:
                    on_epoch_end(self)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    # ---- checkpointing ------------------------------------------------------------------------------------

    def generators(self) -> dict[str, np.random.Generator]:
        """Every random stream training draws from: the data order and each Dropout layer's masks."""
        streams = {"loader": self.loader.generator}
        for name, module in self.model.named_modules():
            if isinstance(module, nn.Dropout):
                streams[f"dropout:{name}"] = module.generator
        return streams

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {name: g.bit_generator.state for name, g in self.generators().items()},
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        streams = self.generators()
        for name, rng_state in state["rng"].items():
            if name not in streams:
                raise ValueError(f"checkpoint has a random stream {name!r} this model doesn't have")
            streams[name].bit_generator.state = rng_state
        self.history = list(state["history"])


def _progress_bar(epochs: int, done: int, batches: int, enabled: bool) -> Any:
    """A tqdm bar over batches (mini-batch) or epochs (full batch), or None when off or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    per_batch = batches > 1
    bar = tqdm(
        total=(epochs - done) * batches if per_batch else epochs - done,
        unit="batch" if per_batch else "epoch",
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )
    bar.per_batch = per_batch
    return bar
