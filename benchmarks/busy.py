"""Benchmark 6: the recipes on a busy machine: products split between threads (tinygrad_np/parallel.py, the
default) against unsplit products on BLAS's own threads and on one BLAS thread.

Every workload runs on an idle machine (as idle as it is) and again with one busy process per usable core,
which this benchmark starts and stops itself: the machine of someone who trains while other work runs. A
workload is a slice of a `tinygrad-np train --recipe` run (its training steps and its test evaluations in
the recipe's proportion), the forward passes that `compare --numerical` repeats, mini-batch steps, and single
matrix products. The baseline is BLAS's own threads, NumPy's default and tinygrad_np's before it managed threads.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_np import ops, parallel, threads
from tinygrad_np.benchmarks.contenders import ADAM_LR, TinygradContender, epoch, tinygrad_model
from tinygrad_np.benchmarks.harness import Timing, interleaved, progress, section
from tinygrad_np.models.mlp import mlp
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor, no_grad
from tinygrad_np.train import Trainer, build_model, build_optimizer, recipe_config


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[subprocess.Popen]]:
    """`count` processes that each keep one core busy until the block ends (stopped even on an error or Ctrl-C)."""
    started = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.2)  # long enough for them to be running, not only forked
        for process in started:
            if process.poll() is not None:
                raise RuntimeError(f"a busy process exited at once with status {process.returncode}")
        yield started
    finally:
        for process in started:
            process.kill()
        for process in started:
            process.wait()


def wake_latency(count: int = 500) -> tuple[float, float]:
    """Medians, in seconds, of what waking a thread that sleeps on a queue costs the waker (the `put`), and of how
    long after the put it runs. The waker sleeps meanwhile, so the woken thread never waits for the GIL: this is the
    machine's own price of a hand-over, which every split product pays and BLAS's spinning threads do not."""
    jobs: queue.SimpleQueue[bool] = queue.SimpleQueue()
    ran: queue.SimpleQueue[float] = queue.SimpleQueue()

    def sleeper() -> None:
        while jobs.get():
            ran.put(time.perf_counter())

    thread = threading.Thread(target=sleeper, name="wake-latency", daemon=True)
    thread.start()
    pinned = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1
    if pinned:  # on two cores, as parallel.py's workers keep off the caller's
        before = os.sched_getaffinity(0)
        cores = sorted(before)
        os.sched_setaffinity(0, {cores[0]})
        os.sched_setaffinity(thread.native_id, set(cores[1:]))
    waking, woken = [], []
    try:
        for _ in range(count):
            time.sleep(0.0003)  # long enough for the sleeper's core to go idle, as between products
            start = time.perf_counter()
            jobs.put(True)
            waking.append(time.perf_counter() - start)
            woken.append(ran.get() - start)
    finally:
        jobs.put(False)
        thread.join()
        if pinned:
            os.sched_setaffinity(0, before)
    return float(np.median(waking)), float(np.median(woken))


@dataclass(frozen=True)
class Workload:
    label: str
    run: Callable[[], object]


def recipe_workload(
    recipe: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, epochs: int, share: float
) -> Workload:
    """`epochs` epochs of a recipe on the first `share` of the training and test sets, evaluated as the recipe is."""
    config = recipe_config(recipe)
    rows, test_rows = max(1, round(len(x) * share)), max(1, round(len(x_test) * share))
    model = build_model(config)
    trainer = Trainer(model, build_optimizer(config, model), F.cross_entropy, (x[:rows], y[:rows]),
                      (x_test[:test_rows], y_test[:test_rows]), batch_size=config.batch_size, seed=config.seed)
    # As `tinygrad-np train` does: every epoch, or 20 times over a full-batch run.
    every = 1 if config.batch_size is not None else max(1, config.epochs // 20)

    def run() -> None:
        trainer.fit(trainer.epoch + epochs, evaluate_every=every)

    unit = "epochs" if config.batch_size is not None else "iterations"
    fraction = f"{epochs} of {config.epochs} {unit}" + ("" if share == 1 else f" on {share:.0%} of the data")
    return Workload(f"train --recipe {recipe} ({fraction})", run)


def numerical_gradient_workload(
    x: np.ndarray, y: np.ndarray, entries: int, hidden_sizes: tuple[int, ...] = (128, 64)
) -> Workload:
    """What `compare --hidden-sizes 128 64 --numerical` repeats: two float64 forward passes per weight differenced."""
    model = mlp(784, hidden_sizes, 10, generator=0, dtype=np.float64)
    images, labels = Tensor(x.astype(np.float64)), y
    weight = model[0].weight.data.reshape(-1)
    chosen = np.random.default_rng(0).choice(weight.size, size=min(entries, weight.size), replace=False)

    @no_grad()
    def run() -> None:
        for j in chosen:
            original = weight[j]
            weight[j] = original + 1e-6
            F.cross_entropy(model(images), labels)
            weight[j] = original - 1e-6
            F.cross_entropy(model(images), labels)
            weight[j] = original

    widths = " ".join(map(str, hidden_sizes))
    label = f"compare --hidden-sizes {widths} --numerical ({len(chosen)} weights, {len(x)} rows)"
    return Workload(label, run)


def step_workload(x: np.ndarray, y: np.ndarray, batch_size: int, hidden_size: int = 128) -> Workload:
    """One pass over `x` in mini-batches of a 784-h-10 MLP with Adam: products either side of the split's sizes."""
    contender = TinygradContender(tinygrad_model((hidden_size,), seed=0), "adam", ADAM_LR)
    contender.load(x, y)
    label = f"784-{hidden_size}-10 Adam, batch {batch_size} ({len(x):,} images)"
    return Workload(label, lambda: epoch(contender, len(x), batch_size))


def product_workload(rows: int, inner: int, columns: int, repeats: int = 10) -> Workload:
    """`repeats` float32 products (rows, inner) @ (inner, columns), as the engine computes them."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, inner), dtype=np.float32)
    b = rng.standard_normal((inner, columns), dtype=np.float32)
    pieces = len(parallel.blocks(rows, inner, columns)[1])

    def run() -> None:
        for _ in range(repeats):
            ops._matmul(a, b)

    label = f"{repeats} products ({rows}, {inner}) @ ({inner}, {columns}), {pieces} block{'s' * (pieces > 1)}"
    return Workload(label, run)


@contextlib.contextmanager
def unsplit() -> Iterator[None]:
    """The engine as it was before tinygrad_np/parallel.py: every product one plain np.matmul."""
    split = ops._matmul
    ops._matmul = np.matmul
    try:
        yield
    finally:
        ops._matmul = split


# split: tinygrad_np's default, BLAS on one thread and large products split between the usable cores;
# BLAS's own: unsplit products on BLAS's own thread count; 1 thread: unsplit products on one BLAS thread.
SETTINGS = ("split", "BLAS's own", "1 thread")


def _setting(name: str) -> contextlib.AbstractContextManager:
    if name == "split":
        return threads.limit(threads.usable_cores())
    stack = contextlib.ExitStack()
    stack.enter_context(unsplit())
    stack.enter_context(threads.blas_limit(threads.blas_default() if name == "BLAS's own" else 1))
    return stack


def _time(workloads: list[Workload], repeats: int, warmup: int, settle: float) -> dict[tuple[str, str], Timing]:
    cases = {}
    for workload in workloads:
        for setting in SETTINGS:
            def case(run: Callable[[], object] = workload.run, setting: str = setting) -> None:
                with _setting(setting):
                    run()

            cases[(workload.label, setting)] = case
    return interleaved(cases, repeats, warmup=warmup, settle=settle)


def run(workloads: list[Workload], repeats: int, busy: int, settle: float = 0.0) -> dict[str, Any]:
    """Time each workload with each setting, idle and then beside `busy` busy processes, sleeping `settle` seconds
    after each call: BLAS's own threads spin for about 0.1 s after a product, and would take a core from the next
    call (10 split products (1024, 784) @ (784, 256) took 54 ms right after BLAS's, 28 ms 0.1 s later)."""
    why_not = threads.unavailable()
    if why_not is not None:
        raise RuntimeError(f"can't vary BLAS threads here: {why_not}")
    waking, woken = wake_latency()
    progress(f"busy: {len(workloads)} workloads x {len(SETTINGS)} thread settings, {repeats} rounds, idle")
    idle = _time(workloads, repeats, warmup=1, settle=settle)
    progress(f"busy: the same beside {busy} busy processes (one per core)")
    with busy_processes(busy):
        loaded = _time(workloads, repeats, warmup=0, settle=settle)  # everything is warm from the idle rounds
    rows = []
    for workload in workloads:
        cells: dict[str, Any] = {}
        for load, timings in (("idle", idle), ("loaded", loaded)):
            for setting in SETTINGS:
                cells[f"{load}, {setting}"] = timings[(workload.label, setting)].as_dict()
        median = {key: value["median"] for key, value in cells.items()}
        cells["split / BLAS's own, idle"] = median["idle, split"] / median["idle, BLAS's own"]
        cells["split / 1 thread, idle"] = median["idle, split"] / median["idle, 1 thread"]
        cells["split / 1 thread, loaded"] = median["loaded, split"] / median["loaded, 1 thread"]
        for setting in SETTINGS:
            cells[f"loaded / idle, {setting}"] = median[f"loaded, {setting}"] / median[f"idle, {setting}"]
        rows.append({"label": workload.label, "cells": cells})
    cores = threads.usable_cores()
    wake = {"waking": waking, "woken": woken}
    return {"busy_processes": busy, "wake_latency": wake} | section(
        f"Busy machine: split products against BLAS's threads, idle and beside {busy} busy processes",
        "seconds per workload",
        rows,
        [
            f"split: tinygrad_np's default, BLAS on one thread and products of at least {2 * parallel.BLOCK_WORK:,} "
            f"float32 multiply-adds ({2 * parallel.FLOAT64_BLOCK_WORK:,} float64) cut into blocks that {cores} "
            "threads claim in turn (tinygrad_np/parallel.py); while every core has a runnable task, products under "
            f"{parallel.BUSY_SPLIT_WORK:,} run on the caller alone",
            f"BLAS's own: unsplit products on BLAS's own thread count ({threads.blas_default()} here), NumPy's default "
            "and tinygrad_np's before it managed threads; 1 thread: unsplit products on one BLAS thread",
            f"loaded: {busy} processes spinning `while True: pass`, one per usable core, started and stopped by the "
            "benchmark",
            "targets: split / BLAS's own, idle <= 1.05 (nothing slower on an idle machine than before); "
            "loaded / idle, split <= 2",
            f"hand-over on this machine, idle: waking a thread that sleeps on a queue cost the waker "
            f"{waking * 1e6:.1f} us, and the thread ran {woken * 1e6:.1f} us after the wake began (medians of 500). "
            "A split product pays this at least once, as its worker wakes, and again when the caller finishes "
            "first and sleeps; BLAS's own threads spin between products instead",
        ],
    )
