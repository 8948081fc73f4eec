"""`tinygrad-np explain`: the backward pass of one batch's loss, step by step (`tinygrad_np.explain`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinygrad_np.cli.command import Command
from tinygrad_np.cli.common import (
    add_data_arguments,
    as_model_input,
    load_data,
    model_from_options,
    non_negative_int,
    positive_int,
)
from tinygrad_np.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-spec", type=Path, help="explain the model a .json/.toml spec describes")
    source.add_argument("--model-file", type=Path, help="explain a model saved by `tinygrad-np train` (.npz)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images in the batch (default 64)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="picks the batch (default 0)")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the tape of cross_entropy(model(x), y) on a batch of training images (the tutorial's net by default)."""
    from tinygrad_np import Tensor, explain
    from tinygrad_np.nn import functional as F

    model = model_from_options(args)
    model.train()
    images, labels = load_data(args).arrays("train")
    if args.batch_size > len(labels):
        raise UserError(f"--batch-size must be at most {len(labels)} (the training images), got {args.batch_size}")
    batch = np.sort(np.random.default_rng(args.seed).choice(len(labels), size=args.batch_size, replace=False))
    loss = F.cross_entropy(model(Tensor(as_model_input(model, images[batch]))), labels[batch])
    explain(loss, model=model)
    return 0


COMMAND = Command("explain", "print the backward pass of one batch's loss, step by step", add_arguments, run)
