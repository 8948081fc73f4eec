"""End to end: `tinygrad-np train` on MNIST, the recipes' accuracy, and seeds that reproduce weights."""

import json

import numpy as np
import pytest

from tinygrad_np.cli import main
from tinygrad_np.nn import functional as F
from tinygrad_np.serialization import load_model
from tinygrad_np.spec import mlp_spec, normalize_spec
from tinygrad_np.train import Trainer, build_model, build_optimizer, build_scheduler, recipe_config


def train(tmp_path, *args):
    out = tmp_path / "run"
    status = main(["train", "--no-progress", "--output-dir", str(out), *args])
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = load_model(out / "model.npz")
    return metrics, model


def test_train_on_the_offline_sample_writes_model_and_metrics(tmp_path, capsys):
    metrics, model = train(tmp_path, "--offline", "--epochs", "3")
    for key in (
        "data_source",
        "train_size",
        "test_size",
        "final_train_loss",
        "test_accuracy",
        "epochs",
        "seconds",
        "seed",
        "history",
    ):
        assert key in metrics
    assert metrics["data_source_kind"] == "offline" and metrics["train_size"] == 4000
    assert len(metrics["history"]) == 3 and metrics["history"][-1]["test_accuracy"] == metrics["test_accuracy"]
    assert metrics["test_accuracy"] > 0.8  # 3 epochs of Adam on 4,000 digits; chance is 0.1
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert "offline sample" in capsys.readouterr().err


def test_the_tutorial_recipe_is_the_tutorials_setup():
    config = recipe_config("tutorial")
    assert (config.optimizer, config.lr, config.batch_size, config.step_size, config.gamma) == ("sgd", 0.10, None,
                                                                                               200, 0.5)
    assert config.model == normalize_spec(mlp_spec(784, [10], 10, init="tutorial", seed=0))
    model = build_model(config)
    assert [p.shape for p in model.parameters()] == [(10, 784), (10,), (10, 10), (10,)]
    assert all(p.data.min() >= -0.5 and p.data.max() < 0.5 for p in model.parameters())


def test_metrics_config_is_the_network_that_trained(tmp_path):
    """The config records the network as the spec that was built: from options, and from a spec file."""
    metrics, model = train(tmp_path / "mlp", "--offline", "--epochs", "1", "--model", "mlp", "--hidden-sizes", "32",
                           "--seed", "3")
    layers = metrics["config"]["model"]["layers"]
    assert [layer.get("out_features") for layer in layers if layer["type"] == "Linear"] == [32, 10]
    assert metrics["config"]["model"]["seed"] == metrics["seed"] == 3
    assert [p.shape for p in model.parameters()] == [(32, 784), (32,), (10, 32), (10,)]

    spec = {"input_size": 784, "seed": 5, "layers": [{"type": "Linear", "out_features": 16}, {"type": "Tanh"},
                                                     {"type": "Linear", "out_features": 10}]}
    (tmp_path / "net.json").write_text(json.dumps(spec))
    metrics, _ = train(tmp_path / "spec", "--offline", "--epochs", "1", "--model-spec", str(tmp_path / "net.json"))
    assert metrics["config"]["model"] == normalize_spec(spec)  # with the spec's own seed, 5
    assert metrics["seed"] == 5 and metrics["model_spec"] == str(tmp_path / "net.json")


def test_no_weight_decay_trains_the_groups_that_param_groups_makes_bit_for_bit(tmp_path):
    """`--no-weight-decay bias` is AdamW over optim.param_groups(model, ("bias",)), recorded in the config."""
    from tinygrad_np import optim
    from tinygrad_np.data import load_offline_sample

    options = ["--offline", "--model", "mlp", "--hidden-sizes", "16", "--epochs", "2", "--limit-train", "500",
               "--weight-decay", "0.5", "--seed", "2"]
    metrics, model = train(tmp_path / "spared", *options, "--no-weight-decay", "bias")
    assert metrics["config"]["no_weight_decay"] == ["bias"] and metrics["config"]["weight_decay"] == 0.5

    config = recipe_config("mlp", hidden_sizes=(16,), epochs=2, weight_decay=0.5, seed=2)
    reference = build_model(config)
    optimizer = optim.AdamW(optim.param_groups(reference, ("bias",)), lr=config.lr, weight_decay=0.5)
    images, labels = load_offline_sample().arrays("train")
    Trainer(reference, optimizer, F.cross_entropy, (images[:500], labels[:500]), batch_size=config.batch_size,
            scheduler=build_scheduler(config, optimizer), seed=2).fit(2)
    for name, array in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], array, err_msg=name)
    _, decayed_everywhere = train(tmp_path / "all", *options)
    assert not np.array_equal(decayed_everywhere.state_dict()["0.bias"], model.state_dict()["0.bias"])


def test_resume_refuses_a_checkpoint_with_other_parameter_groups(tmp_path, capsys):
    options = ["--offline", "--model", "mlp", "--hidden-sizes", "8", "--epochs", "1", "--limit-train", "200",
               "--checkpoint-dir", str(tmp_path / "ck")]
    train(tmp_path, *options, "--no-weight-decay", "bias")
    capsys.readouterr()
    assert main(["train", "--output-dir", str(tmp_path / "again"), *options, "--resume"]) == 2
    assert 'no_weight_decay ["bias"] there, [] here' in capsys.readouterr().err


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(tmp_path):
    runs = [
        train(tmp_path / str(i), "--offline", "--recipe", "mlp", "--epochs", "2", "--seed", str(seed))[1]
        for i, seed in enumerate([3, 3, 4])
    ]
    first, again, other = (r.state_dict() for r in runs)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[name], other[name]) for name in first)


@pytest.mark.slow
def test_tutorial_network_reaches_92_percent_on_full_mnist(tmp_path, mnist_dir):
    metrics, _ = train(tmp_path, "--data-dir", str(mnist_dir), "--recipe", "two_layer")
    assert metrics["data_source_kind"] == "directory" and metrics["train_size"] == 60000
    assert metrics["test_size"] == 10000
    assert metrics["test_accuracy"] >= 0.92, metrics["test_accuracy"]


@pytest.mark.slow
def test_mlp_reaches_98_percent_on_full_mnist(tmp_path, mnist_dir):
    metrics, _ = train(tmp_path, "--data-dir", str(mnist_dir), "--recipe", "mlp")
    assert metrics["test_accuracy"] >= 0.98, metrics["test_accuracy"]


def test_model_cnn_trains_the_lenet_style_network_on_images(tmp_path):
    """--model cnn takes the cnn recipe; the data goes in as (N, 1, 28, 28) images."""
    metrics, model = train(tmp_path, "--offline", "--model", "cnn", "--epochs", "2", "--limit-train", "1000")
    assert metrics["config"]["optimizer"] == "adam" and metrics["config"]["cosine"] is True
    assert [type(layer).__name__ for layer in model][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert metrics["config"]["model"]["input_size"] == [1, 28, 28]
    assert metrics["test_accuracy"] > 0.7, metrics["test_accuracy"]  # 16 steps of Adam on 1,000 digits; chance: 0.1


@pytest.mark.slow
def test_cnn_reaches_99_2_percent_on_full_mnist(tmp_path, mnist_dir):
    metrics, _ = train(tmp_path, "--data-dir", str(mnist_dir), "--recipe", "cnn")
    assert metrics["train_size"] == 60000 and metrics["test_size"] == 10000
    assert metrics["test_accuracy"] >= 0.992, metrics["test_accuracy"]


@pytest.mark.slow
def test_same_seed_gives_bit_identical_weights_on_full_mnist(mnist_dir):
    from tinygrad_np.data import load_mnist

    mnist = load_mnist(mnist_dir, verbose=False)
    weights = []
    for _ in range(2):
        config = recipe_config("mlp", epochs=1)
        model = build_model(config)
        optimizer = build_optimizer(config, model)
        Trainer(
            model,
            optimizer,
            F.cross_entropy,
            mnist.arrays("train"),
            batch_size=config.batch_size,
            scheduler=build_scheduler(config, optimizer),
            seed=config.seed,
        ).fit(config.epochs)
        weights.append(model.state_dict())
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
