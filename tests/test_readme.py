"""The README's Python examples run as written (a README that lies is worse than none)."""

import re
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), {"__name__": "readme"})


TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_readme_model_specs_build(index, tmp_path):
    from tinygrad_np.spec import load_spec, model_from_spec

    path = tmp_path / "net.toml"
    path.write_text(textwrap.dedent(TOML_BLOCKS[index]))
    model = model_from_spec(load_spec(path))
    assert model.num_parameters() > 0
