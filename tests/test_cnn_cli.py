"""`eval`, `predict`, `serve` and `graph` with a CNN model file: the images reach the network as (N, 1, 28, 28),
and every answer is what the network itself gives on them."""

import json
import urllib.request

import numpy as np
import pytest
from cnn_helpers import small_cnn
from conftest import require
from serve_helpers import canvas_body, one_stroke, serving_process

from tinygrad_np import Tensor, nn, no_grad
from tinygrad_np.cli import main
from tinygrad_np.data import load_offline_sample
from tinygrad_np.serialization import load_model, save_model
from tinygrad_np.spec import SpecSequential


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory):
    return save_model(small_cnn(), tmp_path_factory.mktemp("cnn") / "cnn.npz")


def probabilities(model, images):
    """softmax(model(images)) on (N, 1, 28, 28) images, computed here, not by the command's own reshaping."""
    with no_grad():
        logits = model(Tensor(np.asarray(images, np.float32).reshape(-1, 1, 28, 28))).data.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_eval_gives_the_cnns_own_accuracy(capsys, cnn_file):
    assert main(["eval", "--offline", "--json", "--model-file", str(cnn_file)]) == 0
    result = json.loads(capsys.readouterr().out)
    images, labels = load_offline_sample().arrays("test")
    expected = float(np.mean(probabilities(load_model(cnn_file), images).argmax(axis=1) == labels))
    assert result["test_size"] == 1000 and result["test_accuracy"] == pytest.approx(expected, abs=1e-12)


def test_predict_by_index_gives_the_cnns_probabilities(capsys, cnn_file):
    assert main(["predict", "--offline", "--json", "--model-file", str(cnn_file), "--index", "7"]) == 0
    answer = json.loads(capsys.readouterr().out)
    images, labels = load_offline_sample().arrays("test")
    expected = probabilities(load_model(cnn_file), images[7:8])[0]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert answer["digit"] == int(expected.argmax()) and answer["label"] == int(labels[7])


def test_predict_from_a_picture_gives_the_cnns_probabilities(capsys, cnn_file, tmp_path):
    require(__import__("importlib").util.find_spec("PIL") is not None, "Pillow is not installed (extra `image`)")
    from PIL import Image

    from tinygrad_np.preprocess import image_file_to_mnist

    images, _ = load_offline_sample().arrays("test")
    picture = tmp_path / "digit.png"  # dark ink on white, 4x larger: what a photo of paper looks like
    Image.fromarray((255 - images[3].reshape(28, 28) * 255).astype(np.uint8)).resize((112, 112)).save(picture)
    assert main(["predict", "--json", "--model-file", str(cnn_file), "--image", str(picture)]) == 0
    answer = json.loads(capsys.readouterr().out)
    expected = probabilities(load_model(cnn_file), image_file_to_mnist(picture))[0]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert answer["label"] is None and answer["source"] == str(picture)


def test_a_model_file_whose_batchnorm_needs_a_batch_is_checked_in_eval_mode(capsys, tmp_path):
    """The start-up check runs one zero image through the model: in training mode a BatchNorm1d would refuse a
    batch of one, and would fold the zeros into its running statistics."""
    model = SpecSequential(nn.Flatten(), nn.Linear(784, 16, generator=0), nn.BatchNorm1d(16), nn.ReLU(),
                           nn.Linear(16, 10, generator=1), input_size=[1, 28, 28], seed=None, dtype="float32")
    model.train()
    from tinygrad_np.cli.common import check_reads_mnist

    before = model.state_dict()
    check_reads_mnist(model, "in-memory model")
    assert model.training
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    path = save_model(model, tmp_path / "bn.npz")
    assert main(["predict", "--offline", "--json", "--model-file", str(path), "--index", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)["probabilities"]) == 10


def test_serve_runs_a_cnn_model_file_end_to_end(cnn_file):
    require(__import__("importlib").util.find_spec("PIL") is not None, "Pillow is not installed (extra `web`)")
    body = canvas_body(one_stroke())
    with serving_process(["-m", "tinygrad_np", "serve", "--model-file", str(cnn_file), "--port", "0"]) as url:
        request = urllib.request.Request(url + "api/predict", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    seen = np.asarray(answer["image"], np.float32)  # the 28x28 image the network was given
    expected = probabilities(load_model(cnn_file), seen)[0]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert answer["digit"] == int(expected.argmax())


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "svg"])
def test_graph_draws_a_cnns_loss_graph(monkeypatch, capsys, cnn_file, tmp_path, fmt):
    monkeypatch.setattr("shutil.which", lambda name: None)  # the built-in SVG layout, Graphviz or not
    output = tmp_path / f"cnn.{ {'dot': 'dot', 'mermaid': 'mmd', 'svg': 'svg'}[fmt] }"
    assert main(["graph", "--model-file", str(cnn_file), "--batch-size", "3", "-o", str(output)]) == 0
    text = output.read_text()
    for op in ("Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm"):
        assert op in text, op
    assert "(3, 1, 28, 28)" in text and "(3, 6, 28, 28)" in text  # the images, and the first conv's output
    if fmt == "svg":
        assert text.startswith("<svg") and "graphviz" not in text.lower()
        assert "grad norm" in text
    assert "wrote" in capsys.readouterr().err
