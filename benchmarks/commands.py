"""Whole commands, idle and beside one busy process per core: the seconds a user waits for.

`python -m tinygrad_np.benchmarks.commands --data-dir DIR` runs each command as a child process in two settings:
"default", tinygrad_np's own thread policy, and "BLAS's own", with threadpoolctl hidden from the child so that
tinygrad_np leaves BLAS on its own threads, as it did before it managed them. Each runs on the machine as it is
("idle") and beside one process per usable core spinning `while True: pass` ("loaded"), which this module starts
and stops; a round runs everything idle, then everything loaded. It prints a Markdown table of the lowest wall
time of each cell and writes every sample as JSON. `--quick` runs two short commands on the offline sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinygrad_np.benchmarks.busy import busy_processes
from tinygrad_np.files import write_atomic

# label -> the arguments after `tinygrad-np`; "{data}" is replaced by --data-dir.
FULL_COMMANDS = {
    "train --recipe tutorial": ["train", "--recipe", "tutorial", "--data-dir", "{data}"],
    "train (two_layer)": ["train", "--data-dir", "{data}"],
    "train --recipe mlp": ["train", "--recipe", "mlp", "--data-dir", "{data}"],
    "compare --hidden-sizes 128 64 --numerical": ["compare", "--data-dir", "{data}", "--hidden-sizes", "128", "64",
                                                  "--numerical"],
}
QUICK_COMMANDS = {
    "train --epochs 1 --offline": ["train", "--epochs", "1", "--offline"],
    "compare --offline": ["compare", "--offline"],
}
SETTINGS = ("default", "BLAS's own")
LOADS = ("idle", "loaded")
NOT_CONTROLLED = "threads not controlled"  # what `train` prints when it can't control BLAS's threads


def _environment(setting: str, shim: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TINYGRAD_NP_THREADS", None)  # the default policy: the usable cores
    if setting == "BLAS's own":
        # A module named threadpoolctl that fails to import, first on the path: tinygrad_np then can't control BLAS.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    return env


def _run_once(arguments: list[str], env: dict[str, str], workdir: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tinygrad_np", *arguments], capture_output=True, text=True,
                          env=env, cwd=workdir)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"tinygrad-np {' '.join(arguments)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def run(commands: dict[str, list[str]], data_dir: str | None, rounds: int, busy: int) -> dict[str, Any]:
    """{label: {setting: {load: [seconds, ...]}}}, plus each child's output from the first round."""
    samples: dict[str, Any] = {label: {s: {load: [] for load in LOADS} for s in SETTINGS} for label in commands}
    outputs: dict[str, dict[str, str]] = {label: {} for label in commands}
    with tempfile.TemporaryDirectory(prefix="tinygrad_np-commands-") as scratch:
        shim = Path(scratch) / "shim"
        shim.mkdir()
        (shim / "threadpoolctl.py").write_text('raise ImportError("hidden by benchmarks/commands.py")\n')
        workdir = Path(scratch) / "work"  # the commands write runs/ here
        workdir.mkdir()
        for round_index in range(rounds):
            for load in LOADS:
                with busy_processes(busy if load == "loaded" else 0):
                    for label, arguments in commands.items():
                        filled = [data_dir if part == "{data}" else part for part in arguments]
                        for setting in SETTINGS:
                            seconds, output = _run_once(filled, _environment(setting, shim), workdir)
                            samples[label][setting][load].append(seconds)
                            if round_index == 0 and load == "idle":
                                outputs[label][setting] = output
                time.sleep(1.0)  # the busy processes' cores go quiet before the next block
    return {"samples": samples, "outputs": outputs, "busy": busy, "rounds": rounds}


def markdown(results: dict[str, Any]) -> str:
    """The table: the lowest wall time of each cell, and loaded / idle for each setting."""
    lines = [
        "| command | default, idle | default, loaded | loaded / idle | BLAS's own, idle | BLAS's own, loaded "
        "| loaded / idle |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, settings in results["samples"].items():
        cells = []
        for setting in SETTINGS:
            idle, loaded = min(settings[setting]["idle"]), min(settings[setting]["loaded"])
            cells += [f"{idle:.1f}", f"{loaded:.1f}", f"{loaded / idle:.2f}x"]
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinygrad_np.benchmarks.commands", description=__doc__)
    parser.add_argument("--data-dir", help="folder with the MNIST files (needed unless --quick)")
    parser.add_argument("--quick", action="store_true", help="two short commands on the offline sample, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default: 2, or 1 with --quick)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="folder for commands.json")
    args = parser.parse_args(argv)
    if not args.quick and args.data_dir is None:
        parser.error("--data-dir is required unless --quick: the commands train on full MNIST")
    rounds = args.rounds or (1 if args.quick else 2)
    busy = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    commands = QUICK_COMMANDS if args.quick else FULL_COMMANDS
    results = run(commands, args.data_dir, rounds, busy)
    results["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1).encode()
    write_atomic(args.out / "commands.json", lambda file: file.write(text))
    print(markdown(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
