"""`tinygrad-np export`: a saved model as an ONNX file, optionally checked against onnxruntime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tinygrad_np.cli.command import Command
from tinygrad_np.cli.common import MNIST_PIXELS, load_saved_model, needs_extra, option_errors, whole_number
from tinygrad_np.errors import UserError

DESCRIPTION = "Export a model saved by `tinygrad-np train` to ONNX (dynamic batch dimension unless --batch-size)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-file", type=Path, default=Path("runs/model.npz"),
                        help="a model saved by `tinygrad-np train` (default: runs/model.npz)")
    parser.add_argument("--output", "-o", type=Path, help="the .onnx file (default: the model file's name, .onnx)")
    parser.add_argument("--batch-size", type=whole_number,
                        help="fix the batch dimension (default: symbolic, any batch)")
    parser.add_argument("--verify", action="store_true",
                        help="run the file in onnxruntime on the offline MNIST sample and compare with tinygrad_np")


def run(args: argparse.Namespace) -> int:
    from tinygrad_np.onnx_export import OPSET, export_onnx

    model = load_saved_model(args.model_file)
    with option_errors({"batch_size": "--batch-size"}):
        path = export_onnx(model, _output(args), args.batch_size)
    message = f"wrote {path} (opset {OPSET}, batch {args.batch_size or 'dynamic'})"
    if args.verify:
        message += "; " + _verify(model, path, args.batch_size)
    print(message, file=sys.stderr)
    return 0


def _output(args: argparse.Namespace) -> Path:
    return args.output or args.model_file.with_suffix(".onnx")


def _check_output(args: argparse.Namespace) -> None:
    """Before the model is read and converted: a directory or device as the .onnx file is refused."""
    from tinygrad_np.files import check_output_file

    check_output_file(_output(args), "--output" if args.output else "--output (default: the model file's name, .onnx)")


def _verify(model, path: Path, batch_size: int | None) -> str:
    """Run the file in onnxruntime on MNIST test images and compare with the model itself."""
    from tinygrad_np.data import load_offline_sample
    from tinygrad_np.onnx_export import verify_onnx
    from tinygrad_np.spec import spec_from_model

    spec = spec_from_model(model)
    example = tuple(np.atleast_1d(spec["input_size"]))
    if int(np.prod(example)) != MNIST_PIXELS:
        raise UserError(f"--verify feeds MNIST images ({MNIST_PIXELS} pixels), but the model takes {example}")
    images, _ = load_offline_sample().arrays("test")
    images = images[: batch_size or len(images)]
    difference = verify_onnx(model, path, images.reshape(-1, *example).astype(spec["dtype"]))
    return f"onnxruntime agrees on {len(images)} MNIST images (max difference {difference:.2g})"


COMMAND = Command(
    "export", "export a saved model to ONNX", add_arguments, run, description=DESCRIPTION,
    checks=(
        needs_extra("onnx", "onnx", "export"),
        needs_extra("onnxruntime", "onnx", "export --verify", when=lambda args: args.verify),
        _check_output,
    ),
)
