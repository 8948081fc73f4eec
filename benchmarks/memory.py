"""Peak memory while training: each contender in a fresh process, measured by the kernel's high-water mark.

Peak resident memory belongs to a whole process, so this is the one measurement that cannot share a process
between contenders. Each worker loads the libraries, the training set and the model, then resets Linux's
high-water mark (`echo 5 > /proc/self/clear_refs`), trains, and reports the peak above where it started:
the memory that training itself needed (activations, gradients, optimizer state, the allocator's caches),
not the libraries or the data set, which both contenders hold alike. Before that, each worker runs one matrix
product of the training set's shape in its own library: BLAS libraries reserve working buffers once, on the
first large product (OpenBLAS with 2 threads: ~60 MiB), and those belong to the library, not to training.

Run as `python -m tinygrad_np.benchmarks.memory WORKDIR FRAMEWORK SCENARIO`; prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20
# name: (hidden sizes, or None for contenders.cnn_model on (N, 1, 28, 28); optimizer, learning rate, batch size or
# None for the full batch, epochs or steps)
SCENARIOS: dict[str, tuple[tuple[int, ...] | None, str, float, int | None, int]] = {
    "minibatch_epoch": ((128,), "adam", 1e-3, 128, 1),
    "full_batch_mlp": ((128,), "adam", 1e-3, None, 3),
    "full_batch_tutorial": ((10,), "sgd", 0.1, None, 3),
    "cnn_epoch": (None, "adam", 1e-3, 128, 1),
}
DESCRIPTIONS = {
    "minibatch_epoch": "784-128-10, Adam, one epoch in batches of 128",
    "full_batch_mlp": "784-128-10, Adam, 3 full-batch steps",
    "full_batch_tutorial": "784-10-10, gradient descent, 3 full-batch steps",
    "cnn_epoch": "LeNet-style CNN, Adam, one epoch in batches of 128",
}
MLP_SCENARIOS = tuple(name for name, scenario in SCENARIOS.items() if scenario[0] is not None)


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")  # 5: reset the peak resident set size (VmHWM) to the current one


def worker(workdir: Path, framework: str, scenario: str) -> dict[str, Any]:
    """Train one scenario with one framework in this process; the peak RSS above the starting point."""
    from tinygrad_np.benchmarks import contenders
    from tinygrad_np.benchmarks.harness import import_torch

    hidden_sizes, optimizer, lr, batch_size, repeats = SCENARIOS[scenario]
    x = np.load(workdir / "x.npy", allow_pickle=False)
    y = np.load(workdir / "y.npy", allow_pickle=False)
    model = contenders.cnn_model(seed=0) if hidden_sizes is None else contenders.tinygrad_model(hidden_sizes, seed=0)
    if framework == "pytorch":
        torch, note = import_torch()
        if torch is None:
            raise SystemExit(f"PyTorch is {note}")
        contender: Any = contenders.TorchContender(torch, model, optimizer, lr)  # type: ignore[arg-type]
    else:
        contender = contenders.TinygradContender(model, optimizer, lr)  # type: ignore[arg-type]
    contender.load(x if hidden_sizes is not None else x.reshape(len(x), 1, 28, 28), y)
    probe = np.ones((x.shape[1], 10), dtype=x.dtype)
    if framework == "pytorch":
        torch.from_numpy(x) @ torch.from_numpy(probe)
    else:
        x @ probe
    del probe
    gc.collect()
    start_kib = _status_kib("VmRSS")
    _reset_peak()
    began = time.perf_counter()
    for _ in range(repeats):
        if batch_size is None:
            contender.step(0, len(x))
        else:
            contenders.epoch(contender, len(x), batch_size)
    seconds = time.perf_counter() - began
    peak_kib = _status_kib("VmHWM")
    return {
        "framework": framework,
        "scenario": scenario,
        "start_mib": start_kib * 1024 / MIB,
        "peak_mib": peak_kib * 1024 / MIB,
        "training_peak_mib": (peak_kib - start_kib) * 1024 / MIB,
        "seconds": seconds,
    }


def measure(workdir: Path, framework: str, scenario: str, timeout: float = 600) -> dict[str, Any]:
    """Run `worker` in a fresh interpreter; its JSON line, or {"error": why} if it failed."""
    command = [sys.executable, "-m", "tinygrad_np.benchmarks.memory", str(workdir), framework, scenario]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        return {"error": f"worker exited {done.returncode}: {lines[-1]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def supported() -> str | None:
    """None if peaks can be measured here, else why not."""
    try:
        _status_kib("VmHWM")
        _reset_peak()
    except OSError as err:
        return f"needs Linux's /proc/self/clear_refs and VmHWM ({err})"
    return None


if __name__ == "__main__":
    print(json.dumps(worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3])))
