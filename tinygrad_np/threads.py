"""How many threads BLAS may use: a measured default policy, `limit(n)`, `--threads N` and TINYGRAD_NP_THREADS.

A multithreaded matrix product splits its work between threads that wait for one another, spinning, several
times per product. On an idle machine that pays off for large products. On a machine with other work, a
waiting thread often waits for a partner the scheduler has paused, and on small products that made training
up to 12x slower than with one thread (benchmarks/busy.py measures it). So the default gives BLAS one thread
unless a workload's largest product is large, where threads pay on an idle machine and the waits are short
next to the work. The choice depends on the workload's shapes only, never on the machine's load: BLAS rounds
differently with another thread count, and a run must give the same weights however busy the machine was.

Thread control needs threadpoolctl (an extra); without it, BLAS keeps its own thread count and a `Choice`
says so.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from tinygrad_np.errors import UserError

ENV_VARIABLE = "TINYGRAD_NP_THREADS"

# Multiply-adds (rows x inputs x outputs) of a workload's largest matrix product below which the default is one
# thread. On 2 cores, products of 1-26M ran 1.06-1.56x faster on two threads idle, but the recipes made of them
# trained 3-8x slower on two beside other work; 51M and more ran 1.7-1.9x faster idle, and the full-batch tutorial
# recipe (470M) 1.5x. README "On a busy machine" and docs/benchmarks/busy.md have the numbers; the busy benchmark
# (`python -m benchmarks --only busy`) measures them again.
ONE_THREAD_BELOW = 100_000_000


class ThreadCountError(UserError, ValueError):
    """A thread count (--threads, $TINYGRAD_NP_THREADS) that is neither a positive whole number nor 'auto'."""


class _Blas(NamedTuple):
    controller: Any  # threadpoolctl's, for the BLAS libraries; None when there is none
    own_threads: int | None  # BLAS's thread count when first looked at, before any limit of ours
    why_not: str | None  # why threads can't be controlled, or None


@cache
def _blas() -> _Blas:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        why = "threadpoolctl is not installed (pip install threadpoolctl), so BLAS keeps its own thread count"
        return _Blas(None, None, why)
    controller = ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        return _Blas(None, None, "threadpoolctl found no BLAS library it can control")
    return _Blas(controller, max(library.num_threads for library in controller.lib_controllers), None)


def unavailable() -> str | None:
    """None when BLAS threads can be controlled here, else why not."""
    return _blas().why_not


def current() -> int | None:
    """BLAS's thread count now (the largest over its libraries), or None when it can't be read."""
    controller = _blas().controller
    return None if controller is None else max(library.num_threads for library in controller.lib_controllers)


def blas_default() -> int | None:
    """BLAS's own thread count, from its start-up settings (OPENBLAS_NUM_THREADS or the core count), or None.

    Read the first time this module looks at BLAS; inside someone else's threadpoolctl limit that is the limit.
    """
    return _blas().own_threads


@contextlib.contextmanager
def limit(threads: int | None) -> Iterator[None]:
    """Inside the block, BLAS uses `threads` threads; None leaves it as it is, and so does a missing threadpoolctl."""
    controller = _blas().controller
    if threads is None or controller is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive whole number, got {threads!r}")
    with controller.limit(limits=threads):
        yield


def parse(text: str, source: str = "--threads") -> int | None:
    """'auto' (the policy) -> None, '4' -> 4; anything else is refused, naming where it came from."""
    value = text.strip().lower()
    if value == "auto":
        return None
    if re.fullmatch(r"[0-9]+", value) and int(value) >= 1:
        return int(value)
    raise ThreadCountError(f"{source} must be a positive whole number or 'auto', got {text!r}")


def policy(largest_product: int) -> int | None:
    """The default: 1 thread below ONE_THREAD_BELOW multiply-adds in the largest product, else None (BLAS's own)."""
    return 1 if largest_product < ONE_THREAD_BELOW else None


def largest_product(model: Any, rows: int) -> int:
    """Multiply-adds of the largest matrix product a batch of `rows` makes in `model` (its widest Linear layer)."""
    from tinygrad_np import nn

    sizes = [layer.in_features * layer.out_features for layer in model.modules() if isinstance(layer, nn.Linear)]
    return rows * max(sizes, default=0)


@dataclass(frozen=True)
class Choice:
    """How many BLAS threads a run uses (None when they can't be controlled), and why; str() is the line verbose
    output prints. `limit(choice.threads)` applies it, also inside another limit."""

    threads: int | None
    reason: str

    def __str__(self) -> str:
        why_not = unavailable()
        if why_not is not None:
            return f"BLAS threads not controlled: {why_not}"
        return f"BLAS threads: {self.threads} ({self.reason})"


def asked_for(threads: int | None = None) -> Choice | None:
    """`threads` (from --threads) if given, else $TINYGRAD_NP_THREADS if set to a number, else None."""
    if threads is not None:
        return Choice(threads, "--threads")
    text = os.environ.get(ENV_VARIABLE, "").strip()
    asked = parse(text, f"the environment variable {ENV_VARIABLE}") if text else None
    return None if asked is None else Choice(asked, f"{ENV_VARIABLE}={text}")


def choose(model: Any = None, rows: int = 0, threads: int | None = None) -> Choice:
    """Threads for `model` on batches of `rows` (no model: small products): `threads` (--threads), else
    $TINYGRAD_NP_THREADS, else the policy."""
    asked = asked_for(threads)
    if asked is not None:
        return asked
    change = f"--threads N or ${ENV_VARIABLE}=N sets it"
    if model is None:
        return Choice(policy(0), f"small products; {change}")
    size = largest_product(model, rows)
    chosen = policy(size)
    relation = "under" if chosen == 1 else "at least"
    return Choice(chosen or blas_default(),
                  f"the largest product has {size:,} multiply-adds, {relation} {ONE_THREAD_BELOW:,}; {change}")
