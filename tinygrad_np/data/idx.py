"""The IDX file format of the MNIST distribution: read (raw or gzip) with validation, write atomically.

An IDX file is a big-endian header -- two zero bytes, a data-type byte, a dimension count d, then d uint32
sizes -- followed by the values in C order. MNIST uses type 0x08 (unsigned byte): magic 0x00000803 for the
(N, 28, 28) images and 0x00000801 for the (N,) labels.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from tinygrad_np.files import write_bytes_atomic

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "MNISTFormatError", "read_bytes", "read_idx", "write_idx"]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
# The other IDX type codes, so a wrong file gets named rather than just rejected.
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
              0x0E: "float64"}


class MNISTFormatError(ValueError):
    """A data file exists but its contents are not what MNIST should be (the message names the file)."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic 1f 8b (whatever its name says)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off stream is EOFError
        raise MNISTFormatError(f"{path}: corrupt gzip data ({exc}); download the file again") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file of unsigned bytes as a uint8 array of the shape its header declares."""
    data = read_bytes(path)
    if len(data) < 4:
        raise MNISTFormatError(f"{path}: {len(data)} bytes is too short for an IDX header (4 bytes or more)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise MNISTFormatError(
            f"{path}: bad magic number 0x{magic:08x}; not an IDX file (MNIST images start with "
            f"0x{IMAGES_MAGIC:08x}, labels with 0x{LABELS_MAGIC:08x})"
        )
    if data[2] != _UBYTE:
        kind = _IDX_TYPES.get(data[2], "unknown type")
        raise MNISTFormatError(
            f"{path}: data type byte 0x{data[2]:02x} ({kind}) is not 0x08 (unsigned byte), which MNIST uses"
        )
    ndim = data[3]
    if ndim == 0:
        raise MNISTFormatError(f"{path}: the IDX header declares 0 dimensions (magic 0x{magic:08x})")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise MNISTFormatError(
            f"{path}: the header declares {ndim} dimensions ({header_size} header bytes) but the file has "
            f"only {len(data)} bytes: the file is truncated; download it again"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 1
    for size in shape:
        expected *= size  # Python ints: a corrupt header cannot overflow the product
    found = len(data) - header_size
    if found != expected:
        what = "the file is truncated; download it again" if found < expected else (
            "there are trailing bytes after the data; the file is corrupt or not MNIST"
        )
        raise MNISTFormatError(
            f"{path}: expected {expected} bytes of values after the header (shape {shape}), "
            f"found {found}: {what}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


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


