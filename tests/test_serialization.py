"""save_model / load_model: exact round trips, atomic writes, and clear refusals of every kind of bad file."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from cnn_helpers import small_cnn
from hypothesis import given
from test_spec import specs

from tinygrad_np import Tensor, nn, no_grad
from tinygrad_np.serialization import HEADER_KEY, ModelFileError, load_model, read_metadata, save_model
from tinygrad_np.spec import LAYER_TYPES, TUTORIAL_SPEC, model_from_spec, normalize_spec, spec_from_model

MLP_SPEC = {
    "input_size": 784,
    "layers": [
        {"type": "Linear", "out_features": 32},
        {"type": "ReLU"},
        {"type": "Dropout", "p": 0.2},
        {"type": "Linear", "out_features": 10},
        {"type": "LogSoftmax"},
    ],
    "seed": 3,
}


def forward(model, x):
    with no_grad():
        return model(Tensor(x)).data


def images(n=16, shape=(784,), dtype=np.float32):
    return np.random.default_rng(0).random((n, *shape)).astype(dtype)


def write_npz(path, header, weights):
    """A file shaped like ours, but with whatever header and weights a test wants."""
    arrays = dict(weights)
    if header is not None:
        arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def header_for(spec, metadata=None):
    return {"format": "tinygrad-np-model", "version": 1, "spec": normalize_spec(spec), "metadata": metadata or {}}


# ---- round trips ----------------------------------------------------------------------------------------


def test_round_trip_gives_the_same_weights_outputs_and_metadata(tmp_path):
    model = model_from_spec(MLP_SPEC)
    for p in model.parameters():  # weights that no seed would give: the file must carry them
        p.data += np.random.default_rng(9).normal(size=p.shape).astype(p.dtype)
    metadata = {"test_accuracy": np.float32(0.97), "epochs": np.int64(5), "data": "offline sample",
                "history": [{"epoch": 1, "train_loss": 0.5}], "lr_per_epoch": np.array([0.1, 0.05])}
    path = save_model(model, tmp_path / "mlp.npz", metadata)
    loaded, loaded_metadata = load_model(path), read_metadata(path)

    assert spec_from_model(loaded) == spec_from_model(model)
    for (name, a), b in zip(model.named_parameters(), loaded.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
        assert a.dtype == b.dtype
    assert not loaded.training  # ready for inference: Dropout off
    x = images()
    np.testing.assert_array_equal(forward(loaded, x), forward(model.eval(), x))
    assert loaded_metadata == {"test_accuracy": pytest.approx(0.97), "epochs": 5, "data": "offline sample",
                               "history": [{"epoch": 1, "train_loss": 0.5}], "lr_per_epoch": [0.1, 0.05]}


def test_float64_and_flatten_models_round_trip(tmp_path):
    spec = {"input_size": [28, 28], "dtype": "float64",
            "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 8, "bias": False}, {"type": "Tanh"},
                       {"type": "Linear", "out_features": 10, "init": "xavier"}, {"type": "Softmax", "axis": 1}]}
    model = model_from_spec(spec)
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert read_metadata(tmp_path / "m.npz") == {}
    assert loaded[1].bias is None and loaded[3].init == "xavier"
    x = images(shape=(28, 28), dtype=np.float64)
    np.testing.assert_array_equal(forward(loaded, x), forward(model.eval(), x))


def test_a_model_built_in_code_round_trips(tmp_path):
    model = nn.Sequential(nn.Linear(784, 10, init="tutorial", generator=1), nn.ReLU(), nn.Linear(10, 10, generator=2))
    loaded = load_model(save_model(model, tmp_path / "tutorial.npz"))
    x = images()
    np.testing.assert_array_equal(forward(loaded, x), forward(model, x))


def test_every_activation_of_the_compare_layer_table_round_trips(tmp_path):
    model = nn.Sequential(nn.Linear(784, 16, generator=1), nn.LeakyReLU(0.2), nn.Linear(16, 12, generator=2),
                          nn.Tanh(), nn.Linear(12, 10, generator=3), nn.Sigmoid(), nn.Softmax(), nn.LogSoftmax())
    loaded = load_model(save_model(model, tmp_path / "activations.npz"))
    assert loaded[1].negative_slope == 0.2 and [type(layer) for layer in loaded] == [type(layer) for layer in model]
    x = images()
    np.testing.assert_array_equal(forward(loaded, x), forward(model, x))


@given(specs(LAYER_TYPES))  # every layer type, BatchNorm's buffers included
def test_round_trip_holds_for_random_specs(tmp_path_factory, spec):
    path = tmp_path_factory.mktemp("random") / "model.npz"
    model = model_from_spec(spec)
    shape = [spec["input_size"]] if isinstance(spec["input_size"], int) else spec["input_size"]
    x = images(3, tuple(shape), normalize_spec(spec)["dtype"])
    forward(model, x)  # in training mode: BatchNorm's running statistics move off their initial values
    loaded = load_model(save_model(model.eval(), path))
    assert spec_from_model(loaded) == spec_from_model(model)
    for (name, saved), restored in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert saved.dtype == restored.dtype, name
        np.testing.assert_array_equal(saved, restored, err_msg=name)
    np.testing.assert_array_equal(forward(loaded, x), forward(model, x))


def test_the_file_is_a_plain_npz_readable_without_pickle(tmp_path):
    model = model_from_spec(TUTORIAL_SPEC)
    path = save_model(model, tmp_path / "m.npz", {"note": "hi"})
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {HEADER_KEY, "0.weight", "0.bias", "2.weight", "2.bias"}
        header = json.loads(npz[HEADER_KEY].tobytes().decode("utf-8"))
        np.testing.assert_array_equal(npz["0.weight"], model[0].weight.data)
    assert header["spec"] == spec_from_model(model)
    assert header["metadata"] == {"note": "hi"}


# ---- convolutional networks: BatchNorm's running statistics are part of the file -----------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_cnn_round_trips_with_its_running_statistics(tmp_path, dtype):
    model = small_cnn(dtype)
    loaded = load_model(save_model(model, tmp_path / "cnn.npz"))
    assert spec_from_model(loaded) == spec_from_model(model)
    assert [type(layer) for layer in loaded] == [type(layer) for layer in model]
    saved, restored = model.state_dict(), loaded.state_dict()
    assert list(restored) == list(saved) and "1.running_var" in saved and "8.num_batches_tracked" in saved
    for name, value in saved.items():
        assert restored[name].dtype == value.dtype, name
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    assert int(restored["1.num_batches_tracked"]) == 3 and not loaded.training
    x = images(8, (1, 28, 28), dtype)
    np.testing.assert_array_equal(forward(loaded, x), forward(model, x))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda w: w.pop("1.running_var"), r"missing 1\.running_var"),
        (lambda w: w.update({"1.running_mean": np.zeros(7, np.float32)}), r"'1\.running_mean' has shape \(7,\)"),
        (lambda w: w.update({"8.num_batches_tracked": np.array(3.0)}), r"'8\.num_batches_tracked' is float64.*int64"),
        (lambda w: w.update({"1.running_var": w["1.running_var"].astype(np.float64)}), r"'1\.running_var' is float64"),
        (lambda w: w.update({"1.running_var": np.full(6, np.nan, np.float32)}), r"'1\.running_var' holds NaN"),
        (lambda w: w.update({"4.bias": np.zeros(8, np.float32)}), r"unexpected 4\.bias"),
    ],
)
def test_cnn_weights_and_buffers_that_do_not_fit_the_spec_are_refused(tmp_path, change, expected):
    model = small_cnn()
    weights = model.state_dict()
    change(weights)
    path = tmp_path / "m.npz"
    write_npz(path, header_for(spec_from_model(model)), weights)
    with pytest.raises(ModelFileError, match=expected):
        load_model(path)


def test_a_buffer_declaring_gigabytes_is_refused_from_its_header(tmp_path):
    """A running statistic whose .npy header claims 2**28 floats (1 GiB) is refused before anything is read."""
    model = small_cnn()
    path = tmp_path / "m.npz"
    write_npz(path, header_for(spec_from_model(model)), model.state_dict())
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(bomb, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "1.running_mean.npy":
                data = data.replace(b"'shape': (6,)", b"'shape': (268435456,)", 1)
            target.writestr(info, data)
    with pytest.raises(ModelFileError, match=r"'1\.running_mean' declares 1,073,741,824 bytes"):
        load_model(bomb)


# ---- atomic writes --------------------------------------------------------------------------------------


def test_saving_creates_missing_folders(tmp_path):
    path = save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "runs" / "today" / "m.npz")
    assert path == tmp_path / "runs" / "today" / "m.npz" and path.is_file()


def test_saving_leaves_no_temp_files_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "m.npz"
    save_model(model_from_spec(TUTORIAL_SPEC), path, {"version": 1})
    save_model(model_from_spec({**TUTORIAL_SPEC, "seed": 5}), path, {"version": 2})
    assert os.listdir(tmp_path) == ["m.npz"]
    assert read_metadata(path) == {"version": 2}


def test_a_failed_save_keeps_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_model(model_from_spec(TUTORIAL_SPEC), path, {"version": 1})
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_model(model_from_spec(TUTORIAL_SPEC), path, {"version": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


# ---- what save_model refuses ----------------------------------------------------------------------------


def test_save_refuses_what_it_cannot_write_faithfully(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="Custom can't be written as a spec"):
        save_model(nn.Sequential(nn.Linear(4, 2), Custom()), tmp_path / "a.npz")
    with pytest.raises(TypeError, match="metadata must be a dict"):
        save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "b.npz", metadata=[1, 2])
    with pytest.raises(TypeError, match="JSON"):
        save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "c.npz", metadata={"when": object()})
    diverged = model_from_spec(TUTORIAL_SPEC)
    diverged[2].bias.data[3] = np.nan
    with pytest.raises(ValueError, match=r"'2\.bias' holds NaN"):
        save_model(diverged, tmp_path / "d.npz")
    assert os.listdir(tmp_path) == []


# ---- what load_model refuses ----------------------------------------------------------------------------


def test_a_missing_file_is_a_file_not_found_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.npz does not exist"):
        load_model(tmp_path / "nothing.npz")


@pytest.fixture
def saved(tmp_path):
    return save_model(model_from_spec(MLP_SPEC), tmp_path / "good.npz", {"accuracy": 0.9})


@pytest.mark.parametrize("fraction", [0.0, 0.0001, 0.1, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused(saved, tmp_path, fraction):
    data = saved.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError) as info:
        load_model(cut)
    assert str(cut) in str(info.value)


def test_a_corrupted_byte_is_caught_by_the_checksum(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the first weight matrix
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(bad)


def test_pickled_object_arrays_are_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.npz"
    weights = model_from_spec(TUTORIAL_SPEC).state_dict()
    weights["0.weight"] = np.array([Boom()], dtype=object)
    write_npz(path, header_for(TUTORIAL_SPEC), weights)
    with pytest.raises(ModelFileError, match=r"'0\.weight' holds pickled Python objects"):
        load_model(path)
    path2 = tmp_path / "evil_header.npz"
    with open(path2, "wb") as f:
        np.savez(f, **{HEADER_KEY: np.array([Boom()], dtype=object)})
    with pytest.raises(ModelFileError, match="pickled"):
        load_model(path2)
    raw_pickle = tmp_path / "model.npz"
    raw_pickle.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFileError, match=r"not an \.npz archive"):
        load_model(raw_pickle)
    assert not (tmp_path / "pwned").exists()


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = {**MLP_SPEC, "layers": [{"type": "Linear", "out_features": 64}, *MLP_SPEC["layers"][1:]]}
    weights = model_from_spec(other).state_dict()
    path = tmp_path / "mixed.npz"
    write_npz(path, header_for(MLP_SPEC), weights)
    with pytest.raises(ModelFileError, match=r"'0\.weight' has shape \(64, 784\).*needs \(32, 784\)"):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda w: w.pop("3.bias"), r"missing 3\.bias"),
        (lambda w: w.update({"4.weight": np.zeros((2, 2), np.float32)}), r"unexpected 4\.weight"),
        (lambda w: w.update({"0.bias": w["0.bias"].astype(np.float64)}), r"'0\.bias' is float64"),
        (lambda w: w.update({"0.bias": np.full(32, np.inf, np.float32)}), r"'0\.bias' holds NaN or inf"),
    ],
)
def test_weights_that_do_not_fit_the_spec_are_refused(tmp_path, change, expected):
    weights = model_from_spec(MLP_SPEC).state_dict()
    change(weights)
    path = tmp_path / "m.npz"
    write_npz(path, header_for(MLP_SPEC), weights)
    with pytest.raises(ModelFileError, match=expected) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "not a tinygrad_np model file"),
        ({"format": "something-else", "version": 1}, "format"),
        ({"format": "tinygrad-np-model", "version": 99, "spec": TUTORIAL_SPEC}, "version 99"),
        ({"format": "tinygrad-np-model", "version": 1, "spec": {"input_size": 784, "layers": [{"type": "Conv2d"}]}},
         r"saved architecture is invalid: layers\[0\]"),
        ({"format": "tinygrad-np-model", "version": 1, "spec": TUTORIAL_SPEC, "metadata": [1]}, "metadata"),
    ],
)
def test_bad_headers_are_refused(tmp_path, header, expected):
    path = tmp_path / "m.npz"
    write_npz(path, header, model_from_spec(TUTORIAL_SPEC).state_dict())
    with pytest.raises(ModelFileError, match=expected):
        load_model(path)


def test_a_header_that_is_not_json_or_not_bytes_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, **{HEADER_KEY: np.frombuffer(b"{not json", dtype=np.uint8)})
    with pytest.raises(ModelFileError, match="not valid UTF-8 JSON"):
        load_model(path)
    with open(path, "wb") as f:
        np.savez(f, **{HEADER_KEY: np.array("a unicode string")})
    with pytest.raises(ModelFileError, match="must be UTF-8 bytes"):
        load_model(path)


def test_a_single_npy_array_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ModelFileError, match=r"single \.npy array"):
        load_model(path)


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


@pytest.mark.parametrize("cut", [10, 50, 200, 0.5])
def test_a_damaged_file_leaves_no_open_handle(tmp_path, cut):
    """np.load(path) on a damaged archive can keep its file open; both loaders must close it."""
    import gc
    import warnings

    from tinygrad_np.checkpoint import CheckpointError, load_state, save_state

    path = tmp_path / "damaged.npz"
    save_state({"weights": np.ones(100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(CheckpointError):
            load_state(path)
        with pytest.raises(ModelFileError):
            load_model(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_load_model_returns_the_model_ready_for_inference(tmp_path):
    """What the README shows: `load_model(path)` is the model, so `.eval()` and calls chain on it."""
    path = save_model(model_from_spec(MLP_SPEC), tmp_path / "m.npz", {"test_accuracy": 0.9})
    model = load_model(path).eval()
    assert isinstance(model, nn.Sequential) and not model.training
    assert forward(model, images()).shape == (16, 10)
    assert read_metadata(path) == {"test_accuracy": 0.9}


def test_read_metadata_does_not_read_the_weights(tmp_path):
    path = save_model(model_from_spec(MLP_SPEC), tmp_path / "m.npz", {"epochs": 3})
    weights = model_from_spec(MLP_SPEC).state_dict()
    weights["0.weight"] = np.full((32, 784), np.nan, np.float32)  # load_model would refuse these
    write_npz(path, header_for(MLP_SPEC, {"epochs": 3}), weights)
    assert read_metadata(path) == {"epochs": 3}
    with pytest.raises(ModelFileError, match="NaN"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="is a directory"):
        read_metadata(tmp_path)
