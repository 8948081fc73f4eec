"""Timing, the record of the machine, and PyTorch as an optional contender.

Machines are noisy (other processes, frequency scaling, caches), so contenders never run in separate blocks:
each round runs every contender once, in an order that rotates from round to round, and we report the median
round and the interquartile range. A slowdown that hits one round hits every contender alike.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import tinygrad_np
from tinygrad_np import threads


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the measured rounds (warm-up rounds dropped)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def iqr(self) -> tuple[float, float]:
        """The 25th and 75th percentiles: how much the rounds disagreed."""
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)

    def as_dict(self, scale: float = 1.0) -> dict[str, Any]:
        q1, q3 = self.iqr
        return {
            "median": self.median * scale,
            "q1": q1 * scale,
            "q3": q3 * scale,
            "min": min(self.samples) * scale,
            "rounds": len(self.samples),
        }


def interleaved(
    cases: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1, settle: float = 0.0
) -> dict[str, Timing]:
    """Time every case once per round for `warmup + repeats` rounds, rotating the order; keep the last `repeats`.

    `settle` seconds of sleep after each call let the previous contender's worker threads go idle: OpenBLAS's
    spin for ~0.1 s after a product, PyTorch's OpenMP threads for a while too, and a spinning pool steals the
    cores from the next contender's threads (on 2 cores, a 0.3 ms product measured 10-20 ms right after the
    other library's).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    names = list(cases)
    if not names:
        return {}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)  # rotate, so no contender always runs right after the same other one
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                samples[name].append(elapsed)
            if settle:
                time.sleep(settle)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


# ---- PyTorch, optional ----------------------------------------------------------------------------------


def import_torch() -> tuple[ModuleType | None, str]:
    """(torch, version) or (None, why not): PyTorch is an optional contender, never a requirement."""
    try:
        import torch
    except ImportError as err:
        return None, f"not installed ({err}); pip install 'tinygrad-np[torch]'"
    return torch, torch.__version__


# ---- the machine ----------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> dict[str, Any]:
    """Which BLAS NumPy uses and with how many threads: threadpoolctl when installed, else NumPy's build info."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        pools = [
            {key: pool.get(key) for key in ("internal_api", "version", "prefix", "architecture", "num_threads")}
            for pool in threadpool_info()
        ]
        return {"source": "threadpoolctl", "pools": pools}
    config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
    blas = config.get("Build Dependencies", {}).get("blas", {}) if isinstance(config, dict) else {}
    return {
        "source": "numpy.show_config (install threadpoolctl for the live thread count)",
        "name": blas.get("name"),
        "version": blas.get("version"),
        "configuration": blas.get("openblas configuration"),
    }


# Environment variables that change how many threads BLAS and PyTorch use, or which kernels OpenBLAS picks.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")


def environment(torch: ModuleType | None, torch_note: str) -> dict[str, Any]:
    """Everything needed to read the numbers later: when, which machine, which libraries, how many threads."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": threads.usable_cores(),
            "platform": platform.platform(),
            "load_average": _load_average(),
        },
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "tinygrad_np": tinygrad_np.__version__,
        "torch": torch_note,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "blas": blas_info(),
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def _load_average() -> list[float] | None:
    """1/5/15-minute load: above the core count means other work shared the machine while we measured."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---- results --------------------------------------------------------------------------------------------


def row(label: str, timings: Mapping[str, Timing], scale: float, ratios: list[tuple[str, str]]) -> dict[str, Any]:
    """One table row: each contender's timing (times `scale`), then each ratio `a / b` of their medians."""
    cells: dict[str, Any] = {name: timing.as_dict(scale) for name, timing in timings.items()}
    for numerator, denominator in ratios:
        if numerator in timings and denominator in timings:
            cells[f"{numerator} / {denominator}"] = timings[numerator].median / timings[denominator].median
    return {"label": label, "cells": cells}


def section(title: str, unit: str, rows: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    """A benchmark's results: a titled table (columns in first-seen order) plus notes on how to read it."""
    columns: list[str] = []
    for entry in rows:
        columns += [name for name in entry["cells"] if name not in columns]
    return {"title": title, "unit": unit, "columns": columns, "rows": rows, "notes": notes or []}
