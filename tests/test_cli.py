"""One front door and one error policy: every subcommand is a Command; every error a user can fix is a
UserError, which the CLI reports in one line, and everything else, a bug, keeps its traceback."""

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import tinygrad_np
from tinygrad_np.cli import all_commands, main
from tinygrad_np.errors import MissingDependencyError, UserError, import_extra

# Exceptions in the package that are not the user's to fix, and why.
NOT_USER_ERRORS = {
    "GradcheckError": "an assertion for tests: gradients that disagree are a bug",
    "TrainingInterrupted": "control flow: Ctrl-C asked training to stop at a batch boundary",
    "RequestError": "the demo server's 4xx answers to a browser, never raised to the command line",
    "ArchiveError": "inside npz.py: its callers turn it into ModelFileError or CheckpointError, naming the file",
}


def package_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(tinygrad_np.__path__, "tinygrad_np."):
        if info.name.endswith("__main__"):  # running it is the command line
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                found[name] = value
    return found


def test_every_error_class_in_the_package_is_a_user_error_or_says_why_not():
    exceptions = package_exceptions()
    assert {"SpecError", "ModelFileError", "CheckpointError", "MNISTFormatError", "MNISTNotFoundError"} <= set(
        exceptions
    )
    for name, cls in exceptions.items():
        assert issubclass(cls, UserError) != (name in NOT_USER_ERRORS), name


def test_user_errors_keep_the_builtin_type_library_callers_catch():
    from tinygrad_np.checkpoint import CheckpointError
    from tinygrad_np.data import MNISTNotFoundError
    from tinygrad_np.serialization import ModelFileError
    from tinygrad_np.spec import SpecError

    assert issubclass(SpecError, ValueError) and issubclass(ModelFileError, ValueError)
    assert issubclass(CheckpointError, ValueError) and issubclass(MNISTNotFoundError, FileNotFoundError)
    assert issubclass(MissingDependencyError, ImportError)


def test_a_missing_extra_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(MissingDependencyError, match=r'ONNX export needs onnx: pip install "tinygrad-np\[onnx\]"'):
        import_extra("onnx", "onnx", "ONNX export")


def test_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    """A KeyError from a bug is not reported as a one-line user error with exit 2: it propagates."""
    import tinygrad_np.cli.common as common

    def broken(path):
        raise KeyError("a bug")

    monkeypatch.setattr(common, "load_model_file", broken)
    monkeypatch.setattr("tinygrad_np.cli.inference.load_model_file", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["eval", "--offline", "--model-file", str(tmp_path / "model.npz")])
    assert "error:" not in capsys.readouterr().err


def test_a_user_error_is_one_line_and_exit_2(capsys, tmp_path):
    assert main(["eval", "--offline", "--model-file", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinygrad-np eval: error: model file ") and err.count("\n") == 1


def test_every_subcommand_has_its_own_help(capsys):
    commands = all_commands()
    assert set(commands) == {"train", "eval", "predict", "serve", "compare", "explain", "export", "graph", "bench"}
    for name in commands:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0 and f"usage: tinygrad-np {name}" in capsys.readouterr().out


def test_bench_is_found_through_its_entry_point_without_loading_the_benchmarks():
    from tinygrad_np.benchmarks.cli import COMMAND

    assert all_commands()["bench"] is COMMAND
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from tinygrad_np.cli import all_commands; all_commands(); "
                               "print(sorted(m for m in sys.modules if m.startswith('tinygrad_np.benchmarks.')))"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert loaded.strip() == "['tinygrad_np.benchmarks.cli']"
