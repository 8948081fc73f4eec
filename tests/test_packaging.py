"""The library stands alone: one top-level import name, and dependencies that point from the tools to it.

Read from the source, so it stays true as code moves: models/ and benchmarks/ install as tinygrad_np.models and
tinygrad_np.benchmarks, the library (everything else under tinygrad_np) never imports them, and the only import
cycle is the engine's own tensor <-> ops. A slow test builds the wheel and runs it from a fresh environment.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Each source folder and the package it installs as.
FOLDERS = {"tinygrad_np": "tinygrad_np", "models": "tinygrad_np.models", "benchmarks": "tinygrad_np.benchmarks"}
TOOLS = ("tinygrad_np.models", "tinygrad_np.benchmarks")
ALLOWED_CYCLES = [{"tinygrad_np.tensor", "tinygrad_np.ops", "tinygrad_np.inplace"}]  # the engine: Functions and Tensor


def source_modules() -> dict[str, Path]:
    """Every module of the distribution by its installed name."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((package, *parts[: -1 if parts[-1] == "__init__" else None]))
            modules[name] = path
    return modules


MODULES = source_modules()


def layer(module: str) -> str:
    return next((tool for tool in TOOLS if module == tool or module.startswith(tool + ".")), "library")


def imported_names(path: Path, module: str, runtime_only: bool = False) -> set[str]:
    """Every module name the file imports, at the top or inside a function, absolute or relative; with
    `runtime_only`, not those under `if TYPE_CHECKING:`, which type checkers read and Python never runs."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if runtime_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports the module a.b if there is one, else the name b from a.
            names |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            names |= {arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and type(arg.value) is str}
    return names


def import_graph(runtime_only: bool = False) -> dict[str, set[str]]:
    """module -> the modules of the distribution it imports (the most specific one a name resolves to)."""
    graph = {}
    for module, path in MODULES.items():
        targets = set()
        for name in imported_names(path, module, runtime_only):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_library_never_imports_the_tools_above_it():
    arrows = [(a, b) for a, targets in import_graph().items() for b in targets if layer(b) != layer(a)]
    assert any(layer(a) == "tinygrad_np.benchmarks" for a, _ in arrows)  # it does see arrows between layers
    assert [(a, b) for a, b in arrows if layer(a) == "library"] == []
    assert [(a, b) for a, b in arrows if layer(a) == "tinygrad_np.models" and layer(b) != "library"] == []


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [{"a", "b", "c"}]


def test_no_import_cycle_but_the_engines_own():
    """Imports that only type checkers see (graph_svg's of graph) make no cycle; every other import counts."""
    assert [cycle for cycle in cycles(import_graph(runtime_only=True)) if cycle not in ALLOWED_CYCLES] == []


def test_every_file_imports_the_tools_by_their_one_installed_name():
    """`models` and `benchmarks` are folders, not import names: a module imported under two names is two modules."""
    for module, path in MODULES.items():
        top_level = {name.partition(".")[0] for name in imported_names(path, module)}
        assert not top_level & {"models", "benchmarks"}, module
    for path in (REPO / "tests").glob("*.py"):
        assert not {name.partition(".")[0] for name in imported_names(path, "tests")} & {"models", "benchmarks"}


def test_pyproject_installs_every_package_of_the_tree():
    settings = PYPROJECT["tool"]["setuptools"]
    assert settings["package-dir"] == {package: folder for folder, package in FOLDERS.items() if folder != package}
    packages = {module for module, path in MODULES.items() if path.name == "__init__.py"}
    assert sorted(settings["packages"]) == sorted(packages)


def test_entry_points_name_modules_that_exist():
    for group in PYPROJECT["project"]["entry-points"].values():
        for value in group.values():
            assert value.partition(":")[0] in MODULES, value


# ---- the wheel, installed in a fresh environment, run outside the checkout ---------------------------------


@pytest.mark.slow
def test_the_wheel_adds_one_top_level_name_and_runs_compare_and_bench_outside_the_checkout(tmp_path):
    # Built from a copy of the tree: setuptools leaves build/ and egg-info behind in the folder it builds.
    source = tmp_path / "source"
    leftovers = shutil.ignore_patterns(".*", "build", "dist", "runs", "*.egg-info", "__pycache__")
    shutil.copytree(REPO, source, ignore=leftovers)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("tinygrad_np-*.whl")
    # System site packages give NumPy (and matplotlib, if there) without a download; tinygrad_np is not there.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    work = tmp_path / "elsewhere"
    work.mkdir()

    listing = subprocess.run(
        [python, "-c", "import importlib.metadata as m, json, tinygrad_np; d = m.distribution('tinygrad-np'); "
                       "print(json.dumps([sorted({f.parts[0] for f in d.files if f.parts[0] != '..'}), "
                       "d.read_text('top_level.txt').split(), tinygrad_np.__file__]))"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )
    names, top_level, location = json.loads(listing.stdout)
    assert [name for name in names if not name.endswith(".dist-info")] == ["tinygrad_np"]
    assert top_level == ["tinygrad_np"]
    assert Path(location).is_relative_to(tmp_path / "venv")

    command = tmp_path / "venv" / "bin" / "tinygrad-np"
    compare = subprocess.run([command, "compare", "--offline", "--batch-size", "8"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0 and compare.stdout.rstrip().endswith("result: PASS"), compare.stderr
    bench = subprocess.run([command, "bench", "--quick", "--out", "results"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr
    assert json.loads((work / "results" / "results.json").read_text())["environment"]["mode"] == "quick"
