"""notebooks/from_scratch.ipynb runs top to bottom in a fresh Jupyter kernel, on the offline sample, and shows
what it promises: the compare tables, widgets for progress, PNG plots, the explain tape and the graph as SVG."""

import importlib.util
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "from_scratch.ipynb"
PARAMETERS = "OFFLINE = False"
KERNEL = "tinygrad-np-tests"


def test_the_stored_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code), (
        "store the notebook with its outputs stripped (Jupyter: Edit > Clear Outputs of All Cells)"
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run by nbclient in a new kernel of this interpreter: offline, importing this checkout."""
    for module in ("nbclient", "nbformat", "ipykernel"):
        require(importlib.util.find_spec(module) is not None, f"{module} is not installed (extra `dev`)")
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    assert parameters.source.startswith(PARAMETERS), "the parameters cell must start with OFFLINE = False"
    parameters.source = parameters.source.replace(PARAMETERS, "OFFLINE = True", 1)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys, tinygrad_np\nprint(sys.executable)\n"
                                                    "print(tinygrad_np.__file__)"))
    # A kernel spec naming this interpreter (the stock one runs whatever `python` is first on PATH), and this
    # checkout first on the import path: the notebook runs against the code under test.
    jupyter = tmp_path_factory.mktemp("jupyter")
    (jupyter / "kernels" / KERNEL).mkdir(parents=True)
    (jupyter / "kernels" / KERNEL / "kernel.json").write_text(json.dumps(
        {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "tinygrad_np tests", "language": "python"}))
    environment = {
        "JUPYTER_PATH": str(jupyter),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OPENBLAS_NUM_THREADS": "1",
    }
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        start = time.perf_counter()
        nbclient.NotebookClient(notebook, timeout=120, kernel_name=KERNEL,
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
        print(f"notebook ran in {time.perf_counter() - start:.1f} s")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return notebook


def outputs(notebook, mime):
    """Every output of the given MIME type, in order, as text."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout" and mime == "stdout":
                found.append(output["text"])
            elif mime in output.get("data", {}):
                found.append(output["data"][mime])
    return found


def test_the_notebook_runs_in_a_fresh_kernel_against_this_checkout(executed):
    errors = [o for cell in executed.cells for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    interpreter, module = outputs(executed, "stdout")[-1].split("\n")[:2]
    assert interpreter == sys.executable
    assert Path(module).resolve().is_relative_to(ROOT / "tinygrad_np")


def test_the_notebook_shows_the_comparison_the_bug_and_the_tape(executed):
    text = "".join(outputs(executed, "stdout"))
    tables = outputs(executed, "text/html")
    assert len(tables) == 1 and "<table" in tables[0]  # the passing report, drawn as HTML
    assert ">PASS</span></p>" in tables[0] and "blame:" not in tables[0]  # the verdict, with nothing blamed
    assert "result: FAIL (blame: db1 -> manual, db2 -> manual)" in text
    assert "dZ1 = W2^T dZ2 * (Z1 > 0)  steps 2, 5" in text
    assert "grad_fn=<CrossEntropyBackward>" in "".join(outputs(executed, "text/plain"))


def test_the_notebook_draws_plots_progress_widgets_and_the_graph(executed):
    assert len(outputs(executed, "image/png")) >= 3  # two training curves and the prediction grid
    assert outputs(executed, "application/vnd.jupyter.widget-view+json")  # tqdm.auto chose the widget
    svgs = outputs(executed, "image/svg+xml")
    assert len(svgs) == 1 and ET.fromstring(svgs[0]).tag.endswith("svg")


def test_the_notebook_finds_the_largest_hessian_eigenvalue(executed):
    """Step 8: H v by hand equals hvp's, and power iteration agrees with the eigenvalues of the full W2 Hessian."""
    text = "".join(outputs(executed, "stdout"))
    difference = float(re.search(r"H v by hand and by hvp, largest difference: (\S+)", text)[1])
    assert difference <= 1e-12
    power, exact = map(float, re.search(r"in W2: (\S+) by power iteration, (\S+) from the full", text).groups())
    assert exact > 0 and abs(power - exact) <= 1e-6 * exact
    everywhere = float(re.search(r"in all 7,960 parameters: (\S+) by power iteration", text)[1])
    assert everywhere >= power * (1 - 1e-6)  # W2's block is a principal submatrix: its eigenvalues interlace
