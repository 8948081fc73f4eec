"""DataLoader: mini-batches over a tuple of equal-length arrays, reshuffled each epoch by its Generator."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["DataLoader"]


class DataLoader:
    """Yields tuples of batches (in `dataset` order); like torch.utils.data.DataLoader over a TensorDataset.

    `batch_size=None` means one full batch (the tutorial's full-batch gradient descent). With `shuffle=True`
    every `iter(loader)` draws a fresh permutation from `loader.generator`, so checkpointing
    `loader.generator.bit_generator.state` and restoring it replays the same epochs. `generator` is a seed,
    a Generator (used as is, not copied), or None for fresh OS entropy.
    """

    def __init__(
        self,
        dataset: tuple[np.ndarray, ...],
        batch_size: int | None = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: int | np.random.Generator | None = None,
    ) -> None:
        if isinstance(dataset, np.ndarray) or not isinstance(dataset, tuple | list):
            raise TypeError(
                f"dataset must be a tuple of arrays such as (X, y), got {type(dataset).__name__}; "
                "wrap a single array as (X,)"
            )
        if not dataset:
            raise ValueError("dataset is an empty tuple; pass at least one array, e.g. (X, y)")
        arrays = tuple(np.asarray(a) for a in dataset)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"dataset[{i}] is a scalar; every array needs a first (sample) dimension")
            if len(a) != len(arrays[0]):
                raise ValueError(
                    f"dataset[0] has {len(arrays[0])} samples but dataset[{i}] has {len(a)}; "
                    "all arrays must have the same first dimension"
                )
        num_samples = len(arrays[0])
        if num_samples == 0:
            raise ValueError("dataset has 0 samples; there is nothing to iterate over")
        if batch_size is None:
            batch_size = num_samples
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, or None for the full batch ('full' on "
                             f"the command line), got {batch_size!r}")
        if drop_last and batch_size > num_samples:
            raise ValueError(
                f"batch_size={batch_size} with drop_last=True drops all {num_samples} samples; "
                "use a smaller batch_size or drop_last=False"
            )
        self.dataset = arrays
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = np.random.default_rng(generator)  # a Generator passes through unchanged
        self._num_samples = num_samples

    def __len__(self) -> int:
        """Batches per epoch: floor(N / batch_size) with drop_last, else ceil(N / batch_size)."""
        full, rest = divmod(self._num_samples, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        # Draw the permutation now, not at the first next(), so the generator state after iter() is final.
        order = self.generator.permutation(self._num_samples) if self.shuffle else None
        return self._batches(order)

    def _batches(self, order: np.ndarray | None) -> Iterator[tuple[np.ndarray, ...]]:
        for b in range(len(self)):
            window = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is None:
                # Slices are views into the dataset: read-only, so a training step cannot corrupt the data.
                batch = tuple(a[window] for a in self.dataset)
                for view in batch:
                    view.flags.writeable = False
                yield batch
            else:
                yield tuple(a[order[window]] for a in self.dataset)
