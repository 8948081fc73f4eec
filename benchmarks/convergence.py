"""Benchmark 4 (full mode): time to 97% test accuracy, and peak memory while training, against PyTorch.

Both frameworks train the same 784-128-10 MLP from the same weights with Adam (lr 1e-3, batch 128), on the
same shuffled order each epoch, so they take (nearly) the same path and the comparison is of speed alone.
Epochs alternate between the two in one process; test accuracy is checked after every epoch, outside the
timed part. Memory is measured per process (see `benchmarks.memory`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks import memory
from benchmarks.contenders import ADAM_LR, contenders, epoch
from benchmarks.harness import interleaved, progress, section

TARGET_ACCURACY = 0.97
BATCH_SIZE = 128
HIDDEN_SIZES = (128,)


def time_to_accuracy(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, torch: ModuleType | None,
    max_epochs: int, settle: float = 0.0, target: float = TARGET_ACCURACY, seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """{framework: {seconds, epochs, accuracy, reached}}: training time summed until test accuracy >= target."""
    racing = contenders(torch, HIDDEN_SIZES, "adam", ADAM_LR, seed, numpy=False)
    order_rng = np.random.default_rng(seed)
    status = {name: {"seconds": 0.0, "epochs": 0, "accuracy": 0.0, "reached": False} for name in racing}
    for epoch_index in range(1, max_epochs + 1):
        running = {name: c for name, c in racing.items() if not status[name]["reached"]}
        if not running:
            break
        order = order_rng.permutation(len(x))
        x_epoch, y_epoch = x[order], y[order]
        for contender in running.values():
            contender.load(x_epoch, y_epoch)
        cases = {name: (lambda c=c: epoch(c, len(x), BATCH_SIZE)) for name, c in running.items()}
        timings = interleaved(cases, 1, warmup=0, settle=settle)
        for name, contender in running.items():
            accuracy = float(np.mean(contender.predict(x_test) == y_test))
            status[name].update(
                seconds=status[name]["seconds"] + timings[name].median, epochs=epoch_index, accuracy=accuracy,
                reached=accuracy >= target,
            )
        progress(f"convergence: epoch {epoch_index}: "
                 + ", ".join(f"{name} {s['accuracy']:.4f}" for name, s in status.items()))
    return status


def peak_memory(x: np.ndarray, y: np.ndarray, torch: ModuleType | None) -> dict[str, dict[str, Any]]:
    """{scenario: {framework: worker result}}, each from a fresh process."""
    why_not = memory.supported()
    frameworks = ["tinygrad_np"] + (["pytorch"] if torch is not None else [])
    if why_not is not None:
        return {scenario: {f: {"error": why_not} for f in frameworks} for scenario in memory.SCENARIOS}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tinygrad-np-bench-") as workdir:
        np.save(Path(workdir) / "x.npy", x)
        np.save(Path(workdir) / "y.npy", y)
        for scenario in memory.SCENARIOS:
            results[scenario] = {}
            for framework in frameworks:
                progress(f"memory: {scenario}, {framework} (fresh process)")
                results[scenario][framework] = memory.measure(Path(workdir), framework, scenario)
    return results


def run(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, torch: ModuleType | None, max_epochs: int,
    settle: float = 0.0,
) -> dict[str, Any]:
    reached = time_to_accuracy(x, y, x_test, y_test, torch, max_epochs, settle)
    rows = []
    for name, status in reached.items():
        label = f"{status['seconds']:.2f} s, {status['epochs']} epochs" if status["reached"] else (
            f"not reached in {status['epochs']} epochs")
        rows.append({"label": name, "cells": {
            f"time to {TARGET_ACCURACY:.0%}": label, "test accuracy": f"{status['accuracy']:.4f}", **{
                key: status[key] for key in ("seconds", "epochs", "reached")}}})
    speed = section(
        f"Time to {TARGET_ACCURACY:.0%} test accuracy: 784-128-10 MLP, Adam, batch {BATCH_SIZE}, "
        f"{len(x):,} training images",
        "seconds of training (evaluation not counted)",
        rows,
        ["same initial weights and the same shuffled order in both frameworks; epochs alternate in one process"],
    )
    memory_rows = []
    for scenario, by_framework in peak_memory(x, y, torch).items():
        cells: dict[str, Any] = {}
        for framework, result in by_framework.items():
            cells[framework] = result.get("training_peak_mib", result.get("error"))
        if all(isinstance(cells.get(f), float) for f in ("tinygrad_np", "pytorch")) and cells["pytorch"] > 0:
            cells["tinygrad_np / pytorch"] = cells["tinygrad_np"] / cells["pytorch"]
        memory_rows.append({"label": memory.DESCRIPTIONS[scenario], "scenario": scenario, "cells": cells,
                            "details": by_framework})
    peaks = section(
        f"Peak memory while training on {len(x):,} images",
        "MiB above the process's resident size before training",
        memory_rows,
        ["each contender in a fresh process; Linux's VmHWM reset just before training (benchmarks/memory.py)"],
    )
    return {"time_to_accuracy": speed, "peak_memory": peaks}
