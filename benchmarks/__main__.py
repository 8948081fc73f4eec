"""`python -m benchmarks` (in a checkout) and `python -m tinygrad_np.benchmarks`: `tinygrad-np bench`."""

from tinygrad_np.benchmarks.cli import run

raise SystemExit(run())
