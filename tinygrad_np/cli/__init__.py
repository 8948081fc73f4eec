"""The `tinygrad-np` command: one front door for every subcommand, and the one error policy.

Each subcommand is a `Command` (cli/command.py) in a module of this package: train, eval, predict, serve,
compare, explain, export, graph. Tools above the library add theirs through the `tinygrad_np.commands` entry-point
group (the benchmarks add `bench`). An error the user can fix (a `UserError`: a bad option value, a missing or
corrupt file, a missing extra) ends in one line on stderr, `tinygrad-np COMMAND: error: ...`, and exit status 2.
Anything else is a bug and keeps its traceback. Every subcommand takes `--threads N` (threads for large matrix
products, default the usable cores; BLAS itself always on one: see tinygrad_np/threads.py).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Iterable

from tinygrad_np import __version__, threads
from tinygrad_np.cli import compare, explain, export, graph, inference, train
from tinygrad_np.cli.command import Command, installed_commands
from tinygrad_np.cli.common import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, add_threads_argument
from tinygrad_np.errors import UserError

COMMANDS: tuple[Command, ...] = (
    train.TRAIN,
    inference.EVAL,
    inference.PREDICT,
    inference.SERVE,
    compare.COMMAND,
    explain.COMMAND,
    export.COMMAND,
    graph.COMMAND,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad value costs one line on stderr (and exit 2), not the whole usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands: Iterable[Command]) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `tinygrad-np` parser, and each subcommand's own parser by name."""
    parser = _Parser(
        prog="tinygrad-np", description="A small, honest autograd framework in NumPy: train and inspect MNIST nets."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    parsers = {}
    for command in commands:
        parsers[command.name] = subparsers.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.add_arguments(parsers[command.name])
        add_threads_argument(parsers[command.name])
    return parser, parsers


def all_commands() -> dict[str, Command]:
    """The built-in commands, then those installed tools declare; a name can be taken once."""
    commands: dict[str, Command] = {}
    for command in (*COMMANDS, *installed_commands()):
        if command.name in commands:
            raise RuntimeError(f"two subcommands are named {command.name!r}")
        commands[command.name] = command
    return commands


def main(argv: list[str] | None = None) -> int:
    commands = all_commands()
    parser, parsers = build_parser(commands.values())
    args, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if unknown:  # said by the subcommand's parser, so the hint points to its --help
        parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    command = commands[args.command]
    try:
        # bench chooses again: it compares the libraries on their own thread counts too.
        with threads.limit(threads.choose(threads=args.threads).threads):
            for check in command.checks:
                check(args)
            return int(command.run(args) or 0)
    except KeyboardInterrupt:
        print("\ntinygrad-np: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # another pipe broke: a bug, with its traceback
        # The reader of our output left (`tinygrad-np predict ... | head -1`): stop quietly, as Unix tools do.
        # stdout goes to /dev/null, or Python would fail again flushing it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UserError as error:
        print(f"tinygrad-np {command.name}: error: {user_message(error)}", file=sys.stderr)
        return EXIT_USAGE


def _stdout_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader has left (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real stdout
        return False


def user_message(error: UserError) -> str:
    """The error's message on one line; an OSError's without the "[Errno 28]" that str() puts before it."""
    text = str(error)
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename is not None and str(error.filename) not in text:
            text = f"{error.filename}: {text}"
    return " ".join(text.split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
