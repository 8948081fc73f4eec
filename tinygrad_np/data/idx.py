"""The IDX file format of the MNIST distribution: read (raw or gzip) with validation, write atomically.

An IDX file is a big-endian header -- two zero bytes, a data-type byte, a dimension count d, then d uint32
sizes -- followed by the values in C order. MNIST uses type 0x08 (unsigned byte): magic 0x00000803 for the
(N, 28, 28) images and 0x00000801 for the (N,) labels.

Files are read as a stream and never trusted for their size: the header's declared size is checked against a
limit before anything is allocated, and no more than the declared size is ever decompressed, so a small gzip
file that inflates to gigabytes costs no more memory than an honest one.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from tinygrad_np.errors import OutOfMemoryError, UserError
from tinygrad_np.files import named_os_error, write_bytes_atomic

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "MAX_DATA_BYTES",
    "MNISTFormatError",
    "open_data",
    "read_idx",
    "reading",
    "write_idx",
]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# What one data file may hold once decompressed (values, or CSV pixels): 256 MiB is 342,000 images of 28x28,
# over five times MNIST's 60,000, so every MNIST-like set fits; pass max_bytes= for a bigger one (mnist8m).
MAX_DATA_BYTES = 256 * 2**20
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 2**20  # read this much at a time: GzipFile.readinto would otherwise build a temporary copy of it all
# The other IDX type codes, so a wrong file gets named rather than just rejected.
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
              0x0E: "float64"}


class MNISTFormatError(UserError, ValueError):
    """A data file exists but its contents are not what MNIST should be (the message names the file)."""


@contextlib.contextmanager
def open_data(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """The file as a binary stream, gunzipped on the fly when it starts with the gzip magic 1f 8b."""
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turn what can go wrong while reading `path` into errors that name it: damaged gzip data into
    MNISTFormatError, an OSError or MemoryError into the same kind of error with the path."""
    try:
        yield
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:  # a cut-off stream is EOFError
        raise MNISTFormatError(f"{path}: corrupt gzip data ({exc}); download the file again") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # Python's own message already names the file
    except OSError as exc:
        raise named_os_error(exc, path, "read") from exc
    except MemoryError:
        raise OutOfMemoryError(
            f"not enough memory to read {path}; close other programs or use a smaller file"
        ) from None


def _read_into(stream: IO[bytes], out: np.ndarray) -> int:
    """Fill `out` from `stream` a chunk at a time; the number of bytes read (fewer at the end of the stream)."""
    view = memoryview(out).cast("B")
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled : filled + _CHUNK])
        if not count:
            break
        filled += count
    return filled


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_DATA_BYTES, expected: str | None = None) -> np.ndarray:
    """An IDX file of unsigned bytes as a uint8 array of the shape its header declares (at most `max_bytes`).
    `expected` ("images" or "labels") checks the header's dimensions before any data is read, so that the other
    file of the pair is named as such, not blamed for the bytes it has."""
    with reading(path), open_data(path) as stream:
        head = stream.read(4)
        if len(head) < 4:
            raise MNISTFormatError(f"{path}: {len(head)} bytes is too short for an IDX header (4 bytes or more)")
        magic = int.from_bytes(head, "big")
        if head[0] != 0 or head[1] != 0:
            raise MNISTFormatError(
                f"{path}: bad magic number 0x{magic:08x}; not an IDX file (MNIST images start with "
                f"0x{IMAGES_MAGIC:08x}, labels with 0x{LABELS_MAGIC:08x})"
            )
        if head[2] != _UBYTE:
            kind = _IDX_TYPES.get(head[2], "unknown type")
            raise MNISTFormatError(
                f"{path}: data type byte 0x{head[2]:02x} ({kind}) is not 0x08 (unsigned byte), which MNIST uses"
            )
        ndim = head[3]
        if ndim == 0:
            raise MNISTFormatError(f"{path}: the IDX header declares 0 dimensions (magic 0x{magic:08x})")
        wanted = {"images": (3, IMAGES_MAGIC, "an image"), "labels": (1, LABELS_MAGIC, "a label")}.get(expected or "")
        if wanted is not None and ndim != wanted[0]:
            found = {1: " (a label file's)", 3: " (an image file's)"}.get(ndim, "")
            raise MNISTFormatError(
                f"{path}: expected {wanted[2]} file (magic 0x{wanted[1]:08x}), found magic 0x{magic:08x}{found}; "
                "are the image and label files swapped?"
            )
        sizes = stream.read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise MNISTFormatError(
                f"{path}: the header declares {ndim} dimensions ({4 + 4 * ndim} header bytes) but the file ends "
                f"after {4 + len(sizes)} bytes: the file is truncated; download it again"
            )
        shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
        expected = 1
        for size in shape:
            expected *= size  # Python ints: a corrupt header cannot overflow the product
        if expected > max_bytes:
            raise MNISTFormatError(
                f"{path}: the header declares shape {shape}, {expected:,} bytes of values, more than the "
                f"{max_bytes:,} bytes allowed; the file is corrupt, or, if it really is that big, load it from "
                "Python with a larger load_mnist(max_bytes=...)"
            )
        values = np.empty(expected, dtype=np.uint8)
        found = _read_into(stream, values)
        if found < expected:
            raise MNISTFormatError(
                f"{path}: expected {expected} bytes of values after the header (shape {shape}), found {found}: "
                "the file is truncated; download it again"
            )
        if stream.read(1):
            raise MNISTFormatError(
                f"{path}: expected {expected} bytes of values after the header (shape {shape}), found more: "
                "there are trailing bytes after the data; the file is corrupt or not MNIST"
            )
    return values.reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzip-compressed when the name ends in .gz), atomically via os.replace."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(
            f"write_idx writes unsigned bytes only; got dtype {array.dtype} (convert with astype(np.uint8))"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx needs 1 to 255 dimensions, got shape {array.shape}")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"IDX sizes are uint32; shape {array.shape} does not fit")
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(s.to_bytes(4, "big") for s in array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: the same array always gives the same bytes
    write_bytes_atomic(path, payload)


