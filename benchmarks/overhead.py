"""Benchmark 3: the engine's cost per op, on tensors so small that the arithmetic is almost free.

A chain of `links` links, each `h = tanh(h * c + c)` (three ops), then `sum().backward()`: forward and backward
of 3 * links ops. The NumPy contender makes the same NumPy calls by hand, forward and backward (the calls the
engine cannot avoid); the difference per op is the engine's own overhead: graph recording, the topological
sort, gradient bookkeeping.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np import Tensor
from tinygrad_np.benchmarks.harness import interleaved, progress, row, section

SHAPE = (16,)
SCALE = 0.5  # keeps tanh away from saturation, so every backward value is an ordinary float


def _autograd_chain(leaf: Any, links: int) -> Any:
    """The chain written once for any framework whose tensors have tanh, sum, backward and grad (ours, torch)."""

    def chain() -> None:
        leaf.grad = None
        h = leaf
        for _ in range(links):
            h = (h * SCALE + SCALE).tanh()
        h.sum().backward()

    return chain


def _numpy_chain(start: np.ndarray, links: int) -> Any:
    def chain() -> np.ndarray:
        h, outputs = start, []
        for _ in range(links):
            h = np.tanh(h * SCALE + SCALE)
            outputs.append(h)
        np.sum(h)
        grad = np.ones_like(h)
        for y in reversed(outputs):
            grad = grad * (1 - y * y)  # tanh
            grad = grad * SCALE  # mul (add passes its gradient through)
        return grad

    return chain


def _repeated(chain: Any, times: int) -> Any:
    def calls() -> None:
        for _ in range(times):
            chain()

    return calls


def run(torch: ModuleType | None, links: int, repeats: int, chains_per_round: int = 1) -> dict[str, Any]:
    ops = 3 * links
    progress(f"overhead: chain of {ops} ops on shape {SHAPE}, {chains_per_round} chains x {repeats} rounds")
    start = np.random.default_rng(0).uniform(-1, 1, SHAPE).astype(np.float32)
    cases = {"numpy": _numpy_chain(start, links)}
    if torch is not None:
        cases["pytorch"] = _autograd_chain(torch.from_numpy(start.copy()).requires_grad_(True), links)
    cases["tinygrad_np"] = _autograd_chain(Tensor(start, requires_grad=True), links)
    cases = {name: _repeated(chain, chains_per_round) for name, chain in cases.items()}
    # No settling pause here: ops on 16 numbers start no BLAS or OpenMP threads, and a pause before each timed call
    # measured both frameworks ~50% slower (a CPU that idled 0.2 s is a cold CPU), the ratio unchanged.
    timings = interleaved(cases, repeats, warmup=2)
    per_op = 1e6 / (ops * chains_per_round)
    result = row(f"{ops} ops, shape {SHAPE}", timings, per_op, [("tinygrad_np", "pytorch")])
    result["cells"]["tinygrad_np - numpy"] = (timings["tinygrad_np"].median - timings["numpy"].median) * per_op
    return section(
        "Per-op overhead: forward + backward of a chain of tiny ops, float32",
        "µs per op",
        [result],
        [
            "numpy: the same NumPy calls written out by hand, forward and backward, with no engine",
            "tinygrad_np - numpy: the engine's own cost per op (recording, topological sort, gradient bookkeeping)",
        ],
    )
