"""Benchmark 5: time per training step (784-h-10 MLP, Adam) as the batch size and the hidden width grow.

Small steps show each framework's fixed cost per step; large ones converge on the matrix products, where
every contender calls a BLAS. The chart (`report.scaling_chart`) draws both sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np.benchmarks.contenders import ADAM_LR, contenders
from tinygrad_np.benchmarks.harness import interleaved, progress, row, section

ROWS_PER_ROUND = 4096  # each timed call steps over about this many rows, so small batches are timed over many steps


def _time_steps(
    x: np.ndarray,
    y: np.ndarray,
    torch: ModuleType | None,
    batch_size: int,
    hidden_size: int,
    repeats: int,
    settle: float,
) -> dict[str, Any]:
    steps = max(1, min(ROWS_PER_ROUND, len(x)) // batch_size)
    cases = {}
    for name, contender in contenders(torch, (hidden_size,), "adam", ADAM_LR).items():
        contender.load(x, y)

        def run_steps(c: Any = contender) -> None:
            for k in range(steps):
                start = (k * batch_size) % (len(x) - batch_size + 1)
                c.step(start, start + batch_size)

        cases[name] = run_steps
    timings = interleaved(cases, repeats, settle=settle)
    return row(
        f"batch {batch_size}, hidden {hidden_size}", timings, 1e3 / steps, [("tinygrad_np", "pytorch")]
    ) | {"batch_size": batch_size, "hidden_size": hidden_size}


def run(
    x: np.ndarray,
    y: np.ndarray,
    torch: ModuleType | None,
    repeats: int,
    batch_sizes: Sequence[int],
    hidden_sizes: Sequence[int],
    fixed_hidden: int = 128,
    fixed_batch: int = 128,
    settle: float = 0.0,
) -> dict[str, Any]:
    batch_sizes = [b for b in batch_sizes if b <= len(x)]
    progress(f"scaling: batch sizes {batch_sizes} at hidden {fixed_hidden}, hidden sizes {hidden_sizes} "
             f"at batch {fixed_batch}, {repeats} rounds each")
    rows = [_time_steps(x, y, torch, b, fixed_hidden, repeats, settle) | {"sweep": "batch"} for b in batch_sizes]
    rows += [_time_steps(x, y, torch, min(fixed_batch, len(x)), h, repeats, settle) | {"sweep": "hidden"}
             for h in hidden_sizes]
    return section(
        "Scaling: one training step of a 784-h-10 MLP with Adam, float32",
        "ms per step",
        rows,
        [f"batch sweep at hidden width {fixed_hidden}; hidden-width sweep at batch {fixed_batch}"],
    )
