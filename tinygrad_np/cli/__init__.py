"""The `tinygrad-np` command: train, eval, predict, compare, explain, export, graph, serve, bench.

The error policy, in one place: an error the user can fix (a `UserError`: a bad option value, a missing or
corrupt file, a missing extra) ends in one line on stderr, `tinygrad-np COMMAND: error: ...`, and exit status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinygrad_np import __version__
from tinygrad_np.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_data_arguments,
    add_model_file_argument,
    port_number,
)
from tinygrad_np.cli.explain import add_explain_arguments, run_explain
from tinygrad_np.cli.inference import run_eval, run_predict, run_serve
from tinygrad_np.cli.train import add_train_arguments, run_train
from tinygrad_np.errors import UserError

# ---- the parser -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad value costs one line on stderr (and exit 2), not the whole usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinygrad-np", description="A small, honest autograd framework in NumPy: train and inspect MNIST nets."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    serve.add_argument("--port", type=port_number, default=8000, help="TCP port, 0..65535 (default: %(default)s)")
    serve.set_defaults(handler=run_serve)

    explain = commands.add_parser("explain", help="print the backward pass of one batch's loss, step by step")
    add_explain_arguments(explain)
    explain.set_defaults(handler=run_explain)

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
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's own parser says so, so the hint points to its --help
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("\ntinygrad-np: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"tinygrad-np {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


if __name__ == "__main__":
    sys.exit(main())
