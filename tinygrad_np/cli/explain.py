"""`tinygrad-np explain`: the backward pass of one batch's loss, step by step (`tinygrad_np.explain`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinygrad_np.cli.common import add_data_arguments, load_data, load_model_file, positive_int
from tinygrad_np.errors import UserError


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-spec", type=Path, help="explain the model a .json/.toml spec describes")
    source.add_argument("--model-file", type=Path, help="explain a model saved by `tinygrad-np train` (.npz)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images in the batch (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="picks the batch (default 0)")
    add_data_arguments(parser)


def run_explain(args: argparse.Namespace) -> int:
    """Print the tape of cross_entropy(model(x), y) on a batch of training images (the tutorial's net by default)."""
    from tinygrad_np import Tensor, explain
    from tinygrad_np.nn import functional as F
    from tinygrad_np.spec import TUTORIAL_SPEC, load_spec, model_from_spec

    if args.model_file is not None:
        model = load_model_file(args.model_file)
    else:
        model = model_from_spec(load_spec(args.model_spec) if args.model_spec is not None else TUTORIAL_SPEC)
    model.train()
    images, labels = load_data(args).arrays("train")
    if args.batch_size > len(labels):
        raise UserError(f"--batch-size must be at most {len(labels)} (the training images), got {args.batch_size}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    batch = np.sort(np.random.default_rng(args.seed).choice(len(labels), size=args.batch_size, replace=False))
    loss = F.cross_entropy(model(Tensor(images[batch])), labels[batch])
    explain(loss, model=model)
    return 0
