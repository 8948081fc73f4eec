"""What a subcommand of `tinygrad-np` is, and how the ones that live above the library are found.

A subcommand is a `Command`: a name, its options, start-up checks and the function that runs it. The built-in
ones are listed in `tinygrad_np.cli.COMMANDS`. Tools that sit above the library declare theirs in the
`tinygrad_np.commands` entry-point group of their distribution (pyproject.toml), so the library finds them
without importing them by name: the benchmarks add `bench` that way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

COMMANDS_GROUP = "tinygrad_np.commands"

Check = Callable[[argparse.Namespace], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: `tinygrad-np NAME [options]` runs `run(args)`, whose return value is the exit status.

    `checks` run in order before `run`, each raising a UserError for what can be refused before any work is
    done (a missing extra, a port in use, an option that needs another); `run` raises UserError for the rest.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None
    checks: Sequence[Check] = ()


def installed_commands() -> list[Command]:
    """The commands that installed tools declare in the `tinygrad_np.commands` entry-point group."""
    commands = []
    for entry_point in entry_points(group=COMMANDS_GROUP):
        command = entry_point.load()
        if not isinstance(command, Command) or command.name != entry_point.name:
            raise TypeError(f"entry point {entry_point.name} = {entry_point.value} in {COMMANDS_GROUP} must be a "
                            f"Command named {entry_point.name!r}, got {command!r}")
        commands.append(command)
    return commands


def plugin(group: str, name: str) -> Any:
    """The object the entry point `name` of `group` names, or None when no installed distribution declares it."""
    found = entry_points(group=group, name=name)
    return next(iter(found)).load() if found else None
