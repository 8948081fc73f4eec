"""Ways to damage a file, shared by the fuzz tests of the parsers and loaders."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
from bombs import deflated_member, npy_header, stored
from hypothesis import strategies as st

# A mutation: flip one bit, cut the file, insert bytes or delete a run, at a position drawn as a fraction.
byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 8)),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    """Apply the mutations in order to a copy of `data`."""
    buffer = bytearray(data)
    for kind, where, arg in mutations:
        at = min(int(where * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "flip" and buffer:
            buffer[at] ^= 1 << arg
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = arg
        elif kind == "delete":
            del buffer[at : at + arg]
    return bytes(buffer)


# ---- ways to change an .npz archive while keeping it a valid zip ---------------------------------------------------
#
# Each change picks a member by a fraction of the member count. "inflate" keeps a member's .npy header but makes its
# data a run of zeros of any declared size up to 2 GiB (a few MB on disk), "reshape" keeps the data and declares
# another shape, "rename" drops the .npy suffix or gives another name, "extra" adds a member of zeros.

_sizes = st.integers(0, 64) | st.integers(0, 2**31)
_shapes = st.lists(st.integers(0, 2**20) | st.integers(0, 4), max_size=3).map(tuple)
archive_change = st.one_of(
    st.tuples(st.just("inflate"), st.floats(0, 1), _sizes),
    st.tuples(st.just("reshape"), st.floats(0, 1), _shapes),
    st.tuples(st.just("rename"), st.floats(0, 1), st.sampled_from(["no suffix", "__tinygrad_np__.npy", "x.npy"])),
    st.tuples(st.just("extra"), st.sampled_from(["junk.npy", "a9.npy", "9.weight.npy", "0.weight"]), _sizes),
)


def _npy_header_size(data: bytes) -> int:
    buffer = io.BytesIO(data)
    version = np.lib.format.read_magic(buffer)
    {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version](buffer)
    return buffer.tell()


def change_archive(members: list[tuple], changes: list[tuple]) -> list[tuple]:
    """Apply archive changes to members as tests/bombs.py lists them: (name, data, crc, size, method)."""
    members = list(members)
    for kind, where, arg in changes:
        if kind == "extra":
            members.append(deflated_member(where, npy_header((arg // 4,), "<f4"), max(arg, 128)))
            continue
        if not members:
            continue
        index = min(int(where * len(members)), len(members) - 1)
        name, data, _, _, method = members[index]
        if method != zipfile.ZIP_STORED:  # a member an earlier change inflated: its start is all we need
            data = zlib.decompressobj(-15).decompress(data, 2**16)
        header_size = _npy_header_size(data)
        if kind == "inflate":
            members[index] = deflated_member(name, data[:header_size], header_size + arg)
        elif kind == "reshape":
            members[index] = stored(name, npy_header(arg, "<f4") + data[header_size:])
        elif kind == "rename":
            members[index] = stored(name.removesuffix(".npy") if arg == "no suffix" else arg, data)
    return members
