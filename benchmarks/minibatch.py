"""Benchmark 2: one epoch of a 784-128-10 MLP with Adam, in mini-batches of 32 and 128.

At these sizes the matrix products are small, so the time per step is mostly everything else: the engine's
bookkeeping, the elementwise passes and the optimizer. Rows are taken in order (no shuffling: the same copy
cost for every contender would only blur the comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np.benchmarks.contenders import ADAM_LR, contenders, epoch
from tinygrad_np.benchmarks.harness import interleaved, progress, row, section

HIDDEN_SIZES = (128,)


def run(
    x: np.ndarray,
    y: np.ndarray,
    torch: ModuleType | None,
    repeats: int,
    batch_sizes: Sequence[int] = (32, 128),
    settle: float = 0.0,
) -> dict[str, Any]:
    rows = []
    for batch_size in batch_sizes:
        progress(f"minibatch: 784-128-10 Adam, {len(x)} images, batch {batch_size}, {repeats} rounds")
        cases = {}
        for name, contender in contenders(torch, HIDDEN_SIZES, "adam", ADAM_LR).items():
            contender.load(x, y)
            cases[name] = lambda c=contender, b=batch_size: epoch(c, len(x), b)
        timings = interleaved(cases, repeats, settle=settle)
        ratios = [("tinygrad_np", "pytorch"), ("tinygrad_np", "numpy")]
        rows.append(row(f"batch {batch_size}", timings, 1.0, ratios))
    return section(
        f"One epoch ({len(x):,} images), 784-128-10 MLP, Adam, float32",
        "s per epoch",
        rows,
        ["numpy: models.mlp's forward and the same hand-derived backward, with a textbook NumPy Adam"],
    )
