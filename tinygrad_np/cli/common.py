"""What the subcommands share: option types, the data options, model files."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.errors import MissingFileError, UserError, import_extra

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a tool whose reader went away (`... | head`)
MNIST_PIXELS = 784
MNIST_CLASSES = 10


def exit_status(signals: list[int]) -> int:
    """128 + the number of the last signal received (SIGINT: 130, SIGTERM: 143), as a shell reports a process
    that the signal ended; 130 when none was recorded."""
    return 128 + signals[-1] if signals else EXIT_INTERRUPTED


# ---- option types -------------------------------------------------------------------------------------
#
# A type turns text into a value. The range of a value that a library object takes (a learning rate, a
# dropout probability, a batch size) is that object's to check, once; `option_errors` names the option when
# it refuses. Only values that nothing but the command line uses (--epochs, --limit-train) are checked here.


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def batch_size_type(text: str) -> int | None:
    """A whole number, or 'full' (None) for full-batch gradient descent."""
    return None if text.lower() == "full" else whole_number(text)


def finite_number(text: str) -> float:
    """A number, not NaN or infinite: for a value that no library object checks (compare's --arg)."""
    value = number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def thread_count(text: str) -> int | None:
    """A positive whole number, or 'auto' (None: the thread policy)."""
    from tinygrad_np.threads import ThreadCountError, parse

    try:
        return parse(text, "--threads")
    except ThreadCountError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number or 'auto', got {text!r}") from None


@contextlib.contextmanager
def option_errors(options: Mapping[str, str], given: Collection[str] | None = None, source: str = "") -> Iterator[None]:
    """A ValueError raised in the block about an argument of `options` (its `field`, or a name in its message,
    e.g. "lr") becomes a UserError naming the option that set it ("--lr: ..."); any other propagates as it is.
    When `given` lists the options the user gave and this one isn't among them, the value came from elsewhere and
    `source` is named instead ("--recipe mlp sets --hidden-sizes: ...").

    Constructors are the one place that checks a value; the command line only says which option was at fault.
    """
    try:
        yield
    except ValueError as err:
        # A SpecError or ConfigError says which field it is about; a constructor's ValueError says it in words.
        argument = getattr(err, "field", None) or next(
            (name for name in options if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", str(err), re.I)), None
        )
        if argument not in options:
            raise
        if given is not None and options[argument] not in given:
            raise UserError(f"{source} sets {options[argument]}: {err}") from err
        raise UserError(f"{options[argument]}: {err}") from err


# ---- start-up checks ---------------------------------------------------------------------------------------


def needs_extra(
    module: str, extra: str, purpose: str, when: Callable[[argparse.Namespace], bool] = lambda args: True
) -> Callable[[argparse.Namespace], None]:
    """A `Command` check: when `when(args)`, `module` imports, or a MissingDependencyError names the exact
    `pip install "tinygrad-np[extra]"`, before any data is read or any model trained."""

    def check(args: argparse.Namespace) -> None:
        if when(args):
            import_extra(module, extra, purpose)

    return check


# ---- shared pieces --------------------------------------------------------------------------------------


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """--threads N|auto, which every subcommand takes (see tinygrad_np/threads.py)."""
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        metavar="N",
        help="threads for large matrix products, BLAS itself on one (default: auto: $TINYGRAD_NP_THREADS if set, "
        "else the usable cores; bench: one with --quick); the results are the same with any count",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    # One source or the other: --offline with --data-dir used the folder, ignoring --offline without a word.
    group = parser.add_argument_group("data").add_mutually_exclusive_group()
    group.add_argument(
        "--data-dir",
        type=Path,
        help="folder with MNIST IDX or CSV files (default: $TINYGRAD_NP_MNIST_DIR, then "
        "a kagglehub download, then the bundled offline sample)",
    )
    group.add_argument("--offline", action="store_true", help="don't download; use the bundled 5,000-digit sample")


def load_data(args: argparse.Namespace) -> Any:
    from tinygrad_np.data import load_mnist

    return load_mnist(args.data_dir, offline=args.offline)  # a --data-dir that is no folder: it says what it is


def write_json_atomic(path: Path, payload: Any) -> None:
    from tinygrad_np.files import write_text_atomic
    from tinygrad_np.jsondata import to_json_data

    write_text_atomic(path, json.dumps(to_json_data(payload), indent=2, allow_nan=False) + "\n")


def add_model_file_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--model-file",
        type=Path,
        default=None if required else Path("runs/model.npz"),
        required=required,
        help="a model saved by `tinygrad-np train` (default: runs/model.npz)",
    )


def check_input_file(path: Path, what: str, expected: str, if_missing: str = "") -> None:
    """Nothing if `path` is a file (or a link to one); else a UserError saying what is there instead."""
    from tinygrad_np.files import describe_path

    if path.is_file():
        return
    described = f"{what} {path} {describe_path(path)}"
    if not os.path.lexists(path):
        raise MissingFileError(described + (f"; {if_missing}" if if_missing else ""))
    raise UserError(f"{described}; expected {expected}")


def load_saved_model(path: Path) -> Any:
    """The model in a file saved by `tinygrad-np train`; a path that is no file says what it is."""
    from tinygrad_np.serialization import load_model

    check_input_file(path, "model file", "a model file saved by tinygrad-np train",
                     if_missing=f"train one first: tinygrad-np train --save {path}")
    return load_model(path)


def load_model_file(path: Path) -> Any:
    """A saved model that reads MNIST digits (see `check_reads_mnist`)."""
    model = load_saved_model(path)
    check_reads_mnist(model, str(path))
    return model


def model_from_options(args: argparse.Namespace) -> Any:
    """The model of --model-file, else of --model-spec, else the tutorial's 784-10-10; it must read MNIST."""
    from tinygrad_np.spec import TUTORIAL_SPEC, load_spec, model_from_spec

    if args.model_file is not None:
        return load_model_file(args.model_file)
    if args.model_spec is None:
        return model_from_spec(TUTORIAL_SPEC)
    model = model_from_spec(load_spec(args.model_spec))
    check_reads_mnist(model, str(args.model_spec))
    return model


def check_reads_mnist(model: Any, name: str) -> None:
    """784 pixels in (in any shape: 784, or [28, 28] before a Flatten) and 10 class scores out, or a UserError."""
    from tinygrad_np.spec import spec_from_model
    from tinygrad_np.tensor import Tensor, no_grad

    size = spec_from_model(model)["input_size"]
    if np.prod(size) != MNIST_PIXELS:
        raise UserError(f"{name}: the model expects {size} features per example, but MNIST images have "
                        f"{MNIST_PIXELS} features (28x28 pixels)")
    was_training = model.training
    model.eval()  # a training-mode BatchNorm would fold the zeros into its running statistics
    try:
        with no_grad():
            outputs = model(Tensor(np.zeros((1, *np.atleast_1d(size)), np.float32))).shape
    finally:
        model.train(was_training)
    if outputs != (1, MNIST_CLASSES):
        given = outputs[1] if len(outputs) == 2 else f"outputs of shape {outputs[1:]}"
        raise UserError(f"{name}: the model gives {given} outputs per example, but MNIST has {MNIST_CLASSES} classes")


def as_model_input(model: Any, images: np.ndarray) -> np.ndarray:
    """Flattened images (N, 784) in the shape of one example the model takes, e.g. (N, 28, 28)."""
    from tinygrad_np.spec import spec_from_model

    return images.reshape(len(images), *np.atleast_1d(spec_from_model(model)["input_size"]))
