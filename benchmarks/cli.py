"""`tinygrad-np bench` (and `python -m benchmarks`): run the benchmarks, write JSON, Markdown and a PNG chart.

`COMMAND` plugs `bench` into the `tinygrad-np` command through the `tinygrad_np.commands` entry point that
pyproject.toml declares; the benchmark modules are imported only when it runs, so every other command starts
without them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinygrad_np.cli.command import Command
from tinygrad_np.errors import UserError

BENCHMARKS = ("full_batch", "minibatch", "overhead", "convergence", "scaling", "serve")


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
    settle: float  # seconds of idle between timed calls (see harness.interleaved)


# Quick: seconds, on the offline sample; checks that everything runs and writes its files, not speed.
QUICK = Mode(
    name="quick", train_rows=1024, full_batch_rounds=3, minibatch_rows=512, minibatch_rounds=2,
    overhead_links=20, overhead_chains=2, overhead_rounds=5,
    scaling_batch_sizes=(16, 64), scaling_hidden_sizes=(16, 64), scaling_rounds=2,
    convergence_epochs=0, settle=0.0,
)
# Full: all of MNIST, minutes (about 3 on 2 quiet cores).
FULL = Mode(
    name="full", train_rows=None, full_batch_rounds=11, minibatch_rows=None, minibatch_rounds=5,
    overhead_links=100, overhead_chains=20, overhead_rounds=30,
    scaling_batch_sizes=(32, 128, 512, 2048, 8192), scaling_hidden_sizes=(32, 128, 512, 2048), scaling_rounds=5,
    convergence_epochs=15, settle=0.2,
)


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


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks and write the results."""
    from tinygrad_np.benchmarks import convergence, full_batch, minibatch, overhead, report, scaling, serve
    from tinygrad_np.benchmarks.harness import environment, import_torch, progress
    from tinygrad_np.data import load_mnist

    mode = QUICK if args.quick else FULL
    selected = _selected(args.only)
    mnist = load_mnist(args.data_dir, offline=args.quick, verbose=False)
    x, y = mnist.arrays("train")
    x_test, y_test = mnist.arrays("test")
    x, y = x[: mode.train_rows], y[: mode.train_rows]
    torch, torch_note = import_torch()
    env = environment(torch, torch_note) | {"mode": mode.name, "data": f"{mnist.source}, {len(x):,} training images"}
    progress(f"{mode.name} mode on {env['data']}; PyTorch {torch_note}")

    sections: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if "full_batch" in selected:
        sections["full_batch"] = full_batch.run(x, y, torch, mode.full_batch_rounds, mode.settle)
    if "minibatch" in selected:
        rows = mode.minibatch_rows
        sections["minibatch"] = minibatch.run(
            x[:rows], y[:rows], torch, mode.minibatch_rounds, settle=mode.settle
        )
    if "overhead" in selected:
        sections["overhead"] = overhead.run(torch, mode.overhead_links, mode.overhead_rounds, mode.overhead_chains)
    if "convergence" in selected:
        if mode.convergence_epochs:
            sections |= convergence.run(x, y, x_test, y_test, torch, mode.convergence_epochs, mode.settle)
        else:
            skipped["convergence"] = "full mode only (time to 97% accuracy needs full MNIST and minutes)"
    if "scaling" in selected:
        sections["scaling"] = scaling.run(
            x, y, torch, mode.scaling_rounds, mode.scaling_batch_sizes, mode.scaling_hidden_sizes, settle=mode.settle
        )
    if "serve" in selected:
        sections["serve"] = serve.run(quick=mode is QUICK)
    if torch is None:
        skipped["pytorch"] = torch_note

    env["load_average_end"] = environment(torch, torch_note)["machine"]["load_average"]
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
