"""Checkpoints lose nothing: a run stopped anywhere (Ctrl-C mid-epoch, SIGKILL) resumes to bit-identical weights.

The in-process tests stop a small Trainer at every kind of place (any batch, an epoch boundary, several times
in a row, full batch); the subprocess tests run the real `tinygrad-np train`, kill it with SIGKILL or SIGINT in
the middle of an epoch, resume it and compare the saved model with an uninterrupted run's, bit for bit.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np import nn, optim
from tinygrad_np.checkpoint import SHOWN_DIFFERENCES, CheckpointError, CheckpointManager, load_state, save_state
from tinygrad_np.cli import main
from tinygrad_np.nn import functional as F
from tinygrad_np.serialization import load_model, save_model
from tinygrad_np.spec import mlp_spec
from tinygrad_np.train import (
    DivergenceError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    build_model,
    build_optimizer,
    build_scheduler,
    stop_on_signals,
)

REPO = Path(__file__).resolve().parents[1]

# ---- a small trainer with every random stream in play ------------------------------------------------------

EPOCHS = 4
SAMPLES = 64


def small_trainer(batch_size: int | None = 12, optimizer: str = "adam", hidden: int = 16) -> Trainer:
    """20 -> hidden -> 4 MLP with dropout, shuffled mini-batches (the last one short), a cosine schedule."""
    data = np.random.default_rng(1)
    images = data.random((SAMPLES, 20), dtype=np.float32)
    labels = data.integers(0, 4, SAMPLES)
    config = TrainConfig(
        mlp_spec(20, [hidden], 4, dropout=0.25),
        optimizer=optimizer,
        lr=0.05,
        momentum=0.9 if optimizer == "sgd" else 0.0,
        epochs=EPOCHS,
        batch_size=batch_size,
        cosine=batch_size is not None,
        step_size=None if batch_size is not None else 2,
        gamma=0.5,
        seed=7,
    )
    model = build_model(config)
    opt = build_optimizer(config, model)
    return Trainer(
        model,
        opt,
        F.cross_entropy,
        (images, labels),
        (images[:16], labels[:16]),
        batch_size=batch_size,
        scheduler=build_scheduler(config, opt),
        seed=config.seed,
    )


def assert_same_run(resumed: Trainer, reference: Trainer) -> None:
    """Weights and buffers, optimizer moments, random streams and every recorded number (but wall time) are
    identical."""
    ours, theirs = resumed.model.state_dict(), reference.model.state_dict()
    assert list(ours) == list(theirs)
    for name, array in ours.items():
        assert array.dtype == theirs[name].dtype
        np.testing.assert_array_equal(array, theirs[name], err_msg=name)
    a, b = resumed.optimizer.state_dict(), reference.optimizer.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for state_a, state_b in zip(a["state"], b["state"], strict=True):
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            np.testing.assert_array_equal(state_a[key], state_b[key])
    assert resumed.state_dict()["rng"] == reference.state_dict()["rng"]
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in reference.history]


REFERENCES = {}


def reference(batch_size: int | None, make=small_trainer) -> Trainer:
    """The run from `make(batch_size)` trained to the end without a stop (once per module)."""
    if (make, batch_size) not in REFERENCES:
        trainer = make(batch_size)
        trainer.fit(EPOCHS)
        REFERENCES[make, batch_size] = trainer
    return REFERENCES[make, batch_size]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


def train_with_stops(batch_size: int | None, stops: list[int], folder: Path, make=small_trainer) -> Trainer:
    """Train to the end, stopping after each batch count in `stops` (counted over the whole run), each time
    saving a checkpoint and continuing in a *fresh* trainer (from `make(batch_size)`) restored from the file."""
    trainer = make(batch_size)
    done = 0
    for stop in sorted(set(stops)):

        def count(t: Trainer, stop: int = stop) -> None:
            nonlocal done
            done += 1
            if done == stop:
                t.request_stop()

        with pytest.raises(TrainingInterrupted):
            trainer.fit(EPOCHS, on_batch_end=count)
        path = save_state(trainer.state_dict(), folder / "state.npz")
        trainer = make(batch_size)
        trainer.load_state_dict(load_state(path))
    trainer.fit(EPOCHS)
    return trainer


BATCHES = {12: 6 * EPOCHS, None: EPOCHS}  # 64 samples in batches of 12: five full and one of 4


@pytest.mark.parametrize("batch_size", [12, None], ids=["mini-batch", "full-batch"])
@given(data=st.data())
def test_stopping_after_any_batches_and_resuming_from_the_file_changes_nothing(scratch, batch_size, data):
    total = BATCHES[batch_size]
    stops = data.draw(st.lists(st.integers(1, total), min_size=1, max_size=3), label="stop after batches")
    assert_same_run(train_with_stops(batch_size, stops, scratch), reference(batch_size))


# ---- a CNN: BatchNorm's running statistics and batch count are part of the run --------------------------------


def cnn_trainer(batch_size: int | None = 12) -> Trainer:
    """A small CNN on (N, 1, 8, 8) with both BatchNorms and a Dropout, shuffled mini-batches, Adam."""
    data = np.random.default_rng(2)
    images = data.random((SAMPLES, 1, 8, 8), dtype=np.float32)
    labels = data.integers(0, 4, SAMPLES)
    weights = np.random.default_rng(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, generator=weights), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, generator=weights), nn.AvgPool2d(2), nn.Flatten(), nn.BatchNorm1d(6),
        nn.Dropout(0.25, generator=weights), nn.Linear(6, 4, generator=weights),
    )
    opt = optim.Adam(model.parameters(), lr=0.01)
    return Trainer(model, opt, F.cross_entropy, (images, labels), (images[:16], labels[:16]), batch_size=batch_size,
                   seed=5)


@pytest.mark.parametrize("batch_size", [12, None], ids=["mini-batch", "full-batch"])
@given(data=st.data())
def test_a_cnn_stopped_after_any_batches_and_resumed_from_the_file_is_bit_identical(scratch, batch_size, data):
    total = BATCHES[batch_size]
    stops = data.draw(st.lists(st.integers(1, total), min_size=1, max_size=3), label="stop after batches")
    reference_run = reference(batch_size, cnn_trainer)
    assert int(reference_run.model.state_dict()["1.num_batches_tracked"]) == total  # one per training batch
    assert_same_run(train_with_stops(batch_size, stops, scratch, make=cnn_trainer), reference_run)


def test_a_cnn_resumes_through_the_checkpoint_manager(tmp_path):
    trainer = cnn_trainer()
    with pytest.raises(TrainingInterrupted):
        trainer.fit(EPOCHS, on_batch_end=lambda t: t.request_stop() if t.epoch == 2 else None)
    manager = CheckpointManager(tmp_path, {"model": "cnn"})
    manager.save(trainer)
    statistics = trainer.model.state_dict()["1.running_var"]
    assert not np.allclose(statistics, 1.0)  # moved by training: a restore that dropped it would show
    resumed = cnn_trainer()
    manager.restore(resumed)
    np.testing.assert_array_equal(resumed.model.state_dict()["1.running_var"], statistics)
    resumed.fit(EPOCHS)
    assert_same_run(resumed, reference(12, cnn_trainer))


def test_a_cnn_checkpoint_with_a_float64_running_statistic_is_refused_not_cast(tmp_path):
    trainer = cnn_trainer()
    trainer.fit(1)
    manager = CheckpointManager(tmp_path)
    manager.save(trainer)
    rewrite(manager.path, lambda arrays, document: _retype(arrays, document, "1.running_mean"))
    with pytest.raises(CheckpointError, match=r"weight '1\.running_mean' is float64, the model's is float32"):
        manager.restore(cnn_trainer())


def _retype(arrays: dict, document: dict, name: str) -> None:
    key = document["state"]["trainer"]["model"][name]["__array__"]
    arrays[key] = arrays[key].astype(np.float64)


def test_a_stop_mid_epoch_records_the_position_and_the_epoch_in_progress(scratch):
    trainer = small_trainer()
    trainer_batches = len(trainer.loader)
    with pytest.raises(TrainingInterrupted):
        trainer.fit(EPOCHS, on_batch_end=lambda t: t.request_stop() if t.epoch == 1 else None)
    state = load_state(save_state(trainer.state_dict(), scratch / "mid.npz"))
    assert len(state["history"]) == 1
    assert state["epoch_position"]["batches_done"] == 1 < trainer_batches
    assert state["epoch_position"]["seen"] == 12


def test_a_stop_requested_at_an_epoch_end_stops_between_epochs(scratch):
    trainer = small_trainer()
    with pytest.raises(TrainingInterrupted):
        trainer.fit(EPOCHS, on_epoch_end=lambda t: t.request_stop() if t.epoch == 2 else None)
    assert trainer.epoch == 2 and trainer.epoch_position is None
    resumed = small_trainer()
    resumed.load_state_dict(load_state(save_state(trainer.state_dict(), scratch / "boundary.npz")))
    resumed.fit(EPOCHS)
    assert_same_run(resumed, reference(12))


def test_a_stop_after_the_last_epoch_is_not_an_interruption():
    trainer = small_trainer()
    trainer.fit(EPOCHS, on_epoch_end=lambda t: t.request_stop() if t.epoch == EPOCHS else None)
    assert trainer.epoch == EPOCHS


# ---- Ctrl-C and SIGTERM inside the process -----------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_under_stop_on_signals_stops_after_the_batch_it_arrived_in(signum):
    trainer = small_trainer()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal_after = 9  # batches, counted over the run: epoch 2, batch 3

    def send_signal(t: Trainer) -> None:
        if t.epoch * len(t.loader) + t.epoch_position.batches_done == signal_after:
            os.kill(os.getpid(), signum)

    with stop_on_signals(trainer) as received, pytest.raises(TrainingInterrupted):
        trainer.fit(EPOCHS, on_batch_end=send_signal)
    assert (trainer.epoch, trainer.epoch_position.batches_done) == (1, 3)
    assert received == [signum]
    assert {s: signal.getsignal(s) for s in previous} == previous  # the handlers are put back


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM),
                                     (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_interrupts_at_once(signals):
    trainer = small_trainer()

    def send_twice(t: Trainer) -> None:
        for signum in signals:
            os.kill(os.getpid(), signum)

    with stop_on_signals(trainer) as received, pytest.raises(KeyboardInterrupt) as raised:
        trainer.fit(EPOCHS, on_batch_end=send_twice)
    assert not isinstance(raised.value, TrainingInterrupted)
    assert received == list(signals) and trainer.epoch_position.batches_done == 1


# ---- configuration, corruption, atomic writes --------------------------------------------------------------


def saved_checkpoint(folder: Path, config: dict) -> CheckpointManager:
    trainer = small_trainer()
    trainer.fit(1)
    manager = CheckpointManager(folder, config)
    manager.save(trainer)
    return manager


def test_a_checkpoint_from_another_configuration_is_refused_naming_the_differences(tmp_path):
    saved_checkpoint(tmp_path, {"optimizer": "adam", "lr": 0.05, "hidden_sizes": (16,)})
    manager = CheckpointManager(tmp_path, {"optimizer": "sgd", "lr": 0.05, "hidden_sizes": [16]})
    with pytest.raises(CheckpointError) as raised:
        manager.restore(small_trainer(optimizer="sgd"))
    message = str(raised.value)
    assert str(manager.path) in message and "different configuration" in message
    assert 'optimizer "adam" there, "sgd" here' in message
    assert "lr" not in message and "hidden_sizes" not in message  # equal, and a tuple equals its JSON list
    assert "--checkpoint-dir" in message


def test_a_checkpoint_for_another_architecture_is_refused_even_without_a_config(tmp_path):
    manager = saved_checkpoint(tmp_path, {})
    with pytest.raises(CheckpointError, match="doesn't fit this model and optimizer") as raised:
        manager.restore(small_trainer(hidden=32))
    assert "shape" in str(raised.value)


def test_a_checkpoint_for_another_optimizer_is_refused_even_without_a_config(tmp_path):
    manager = saved_checkpoint(tmp_path, {})
    with pytest.raises(CheckpointError, match="Adam, not SGD"):
        manager.restore(small_trainer(optimizer="sgd"))


def damage(trainer: dict, where: str) -> None:
    """Break one thing in a Trainer.state_dict() that training itself would trip over later."""
    if where == "optimizer moment shape":
        trainer["optimizer"]["state"][0]["exp_avg"] = np.zeros((2, 2), np.float32)
    elif where == "optimizer moment NaN":
        trainer["optimizer"]["state"][1]["exp_avg_sq"] = trainer["optimizer"]["state"][1]["exp_avg_sq"] * np.nan
    elif where == "optimizer lr text":
        trainer["optimizer"]["param_groups"][0]["lr"] = "fast"
    elif where == "negative step count":
        trainer["optimizer"]["state"][0]["step"] = -1
    elif where == "weights of int":
        trainer["model"]["0.weight"] = trainer["model"]["0.weight"].astype(np.int64)
    elif where == "random state":
        trainer["rng"]["loader"]["state"]["state"] = "not a number"
    elif where == "position past the epoch":
        trainer["epoch_position"]["batches_done"] = 99
    elif where == "seen inconsistent":
        trainer["epoch_position"]["seen"] = 0
    elif where == "history of text":
        trainer["history"][0]["train_loss"] = "low"


DAMAGES = [
    "optimizer moment shape",
    "optimizer moment NaN",
    "optimizer lr text",
    "negative step count",
    "weights of int",
    "random state",
    "position past the epoch",
    "seen inconsistent",
    "history of text",
]


@pytest.mark.parametrize("where", DAMAGES)
def test_a_damaged_state_is_refused_before_anything_changes(where):
    source = small_trainer()
    with pytest.raises(TrainingInterrupted):
        source.fit(EPOCHS, on_batch_end=lambda t: t.request_stop() if t.epoch == 1 else None)
    state = source.state_dict()
    damage(state, where)
    target = small_trainer()
    target.fit(1)
    before = target.state_dict()
    with pytest.raises((ValueError, TypeError, KeyError)):
        target.load_state_dict(state)
    after = target.state_dict()
    assert json.dumps(after["rng"]) == json.dumps(before["rng"]) and after["history"] == before["history"]
    for name, array in before["model"].items():
        np.testing.assert_array_equal(after["model"][name], array)
    for moments_after, moments_before in zip(after["optimizer"]["state"], before["optimizer"]["state"], strict=True):
        for key, array in moments_before.items():
            np.testing.assert_array_equal(moments_after[key], array)


@pytest.mark.parametrize("where", DAMAGES)
def test_a_damaged_checkpoint_file_is_a_checkpoint_error(tmp_path, where):
    source = small_trainer()
    with pytest.raises(TrainingInterrupted):
        source.fit(EPOCHS, on_batch_end=lambda t: t.request_stop() if t.epoch == 1 else None)
    state = {"config": {}, "trainer": source.state_dict()}
    damage(state["trainer"], where)
    save_state(state, tmp_path / "checkpoint.npz")
    with pytest.raises(CheckpointError, match="doesn't fit this model and optimizer"):
        CheckpointManager(tmp_path).restore(small_trainer())


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_a_truncated_checkpoint_gives_a_clear_error(tmp_path, fraction):
    manager = saved_checkpoint(tmp_path, {})
    data = manager.path.read_bytes()
    manager.path.write_bytes(data[: int(fraction * len(data))])
    with pytest.raises(CheckpointError, match=r"damaged|truncated|not a checkpoint") as raised:
        manager.restore(small_trainer())
    assert str(manager.path) in str(raised.value)


def test_a_flipped_byte_is_caught(tmp_path):
    manager = saved_checkpoint(tmp_path, {})
    data = bytearray(manager.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the arrays: the zip's CRC-32 notices
    manager.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        manager.restore(small_trainer())


def test_other_files_are_not_checkpoints(tmp_path):
    model_file = save_model(small_trainer().model, tmp_path / "model.npz")
    with pytest.raises(CheckpointError, match="not a tinygrad_np checkpoint"):
        load_state(model_file)
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match=r"single \.npy array"):
        load_state(tmp_path / "array.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_state(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        CheckpointManager(tmp_path / "empty").restore(small_trainer())


def rewrite(path: Path, change) -> None:
    """Rewrite a checkpoint's arrays through np.savez after `change(arrays, document)`."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    document = json.loads(arrays["__meta__"].tobytes())
    change(arrays, document)
    arrays["__meta__"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_an_entry_the_state_never_refers_to_is_refused(tmp_path):
    manager = saved_checkpoint(tmp_path, {})
    rewrite(manager.path, lambda arrays, document: arrays.update(junk=np.zeros(1000)))
    with pytest.raises(CheckpointError, match=r"holds entries its state never refers to \(junk\)"):
        manager.restore(small_trainer())


def test_a_member_that_is_not_an_npy_array_is_refused(tmp_path):
    manager = saved_checkpoint(tmp_path, {})
    with zipfile.ZipFile(manager.path, "a") as archive:
        archive.writestr("a0", b"raw bytes, not .npy")
    with pytest.raises(CheckpointError, match=r"entry 'a0' is not a \.npy array"):
        manager.restore(small_trainer())


def test_arrays_larger_than_the_trainer_could_hold_are_refused_before_reading(tmp_path):
    manager = saved_checkpoint(tmp_path, {})
    big = np.zeros((1000, 1000), np.float32)  # 4 MB against a 20 -> 16 -> 4 model of 1.4 KB

    def swap_first_weight(arrays, document):
        arrays[document["state"]["trainer"]["model"]["0.weight"]["__array__"]] = big

    rewrite(manager.path, swap_first_weight)
    assert load_state(manager.path)["trainer"]["model"]["0.weight"].shape == (1000, 1000)  # the default bound
    with pytest.raises(CheckpointError, match=r"declares 4,00\d,\d+ bytes of arrays, more than the 1,\d+,\d+ expected"):
        manager.restore(small_trainer())


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_a_checkpoint_of_other_dtypes_is_refused_not_cast(tmp_path, where):
    manager = saved_checkpoint(tmp_path, {})

    def widen(arrays, document):
        trainer = document["state"]["trainer"]
        reference = trainer["model"]["0.weight"] if where == "model" else trainer["optimizer"]["state"][0]["exp_avg"]
        key = reference["__array__"]
        arrays[key] = arrays[key].astype(np.float64)

    rewrite(manager.path, widen)
    trainer = small_trainer()
    before = trainer.state_dict()
    expected = r"weight '0\.weight' is float64, the model's is float32" if where == "model" else (
        r"trainer\.optimizer\.state\[0\]\.exp_avg is float64, the model is float32"
    )
    with pytest.raises(CheckpointError, match=expected) as raised:
        manager.restore(trainer)
    assert "never cast" in str(raised.value)
    np.testing.assert_array_equal(trainer.state_dict()["model"]["0.weight"], before["model"]["0.weight"])


def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    manager = saved_checkpoint(tmp_path, {"run": 1})
    before = manager.path.read_bytes()

    def disk_full(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    trainer = small_trainer()
    trainer.fit(2)
    with pytest.raises(OSError, match="No space left"):
        manager.save(trainer)
    assert manager.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_the_checkpoint_is_plain_npz_and_json(tmp_path):
    manager = saved_checkpoint(tmp_path, {"seed": 7})
    with np.load(manager.path, allow_pickle=False) as npz:  # no pickle anywhere
        meta = json.loads(npz["__meta__"].tobytes())
        assert all(npz[key].dtype != object for key in npz.files)
    assert meta["format"] == "tinygrad_np-checkpoint" and meta["state"]["config"] == {"seed": 7}


# ---- divergence --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error")  # an overflow must be reported once, by the trainer, not as NumPy warnings
@pytest.mark.parametrize(
    ("lr", "expected"), [(1e6, r"diverged: the mean training loss in epoch 1 was"), (1e30, "became (nan|inf)")]
)
def test_a_diverging_run_stops_with_a_clear_message(lr, expected):
    trainer = small_trainer(optimizer="sgd")
    trainer.optimizer.lr = lr
    if trainer.scheduler is not None:
        trainer.scheduler.base_lrs = [lr]
    with pytest.raises(DivergenceError, match=expected) as raised:
        trainer.fit(EPOCHS)
    assert "lower the learning rate" in str(raised.value)
    assert trainer.epoch == 0


def test_healthy_training_stays_far_below_the_divergence_threshold():
    trainer = reference(12)
    assert max(h["train_loss"] for h in trainer.history) < trainer.divergence_threshold / 10


# ---- the real command, killed and interrupted ----------------------------------------------------------------

TRAIN_EPOCHS = 5
# 4,000 offline digits in batches of 4: 1,000 steps an epoch, long enough (~0.3 s) to be hit in the middle.
TRAIN = [
    "--offline",
    "--model",
    "mlp",
    "--hidden-sizes",
    "32",
    "--dropout",
    "0.3",
    "--batch-size",
    "4",
    "--epochs",
    str(TRAIN_EPOCHS),
    "--seed",
    "3",
    "--no-progress",
]


def start_train(cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "tinygrad_np", "train", *TRAIN, *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    status, err = finish(start_train(out, "--output-dir", str(out)))
    assert status == 0, err
    return out


def assert_same_outputs(out: Path, reference_out: Path) -> None:
    resumed, reference_model = load_model(out / "model.npz").state_dict(), load_model(reference_out / "model.npz")
    for name, array in reference_model.state_dict().items():
        assert resumed[name].dtype == array.dtype
        np.testing.assert_array_equal(resumed[name], array, err_msg=name)
    history = [json.loads((o / "metrics.json").read_text())["history"] for o in (out, reference_out)]
    for h in history:
        for record in h:
            del record["seconds"]
    assert history[0] == history[1] and len(history[0]) == TRAIN_EPOCHS


def checkpoint_writes(process: subprocess.Popen, path: Path, count: int) -> list[float]:
    """Watch `path` until it has been (re)written `count` times; the times at which each write was seen."""
    seen, times, deadline = None, [], time.monotonic() + 120
    while len(times) < count:
        assert process.poll() is None, f"training ended early: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        try:
            stat = path.stat()
            version = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            version = None
        if version is not None and version != seen:
            seen = version
            times.append(time.monotonic())
        time.sleep(0.002)
    return times


def stop_mid_epoch(tmp_path: Path, how: signal.Signals) -> tuple[subprocess.Popen, Path, str]:
    """Start training with checkpoints, wait for the checkpoints of epochs 1 and 2, send `how` half an epoch on."""
    out, checkpoint_dir = tmp_path / "run", tmp_path / "checkpoints"
    process = start_train(tmp_path, "--output-dir", str(out), "--checkpoint-dir", str(checkpoint_dir))
    first, second = checkpoint_writes(process, checkpoint_dir / "checkpoint.npz", 2)
    time.sleep((second - first) / 2)
    process.send_signal(how)
    _, err = finish(process)
    return process, out, err


def resume(tmp_path: Path, out: Path, checkpoint_dir: Path) -> str:
    status, err = finish(
        start_train(tmp_path, "--output-dir", str(out), "--checkpoint-dir", str(checkpoint_dir), "--resume")
    )
    assert status == 0, err
    assert f"resumed from {checkpoint_dir / 'checkpoint.npz'}" in err
    return err


def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(tmp_path, uninterrupted):
    process, out, _ = stop_mid_epoch(tmp_path, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "model.npz").exists()
    checkpoint = tmp_path / "checkpoints"
    state = load_state(checkpoint / "checkpoint.npz")
    assert 2 <= len(state["trainer"]["history"]) < TRAIN_EPOCHS  # killed with epochs still to go
    assert state["trainer"]["epoch_position"] is None  # SIGKILL can't save: the last epoch's checkpoint is it
    assert [p.name for p in checkpoint.iterdir()] == ["checkpoint.npz"]  # no temp file left half-written
    resume(tmp_path, out, checkpoint)
    assert_same_outputs(out, uninterrupted)


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_mid_epoch_saves_exits_128_plus_it_and_resume_gives_bit_identical_weights(
    tmp_path, uninterrupted, signum, status, said
):
    """Ctrl-C, and SIGTERM, which process managers and containers send, stop after the batch in progress."""
    process, out, err = stop_mid_epoch(tmp_path, signum)
    assert process.returncode == status, err
    assert "Traceback" not in err
    checkpoint = tmp_path / "checkpoints"
    last = err.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"tinygrad-np: {said} in epoch (\d+) after batch (\d+) of 1000; checkpoint saved to (\S+); "
        r"continue with the same options plus --checkpoint-dir (\S+) --resume",
        last,
    )
    assert found, last
    epoch, batch = int(found[1]), int(found[2])
    assert found[3] == str(checkpoint / "checkpoint.npz") and found[4] == str(checkpoint)
    state = load_state(checkpoint / "checkpoint.npz")["trainer"]
    assert (len(state["history"]) + 1, state["epoch_position"]["batches_done"]) == (epoch, batch)
    assert 0 < batch <= 1000 and 3 <= epoch <= TRAIN_EPOCHS
    err = resume(tmp_path, out, checkpoint)
    assert f"in epoch {epoch} after batch {batch} of 1000" in err
    assert_same_outputs(out, uninterrupted)


def test_ctrl_c_without_checkpoint_dir_saves_into_the_output_dir(tmp_path, uninterrupted):
    out = tmp_path / "run"
    process = start_train(tmp_path, "--output-dir", str(out))
    while "tinygrad-np: training" not in (line := process.stderr.readline()):
        assert line, f"training never started: {process.communicate()[1]}"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    status, err = finish(process)
    assert status == 130, err
    assert f"checkpoint saved to {out / 'checkpoint' / 'checkpoint.npz'}" in err
    assert f"--checkpoint-dir {out / 'checkpoint'} --resume" in err
    assert not (out / "model.npz").exists()
    resume(tmp_path, out, out / "checkpoint")
    assert_same_outputs(out, uninterrupted)


# ---- the command refuses what it can't resume ---------------------------------------------------------------

QUICK = ["train", "--offline", "--limit-train", "300", "--batch-size", "50", "--epochs", "2", "--no-progress"]


def run_main(capsys, *argv: str) -> tuple[int, str]:
    status = main([*QUICK, *argv])
    return status, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith(("tinygrad_np: ", "tinygrad-np: "))]
    assert "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


@pytest.mark.parametrize(("written", "resumed"), [("mlp", "two_layer"), ("two_layer", "mlp")])
def test_resume_into_another_network_names_a_few_fields_that_differ(tmp_path, capsys, written, resumed):
    # A larger network's checkpoint was refused as "more bytes than expected ... or tampered with", and a smaller
    # one's with every field of its spec on one line.
    folder = ["--output-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"), "--epochs", "1"]
    assert run_main(capsys, *folder, "--recipe", written)[0] == 0  # mlp: 784-256-128-10, 2.8 MB of arrays
    status, err = run_main(capsys, *folder, "--resume", "--recipe", resumed)
    line = error_line(err)
    assert status == 2 and "different configuration" in line and "tampered" not in line
    shown = re.search(r"configuration \((.*)\); resume with", line)[1].split("; ")
    assert len(shown) == SHOWN_DIFFERENCES + 1 and re.fullmatch(r"and \d+ more", shown[-1]), line
    assert all(" there, " in difference for difference in shown[:-1])


def test_resume_refuses_a_checkpoint_from_other_options(tmp_path, capsys):
    folder = ["--output-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck")]
    assert run_main(capsys, *folder)[0] == 0
    status, err = run_main(capsys, *folder, "--resume", "--optimizer", "sgd", "--init", "xavier")
    line = error_line(err)
    assert status == 2 and line.startswith("tinygrad-np train: error: checkpoint ")
    assert "different configuration" in line and 'optimizer "adam" there, "sgd" here' in line
    assert 'model.layers.0.init "he" there, "xavier" here' in line  # the one field of the network that differs
    status, err = run_main(capsys, *folder, "--resume", "--limit-train", "200")
    assert status == 2 and "train_data" in error_line(err)
    status, err = run_main(capsys, *folder, "--resume", "--epochs", "3")  # cosine: epochs set the schedule
    assert status == 2 and "epochs 2 there, 3 here" in error_line(err)


def test_resume_may_add_epochs_to_a_step_schedule_but_not_take_them_away(tmp_path, capsys):
    folder = ["--output-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"), "--step-size", "1"]
    assert run_main(capsys, *folder)[0] == 0
    status, err = run_main(capsys, *folder, "--resume", "--epochs", "1")
    assert status == 2 and "after epoch 2, past --epochs 1" in error_line(err)
    status, err = run_main(capsys, *folder, "--resume", "--epochs", "3")
    assert status == 0 and "resumed from" in err
    assert len(json.loads((tmp_path / "out" / "metrics.json").read_text())["history"]) == 3


def test_resume_refuses_a_corrupt_checkpoint_in_one_line(tmp_path, capsys):
    folder = ["--output-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck")]
    assert run_main(capsys, *folder)[0] == 0
    path = tmp_path / "ck" / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:-100])
    status, err = run_main(capsys, *folder, "--resume")
    assert status == 2 and f"checkpoint {path} is damaged" in error_line(err)


def test_a_diverging_run_writes_no_checkpoint_of_the_diverged_epoch(tmp_path, capsys):
    folder = ["--output-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck")]
    status, err = run_main(capsys, *folder, "--lr", "1e6")
    assert status == 2 and "training diverged" in error_line(err)
    assert not (tmp_path / "ck" / "checkpoint.npz").exists() and not (tmp_path / "out" / "model.npz").exists()
