"""Decompression bombs, built at test time: a few megabytes on disk, gigabytes once inflated.

Deflate restarts after a full flush, so one compressed megabyte of a repeated block can be repeated as bytes:
4 GiB of zeros costs 4 MB and a few milliseconds to build. The CRC-32 of the whole is computed with zlib's
`crc32_combine` (ported below, as Python's zlib lacks it), so every bomb is a valid file that a reader
trusting it would inflate in full.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib

import numpy as np

MiB = 2**20
GiB = 2**30


# ---- CRC-32 of long repetitions, without computing over gigabytes ----------------------------------------------


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of A + B from crc32(A), crc32(B) and len(B), as zlib's crc32_combine: feeding len(B) zero bytes
    to crc1 is a linear map over GF(2), applied by repeated squaring."""
    operator = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    for _ in range(3):
        operator = _gf2_square(operator)  # one zero byte: 2**3 bits
    while length2:
        if length2 & 1:
            crc1 = _gf2_times(operator, crc1)
        operator = _gf2_square(operator)
        length2 >>= 1
    return crc1 ^ crc2


@functools.cache
def _crc_of_repeats(block: bytes, count: int) -> int:
    if count == 1:
        return zlib.crc32(block)
    half, rest = count // 2, count - count // 2
    return crc32_combine(_crc_of_repeats(block, half), _crc_of_repeats(block, rest), rest * len(block))


# ---- raw deflate streams ---------------------------------------------------------------------------------------


def deflate_repeated(prefix: bytes, block: bytes, count: int, suffix: bytes = b"") -> tuple[bytes, int, int]:
    """(raw deflate stream, CRC-32, inflated size) of prefix + block * count + suffix."""
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)]
    middle = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = middle.compress(block) + middle.flush(zlib.Z_FULL_FLUSH)  # the same bytes every time after a full flush
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = b"".join([*parts, chunk * count, tail.compress(suffix) + tail.flush()])
    crc = zlib.crc32(prefix)
    if count:
        crc = crc32_combine(crc, _crc_of_repeats(block, count), len(block) * count)
    crc = crc32_combine(crc, zlib.crc32(suffix), len(suffix))
    return stream, crc, len(prefix) + len(block) * count + len(suffix)


def gzip_bomb(prefix: bytes, block: bytes, count: int) -> bytes:
    """A gzip file of prefix + block * count."""
    stream, crc, size = deflate_repeated(prefix, block, count)
    header = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x02\xff"  # deflate, no name, mtime 0, best compression
    return header + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)


# ---- zip archives with members given as raw deflate streams -------------------------------------------------------


def zip_archive(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip file from (name, data, crc, inflated size, method) members, data already compressed by `method`.

    zipfile can't take pre-compressed data, so this writes the format itself (APPNOTE 4.3; sizes below 4 GiB)."""
    out = io.BytesIO()
    central = []
    for name, data, crc, size, method in members:
        encoded = name.encode()
        offset = out.tell()
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0)
        out.write(local)
        out.write(encoded + data)
        central.append(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                        len(encoded), 0, 0, 0, 0, 0, offset) + encoded
        )
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), out.tell() - start, start, 0))
    return out.getvalue()


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, zlib.crc32(data), len(data), zipfile.ZIP_STORED


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The .npy header alone, for a member whose data follows as a stream."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def members_of(path) -> list[tuple[str, bytes, int, int, int]]:
    """The members of an .npz, re-stored uncompressed, so a bomb member can be added beside them."""
    with zipfile.ZipFile(path) as archive:
        return [stored(info.filename, archive.read(info)) for info in archive.infolist()]


def deflated_member(name: str, prefix: bytes, inflated_size: int) -> tuple[str, bytes, int, int, int]:
    """A zip member of `prefix` then zeros, `inflated_size` bytes in all, a few KB per GiB on disk."""
    count, rest = divmod(inflated_size - len(prefix), MiB)
    stream, crc, size = deflate_repeated(prefix, bytes(MiB), count, bytes(rest))
    return name, stream, crc, size, zipfile.ZIP_DEFLATED
