"""How many threads matrix products use: all usable cores by default, `limit(n)`, `--threads N` and
TINYGRAD_NP_THREADS; BLAS itself on one thread inside `limit`, which every command enters.

BLAS's own threads split a product statically and wait for one another, spinning. On a machine with other work a
waiting thread often waits for a partner the scheduler has paused: training ran up to 12x slower than on one thread
(benchmarks/busy.py measures it). And BLAS with another thread count sums in another order, so the weights would
depend on the thread count. So tinygrad_np keeps BLAS on one thread and splits large products itself
(tinygrad_np/parallel.py): blocks that free threads claim in turn, each bitwise equal to the one-threaded product.
A run gives the same weights with any number of threads, on any load. Outside `limit` BLAS stays as the user set
it, and while it has threads of its own, products go to it whole, as in plain NumPy.

Thread control needs threadpoolctl (an extra); without it BLAS keeps its own thread count, products are not split,
and a `Choice` says so.
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


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and `taskset` narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_count: int | None = None  # set inside `limit`; None: the default


def current() -> int:
    """Threads a matrix product may use now, the caller's included: `limit`'s count, else $TINYGRAD_NP_THREADS,
    else the usable cores; 1 when BLAS's threads can't be controlled (then BLAS does its own splitting)."""
    if unavailable() is not None:
        return 1
    if _count is not None:
        return _count
    asked = asked_for()
    return usable_cores() if asked is None else asked.threads


def blas_current() -> int | None:
    """BLAS's thread count now (the largest over its libraries), or None when it can't be read."""
    controller = _blas().controller
    return None if controller is None else max(library.num_threads for library in controller.lib_controllers)


_blas_limited: int | None = None  # the innermost `blas_limit`'s count, while one is in force


def blas_on_one_thread() -> bool:
    """Whether BLAS runs on one thread: known inside `blas_limit` (and so `limit`), else asked of BLAS. Asking
    costs 1-9 us, and `parallel.matmul` wants the answer before every large product."""
    if _blas_limited is not None:
        return _blas_limited == 1
    return blas_current() == 1


def blas_default() -> int | None:
    """BLAS's own thread count, from its start-up settings (OPENBLAS_NUM_THREADS or the core count), or None.

    Read the first time this module looks at BLAS; inside someone else's threadpoolctl limit that is the limit.
    """
    return _blas().own_threads


def _check(threads: int) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive whole number, got {threads!r}")


@contextlib.contextmanager
def blas_limit(threads: int | None) -> Iterator[None]:
    """Inside the block, BLAS itself uses `threads` threads; None leaves it as it is, and so does a missing
    threadpoolctl. (The benchmarks compare with BLAS's own threads through this; tinygrad_np keeps BLAS on one.)"""
    global _blas_limited
    controller = _blas().controller
    if threads is None or controller is None:
        yield
        return
    _check(threads)
    before = _blas_limited
    with controller.limit(limits=threads):
        _blas_limited = threads
        try:
            yield
        finally:
            _blas_limited = before


@contextlib.contextmanager
def limit(threads: int | None) -> Iterator[None]:
    """Inside the block, matrix products use `threads` threads in all and BLAS one; None leaves both as they are."""
    global _count
    if threads is None:
        yield
        return
    _check(threads)
    before = _count
    _count = threads
    try:
        with blas_limit(1):
            yield
    finally:
        _count = before


def parse(text: str, source: str = "--threads") -> int | None:
    """'auto' (the usable cores) -> None, '4' -> 4; anything else is refused, naming where it came from."""
    value = text.strip().lower()
    if value == "auto":
        return None
    if re.fullmatch(r"[0-9]+", value) and int(value) >= 1:
        return int(value)
    raise ThreadCountError(f"{source} must be a positive whole number or 'auto', got {text!r}")


@dataclass(frozen=True)
class Choice:
    """How many threads a run's matrix products use, and why; str() is the line verbose output prints.
    `limit(choice.threads)` applies it, also inside another limit."""

    threads: int
    reason: str

    def __str__(self) -> str:
        why_not = unavailable()
        if why_not is not None:
            return f"threads not controlled: {why_not}"
        return f"threads: {self.threads} ({self.reason}; BLAS on one thread, large products split between them)"


def asked_for(threads: int | None = None) -> Choice | None:
    """`threads` (from --threads) if given, else $TINYGRAD_NP_THREADS if set to a number, else None."""
    if threads is not None:
        return Choice(threads, "--threads")
    text = os.environ.get(ENV_VARIABLE, "").strip()
    asked = parse(text, f"the environment variable {ENV_VARIABLE}") if text else None
    return None if asked is None else Choice(asked, f"{ENV_VARIABLE}={text}")


def choose(threads: int | None = None) -> Choice:
    """`threads` (--threads), else $TINYGRAD_NP_THREADS, else the usable cores; 1 when BLAS can't be controlled."""
    if unavailable() is not None:
        return Choice(1, "BLAS threads can't be controlled")
    asked = asked_for(threads)
    if asked is not None:
        return asked
    return Choice(usable_cores(), f"the usable cores; --threads N or ${ENV_VARIABLE}=N sets it")
