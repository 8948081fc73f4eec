"""Benchmark 1: one full-batch gradient-descent step of the tutorial's 784-10-10 network, float32.

Contenders: tinygrad_np, the tutorial's hand-written NumPy backprop, PyTorch, and the five matrix products
alone (forward W1 X and W2 A1; backward dW2, dA1 and dW1): the floor any implementation pays.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np.benchmarks.contenders import contenders
from tinygrad_np.benchmarks.harness import interleaved, progress, row, section

LEARNING_RATE = 0.1  # the tutorial's alpha


def matmuls_only(x: np.ndarray, seed: int = 0) -> Any:
    """The step's matrix products on arrays of the right shapes, nothing else (row layout, as tinygrad_np)."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((10, 784), dtype=np.float32)
    W2 = rng.standard_normal((10, 10), dtype=np.float32)
    hidden = x @ W1.T
    grad_logits = rng.standard_normal((len(x), 10), dtype=np.float32)

    def products() -> None:
        np.matmul(x, W1.T)  # Z1
        np.matmul(hidden, W2.T)  # Z2
        np.matmul(grad_logits.T, hidden)  # dW2
        np.matmul(grad_logits, W2)  # dA1
        np.matmul(grad_logits.T, x)  # dW1 (the big one, with the forward W1 X)

    return products


def run(x: np.ndarray, y: np.ndarray, torch: ModuleType | None, repeats: int, settle: float = 0.0) -> dict[str, Any]:
    progress(f"full_batch: 784-10-10, {len(x)} images, {repeats} rounds")
    cases = {}
    for name, contender in contenders(torch, (10,), "sgd", LEARNING_RATE).items():
        contender.load(x, y)
        cases[name] = lambda c=contender: c.step(0, len(x))
    cases["matmuls_only"] = matmuls_only(x)
    timings = interleaved(cases, repeats, settle=settle)
    ratios = [("tinygrad_np", "numpy"), ("tinygrad_np", "pytorch"), ("tinygrad_np", "matmuls_only")]
    return section(
        "Full-batch gradient-descent step, 784-10-10, float32",
        "ms per step",
        [row(f"{len(x):,} images", timings, 1e3, ratios)],
        [
            "numpy: the tutorial's forward_prop / backward_prop / update_params (column layout, X = 784 x m)",
            "matmuls_only: the step's five matrix products alone, the floor of any implementation",
        ],
    )
