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
    "AxesTypeError": "a wrong argument in Python code (axes that are not integers), like the ops' ValueErrors for "
                     "shapes; no command passes axes",
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


# ---- extras: each command that needs one checks it at start-up and names the exact pip install ---------------


def hide(monkeypatch, *modules: str) -> None:
    """As if these modules were not installed: `import` raises ImportError."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture
def model_file(tmp_path):
    from tinygrad_np.serialization import save_model
    from tinygrad_np.spec import TUTORIAL_SPEC, model_from_spec

    return save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "model.npz")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def test_train_plots_without_matplotlib_is_refused_before_any_data_is_read(monkeypatch, capsys, tmp_path):
    """Issue 15: `train --plots DIR` without matplotlib trained the whole run, then failed."""
    hide(monkeypatch, "matplotlib", "matplotlib.figure")
    assert main(["train", "--offline", "--output-dir", str(tmp_path), "--plots", str(tmp_path / "plots")]) == 2
    line = one_error_line(capsys)  # the only line: not even "MNIST from ..." came before it
    assert line.startswith('tinygrad-np train: error: --plots needs matplotlib: pip install "tinygrad-np[plot]" (')
    assert not any(tmp_path.iterdir())


def test_train_without_plots_does_not_need_matplotlib(monkeypatch, capsys, tmp_path):
    hide(monkeypatch, "matplotlib", "matplotlib.figure")
    argv = ["train", "--offline", "--epochs", "1", "--limit-train", "200", "--output-dir", str(tmp_path)]
    assert main(argv) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("hidden", "options", "saying"),
    [
        (("onnx",), [], 'export needs onnx: pip install "tinygrad-np[onnx]"'),
        (("onnxruntime",), ["--verify"], 'export --verify needs onnxruntime: pip install "tinygrad-np[onnx]"'),
    ],
)
def test_export_without_onnx_names_the_pip_install_before_writing(monkeypatch, capsys, model_file, hidden, options,
                                                                   saying):
    hide(monkeypatch, *hidden)
    assert main(["export", "--model-file", str(model_file), *options]) == 2
    assert one_error_line(capsys).startswith(f"tinygrad-np export: error: {saying} (")
    assert not model_file.with_suffix(".onnx").exists()


def test_predict_image_without_pillow_names_the_pip_install(monkeypatch, capsys, model_file, tmp_path):
    hide(monkeypatch, "PIL", "PIL.Image")
    picture = tmp_path / "digit.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["predict", "--model-file", str(model_file), "--image", str(picture)]) == 2
    line = one_error_line(capsys)
    assert line.startswith('tinygrad-np predict: error: predict --image needs PIL: pip install "tinygrad-np[image]" (')


def test_predict_by_index_does_not_need_pillow(monkeypatch, capsys, model_file):
    hide(monkeypatch, "PIL", "PIL.Image")
    assert main(["predict", "--offline", "--model-file", str(model_file), "--index", "0"]) == 0
    assert "predicted" in capsys.readouterr().out


def test_graph_svg_without_graphviz_draws_with_the_builtin_layout(monkeypatch, capsys, tmp_path):
    """Graphviz is no pip package, so no extra can install it: without its `dot`, our own layout draws the SVG."""
    monkeypatch.setattr("shutil.which", lambda name: None)  # no program is on the PATH
    assert main(["graph", "-o", str(tmp_path / "loss.svg")]) == 0
    err = capsys.readouterr().err
    assert "Graphviz's dot is not installed; drawing the SVG with the built-in layout" in err
    svg = (tmp_path / "loss.svg").read_text()
    assert svg.startswith("<svg") and "graphviz" not in svg.lower()


def test_eval_json_gives_the_data_source(capsys, model_file):
    import json

    assert main(["eval", "--offline", "--json", "--model-file", str(model_file)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data_source_kind"] == "offline" and result["data_source"].startswith("offline sample")
    assert result["test_size"] == 1000 and result["model_file"] == str(model_file)
