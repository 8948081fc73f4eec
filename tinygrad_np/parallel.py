"""Matrix products split into blocks that threads take in turn: the same bits whatever the thread count and
whatever the load.

BLAS's own threads split a product statically and wait for each other, spinning; on a machine with other work a
paused partner stalls the whole product, and with another thread count BLAS sums in another order (it splits the
inner dimension), so the weights would depend on the threads. Here BLAS runs on one thread and a product large
enough to pay is cut into blocks of the output's rows, or of its columns when it has few rows (`g.T @ x`, whose
inner dimension is the batch: the sum over the batch is never cut). Every block is a one-threaded BLAS product of a
slice. The blocks depend on the shapes and the dtype alone and one thread computes the same blocks as many, so the
result has the same bits however many threads take part. (With the OpenBLAS we measured, float32 blocks of this size
also gave the unsplit one-threaded product's bits; float64 blocks did not always. No BLAS promises either, so
nothing relies on it: the guarantee is the thread count's.) The calling thread and `threads.current() - 1`
persistent workers claim the blocks one at a time (a counter under a lock), so a thread the scheduler pauses holds
up one block, not the product; of two blocks the caller's, taken at once, is the longer, since a woken worker starts
late. Waiting threads sleep on a lock, never spin, and on Linux the workers keep off the caller's core, so that a
woken worker never queues behind the caller. While every core already has a runnable task, a product under
BUSY_SPLIT_WORK runs on the caller alone: the same blocks, so the same bits. Products are split only while BLAS is
on one thread (inside `threads.limit`, which every command enters); while BLAS has threads of its own, they take the
product whole, as in plain NumPy.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from tinygrad_np import threads

# Block edges fall on multiples of ALIGN rows or columns, a multiple of every x86 GEMM kernel's unrolling.
ALIGN = 64
# Multiply-adds (rows x inner x columns) per block, at least: a product of fewer than twice this runs unsplit.
# OpenBLAS gives products under about 1M-7.3M multiply-adds to other kernels (its "small matrix" and "direct"
# paths), which sum in another order: float32 blocks of 0.5M rounded unlike the whole product, blocks above 8M
# like it (tests/test_parallel.py). A block costs a few microseconds to hand out. On 2 quiet cores a product of
# 25.7M ran 1.38x faster in 2 blocks than on one thread (0.42 against 0.58 ms), one of 4.2M slower (0.100 against
# 0.083 ms); docs/benchmarks/busy.md measures the split on the shared machine.
BLOCK_WORK = 8_000_000
# The same for float64, whose products run at about half float32's rate (a vector holds half as many), and for
# the other float types, which NumPy multiplies in its own loops, slower still. On 2 quiet cores, with
# the workers woken for each product, two equal blocks took 1.02x one thread's time at 1.6M multiply-adds each,
# 0.94x at 2.1M and 0.82x at 3.2M ((64, 784) @ (784, 128), the forward pass that `compare --numerical` repeats).
FLOAT64_BLOCK_WORK = 2_500_000
# Lines (output rows, or columns) per block, at least, where the product has room for FEW_BLOCKS of them: BLAS
# copies the whole other operand into its kernel's layout for every block, so thin blocks repeat that copy. On 2
# quiet cores, blocks of 256 lines instead of 64 took (2048, 784) @ (784, 128) from 1.27x BLAS's own two threads
# to 1.04x, (1024, 784) @ (784, 256) from 1.17x to 0.99x, and (128, 2048) @ (2048, 784) from 1.21x to 1.00x.
MIN_LINES = 256
# Blocks, at least, when BLOCK_WORK allows them, and always an even count: 3 blocks on 2 threads leave one idle
# for a third of the time.
FEW_BLOCKS = 4
# Of a product cut in two, the first block's share. The caller takes the first block at once; a worker wakes
# tens of microseconds later (a sleeping core, or a virtual machine's halted one), and then the caller would wait
# for it, and wake in turn. On the 2-core machine, with the workers woken for each product, 9/16 against halves:
# (64, 784) @ (784, 128) float64 202 against 245 us, (128, 784) @ (784, 256) float32 317 against 338 us and
# (784, 128) @ (128, 256) 307 against 330 us; 5/8 was no better than halves for the last two. The cut falls on a
# multiple of 8 lines (72 of 128 columns did best; 68 was slower), as far as the second block keeps its BLOCK_WORK.
FIRST_OF_TWO = 9 / 16


# A product of fewer multiply-adds than this runs on the calling thread alone (the same blocks, so the same bits)
# while every core already has a runnable task: a worker would then wait its turn on a busy core, and the caller,
# once asleep, its turn to wake. On 2 cores beside 2 busy processes, with 0.5 ms of other work between products,
# (128, 784) @ (784, 256) took 1.27 ms split against 1.01 ms alone, (256, 784) @ (784, 256) 2.11 against 1.93,
# (512, 784) @ (784, 256) 3.41 against 3.74 and (1024, 784) @ (784, 256) 6.02 against 6.62.
BUSY_SPLIT_WORK = 80_000_000


def block_work(dtype: np.dtype | type) -> int:
    """Multiply-adds per block, at least, for products of `dtype`."""
    return BLOCK_WORK if np.dtype(dtype) == np.float32 else FLOAT64_BLOCK_WORK


def blocks(
    rows: int, inner: int, columns: int, dtype: np.dtype | type = np.float32
) -> tuple[int, list[tuple[int, int]]]:
    """The axis of the output to cut (0: rows, 1: columns) and the [start, end) of each block: one block when the
    product is too small to pay. Depends on the shapes and the dtype alone, never on the threads or the load."""
    least = block_work(dtype)
    axis, length = (0, rows) if rows >= columns else (1, columns)
    work_per_line = inner * (columns if axis == 0 else rows)
    if work_per_line == 0:
        return axis, [(0, length)]
    fewest = -(-least // work_per_line)  # lines for `least` multiply-adds
    shortest = -(-fewest // ALIGN) * ALIGN  # the same, up to a multiple of ALIGN
    count = length // max(shortest, MIN_LINES)
    if count < FEW_BLOCKS:  # too short for FEW_BLOCKS blocks of MIN_LINES: thinner ones, down to `least` each
        count = min(FEW_BLOCKS, length // shortest)
    count -= count % 2  # an even count, shared evenly by the even core counts of most machines
    if count < 2:
        return axis, [(0, length)]
    if count == 2:
        # Off the multiple of 8 only where the second block needs every line left to keep `least`: then the first
        # is still the longer, as count == 2 means length >= 2 * fewest.
        first = min(round(length * FIRST_OF_TWO / 8) * 8, length - fewest)
        return axis, [(0, first), (first, length)]
    step = length // count // ALIGN * ALIGN  # at least `shortest`; the last block takes what is left
    starts = [index * step for index in range(count)]
    return axis, list(zip(starts, [*starts[1:], length], strict=True))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, as np.matmul; while BLAS is on one thread (always inside `threads.limit`, so in every command), a
    2-D float product large enough to pay is computed in `blocks`, shared between `threads.current()` threads.
    Its bits depend on the shapes and the dtype alone: the same blocks on one thread or on many."""
    # The cheapest test first: most products are small, and this runs once per product.
    if a.ndim != 2 or b.ndim != 2:
        return np.matmul(a, b)
    work = a.shape[0] * a.shape[1] * b.shape[1]
    if work < 2 * FLOAT64_BLOCK_WORK:  # the smaller of the two
        return np.matmul(a, b)
    if a.dtype != b.dtype or a.dtype.kind != "f" or a.shape[1] != b.shape[0]:
        return np.matmul(a, b)
    if not threads.blas_on_one_thread():
        # BLAS has threads of its own (NumPy's default, outside `threads.limit`), or none can be read: the product
        # goes to it whole. Split blocks beside them would lose a core to their spinning after every small
        # product: a batch-512 step of a 784-128-10 MLP took 1.8x the hand-written NumPy's, mixed that way.
        return np.matmul(a, b)
    axis, edges = blocks(a.shape[0], a.shape[1], b.shape[1], a.dtype)
    if len(edges) < 2 or np.may_share_memory(a, b):
        # a @ a.T is a symmetric product that NumPy gives to another BLAS routine (syrk): left whole, as NumPy does.
        return np.matmul(a, b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    if axis == 0:
        tasks = [(a[start:end], b, out[start:end]) for start, end in edges]
    else:
        tasks = [(a, b[:, start:end], out[:, start:end]) for start, end in edges]
    helpers = threads.current() - 1
    if helpers and work < BUSY_SPLIT_WORK and _cores_taken():
        helpers = 0
    if getattr(_local, "worker", False):  # a product inside a block: this thread alone, never wait for the pool
        _Job(tasks).work()
    else:
        _pool.run(tasks, helpers)
    return out


def _open_loadavg() -> int | None:
    try:
        return os.open("/proc/loadavg", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # not Linux
        return None


_loadavg = _open_loadavg()
# Seconds a reading of /proc/loadavg stands for: reading it costs 8-19 us on the 2-core machine, a tenth of a
# product worth splitting, while other work starts and stops over seconds.
LOAD_READ_EVERY = 0.01
_load_read: tuple[float, bool] = (-float("inf"), False)  # (when, cores taken) of the last reading


def _cores_taken() -> bool:
    """Whether every core had a runnable task besides this thread, at most LOAD_READ_EVERY seconds ago."""
    global _load_read
    now = time.monotonic()
    if now - _load_read[0] >= LOAD_READ_EVERY:
        _load_read = (now, _read_cores_taken())
    return _load_read[1]


def _read_cores_taken() -> bool:
    """Whether every core has a runnable task besides this thread, from /proc/loadavg's count of runnable tasks
    (its fourth field, `running/total`, counted now). False where there is no /proc/loadavg."""
    if _loadavg is None:
        return False
    try:
        running = int(os.pread(_loadavg, 128, 0).split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return False
    return running - 1 >= (os.cpu_count() or 1)


class _Job:
    """One split product: its blocks, the next one to claim, how many are unfinished, the first error."""

    def __init__(self, tasks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.tasks = tasks
        self.next = 0
        self.unfinished = len(tasks)
        self.lock = threading.Lock()
        # Held until the last block is done; the caller waits by taking it. (A bare lock: an Event costs a
        # condition and a lock more to make, 2-4 us on every split product.)
        self.done = threading.Lock()
        self.done.acquire()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Claim and compute blocks until none is left."""
        while True:
            with self.lock:
                index = self.next
                self.next += 1
            if index >= len(self.tasks):
                return
            try:
                left, right, out = self.tasks[index]
                np.matmul(left, right, out=out)  # BLAS releases the GIL
            except BaseException as error:  # handed to the caller, who raises it
                self.error = self.error or error
            with self.lock:
                self.unfinished -= 1
                if self.unfinished == 0:
                    self.done.release()


class _Pool:
    """Persistent daemon workers that take jobs from a queue; made on first use, remade in a forked child."""

    def __init__(self) -> None:
        # A C queue: `put` hands the job to a waiting worker directly. A Condition made the woken worker wait again
        # for the lock that the notifier still held: two wake-ups, 28 us before the worker's first block.
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.starting = threading.Lock()  # guards `workers` and `off_cpu`
        self.workers: list[threading.Thread] = []
        self.off_cpu: int | None = None  # the core the workers were last kept off

    def run(self, tasks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], helpers: int) -> None:
        """Compute every task with the calling thread and up to `helpers` workers; raise the first error."""
        job = _Job(tasks)
        helpers = min(helpers, len(tasks) - 1)
        if helpers < 1:
            job.work()
            return
        with self.starting:
            while len(self.workers) < helpers:
                # Daemons: an idle worker waits on the queue, so the interpreter can exit without stopping them.
                worker = threading.Thread(target=self._serve, name=f"tinygrad_np-matmul-{len(self.workers)}",
                                          daemon=True)
                worker.start()
                self.workers.append(worker)
                self.off_cpu = None  # the new worker may run anywhere yet
            self._keep_off_callers_core()
        for _ in range(helpers):
            self.jobs.put(job)  # a worker that comes late finds every block claimed and goes back to the queue
        job.work()
        job.done.acquire()
        if job.error is not None:
            raise job.error

    def _keep_off_callers_core(self) -> None:
        """Let the workers run on every usable core but the caller's.

        Waking a sleeping worker, Linux may queue it on the waker's core when the other cores look busy, and on a
        virtual machine an idle core often does (its host has paused it): then the worker and the caller take
        turns on one core, and the product runs no faster than on one thread. Measured on the 2-core machine:
        10 products (1024, 784) @ (784, 256) took 45 ms after a pause of 0.1 s or more, 28 ms with the worker
        kept off the caller's core (one thread: 41 ms). Under load the dynamic claiming does the balancing: a
        worker on a busy core holds up one block, not the product.
        """
        if _sched_getcpu is None:
            return
        cpu = _sched_getcpu()
        if cpu == self.off_cpu:
            return
        allowed = os.sched_getaffinity(0) - {cpu}
        if not allowed:
            return
        for worker in self.workers:
            try:
                os.sched_setaffinity(worker.native_id, allowed)
            except OSError:  # a core removed from the process since, or no permission: the scheduler decides
                return
        self.off_cpu = cpu

    def _serve(self) -> None:
        _local.worker = True
        while True:
            self.jobs.get().work()


def _libc_sched_getcpu() -> Callable[[], int] | None:
    """The C library's sched_getcpu (the core the calling thread runs on), or None where there is none."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = []
    return function if function() >= 0 else None


_sched_getcpu = _libc_sched_getcpu()
_local = threading.local()
_pool = _Pool()


def _after_fork_in_child() -> None:
    # A child has only the thread that forked: the workers are gone and their locks may be held. Start afresh.
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_after_fork_in_child)
