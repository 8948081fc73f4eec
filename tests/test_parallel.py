"""Split matrix products (tinygrad_np/parallel.py): the same bits with any number of threads, the blocks from the
shapes alone, the engine's products go through it, and the pool survives errors, nesting, forks and callers.

The suite pins BLAS to one thread (conftest.py); `threads.limit(n)` sets the split's thread count.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from hypothesis import example, given
from hypothesis import strategies as st

from tinygrad_np import nn, ops, parallel, threads
from tinygrad_np.models.two_layer import two_layer
from tinygrad_np.nn import functional as F
from tinygrad_np.optim import SGD
from tinygrad_np.tensor import Tensor


@pytest.fixture(autouse=True)
def controllable() -> None:
    require(threads.unavailable() is None, f"BLAS threads can't be controlled here: {threads.unavailable()}")


def _operands(rows: int, inner: int, columns: int, dtype, layout: str, seed: int = 0):
    """a (rows, inner) and b (inner, columns), each C-ordered ("c") or the transpose of a C-ordered array ("t"),
    as the backward passes make them (`g.T @ x`, `g @ W`)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, inner)) if layout[0] == "c" else rng.standard_normal((inner, rows)).T
    b = rng.standard_normal((inner, columns)) if layout[1] == "c" else rng.standard_normal((columns, inner)).T
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


# The recipes' products and their gradients (the full batch cut to 12,000 rows), shapes just above
# and below the split, odd sizes that leave a short last block, a reduction over the batch, a single column.
SHAPES = [
    (12_000, 784, 10), (10, 12_000, 784), (12_000, 10, 784), (128, 784, 256), (256, 128, 784), (128, 256, 784),
    (1024, 784, 256), (64, 784, 128), (333, 777, 555), (129, 1025, 257), (130, 65_000, 3), (5000, 3, 2000),
    (3000, 3000, 1), (1, 3000, 3000), (700, 1911, 533), (100, 1000, 300),
]


@pytest.mark.parametrize("layout", ["cc", "tc", "ct", "tt"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_a_split_product_has_the_same_bits_with_any_thread_count(shape, dtype, layout) -> None:
    a, b = _operands(*shape, dtype, layout)
    with threads.limit(1):
        one = parallel.matmul(a, b)
    np.testing.assert_allclose(one, a @ b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-3)
    for count in (2, 3):
        with threads.limit(count):
            assert np.array_equal(parallel.matmul(a, b), one), f"{count} threads changed the bits"


@example(rows=235, inner=266, columns=257, dtype=np.float32)  # 2 blocks, the second needing all but 128 lines
@given(
    rows=st.integers(1, 3000),
    inner=st.integers(1, 3000),
    columns=st.integers(1, 3000),
    dtype=st.sampled_from([np.float32, np.float64, np.float16]),
)
def test_blocks_cover_the_longer_side_in_aligned_pieces_large_enough_to_pay(rows, inner, columns, dtype) -> None:
    axis, edges = parallel.blocks(rows, inner, columns, dtype)
    least = parallel.block_work(dtype)
    length, other = (rows, columns) if axis == 0 else (columns, rows)
    assert length >= other
    assert edges[0][0] == 0 and edges[-1][1] == length
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(edges))
    lines = [end - start for start, end in edges]
    if len(edges) == 2:  # the caller's block, first, is the longer: a woken worker starts late
        fewest = -(-least // (inner * other))  # lines the second block needs to keep `least`
        assert lines[0] >= lines[1]
        assert lines[0] <= round(length * parallel.FIRST_OF_TWO / 8) * 8
        assert edges[1][0] % 8 == 0 or lines[1] == fewest  # off the multiple of 8 only to keep `least`
    if len(edges) > 2:
        assert all(start % parallel.ALIGN == 0 for start, _ in edges)
    if len(edges) > 1:
        assert all(line * inner * other >= least for line in lines)
        assert len(edges) % 2 == 0
        # Blocks thinner than MIN_LINES only to make FEW_BLOCKS of them, never more.
        assert min(lines) >= parallel.MIN_LINES or len(edges) <= parallel.FEW_BLOCKS
        # Fewer than FEW_BLOCKS only when FEW_BLOCKS aligned blocks of `least` don't fit.
        shortest = -(-least // (inner * other) // parallel.ALIGN) * parallel.ALIGN
        assert len(edges) >= parallel.FEW_BLOCKS or length < parallel.FEW_BLOCKS * shortest
    else:  # no two aligned blocks of `least` fit
        half = length // 2 // parallel.ALIGN * parallel.ALIGN
        assert half * inner * other < least


@pytest.mark.parametrize(
    ("shape", "count"),
    [
        ((128, 784, 256), 2),  # mlp's first layer at batch 128: two blocks of 128 columns
        ((1024, 784, 256), 4),  # four blocks of MIN_LINES rows, not sixteen of 64
        ((2048, 784, 128), 8),
        ((10, 60_000, 784), 4),  # the tutorial's weight gradient: four blocks of columns
        ((60_000, 784, 10), 58),  # the tutorial's forward pass: 58 blocks of 1,024 rows
        ((12_000, 784, 10), 10),  # eleven fit; an even count shares evenly between two threads
    ],
)
def test_the_recipes_products_split_into_the_blocks_measured_to_pay(shape, count) -> None:
    assert len(parallel.blocks(*shape)[1]) == count


@pytest.mark.parametrize(
    ("shape", "edges"),
    [
        ((128, 784, 256), [(0, 144), (144, 256)]),  # mlp's first layer at batch 128: 9/16 of the columns first
        ((784, 128, 256), [(0, 440), (440, 784)]),  # and its weight gradient
    ],
)
def test_of_two_blocks_the_callers_is_the_longer(shape, edges) -> None:
    assert parallel.blocks(*shape)[1] == edges


def test_float64_products_split_at_fewer_multiply_adds_than_float32_ones() -> None:
    # (64, 784) @ (784, 128): the forward pass that `compare --numerical` repeats, in float64. Its float64 GEMM
    # runs at half float32's rate, so two blocks pay at 6.4M multiply-adds in float64 and not in float32.
    assert parallel.FLOAT64_BLOCK_WORK < parallel.BLOCK_WORK
    assert parallel.blocks(64, 784, 128, np.float64) == (1, [(0, 72), (72, 128)])
    assert len(parallel.blocks(64, 784, 128, np.float32)[1]) == 1
    a, b = _operands(64, 784, 128, np.float64, "cc")
    with threads.limit(1):
        one = parallel.matmul(a, b)
    with threads.limit(2):
        assert np.array_equal(parallel.matmul(a, b), one)


def test_small_products_and_what_is_not_2d_float_are_numpys_own() -> None:
    a, b = _operands(64, 64, 64, np.float32, "cc")
    assert len(parallel.blocks(64, 64, 64)[1]) == 1
    assert np.array_equal(parallel.matmul(a, b), a @ b)
    stacked = np.stack([a, a])
    assert np.array_equal(parallel.matmul(stacked, b), stacked @ b)
    ints = np.arange(6).reshape(2, 3)
    assert np.array_equal(parallel.matmul(ints, ints.T), ints @ ints.T)
    with pytest.raises(ValueError):
        parallel.matmul(a, np.ones((3, 3), np.float32))  # NumPy's error; MatMul turns it into its own message


def test_a_product_of_an_array_with_its_own_transpose_stays_whole() -> None:
    a, _ = _operands(600, 700, 1, np.float32, "cc")
    assert len(parallel.blocks(600, 700, 600)[1]) > 1
    with threads.limit(2):
        assert np.array_equal(parallel.matmul(a, a.T), a @ a.T)  # NumPy's syrk, not blocks of it


def test_the_engines_products_go_through_the_split(monkeypatch) -> None:
    seen = []

    def watched(a, b):
        seen.append((a.shape, b.shape))
        return parallel.matmul(a, b)

    monkeypatch.setattr(ops, "_matmul", watched)
    x = Tensor(np.ones((8, 784), np.float32), requires_grad=True)
    layer = nn.Linear(784, 10)
    layer(x).sum().backward()
    assert seen == [((8, 784), (784, 10)), ((8, 10), (10, 784)), ((10, 8), (8, 784))]
    seen.clear()
    w = Tensor(np.ones((784, 10), np.float32), requires_grad=True)
    (x @ w).sum().backward()
    assert seen == [((8, 784), (784, 10)), ((8, 10), (10, 784)), ((784, 8), (8, 10))]


def _train(steps: int, rows: int = 4096) -> dict[str, np.ndarray]:
    """A few full-batch SGD steps of the tutorial's network on random images: products large enough to split."""
    rng = np.random.default_rng(0)
    images = rng.random((rows, 784), dtype=np.float32)
    labels = rng.integers(0, 10, rows)
    model = two_layer(0)
    optimizer = SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(Tensor(images)), labels).backward()
        optimizer.step()
    return model.state_dict()


def test_training_gives_the_same_weights_with_one_and_two_threads() -> None:
    assert len(parallel.blocks(4096, 784, 10)[1]) > 1 and len(parallel.blocks(10, 4096, 784)[1]) > 1
    with threads.limit(1):
        one = _train(5)
    with threads.limit(2):
        two = _train(5)
    assert one.keys() == two.keys()
    for name in one:
        assert np.array_equal(one[name], two[name]), name


def test_an_error_in_a_block_reaches_the_caller_and_the_pool_keeps_working() -> None:
    a, b = _operands(1024, 784, 256, np.float32, "cc")
    out = np.empty((1024, 256), np.float32)
    tasks = [(a[:512], b, out[:512]), (a[512:], b[:100], out[512:])]  # the second block's shapes don't align
    with pytest.raises(ValueError):
        parallel._pool.run(tasks, helpers=1)
    with threads.limit(2):
        assert np.array_equal(parallel.matmul(a, b), np.matmul(a, b))


def test_many_callers_at_once_each_get_their_own_product() -> None:
    operands = [_operands(1024, 784, 256, np.float32, "cc", seed) for seed in range(4)]
    expected = [np.matmul(a, b) for a, b in operands]
    results: dict[int, list[bool]] = {}

    def call(index: int) -> None:
        a, b = operands[index]
        results[index] = [np.array_equal(parallel.matmul(a, b), expected[index]) for _ in range(5)]

    with threads.limit(2):
        callers = [threading.Thread(target=call, args=(index,)) for index in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
    assert results == {index: [True] * 5 for index in range(4)}


def test_a_product_inside_a_worker_runs_there_without_waiting_for_the_pool() -> None:
    a, b = _operands(1024, 784, 256, np.float32, "cc")
    seen = []

    def nested() -> None:
        parallel._local.worker = True  # as inside one of the pool's threads
        seen.append(np.array_equal(parallel.matmul(a, b), np.matmul(a, b)))

    with threads.limit(2):
        worker = threading.Thread(target=nested)
        worker.start()
        worker.join(timeout=60)
    assert seen == [True]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_splits_products_with_fresh_workers() -> None:
    a, b = _operands(1024, 784, 256, np.float32, "cc")
    with threads.limit(2):
        expected = parallel.matmul(a, b)  # the parent's workers exist
        assert parallel._pool.workers
        pid = os.fork()
        if pid == 0:  # the child: only the forking thread survived
            status = 0 if np.array_equal(parallel.matmul(a, b), expected) else 1
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _affinities(workers: list[threading.Thread]) -> list[set[int]]:
    return [os.sched_getaffinity(worker.native_id) for worker in workers]


@pytest.mark.skipif(parallel._sched_getcpu is None, reason="needs Linux's sched_getcpu and sched_setaffinity")
def test_workers_are_kept_off_the_callers_core() -> None:
    # Linux may queue a woken worker on the caller's core (on a virtual machine, an idle core often looks busy):
    # then the two take turns on one core, and the product is no faster than on one thread.
    a, b = _operands(1024, 784, 256, np.float32, "cc")
    with threads.limit(2):
        parallel.matmul(a, b)
    usable = os.sched_getaffinity(0)
    core = parallel._pool.off_cpu
    if len(usable) == 1:  # nowhere else to go: the scheduler decides, as without the rule
        assert core is None and all(mask == usable for mask in _affinities(parallel._pool.workers))
        return
    assert core in usable
    assert parallel._pool.workers  # made by this test or an earlier one
    assert all(mask == usable - {core} for mask in _affinities(parallel._pool.workers))


@pytest.mark.skipif(parallel._sched_getcpu is None, reason="needs Linux's sched_getcpu and sched_setaffinity")
def test_on_a_single_usable_core_the_split_leaves_affinity_alone(tmp_path) -> None:
    script = tmp_path / "one_core.py"
    script.write_text(
        textwrap.dedent("""
            import os
            import numpy as np
            from tinygrad_np import parallel, threads
            core = min(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {core})
            rng = np.random.default_rng(0)
            a, b = rng.random((1024, 784), np.float32), rng.random((784, 256), np.float32)
            with threads.limit(1):
                one = parallel.matmul(a, b)
            with threads.limit(2):
                two = parallel.matmul(a, b)
            assert np.array_equal(one, two)
            assert parallel._pool.off_cpu is None, parallel._pool.off_cpu
            assert [os.sched_getaffinity(w.native_id) for w in parallel._pool.workers] == [{core}]
            print("ok")
        """),
        encoding="utf-8",
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_idle_workers_wait_on_their_queue_and_never_spin() -> None:
    a, b = _operands(1024, 784, 256, np.float32, "cc")
    with threads.limit(2):
        parallel.matmul(a, b)
    workers = parallel._pool.workers
    assert workers and all(worker.daemon for worker in workers)  # the interpreter exits without stopping them
    before = os.times()
    threading.Event().wait(0.3)
    used = sum(os.times()[:2]) - sum(before[:2])
    assert used < 0.2, f"{used:.2f} s of CPU in 0.3 s of idling"


@pytest.mark.parametrize(
    ("text", "cores", "taken"),
    [
        (b"0.10 0.20 0.30 1/345 999\n", 2, False),  # only the reader runs
        (b"2.00 2.00 2.00 2/345 999\n", 2, False),  # one other task: a core is free for a worker
        (b"3.00 3.00 3.00 3/345 999\n", 2, True),  # two others on two cores: the benchmark's load
        (b"3.00 3.00 3.00 3/345 999\n", 4, False),
        (b"40.0 40.0 40.0 65/900 999\n", 64, True),
        (b"garbage\n", 2, False),  # unreadable: split as on an idle machine
    ],
)
def test_cores_are_taken_when_every_core_has_a_runnable_task_besides_the_caller(
    tmp_path, monkeypatch, text, cores, taken
) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_bytes(text)
    descriptor = os.open(loadavg, os.O_RDONLY)
    try:
        monkeypatch.setattr(parallel, "_loadavg", descriptor)
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        assert parallel._read_cores_taken() is taken
    finally:
        os.close(descriptor)


def test_a_reading_of_the_load_stands_for_load_read_every_seconds(tmp_path, monkeypatch) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_bytes(b"0.10 0.20 0.30 1/345 999\n")
    descriptor = os.open(loadavg, os.O_RDONLY)
    now = [1000.0]
    try:
        monkeypatch.setattr(parallel, "_loadavg", descriptor)
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(parallel.time, "monotonic", lambda: now[0])
        monkeypatch.setattr(parallel, "_load_read", (-float("inf"), True))
        assert parallel._cores_taken() is False
        loadavg.write_bytes(b"3.00 3.00 3.00 3/345 999\n")  # busy from now on; the descriptor reads it afresh
        now[0] += parallel.LOAD_READ_EVERY / 2
        assert parallel._cores_taken() is False  # the last reading still stands
        now[0] += parallel.LOAD_READ_EVERY
        assert parallel._cores_taken() is True
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("taken", [False, True])
def test_on_a_busy_machine_only_large_products_wake_the_workers(monkeypatch, taken) -> None:
    helpers_asked = []
    run = parallel._pool.run

    def watched(tasks, helpers):
        helpers_asked.append(helpers)
        run(tasks, helpers)

    monkeypatch.setattr(parallel._pool, "run", watched)
    monkeypatch.setattr(parallel, "_cores_taken", lambda: taken)
    small = _operands(128, 784, 256, np.float32, "cc")  # 25.7M multiply-adds, two blocks
    large = _operands(1024, 784, 256, np.float32, "cc")  # 205M
    assert 128 * 784 * 256 < parallel.BUSY_SPLIT_WORK <= 1024 * 784 * 256
    with threads.limit(1):
        expected = [parallel.matmul(*small), parallel.matmul(*large)]
    helpers_asked.clear()
    with threads.limit(3):
        got = [parallel.matmul(*small), parallel.matmul(*large)]
    assert helpers_asked == [0 if taken else 2, 2]
    assert all(np.array_equal(one, many) for one, many in zip(expected, got, strict=True))


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs Linux's /proc/loadavg")
def test_busy_processes_on_every_core_are_seen() -> None:
    cores = os.cpu_count() or 1
    require(cores <= 16, f"{cores} cores: too many busy processes to start in a test")
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        deadline = time.monotonic() + 10
        while not parallel._cores_taken() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert parallel._cores_taken(), Path("/proc/loadavg").read_text()
    finally:
        for process in spinning:
            process.kill()
        for process in spinning:
            process.wait()


def test_while_blas_has_threads_of_its_own_products_go_to_it_whole(monkeypatch) -> None:
    # Outside threads.limit BLAS stays as the user set it; mixing its spinning threads with the workers was slower
    # than either alone.
    calls = []
    monkeypatch.setattr(parallel._pool, "run", lambda tasks, helpers: calls.append(len(tasks)))
    a, b = _operands(1024, 784, 256, np.float32, "cc")
    with threads.blas_limit(2):
        assert threads.blas_current() == 2
        np.testing.assert_allclose(parallel.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    assert calls == []
    with threads.blas_limit(1):  # BLAS on one thread, set by the user: the product is split
        parallel.matmul(a, b)
    assert calls == [len(parallel.blocks(1024, 784, 256)[1])]


def test_the_readme_gives_the_split_thresholds_the_code_uses() -> None:
    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())

    def millions(count: int) -> str:
        return f"{count / 1e6:g}M"

    first = Fraction(parallel.FIRST_OF_TWO).limit_denominator(64)
    for claim in [
        f"A product of at least {millions(2 * parallel.BLOCK_WORK)} multiply-adds "
        f"({millions(2 * parallel.FLOAT64_BLOCK_WORK)} in float64",
        f"at least {millions(parallel.BLOCK_WORK)} multiply-adds ({millions(parallel.FLOAT64_BLOCK_WORK)} in float64)",
        f"of at least {parallel.MIN_LINES} rows or columns",
        f"Of two blocks the caller's is {first.numerator}/{first.denominator} of the product",
        f"products under {millions(parallel.BUSY_SPLIT_WORK)} multiply-adds run on the caller alone",
    ]:
        assert claim in text, claim
