"""Declarative model specs: building, the canonical round trip, validation messages, JSON and TOML files."""

import json
import re
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np import Tensor, nn, no_grad
from tinygrad_np.nn.init import INITS, Init
from tinygrad_np.spec import (
    LAYER_TYPES,
    MAX_PARAMETERS,
    TUTORIAL_SPEC,
    SpecError,
    SpecSequential,
    load_spec,
    mlp_spec,
    model_from_spec,
    normalize_spec,
    parameter_shapes,
    spec_from_model,
    state_shapes,
)

EXAMPLE = {
    "input_size": 784,
    "layers": [
        {"type": "Linear", "out_features": 128},
        {"type": "ReLU"},
        {"type": "Dropout", "p": 0.1},
        {"type": "Linear", "out_features": 10},
    ],
    "seed": 0,
}

EXAMPLE_TOML = """
input_size = 784
seed = 0

[[layers]]
type = "Linear"
out_features = 128

[[layers]]
type = "ReLU"

[[layers]]
type = "Dropout"
p = 0.1

[[layers]]
type = "Linear"
out_features = 10
"""


def forward(model, x):
    with no_grad():
        return model(Tensor(x)).data


# ---- building -------------------------------------------------------------------------------------------


def test_example_builds_the_layers_with_inferred_sizes():
    model = model_from_spec(EXAMPLE)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (model[0].in_features, model[0].out_features) == (784, 128)
    assert (model[3].in_features, model[3].out_features) == (128, 10)
    assert model[2].p == 0.1
    assert model[0].weight.dtype == np.float32
    assert forward(model.eval(), np.zeros((3, 784), np.float32)).shape == (3, 10)


def test_the_same_seed_gives_the_same_weights_and_dropout_masks():
    a, b, c = model_from_spec(EXAMPLE), model_from_spec(EXAMPLE), model_from_spec({**EXAMPLE, "seed": 1})
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
        if name.endswith("weight"):  # He init starts biases at zero whatever the seed
            assert not np.array_equal(pa.data, pc.data), name
    x = np.random.default_rng(0).random((5, 784)).astype(np.float32)
    np.testing.assert_array_equal(forward(a, x), forward(b, x))  # training mode: Dropout draws from the seed


def test_a_seed_argument_replaces_the_specs_own():
    overridden = model_from_spec(EXAMPLE, seed=7)
    assert overridden.seed == 7 and spec_from_model(overridden)["seed"] == 7
    np.testing.assert_array_equal(overridden[0].weight.data, model_from_spec({**EXAMPLE, "seed": 7})[0].weight.data)
    with pytest.raises(SpecError, match="'seed'"):
        model_from_spec(EXAMPLE, seed=-1)


def test_init_dtype_and_bias_options():
    spec = {
        "input_size": 6,
        "init": "tutorial",
        "dtype": "float64",
        "layers": [{"type": "Linear", "out_features": 4}, {"type": "Linear", "out_features": 3, "bias": False,
                                                          "init": "xavier"}],
    }
    model = model_from_spec(spec)
    assert model[0].init == "tutorial" and model[1].init == "xavier"
    assert model[1].bias is None
    assert all(p.dtype == np.float64 for p in model.parameters())
    # The tutorial draws weights and biases from U(-0.5, 0.5); He/Xavier biases start at 0.
    assert np.all(np.abs(model[0].bias.data) < 0.5) and np.any(model[0].bias.data != 0)


def test_flatten_takes_a_multi_dimensional_input_size():
    spec = {"input_size": [28, 28], "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 10},
                                               {"type": "LogSoftmax", "axis": 1}]}
    model = model_from_spec(spec)
    assert model[1].in_features == 784
    out = forward(model, np.random.default_rng(0).random((2, 28, 28)).astype(np.float32))
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1, rtol=1e-6)


def test_linear_on_the_last_dimension_before_a_partial_flatten():
    spec = {"input_size": [3, 4, 5], "layers": [{"type": "Linear", "out_features": 2},
                                                {"type": "Flatten", "start_dim": 2},
                                                {"type": "Linear", "out_features": 6}]}
    model = model_from_spec(spec)
    assert model[2].in_features == 8  # (3, 4, 2) -> (3, 8)
    assert forward(model, np.zeros((7, 3, 4, 5), np.float32)).shape == (7, 3, 6)


def test_the_tutorial_spec_is_the_784_10_10_network():
    model = model_from_spec(TUTORIAL_SPEC)
    assert [p.shape for p in model.parameters()] == [(10, 784), (10,), (10, 10), (10,)]
    assert isinstance(model[1], nn.ReLU)


# ---- the round trip -------------------------------------------------------------------------------------


def test_spec_model_spec_round_trip_gives_the_canonical_form():
    canonical = normalize_spec(EXAMPLE)
    assert canonical == {
        "input_size": 784,
        "dtype": "float32",
        "seed": 0,
        "layers": [
            {"type": "Linear", "out_features": 128, "bias": True, "init": "he"},
            {"type": "ReLU"},
            {"type": "Dropout", "p": 0.1},
            {"type": "Linear", "out_features": 10, "bias": True, "init": "he"},
        ],
    }
    assert spec_from_model(model_from_spec(EXAMPLE)) == canonical
    assert normalize_spec(canonical) == canonical
    assert json.loads(json.dumps(canonical)) == canonical  # plain JSON data


def test_spec_from_a_model_built_in_code():
    model = nn.Sequential(nn.Linear(784, 32, init="xavier"), nn.Tanh(), nn.Linear(32, 10), nn.Softmax(axis=1))
    spec = spec_from_model(model)
    assert spec["input_size"] == 784 and spec["seed"] is None
    assert [layer["type"] for layer in spec["layers"]] == ["Linear", "Tanh", "Linear", "Softmax"]
    rebuilt = model_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    x = np.random.default_rng(1).random((4, 784)).astype(np.float32)
    np.testing.assert_array_equal(forward(rebuilt, x), forward(model, x))


def test_spec_from_model_needs_the_input_size_when_a_flatten_comes_first():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(SpecError, match="input_size"):
        spec_from_model(model)
    assert spec_from_model(model, input_size=[28, 28])["input_size"] == [28, 28]


# The layers whose state is all parameters: test_serialization draws its specs from these until model files
# hold buffers (BatchNorm's running statistics) too.
WITHOUT_BUFFERS = tuple(kind for kind in LAYER_TYPES if not kind.startswith("BatchNorm"))


@st.composite
def specs(draw, layer_types=WITHOUT_BUFFERS):
    """Random valid specs of `layer_types`, sizes chained, sometimes a multi-dimensional input or images."""
    form = draw(st.sampled_from(["flat", "multi", "images"]))
    input_size = {"flat": st.integers(1, 8), "multi": st.lists(st.integers(1, 4), min_size=2, max_size=3),
                  "images": st.lists(st.integers(1, 3), min_size=1, max_size=1).map(
                      lambda c: [*c, *draw(st.lists(st.integers(3, 7), min_size=2, max_size=2))])}[form]
    input_size = draw(input_size)
    shape = [input_size] if form == "flat" else list(input_size)  # one example's shape, tracked layer by layer
    layers = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from([k for k in layer_types if _fits(k, shape)]))
        layer = {"type": kind}
        rank = len(shape)
        if kind == "Linear":
            layer["out_features"] = shape[-1] = draw(st.integers(1, 6))
            if draw(st.booleans()):
                layer["bias"] = draw(st.booleans())
            if draw(st.booleans()):
                layer["init"] = draw(st.sampled_from(INITS))
        elif kind in ("Softmax", "LogSoftmax") and draw(st.booleans()):
            layer["axis"] = draw(st.integers(-rank - 1, rank))
        elif kind == "Dropout" and draw(st.booleans()):
            layer["p"] = draw(st.floats(0, 0.9))
        elif kind == "LeakyReLU" and draw(st.booleans()):
            layer["negative_slope"] = draw(st.floats(-2, 2) | st.integers(-2, 2))
        elif kind == "Flatten":
            layer["start_dim"] = draw(st.integers(1, rank))
            shape = [*shape[: layer["start_dim"] - 1], int(np.prod(shape[layer["start_dim"] - 1 :]))]
        elif kind in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            square = draw(st.booleans())
            kernel = [draw(st.integers(1, min(shape[1:]) if square else n)) for n in shape[1:]]
            kernel = [kernel[0]] * 2 if square else kernel
            padding = [draw(st.integers(0, k // 2)) for k in kernel]
            stride = draw(st.integers(1, 2))
            layer.update(kernel_size=kernel[0] if square else kernel, padding=padding)
            if kind != "MaxPool2d" or draw(st.booleans()):
                layer["stride"] = stride
            else:
                stride = kernel
            strides = [stride] * 2 if isinstance(stride, int) else stride
            shape[1:] = [(n + 2 * p - k) // s + 1 for n, k, p, s in zip(shape[1:], kernel, padding, strides,
                                                                     strict=True)]
            if kind == "Conv2d":
                layer["out_channels"] = shape[0] = draw(st.integers(1, 3))
                if draw(st.booleans()):
                    layer["init"] = draw(st.sampled_from(INITS))
        elif kind.startswith("BatchNorm"):
            if draw(st.booleans()):
                layer["momentum"] = draw(st.sampled_from([None, 0.5]))
            layer["affine"], layer["track_running_stats"] = draw(st.booleans()), draw(st.booleans())
        layers.append(layer)
    spec = {"input_size": input_size, "layers": layers}
    for key, values in (("seed", st.integers(0, 2**32)), ("init", st.sampled_from(INITS)),
                        ("dtype", st.sampled_from(["float32", "float64"]))):
        if draw(st.booleans()):
            spec[key] = draw(values)
    return spec


def _fits(kind, shape):
    """Whether a layer of `kind` takes one example of `shape` (images of at least 1x1 for the 2-D layers)."""
    if kind in ("Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm2d"):
        return len(shape) == 3
    return len(shape) in (1, 2) if kind == "BatchNorm1d" else True


@given(specs(LAYER_TYPES))
def test_round_trip_holds_for_random_specs(spec):
    canonical = normalize_spec(spec)
    model = model_from_spec(spec)
    assert spec_from_model(model) == canonical
    assert normalize_spec(canonical) == canonical
    shape = (2, *([spec["input_size"]] if isinstance(spec["input_size"], int) else spec["input_size"]))
    x = np.random.default_rng(0).random(shape).astype(canonical["dtype"])
    out = forward(model.eval(), x)
    assert out.dtype == np.dtype(canonical["dtype"])
    # The rebuilt model, given the same weights, computes the same function.
    twin = model_from_spec(spec_from_model(model))
    twin.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(forward(twin.eval(), x), out)


# ---- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([], "must be a mapping"),
        ({"layers": [{"type": "ReLU"}]}, "missing field 'input_size'"),
        ({"input_size": 0, "layers": [{"type": "ReLU"}]}, "'input_size'"),
        ({"input_size": True, "layers": [{"type": "ReLU"}]}, "'input_size'"),
        ({"input_size": [28, 0], "layers": [{"type": "ReLU"}]}, "'input_size'"),
        ({"input_size": 4, "layers": []}, "'layers' must be a non-empty list"),
        ({"input_size": 4, "layer": []}, "unknown field 'layer' (did you mean 'layers'?)"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}], "seed": -1}, "'seed'"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}], "seed": 1.5}, "'seed'"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}], "dtype": "float16"}, "'dtype' must be one of"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}], "init": "kaiming"}, "'init' must be one of"),
        ({"input_size": 4, "layers": ["ReLU"]}, "layers[0]: a layer must be a mapping"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}, {"type": "Relu"}]}, "layers[1]: 'type' must be one of"),
        ({"input_size": 4, "layers": [{"type": "Relu"}]}, "did you mean 'ReLU'?"),
        ({"input_size": 4, "layers": [{"out_features": 3}]}, "layers[0]: 'type'"),
        ({"input_size": 4, "layers": [{"type": "Linear"}]}, "layers[0] (Linear): missing field 'out_features'"),
        ({"input_size": 4, "layers": [{"type": "Linear", "out_features": 0}]}, "layers[0] (Linear): 'out_features'"),
        ({"input_size": 4, "layers": [{"type": "Linear", "out_features": 2.0}]}, "layers[0] (Linear): 'out_features'"),
        ({"input_size": 4, "layers": [{"type": "Linear", "out_features": 2, "bias": "yes"}]}, "(Linear): 'bias'"),
        ({"input_size": 4, "layers": [{"type": "Linear", "out_features": 2, "init": "glorot"}]}, "(Linear): 'init'"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}, {"type": "Linear", "out_features": 2, "in_features": 5}]},
         "layers[1] (Linear): 'in_features' is 5 but the previous layer gives 4"),
        ({"input_size": 4, "layers": [{"type": "Linear", "out_feature": 2}]},
         "layers[0] (Linear): unknown field 'out_feature' (did you mean 'out_features'?)"),
        ({"input_size": 4, "layers": [{"type": "ReLU", "inplace": True}]}, "layers[0] (ReLU): unknown field 'inplace'"),
        ({"input_size": 4, "layers": [{"type": "ReLU"}, {"type": "Dropout", "p": 1.0}]}, "layers[1] (Dropout): 'p'"),
        ({"input_size": 4, "layers": [{"type": "Dropout", "p": -0.1}]}, "layers[0] (Dropout): 'p'"),
        ({"input_size": 4, "layers": [{"type": "Dropout", "p": "0.1"}]}, "layers[0] (Dropout): 'p'"),
        ({"input_size": 4, "layers": [{"type": "Softmax", "axis": 2}]}, "layers[0] (Softmax): 'axis'"),
        ({"input_size": 4, "layers": [{"type": "LogSoftmax", "axis": -3}]}, "layers[0] (LogSoftmax): 'axis'"),
        ({"input_size": 4, "layers": [{"type": "LeakyReLU", "negative_slope": float("nan")}]},
         "layers[0] (LeakyReLU): 'negative_slope' (the slope below 0) must be a finite number, got nan"),
        ({"input_size": 4, "layers": [{"type": "LeakyReLU", "negative_slope": True}]}, "(LeakyReLU): 'negative_slope'"),
        ({"input_size": 4, "layers": [{"type": "LeakyReLU", "slope": 0.1}]},
         "layers[0] (LeakyReLU): unknown field 'slope'; allowed fields: type, negative_slope"),
        ({"input_size": [2, 3], "layers": [{"type": "Flatten", "start_dim": 0}]}, "layers[0] (Flatten): 'start_dim'"),
        ({"input_size": [2, 3], "layers": [{"type": "Flatten", "start_dim": 3}]}, "layers[0] (Flatten): 'start_dim'"),
    ],
)
def test_invalid_specs_name_the_layer_and_field(spec, expected):
    with pytest.raises(SpecError) as info:
        model_from_spec(spec)
    assert expected in str(info.value)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


def test_models_a_spec_cannot_describe_are_refused_clearly():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    class MyLinear(nn.Linear):
        pass

    with pytest.raises(SpecError, match=r"only nn\.Sequential"):
        spec_from_model(nn.Linear(3, 2))
    with pytest.raises(SpecError, match=r"layers\[1\]: Custom can't be written as a spec"):
        spec_from_model(nn.Sequential(nn.Linear(3, 2), Custom()))
    with pytest.raises(SpecError, match=r"layers\[0\]: MyLinear"):
        spec_from_model(nn.Sequential(MyLinear(3, 2)))
    mixed = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2, dtype=np.float64))
    with pytest.raises(SpecError, match="mixes parameter dtypes"):
        spec_from_model(mixed)


# ---- files ----------------------------------------------------------------------------------------------


def test_json_and_toml_files_give_the_same_canonical_spec(tmp_path):
    (tmp_path / "net.json").write_text(json.dumps(EXAMPLE))
    (tmp_path / "net.toml").write_text(EXAMPLE_TOML)
    assert load_spec(tmp_path / "net.json") == load_spec(tmp_path / "net.toml") == normalize_spec(EXAMPLE)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        load_spec(tmp_path / "missing.json")
    cases = {
        "bad.json": ('{"input_size": 784,', "not valid JSON"),
        "bad.toml": ("input_size = \n", "not valid TOML"),
        "net.yaml": ("input_size: 784", "must be a .json or .toml file"),
        "wrong.toml": ('input_size = 784\n[[layers]]\ntype = "Linear"\n', "layers[0] (Linear): missing field"),
        "binary.json": (b"\xff\xfe\x00", "not UTF-8"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(SpecError) as info:
            load_spec(path)
        assert str(path) in str(info.value) and expected in str(info.value), (name, str(info.value))


# ---- sizes and hostile files --------------------------------------------------------------------------------


@pytest.mark.parametrize("out_features", [10**9, 2**70])
def test_a_layer_too_large_to_allocate_is_refused_naming_the_layer_and_field(out_features):
    spec = {"input_size": 784, "layers": [{"type": "Linear", "out_features": out_features}]}
    with pytest.raises(SpecError, match=r"layers\[0\] \(Linear\): 'out_features' \d+ makes a 784 x \d+ weight") as info:
        normalize_spec(spec)
    assert f"more than the {MAX_PARAMETERS:,} allowed" in str(info.value)


def test_the_parameter_limit_counts_the_whole_model_and_names_the_layer_that_crosses_it():
    width = 7000  # 784*7000 + 7000*7000 = 54.5 million; the third Linear (layers[4]) takes it past 100 million
    layers = [{"type": "Linear", "out_features": width}, {"type": "ReLU"}] * 4
    with pytest.raises(SpecError, match=r"layers\[4\] \(Linear\): 'out_features' 7000 makes a 7000 x 7000"):
        normalize_spec({"input_size": 784, "layers": layers})
    assert len(parameter_shapes({"input_size": 784, "layers": layers[:4]})) == 4  # two of them are fine
    just_below = {"input_size": 1, "layers": [{"type": "Linear", "out_features": MAX_PARAMETERS // 2 - 1}]}
    assert normalize_spec(just_below)["layers"][0]["out_features"] == MAX_PARAMETERS // 2 - 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("deep.json", "[" * 200_000 + "]" * 200_000),
        ("deep-object.json", '{"a":' * 100_000 + "1" + "}" * 100_000),
        ("deep.toml", "input_size = " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ("deep-table.toml", "x = " + "{a = " * 100_000 + "1" + "}" * 100_000 + "\n"),
    ],
    ids=["json-lists", "json-objects", "toml-arrays", "toml-tables"],
)
def test_deeply_nested_spec_files_are_refused_cleanly(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SpecError, match=f"{name}: nested too deeply"):
        load_spec(path)


def test_a_huge_spec_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (2 * 2**20))
    with pytest.raises(SpecError, match=r"big\.json: more than 1,048,576 bytes"):
        load_spec(path)


def test_a_spec_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_spec(tmp_path)


# ---- one way to build a network ---------------------------------------------------------------------------


def test_mlp_spec_builds_the_layers_a_hand_written_sequential_would_draw():
    model = model_from_spec(mlp_spec(20, [8, 4], 3, dropout=0.5, init="xavier", seed=1, dtype="float64"))
    assert [type(layer).__name__ for layer in model] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    rng = np.random.default_rng(1)
    by_hand = nn.Sequential(
        nn.Linear(20, 8, init="xavier", generator=rng, dtype=np.float64), nn.ReLU(), nn.Dropout(0.5, rng),
        nn.Linear(8, 4, init="xavier", generator=rng, dtype=np.float64), nn.ReLU(), nn.Dropout(0.5, rng),
        nn.Linear(4, 3, init="xavier", generator=rng, dtype=np.float64),
    )
    for (name, ours), theirs in zip(model.named_parameters(), by_hand.parameters(), strict=True):
        np.testing.assert_array_equal(ours.data, theirs.data, err_msg=name)
    assert model[2].generator.random() == by_hand[2].generator.random()  # dropout masks: the same stream, after


def test_the_tutorial_spec_is_the_mlp_spec_of_784_10_10():
    assert mlp_spec(784, [10], 10) == TUTORIAL_SPEC
    assert [p.shape for p in model_from_spec(TUTORIAL_SPEC).parameters()] == [(10, 784), (10,), (10, 10), (10,)]


def test_a_spec_sequential_records_what_its_layers_cannot_tell():
    spec = {"input_size": [28, 28], "seed": 4, "dtype": "float64",
            "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 10}]}
    model = model_from_spec(spec)
    assert isinstance(model, SpecSequential) and isinstance(model, nn.Sequential)
    assert (model.input_size, model.seed, model.dtype) == ([28, 28], 4, "float64")
    assert spec_from_model(model) == normalize_spec(spec)
    assert [name for name, _ in model.named_parameters()] == ["1.weight", "1.bias"]  # the records are no modules


def test_a_generator_as_seed_is_drawn_from_in_order_and_recorded_as_none():
    model = model_from_spec(TUTORIAL_SPEC, np.random.default_rng(3))
    again = model_from_spec(TUTORIAL_SPEC, np.random.default_rng(3))
    np.testing.assert_array_equal(model[0].weight.data, again[0].weight.data)
    assert model.seed is None and spec_from_model(model)["seed"] is None
    assert model_from_spec(TUTORIAL_SPEC, 3).seed == 3


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**EXAMPLE, "seed": -1}, "seed"),
        ({**EXAMPLE, "layers": [{"type": "Linear", "out_features": 0}]}, "out_features"),
        ({**EXAMPLE, "layers": [{"type": "Dropout", "p": 1.5}]}, "p"),
        ({**EXAMPLE, "init": "lecun"}, "init"),
        ({**EXAMPLE, "layers": [{"type": "Conv3d"}]}, "type"),
        ({**EXAMPLE, "colour": "red"}, "colour"),
    ],
)
def test_a_spec_error_names_its_field(spec, field):
    with pytest.raises(SpecError) as raised:
        normalize_spec(spec)
    assert raised.value.field == field


def test_the_init_schemes_are_named_in_one_place():
    assert INITS == get_args(Init) == ("he", "xavier", "tutorial", "pytorch")
    for scheme in INITS:
        assert nn.Linear(3, 2, init=scheme, generator=0).init == scheme
    root = Path(__file__).resolve().parents[1]
    listed = re.compile(r"""["']he["'],\s*["']xavier["']""")
    spelled = [path.relative_to(root).as_posix() for folder in ("tinygrad_np", "models", "benchmarks")
               for path in (root / folder).rglob("*.py") if listed.search(path.read_text())]
    assert spelled == ["tinygrad_np/nn/init.py"]


# ---- convolutional networks -----------------------------------------------------------------------------------

CNN_TOML = """
input_size = [1, 28, 28]
init = "pytorch"

[[layers]]
type = "Conv2d"
out_channels = 8
kernel_size = 5
padding = 2

[[layers]]
type = "BatchNorm2d"

[[layers]]
type = "ReLU"

[[layers]]
type = "MaxPool2d"
kernel_size = 2

[[layers]]
type = "Conv2d"
out_channels = 16
kernel_size = [3, 3]
stride = 2

[[layers]]
type = "AvgPool2d"
kernel_size = 2
ceil_mode = true

[[layers]]
type = "Flatten"

[[layers]]
type = "Linear"
out_features = 10
"""


def test_a_cnn_spec_infers_every_shape_layer_by_layer(tmp_path):
    """28x28 -> conv 5x5 pad 2 -> 28x28 -> pool 2 -> 14x14 -> conv 3x3 stride 2 -> 6x6 -> avg pool 2 -> 3x3."""
    path = tmp_path / "cnn.toml"
    path.write_text(CNN_TOML)
    spec = load_spec(path)
    model = model_from_spec(spec)
    assert (model[0].in_channels, model[4].in_channels, model[1].num_features) == (1, 8, 8)
    assert model[7].in_features == 16 * 3 * 3
    assert forward(model.eval(), np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    shapes = state_shapes(spec)
    assert list(shapes) == list(model.state_dict())
    assert shapes["0.weight"] == ((8, 1, 5, 5), "float32") and shapes["1.num_batches_tracked"] == ((), "int64")
    assert all(model.state_dict()[name].dtype == np.dtype(dtype) for name, (_, dtype) in shapes.items())
    assert "1.running_mean" not in parameter_shapes(spec) and parameter_shapes(spec)["4.weight"] == (16, 8, 3, 3)
    assert spec_from_model(model) == spec
    assert spec["layers"][3] == {"type": "MaxPool2d", "kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                                 "dilation": [1, 1], "ceil_mode": False}


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([{"type": "Flatten"}, {"type": "Conv2d", "out_channels": 4, "kernel_size": 3}],
         r"layers\[1\] \(Conv2d\): Conv2d needs images \(channels, height, width\) per example, but the previous "
         r"layer gives shape \(784,\)"),
        ([{"type": "Conv2d", "out_channels": 4, "kernel_size": 29}],
         r"layers\[0\] \(Conv2d\): Conv2d: the padded input is 28x28 .* smaller than the 29x29 window"),
        ([{"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "in_channels": 3}], "'in_channels' is 3"),
        ([{"type": "Conv2d", "out_channels": 4, "kernel_size": [3, 3, 3]}], "'kernel_size' must be an integer or"),
        ([{"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"}],
         "padding='same' needs stride 1"),
        ([{"type": "MaxPool2d", "kernel_size": 2, "padding": 2}], "padding .* is more than half the kernel"),
        ([{"type": "BatchNorm1d"}], r"BatchNorm1d needs inputs of shape \(C,\) or \(C, L\) per example"),
        ([{"type": "BatchNorm2d", "num_features": 3}], "'num_features' is 3 but the previous layer gives 1"),
        ([{"type": "BatchNorm2d", "momentum": 2}], "'momentum' must be a number in"),
        ([{"type": "Conv2d", "out_channels": 10**6, "kernel_size": 20}], r"'out_channels' 1000000 makes a "
         r"1000000 x 1 x 20 x 20 weight"),
    ],
)
def test_cnn_spec_errors_name_the_layer_and_what_is_wrong(layers, expected):
    with pytest.raises(SpecError, match=expected):
        normalize_spec({"input_size": [1, 28, 28], "layers": layers})
