"""The Trainer as a library component: the loss it is given, a typed epoch position, messages without CLI flags."""

import numpy as np
import pytest

from tinygrad_np import nn, optim
from tinygrad_np.nn import functional as F
from tinygrad_np.spec import mlp_spec, model_from_spec
from tinygrad_np.train import DivergenceError, EpochPosition, Trainer, TrainingInterrupted, evaluate


def data(samples: int = 40, features: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((samples, features), dtype=np.float32), rng.integers(0, classes, samples)


def trainer(loss_fn=F.cross_entropy, lr: float = 0.05, model: nn.Module | None = None) -> Trainer:
    model = model or model_from_spec(mlp_spec(6, [5], 3, seed=1))
    return Trainer(model, optim.SGD(model.parameters(), lr=lr), loss_fn, data(), data(12, seed=1), batch_size=8)


def test_the_trainer_trains_and_evaluates_with_the_loss_it_is_given():
    def doubled(logits, labels):
        return F.cross_entropy(logits, labels) * 2

    frozen = trainer(doubled, lr=0.0)  # lr 0: the weights stay, so every batch sees the same model
    frozen.fit(1)
    (record,) = frozen.history
    train_ce, _ = evaluate(frozen.model, *frozen.train_data)
    test_ce, _ = evaluate(frozen.model, *frozen.test_data)
    assert record["train_loss"] == pytest.approx(2 * train_ce, rel=1e-6)
    assert record["test_loss"] == pytest.approx(2 * test_ce, rel=1e-6)


def test_a_log_softmax_model_trains_with_nll_loss():
    model = nn.Sequential(*model_from_spec(mlp_spec(6, [5], 3, seed=1)), nn.LogSoftmax(axis=1))
    run = trainer(F.nll_loss, model=model)
    run.fit(3)
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]


def test_the_epoch_position_is_a_typed_record_that_round_trips():
    run = trainer()
    with pytest.raises(TrainingInterrupted):
        run.fit(2, on_batch_end=lambda t: t.request_stop() if t.epoch_position.batches_done == 2 else None)
    position = run.epoch_position
    assert isinstance(position, EpochPosition) and (position.batches_done, position.seen) == (2, 16)
    assert run.describe_position() == "in epoch 1 after batch 2 of 5"
    state = run.state_dict()
    assert state["epoch_position"]["batches_done"] == 2  # plain data in a checkpoint
    fresh = trainer()
    fresh.load_state_dict(state)
    assert fresh.epoch_position == position
    fresh.fit(2)
    assert fresh.epoch_position is None and fresh.describe_position() == "after epoch 2"


@pytest.mark.parametrize("lr", [1e30, 1e6])
def test_divergence_messages_name_no_command_line_flag(lr):
    run = trainer(lr=lr)
    with pytest.raises(DivergenceError) as raised:
        run.fit(3)
    assert "lower the learning rate" in str(raised.value) and "--" not in str(raised.value)


@pytest.mark.parametrize("optimizer", [optim.Adam, optim.AdamW, optim.RMSprop])
def test_eps_0_with_a_weight_that_never_gets_a_gradient_is_named_as_the_cause(optimizer):
    # Like MNIST's blank border pixels: one input feature is 0 in every example, so its weights' gradients are 0
    # and the step is 0 / (sqrt(0) + 0). Lowering the learning rate, the usual advice, can't help.
    x, y = data()
    x[:, 2] = 0.0
    model = model_from_spec(mlp_spec(6, [5], 3, seed=1))
    run = Trainer(model, optimizer(model.parameters(), lr=1e-6, eps=0.0), F.cross_entropy, (x, y), batch_size=8)
    with pytest.raises(DivergenceError, match=r"eps is 0, .* 0 / 0; give eps a positive value") as raised:
        run.fit(1)
    assert "learning rate" not in str(raised.value)
    model = model_from_spec(mlp_spec(6, [5], 3, seed=1))
    Trainer(model, optimizer(model.parameters(), lr=1e-6), F.cross_entropy, (x, y), batch_size=8).fit(1)  # eps>0


def grouped_trainer() -> tuple[Trainer, optim.StepLR]:
    """The first layer at lr 0.1, the second at 0.01, both halved every epoch."""
    model = model_from_spec(mlp_spec(6, [5], 3, seed=1))
    opt = optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}], lr=0.1)
    scheduler = optim.StepLR(opt, step_size=1, gamma=0.5)
    return Trainer(model, opt, F.cross_entropy, data(), batch_size=8, scheduler=scheduler), scheduler


def test_the_history_logs_each_groups_lr_when_they_differ():
    """One lr while the groups share it; the list get_last_lr() gives while they differ, and it resumes."""
    run, scheduler = grouped_trainer()
    run.fit(2)
    assert [record["lr"] for record in run.history] == [[0.1, 0.01], [0.05, 0.005]]
    assert scheduler.get_last_lr() == [0.025, 0.0025]  # the lr of the epoch to come
    resumed, _ = grouped_trainer()
    resumed.load_state_dict(run.state_dict())  # a history with lists is a valid checkpoint
    assert resumed.history == run.history
    shared = trainer()
    shared.fit(1)
    assert shared.history[0]["lr"] == 0.05
