"""Threads: `limit`, --threads and $TINYGRAD_NP_THREADS, BLAS kept on one thread, and life without threadpoolctl.

The suite itself runs with one BLAS thread (conftest.py); these tests change the counts only inside `limit`
blocks and check that they come back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest
from conftest import require

from tinygrad_np import threads
from tinygrad_np.errors import UserError


@pytest.fixture
def controllable() -> None:
    require(threads.unavailable() is None, f"BLAS threads can't be controlled here: {threads.unavailable()}")


@pytest.fixture
def without_threadpoolctl(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # as if it were not installed
    threads._blas.cache_clear()
    yield
    threads._blas.cache_clear()


def test_limit_sets_the_count_and_blas_on_one_thread_inside_the_block_and_restores_both(controllable) -> None:
    before = threads.current()
    with threads.blas_limit(2):
        with threads.limit(3):
            assert (threads.current(), threads.blas_current()) == (3, 1)
            with threads.limit(1):
                assert (threads.current(), threads.blas_current()) == (1, 1)
            assert threads.current() == 3
        assert (threads.current(), threads.blas_current()) == (before, 2)
        with threads.limit(None):
            assert (threads.current(), threads.blas_current()) == (before, 2)


def test_blas_on_one_thread_is_known_inside_a_limit_without_asking_blas(controllable, monkeypatch) -> None:
    with threads.blas_limit(2):
        assert not threads.blas_on_one_thread()
        with threads.limit(3):
            monkeypatch.setattr(threads, "blas_current", lambda: pytest.fail("asked BLAS inside a limit"))
            assert threads.blas_on_one_thread()
            with threads.blas_limit(2):
                assert not threads.blas_on_one_thread()
            assert threads.blas_on_one_thread()
            monkeypatch.undo()
        assert not threads.blas_on_one_thread()
    with threads.blas_limit(1):
        assert threads.blas_on_one_thread()
    # Outside every limit, BLAS is asked: the user may have set its threads themselves.
    monkeypatch.setattr(threads, "blas_current", lambda: 1)
    assert threads.blas_on_one_thread()
    monkeypatch.setattr(threads, "blas_current", lambda: 4)
    assert not threads.blas_on_one_thread()


def test_limit_restores_the_counts_after_an_error(controllable) -> None:
    before, blas_before = threads.current(), threads.blas_current()
    with pytest.raises(KeyError), threads.limit(2):
        raise KeyError("boom")
    assert (threads.current(), threads.blas_current()) == (before, blas_before)


def test_the_default_is_the_usable_cores_unless_the_environment_says_otherwise(controllable, monkeypatch) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    assert threads.current() == threads.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(threads.ENV_VARIABLE, "3")
    assert threads.current() == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
@pytest.mark.parametrize("limit", [threads.limit, threads.blas_limit])
def test_limits_refuse_what_is_not_a_positive_whole_number(controllable, limit, bad) -> None:
    with pytest.raises(ValueError, match="threads must be a positive whole number"), limit(bad):
        pass


def test_without_threadpoolctl_nothing_is_controlled_and_the_reason_is_given(without_threadpoolctl) -> None:
    assert "threadpoolctl is not installed" in threads.unavailable()
    assert threads.blas_current() is None and threads.blas_default() is None
    assert threads.current() == 1  # products are not split: BLAS, left with its own threads, splits them itself
    with threads.limit(2):  # no control, no error: the core runs on NumPy alone
        assert threads.current() == 1
    choice = threads.choose(2)
    assert choice.threads == 1
    assert str(choice).startswith("threads not controlled: threadpoolctl is not installed")


@pytest.mark.parametrize(("text", "expected"), [("auto", None), (" AUTO ", None), ("1", 1), ("16", 16)])
def test_parse_takes_auto_or_a_positive_whole_number(text, expected) -> None:
    assert threads.parse(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "+2", "1.5", "two", "", "1e3", "²", "1_0"])
def test_parse_names_the_source_of_a_bad_value(text) -> None:
    with pytest.raises(threads.ThreadCountError, match=r"^the variable X must be a positive whole number or .auto."):
        threads.parse(text, "the variable X")
    assert issubclass(threads.ThreadCountError, UserError)  # the command line prints it in one line


def test_threads_come_from_the_option_then_the_environment_then_the_usable_cores(controllable, monkeypatch) -> None:
    monkeypatch.setenv(threads.ENV_VARIABLE, "3")
    assert threads.choose() == threads.Choice(3, "TINYGRAD_NP_THREADS=3")
    assert threads.choose(threads=2) == threads.Choice(2, "--threads")
    monkeypatch.setenv(threads.ENV_VARIABLE, "auto")
    assert threads.choose().threads == threads.usable_cores()
    monkeypatch.setenv(threads.ENV_VARIABLE, "many")
    with pytest.raises(ValueError, match=r"^the environment variable TINYGRAD_NP_THREADS must be .* got 'many'$"):
        threads.choose()


def test_the_choice_says_how_many_threads_and_why(controllable, monkeypatch) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    cores = threads.usable_cores()
    assert str(threads.choose()) == (
        f"threads: {cores} (the usable cores; --threads N or $TINYGRAD_NP_THREADS=N sets it; BLAS on one thread, "
        "large products split between them)")
    assert str(threads.choose(2)).startswith("threads: 2 (--threads; BLAS on one thread")


# ---- the command line ------------------------------------------------------------------------------------

TRAIN = ["train", "--offline", "--limit-train", "256", "--epochs", "1", "--no-progress"]


def _train(tmp_path, monkeypatch, capsys, *argv: str) -> tuple[int, str, int | None, dict]:
    """Run `tinygrad-np train`; its status, stderr, (threads, BLAS threads) while it trained, and its metrics."""
    from tinygrad_np.cli import main
    from tinygrad_np.train import Trainer

    seen: list[int | None] = []
    fit = Trainer.fit

    def watched_fit(self, *args, **kwargs):
        seen.append((threads.current(), threads.blas_current()))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", watched_fit)
    status = main([*TRAIN, "--output-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text()) if status == 0 else {}
    return status, err, seen[0] if seen else None, metrics


def test_train_uses_the_usable_cores_with_blas_on_one_thread_and_says_so(controllable, tmp_path, monkeypatch,
                                                                            capsys) -> None:
    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    cores = threads.usable_cores()
    with threads.blas_limit(2):  # as if BLAS had two threads of its own: train must bring it down to one
        status, err, during, metrics = _train(tmp_path, monkeypatch, capsys, "--batch-size", "64")
        assert threads.blas_current() == 2  # and give it back afterwards
    assert status == 0 and during == (cores, 1) and (metrics["threads"], metrics["blas_threads"]) == (cores, 1)
    assert f"; threads: {cores} (the usable cores; " in err


def test_train_threads_come_from_the_option_or_the_environment(controllable, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(threads.ENV_VARIABLE, "3")
    status, err, during, metrics = _train(tmp_path, monkeypatch, capsys)
    assert (status, during, metrics["threads"]) == (0, (3, 1), 3) and "threads: 3 (TINYGRAD_NP_THREADS=3;" in err
    status, err, during, metrics = _train(tmp_path, monkeypatch, capsys, "--threads", "2")
    assert (status, during, metrics["threads"]) == (0, (2, 1), 2) and "threads: 2 (--threads;" in err


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


def test_every_command_takes_threads_and_keeps_blas_on_one(controllable, monkeypatch) -> None:
    from tinygrad_np import cli
    from tinygrad_np.cli import inference

    monkeypatch.delenv(threads.ENV_VARIABLE, raising=False)
    seen = []
    eval_command = dataclasses.replace(
        inference.EVAL, run=lambda args: seen.append((threads.current(), threads.blas_current())) or 0)
    monkeypatch.setattr(cli, "COMMANDS", tuple(eval_command if c is inference.EVAL else c for c in cli.COMMANDS))
    with threads.blas_limit(2):
        assert cli.main(["eval", "--offline"]) == 0
        assert cli.main(["eval", "--offline", "--threads", "3"]) == 0
        assert seen == [(threads.usable_cores(), 1), (3, 1)] and threads.blas_current() == 2
    _, parsers = cli.build_parser(cli.all_commands().values())
    assert all("--threads" in parser.format_help() for parser in parsers.values())
