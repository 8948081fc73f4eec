"""Long runs: a 1,000,000-op chain differentiates, and memory stays flat over many epochs.

The engine frees each op's saved arrays and inputs as backward passes it, and the graph holds no reference
cycles, so a loss Tensor kept in a Python list (as careless training loops do) keeps a few hundred bytes alive,
not its graph; and a graph that is never backpropagated dies with its last reference, without the cyclic GC.
"""

import gc
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from tinygrad_np import Tensor, nn, no_grad, optim


@contextmanager
def gc_disabled() -> Iterator[None]:
    """Memory must be freed by reference counting alone: a graph that needed the cyclic GC would pile up."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def peak_memory_per_epoch(run_epoch: Callable[[int], None], epochs: int) -> list[int]:
    """tracemalloc's peak (bytes, NumPy's buffers included) during each epoch, counted from the first epoch."""
    peaks = []
    tracemalloc.start()
    try:
        with gc_disabled():
            for epoch in range(epochs):
                tracemalloc.reset_peak()
                run_epoch(epoch)
                peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    return peaks


# ---- depth ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_op_chain_differentiates_and_frees_itself_as_it_goes():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    one = Tensor(np.array(1.0))  # one shared constant: the chain's memory is the ops', not a million constants
    y = x
    for i in range(500_000):
        y = y + one
        y = y - one
        if i == 250_000:
            middle = weakref.ref(y)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    np.testing.assert_array_equal(y.data, [1.0, 2.0])
    # `y` is still alive, but backward released every op, so nothing holds the middle of the chain any more.
    assert middle() is None


# ---- memory across epochs -----------------------------------------------------------------------------------


def make_run(seed: int = 0):
    """A small classifier, a fixed data set in mini-batches, and Adam: one `train_epoch(epoch)` per call."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, 20)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    model = nn.Sequential(nn.Linear(20, 64, generator=rng), nn.ReLU(), nn.Linear(64, 10, generator=rng))
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    batches = [(Tensor(x[i : i + 32]), labels[i : i + 32]) for i in range(0, 256, 32)]
    return model, optimizer, batches


# A kept loss costs a Tensor, a 0-d array, its released op and a float: about 0.65 KB measured on CPython 3.11;
# its graph would cost about 20 KB more (the batch's activations and saved arrays). The margin allows 1 KB per
# kept loss plus 64 KB of slack: about 350 KB here, against the ~6 MB that retained graphs add over 40 epochs.
EPOCHS, STEPS_PER_EPOCH = 40, 8
KEPT_OBJECT_BYTES, SLACK_BYTES = 1024, 64 * 1024


def assert_flat(peaks: list[int], kept_per_epoch: int) -> None:
    # Epoch 0 allocates Adam's state and warms caches; compare epochs 1-3 with the last three.
    early, late = max(peaks[1:4]), max(peaks[-3:])
    kept_since = (len(peaks) - 2) * kept_per_epoch
    margin = kept_since * KEPT_OBJECT_BYTES + SLACK_BYTES
    assert late - early <= margin, (
        f"peak memory grew by {(late - early) / 1024:.0f} KB from early to late epochs "
        f"(allowed {margin / 1024:.0f} KB): something keeps graphs alive; peaks in KB: "
        f"{[p // 1024 for p in peaks]}"
    )


def test_keeping_every_loss_tensor_does_not_keep_its_graph():
    model, optimizer, batches = make_run()
    losses: list[Tensor] = []  # the careless history: Tensors, not floats
    values: list[float] = []

    def train_epoch(epoch: int) -> None:
        for x, labels in batches:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss)
            values.append(loss.item())

    peaks = peak_memory_per_epoch(train_epoch, EPOCHS)
    assert len(losses) == EPOCHS * STEPS_PER_EPOCH
    assert values[-1] < values[0]  # it did train
    assert_flat(peaks, kept_per_epoch=STEPS_PER_EPOCH)


def test_evaluation_under_no_grad_keeps_no_graph():
    model, _, batches = make_run()
    model.eval()
    losses: list[Tensor] = []

    def evaluate_epoch(epoch: int) -> None:
        with no_grad():
            for x, labels in batches:
                losses.append(nn.functional.cross_entropy(model(x), labels))

    peaks = peak_memory_per_epoch(evaluate_epoch, EPOCHS)
    assert_flat(peaks, kept_per_epoch=STEPS_PER_EPOCH)
    assert all(loss.is_leaf and not loss.requires_grad for loss in losses)


def test_a_graph_never_backpropagated_dies_with_its_last_reference():
    model, _, batches = make_run()
    x, labels = batches[0]
    with gc_disabled():
        hidden = model[1](model[0](x))  # grad mode on: a full graph is recorded
        loss = nn.functional.cross_entropy(model[2](hidden), labels)
        hidden_ref, op_ref = weakref.ref(hidden), weakref.ref(loss.grad_fn)
        value = loss.item()  # keep the number only
        del hidden, loss
        assert hidden_ref() is None and op_ref() is None, "the graph outlived the loss: a reference cycle?"
    assert np.isfinite(value)


def test_a_backpropagated_graph_is_freed_even_while_the_loss_lives():
    model, _, batches = make_run()
    x, labels = batches[0]
    with gc_disabled():
        hidden = model[1](model[0](x))
        loss = nn.functional.cross_entropy(model[2](hidden), labels)
        hidden_ref = weakref.ref(hidden)
        del hidden
        assert hidden_ref() is not None  # before backward the loss's graph holds it
        loss.backward()
        assert hidden_ref() is None  # after backward it doesn't, though `loss` is still here
        assert loss.grad_fn is not None and loss.grad_fn.released
