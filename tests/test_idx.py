"""The IDX reader against hand-built files, the atomic writer, and one test per way a file can be corrupt."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tinygrad_np.data import MNISTFormatError, read_idx, write_idx


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """An IDX file built by hand from the format description, independent of write_idx."""
    header = struct.pack(">BBBB", 0, 0, type_byte, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5)])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_parses_hand_built_files(tmp_path, rng, shape, compress):
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    data = idx_bytes(array)
    path = put(tmp_path / "file", gzip.compress(data) if compress else data)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, array)


def test_gzip_is_detected_by_magic_bytes_not_by_name(tmp_path, rng):
    array = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    gz_without_suffix = put(tmp_path / "train-images.idx3-ubyte", gzip.compress(idx_bytes(array)))
    raw_with_suffix = put(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(array))
    np.testing.assert_array_equal(read_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_suffix), array)


@pytest.mark.parametrize("name", ["labels-idx1-ubyte", "labels-idx1-ubyte.gz"])
def test_write_idx_matches_the_format_and_round_trips(tmp_path, rng, name):
    labels = rng.integers(0, 10, size=50).astype(np.uint8)
    path = tmp_path / name
    write_idx(path, labels)
    on_disk = path.read_bytes()
    assert (gzip.decompress(on_disk) if name.endswith(".gz") else on_disk) == idx_bytes(labels)
    assert on_disk[:4] == (b"\x1f\x8b\x08\x00" if name.endswith(".gz") else b"\x00\x00\x08\x01")
    np.testing.assert_array_equal(read_idx(path), labels)


def test_write_idx_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, np.zeros((2, 28, 28), np.uint8))
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.ones((5, 28, 28), np.uint8))
    assert path.read_bytes() == before  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # and no temp file is left behind


def test_write_idx_rejects_what_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="float32"):
        write_idx(tmp_path / "x", np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))


# ---------------------------------------------------------------------------- corrupt files


def assert_format_error(path: Path, *fragments: str) -> None:
    with pytest.raises(MNISTFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def valid_images() -> bytes:
    return idx_bytes(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256)


def test_bad_magic(tmp_path):
    data = valid_images()
    assert_format_error(put(tmp_path / "f", b"PK\x03\x04" + data[4:]), "bad magic", "0x00000803")


def test_wrong_dtype_byte(tmp_path):
    data = valid_images()
    path = put(tmp_path / "f", data[:2] + b"\x0d" + data[3:])
    assert_format_error(path, "0x0d", "float32", "unsigned byte")


def test_zero_dimensions(tmp_path):
    assert_format_error(put(tmp_path / "f", b"\x00\x00\x08\x00"), "0 dimensions")


@pytest.mark.parametrize("size", [0, 3])
def test_too_short_for_a_header(tmp_path, size):
    assert_format_error(put(tmp_path / "f", valid_images()[:size]), "too short")


def test_header_cut_off(tmp_path):
    assert_format_error(put(tmp_path / "f", valid_images()[:10]), "3 dimensions", "truncated")


def test_truncated_payload_names_the_expected_size(tmp_path):
    header = struct.pack(">I3I", 0x803, 60000, 28, 28)
    path = put(tmp_path / "f", header + bytes(1000))
    assert_format_error(path, "expected 47040000 bytes", "found 1000", "truncated")


def test_trailing_bytes(tmp_path):
    assert_format_error(put(tmp_path / "f", valid_images() + b"\x00"), "expected 1568 bytes", "found more", "trailing")
    packed = gzip.compress(valid_images() + bytes(1000))
    assert_format_error(put(tmp_path / "f.gz", packed), "found more", "trailing")


def test_a_header_declaring_more_than_the_limit_is_refused_before_reading(tmp_path):
    header = struct.pack(">I3I", 0x803, 6_377_551, 28, 28)  # 5 GB of pixels
    path = put(tmp_path / "f", header + bytes(100))
    assert_format_error(path, "(6377551, 28, 28)", "4,999,999,984 bytes", "max_bytes")
    small = put(tmp_path / "small", valid_images())
    with pytest.raises(MNISTFormatError, match="more than the 1,000 bytes allowed"):
        read_idx(small, max_bytes=1000)
    assert read_idx(small, max_bytes=1568).shape == (2, 28, 28)


def test_corrupt_gzip(tmp_path):
    packed = gzip.compress(valid_images())
    assert_format_error(put(tmp_path / "garbled.gz", packed[:10] + bytes(50) + packed[60:]), "corrupt gzip")
    assert_format_error(put(tmp_path / "cut.gz", packed[: len(packed) // 2]), "corrupt gzip")


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
