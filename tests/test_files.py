"""Atomic writes and output paths: symlinks kept, special files never replaced, no temporary file outlives a
SIGKILL, and every failure names the file.

The kill tests run the real writer in a subprocess (tinygrad_np/files.py loaded on its own, so it starts in a
few milliseconds) and SIGKILL it in the middle of writing.
"""

import errno
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np.files as files
from tinygrad_np.files import (
    OutputPathError,
    check_output_dir,
    check_output_file,
    describe_path,
    write_atomic,
    write_bytes_atomic,
)

FILES_PY = Path(files.__file__)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- symlinks ------------------------------------------------------------------------------------------------


def test_a_symlink_is_followed_its_target_replaced_and_the_link_kept(tmp_path):
    real = tmp_path / "store" / "model.npz"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "model.npz"
    link.symlink_to(real)
    old_inode = real.stat().st_ino
    assert write_bytes_atomic(link, b"new") == link
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new" and real.stat().st_ino != old_inode  # replaced by rename, not rewritten
    assert temporaries(tmp_path) == temporaries(real.parent) == []


def test_a_relative_symlink_chain_is_followed_to_the_end(tmp_path):
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "middle").symlink_to("real")
    (tmp_path / "outer").symlink_to("middle")
    write_bytes_atomic(tmp_path / "outer", b"new")
    assert (tmp_path / "outer").is_symlink() and (tmp_path / "middle").is_symlink()
    assert (tmp_path / "real").read_bytes() == b"new"


def test_a_broken_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / "metrics.json"
    link.symlink_to(tmp_path / "elsewhere" / "metrics.json")
    write_bytes_atomic(link, b"{}")
    assert link.is_symlink() and (tmp_path / "elsewhere" / "metrics.json").read_bytes() == b"{}"


def test_a_symlink_loop_is_refused_and_left_alone(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    for call in (lambda: write_bytes_atomic(loop, b"x"), lambda: check_output_file(loop, "--save")):
        with pytest.raises(OutputPathError, match="loop is a symbolic link that loops"):
            call()
    assert loop.is_symlink() and os.readlink(loop) == str(loop)
    with pytest.raises(OutputPathError, match="loops"):
        check_output_dir(loop)


# ---- what is never replaced ---------------------------------------------------------------------------------


def make_special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
        (path / "keep").write_text("inside")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "char-device":
        try:  # the same device numbers as /dev/null, made in tmp_path: the test can never touch the real one
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs CAP_MKNOD")
    return path


SPECIALS = {"directory": "a directory", "fifo": "a FIFO", "socket": "a socket", "char-device": "a character device"}


@pytest.mark.parametrize("kind", SPECIALS)
def test_a_special_file_is_never_replaced(tmp_path, kind):
    path = make_special(tmp_path, kind)
    before = path.lstat()
    with pytest.raises(OutputPathError, match=f"{path} is {SPECIALS[kind]}.*not a file") as raised:
        write_bytes_atomic(path, b"the model")
    assert path.lstat().st_mode == before.st_mode and path.lstat().st_ino == before.st_ino
    assert temporaries(tmp_path) == []
    if kind == "directory":
        assert "give a file name inside it" in str(raised.value)
    with pytest.raises(OutputPathError, match=f"--metrics {path} is {SPECIALS[kind]}"):
        check_output_file(path, "--metrics")
    link = tmp_path / "link-to-special"
    link.symlink_to(path)
    with pytest.raises(OutputPathError, match="through a symbolic link"):
        check_output_file(link)


@pytest.mark.parametrize("kind", ["fifo", "socket", "char-device"])
def test_a_special_file_is_not_an_output_folder(tmp_path, kind):
    path = make_special(tmp_path, kind)
    with pytest.raises(OutputPathError, match=f"--plots {path} is {SPECIALS[kind]}.*not a folder"):
        check_output_dir(path, "--plots")
    with pytest.raises(OutputPathError, match="not a folder"):
        check_output_file(path / "model.npz")


def test_check_output_file_accepts_what_a_write_can_create(tmp_path):
    assert check_output_file(tmp_path / "new" / "deeper" / "model.npz") == tmp_path / "new" / "deeper" / "model.npz"
    (tmp_path / "old.npz").write_bytes(b"x")
    assert check_output_file(tmp_path / "old.npz") == tmp_path / "old.npz"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_output_dir(tmp_path / "runs" / "today") == tmp_path / "runs" / "today"
    assert check_output_dir(tmp_path) == tmp_path


def test_a_file_where_a_folder_belongs_is_named(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(OutputPathError, match=r"--save .*runs/model\.npz: .*runs is a regular file, not a folder"):
        check_output_file(tmp_path / "runs" / "model.npz", "--save")
    with pytest.raises(OutputPathError, match="regular file, not a folder"):
        check_output_dir(tmp_path / "runs" / "ck", "--checkpoint-dir")
    with pytest.raises(OutputPathError, match="regular file, not a folder"):
        write_bytes_atomic(tmp_path / "runs" / "model.npz", b"x")


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    # os.access is what decides; root may write anywhere, so the test asks it directly.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputPathError, match=f"the folder {tmp_path} is not writable"):
        check_output_file(tmp_path / "a" / "model.npz", "--save")
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_dir(tmp_path / "ck")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_text("x"), p)[1], "is a regular file"),
        (lambda p: p.mkdir() or p, "is a directory"),
        (lambda p: p.symlink_to(p.parent / "nowhere") or p, "is a broken symbolic link"),
        (lambda p: p.symlink_to(p) or p, "is a symbolic link that loops"),
        (lambda p: (p.write_text("x"), p / "below")[1], "a folder on its way is a file"),
    ],
)
def test_describe_path_says_what_is_there(tmp_path, make, expected):
    assert expected in describe_path(make(tmp_path / "thing"))


# ---- errors name the file --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.ENOSPC, "free some disk space"), (errno.EDQUOT, "quota"), (errno.EROFS, "read-only"), (errno.EIO, "")],
)
def test_a_failed_write_names_the_file_and_what_to_do(tmp_path, code, advice):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def fail(file):
        file.write(b"half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(OSError) as raised:
        write_atomic(path, fail)
    assert raised.value.errno == code
    message = str(raised.value)
    assert f"cannot write {path}: {os.strerror(code)}" in message and advice in message
    assert path.read_bytes() == b"old" and temporaries(tmp_path) == []


def test_the_written_file_gets_the_permissions_of_a_plain_open(tmp_path):
    mask = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "a", b"x")
        with open(tmp_path / "b", "wb"):
            pass
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == stat.S_IMODE((tmp_path / "b").stat().st_mode)


# ---- temporary files and SIGKILL ------------------------------------------------------------------------------

# The child writes generation after generation of SIZE bytes, each all one value, so a reader can tell a whole
# file from a torn one. It prints "writing" once half of the first write is out, then keeps going (or stops
# there, with --pause), so the parent can kill it mid-write.
CHILD = r"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("files", sys.argv[1])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
if sys.argv[3] == "named":
    files._O_TMPFILE = None  # the portable path: a named temporary file
target, pause = sys.argv[2], sys.argv[4] == "pause"
SIZE, CHUNKS = 1 << 20, 16
generation = 0
while True:
    generation += 1
    def write(file, value=generation % 251 + 1):
        for chunk in range(CHUNKS):
            file.write(bytes([value]) * (SIZE // CHUNKS))
            if chunk == CHUNKS // 2 and generation == 1:
                print("writing", flush=True)
                if pause:
                    time.sleep(60)
    files.write_atomic(target, write)
"""
SIZE = 1 << 20


def start_writer(target: Path, mode: str, pause: bool) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(FILES_PY), str(target), mode, "pause" if pause else "run"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "writing\n", "the writer never started"
    return process


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()


def assert_whole_or_absent(path: Path) -> None:
    if path.exists():
        data = path.read_bytes()
        assert len(data) == SIZE and data == data[:1] * SIZE, "a torn file"


def test_o_tmpfile_is_used_on_linux(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("O_TMPFILE is Linux only")
    opened = []
    original = files._open_unnamed
    monkeypatch.setattr(files, "_open_unnamed", lambda folder: opened.append(original(folder)) or opened[-1])
    write_bytes_atomic(tmp_path / "x", b"data")
    assert opened and opened[0] is not None  # no named temporary file existed while writing


@pytest.mark.parametrize("mode", ["unnamed", "named"])
def test_a_sigkill_mid_write_leaves_the_old_file_and_the_next_write_leaves_no_temporary(tmp_path, mode):
    if mode == "unnamed" and files._open_unnamed(tmp_path) is None:
        pytest.skip("no O_TMPFILE here")
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"\x07" * SIZE)
    writer = start_writer(target, mode, pause=True)
    left = temporaries(tmp_path)
    kill(writer)
    assert target.read_bytes() == b"\x07" * SIZE
    # A file with no name dies with its process; a named one is left, and collected by the next write.
    assert temporaries(tmp_path) == ([] if mode == "unnamed" else left) and (mode == "unnamed" or left)
    write_bytes_atomic(target, b"\x08" * SIZE)
    assert temporaries(tmp_path) == [] and target.read_bytes() == b"\x08" * SIZE


def test_a_live_writers_temporary_is_not_collected(tmp_path):
    target = tmp_path / "model.npz"
    writer = start_writer(target, "named", pause=True)
    try:
        (live,) = temporaries(tmp_path)
        write_bytes_atomic(target, b"\x01" * SIZE)  # another process writes the same target meanwhile
        assert temporaries(tmp_path) == [live]  # locked by its (paused) writer, so left alone
    finally:
        kill(writer)
    write_bytes_atomic(target, b"\x01" * SIZE)
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("mode", ["unnamed", "named"])
def test_thirty_sigkills_at_random_moments_never_tear_the_file_or_leave_temporaries(tmp_path, mode):
    if mode == "unnamed" and files._open_unnamed(tmp_path) is None:
        pytest.skip("no O_TMPFILE here")
    target = tmp_path / "checkpoint.npz"
    delays = random.Random(13)
    for _ in range(30):
        writer = start_writer(target, mode, pause=False)
        time.sleep(delays.uniform(0, 0.02))
        kill(writer)
        assert_whole_or_absent(target)
        # Each run of the writer first collects what the killed one before it left, so they never pile up.
        assert len(temporaries(tmp_path)) <= 1
    write_bytes_atomic(target, b"\x02" * SIZE)
    assert temporaries(tmp_path) == []


def test_write_atomic_writes_numpy_archives(tmp_path):
    path = write_atomic(tmp_path / "a.npz", lambda file: np.savez(file, x=np.arange(3)))
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["x"], [0, 1, 2])


# ---- reading: allocation and I/O errors name the file ------------------------------------------------------------


def raise_(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


def readers(tmp_path: Path) -> dict:
    """(path, load, where to inject a failure) for each reader of user files."""
    import tinygrad_np.data.idx as idx
    from tinygrad_np.data import read_idx, read_mnist_csv, write_idx
    from tinygrad_np.preprocess import load_image
    from tinygrad_np.serialization import load_model, save_model
    from tinygrad_np.spec import TUTORIAL_SPEC, load_spec, model_from_spec

    write_idx(tmp_path / "labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    (tmp_path / "mnist.csv").write_text(",".join(["1"] * 785) + "\n")
    save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "model.npz")
    (tmp_path / "net.json").write_text('{"input_size": 4, "layers": [{"type": "ReLU"}]}')
    from PIL import Image, ImageFile

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "digit.png")
    return {
        "idx": (tmp_path / "labels-idx1-ubyte.gz", read_idx, (idx, "_read_into")),
        "csv": (tmp_path / "mnist.csv", read_mnist_csv, (np, "loadtxt")),
        "model": (tmp_path / "model.npz", load_model, (np.lib.format, "read_array")),
        "picture": (tmp_path / "digit.png", load_image, (ImageFile.ImageFile, "load")),
        "spec": (tmp_path / "net.json", load_spec, None),
    }


@pytest.mark.parametrize("reader", ["idx", "csv", "model", "picture"])
def test_running_out_of_memory_while_reading_names_the_file(tmp_path, monkeypatch, reader):
    path, load, (owner, name) = readers(tmp_path)[reader]
    monkeypatch.setattr(owner, name, raise_(MemoryError()))
    with pytest.raises(MemoryError, match=f"not enough memory to (read|decode) {path}"):
        load(path)


@pytest.mark.parametrize("reader", ["idx", "csv", "spec"])
def test_an_io_error_while_reading_names_the_file(tmp_path, monkeypatch, reader):
    import builtins

    path, load, _ = readers(tmp_path)[reader]
    real_open = builtins.open

    class FailingFile:
        def __init__(self, file):
            self.file = file

        def __getattr__(self, attribute):
            value = getattr(self.file, attribute)
            if attribute in ("read", "readinto", "readline", "peek", "read1"):
                return raise_(OSError(errno.EIO, os.strerror(errno.EIO)))
            return value

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: FailingFile(real_open(p, *a, **k)) if Path(p) == path
                        else real_open(p, *a, **k))
    with pytest.raises(OSError, match=f"cannot read {path}: Input/output error; the disk reported") as raised:
        load(path)
    assert raised.value.errno == errno.EIO
