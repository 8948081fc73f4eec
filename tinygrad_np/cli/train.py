"""`tinygrad-np train`: options, recipes, checkpoints, Ctrl-C and SIGTERM, metrics, plots."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinygrad_np import threads
from tinygrad_np.cli.command import Command
from tinygrad_np.cli.common import (
    add_data_arguments,
    as_model_input,
    batch_size_type,
    check_reads_mnist,
    exit_status,
    load_data,
    needs_extra,
    number,
    option_errors,
    positive_int,
    whole_number,
    write_json_atomic,
)
from tinygrad_np.errors import OutOfMemoryError, UserError
from tinygrad_np.jsondata import to_json_data

if TYPE_CHECKING:
    from tinygrad_np.checkpoint import CheckpointManager
    from tinygrad_np.data import MNIST
    from tinygrad_np.nn import Module
    from tinygrad_np.optim import LRScheduler, Optimizer
    from tinygrad_np.train import TrainConfig, Trainer

# Settings and constructor arguments -> the option that sets them, to name it when a value is refused.
OPTIONS = {
    "nesterov": "--nesterov",
    "momentum": "--momentum",
    "centered": "--centered",
    "betas": "--betas",
    "eps": "--eps",
    "amsgrad": "--amsgrad",
    "no_weight_decay": "--no-weight-decay",
    "lr": "--lr",
    "learning rate": "--lr",
    "weight_decay": "--weight-decay",
    "optimizer": "--optimizer",
    "batch_size": "--batch-size",
    "step_size": "--step-size",
    "gamma": "--gamma",
    "cosine": "--cosine",
    "T_max": "--epochs",
    "seed": "--seed",
    "model": "--model",
    "hidden_sizes": "--hidden-sizes",
    "out_features": "--hidden-sizes",
    "dropout": "--dropout",
    "p": "--dropout",
    "init": "--init",
}
# Options that change the recipe's settings when given (their defaults are None: not given).
SETTINGS = ("model", "hidden_sizes", "init", "dropout", "optimizer", "lr", "momentum", "nesterov", "centered", "betas",
            "eps", "amsgrad", "weight_decay", "no_weight_decay", "epochs", "step_size", "gamma", "cosine", "seed")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from tinygrad_np.nn.init import INITS
    from tinygrad_np.train import NETWORKS, OPTIMIZERS, RECIPES

    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="a complete setup: 'tutorial' reproduces the tutorial (784-10-10, full-batch gradient descent, "
        "lr 0.10, step decay); 'two_layer' (the default), 'mlp' and 'cnn' are ours. Options given explicitly "
        "override it",
    )
    model = parser.add_argument_group("model")
    network = model.add_mutually_exclusive_group()
    network.add_argument("--model", choices=NETWORKS,
                         help="the tutorial's 784-10-10, an MLP, or a LeNet-style CNN on (1, 28, 28) images")
    network.add_argument("--model-spec", type=Path, help="a JSON or TOML file declaring the layers")
    model.add_argument("--hidden-sizes", type=whole_number, nargs="+", help="MLP hidden layer widths, e.g. 256 128")
    model.add_argument("--init", choices=INITS, help="weight initialisation")
    model.add_argument("--dropout", type=number, help="MLP: dropout probability after each hidden layer")
    training = parser.add_argument_group("training")
    training.add_argument("--optimizer", choices=OPTIMIZERS)
    training.add_argument("--lr", "--learning-rate", dest="lr", type=number, help="learning rate")
    training.add_argument("--momentum", type=number, help="momentum (sgd, rmsprop)")
    training.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (sgd)")
    training.add_argument("--centered", action="store_true", default=None,
                          help="divide by the gradient's variance, not its second moment (rmsprop)")
    training.add_argument("--betas", type=number, nargs=2, metavar=("BETA1", "BETA2"),
                          help="decay rates of the moment estimates (adam, adamw; default 0.9 0.999)")
    training.add_argument("--eps", type=number, help="added to the denominator (rmsprop, adam, adamw; default 1e-8)")
    training.add_argument("--amsgrad", action="store_true", default=None,
                          help="divide by the largest second moment so far (adam, adamw)")
    training.add_argument("--weight-decay", type=number)
    training.add_argument("--no-weight-decay", nargs="+", metavar="PATTERN",
                          help="spare the parameters these names match from weight decay, e.g. bias (matched against "
                               "'0.bias' and its last part, with shell wildcards)")
    training.add_argument("--epochs", type=positive_int, help="passes over the data (iterations when full batch)")
    training.add_argument(
        "--batch-size", type=batch_size_type, default=argparse.SUPPRESS, help="mini-batch size, or 'full'"
    )
    training.add_argument("--step-size", type=whole_number, help="step decay: multiply lr by --gamma every N epochs")
    training.add_argument("--gamma", type=number, help="step decay factor")
    training.add_argument("--cosine", action="store_true", default=None, help="cosine-anneal the lr to 0")
    training.add_argument("--seed", type=whole_number, help="seeds weights, data order and dropout (default 0)")
    training.add_argument("--limit-train", type=positive_int, help="train on the first N images only")
    add_data_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", type=Path, default=Path("runs"), help="where outputs go (default: runs/)")
    output.add_argument("--save", type=Path, help="model file (default: OUTPUT_DIR/model.npz)")
    output.add_argument("--metrics", type=Path, help="metrics JSON (default: OUTPUT_DIR/metrics.json)")
    output.add_argument("--plots", type=Path, help="write training curves, predictions and a confusion matrix here")
    output.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway when not a tty)")
    reliability = parser.add_argument_group("reliability")
    reliability.add_argument("--checkpoint-dir", type=Path,
                             help="write a checkpoint after every epoch (Ctrl-C and SIGTERM write one anyway, to "
                                  "OUTPUT_DIR/checkpoint without this)")
    reliability.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    reliability.add_argument("--detect-anomaly", action="store_true", help="stop at the first NaN/Inf, naming the op")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe (by --recipe, else the one for --model) with the options given; a spec file is read first."""
    from tinygrad_np.spec import load_spec
    from tinygrad_np.train import recipe_config

    settings = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    if hasattr(args, "batch_size"):  # absent unless given: 'full' (None) must override a recipe's size
        settings["batch_size"] = args.batch_size
    if args.model_spec is not None:
        settings["model"] = load_spec(args.model_spec)
    recipe = args.recipe or (args.model if args.model in ("mlp", "cnn") else "two_layer")
    # A value the user didn't give came from the recipe, or for the layers from the spec file: name that instead.
    given = {OPTIONS.get(name, "--" + name.replace("_", "-")) for name in settings}
    source = f"--recipe {recipe}" if args.recipe else f"the default recipe for this network ({recipe})"
    if args.model_spec is not None:
        source = f"--model-spec {args.model_spec}"
    with option_errors(OPTIONS, given, source):
        return recipe_config(recipe, **settings)


def run_train(args: argparse.Namespace) -> int:
    """Settings, data, the trainer, resuming, then training and its outputs: one step each."""
    config = train_config_from_args(args)
    model, optimizer, scheduler = build_model_and_optimizer(config)
    if args.model_spec is not None:
        check_reads_mnist(model, str(args.model_spec))
    data = load_training_data(args)
    trainer = build_trainer(config, model, optimizer, scheduler, data)
    checkpoints = checkpoint_manager(args, config, data)
    if args.resume:
        resume(trainer, checkpoints, config)
    blas = threads.choose(args.threads)
    announce(args, config, trainer, data, blas)
    start = time.perf_counter()
    with threads.limit(blas.threads):
        stopped = fit(args, config, trainer, checkpoints)
    if stopped is not None:
        return stopped
    write_outputs(args, config, trainer, data, time.perf_counter() - start, blas)
    return 0


@dataclass(frozen=True)
class TrainingData:
    """MNIST as loaded, and the arrays a run trains and tests on (the first `limit` training images)."""

    mnist: MNIST  # its source, and the raw images for plots and the fingerprint
    limit: int
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def load_training_data(args: argparse.Namespace) -> TrainingData:
    mnist = load_data(args)
    if args.limit_train and args.limit_train > len(mnist.train_labels):
        raise UserError(f"--limit-train {args.limit_train} is more than the {len(mnist.train_labels)} training images")
    limit = args.limit_train or len(mnist.train_labels)
    images, labels = mnist.arrays("train")
    return TrainingData(mnist, limit, (images[:limit], labels[:limit]), mnist.arrays("test"))


def build_model_and_optimizer(config: TrainConfig) -> tuple[Module, Optimizer, LRScheduler | None]:
    """The model, its optimizer and schedule, before any data is loaded; a refused value names its option."""
    from tinygrad_np.train import build_model, build_optimizer, build_scheduler

    try:
        model = build_model(config)
    except MemoryError as err:  # a spec is bounded (spec.MAX_PARAMETERS), but a machine may hold less
        raise OutOfMemoryError(f"not enough memory to build the network ({err}); use smaller layers") from err
    with option_errors(OPTIONS):
        optimizer = build_optimizer(config, model)
        return model, optimizer, build_scheduler(config, optimizer)


def build_trainer(
    config: TrainConfig, model: Module, optimizer: Optimizer, scheduler: LRScheduler | None, data: TrainingData
) -> Trainer:
    from tinygrad_np.nn import functional as F
    from tinygrad_np.train import Trainer

    (train_images, train_labels), (test_images, test_labels) = data.train, data.test
    train = as_model_input(model, train_images), train_labels  # e.g. (N, 28, 28) for a spec that starts with Flatten
    test = as_model_input(model, test_images), test_labels
    with option_errors(OPTIONS):  # the batch size is the DataLoader's to check
        return Trainer(model, optimizer, F.cross_entropy, train, test, batch_size=config.batch_size,
                       scheduler=scheduler, seed=config.seed)


def checkpoint_manager(args: argparse.Namespace, config: TrainConfig, data: TrainingData) -> CheckpointManager:
    """Checkpoints after every epoch into --checkpoint-dir; without it, Ctrl-C or SIGTERM still saves one into
    OUTPUT_DIR/checkpoint."""
    from tinygrad_np.checkpoint import CheckpointManager

    fingerprint = _run_fingerprint(config, data.mnist.train_images[: data.limit], data.mnist.train_labels[: data.limit])
    return CheckpointManager(_checkpoint_dir(args), fingerprint)


def resume(trainer: Trainer, checkpoints: CheckpointManager, config: TrainConfig) -> None:
    checkpoints.restore(trainer)
    if trainer.epoch > config.epochs:
        raise UserError(
            f"the checkpoint in {checkpoints.path} is after epoch {trainer.epoch}, past --epochs {config.epochs}"
        )
    print(f"tinygrad-np: resumed from {checkpoints.path} ({trainer.describe_position()})", file=sys.stderr)


def check_output_paths(args: argparse.Namespace) -> None:
    """Every file and folder the run writes, before any data is read: a directory, device or FIFO where a file
    goes, or a file where a folder goes, is refused now rather than after the training it would lose."""
    from tinygrad_np.checkpoint import CheckpointManager
    from tinygrad_np.files import check_output_dir, check_output_file

    check_output_dir(args.output_dir, "--output-dir")
    save_path, metrics_path = _output_paths(args)
    check_output_file(save_path, "--save" if args.save else "--save (default OUTPUT_DIR/model.npz)")
    check_output_file(metrics_path, "--metrics" if args.metrics else "--metrics (default OUTPUT_DIR/metrics.json)")
    checkpoints = CheckpointManager(_checkpoint_dir(args))
    given = args.checkpoint_dir is not None
    check_output_dir(checkpoints.directory, "--checkpoint-dir" if given else "the Ctrl-C checkpoint's folder")
    check_output_file(checkpoints.path, "--checkpoint-dir's checkpoint" if given else "the Ctrl-C checkpoint")
    if args.plots is not None:
        check_output_dir(args.plots, "--plots")


def announce(
    args: argparse.Namespace, config: TrainConfig, trainer: Trainer, data: TrainingData, blas: threads.Choice
) -> None:
    sizes = _describe(trainer.model)
    network = f"the {sizes} network of {args.model_spec}" if args.model_spec is not None else f"a {sizes} network"
    print(
        f"tinygrad-np: training {network} on {len(data.train[1])} images from "
        f"{data.mnist.source}; {config.optimizer} lr={config.lr:g}, batch={config.batch_size or 'full'}, "
        f"epochs={config.epochs}, seed={config.seed}; {blas}",
        file=sys.stderr,
    )


def fit(
    args: argparse.Namespace, config: TrainConfig, trainer: Trainer, checkpoints: CheckpointManager
) -> int | None:
    """Train; Ctrl-C or SIGTERM saves a checkpoint at the next batch boundary. None when training finished, else
    the exit status the signal asks for (130 for Ctrl-C, 143 for SIGTERM)."""
    from tinygrad_np.train import DivergenceError, TrainingInterrupted, stop_on_signals

    progress = not args.no_progress and sys.stderr.isatty()
    newline = "\n" if progress else ""  # below the progress bar
    received: list[int] = []
    try:
        # A signal sets a flag that the trainer checks between batches, so the state it saves is consistent.
        with _anomaly_context(args.detect_anomaly), stop_on_signals(trainer) as received:
            trainer.fit(
                config.epochs,
                progress=progress,
                evaluate_every=1 if config.batch_size is not None else max(1, config.epochs // 20),
                on_epoch_end=checkpoints.save if args.checkpoint_dir is not None else None,
            )
    except DivergenceError as err:
        if err.non_finite and not args.detect_anomaly:
            raise UserError(f"{err}; to find the op that made it, run again with --detect-anomaly") from err
        raise
    except MemoryError as err:
        raise OutOfMemoryError(
            f"not enough memory to train the {_describe(trainer.model)} network with --batch-size "
            f"{config.batch_size or 'full'} ({err}); use a smaller --batch-size or smaller layers"
        ) from err
    except TrainingInterrupted:
        path = checkpoints.save(trainer)
        print(
            f"{newline}tinygrad-np: {_stopped_by(received)} {trainer.describe_position()}; checkpoint saved to {path}; "
            f"continue with the same options plus --checkpoint-dir {checkpoints.directory} --resume",
            file=sys.stderr,
        )
        return exit_status(received)
    except KeyboardInterrupt:
        # A second signal lands mid-step, where the weights may be half updated: saving them would be wrong.
        kept = f"; the checkpoint in {checkpoints.path} is intact" if checkpoints.path.is_file() else ""
        print(f"{newline}tinygrad-np: {_stopped_by(received)} twice; stopped at once without saving{kept}",
              file=sys.stderr)
        return exit_status(received)
    return None


def _stopped_by(signals: list[int]) -> str:
    """'interrupted' (Ctrl-C), or 'stopped by SIGTERM'."""
    import signal

    last = signals[-1] if signals else signal.SIGINT
    return "interrupted" if last == signal.SIGINT else f"stopped by {signal.Signals(last).name}"


def write_outputs(
    args: argparse.Namespace, config: TrainConfig, trainer: Trainer, data: TrainingData, seconds: float,
    blas: threads.Choice,
) -> None:
    """The model file (with the metrics but the history as metadata), metrics.json, the plots; a summary line."""
    from tinygrad_np.serialization import save_model

    final = trainer.history[-1]
    metrics = {
        "data_source": data.mnist.source,
        "data_source_kind": data.mnist.source_kind,
        "train_size": len(data.train[1]),
        "test_size": len(data.test[1]),
        "final_train_loss": final["train_loss"],
        "final_train_accuracy": final["train_accuracy"],
        "test_loss": final["test_loss"],
        "test_accuracy": final["test_accuracy"],
        "epochs": config.epochs,
        "seconds": seconds,
        "seed": config.seed,
        "threads": blas.threads,  # the weights are the same with any count (tinygrad_np/parallel.py)
        "blas_threads": 1 if threads.unavailable() is None else None,  # None: BLAS kept its own count
        "config": dataclasses.asdict(config),
        "model_spec": None if args.model_spec is None else str(args.model_spec),
        "history": trainer.history,
    }
    save_path, metrics_path = _output_paths(args)
    save_model(trainer.model, save_path, metadata={k: v for k, v in metrics.items() if k != "history"})
    write_json_atomic(metrics_path, metrics)
    if args.plots is not None:
        _write_plots(args.plots, trainer, data)
    print(
        f"test accuracy {final['test_accuracy']:.4f}, final train loss {final['train_loss']:.4f}, {seconds:.1f} s; "
        f"model {save_path}, metrics {metrics_path}"
    )


def _output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    return args.save or args.output_dir / "model.npz", args.metrics or args.output_dir / "metrics.json"


def _checkpoint_dir(args: argparse.Namespace) -> Path:
    """--checkpoint-dir; without it, Ctrl-C or SIGTERM still saves a checkpoint, into OUTPUT_DIR/checkpoint."""
    return args.checkpoint_dir or args.output_dir / "checkpoint"


def _run_fingerprint(config: TrainConfig, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it: every setting, every field of the network's
    spec and the training data, flattened to dotted names ("model.layers.0.out_features") so that a refusal
    names the one field that differs."""
    import zlib

    settings = _flatten(to_json_data(dataclasses.asdict(config)))
    if not config.cosine:  # more epochs simply continue a run; with cosine annealing they change its schedule
        del settings["epochs"]
    checksum = zlib.crc32(np.ascontiguousarray(labels).tobytes(), zlib.crc32(np.ascontiguousarray(images)))
    return {**settings, "train_data": f"{len(labels)} images, crc32 {checksum:08x}"}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings by dotted name; a list of plain values (betas, no_weight_decay, input_size) is one value."""
    if not isinstance(value, (dict, list)) or (isinstance(value, list) and not any(
        isinstance(item, (dict, list)) for item in value
    )):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value)
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _describe(model: Module) -> str:
    """784-128-10 for an MLP; conv16-conv32-512-128-10 for a CNN (its convolutions by their output channels)."""
    sizes = [f"conv{layer.out_channels}" if hasattr(layer, "out_channels") else str(layer.in_features)
             for layer in model.modules() if hasattr(layer, "in_features") or hasattr(layer, "out_channels")]
    last = [layer.out_features for layer in model.modules() if hasattr(layer, "out_features")]
    return "-".join(str(s) for s in [*sizes, *last[-1:]])


def _anomaly_context(enabled: bool) -> Any:
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    from tinygrad_np.anomaly import detect_anomaly

    return detect_anomaly()


def _write_plots(directory: Path, trainer: Trainer, data: TrainingData) -> None:
    from tinygrad_np.plots import save_training_plots
    from tinygrad_np.train import predict_proba

    images, labels = data.test
    predictions = predict_proba(trainer.model, as_model_input(trainer.model, images)).argmax(axis=1)
    paths = save_training_plots(trainer.history, data.mnist.test_images, labels, predictions, directory)
    print(f"tinygrad-np: plots in {directory}: {', '.join(Path(p).name for p in paths.values())}", file=sys.stderr)


def _resume_needs_checkpoint_dir(args: argparse.Namespace) -> None:
    if args.resume and args.checkpoint_dir is None:
        raise UserError("--resume needs --checkpoint-dir (the folder the interrupted run wrote to)")


TRAIN = Command(
    "train", "train a network on MNIST", add_train_arguments, run_train,
    checks=(
        _resume_needs_checkpoint_dir,
        check_output_paths,
        needs_extra("matplotlib.figure", "plot", "--plots", when=lambda args: args.plots is not None),
    ),
)
