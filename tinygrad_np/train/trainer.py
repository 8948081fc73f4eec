"""The training loop: a Trainer that owns model, optimizer, schedule and data order, and can be checkpointed.

Everything random (initial weights, shuffling, dropout masks) draws from generators derived from one seed,
and the Trainer's state (`state_dict`) holds all of them, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tinygrad_np import nn, optim
from tinygrad_np.data import DataLoader
from tinygrad_np.errors import UserError
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor, no_grad

LossFn = Callable[[Tensor, np.ndarray], Tensor]


@dataclass
class EpochStats:
    """One epoch in `Trainer.history`. `lr` is the learning rate it trained with: a list, one per parameter
    group, when the groups' rates differ (as `LRScheduler.get_last_lr()` gives them)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    lr: float | list[float]
    seconds: float


@dataclass
class EpochPosition:
    """Where an unfinished epoch stands: enough to replay its permutation and skip the batches already done."""

    loader_rng: dict[str, Any]  # the data order's generator state before this epoch drew its permutation
    batches_done: int = 0
    loss_sum: float = 0.0  # sum over the batches done of the mean loss times the batch's size
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # time spent in the epoch before it was stopped

    @classmethod
    def from_state(cls, state: Any, loader: DataLoader) -> EpochPosition:
        """The position `asdict` gave, checked to be one that training over `loader` writes (else ValueError)."""
        counts = ("batches_done", "correct", "seen")
        if not (
            isinstance(state, dict)
            and set(state) <= {f.name for f in dataclasses.fields(cls)}
            and all(type(state.get(key)) is int and state[key] >= 0 for key in counts)
            and state["batches_done"] <= len(loader)
            and state["seen"] == min(state["batches_done"] * loader.batch_size, len(loader.dataset[0]))
            and state["correct"] <= state["seen"]
            and _is_number(state.get("loss_sum"))
            and _is_number(state.get("seconds", 0.0))
            and isinstance(state.get("loader_rng"), dict)
        ):
            raise ValueError(
                f"the position in the unfinished epoch is malformed (expected {', '.join(counts)} that fit "
                f"{len(loader)} batches of {loader.batch_size}, a finite loss_sum and loader_rng)"
            )
        return cls(**state)


# Evaluation runs in batches of this many images: a convolution's im2col of all 10,000 test images would take about
# 1 GB, a batch of 1,000 a tenth of that, and per-batch overhead is still negligible.
EVAL_BATCH_SIZE = 1_000


@no_grad()
def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on a dataset, in eval mode, without recording a graph."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        logits = model(Tensor(images[start : start + batch_size]))
        batch_labels = labels[start : start + batch_size]
        total_loss += loss_fn(logits, batch_labels).item() * len(batch_labels)
        correct += int((logits.data.argmax(axis=1) == batch_labels).sum())
    model.train(was_training)
    return total_loss / len(images), correct / len(images)


@no_grad()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Class probabilities: softmax(model(images)), (N, ...) float32 in [0, 1] -> (N, classes), in eval mode."""
    was_training = model.training
    model.eval()
    images = np.asarray(images, dtype=np.float32)
    try:
        batches = [model(Tensor(images[start : start + batch_size])).softmax(axis=1).data
                   for start in range(0, max(len(images), 1), batch_size)]  # one (empty) batch for no images
    finally:
        model.train(was_training)
    return np.concatenate(batches)


# A mean cross-entropy of 100 nats gives the true class e^-100 of the probability: far past chance (ln 10 = 2.3
# nats on MNIST), where no run that is learning goes, and where a diverging one (lr 1e6) arrives within its
# first epoch while every number is still finite.
DIVERGENCE_THRESHOLD = 100.0


class DivergenceError(UserError, FloatingPointError):
    """Training diverged: a non-finite loss or weight (`non_finite`; `detect_anomaly()` finds the op that made
    it), or a mean epoch loss above the divergence threshold."""

    def __init__(self, message: str, non_finite: bool) -> None:
        super().__init__(message)
        self.non_finite = non_finite


class TrainingInterrupted(KeyboardInterrupt):
    """`fit` stopped at a batch boundary because `request_stop()` was called (a signal under `stop_on_signals`).

    The trainer's state is consistent there, so `state_dict()` resumes exactly, even in the middle of an epoch.
    """


@dataclass
class Trainer:
    """Runs epochs of mini-batch training of a classifier; `state_dict()` captures everything needed to resume
    exactly.

    `loss_fn(logits, labels)` is the mean loss over a batch (e.g. `F.cross_entropy`); accuracy counts the
    argmax of the logits. Resuming is exact at any batch boundary: an unfinished epoch is kept as an
    `EpochPosition`, so a resumed epoch redraws the same permutation and skips the batches already trained on.
    """

    model: nn.Module
    optimizer: optim.Optimizer
    loss_fn: LossFn
    train_data: tuple[np.ndarray, np.ndarray]
    test_data: tuple[np.ndarray, np.ndarray] | None = None
    batch_size: int | None = 64
    scheduler: optim.LRScheduler | None = None
    seed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    divergence_threshold: float | None = DIVERGENCE_THRESHOLD

    def __post_init__(self) -> None:
        # The data order has its own stream, spawned from the seed, apart from the weights' and dropout's.
        order_seed = np.random.SeedSequence(self.seed).spawn(1)[0]
        self.loader = DataLoader(
            self.train_data,
            batch_size=self.batch_size,
            shuffle=self.batch_size is not None,
            generator=np.random.default_rng(order_seed),
        )
        self.epoch_position: EpochPosition | None = None  # None between epochs
        self.stop_requested = False

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.history)

    def describe_position(self) -> str:
        """Where training stands: 'after epoch 3', or 'in epoch 4 after batch 17 of 32'."""
        if self.epoch_position is None:
            return f"after epoch {self.epoch}"
        return f"in epoch {self.epoch + 1} after batch {self.epoch_position.batches_done} of {len(self.loader)}"

    def request_stop(self) -> None:
        """Ask `fit` to raise TrainingInterrupted after the current batch (safe to call from a signal handler)."""
        self.stop_requested = True

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise TrainingInterrupted()

    def train_epoch(
        self, progress: Any = None, on_batch_end: Callable[[Trainer], None] | None = None
    ) -> tuple[float, float]:
        """One pass over the training data (or the rest of an unfinished one); mean loss and accuracy."""
        self.model.train()
        if self.epoch_position is None:
            self.epoch_position = EpochPosition(copy.deepcopy(self.loader.generator.bit_generator.state))
        position = self.epoch_position
        # Replay the permutation this epoch drew (a no-op for a fresh epoch) and skip what is already trained.
        self.loader.generator.bit_generator.state = copy.deepcopy(position.loader_rng)
        for images, labels in _skip(iter(self.loader), position.batches_done):
            batch_loss, correct = self._train_step(images, labels)
            position.batches_done += 1
            position.loss_sum += batch_loss * len(labels)
            position.correct += correct
            position.seen += len(labels)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{position.loss_sum / position.seen:.4f}",
                                     acc=f"{position.correct / position.seen:.4f}", refresh=False)
            if on_batch_end is not None:
                on_batch_end(self)
            self._check_stop()
        mean_loss, accuracy = position.loss_sum / position.seen, position.correct / position.seen
        self._check_divergence(mean_loss)
        self.epoch_position = None
        return mean_loss, accuracy

    def _train_step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One optimizer step on a batch: its mean loss and how many it classified right."""
        self.optimizer.zero_grad()
        logits = self.model(Tensor(images))
        loss = self.loss_fn(logits, labels)
        loss.backward()
        self.optimizer.step()
        batch_loss = loss.item()
        if not np.isfinite(batch_loss):
            raise DivergenceError(
                f"the training loss became {batch_loss} in epoch {self.epoch + 1}; {self._non_finite_advice()}",
                non_finite=True,
            )
        return batch_loss, int((logits.data.argmax(axis=1) == labels).sum())

    def _non_finite_advice(self) -> str:
        """What to change when the loss or a parameter became NaN or inf."""
        if any(group.get("eps", 1.0) == 0 for group in self.optimizer.param_groups):
            # sqrt(v) + eps is 0 for a weight whose gradient has always been 0: MNIST's blank border pixels give
            # the first layer such weights, so with eps 0 its first step is 0 / 0, whatever the learning rate.
            return ("eps is 0, so a weight whose gradient has always been 0 (the blank border pixels of MNIST's "
                    "images, say) gets a step of 0 / 0; give eps a positive value (the default is 1e-8)")
        return f"lower the learning rate (now {self.optimizer.lr:g})"

    def _check_divergence(self, mean_loss: float) -> None:
        """Refuse to go on from an epoch whose mean loss or final weights say training has blown up."""
        epoch = self.epoch + 1
        for name, parameter in self.model.named_parameters():
            if not np.isfinite(parameter.data).all():
                raise DivergenceError(
                    f"parameter {name!r} became NaN or inf in epoch {epoch}; {self._non_finite_advice()}",
                    non_finite=True,
                )
        if self.divergence_threshold is not None and mean_loss > self.divergence_threshold:
            num_classes = int(self.train_data[1].max()) + 1
            raise DivergenceError(
                f"training diverged: the mean training loss in epoch {epoch} was {mean_loss:.3g} "
                f"(guessing uniformly scores ln {num_classes} = {math.log(num_classes):.2f}); "
                f"lower the learning rate (now {self.optimizer.lr:g})",
                non_finite=False,
            )

    def fit(
        self,
        epochs: int,
        progress: bool = False,
        on_epoch_end: Callable[[Trainer], None] | None = None,
        evaluate_every: int = 1,
        on_batch_end: Callable[[Trainer], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train until `epochs` epochs are done in total (a resumed trainer continues where it stopped).

        After `request_stop()`, raises TrainingInterrupted at the next batch or epoch boundary, with the state
        consistent for `state_dict()`.
        """
        self.stop_requested = False
        bar = _progress_bar(epochs, self.epoch, len(self.loader), progress)
        if bar is not None and self.epoch_position is not None:
            bar.update(self.epoch_position.batches_done if bar.per_batch else 0)
        try:
            # Overflow in a diverging run is reported once, by the checks above, not as NumPy warnings per op.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._fit(epochs, bar, on_epoch_end, on_batch_end, evaluate_every)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def _fit(
        self,
        epochs: int,
        bar: Any,
        on_epoch_end: Callable[[Trainer], None] | None,
        on_batch_end: Callable[[Trainer], None] | None,
        every: int,
    ) -> None:
        while self.epoch < epochs:
            start = time.perf_counter() - (self.epoch_position.seconds if self.epoch_position else 0.0)
            rates = [group["lr"] for group in self.optimizer.param_groups]
            lr = rates[0] if len(set(rates)) == 1 else rates
            try:
                train_loss, train_accuracy = self.train_epoch(
                    bar if bar is not None and bar.per_batch else None, on_batch_end
                )
            finally:
                if self.epoch_position is not None:  # stopped mid-epoch: keep the time spent for the history
                    self.epoch_position.seconds = time.perf_counter() - start
            test_loss = test_accuracy = None
            last = self.epoch + 1 == epochs
            if self.test_data is not None and (last or (self.epoch + 1) % every == 0):
                test_loss, test_accuracy = evaluate(self.model, *self.test_data, loss_fn=self.loss_fn)
            if self.scheduler is not None:
                self.scheduler.step()
            stats = EpochStats(
                self.epoch + 1, train_loss, train_accuracy, test_loss, test_accuracy, lr, time.perf_counter() - start
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
            if self.epoch < epochs:
                self._check_stop()

    # ---- checkpointing ------------------------------------------------------------------------------------

    def generators(self) -> dict[str, np.random.Generator]:
        """Every random stream training draws from: the data order and each Dropout layer's masks."""
        streams = {"loader": self.loader.generator}
        for name, module in self.model.named_modules():
            if isinstance(module, nn.Dropout):
                streams[f"dropout:{name}"] = module.generator
        return streams

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, schedule, every generator, history and the position in an unfinished epoch."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {name: copy.deepcopy(g.bit_generator.state) for name, g in self.generators().items()},
            "history": copy.deepcopy(self.history),
            "epoch_position": None if self.epoch_position is None else asdict(self.epoch_position),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned. Everything is checked before anything is changed: a state for
        another model or optimizer, or one that was tampered with, raises ValueError/KeyError/TypeError."""
        streams = self.generators()
        if set(state["rng"]) != set(streams):
            raise ValueError(
                f"the checkpoint's random streams {sorted(state['rng'])} are not this model's {sorted(streams)}"
            )
        history = state["history"]
        fields = {f.name for f in dataclasses.fields(EpochStats)}
        if not isinstance(history, list) or not all(
            isinstance(h, dict) and set(h) == fields and all(_is_record_value(v) for v in h.values()) for h in history
        ):
            raise ValueError(f"the history must be a list of per-epoch records of numbers with {sorted(fields)}")
        position = None
        if state.get("epoch_position") is not None:
            position = EpochPosition.from_state(copy.deepcopy(state["epoch_position"]), self.loader)
        # A bit generator checks a state when it is set: try each on a throwaway one of the same kind first.
        for name, rng_state in [*state["rng"].items(), *([("loader", position.loader_rng)] if position else [])]:
            type(streams[name].bit_generator)().state = rng_state
        _check_real_finite("model", state["model"])
        self.optimizer.check_state_dict(state["optimizer"])
        scheduler = state.get("scheduler")
        if scheduler is not None:
            optim.LRScheduler.check_state_dict(scheduler)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and scheduler is not None:
            self.scheduler.load_state_dict(scheduler)
        for name, rng_state in state["rng"].items():
            streams[name].bit_generator.state = rng_state
        self.history = list(history)
        self.epoch_position = position
        if position is not None:
            self.loader.generator.bit_generator.state = position.loader_rng  # a bad state fails here, not later


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_record_value(value: Any) -> bool:
    """What an EpochStats field holds: None, a number, or a list of numbers (one lr per parameter group)."""
    if isinstance(value, list):
        return bool(value) and all(map(_is_number, value))
    return value is None or _is_number(value)


def _check_real_finite(what: str, arrays: Any) -> None:
    for name, array in dict(arrays).items():
        array = np.asarray(array)
        # integers too: BatchNorm's num_batches_tracked is an int64 buffer
        if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
            raise ValueError(f"{what} entry {name!r} must hold finite real numbers, got {array.dtype} {array.shape}")


def _skip(batches: Iterator[Any], count: int) -> Iterator[Any]:
    """The batches after the first `count` (which are drawn but not trained on)."""
    for _ in range(count):
        next(batches, None)
    yield from batches


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[list[int]]:
    """Within the block, Ctrl-C (SIGINT) or SIGTERM, which process managers and containers send, asks `trainer`
    to stop at the next batch boundary; a second signal interrupts at once (KeyboardInterrupt).

    Yields the list of the signals received, in order, so that a caller can exit as the signal asks (128 + its
    number). A KeyboardInterrupt raised mid-step could leave half the parameters updated; a flag checked between
    batches cannot. Outside the main thread (where signals can't be handled) this does nothing.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if trainer.stop_requested:  # asked twice: the user wants out now
            raise KeyboardInterrupt
        trainer.request_stop()

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield received
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


def _progress_bar(epochs: int, done: int, batches: int, enabled: bool) -> Any:
    """A tqdm bar over batches (mini-batch) or epochs (full batch), or None when off or tqdm is missing.

    tqdm.auto draws a widget in Jupyter (with ipywidgets installed) and text on a terminal.
    """
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
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
