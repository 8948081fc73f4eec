"""`tinygrad-np compare`: the tutorial's hand-derived gradients (or an MLP's) against autograd, on real digits.

The lead's CLI mounts it as a subcommand::

    sub = subparsers.add_parser("compare", help=...); cli.add_arguments(sub); sub.set_defaults(func=cli.main)

Exit status: 0 when nothing FAILs, 1 when something does, 2 when the inputs are unusable (message on stderr).
"""

from __future__ import annotations

import argparse
import functools
import sys

import numpy as np

from tinygrad_np.compare.model import compare_model
from tinygrad_np.compare.report import GradientReport


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The compare subcommand's options."""
    parser.description = (
        "Compare hand-derived backprop (the tutorial's 784-10-10 network, or an MLP with --hidden-sizes) with "
        "autograd on a batch of MNIST: forward pass per layer, then every parameter's gradient. "
        "Exit status 0 when all agree, 1 on any FAIL."
    )
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=None, metavar="N",
                        help="an MLP with these hidden layers (default: the tutorial network, 784-10-10, with the "
                             "tutorial's own forward_prop/backward_prop)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples in the batch (default 64)")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="MNIST split to draw from")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST files (default: see load_mnist)")
    parser.add_argument("--offline", action="store_true", help="use the bundled offline sample, no download")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="the model's dtype (float64 gives a crisp verdict; float32 shows rounding)")
    parser.add_argument("--init", choices=("tutorial", "he", "xavier"), default=None,
                        help="weight init (default: tutorial's U(-0.5, 0.5) for the tutorial network, he for MLPs)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty wd/2 ||W||^2 on weights")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="dropout probability for MLP hidden layers, masks drawn from --seed")
    parser.add_argument("--numerical", action="store_true",
                        help="also compute central-difference gradients in float64 and blame the wrong side")
    parser.add_argument("--numerical-entries", type=int, default=1000,
                        help="at most this many entries per parameter are differenced (0: all; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the init, the batch and the dropout masks")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    return parser


def _fail(message: str) -> int:
    print(f"tinygrad-np compare: error: {message}", file=sys.stderr)
    return 2


def build(args: argparse.Namespace) -> GradientReport:
    """Load the batch, build the network and its hand-derived functions, and compare."""
    from models import mlp as mlp_reference
    from models import two_layer as tutorial
    from tinygrad_np.data import load_mnist

    rng = np.random.default_rng(args.seed)
    images, labels = load_mnist(args.data_dir, offline=args.offline, verbose=not args.json).arrays(args.split)
    if not 1 <= args.batch_size <= len(images):
        raise ValueError(f"--batch-size must be between 1 and {len(images)} (the {args.split} split's size), "
                         f"got {args.batch_size}")
    chosen = np.sort(rng.choice(len(images), size=args.batch_size, replace=False))
    x, y = images[chosen].astype(args.dtype), labels[chosen]
    dtype = np.dtype(args.dtype)
    options = {"weight_decay": args.weight_decay, "numerical": args.numerical, "seed": args.seed,
               "numerical_entries": args.numerical_entries or None}

    if args.hidden_sizes is None:
        if args.dropout:
            raise ValueError("--dropout needs an MLP (--hidden-sizes); the tutorial network has no dropout")
        model = tutorial.two_layer(rng, dtype=dtype, init=args.init or "tutorial")
        forward, backward = tutorial.manual_forward, tutorial.manual_backward
        if args.weight_decay:
            forward = mlp_reference.manual_forward
            backward = functools.partial(mlp_reference.manual_backward, weight_decay=args.weight_decay)
        return compare_model(model, backward, x, y, manual_forward=forward, **options)

    if any(size < 1 for size in args.hidden_sizes):
        raise ValueError(f"--hidden-sizes must be positive, got {args.hidden_sizes}")
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1), got {args.dropout}")
    model = mlp_reference.mlp(x.shape[1], args.hidden_sizes, 10, dropout=args.dropout, generator=rng, dtype=dtype,
                              init=args.init or "he")
    masks = None
    if args.dropout:
        masks = mlp_reference.draw_dropout_masks(args.hidden_sizes, len(x), args.dropout, rng)
    hand = {"dropout_masks": masks, "dropout": args.dropout}
    return compare_model(
        model,
        functools.partial(mlp_reference.manual_backward, weight_decay=args.weight_decay, **hand),
        x,
        y,
        manual_forward=functools.partial(mlp_reference.manual_forward, **hand),
        dropout_masks=masks,
        **options,
    )


def main(args: argparse.Namespace) -> int:
    """Print the report (table or JSON); 0 when nothing FAILs, 1 on a FAIL, 2 on unusable inputs."""
    try:
        report = build(args)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(str(exc))
    print(report.to_json() if args.json else report.format())
    return 0 if report.passed else 1


if __name__ == "__main__":  # python -m tinygrad_np.compare.cli
    sys.exit(main(add_arguments(argparse.ArgumentParser(prog="tinygrad-np compare")).parse_args()))
