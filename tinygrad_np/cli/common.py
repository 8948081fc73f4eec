"""What the subcommands share: option types, the data options, model files, and the one-line CLIError."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A problem to report in one line, with exit status 2."""


# ---- option types -------------------------------------------------------------------------------------


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
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


def port_number(text: str) -> int:
    """A TCP port, 0..65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535 (0: any free port), got {text}")
    return value


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

    return load_mnist(args.data_dir, offline=args.offline)  # a --data-dir that is no folder: it says what it is


def write_json_atomic(path: Path, payload: Any) -> None:
    from tinygrad_np.files import write_text_atomic

    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


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
    return load_model(path)
