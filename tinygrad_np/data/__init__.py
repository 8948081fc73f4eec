"""Data: MNIST loading (IDX, CSV, kagglehub, offline sample) and a DataLoader; pure NumPy."""

from .dataloader import DataLoader
from .idx import MAX_DATA_BYTES, MNISTFormatError, read_idx, write_idx
from .mnist import MNIST, MNISTNotFoundError, load_mnist, load_offline_sample, read_mnist_csv, read_mnist_dir

__all__ = [
    "MAX_DATA_BYTES",
    "MNIST",
    "DataLoader",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "load_mnist",
    "load_offline_sample",
    "read_idx",
    "read_mnist_csv",
    "read_mnist_dir",
    "write_idx",
]
