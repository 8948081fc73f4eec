"""Shared test configuration: Hypothesis profiles and the data every slow test reads."""

import os

# One BLAS thread: the suite's matrices are small, and on a shared 2-core machine competing BLAS threads made
# training tests up to 25x slower. Set before NumPy loads its BLAS; benchmarks choose their own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# A quick default for the edit-test loop; CI runs more examples; `thorough` is for hunting bugs.
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, why: str) -> None:
    """Skip locally when something optional is missing, but fail on CI, where everything is installed."""
    if condition:
        return
    if ON_CI:
        pytest.fail(f"required on CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The full MNIST IDX files (../shared/data/mnist, or TINYGRAD_NP_MNIST_DIR)."""
    root = Path(__file__).resolve().parents[1]
    path = Path(os.environ.get("TINYGRAD_NP_MNIST_DIR", root.parent / "shared" / "data" / "mnist"))
    require(path.is_dir(), f"full MNIST not found at {path}; set TINYGRAD_NP_MNIST_DIR")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
