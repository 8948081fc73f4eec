"""`tinygrad-np bench` (and `python -m benchmarks`): run the benchmarks, write JSON, Markdown and a PNG chart.

`COMMAND` plugs `bench` into the `tinygrad-np` command through the `tinygrad_np.commands` entry point that
pyproject.toml declares; the benchmark modules are imported only when it runs, so every other command starts
without them. A benchmark is one entry in BENCHMARKS: a function of the data and the mode that returns its result
sections.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np import threads
from tinygrad_np.cli.command import Command
from tinygrad_np.errors import UserError


@dataclass(frozen=True)
class Mode:
    """How much work each benchmark does. `None` rows means the whole training set."""

    name: str
    train_rows: int | None
    full_batch_rounds: int
    minibatch_rows: int | None
    minibatch_rounds: int
    overhead_links: int
    overhead_chains: int  # chains per timed call
    overhead_rounds: int
    scaling_batch_sizes: tuple[int, ...]
    scaling_hidden_sizes: tuple[int, ...]
    scaling_rounds: int
    convergence_epochs: int  # 0: not run
    busy_rounds: int
    busy_share: float  # of the data that the mlp recipe's slice trains on (one epoch of it)
    busy_full_batch_iterations: int  # of the tutorial recipe
    busy_numerical_weights: int  # weights differenced in the `compare --numerical` workload
    busy_step_batch_sizes: tuple[int, ...]  # mini-batch steps either side of BUSY_SPLIT_WORK (80M)
    busy_step_rows: int
    conv_batch_size: int
    conv_rounds: int
    cnn_rows: int | None
    cnn_rounds: int
    busy_products: tuple[tuple[int, int, int], ...]  # float32 (rows, inner, columns): split and unsplit
    settle: float  # seconds of idle between timed calls (see harness.interleaved)
    blas_threads: int | None  # unless --threads or $TINYGRAD_NP_THREADS says otherwise; None: the libraries' own


# Quick: seconds, on the offline sample; checks that everything runs and writes its files, not speed. One thread,
# because that is fastest for its small workloads on a machine that is doing other work.
QUICK = Mode(
    name="quick", train_rows=1024, full_batch_rounds=3, minibatch_rows=512, minibatch_rounds=2,
    overhead_links=20, overhead_chains=2, overhead_rounds=5,
    scaling_batch_sizes=(16, 64), scaling_hidden_sizes=(16, 64), scaling_rounds=2,
    convergence_epochs=0, busy_rounds=1, busy_share=1.0, busy_full_batch_iterations=2, busy_numerical_weights=10,
    busy_step_batch_sizes=(256,), busy_step_rows=512, busy_products=((128, 784, 256),),
    conv_batch_size=16, conv_rounds=2, cnn_rows=256, cnn_rounds=1,
    settle=0.0, blas_threads=1,
)
# Full: all of MNIST, minutes (about 3 on 2 quiet cores, plus about 2 for the busy machine).
FULL = Mode(
    name="full", train_rows=None, full_batch_rounds=11, minibatch_rows=None, minibatch_rounds=5,
    overhead_links=100, overhead_chains=20, overhead_rounds=30,
    scaling_batch_sizes=(32, 128, 512, 2048, 8192), scaling_hidden_sizes=(32, 128, 512, 2048), scaling_rounds=5,
    convergence_epochs=15, busy_rounds=5, busy_share=0.5, busy_full_batch_iterations=25, busy_numerical_weights=250,
    busy_step_batch_sizes=(512, 2048), busy_step_rows=8192,
    conv_batch_size=128, conv_rounds=7, cnn_rows=None, cnn_rounds=3,
    # The recipes' products: tutorial's forward and weight gradient, mlp's first layer, a larger batch, a small one.
    busy_products=((60000, 784, 10), (10, 60000, 784), (128, 784, 256), (1024, 784, 256), (128, 256, 128)),
    settle=0.2, blas_threads=None,
)


class NotRunError(Exception):
    """A benchmark that does not run here; its message says why, in the report's "Not run" list."""


@dataclass(frozen=True)
class Data:
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    torch: ModuleType | None


def _full_batch(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import full_batch

    return {"full_batch": full_batch.run(data.x, data.y, data.torch, mode.full_batch_rounds, mode.settle)}


def _minibatch(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import minibatch

    x, y = data.x[: mode.minibatch_rows], data.y[: mode.minibatch_rows]
    return {"minibatch": minibatch.run(x, y, data.torch, mode.minibatch_rounds, settle=mode.settle)}


def _overhead(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import overhead

    return {"overhead": overhead.run(data.torch, mode.overhead_links, mode.overhead_rounds, mode.overhead_chains)}


def _convergence(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import convergence

    if not mode.convergence_epochs:
        raise NotRunError("full mode only (time to 97% accuracy needs full MNIST and minutes)")
    return convergence.run(data.x, data.y, data.x_test, data.y_test, data.torch, mode.convergence_epochs, mode.settle)


def _scaling(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import scaling

    return {"scaling": scaling.run(data.x, data.y, data.torch, mode.scaling_rounds, mode.scaling_batch_sizes,
                                   mode.scaling_hidden_sizes, settle=mode.settle)}


def _serve(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import serve

    return {"serve": serve.run(quick=mode is QUICK)}


def _cnn(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import cnn

    x, y = data.x[: mode.cnn_rows], data.y[: mode.cnn_rows]
    return cnn.run(x, y, data.torch, mode.conv_batch_size, mode.conv_rounds, mode.cnn_rounds, mode.settle)


def _busy(data: Data, mode: Mode) -> dict[str, Any]:
    from tinygrad_np.benchmarks import busy
    why_not = threads.unavailable()
    if why_not is not None:
        raise NotRunError(why_not)
    workloads = [
        busy.recipe_workload("two_layer", data.x, data.y, data.x_test, data.y_test, 1, 1.0),
        busy.recipe_workload("mlp", data.x, data.y, data.x_test, data.y_test, 1, mode.busy_share),
        busy.recipe_workload("tutorial", data.x, data.y, data.x_test, data.y_test,
                             mode.busy_full_batch_iterations, 1.0),
        busy.numerical_gradient_workload(data.x[:64], data.y[:64], mode.busy_numerical_weights),
        *[busy.step_workload(data.x[: mode.busy_step_rows], data.y[: mode.busy_step_rows], batch_size)
          for batch_size in mode.busy_step_batch_sizes],
        *[busy.product_workload(*shape) for shape in mode.busy_products],
    ]
    return {"busy": busy.run(workloads, mode.busy_rounds, busy=threads.usable_cores(), settle=mode.settle)}


# name -> the function that runs it; in this order. A new benchmark is one entry here.
BENCHMARKS: dict[str, Callable[[Data, Mode], dict[str, Any]]] = {
    "full_batch": _full_batch,
    "minibatch": _minibatch,
    "overhead": _overhead,
    "convergence": _convergence,
    "scaling": _scaling,
    "serve": _serve,
    "cnn": _cnn,
    "busy": _busy,  # last: it starts busy processes and varies the thread count itself
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="seconds instead of minutes: a slice of the data, few rounds, no time-to-accuracy run")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST files (default: $TINYGRAD_NP_MNIST_DIR, else kagglehub, else the "
                             "bundled offline sample; --quick takes the sample unless --data-dir names a folder)")
    parser.add_argument("--out", default="benchmark-results", type=Path,
                        help="folder for results.json, results.md and scaling.png (default: %(default)s)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)")


def _selected(only: str) -> list[str]:
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown or not chosen:
        raise UserError(f"--only takes names from {', '.join(BENCHMARKS)}; got {only!r}")
    return chosen


@contextlib.contextmanager
def _threads(count: int | None, torch: ModuleType | None) -> Iterator[None]:
    """tinygrad_np and PyTorch on `count` threads inside the block, BLAS on one (tinygrad_np's convention, so the
    hand-written NumPy runs on one thread too); None: every library's own counts, even inside another limit."""
    with threads.limit(count) if count is not None else threads.blas_limit(threads.blas_default()):
        if count is None or torch is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks and write the results."""
    from tinygrad_np.benchmarks import report
    from tinygrad_np.benchmarks.harness import environment, import_torch, progress
    from tinygrad_np.data import load_mnist
    from tinygrad_np.files import check_output_dir, check_output_file

    mode = QUICK if args.quick else FULL
    selected = _selected(args.only)
    # Before the benchmarks, which take up to an hour: a folder they can't write to would lose every result.
    check_output_dir(args.out, "--out")
    for name in ("results.json", "results.md", "scaling.png"):
        check_output_file(args.out / name, f"--out ({name})")
    # --threads or $TINYGRAD_NP_THREADS for every benchmark but busy, which varies the threads itself.
    asked = threads.asked_for(args.threads)
    thread_count = asked.threads if asked is not None else mode.blas_threads
    mnist = load_mnist(args.data_dir, offline=args.quick, verbose=False)
    x, y = mnist.arrays("train")
    torch, torch_note = import_torch()
    data = Data(x[: mode.train_rows], y[: mode.train_rows], *mnist.arrays("test"), torch)

    sections: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with _threads(thread_count, torch):
        data_text = f"{mnist.source}, {len(data.x):,} training images"
        env = environment(torch, torch_note) | {"mode": mode.name, "data": data_text, "threads": threads.current()}
        blas = threads.unavailable() or f"threads: {threads.current()}, BLAS threads: {threads.blas_current()}"
        progress(f"{mode.name} mode on {env['data']}; PyTorch {torch_note}; {blas}")
        for name in selected:
            try:
                sections |= BENCHMARKS[name](data, mode)
            except NotRunError as why:
                skipped[name] = str(why)
    if torch is None:
        skipped["pytorch"] = torch_note

    env["load_average_end"] = environment(torch, torch_note)["machine"]["load_average"]
    # The busy section's own spinning processes raise the load that the end reading sees; the report discounts them.
    env["own_busy_processes"] = sections.get("busy", {}).get("busy_processes", 0)
    results = {
        "environment": env,
        "mode": asdict(mode),
        # Quick mode's few unsettled rounds on a data slice check that everything runs, not how fast.
        "targets": report.check_targets(sections) if mode is FULL else [],
        "sections": sections,
        "skipped": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    written = [
        report.write_json(results, args.out / "results.json"),
        report.write_markdown(results, args.out / "results.md"),
    ]
    if "scaling" in sections:
        try:
            written.append(report.scaling_chart(sections["scaling"], args.out / "scaling.png", env["machine"]["cpu"]))
        except ImportError as err:
            progress(f"no chart: matplotlib is not importable ({err}); pip install 'tinygrad-np[plot]'")
    for target in results["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        measured = "n/a" if target["measured"] is None else f"{target['measured']:.2f}x"
        print(f"{target['target']}: {measured} (limit {target['limit']:.2f}x) {verdict}")
    print("wrote " + ", ".join(os.fspath(path) for path in written))
    return 0


COMMAND = Command(
    "bench", "benchmarks against hand-written NumPy backprop and PyTorch", add_arguments, main,
    description=__doc__.splitlines()[0],
)


def run(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks [options]`: the same as `tinygrad-np bench [options]`."""
    from tinygrad_np.cli import main as tinygrad_np_main

    return tinygrad_np_main(["bench", *(sys.argv[1:] if argv is None else argv)])
