"""Files that claim, or inflate to, gigabytes: each is refused with bounded peak memory.

Every bomb is built here, at test time, a few megabytes on disk (tests/bombs.py), and loaded in a fresh
subprocess that reports its peak resident memory during the call above what it held before (on Linux, the
VmHWM high-water mark, reset just before the call; elsewhere getrusage's ru_maxrss).
The subprocess also caps its address space 2 GiB above where it started, so a regression fails the test with
a MemoryError instead of taking the machine's memory.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bombs import GiB, MiB, deflated_member, gzip_bomb, members_of, npy_bytes, npy_header, stored, zip_archive

from tinygrad_np.checkpoint import META_KEY, save_state
from tinygrad_np.serialization import HEADER_KEY, save_model
from tinygrad_np.spec import TUTORIAL_SPEC, model_from_spec, normalize_spec

REPO = Path(__file__).resolve().parents[1]
# What refusing a bomb may cost beyond the interpreter's own noise; the bombs themselves are gigabytes.
BOUND_MIB = 64

CHILD = r"""
import json, resource, sys, warnings
sys.path.insert(0, sys.argv[1])
exec(sys.argv[2])  # imports: counted in the baseline, not in the peak
LINUX = sys.platform.startswith("linux")
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
if LINUX:
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize:") + 2 * 2**30, resource.RLIM_INFINITY))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark (VmHWM), so import-time peaks don't hide the call's
    baseline = status("VmRSS:")
else:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        exec(sys.argv[3])
        outcome = {"error": None, "message": ""}
    except BaseException as error:
        outcome = {"error": type(error).__name__, "message": str(error)}
peak = (status("VmHWM:") if LINUX else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) - baseline
outcome["peak_mib"] = peak / 2**20
outcome["warnings"] = [str(w.message) for w in caught]
print(json.dumps(outcome))
"""


def peak_memory(setup: str, call: str) -> dict:
    """Run `call` after `setup` in a fresh interpreter; what it raised and its peak memory above the baseline."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), setup, call], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return json.loads(done.stdout)


def assert_refused(result: dict, error: str, *fragments: str, bound_mib: float = BOUND_MIB) -> None:
    assert result["error"] == error, result
    for fragment in fragments:
        assert fragment in result["message"], result["message"]
    assert result["warnings"] == []
    assert result["peak_mib"] < bound_mib, f"peak {result['peak_mib']:.0f} MiB: {result['message']}"


# ---- IDX and CSV --------------------------------------------------------------------------------------------

IDX_HEADER = bytes([0, 0, 8, 3])


def idx_header(count: int) -> bytes:
    return IDX_HEADER + count.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2


def test_a_gzip_idx_declaring_6_million_images_is_refused_at_its_header(tmp_path):
    """The issue's bomb: 4.9 MB on disk, 5 GB of zeros inflated, a header claiming 6,377,551 images."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(idx_header(6_377_551), bytes(MiB), 5 * 1000 * 1000 * 1000 // MiB))
    assert path.stat().st_size < 6 * 10**6
    result = peak_memory("from tinygrad_np.data import read_idx", f"read_idx({str(path)!r})")
    assert_refused(result, "MNISTFormatError", "(6377551, 28, 28)", "more than the 268,435,456 bytes allowed")


def test_a_gzip_idx_with_an_honest_header_and_5_gb_behind_it_costs_only_the_declared_size(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(idx_header(60_000), bytes(MiB), 5 * 1000 * 1000 * 1000 // MiB))
    result = peak_memory("from tinygrad_np.data import read_idx", f"read_idx({str(path)!r})")
    declared_mib = 60_000 * 784 / MiB  # 45 MiB: what the header asked for, and all that is ever inflated
    assert_refused(result, "MNISTFormatError", "found more", "trailing", bound_mib=declared_mib + BOUND_MIB)


@pytest.mark.parametrize(
    ("block", "words"),
    [
        (bytes(MiB), ["line 2, byte 1 is 0x00, not text"]),
        (b"0," * (MiB // 2), ["line 2 is longer than 16,384 bytes"]),
        (b"\n" * MiB, ["bytes of blank lines in a row"]),
    ],
    ids=["zeros", "one-endless-line", "blank-lines"],
)
def test_a_gzip_csv_inflating_to_5_gb_is_refused_early(tmp_path, block, words):
    path = tmp_path / "mnist_train.csv.gz"
    path.write_bytes(gzip_bomb(b"label," + b"x," * 783 + b"x\n", block, 5 * 1000 * 1000 * 1000 // MiB))
    result = peak_memory("from tinygrad_np.data import read_mnist_csv", f"read_mnist_csv({str(path)!r})")
    assert_refused(result, "MNISTFormatError", *words)


def test_a_gzip_csv_of_valid_lines_stops_at_max_bytes(tmp_path):
    line = b"7," + b"0," * 783 + b"255\n"
    path = tmp_path / "mnist_train.csv.gz"
    path.write_bytes(gzip_bomb(b"", line * 600, 10_000))  # 6 million images, 9.4 GB of text
    limit = 16 * MiB
    result = peak_memory(
        "from tinygrad_np.data import read_mnist_csv", f"read_mnist_csv({str(path)!r}, max_bytes={limit})"
    )
    # Up to the limit in parsed images (kept twice while they are joined), plus a parsing chunk.
    assert_refused(result, "MNISTFormatError", "more than 21,399 images", bound_mib=2 * limit / MiB + BOUND_MIB)


# ---- model files and checkpoints ---------------------------------------------------------------------------------


def with_member(path: Path, member: tuple) -> list[tuple]:
    """The members of the .npz at `path`, with `member` in place of the one of its name (or added)."""
    members = members_of(path)
    names = [m[0] for m in members]
    if member[0] in names:
        members[names.index(member[0])] = member
    else:
        members.append(member)
    return members


def load_archive(tmp_path: Path, members: list[tuple], loader: str) -> dict:
    """Write the members as an .npz and load it with `loader` (load_model or load_state) in a subprocess."""
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(zip_archive(members))
    assert bomb.stat().st_size < 5 * 10**6
    module = "serialization" if loader == "load_model" else "checkpoint"
    return peak_memory(f"from tinygrad_np.{module} import {loader}", f"{loader}({str(bomb)!r})")


@pytest.fixture
def model_file(tmp_path) -> Path:
    return save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "model.npz", {"test_accuracy": 0.9})


def test_a_model_file_with_a_4_gb_junk_member_is_refused_unread(tmp_path, model_file):
    junk = deflated_member("junk.npy", npy_header((1000, 1000, 1000), "<f4"), 4 * 10**9)
    result = load_archive(tmp_path, with_member(model_file, junk), "load_model")
    assert_refused(result, "ModelFileError", str(tmp_path / "bomb.npz"), "unexpected junk")


def test_a_model_file_declaring_784_2000000_10_is_refused_at_its_header(tmp_path):
    spec = normalize_spec(TUTORIAL_SPEC)  # 784 -> 10 -> 10, then widened past what normalize_spec allows
    spec["layers"][0]["out_features"] = 2_000_000
    header = json.dumps({"format": "tinygrad-np-model", "version": 1, "spec": spec, "metadata": {}}).encode()
    members = [
        stored(f"{HEADER_KEY}.npy", npy_bytes(np.frombuffer(header, np.uint8))),
        deflated_member("0.weight.npy", npy_header((2_000_000, 784), "<f4"), 4 * 10**9),
        deflated_member("0.bias.npy", npy_header((2_000_000,), "<f4"), 8 * 10**6),
        deflated_member("2.weight.npy", npy_header((10, 2_000_000), "<f4"), 80 * 10**6),
        stored("2.bias.npy", npy_bytes(np.zeros(10, np.float32))),
    ]
    result = load_archive(tmp_path, members, "load_model")
    assert_refused(result, "ModelFileError", "layers[0] (Linear): 'out_features' 2000000", "100,000,000 allowed")


def test_a_weight_whose_npy_header_lies_about_its_size_is_refused_unread(tmp_path, model_file):
    liar = deflated_member("0.weight.npy", npy_header((10, 784), "<f4"), 3 * GiB)  # the header says 31 KB
    result = load_archive(tmp_path, with_member(model_file, liar), "load_model")
    assert_refused(result, "ModelFileError", "entry '0.weight' declares 31,360 bytes of data", "but holds")


@pytest.mark.parametrize("name", ["0.weight", HEADER_KEY])
def test_a_member_without_the_npy_suffix_is_refused(tmp_path, model_file, name):
    members = [(m[0].removesuffix(".npy") if m[0] == f"{name}.npy" else m[0], *m[1:]) for m in members_of(model_file)]
    result = load_archive(tmp_path, members, "load_model")
    assert_refused(result, "ModelFileError", f"entry {name!r} is not a .npy array")


def test_a_header_of_200000_nested_lists_is_one_clean_error(tmp_path, model_file):
    deep = ("[" * 200_000 + "]" * 200_000).encode()
    header = stored(f"{HEADER_KEY}.npy", npy_bytes(np.frombuffer(deep, np.uint8)))
    result = load_archive(tmp_path, with_member(model_file, header), "load_model")
    assert_refused(result, "ModelFileError", "nested too deeply")


@pytest.fixture
def checkpoint_file(tmp_path) -> Path:
    return save_state({"config": {}, "weights": np.ones((10, 10), np.float32)}, tmp_path / "checkpoint.npz")


def test_a_checkpoint_with_an_extra_3_gib_member_is_refused_unread(tmp_path, checkpoint_file):
    junk = deflated_member("a9.npy", npy_header((3 * GiB // 4,), "<f4"), 3 * GiB)
    result = load_archive(tmp_path, with_member(checkpoint_file, junk), "load_state")
    assert_refused(result, "CheckpointError", "holds entries its state never refers to (a9)", "tampered")


def test_a_checkpoint_array_declaring_3_gb_is_refused_by_the_budget(tmp_path, checkpoint_file):
    header = npy_header((1_000_000, 784), "<f4")
    huge = deflated_member("a0.npy", header, len(header) + 3_136_000_000)  # consistent with its header
    result = load_archive(tmp_path, with_member(checkpoint_file, huge), "load_state")
    assert_refused(result, "CheckpointError", "declares 3,136,000,000 bytes of arrays", "more than the 2,147,483,648")


def test_a_checkpoint_document_nested_200000_deep_is_one_clean_error(tmp_path, checkpoint_file):
    deep = '{"format": "tinygrad_np-checkpoint", "version": 1, "state": ' + "[" * 200_000 + "]" * 200_000 + "}"
    document = stored(f"{META_KEY}.npy", npy_bytes(np.frombuffer(deep.encode(), np.uint8)))
    result = load_archive(tmp_path, with_member(checkpoint_file, document), "load_state")
    assert_refused(result, "CheckpointError", "JSON document is unreadable")


# ---- pictures ---------------------------------------------------------------------------------------------------


def test_a_13000_by_13000_png_is_refused_before_decoding_and_warns_nobody(tmp_path):
    from test_preprocess import png_of_size

    path = png_of_size(tmp_path / "big.png", 13_000, 13_000)
    assert path.stat().st_size < 100_000
    result = peak_memory("from tinygrad_np.preprocess import load_image; import PIL.PngImagePlugin",
                         f"load_image({str(path)!r})")
    assert_refused(result, "ImageFileError", "13000 x 13000 pixels (169 megapixels), more than the 50")
