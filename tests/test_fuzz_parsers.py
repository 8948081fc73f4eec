"""Fuzzing the parsers: whatever the bytes, the only exception that comes out is MNISTFormatError."""

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from bombs import MiB, gzip_bomb
from fuzzing import byte_mutation as mutation
from fuzzing import mutate
from hypothesis import example, given
from hypothesis import strategies as st

from tinygrad_np.data import MAX_DATA_BYTES, MNISTFormatError, read_idx, read_mnist_csv, read_mnist_dir, write_idx


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder per module: Hypothesis runs many examples per test, each rewriting the same file."""
    return tmp_path_factory.mktemp("fuzz")


def parse_or_format_error(parser, path: Path, data: bytes):
    """Run parser on a file holding data; return its result, None on MNISTFormatError, let anything else fail."""
    path.write_bytes(data)
    try:
        return parser(path)
    except MNISTFormatError as exc:
        assert str(path) in str(exc)  # the message names the file
        return None


def valid_idx(folder: Path, shape: tuple[int, ...]) -> bytes:
    array = (np.arange(int(np.prod(shape))) % 251).astype(np.uint8).reshape(shape)
    write_idx(folder / "valid", array)
    return (folder / "valid").read_bytes()


def valid_csv() -> bytes:
    rows = ["label," + ",".join(f"px{i}" for i in range(784))]
    rows += [",".join(map(str, [digit, *((np.arange(784) * (digit + 1)) % 256)])) for digit in (3, 7)]
    return ("\n".join(rows) + "\n").encode()




def check_idx_result(result) -> None:
    if result is not None:  # a mutation can leave a valid file: then the result must be a proper array
        assert isinstance(result, np.ndarray) and result.dtype == np.uint8 and result.ndim >= 1


@given(st.binary(max_size=300))
@example(b"\x00\x00\x08\x01\x00\x00\x00\x00")  # a valid, empty label file
@example(b"\x1f\x8b")  # gzip magic and nothing else
@example(b"\x00\x00\x08\xff")  # 255 dimensions, no sizes
def test_read_idx_random_bytes(scratch, data):
    check_idx_result(parse_or_format_error(read_idx, scratch / "random", data))


@given(st.binary(max_size=300))
def test_read_idx_random_bytes_behind_gzip_magic(scratch, data):
    check_idx_result(parse_or_format_error(read_idx, scratch / "random.gz", b"\x1f\x8b" + data))


@pytest.mark.parametrize("shape", [(12,), (3, 5, 4)])
@pytest.mark.parametrize("compress", [False, True])
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_read_idx_mutated_valid_files(scratch, shape, compress, mutations):
    data = valid_idx(scratch, shape)
    if compress:
        data = gzip.compress(data)
    check_idx_result(parse_or_format_error(read_idx, scratch / "mutated", mutate(data, mutations)))


def check_csv_result(result) -> None:
    if result is not None:
        images, labels = result
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28) and len(images) == len(labels) > 0
        assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 9


@given(st.binary(max_size=300) | st.text(alphabet="0123456789,-+. \n\r\tx", max_size=300).map(str.encode))
@example(b"")
@example(b"\n\n")
@example(b"1," * 784 + b"1\n")  # a valid one-row CSV without header
@example(b"99999999999999999999," + b"1," * 783 + b"1\n")
def test_read_mnist_csv_random_input(scratch, data):
    check_csv_result(parse_or_format_error(read_mnist_csv, scratch / "random.csv", data))


@pytest.mark.parametrize("compress", [False, True])
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_read_mnist_csv_mutated_valid_files(scratch, compress, mutations):
    data = gzip.compress(valid_csv()) if compress else valid_csv()
    check_csv_result(parse_or_format_error(read_mnist_csv, scratch / "mutated.csv", mutate(data, mutations)))


@given(mutations=st.lists(mutation, min_size=1, max_size=3))
def test_read_mnist_dir_with_one_mutated_file(scratch, mutations):
    root = scratch / "dir"
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte", rng.integers(0, 10, 4).astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (2, 28, 28), dtype=np.uint8))
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(mutate(b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x09", mutations))
    try:
        mnist = read_mnist_dir(root)
    except MNISTFormatError as exc:
        assert str(labels) in str(exc)
    else:
        assert len(mnist.test_labels) == 2 and set(mnist.test_labels.tolist()) <= set(range(10))


@given(
    count=st.integers(0, 2**32 - 1),
    rows=st.sampled_from([28, 27]),
    inflated_mib=st.integers(0, 48),
    trailing=st.binary(max_size=4),
)
def test_read_idx_of_a_gzip_bomb_costs_at_most_what_its_header_declares(scratch, count, rows, inflated_mib, trailing):
    """Whatever a gzip IDX file claims and holds, reading it allocates at most the declared size (itself under
    the limit), plus a decompression chunk."""
    header = bytes([0, 0, 8, 3]) + count.to_bytes(4, "big") + rows.to_bytes(4, "big") + (28).to_bytes(4, "big")
    bomb = gzip_bomb(header, bytes(MiB), inflated_mib) + trailing
    tracemalloc.start()
    try:
        check_idx_result(parse_or_format_error(read_idx, scratch / "bomb.gz", bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    declared = count * rows * 28
    assert peak <= min(declared, MAX_DATA_BYTES) + 4 * MiB


@given(
    block=st.sampled_from([b"0," * 783 + b"0\n", b"\n", b"0" * 64, b"1,2,3\n", b"\x00" * 64]),
    count=st.integers(0, 200_000),
)
def test_read_mnist_csv_of_a_gzip_bomb_stays_within_its_limit(scratch, block, count):
    bomb, limit = gzip_bomb(b"", block, count), 2 * MiB
    tracemalloc.start()
    try:
        check_csv_result(parse_or_format_error(lambda p: read_mnist_csv(p, max_bytes=limit), scratch / "b.gz", bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Parsed images up to the limit (joined once at the end), and one chunk of lines as text and as int64.
    assert peak <= 2 * limit + 32 * MiB
