"""The `tinygrad-np` command: train, eval, predict, compare, export, graph, serve, bench.

Every failure the user can cause (a bad option value, a missing or corrupt file) ends in one line on stderr
and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A problem to report in one line, with exit status 2."""


# ---- option types -------------------------------------------------------------------------------------


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def batch_size_type(text: str) -> int | None:
    """A positive int, or 'full' for full-batch gradient descent."""
    if text.lower() == "full":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number or 'full', got {text!r}") from None


def probability(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


# ---- shared pieces --------------------------------------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        type=Path,
        help="folder with MNIST IDX or CSV files (default: $TINYGRAD_NP_MNIST_DIR, then "
        "a kagglehub download, then the bundled offline sample)",
    )
    group.add_argument("--offline", action="store_true", help="don't download; use the bundled 5,000-digit sample")


def load_data(args: argparse.Namespace) -> Any:
    from tinygrad_np.data import load_mnist

    if args.data_dir is not None and not args.data_dir.is_dir():
        raise CLIError(f"data directory {args.data_dir} does not exist")
    return load_mnist(args.data_dir, offline=args.offline)


def _write_json_atomically(path: Path, payload: Any) -> None:
    from tinygrad_np.files import write_text_atomic

    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


# ---- train ----------------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from tinygrad_np.train import OPTIMIZERS, RECIPES

    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="a complete setup: 'tutorial' reproduces the tutorial (784-10-10, full-batch gradient descent, "
        "lr 0.10, step decay); 'two_layer' (the default) and 'mlp' are ours. Options given explicitly override it",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=["two_layer", "mlp"], help="the tutorial's 784-10-10, or an MLP")
    model.add_argument("--model-spec", type=Path, help="a JSON or TOML file declaring the layers (overrides --model)")
    model.add_argument("--hidden-sizes", type=positive_int, nargs="+", help="MLP hidden layer widths, e.g. 256 128")
    model.add_argument("--init", choices=["he", "xavier", "tutorial"], help="weight initialisation")
    model.add_argument("--dropout", type=probability, help="dropout probability after each hidden layer")
    training = parser.add_argument_group("training")
    training.add_argument("--optimizer", choices=OPTIMIZERS)
    training.add_argument("--lr", "--learning-rate", dest="lr", type=positive_float, help="learning rate")
    training.add_argument("--momentum", type=probability, help="SGD momentum")
    training.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    training.add_argument("--weight-decay", type=non_negative_float)
    training.add_argument("--epochs", type=positive_int, help="passes over the data (iterations when full batch)")
    training.add_argument(
        "--batch-size", type=batch_size_type, default=argparse.SUPPRESS, help="mini-batch size, or 'full'"
    )
    training.add_argument("--step-size", type=positive_int, help="step decay: multiply lr by --gamma every N epochs")
    training.add_argument("--gamma", type=positive_float, help="step decay factor")
    training.add_argument("--cosine", action="store_true", default=None, help="cosine-anneal the lr to 0")
    training.add_argument("--seed", type=int, help="seeds weights, data order and dropout (default 0)")
    training.add_argument("--limit-train", type=positive_int, help="train on the first N images only")
    add_data_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", type=Path, default=Path("runs"), help="where outputs go (default: runs/)")
    output.add_argument("--save", type=Path, help="model file (default: OUTPUT_DIR/model.npz)")
    output.add_argument("--metrics", type=Path, help="metrics JSON (default: OUTPUT_DIR/metrics.json)")
    output.add_argument("--plots", type=Path, help="write training curves, predictions and a confusion matrix here")
    output.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway when not a tty)")
    reliability = parser.add_argument_group("reliability")
    reliability.add_argument("--checkpoint-dir", type=Path, help="write a checkpoint after every epoch")
    reliability.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    reliability.add_argument("--detect-anomaly", action="store_true", help="stop at the first NaN/Inf, naming the op")


def train_config_from_args(args: argparse.Namespace) -> Any:
    from tinygrad_np.train import RECIPES, TrainConfig

    recipe = args.recipe or ("mlp" if args.model == "mlp" else "two_layer")
    settings = dict(RECIPES[recipe])
    for name in (
        "model",
        "init",
        "optimizer",
        "lr",
        "momentum",
        "nesterov",
        "weight_decay",
        "dropout",
        "epochs",
        "step_size",
        "gamma",
        "cosine",
        "seed",
    ):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    if args.hidden_sizes is not None:
        settings["hidden_sizes"] = tuple(args.hidden_sizes)
    if hasattr(args, "batch_size"):  # absent unless given: 'full' (None) must override a recipe's size
        settings["batch_size"] = args.batch_size
    if args.step_size is not None and args.cosine is None:
        settings["cosine"] = False
    config = TrainConfig(**settings)
    config.validate()
    return config


def run_train(args: argparse.Namespace) -> int:
    from tinygrad_np.checkpoint import CheckpointManager
    from tinygrad_np.train import (
        Trainer,
        TrainingInterrupted,
        build_model,
        build_optimizer,
        build_scheduler,
        stop_on_sigint,
    )

    config = train_config_from_args(args)
    if args.resume and args.checkpoint_dir is None:
        raise CLIError("--resume needs --checkpoint-dir (the folder the interrupted run wrote to)")
    mnist = load_data(args)
    if args.limit_train and args.limit_train > len(mnist.train_labels):
        raise CLIError(f"--limit-train {args.limit_train} is more than the {len(mnist.train_labels)} training images")
    limit = args.limit_train or len(mnist.train_labels)
    train_images, train_labels = mnist.arrays("train")
    train_images, train_labels = train_images[:limit], train_labels[:limit]
    test_data = mnist.arrays("test")

    if args.model_spec is not None:
        from tinygrad_np.spec import load_spec, model_from_spec

        model = model_from_spec(load_spec(args.model_spec), seed=config.seed)
    else:
        model = build_model(config)
    optimizer = build_optimizer(config, model.parameters())
    trainer = Trainer(
        model,
        optimizer,
        (train_images, train_labels),
        test_data,
        batch_size=config.batch_size,
        scheduler=build_scheduler(config, optimizer),
        seed=config.seed,
    )
    save_path = args.save or args.output_dir / "model.npz"
    metrics_path = args.metrics or args.output_dir / "metrics.json"
    # Without --checkpoint-dir nothing is written per epoch, but Ctrl-C still saves a checkpoint, here.
    checkpoints = CheckpointManager(
        args.checkpoint_dir or args.output_dir / "checkpoint",
        _run_fingerprint(config, model, mnist.train_images[:limit], mnist.train_labels[:limit]),
    )
    if args.resume:
        checkpoints.restore(trainer)
        if trainer.epoch > config.epochs:
            raise CLIError(
                f"the checkpoint in {checkpoints.path} is after epoch {trainer.epoch}, past --epochs {config.epochs}"
            )
        where = _position(trainer)
        print(f"tinygrad-np: resumed from {checkpoints.path} ({where})", file=sys.stderr)
    # An unwritable output should fail now, not after an hour of training.
    for folder in {save_path.parent, metrics_path.parent, args.checkpoint_dir, args.plots}:
        if folder is not None:
            _ensure_writable(folder)

    model_name = f"the model of {args.model_spec}" if args.model_spec is not None else config.model
    print(
        f"tinygrad-np: training {model_name} {_describe(model)} on {len(train_labels)} images from {mnist.source}; "
        f"{config.optimizer} lr={config.lr:g}, batch={config.batch_size or 'full'}, epochs={config.epochs}, "
        f"seed={config.seed}",
        file=sys.stderr,
    )
    evaluate_every = 1 if config.batch_size is not None else max(1, config.epochs // 20)
    progress = not args.no_progress and sys.stderr.isatty()
    newline = "\n" if progress else ""  # below the progress bar
    start = time.perf_counter()
    try:
        # Ctrl-C sets a flag that the trainer checks between batches, so the state it saves is consistent.
        with _anomaly_context(args.detect_anomaly), stop_on_sigint(trainer):
            trainer.fit(
                config.epochs,
                progress=progress,
                evaluate_every=evaluate_every,
                on_epoch_end=checkpoints.save if args.checkpoint_dir is not None else None,
            )
    except TrainingInterrupted:
        path = checkpoints.save(trainer)
        print(
            f"{newline}tinygrad-np: interrupted {_position(trainer)}; checkpoint saved to {path}; continue with the "
            f"same options plus --checkpoint-dir {checkpoints.directory} --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        # A second Ctrl-C lands mid-step, where the weights may be half updated: saving them would be wrong.
        kept = f"; the checkpoint in {checkpoints.path} is intact" if checkpoints.path.is_file() else ""
        print(f"{newline}tinygrad-np: interrupted twice; stopped at once without saving{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start

    final = trainer.history[-1]
    metrics = {
        "data_source": mnist.source,
        "data_source_kind": mnist.source_kind,
        "train_size": len(train_labels),
        "test_size": len(test_data[1]),
        "final_train_loss": final["train_loss"],
        "final_train_accuracy": final["train_accuracy"],
        "test_loss": final["test_loss"],
        "test_accuracy": final["test_accuracy"],
        "epochs": config.epochs,
        "seconds": seconds,
        "seed": config.seed,
        "config": _jsonable(vars(config)),
        "model_spec": None if args.model_spec is None else str(args.model_spec),
        "history": trainer.history,
    }
    from tinygrad_np.serialization import save_model

    save_model(model, save_path, metadata={k: v for k, v in metrics.items() if k != "history"})
    _write_json_atomically(metrics_path, metrics)
    if args.plots is not None:
        _write_plots(args.plots, trainer, model, test_data, mnist)
    print(
        f"test accuracy {final['test_accuracy']:.4f}, final train loss {final['train_loss']:.4f}, {seconds:.1f} s; "
        f"model {save_path}, metrics {metrics_path}"
    )
    return 0


def _position(trainer: Any) -> str:
    """Where training stands, for messages: 'after epoch 3' or 'in epoch 4 after batch 17 of 32'."""
    if trainer.epoch_position is None:
        return f"after epoch {trainer.epoch}"
    return f"in epoch {trainer.epoch + 1} after batch {trainer.epoch_position['batches_done']} of {len(trainer.loader)}"


def _run_fingerprint(config: Any, model: Any, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it: settings, architecture and training data."""
    import zlib

    settings = _jsonable(vars(config))
    if not config.cosine:  # more epochs simply continue a run; with cosine annealing they change its schedule
        del settings["epochs"]
    checksum = zlib.crc32(np.ascontiguousarray(labels).tobytes(), zlib.crc32(np.ascontiguousarray(images)))
    return {
        **settings,
        "architecture": " ".join(repr(model).split()),
        "train_data": f"{len(labels)} images, crc32 {checksum:08x}",
    }


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"can't create the output folder {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK):
        raise CLIError(f"the output folder {folder} is not writable; choose another with --output-dir")


def _describe(model: Any) -> str:
    sizes = [layer.in_features for layer in model.modules() if hasattr(layer, "in_features")]
    last = [layer.out_features for layer in model.modules() if hasattr(layer, "out_features")]
    return "-".join(str(s) for s in [*sizes, *last[-1:]])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _anomaly_context(enabled: bool) -> Any:
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    from tinygrad_np.anomaly import detect_anomaly

    return detect_anomaly()


def _write_plots(directory: Path, trainer: Any, model: Any, test_data: Any, mnist: Any) -> None:
    from tinygrad_np.plots import save_training_plots
    from tinygrad_np.train import predict_proba

    images, labels = test_data
    predictions = predict_proba(model, images).argmax(axis=1)
    paths = save_training_plots(trainer.history, mnist.test_images, labels, predictions, directory)
    print(f"tinygrad-np: plots in {directory}: {', '.join(Path(p).name for p in paths.values())}", file=sys.stderr)


# ---- eval and predict -----------------------------------------------------------------------------------


def add_model_file_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--model-file",
        type=Path,
        default=None if required else Path("runs/model.npz"),
        required=required,
        help="a model saved by `tinygrad-np train` (default: runs/model.npz)",
    )


def load_model_file(path: Path) -> Any:
    from tinygrad_np.serialization import load_model

    if not path.is_file():
        raise CLIError(f"model file {path} not found; train one first: tinygrad-np train --save {path}")
    model, _ = load_model(path)
    return model


def run_eval(args: argparse.Namespace) -> int:
    from tinygrad_np.train import evaluate

    model = load_model_file(args.model_file)
    images, labels = load_data(args).arrays("test")
    loss, accuracy = evaluate(model, images, labels)
    result = {
        "model_file": str(args.model_file),
        "test_size": len(labels),
        "test_loss": loss,
        "test_accuracy": accuracy,
    }
    print(json.dumps(result) if args.json else f"test accuracy {accuracy:.4f} ({len(labels)} images), loss {loss:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from tinygrad_np.train import predict_proba

    model = load_model_file(args.model_file)
    if args.image is not None:
        from tinygrad_np.preprocess import load_image, to_mnist

        image = to_mnist(load_image(args.image))
        label = None
        source = str(args.image)
    else:
        mnist = load_data(args)
        if not 0 <= args.index < len(mnist.test_labels):
            raise CLIError(f"--index must be in 0..{len(mnist.test_labels) - 1}, got {args.index}")
        image = mnist.test_images[args.index].astype(np.float32) / 255
        label = int(mnist.test_labels[args.index])
        source = f"test image {args.index} of {mnist.source}"
    probabilities = predict_proba(model, image.reshape(1, 784))[0]
    digit = int(probabilities.argmax())
    if args.json:
        print(json.dumps({"source": source, "digit": digit, "label": label, "probabilities": probabilities.tolist()}))
        return 0
    print(f"{source}: predicted {digit}" + ("" if label is None else f" (label {label})"))
    for d, p in enumerate(probabilities):
        print(f"  {d}  {p:6.1%}  {'#' * round(40 * p)}")
    return 0


# ---- serve ----------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    from tinygrad_np.serve import run
    from tinygrad_np.train import predict_proba

    if args.model_file is not None:
        model = load_model_file(args.model_file)
        banner = f"model: {args.model_file}"
    else:
        from tinygrad_np.data import load_offline_sample
        from tinygrad_np.train import RECIPES, TrainConfig, Trainer, build_model, build_optimizer, evaluate

        print("tinygrad-np: no --model-file given; training a quick MLP on the offline sample first", file=sys.stderr)
        config = TrainConfig(**{**RECIPES["mlp"], "hidden_sizes": (128,), "epochs": 8, "dropout": 0.0})
        sample = load_offline_sample()
        model = build_model(config)
        trainer = Trainer(model, build_optimizer(config, model.parameters()), sample.arrays("train"), batch_size=64)
        trainer.fit(config.epochs)
        _, accuracy = evaluate(model, *sample.arrays("test"))
        banner = f"model: a 784-128-10 MLP trained just now on the offline sample ({accuracy:.1%} on its test split)"
    return run(lambda images: predict_proba(model, images), args.host, args.port, banner) or 0


# ---- the parser -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad value costs one line on stderr (and exit 2), not the whole usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinygrad-np", description="A small, honest autograd framework in NumPy: train and inspect MNIST nets."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a network on MNIST")
    add_train_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("eval", help="a saved model's accuracy on the test set")
    add_model_file_argument(evaluate)
    add_data_arguments(evaluate)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=run_eval)

    predict = commands.add_parser("predict", help="classify a test-set image or a picture of a digit")
    add_model_file_argument(predict)
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", type=int, help="index into the test set")
    source.add_argument("--image", type=Path, help="a PNG/JPEG of a handwritten digit, any size or polarity")
    add_data_arguments(predict)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=run_predict)

    serve = commands.add_parser("serve", help="a web page to draw digits and watch the network read them")
    serve.add_argument("--model-file", type=Path, help="a saved model (default: train a quick one first)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=run_serve)

    for name, module, help_text in _MOUNTED:
        try:
            mounted = __import__(module, fromlist=["add_arguments", "main"])
        except ImportError:
            continue
        if not hasattr(mounted, "add_arguments"):
            continue
        sub = commands.add_parser(name, help=help_text)
        mounted.add_arguments(sub)
        sub.set_defaults(handler=mounted.main)
    return parser


# Subcommands whose arguments and entry points live beside the code they drive.
_MOUNTED = [
    ("compare", "tinygrad_np.compare.cli", "compare hand-derived and automatic gradients, parameter by parameter"),
    ("export", "tinygrad_np.onnx_export", "export a saved model to ONNX"),
    ("graph", "tinygrad_np.graph", "draw a computation graph (DOT, Mermaid or SVG)"),
    ("bench", "benchmarks.cli", "benchmarks against hand-written NumPy backprop and PyTorch"),
]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("\ntinygrad-np: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"tinygrad-np {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _user_errors() -> tuple[type[BaseException], ...]:
    """The failures a user can cause; anything else is a bug and keeps its traceback."""
    # MemoryError: a model or file that asks for more memory than there is ("Unable to allocate 75 GiB ...").
    # ImportError: an optional extra that isn't installed; every lazy import says which `pip install` fixes it.
    errors: list[type[BaseException]] = [
        CLIError,
        ImportError,
        ValueError,
        TypeError,
        KeyError,
        OSError,
        FloatingPointError,
        MemoryError,
    ]
    image = sys.modules.get("PIL.Image")  # only loaded if a picture was read, so only then can it be the cause
    if image is not None:
        errors.append(image.DecompressionBombError)  # a picture too big to decode safely ("Image size (...)")
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
