"""The README's examples run as written and its printed outputs are what the program prints (a README that lies is
worse than none)."""

import difflib
import importlib.util
import re
import sys
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


# ---- printed outputs: regenerated from the real program (convention: scripts/update_readme_outputs.py) --------


def _load_outputs_script():
    path = README.parent / "scripts" / "update_readme_outputs.py"
    spec = importlib.util.spec_from_file_location("update_readme_outputs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


outputs = _load_outputs_script()
try:
    OUTPUT_BLOCKS, CONVENTION_BROKEN = outputs.output_blocks(README.read_text(encoding="utf-8")), None
except outputs.ReadmeConventionError as error:
    OUTPUT_BLOCKS, CONVENTION_BROKEN = [], str(error)


def test_the_readme_shows_printed_outputs_by_the_convention():
    assert CONVENTION_BROKEN is None, CONVENTION_BROKEN
    assert any(block.command is not None for block in OUTPUT_BLOCKS)
    assert any(block.python is not None for block in OUTPUT_BLOCKS)


@pytest.mark.parametrize("block", OUTPUT_BLOCKS, ids=lambda block: f"line {block.line}")
def test_readme_output_is_what_the_program_prints(block):
    shown = outputs.normalise(block.expected, block.machine_columns)
    printed = outputs.normalise(outputs.run(block), block.machine_columns)
    if printed != shown:
        diff = "\n".join(difflib.unified_diff(shown, printed, f"README.md line {block.line}", block.source,
                                              lineterm=""))
        pytest.fail(f"README.md line {block.line} no longer shows what `{block.source}` prints (timings, paths, "
                    f"column widths and machine-dependent columns normalised). If the change is intended, run "
                    f"`python scripts/update_readme_outputs.py`.\n{diff}", pytrace=False)


# ---- the convention itself ------------------------------------------------------------------------------------

TABLE = """\
name  shape      error  worst at  verdict
----  -------  -------  --------  -------
dW1   (10, 3)  1.0e-16  (0, 2)    PASS
db1   (10, 1)        -  -         FAIL
note: dW1 on 1000 of 7840 entries"""


def test_machine_dependent_columns_mask_numbers_but_keep_words_shapes_and_other_columns():
    normal = outputs.normalise(TABLE, ("error", "worst at"))
    assert normal == ["name shape error worst at verdict", "-", "dW1 (10, 3) # (#, #) PASS", "db1 (10, 1) - - FAIL",
                      "note: dW1 on 1000 of 7840 entries"]  # the table ended: the line has text across its gaps
    wider = """\
name  shape      error  worst at   verdict
----  -------  -------  ---------  -------
dW1   (10, 3)  2.5e-15  (10, 123)  PASS
db1   (10, 1)        -  -          FAIL
note: dW1 on 1000 of 7840 entries"""
    assert outputs.normalise(wider, ("error", "worst at")) == normal  # another machine: other noise, wider column
    assert outputs.normalise(wider, ("error",)) != normal
    assert outputs.normalise(TABLE.replace("PASS", "WARN"), ("error", "worst at")) != normal
    assert outputs.normalise(TABLE.replace("(10, 3)", "(10, 4)"), ("error", "worst at")) != normal
    assert outputs.normalise(TABLE.replace("1.0e-16", "3.0e-17"), ("error", "worst at")) == normal


def test_timings_are_normalised_and_other_numbers_are_not():
    assert outputs.normalise("trained in 3.5 s (12 ms per step), 97.12% accuracy") == [
        "trained in <time> (<time> per step), 97.12% accuracy"]
    assert outputs.normalise("60,000 images, 5s") == ["60,000 images, <time>"]


def test_output_blocks_follow_the_convention():
    text = """\
```python
print("hello")
```

<!-- printed by the python block above; machine-dependent columns: error, worst at -->
```text
hello
```

```text
$ tinygrad-np compare --offline
result: PASS
```

```
any text
```
"""
    first, second = outputs.output_blocks(text)
    assert (first.line, first.python, first.expected, first.machine_columns) == (
        6, 'print("hello")\n', "hello", ("error", "worst at"))
    assert (second.line, second.command, second.expected, second.machine_columns) == (
        10, "tinygrad-np compare --offline", "result: PASS", ())
    assert outputs.run(first) == "hello"
    with pytest.raises(outputs.ReadmeConventionError, match=r"line 1: a ```text block must be a program's output"):
        outputs.output_blocks("```text\nsome text\n```\n")
    with pytest.raises(outputs.ReadmeConventionError, match=r"line 1: only `\$ tinygrad-np \.\.\.` commands are run"):
        outputs.output_blocks("```text\n$ ls -l\n```\n")


def test_the_update_script_rewrites_a_stale_block_and_leaves_a_current_one(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("""\
```python
print("a 1.5 s step"); print("new line")
```
<!-- printed by the python block above -->
```text
a 2 s step
old line
```

```python
print("unchanged")
```
<!-- printed by the python block above -->
```text
unchanged
```
""", encoding="utf-8")
    changed = outputs.update(readme)
    assert [block.line for block in changed] == [5]
    text = readme.read_text(encoding="utf-8")
    assert "a 1.5 s step\nnew line\n```" in text and "old line" not in text and "unchanged\n```" in text
    assert outputs.update(readme) == []  # nothing left to do
