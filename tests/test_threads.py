"""BLAS threads: the policy, `limit`, --threads and $TINYGRAD_NP_THREADS, and life without threadpoolctl.

The suite itself runs with one BLAS thread (conftest.py); these tests change the count only inside `limit`
blocks and check that it comes back.
"""

from __future__ import annotations

import dataclasses
import json
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
    # `train --recipe tutorial`: the full batch, on BLAS's own count
    assert threads.choose(two_layer(0), 60_000).threads == threads.blas_default()


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


# ---- the command line ------------------------------------------------------------------------------------

TRAIN = ["train", "--offline", "--limit-train", "256", "--epochs", "1", "--no-progress"]


def _train(tmp_path, monkeypatch, capsys, *argv: str) -> tuple[int, str, int | None, dict]:
    """Run `tinygrad-np train`; its status, stderr, BLAS's thread count while it trained, and its metrics."""
    from tinygrad_np.cli import main
    from tinygrad_np.train import Trainer

    seen: list[int | None] = []
    fit = Trainer.fit

    def watched_fit(self, *args, **kwargs):
        seen.append(threads.current())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", watched_fit)
    status = main([*TRAIN, "--output-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text()) if status == 0 else {}
    return status, err, seen[0] if seen else None, metrics


def test_train_follows_the_policy_and_says_so(controllable, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    with threads.limit(2):  # as if BLAS had two threads of its own: the policy must bring it down to one
        status, err, during, metrics = _train(tmp_path, monkeypatch, capsys, "--batch-size", "64")
        assert threads.current() == 2  # and give it back afterwards
    assert status == 0 and during == 1 and metrics["blas_threads"] == 1
    assert "; BLAS threads: 1 (the largest product has 501,760 multiply-adds, under " in err


def test_train_with_large_products_gets_blas_own_count(controllable, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    monkeypatch.setattr(threads, "blas_default", lambda: 2)  # the suite pins BLAS to one thread of its own
    argv = ("--model", "mlp", "--hidden-sizes", "256", "--batch-size", "full", "--limit-train", "1024")
    status, err, during, metrics = _train(tmp_path, monkeypatch, capsys, *argv)
    assert (status, during, metrics["blas_threads"]) == (0, 2, 2)  # out of the one thread other commands get
    assert "BLAS threads: 2 (the largest product has 205,520,896 multiply-adds, at least " in err


def test_train_threads_come_from_the_option_or_the_environment(controllable, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(threads.ENV_VARIABLE, "3")
    status, err, during, metrics = _train(tmp_path, monkeypatch, capsys)
    assert (status, during, metrics["blas_threads"]) == (0, 3, 3) and "BLAS threads: 3 (TINYGRAD_NP_THREADS=3)" in err
    status, err, during, metrics = _train(tmp_path, monkeypatch, capsys, "--threads", "2")
    assert (status, during, metrics["blas_threads"]) == (0, 2, 2) and "BLAS threads: 2 (--threads)" in err


def test_bad_thread_counts_cost_one_line(monkeypatch, capsys) -> None:
    from tinygrad_np.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([*TRAIN, "--threads", "0"])
    assert exit_.value.code == 2
    assert "argument --threads: must be a positive whole number or 'auto', got '0'" in capsys.readouterr().err
    monkeypatch.setenv(threads.ENV_VARIABLE, "lots")
    assert main(["graph", "--format", "dot"]) == 2
    err = capsys.readouterr().err
    assert err == ("tinygrad-np graph: error: the environment variable TINYGRAD_NP_THREADS must be a positive whole "
                   "number or 'auto', got 'lots'\n")


def test_every_command_takes_threads_and_runs_on_one_thread_unless_asked(controllable, monkeypatch) -> None:
    from tinygrad_np import cli
    from tinygrad_np.cli import inference

    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    seen = []
    eval_command = dataclasses.replace(inference.EVAL, run=lambda args: seen.append(threads.current()) or 0)
    monkeypatch.setattr(cli, "COMMANDS", tuple(eval_command if c is inference.EVAL else c for c in cli.COMMANDS))
    with threads.limit(2):
        assert cli.main(["eval", "--offline"]) == 0
        assert cli.main(["eval", "--offline", "--threads", "3"]) == 0
        assert seen == [1, 3] and threads.current() == 2
    _, parsers = cli.build_parser(cli.all_commands().values())
    assert all("--threads" in parser.format_help() for parser in parsers.values())
