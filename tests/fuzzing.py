"""Ways to damage a file, shared by the fuzz tests of the parsers and loaders."""

from __future__ import annotations

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
