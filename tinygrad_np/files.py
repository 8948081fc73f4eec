"""Files written atomically, output paths checked before long work, and errors that name the file.

A write goes to a temporary file beside the target, is fsynced, then renamed over it: readers, and a process
killed half-way, see the old file or the new one, never half of one. On Linux the temporary file has no name
until it is complete (O_TMPFILE, then linkat), so a SIGKILL mid-write leaves nothing behind; elsewhere it is a
named `.TARGET.*.tmp` file, locked while in use, and the next write to the same target deletes any that a
killed writer left. A symlink is followed: its target is replaced and the link kept. A directory, device, FIFO
or socket is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from tinygrad_np.errors import FileAccessError, UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so stale temporary files are not collected there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "OutputPathError",
    "check_output_dir",
    "check_output_file",
    "describe_path",
    "named_os_error",
    "write_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
]

# The kernel's way to create a file without a name; linking /proc/self/fd/N names it (see open(2)).
_O_TMPFILE = getattr(os, "O_TMPFILE", None)
_PROC_FD = Path("/proc/self/fd")

_ADVICE = {
    errno.ENOSPC: "free some disk space or write somewhere else",
    errno.EDQUOT: "your disk quota is used up; free some space or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "check the permissions, or write somewhere else",
    errno.EPERM: "check the permissions, or write somewhere else",
    errno.EFBIG: "the file is larger than this file system allows; write somewhere else",
    errno.EIO: "the disk reported an input/output error",
}


class OutputPathError(UserError, ValueError):
    """An output path that a write would fail on or damage: a directory, device, FIFO, socket, or a symlink loop."""


def named_os_error(err: OSError, path: str | os.PathLike, action: str) -> OSError:
    """The same kind of OSError (same errno), saying which file and what to do: 'cannot write PATH: ...; advice'."""
    reason = err.strerror or str(err)
    advice = _ADVICE.get(err.errno) if err.errno is not None else None
    message = f"cannot {action} {path}: {reason}" + (f"; {advice}" if advice else "")
    return FileAccessError(err.errno, message) if err.errno is not None else FileAccessError(message)


def describe_path(path: str | os.PathLike) -> str:
    """What is at `path`, for messages: 'is a directory', 'is a FIFO (named pipe)', 'is a symbolic link that
    loops', 'does not exist', ..."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return "does not exist"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link that loops (it points back to itself)"
        if err.errno == errno.ENOTDIR:
            return "does not exist (a folder on its way is a file)"
        return f"cannot be examined ({err.strerror or err})"
    kinds = [
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ]
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"is {kind}" + (" (through a symbolic link)" if path.is_symlink() else "")


def _target(path: Path, what: str) -> Path:
    """The file a write to `path` replaces: a symlink's target, so the link survives; refuses anything that
    exists and is not a regular file, and a symlink that loops."""
    try:
        mode: int | None = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # nothing there yet (or a broken symlink, whose target the write creates); see _check_folder
    except OSError:
        raise OutputPathError(f"{what} {path} {describe_path(path)}; point it at a file") from None
    if mode is not None and not stat.S_ISREG(mode):
        hint = "give a file name inside it" if stat.S_ISDIR(mode) else "refusing to replace it"
        raise OutputPathError(f"{what} {path} {describe_path(path)}, not a file; {hint}")
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _nearest_existing(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_folder(folder: Path, path: Path, what: str) -> None:
    """`folder` (or the nearest folder above it that exists) is a folder we may create files in."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputPathError(f"{what} {path}: {existing} {describe_path(existing)}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: the folder {existing} is not writable; write somewhere else")


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Raise OutputPathError unless `write_atomic(path, ...)` can succeed; call it before long work.

    Refuses a directory, device, FIFO, socket or looping symlink at `path`, and a folder above it that is a
    file or not writable. Returns the file a write will replace (a symlink's target). `what` starts the
    message, e.g. "--save"."""
    path = Path(path)
    target = _target(path, what)
    _check_folder(target.parent, path, what)
    return target


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise OutputPathError unless `path` is, or can be created as, a writable folder."""
    path = Path(path)
    try:
        is_folder = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        is_folder = True  # to be created; _check_folder looks at what is above it (or at a broken symlink)
    except OSError:
        is_folder = False
    if not is_folder:
        raise OutputPathError(f"{what} {path} {describe_path(path)}, not a folder")
    _check_folder(path, path, what)
    return path


# ---- writing ---------------------------------------------------------------------------------------------


def _lock(fd: int) -> None:
    """Mark a temporary file as in use: the lock dies with the process, so a killed writer's file is free."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete `.TARGET.*.tmp` files beside `target` that no live writer holds (left by a killed process)."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    for name in glob.glob(os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.*.tmp")):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer holds it
                continue
            with contextlib.suppress(OSError):
                if os.lstat(name).st_ino == opened.st_ino:  # still the file we locked, not a newer one
                    os.unlink(name)
                    removed.append(Path(name))
        finally:
            os.close(fd)
    return removed


def _open_unnamed(folder: Path) -> int | None:
    """A file in `folder` with no name yet (O_TMPFILE), or None where the system or file system can't."""
    if _O_TMPFILE is None or not _PROC_FD.is_dir():
        return None
    try:
        return os.open(folder, os.O_WRONLY | _O_TMPFILE | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP):
            return None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[tuple[IO[bytes], Callable[[], None]]]:
    """(file, publish): write to `file`, then `publish()` renames it over `target`. On error nothing is left."""
    fd = _open_unnamed(target.parent)
    unnamed = fd is not None
    if fd is None:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        temporary: Path | None = Path(name)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would have.
        os.chmod(fd, 0o666 & ~_umask())
    else:
        temporary = None
    _lock(fd)
    with os.fdopen(fd, "wb") as file:

        def publish() -> None:
            nonlocal temporary
            file.flush()
            os.fsync(file.fileno())
            if unnamed:
                # linkat can't replace a file, so name it beside the target, then rename; a kill between the two
                # leaves a locked-then-free temporary that the next write collects.
                temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
                folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:  # a dir_fd makes os.link call linkat(AT_SYMLINK_FOLLOW) rather than link(), which can't
                    os.link(_PROC_FD / str(file.fileno()), temporary.name, dst_dir_fd=folder, follow_symlinks=True)
                finally:
                    os.close(folder)
            os.replace(temporary, target)
            temporary = None

        try:
            yield file, publish
        finally:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`; creates missing folders.

    Follows a symlink at `path` (replacing its target, keeping the link); refuses a directory, device, FIFO or
    socket (OutputPathError). An OSError names `path` and says what to do."""
    path = Path(path)
    target = check_output_file(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(target)
        with _temporary_beside(target) as (file, publish):
            write(file)
            publish()
    except OSError as err:
        raise named_os_error(err, path, "write") from err
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda file: file.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())
