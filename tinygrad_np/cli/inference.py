"""`tinygrad-np eval`, `predict` and `serve`: what a saved model does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tinygrad_np.cli.command import Command
from tinygrad_np.cli.common import (
    add_data_arguments,
    add_model_file_argument,
    as_model_input,
    check_input_file,
    load_data,
    load_model_file,
    needs_extra,
    option_errors,
    whole_number,
)
from tinygrad_np.errors import UserError


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_file_argument(parser)
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true")


def run_eval(args: argparse.Namespace) -> int:
    from tinygrad_np.train import evaluate

    model = load_model_file(args.model_file)
    mnist = load_data(args)
    images, labels = mnist.arrays("test")
    loss, accuracy = evaluate(model, as_model_input(model, images), labels)
    result = {
        "model_file": str(args.model_file),
        "data_source": mnist.source,  # as train's metrics.json says it
        "data_source_kind": mnist.source_kind,
        "test_size": len(labels),
        "test_loss": loss,
        "test_accuracy": accuracy,
    }
    print(json.dumps(result) if args.json else f"test accuracy {accuracy:.4f} ({len(labels)} images), loss {loss:.4f}")
    return 0


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_file_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", type=int, help="index into the test set")
    source.add_argument("--image", type=Path, help="a PNG/JPEG of a handwritten digit, any size or polarity")
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true")


def run_predict(args: argparse.Namespace) -> int:
    from tinygrad_np.train import predict_proba

    model = load_model_file(args.model_file)
    if args.image is not None:
        from tinygrad_np.preprocess import image_file_to_mnist

        image = image_file_to_mnist(args.image)
        label = None
        source = str(args.image)
    else:
        mnist = load_data(args)
        if not 0 <= args.index < len(mnist.test_labels):
            raise UserError(f"--index must be in 0..{len(mnist.test_labels) - 1}, got {args.index}")
        image = mnist.test_images[args.index].astype(np.float32) / 255
        label = int(mnist.test_labels[args.index])
        source = f"test image {args.index} of {mnist.source}"
    probabilities = predict_proba(model, as_model_input(model, image.reshape(1, -1)))[0]
    digit = int(probabilities.argmax())
    if args.json:
        print(json.dumps({"source": source, "digit": digit, "label": label, "probabilities": probabilities.tolist()}))
        return 0
    print(f"{source}: predicted {digit}" + ("" if label is None else f" (label {label})"))
    for d, p in enumerate(probabilities):
        print(f"  {d}  {p:6.1%}  {'#' * round(40 * p)}")
    return 0


# ---- serve ----------------------------------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-file", type=Path, help="a saved model (default: train a quick one first)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    parser.add_argument("--port", type=whole_number, default=8000,
                        help="TCP port, 0..65535, or 0 for any free one (default: %(default)s)")


def run_serve(args: argparse.Namespace) -> int:
    from tinygrad_np.serve import listen, run
    from tinygrad_np.train import predict_proba

    with option_errors({"port": "--port"}):  # listen() checks the port's range; a port in use is a UserError
        sock = listen(args.host, args.port)  # bind first: a port in use fails now, not after half a minute of training
    if args.model_file is not None:
        model = load_model_file(args.model_file)
        banner = f"model: {args.model_file}"
    else:
        from tinygrad_np.data import load_offline_sample
        from tinygrad_np.nn import functional as F
        from tinygrad_np.train import Trainer, build_model, build_optimizer, evaluate, recipe_config

        print("tinygrad-np: no --model-file given; training a quick MLP on the offline sample first", file=sys.stderr)
        config = recipe_config("mlp", hidden_sizes=(128,), epochs=8, dropout=0.0)
        sample = load_offline_sample()
        model = build_model(config)
        optimizer = build_optimizer(config, model)
        trainer = Trainer(model, optimizer, F.cross_entropy, sample.arrays("train"), batch_size=64)
        trainer.fit(config.epochs)
        _, accuracy = evaluate(model, *sample.arrays("test"))
        banner = f"model: a 784-128-10 MLP trained just now on the offline sample ({accuracy:.1%} on its test split)"
    return run(lambda images: predict_proba(model, as_model_input(model, images)), banner=banner, sock=sock) or 0


def _serve_dependencies(args: argparse.Namespace) -> None:
    """Before any training: without Pillow every drawing would get a 500."""
    from tinygrad_np.serve import check_dependencies

    check_dependencies()


def _check_image(args: argparse.Namespace) -> None:
    if args.image is not None:
        if args.data_dir is not None or args.offline:  # a picture needs no data set: the option would be ignored
            given = "--data-dir" if args.data_dir is not None else "--offline"
            raise UserError(f"{given} picks the data set for --index; --image classifies the picture alone, drop "
                            f"{given}")
        check_input_file(args.image, "--image", "a PNG or JPEG picture of a digit")


EVAL = Command("eval", "a saved model's accuracy on the test set", add_eval_arguments, run_eval)
PREDICT = Command(
    "predict", "classify a test-set image or a picture of a digit", add_predict_arguments, run_predict,
    checks=(needs_extra("PIL.Image", "image", "predict --image", when=lambda args: args.image is not None),
            _check_image),
)
SERVE = Command(
    "serve", "a web page to draw digits and watch the network read them", add_serve_arguments, run_serve,
    checks=(_serve_dependencies,),
)
