"""ONNX export: the file passes the full ONNX checker, and onnxruntime computes what tinygrad_np computes."""

import importlib.util
import os
import sys

import numpy as np
import pytest
from cnn_helpers import small_cnn
from conftest import require

from tinygrad_np import Tensor, nn, no_grad
from tinygrad_np.cli import main as tinygrad_np_main
from tinygrad_np.data import load_offline_sample, read_mnist_dir
from tinygrad_np.onnx_export import export_onnx, to_onnx
from tinygrad_np.serialization import save_model
from tinygrad_np.spec import TUTORIAL_SPEC, SpecSequential, model_from_spec

ARCHITECTURES = {
    "tutorial": TUTORIAL_SPEC,
    "mlp_dropout_logsoftmax": {
        "input_size": 784,
        "seed": 1,
        "layers": [
            {"type": "Linear", "out_features": 64}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.3},
            {"type": "Linear", "out_features": 32}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.3},
            {"type": "Linear", "out_features": 10}, {"type": "LogSoftmax"},
        ],
    },
    "tanh_sigmoid_softmax": {
        "input_size": 784,
        "init": "xavier",
        "seed": 2,
        "layers": [
            {"type": "Linear", "out_features": 32}, {"type": "Tanh"},
            {"type": "Linear", "out_features": 16, "bias": False}, {"type": "Sigmoid"},
            {"type": "Linear", "out_features": 10}, {"type": "Softmax", "axis": 1},
        ],
    },
    "flatten_28x28": {
        "input_size": [28, 28],
        "seed": 3,
        "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 10, "init": "tutorial"},
                   {"type": "LogSoftmax", "axis": -1}],
    },
    "rows_then_flatten": {  # Linear on each image row (MatMul + Add), then Flatten
        "input_size": [28, 28],
        "seed": 4,
        "layers": [{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Flatten"},
                   {"type": "Linear", "out_features": 10}],
    },
    "mlp_float64": {
        "input_size": 784,
        "dtype": "float64",
        "seed": 5,
        "layers": [{"type": "Linear", "out_features": 48}, {"type": "ReLU"}, {"type": "Linear", "out_features": 10}],
    },
    "leaky_relu": {
        "input_size": 784,
        "seed": 6,
        "layers": [{"type": "Linear", "out_features": 32}, {"type": "LeakyReLU"},
                   {"type": "Linear", "out_features": 16}, {"type": "LeakyReLU", "negative_slope": 0.2},
                   {"type": "Linear", "out_features": 10}],
    },
}
# Each activation the spec and the compare layer table know, after a Linear, in both dtypes: onnxruntime must
# compute what tinygrad_np computes, to rounding.
ACTIVATION_LAYERS = [
    {"type": "ReLU"}, {"type": "LeakyReLU"}, {"type": "LeakyReLU", "negative_slope": 0.25}, {"type": "Tanh"},
    {"type": "Sigmoid"}, {"type": "Softmax"}, {"type": "LogSoftmax"},
]


@pytest.fixture(scope="module")
def ort():
    require(importlib.util.find_spec("onnx") is not None, "onnx is not installed (extra `onnx`)")
    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime is not installed (extra `onnx`)")
    import onnxruntime

    return onnxruntime


def run_onnx(ort, path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def reference(model, x):
    model.eval()
    with no_grad():
        return model(Tensor(x)).data


def as_inputs(images, spec):
    """MNIST rows (N, 784) in [0, 1] shaped and typed for the spec's input."""
    shape = (spec["input_size"],) if isinstance(spec["input_size"], int) else tuple(spec["input_size"])
    return np.ascontiguousarray(images.reshape(len(images), *shape).astype(spec.get("dtype", "float32")))


def check_against_onnxruntime(ort, tmp_path, name, images):
    spec = ARCHITECTURES[name]
    model = model_from_spec(spec)
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    x = as_inputs(images, spec)
    ours, theirs = reference(model, x), run_onnx(ort, path, x)
    assert theirs.dtype == ours.dtype and theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_onnxruntime_matches_on_the_offline_sample(ort, tmp_path, name):
    images, _ = load_offline_sample().arrays("test")
    check_against_onnxruntime(ort, tmp_path, name, images)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_onnxruntime_matches_on_the_mnist_test_set(ort, tmp_path, mnist_dir, name):
    images, _ = read_mnist_dir(mnist_dir).arrays("test")
    assert len(images) == 10_000
    check_against_onnxruntime(ort, tmp_path, name, images)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_file_passes_the_full_onnx_checker(ort, tmp_path, name):
    import onnx

    path = export_onnx(model_from_spec(ARCHITECTURES[name]), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 13  # axis-wise Softmax semantics


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATION_LAYERS, ids=lambda layer: "-".join(map(str, layer.values())))
def test_each_activation_runs_in_onnxruntime(ort, tmp_path, activation, dtype):
    spec = {"input_size": 12, "dtype": dtype, "seed": 7, "layers": [{"type": "Linear", "out_features": 9}, activation]}
    model = model_from_spec(spec)
    path = export_onnx(model, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((33, 12)).astype(dtype)  # both signs: each side of the kinks
    ours, theirs = reference(model, x), run_onnx(ort, path, x)
    assert theirs.dtype == ours.dtype == np.dtype(dtype)
    tolerance = 1e-14 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(theirs, ours, rtol=tolerance, atol=tolerance)


def test_a_leaky_relu_slope_keeps_its_float64_precision(ort):
    """ONNX attributes are float32: LeakyRelu(alpha=0.01) would round a float64 model's slope, so that one is
    exported as PRelu with the slope as a float64 tensor; a slope float32 holds exactly stays LeakyRelu."""
    ops = {}
    for dtype in ("float32", "float64"):
        for slope in (0.01, 0.25):
            spec = {"input_size": 3, "dtype": dtype, "layers": [{"type": "LeakyReLU", "negative_slope": slope}]}
            ops[dtype, slope] = [node.op_type for node in to_onnx(model_from_spec(spec)).graph.node]
    assert ops == {("float32", 0.01): ["LeakyRelu"], ("float32", 0.25): ["LeakyRelu"],
                   ("float64", 0.01): ["PRelu"], ("float64", 0.25): ["LeakyRelu"]}


def test_layers_map_to_the_expected_onnx_ops(ort):
    proto = to_onnx(model_from_spec(ARCHITECTURES["mlp_dropout_logsoftmax"]))
    assert [node.op_type for node in proto.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "LogSoftmax"]
    gemm = proto.graph.node[0]
    assert {a.name: a.i for a in gemm.attribute} == {"transB": 1}
    names = {init.name for init in proto.graph.initializer}
    assert names == {"0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"}
    rows = to_onnx(model_from_spec(ARCHITECTURES["rows_then_flatten"]))
    assert [node.op_type for node in rows.graph.node] == ["MatMul", "Add", "Relu", "Flatten", "Gemm"]


def test_the_batch_dimension_is_dynamic_unless_fixed(ort, tmp_path):
    model = model_from_spec(TUTORIAL_SPEC)
    images, _ = load_offline_sample().arrays("test")
    dynamic = export_onnx(model, tmp_path / "dynamic.onnx")
    for n in (1, 7, 64):
        np.testing.assert_allclose(run_onnx(ort, dynamic, images[:n]), reference(model, images[:n]), rtol=1e-5,
                                   atol=1e-5)
    proto = to_onnx(model)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    fixed = to_onnx(model, batch_size=16)
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 16
    assert [d.dim_value for d in fixed.graph.output[0].type.tensor_type.shape.dim] == [16, 10]
    path = export_onnx(model, tmp_path / "fixed.onnx", batch_size=16)
    with pytest.raises(Exception, match=r"invalid dimensions.*\n.*Got: 3 Expected: 16"):
        run_onnx(ort, path, images[:3])
    with pytest.raises(ValueError, match="batch_size"):
        to_onnx(model, batch_size=0)


def test_export_is_inference_mode_and_leaves_the_model_alone(ort, tmp_path):
    model = model_from_spec(ARCHITECTURES["mlp_dropout_logsoftmax"]).train()
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    path = export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[name])
    images, _ = load_offline_sample().arrays("test")
    np.testing.assert_allclose(run_onnx(ort, path, images[:50]), reference(model, images[:50]), rtol=1e-5, atol=1e-5)


def test_a_model_built_in_code_exports(ort, tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, generator=0))
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(model, tmp_path / "m.onnx")
    path = export_onnx(model, tmp_path / "m.onnx", input_size=[28, 28])
    images, _ = load_offline_sample().arrays("test")
    x = images[:20].reshape(20, 28, 28)
    np.testing.assert_allclose(run_onnx(ort, path, x), reference(model, x), rtol=1e-5, atol=1e-5)


def test_unsupported_models_are_refused_before_writing(ort, tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="Custom can't be written"):
        export_onnx(nn.Sequential(nn.Linear(4, 2), Custom()), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_the_write_is_atomic(ort, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    export_onnx(model_from_spec(TUTORIAL_SPEC), path)
    assert os.listdir(tmp_path) == ["m.onnx"] and path.read_bytes() != b"old"


def test_a_missing_onnx_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "tinygrad-np\[onnx\]"'):
        to_onnx(model_from_spec(TUTORIAL_SPEC))


# ---- convolutional networks ----------------------------------------------------------------------------------


def test_a_cnn_runs_in_onnxruntime_on_random_input(ort, tmp_path):
    model = small_cnn()
    assert float(np.abs(model[1].running_mean.data).max()) > 0.01
    path = export_onnx(model, tmp_path / "cnn.onnx")
    x = np.random.default_rng(1).standard_normal((17, 1, 28, 28)).astype(np.float32)
    ours, theirs = reference(model, x), run_onnx(ort, path, x)
    assert theirs.dtype == ours.dtype == np.float32 and theirs.shape == ours.shape == (17, 10)
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)


def test_a_float64_cnn_matches_onnxs_reference_evaluator(ort, tmp_path):
    """onnxruntime's CPU provider has no float64 Conv; ONNX's own NumPy evaluator runs the file instead."""
    from onnx.reference import ReferenceEvaluator

    model = small_cnn("float64")
    x = np.random.default_rng(1).standard_normal((5, 1, 28, 28))
    (theirs,) = ReferenceEvaluator(to_onnx(model)).run(None, {"input": x})
    assert theirs.dtype == np.float64
    np.testing.assert_allclose(theirs, reference(model, x), rtol=1e-12, atol=1e-12)


def test_onnxruntime_matches_a_cnn_on_the_mnist_test_set(ort, tmp_path, mnist_dir):
    images, _ = read_mnist_dir(mnist_dir).arrays("test")
    assert len(images) == 10_000
    model = small_cnn()
    path = export_onnx(model, tmp_path / "cnn.onnx")
    x = images.reshape(-1, 1, 28, 28)
    np.testing.assert_allclose(run_onnx(ort, path, x), reference(model, x), rtol=1e-5, atol=1e-5)


def test_cnn_layers_map_to_onnx_ops_with_pytorchs_geometry(ort):
    graph = to_onnx(small_cnn()).graph
    assert [node.op_type for node in graph.node] == [
        "Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "Relu", "AveragePool", "Flatten",
        "BatchNormalization", "Gemm"]
    attributes = [{a.name: (list(a.ints) if a.ints else a.i if a.type == a.INT else a.f) for a in node.attribute}
                  for node in graph.node]
    assert attributes[0] == {"kernel_shape": [5, 5], "strides": [1, 1], "dilations": [1, 1], "pads": [2, 2, 2, 2]}
    assert attributes[1] == {"epsilon": pytest.approx(1e-5)}
    assert attributes[3] == {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "ceil_mode": 0,
                             "dilations": [1, 1]}
    assert attributes[4] == {"kernel_shape": [3, 3], "strides": [2, 1], "dilations": [1, 2], "pads": [0, 0, 0, 0]}
    assert attributes[6] == {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [1, 1, 1, 1], "ceil_mode": 0,
                             "count_include_pad": 0}
    names = {init.name for init in graph.initializer}
    assert names == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "4.weight",
                     "8.weight", "8.bias", "8.running_mean", "8.running_var", "9.weight", "9.bias"}
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [10]


LAYER_CASES = {
    "conv same, even kernel": nn.Conv2d(2, 3, 4, padding="same", generator=0),
    "conv same, dilated": nn.Conv2d(2, 3, 3, padding="same", dilation=2, generator=0),
    "conv strided and padded": nn.Conv2d(2, 3, (3, 2), stride=(2, 3), padding=(1, 2), generator=0),
    "max-pool overlapping": nn.MaxPool2d(3, stride=1, padding=1),
    "max-pool dilated": nn.MaxPool2d(2, stride=2, dilation=2),
    "max-pool ceil_mode": nn.MaxPool2d(3, stride=2, ceil_mode=True),
    "max-pool ceil_mode padded": nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    "avg-pool counting padding": nn.AvgPool2d(3, stride=2, padding=1),
    "avg-pool not counting padding": nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    "avg-pool ceil_mode": nn.AvgPool2d(2, stride=2, ceil_mode=True),
    "avg-pool ceil_mode padded": nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
}


@pytest.mark.parametrize("name", LAYER_CASES)
def test_each_conv_layers_geometry_runs_in_onnxruntime(ort, tmp_path, name):
    model = SpecSequential(LAYER_CASES[name], input_size=[2, 9, 11], seed=None, dtype="float32")
    path = export_onnx(model, tmp_path / "m.onnx")
    x = np.random.default_rng(2).standard_normal((5, 2, 9, 11)).astype(np.float32)  # both signs: max-pool's
    ours, theirs = reference(model, x), run_onnx(ort, path, x)  # -inf padding must never win
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-6)


def test_cnn_export_leaves_the_running_statistics_and_mode_alone(ort, tmp_path):
    model = small_cnn().train()
    before = model.state_dict()
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training and model[1].training
    after = model.state_dict()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_batchnorm_without_running_statistics_and_divisor_override_are_refused(ort, tmp_path):
    no_stats = SpecSequential(nn.BatchNorm1d(4, track_running_stats=False), input_size=4, seed=None, dtype="float32")
    divisor = SpecSequential(nn.AvgPool2d(2, divisor_override=3), input_size=[1, 4, 4], seed=None, dtype="float32")
    for model, message in ((no_stats, "without running statistics"), (divisor, "divisor_override")):
        with pytest.raises(ValueError, match=message):
            export_onnx(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# ---- `tinygrad-np export` ---------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    return tinygrad_np_main(["export", *argv])


def test_export_command_writes_and_verifies(ort, tmp_path, capsys):
    model = model_from_spec(ARCHITECTURES["mlp_dropout_logsoftmax"])
    save_model(model, tmp_path / "model.npz")
    assert main(["--model-file", str(tmp_path / "model.npz"), "--verify"]) == 0
    assert "onnxruntime agrees on 1000 MNIST images" in capsys.readouterr().err
    images, _ = load_offline_sample().arrays("test")
    np.testing.assert_allclose(run_onnx(ort, tmp_path / "model.onnx", images[:9]), reference(model, images[:9]),
                               rtol=1e-5, atol=1e-5)
    assert main(["--model-file", str(tmp_path / "model.npz"), "-o", str(tmp_path / "b16.onnx"), "--batch-size",
                 "16", "--verify"]) == 0
    assert "agrees on 16 MNIST images" in capsys.readouterr().err


def test_export_command_writes_and_verifies_a_cnn(ort, tmp_path, capsys):
    model = small_cnn()
    save_model(model, tmp_path / "cnn.npz")
    assert main(["--model-file", str(tmp_path / "cnn.npz"), "--verify"]) == 0
    assert "onnxruntime agrees on 1000 MNIST images" in capsys.readouterr().err
    images, _ = load_offline_sample().arrays("test")
    x = images[:9].reshape(9, 1, 28, 28)
    np.testing.assert_allclose(run_onnx(ort, tmp_path / "cnn.onnx", x), reference(model, x), rtol=1e-5, atol=1e-5)


def test_export_command_reports_errors(ort, tmp_path, capsys):
    assert main(["--model-file", str(tmp_path / "none.npz")]) == 2
    assert "none.npz does not exist" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert main(["--model-file", str(tmp_path / "junk.npz")]) == 2
    assert "tinygrad-np export: error:" in capsys.readouterr().err
    assert not (tmp_path / "junk.onnx").exists()
