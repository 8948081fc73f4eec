"""BLAS threads: the policy, `limit`, --threads and $TINYGRAD_NP_THREADS, and life without threadpoolctl.

The suite itself runs with one BLAS thread (conftest.py); these tests change the count only inside `limit`
blocks and check that it comes back.
"""

from __future__ import annotations

import sys

import pytest
from conftest import require

from tinygrad_np import nn, threads
from tinygrad_np.errors import UserError
from tinygrad_np.models.mlp import mlp
from tinygrad_np.models.two_layer import two_layer


@pytest.fixture
def controllable() -> None:
    require(threads.unavailable() is None, f"BLAS threads can't be controlled here: {threads.unavailable()}")


@pytest.fixture
def without_threadpoolctl(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # as if it were not installed
    threads._blas.cache_clear()
    yield
    threads._blas.cache_clear()


def test_limit_sets_the_count_inside_the_block_and_restores_it(controllable) -> None:
    before = threads.current()
    with threads.limit(3):
        assert threads.current() == 3
        with threads.limit(1):
            assert threads.current() == 1
        assert threads.current() == 3
    assert threads.current() == before
    with threads.limit(None):
        assert threads.current() == before


def test_limit_restores_the_count_after_an_error(controllable) -> None:
    before = threads.current()
    with pytest.raises(KeyError), threads.limit(2):
        raise KeyError("boom")
    assert threads.current() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_limit_refuses_what_is_not_a_positive_whole_number(controllable, bad) -> None:
    with pytest.raises(ValueError, match="threads must be a positive whole number"), threads.limit(bad):
        pass


def test_without_threadpoolctl_nothing_is_controlled_and_the_reason_is_given(without_threadpoolctl) -> None:
    assert "threadpoolctl is not installed" in threads.unavailable()
    assert threads.current() is None and threads.blas_default() is None
    with threads.limit(1):  # no control, no error: the core runs on NumPy alone
        pass
    choice = threads.choose(two_layer(0), 128)
    assert choice.threads == 1
    assert str(choice).startswith("BLAS threads not controlled: threadpoolctl is not installed")


@pytest.mark.parametrize(("text", "expected"), [("auto", None), (" AUTO ", None), ("1", 1), ("16", 16)])
def test_parse_takes_auto_or_a_positive_whole_number(text, expected) -> None:
    assert threads.parse(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "+2", "1.5", "two", "", "1e3", "²", "1_0"])
def test_parse_names_the_source_of_a_bad_value(text) -> None:
    with pytest.raises(threads.ThreadCountError, match=r"^the variable X must be a positive whole number or .auto."):
        threads.parse(text, "the variable X")
    assert issubclass(threads.ThreadCountError, UserError)  # the command line prints it in one line


def test_the_policy_gives_one_thread_below_the_measured_size_only() -> None:
    assert threads.policy(0) == 1
    assert threads.policy(threads.ONE_THREAD_BELOW - 1) == 1
    assert threads.policy(threads.ONE_THREAD_BELOW) is None  # BLAS's own count


def test_largest_product_is_the_widest_layer_times_the_rows() -> None:
    assert threads.largest_product(two_layer(0), 128) == 128 * 784 * 10
    assert threads.largest_product(mlp(784, (256, 128), 10, dropout=0.1), 60_000) == 60_000 * 784 * 256
    assert threads.largest_product(nn.Sequential(nn.ReLU()), 64) == 0


def test_the_recipes_get_the_threads_the_policy_promises(monkeypatch) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    assert threads.choose(two_layer(0), 128).threads == 1  # `train` (two_layer): mini-batches of 128
    assert threads.choose(mlp(784, (256, 128), 10), 128).threads == 1  # `train --recipe mlp`
    assert threads.choose(two_layer(0), 60_000).threads is None  # `train --recipe tutorial`: the full batch


def test_threads_come_from_the_option_then_the_environment_then_the_policy(monkeypatch) -> None:
    model = two_layer(0)
    monkeypatch.setenv(threads.ENV_VARIABLE, "3")
    assert threads.choose(model, 128) == threads.Choice(3, "TINYGRAD_NP_THREADS=3")
    assert threads.choose(model, 128, threads=2) == threads.Choice(2, "--threads")
    monkeypatch.setenv(threads.ENV_VARIABLE, "auto")
    assert threads.choose(model, 128).threads == 1
    monkeypatch.setenv(threads.ENV_VARIABLE, "many")
    with pytest.raises(ValueError, match=r"^the environment variable TINYGRAD_NP_THREADS must be .* got 'many'$"):
        threads.choose(model, 128)


def test_the_choice_says_how_many_threads_and_why(controllable, monkeypatch) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    text = str(threads.choose(two_layer(0), 128))
    assert text.startswith("BLAS threads: 1 (the largest product has 1,003,520 multiply-adds, under ")
    assert "--threads N or $TINYGRAD_NP_THREADS=N sets it" in text
    large = str(threads.choose(two_layer(0), 60_000))
    assert large.startswith(f"BLAS threads: {threads.blas_default()} (the largest product has 470,400,000")
    assert str(threads.choose(two_layer(0), 128, threads=2)) == "BLAS threads: 2 (--threads)"
