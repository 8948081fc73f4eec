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


# ---- model files ---------------------------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path) -> Path:
    return save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "model.npz", {"test_accuracy": 0.9})


LOAD_MODEL = "from tinygrad_np.serialization import load_model"


def test_a_model_file_with_a_4_gb_junk_member_is_refused_unread(tmp_path, model_file):
    bomb = tmp_path / "bomb.npz"
    junk = deflated_member("junk.npy", npy_header((1000, 1000, 1000), "<f4"), 4 * 10**9)
    bomb.write_bytes(zip_archive([*members_of(model_file), junk]))
    assert bomb.stat().st_size < 5 * 10**6
    result = peak_memory(LOAD_MODEL, f"load_model({str(bomb)!r})")
    assert_refused(result, "ModelFileError", str(bomb), "unexpected junk")


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
    bomb = tmp_path / "wide.npz"
    bomb.write_bytes(zip_archive(members))
    result = peak_memory(LOAD_MODEL, f"load_model({str(bomb)!r})")
    assert_refused(result, "ModelFileError", "layers[0] (Linear): 'out_features' 2000000", "100,000,000 allowed")


def test_a_weight_whose_npy_header_lies_about_its_size_is_refused_unread(tmp_path, model_file):
    members = members_of(model_file)
    weight = next(i for i, m in enumerate(members) if m[0] == "0.weight.npy")
    members[weight] = deflated_member("0.weight.npy", npy_header((10, 784), "<f4"), 3 * GiB)  # header: 31 KB
    bomb = tmp_path / "liar.npz"
    bomb.write_bytes(zip_archive(members))
    result = peak_memory(LOAD_MODEL, f"load_model({str(bomb)!r})")
    assert_refused(result, "ModelFileError", "entry '0.weight' declares 31,360 bytes of data", "but holds")


def test_a_header_of_200000_nested_lists_is_one_clean_error(tmp_path, model_file):
    members = members_of(model_file)
    deep = ("[" * 200_000 + "]" * 200_000).encode()
    members[0] = stored(f"{HEADER_KEY}.npy", npy_bytes(np.frombuffer(deep, np.uint8)))
    assert members_of(model_file)[0][0] == f"{HEADER_KEY}.npy"
    bomb = tmp_path / "deep.npz"
    bomb.write_bytes(zip_archive(members))
    result = peak_memory(LOAD_MODEL, f"load_model({str(bomb)!r})")
    assert_refused(result, "ModelFileError", "nested too deeply")


# ---- checkpoints ----------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint_file(tmp_path) -> Path:
    return save_state({"config": {}, "weights": np.ones((10, 10), np.float32)}, tmp_path / "checkpoint.npz")


LOAD_STATE = "from tinygrad_np.checkpoint import load_state"


def test_a_checkpoint_with_an_extra_3_gib_member_is_refused_unread(tmp_path, checkpoint_file):
    bomb = tmp_path / "extra.npz"
    junk = deflated_member("a9.npy", npy_header((3 * GiB // 4,), "<f4"), 3 * GiB)
    bomb.write_bytes(zip_archive([*members_of(checkpoint_file), junk]))
    result = peak_memory(LOAD_STATE, f"load_state({str(bomb)!r})")
    assert_refused(result, "CheckpointError", "holds entries its state never refers to (a9)", "tampered")


def test_a_checkpoint_array_declaring_3_gb_is_refused_by_the_budget(tmp_path, checkpoint_file):
    members = members_of(checkpoint_file)
    array = next(i for i, m in enumerate(members) if m[0] == "a0.npy")
    members[array] = deflated_member("a0.npy", npy_header((1_000_000, 784), "<f4"), 128 + 3_136_000_000)
    assert members[array][3] == 128 + 3_136_000_000 and len(npy_header((1_000_000, 784), "<f4")) == 128
    bomb = tmp_path / "huge.npz"
    bomb.write_bytes(zip_archive(members))
    result = peak_memory(LOAD_STATE, f"load_state({str(bomb)!r})")
    assert_refused(result, "CheckpointError", "declares 3,136,000,000 bytes of arrays", "more than the 2,147,483,648")


def test_a_checkpoint_document_nested_200000_deep_is_one_clean_error(tmp_path, checkpoint_file):
    members = members_of(checkpoint_file)
    meta = next(i for i, m in enumerate(members) if m[0] == f"{META_KEY}.npy")
    deep = ('{"format": "tinygrad_np-checkpoint", "version": 1, "state": ' + "[" * 200_000 + "]" * 200_000 + "}")
    members[meta] = stored(f"{META_KEY}.npy", npy_bytes(np.frombuffer(deep.encode(), np.uint8)))
    bomb = tmp_path / "deep.npz"
    bomb.write_bytes(zip_archive(members))
    result = peak_memory(LOAD_STATE, f"load_state({str(bomb)!r})")
    assert_refused(result, "CheckpointError", "JSON document is unreadable")


# ---- pictures ---------------------------------------------------------------------------------------------------


def test_a_13000_by_13000_png_is_refused_before_decoding_and_warns_nobody(tmp_path):
    from test_preprocess import png_of_size

    path = png_of_size(tmp_path / "big.png", 13_000, 13_000)
    assert path.stat().st_size < 100_000
    result = peak_memory("from tinygrad_np.preprocess import load_image; import PIL.PngImagePlugin",
                         f"load_image({str(path)!r})")
    assert_refused(result, "ValueError", "13000 x 13000 pixels (169 megapixels), more than the 50")
