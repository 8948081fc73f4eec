"""`tinygrad-np graph`: the loss graph of one MNIST batch as DOT, Mermaid or SVG."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from tinygrad_np.cli.command import Command
from tinygrad_np.cli.common import as_model_input, model_from_options, non_negative_int, positive_int

FORMATS = ("dot", "mermaid", "svg")
SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".svg": "svg"}
DESCRIPTION = "Draw the loss graph of one MNIST batch (the tutorial's 784-10-10 network unless told otherwise)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, help="dot, mermaid or svg (default: --output's suffix, else dot); "
                        "svg is drawn by Graphviz's dot where installed, else by a built-in layout")
    parser.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-spec", type=Path, help="draw the model a .json/.toml spec describes")
    source.add_argument("--model-file", type=Path, help="draw a model saved by `tinygrad-np train` (.npz)")
    parser.add_argument("--data-dir", type=Path, help="MNIST folder for the batch (default: the offline sample)")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="images in the batch (default 4)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="picks the batch (default 0)")
    parser.add_argument("--no-grad", action="store_true", help="draw before backward: no gradient norms")


def run(args: argparse.Namespace) -> int:
    """Draw the loss graph as the options ask; write it to --output (atomically) or standard output."""
    from tinygrad_np.files import write_atomic

    fmt = args.format or SUFFIXES.get(args.output.suffix.lower() if args.output else "", "dot")
    graph = loss_graph(args)
    text = {"dot": graph.to_dot, "mermaid": graph.to_mermaid, "svg": lambda: _svg(graph)}[fmt]()
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.output, lambda file: file.write(text.encode("utf-8")))
        print(f"wrote {fmt} of the loss graph ({len(graph.nodes)} nodes, {len(graph.edges)} edges) to {args.output}",
              file=sys.stderr)
    return 0


def _svg(graph) -> str:  # graph: tinygrad_np.graph.ComputationGraph
    """Graphviz's drawing where its `dot` program is installed; else our own layout, which needs nothing (Graphviz
    is no pip package, so no extra could install it)."""
    if shutil.which("dot") is not None:
        print("tinygrad-np: drawing the SVG with Graphviz's dot", file=sys.stderr)
        return graph.to_svg()
    print("tinygrad-np: Graphviz's dot is not installed; drawing the SVG with the built-in layout (install Graphviz, "
          "e.g. apt install graphviz, for its drawing)", file=sys.stderr)
    return graph.to_builtin_svg()


def _check_output(args: argparse.Namespace) -> None:
    """Before any work: a directory or device as --output is refused, and so is a suffix that names another
    format than the one written (DOT text in a .png would open as a broken picture)."""
    from tinygrad_np.errors import UserError
    from tinygrad_np.files import check_output_file

    if args.output is None:
        return
    check_output_file(args.output, "--output")
    suffix = args.output.suffix.lower()
    named = SUFFIXES.get(suffix)
    known = ", ".join(f"{s} ({f})" for s, f in SUFFIXES.items())
    if suffix and named is None and args.format is None:
        raise UserError(f"--output {args.output}: graph writes {', '.join(FORMATS)}, not {suffix}; name the file "
                        f"with one of {known}, or choose with --format")
    if named is not None and args.format is not None and named != args.format:
        raise UserError(f"--output {args.output} names {named}, but --format is {args.format}; make them agree")


def loss_graph(args: argparse.Namespace):  # -> tinygrad_np.graph.ComputationGraph
    """The graph of one batch's cross-entropy loss through the chosen model (the tutorial's 784-10-10 by default)."""
    from tinygrad_np.data import load_offline_sample, read_mnist_dir
    from tinygrad_np.errors import UserError
    from tinygrad_np.graph import capture
    from tinygrad_np.nn import functional as F
    from tinygrad_np.tensor import Tensor

    model = model_from_options(args)
    model.train()  # the training graph, Dropout included
    images, labels = (read_mnist_dir(args.data_dir) if args.data_dir else load_offline_sample()).arrays("train")
    if args.batch_size > len(labels):  # as explain says it: a smaller batch drawn silently isn't what was asked
        raise UserError(f"--batch-size must be at most {len(labels)} (the training images), got {args.batch_size}")
    batch = np.random.default_rng(args.seed).choice(len(labels), size=args.batch_size, replace=False)
    x = Tensor(as_model_input(model, images[batch]))
    loss = F.cross_entropy(model(x), labels[batch])
    graph = capture(loss, names=[("images", x), *model.named_parameters()], retain_grads=not args.no_grad)
    if not args.no_grad:
        loss.backward()
    return graph


COMMAND = Command("graph", "draw a computation graph (DOT, Mermaid or SVG)", add_arguments, run,
                  description=DESCRIPTION, checks=(_check_output,))
