"""Fuzzing the model and checkpoint loaders: whatever the bytes, only the documented errors come out.

`serialization.load_model` may raise ModelFileError (and FileNotFoundError for a missing file);
`checkpoint.load_state` and `CheckpointManager.restore` may raise CheckpointError. Both messages name the
file. Inputs: random bytes; valid files with bytes flipped, cut, inserted or deleted (the files are kept
small, so most positions hit zip and .npy headers rather than array data behind a CRC); valid archives
whose JSON document has one value replaced or whose arrays are swapped for arrays of another shape or dtype,
which pass every CRC and reach the checks behind them; and valid zip files whose members are renamed,
added, reshaped or inflated to up to 2 GiB of zeros, which must be refused within a few megabytes of memory.
"""

import json
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from bombs import members_of, zip_archive
from fuzzing import archive_change, byte_mutation, change_archive, mutate
from hypothesis import example, given
from hypothesis import strategies as st

from tinygrad_np.checkpoint import META_KEY, CheckpointError, CheckpointManager, load_state
from tinygrad_np.nn import functional as F
from tinygrad_np.serialization import HEADER_KEY, ModelFileError, load_model, read_metadata, save_model
from tinygrad_np.spec import mlp_spec, model_from_spec
from tinygrad_np.train import (
    DivergenceError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    build_model,
    build_optimizer,
    build_scheduler,
)

SPEC = {
    "input_size": 6,
    "layers": [
        {"type": "Linear", "out_features": 4},
        {"type": "ReLU"},
        {"type": "Dropout", "p": 0.5},
        {"type": "Linear", "out_features": 3},
    ],
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder per module: Hypothesis runs many examples per test, each rewriting the same files."""
    return tmp_path_factory.mktemp("fuzz-files")


# ---- ways to damage a file ---------------------------------------------------------------------------------



# JSON values to plant in a document, huge integers included: a layer size of 2**40 must be refused from the
# header, before anything is allocated.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 300)
    | st.sampled_from([10**9, 2**31, 2**53, 2**63, 2**70])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["Linear", "ReLU", "Dropout", "Flatten", "float64", "a0", "a1", "PCG64", "Adam"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def json_paths(value, prefix=()):
    """Every place in a JSON document: the root, each dict key and each list index, depth first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_paths(item, (*prefix, index))


def replaced(document, path: tuple, value, delete: bool):
    """A copy of `document` with the value at `path` replaced by `value` (or removed, if `delete`)."""
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


def draw_document_change(data, document):
    path = data.draw(st.sampled_from(list(json_paths(document))), label="path")
    delete = bool(path) and data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(json_values, label="value")
    return replaced(document, path, value, delete)


def draw_array(data) -> np.ndarray:
    dtype = data.draw(st.sampled_from(["float32", "float64", "int64", "uint8", "bool", "complex64", "<U3", "object"]))
    shape = data.draw(st.lists(st.integers(0, 5), max_size=3).map(tuple), label="shape")
    if dtype == "object":
        return np.array([{"evil": "os.system"}] * int(np.prod(shape)), dtype=object).reshape(shape)
    fill = {"float32": np.nan, "float64": np.inf, "complex64": np.nan, "<U3": "abc"}.get(dtype, 0)
    return np.full(shape, fill, dtype=dtype)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


# ---- model files ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(scratch) -> Path:
    return save_model(model_from_spec(SPEC), scratch / "valid-model.npz", metadata={"test_accuracy": 0.5})


def load_or_model_file_error(path: Path, data: bytes | None = None) -> None:
    """load_model either returns a working model or raises ModelFileError naming the file."""
    if data is not None:
        path.write_bytes(data)
    try:
        model, metadata = load_model(path), read_metadata(path)
    except ModelFileError as err:
        assert str(path) in str(err)
        return
    assert isinstance(metadata, dict)
    for name, parameter in model.named_parameters():
        assert np.isfinite(parameter.data).all(), name
    inputs = np.ones((2, *np.atleast_1d(getattr(model, "input_size", 6))), dtype=model.dtype)
    model(inputs)  # what was accepted must run


@given(st.binary(max_size=2000))
@example(b"")
@example(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
@example(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }")  # .npy of objects
@example(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94.")  # a pickle
def test_load_model_on_random_bytes(scratch, data):
    load_or_model_file_error(scratch / "random-model.npz", data)


@given(st.lists(byte_mutation, min_size=1, max_size=4))
def test_load_model_on_mutated_files(scratch, model_file, mutations):
    load_or_model_file_error(scratch / "mutated-model.npz", mutate(model_file.read_bytes(), mutations))


@given(st.data())
def test_load_model_on_a_changed_header(scratch, model_file, data):
    arrays = read_npz(model_file)
    header = json.loads(arrays[HEADER_KEY].tobytes())
    text = json.dumps(draw_document_change(data, header)).encode()
    arrays[HEADER_KEY] = np.frombuffer(text, dtype=np.uint8)
    path = scratch / "header-model.npz"
    np.savez(path, **arrays)
    load_or_model_file_error(path)


@given(st.data())
def test_load_model_on_swapped_arrays(scratch, model_file, data):
    arrays = read_npz(model_file)
    name = data.draw(st.sampled_from([*sorted(arrays), "extra"]), label="entry")
    arrays[name] = draw_array(data)
    path = scratch / "swapped-model.npz"
    np.savez(path, **arrays)  # np.savez pickles object arrays: exactly what load_model must refuse
    load_or_model_file_error(path)


@contextmanager
def memory_bounded(mib: int = 32):
    """Whatever the archive declares, loading it may allocate (tracemalloc sees NumPy's buffers) only this much."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mib * 2**20, f"peak {peak / 2**20:.0f} MiB"


@given(st.lists(archive_change, min_size=1, max_size=3))
def test_load_model_on_a_changed_archive(scratch, model_file, changes):
    path = scratch / "archive-model.npz"
    path.write_bytes(zip_archive(change_archive(members_of(model_file), changes)))
    with memory_bounded():
        load_or_model_file_error(path)


def test_a_layer_type_that_is_a_list_is_refused(scratch, model_file):
    arrays = read_npz(model_file)
    header = json.loads(arrays[HEADER_KEY].tobytes())
    header["spec"]["layers"][1]["type"] = []
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path = scratch / "list-type-model.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="'type' must be one of"):
        load_model(path)


def test_a_header_declaring_a_huge_layer_is_refused(scratch, model_file):
    arrays = read_npz(model_file)
    header = json.loads(arrays[HEADER_KEY].tobytes())
    header["spec"]["layers"][0]["out_features"] = 2**70
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path = scratch / "huge-model.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError):
        load_model(path)


# ---- checkpoints ---------------------------------------------------------------------------------------------

CONFIG = {"optimizer": "adam", "hidden_sizes": [4], "seed": 5}


def small_trainer() -> Trainer:
    data = np.random.default_rng(2)
    images, labels = data.random((16, 6), dtype=np.float32), data.integers(0, 3, 16)
    config = TrainConfig(mlp_spec(6, [4], 3, dropout=0.5), epochs=3, batch_size=5, cosine=True, seed=5)
    model = build_model(config)
    optimizer = build_optimizer(config, model)
    return Trainer(
        model,
        optimizer,
        F.cross_entropy,
        (images, labels),
        batch_size=5,
        scheduler=build_scheduler(config, optimizer),
        seed=config.seed,
    )


@pytest.fixture(scope="module")
def checkpoint_file(scratch) -> Path:
    """A checkpoint saved in the middle of epoch 2, so every part of the state is present."""
    trainer = small_trainer()

    def stop_in_epoch_2(t: Trainer) -> None:
        if t.epoch == 1 and t.epoch_position.batches_done == 2:
            t.request_stop()

    with pytest.raises(TrainingInterrupted):
        trainer.fit(3, on_batch_end=stop_in_epoch_2)
    return CheckpointManager(scratch / "valid", CONFIG).save(trainer)


def restore_or_checkpoint_error(folder: Path, data: bytes | None = None) -> None:
    """restore either gives a trainer that trains on, or raises CheckpointError naming the file."""
    path = folder / "checkpoint.npz"
    if data is not None:
        folder.mkdir(exist_ok=True)
        path.write_bytes(data)
    trainer = small_trainer()
    try:
        load_state(path)
        CheckpointManager(folder, CONFIG).restore(trainer)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    # What was accepted must train on; finite but absurd values (a beta of 1, weights of 1e30) may still make
    # training diverge, which it reports in its own documented way.
    try:
        trainer.fit(3)
    except DivergenceError:
        return
    assert trainer.epoch == 3


@given(st.binary(max_size=2000))
@example(b"")
@example(b"PK\x05\x06" + b"\0" * 18)
def test_restore_on_random_bytes(scratch, data):
    restore_or_checkpoint_error(scratch / "random", data)


@given(st.lists(byte_mutation, min_size=1, max_size=4))
def test_restore_on_mutated_files(scratch, checkpoint_file, mutations):
    restore_or_checkpoint_error(scratch / "mutated", mutate(checkpoint_file.read_bytes(), mutations))


@given(st.data())
def test_restore_on_a_changed_document(scratch, checkpoint_file, data):
    arrays = read_npz(checkpoint_file)
    document = json.loads(arrays[META_KEY].tobytes())
    # Mostly inside the trainer's state: a changed config is refused at once, which one example shows well.
    subtree = data.draw(st.sampled_from([(), ("state", "trainer"), ("state", "trainer"), ("state", "trainer")]))
    inner = document
    for step in subtree:
        inner = inner[step]
    changed = draw_document_change(data, inner)
    document = replaced(document, subtree, changed, delete=False)
    arrays[META_KEY] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    folder = scratch / "document"
    folder.mkdir(exist_ok=True)
    np.savez(folder / "checkpoint.npz", **arrays)
    restore_or_checkpoint_error(folder)


@given(st.data())
def test_restore_on_swapped_arrays(scratch, checkpoint_file, data):
    arrays = read_npz(checkpoint_file)
    name = data.draw(st.sampled_from([*sorted(arrays), "extra"]), label="entry")
    arrays[name] = draw_array(data)
    folder = scratch / "swapped"
    folder.mkdir(exist_ok=True)
    np.savez(folder / "checkpoint.npz", **arrays)
    restore_or_checkpoint_error(folder)


@given(st.lists(archive_change, min_size=1, max_size=3))
def test_restore_on_a_changed_archive(scratch, checkpoint_file, changes):
    folder = scratch / "archive"
    folder.mkdir(exist_ok=True)
    (folder / "checkpoint.npz").write_bytes(zip_archive(change_archive(members_of(checkpoint_file), changes)))
    with memory_bounded():
        restore_or_checkpoint_error(folder)
