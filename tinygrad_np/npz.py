"""Reading .npz archives that may be hostile: every name, size and shape is checked before anything is inflated.

`np.load(...)[name]` reads a member in full before its name or shape can be looked at, so a 4 MB file can hold
a member that inflates to 4 GiB, or a .npy header declaring an array of 11 GiB. `NpzReader` looks first: each
member must be `NAME.npy`, stored or deflated, unencrypted; `header(name)` reads only the .npy header (dtype,
shape), which must account for exactly the size the zip directory declares; `read(name)` then reads that many
bytes. zipfile never inflates more than a member's declared size, and checks the CRC at its end. Nothing is
ever unpickled.
"""

from __future__ import annotations

import contextlib
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tinygrad_np.errors import OutOfMemoryError

__all__ = ["ArchiveError", "ArrayHeader", "NpzReader"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class ArchiveError(ValueError):
    """What is wrong inside an archive; the caller's error class adds whose file it is."""


@dataclass(frozen=True)
class ArrayHeader:
    """What a member's .npy header declares, read without reading the array."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


@contextlib.contextmanager
def _damage_reported() -> Iterator[None]:
    """What zipfile and NumPy raise on damaged bytes (bad CRC or header, cut-off data), as an ArchiveError."""
    try:
        yield
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, NotImplementedError, OSError) as err:
        text = " ".join(f"{type(err).__name__}: {err}".split())
        raise ArchiveError(f"truncated or corrupt ({text if len(text) <= 160 else text[:157] + '...'})") from None


class NpzReader:
    """An .npz archive opened for checked reading; use as a context manager."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 -- closed by close()
        try:
            magic = self._file.read(len(_NPY_MAGIC))
            if not magic:
                raise ArchiveError("the file is empty, not an .npz archive")
            if magic.startswith(_NPY_MAGIC):
                raise ArchiveError("a single .npy array, not an .npz archive")
            if not magic.startswith(_ZIP_MAGICS):
                raise ArchiveError("not an .npz archive (maybe a pickle or another format)")
            self._file.seek(0)
            with _damage_reported():
                self._zip = zipfile.ZipFile(self._file)
            self._members = self._check_directory()
        except BaseException:
            self._file.close()
            raise

    def _check_directory(self) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                raise ArchiveError(f"entry {info.filename!r} is not a .npy array (every entry is NAME.npy)")
            name = info.filename.removesuffix(".npy")
            if name in members:
                raise ArchiveError(f"entry {info.filename!r} appears twice")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"entry {info.filename!r} is encrypted")
            # bzip2 and LZMA inflate a whole read at once, whatever its size: only allow what zipfile bounds.
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArchiveError(f"entry {info.filename!r} uses compression method {info.compress_type}")
            members[name] = info
        return members

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    @property
    def names(self) -> list[str]:
        """The array names, in archive order (without the .npy suffix)."""
        return list(self._members)

    def declared_size(self, name: str) -> int:
        """The member's uncompressed size as the zip directory declares it (.npy header and data)."""
        return self._members[name].file_size

    def header(self, name: str, max_bytes: int | None = None) -> ArrayHeader:
        """The member's dtype and shape, read from its .npy header alone; refuses object arrays, a size that
        doesn't match the zip directory, and (if given) arrays of more than `max_bytes`."""
        info = self._members[name]
        with _damage_reported(), self._zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in _HEADER_READERS:
                raise ArchiveError(f"entry {name!r} is a .npy file of version {version}, which is not supported")
            shape, _, dtype = _HEADER_READERS[version](member)
            header_size = member.tell()
        if dtype.hasobject:
            raise ArchiveError(
                f"entry {name!r} holds pickled Python objects; refusing to load it (unpickling can run arbitrary code)"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if max_bytes is not None and nbytes > max_bytes:
            raise ArchiveError(f"entry {name!r} declares {nbytes:,} bytes ({dtype} {shape}), more than {max_bytes:,}")
        if header_size + nbytes != info.file_size:
            raise ArchiveError(
                f"entry {name!r} declares {nbytes:,} bytes of data ({dtype} {shape}) but holds "
                f"{info.file_size - header_size:,}"
            )
        return ArrayHeader(tuple(shape), dtype, nbytes)

    def read(self, name: str, max_bytes: int | None = None) -> np.ndarray:
        """The member's array, once `header(name, max_bytes)` has passed."""
        self.header(name, max_bytes)
        info = self._members[name]
        try:
            with _damage_reported(), self._zip.open(info) as member:
                array = np.lib.format.read_array(member, allow_pickle=False)
                member.read(1)  # at the end: zipfile compares the CRC
        except MemoryError:
            raise OutOfMemoryError(
                f"not enough memory to read {self.path}: entry {name!r} needs {info.file_size:,} bytes"
            ) from None
        return array
