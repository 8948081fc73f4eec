"""Benchmark 4 (full mode): time to 97% test accuracy, and peak memory while training, against PyTorch.

Both frameworks train the same 784-128-10 MLP from the same weights with Adam (lr 1e-3, batch 128), on the
same shuffled order each epoch, so they take (nearly) the same path and the comparison is of speed alone.
The two take turns epoch by epoch in one process; test accuracy is checked every 50 steps, outside the
timed part. Memory is measured per process (see `benchmarks.memory`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np.benchmarks import memory
from tinygrad_np.benchmarks.contenders import ADAM_LR, contenders
from tinygrad_np.benchmarks.harness import progress, section

TARGET_ACCURACY = 0.97
BATCH_SIZE = 128
HIDDEN_SIZES = (128,)
CHECK_EVERY = 50  # steps between test-accuracy checks


def time_to_accuracy(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, torch: ModuleType | None,
    max_epochs: int, settle: float = 0.0, target: float = TARGET_ACCURACY, seed: int = 0,
    check_every: int = CHECK_EVERY,
) -> dict[str, dict[str, Any]]:
    """{framework: {seconds, steps, epochs, accuracy, reached}}: training time summed until test accuracy >= target.

    Accuracy is checked every `check_every` steps (untimed), so two frameworks on nearly the same path cross the
    target at nearly the same step, not a whole epoch apart. The frameworks take turns epoch by epoch (the
    order rotating), with `settle` seconds between turns (see harness.interleaved).
    """
    racing = contenders(torch, HIDDEN_SIZES, "adam", ADAM_LR, seed, numpy=False)
    order_rng = np.random.default_rng(seed)
    status = {name: {"seconds": 0.0, "steps": 0, "epochs": 0.0, "accuracy": 0.0, "reached": False} for name in racing}
    starts = list(range(0, len(x), BATCH_SIZE))
    for epoch_index in range(max_epochs):
        running = [name for name in racing if not status[name]["reached"]]
        if not running:
            break
        order = order_rng.permutation(len(x))
        x_epoch, y_epoch = x[order], y[order]
        shift = epoch_index % len(running)
        for name in running[shift:] + running[:shift]:
            contender, record = racing[name], status[name]
            contender.load(x_epoch, y_epoch)
            for first in range(0, len(starts), check_every):
                chunk = starts[first : first + check_every]
                began = time.perf_counter()
                for start in chunk:
                    contender.step(start, min(start + BATCH_SIZE, len(x)))
                record["seconds"] += time.perf_counter() - began
                record["accuracy"] = float(np.mean(contender.predict(x_test) == y_test))
                record["steps"] += len(chunk)
                record["epochs"] = epoch_index + (first + len(chunk)) / len(starts)
                if record["accuracy"] >= target:
                    record["reached"] = True
                    break
            time.sleep(settle)
        progress(f"convergence: epoch {epoch_index + 1}: "
                 + ", ".join(f"{name} {s['accuracy']:.4f}" for name, s in status.items()))
    return status


def peak_memory(
    x: np.ndarray, y: np.ndarray, torch: ModuleType | None, scenarios: Sequence[str] = memory.MLP_SCENARIOS
) -> dict[str, dict[str, Any]]:
    """{scenario: {framework: worker result}}, each from a fresh process."""
    why_not = memory.supported()
    frameworks = ["tinygrad_np"] + (["pytorch"] if torch is not None else [])
    if why_not is not None:
        return {scenario: {f: {"error": why_not} for f in frameworks} for scenario in scenarios}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tinygrad-np-bench-") as workdir:
        np.save(Path(workdir) / "x.npy", x)
        np.save(Path(workdir) / "y.npy", y)
        for scenario in scenarios:
            results[scenario] = {}
            for framework in frameworks:
                progress(f"memory: {scenario}, {framework} (fresh process)")
                results[scenario][framework] = memory.measure(Path(workdir), framework, scenario)
    return results


def run(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, torch: ModuleType | None, max_epochs: int,
    settle: float = 0.0, memory_scenarios: Sequence[str] = memory.MLP_SCENARIOS,
) -> dict[str, Any]:
    reached = time_to_accuracy(x, y, x_test, y_test, torch, max_epochs, settle)
    names = list(reached)

    def measured(label: str, value: Any, ratio: bool = False) -> dict[str, Any]:
        cells = {name: value(reached[name]) for name in names}
        if ratio and {"tinygrad_np", "pytorch"} <= set(cells) and all(isinstance(v, float) for v in cells.values()):
            cells["tinygrad_np / pytorch"] = cells["tinygrad_np"] / cells["pytorch"]
        return {"label": label, "cells": cells}

    rows = [
        measured(f"seconds to {TARGET_ACCURACY:.0%}", lambda s: s["seconds"] if s["reached"] else "not reached", True),
        measured("epochs trained", lambda s: round(s["epochs"], 2)),
        measured("seconds per epoch", lambda s: s["seconds"] / s["epochs"], True),
        measured("test accuracy at the stop", lambda s: s["accuracy"]),
    ]
    speed = section(
        f"Time to {TARGET_ACCURACY:.0%} test accuracy: 784-128-10 MLP, Adam, batch {BATCH_SIZE}, "
        f"{len(x):,} training images",
        "seconds of training (evaluation not counted)",
        rows,
        [f"same initial weights and the same shuffled order in both; they take turns epoch by epoch in one "
         f"process, and test accuracy is checked (untimed) every {CHECK_EVERY} steps"],
    )
    return {"time_to_accuracy": speed, "peak_memory": memory_section(x, y, torch, memory_scenarios)}


def memory_section(x: np.ndarray, y: np.ndarray, torch: ModuleType | None, scenarios: Sequence[str]) -> dict[str, Any]:
    """The peak-memory table of `scenarios` (names in `memory.SCENARIOS`), each framework in a fresh process."""
    rows = []
    for scenario, by_framework in peak_memory(x, y, torch, scenarios).items():
        cells: dict[str, Any] = {}
        for framework, result in by_framework.items():
            cells[framework] = result.get("training_peak_mib", result.get("error"))
        if all(isinstance(cells.get(f), float) for f in ("tinygrad_np", "pytorch")) and cells["pytorch"] > 0:
            cells["tinygrad_np / pytorch"] = cells["tinygrad_np"] / cells["pytorch"]
        rows.append({"label": memory.DESCRIPTIONS[scenario], "scenario": scenario, "cells": cells,
                     "details": by_framework})
    return section(
        f"Peak memory while training on {len(x):,} images",
        "MiB above the process's resident size before training",
        rows,
        ["each contender in a fresh process; Linux's VmHWM reset just before training (benchmarks/memory.py)"],
    )
