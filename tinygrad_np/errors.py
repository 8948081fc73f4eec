"""The errors a user can fix: one family, so that the command line can tell them from bugs.

Every error that a bad option, file, setting or missing extra can cause derives from `UserError`, and its
message says in one line what is wrong and how to fix it. `tinygrad-np` prints such an error as
`tinygrad-np COMMAND: error: MESSAGE` and exits 2; any other exception is a bug and keeps its traceback.
Most subclasses also derive from the built-in exception that describes them (`SpecError` is a ValueError,
`MissingFileError` a FileNotFoundError), so code that catches those keeps working.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class UserError(Exception):
    """A problem the user can fix (a bad option, file or setting); the message names it, in one line."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class FileAccessError(UserError, OSError):
    """A file could not be read or written (no space, no permission, a folder in the way); names the file."""


class OutOfMemoryError(UserError, MemoryError):
    """There is not enough memory for what a file or an option asks; the message names which."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed; the message names the `pip install` that adds it."""


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """`import module`, or a MissingDependencyError naming `pip install "tinygrad-np[extra]"`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f'{purpose} needs {module.partition(".")[0]}: pip install "tinygrad-np[{extra}]" ({err})'
        ) from err
