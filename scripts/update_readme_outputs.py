"""Rewrite the printed outputs in README.md from the real program: `python scripts/update_readme_outputs.py`.

The README's convention, which tests/test_readme.py checks block by block:

- A ```text block whose first line is `$ tinygrad-np ARGS` shows what that command prints (stdout and stderr,
  as a terminal shows them). The test runs it in-process through `tinygrad_np.cli.main`.
- A ```text block right after the comment `<!-- printed by the python block above -->` shows what the nearest
  ```python block before it prints.
- The comment before a block may also say `machine-dependent columns: NAME, NAME` (fields separated by `;`):
  table columns whose numbers are rounding noise that differs between CPUs and BLAS builds. The test compares
  the words in those cells (PASS, FAIL, -) but not their numbers.
- Timings (`3.5 s`, `12 ms`) and paths are normalised everywhere; so is the width of table columns.
- Every ```text block is such an output; text that is not a program's output goes in a bare ``` fence.

Commands and snippets run in a temporary folder that links the repository's top-level files and folders, so
they read `examples/` as they would in a clone, and whatever they write lands in the temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON_ABOVE = "printed by the python block above"
MACHINE_COLUMNS = "machine-dependent columns:"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)[ \t]*$")
_COMMENT = re.compile(r"^\s*<!--(?P<body>.*)-->\s*$")
_DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:min|ms|µs|us|s)(?![\w])")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)
_RULE = re.compile(r"^-+(?: +-+)*$")  # the dashes under a fixed-width table's header


@dataclass(frozen=True)
class OutputBlock:
    """One printed output in the README: where it is, what makes it, what it shows."""

    line: int  # of the opening fence, counting from 1
    body: tuple[int, int]  # the shown output's lines, [start, stop) as 0-based line indexes
    command: str | None  # `tinygrad-np ...` after the `$ `
    python: str | None  # the source of the python block above
    expected: str
    machine_columns: tuple[str, ...]

    @property
    def source(self) -> str:
        return f"$ {self.command}" if self.command is not None else f"the python block above line {self.line}"


class ReadmeConventionError(ValueError):
    """A ```text block in the README that doesn't follow the convention (see the module docstring)."""


def _blocks(lines: list[str]) -> Iterator[tuple[int, int, str, str]]:
    """(fence line index, closing fence index, language, indent) for every fenced block."""
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening["indent"]
        closing = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == "```"), None)
        if closing is None:
            raise ReadmeConventionError(f"README.md line {index + 1}: a ``` block that is never closed")
        yield index, closing, opening["language"], indent
        index = closing + 1


def _comment_fields(lines: list[str], fence: int) -> list[str]:
    """The `;`-separated fields of an HTML comment on the line right before `fence`."""
    if fence == 0:
        return []
    comment = _COMMENT.match(lines[fence - 1])
    return [field.strip() for field in comment["body"].split(";")] if comment else []


def output_blocks(text: str) -> list[OutputBlock]:
    """Every printed output in the README, in order; a ```text block that isn't one is an error."""
    lines = text.split("\n")
    found, last_python = [], None
    for fence, closing, language, indent in _blocks(lines):
        body = [line[len(indent):] for line in lines[fence + 1 : closing]]
        if language == "python":
            last_python = "\n".join(body) + "\n"
            continue
        if language != "text":
            continue
        fields = _comment_fields(lines, fence)
        columns: tuple[str, ...] = ()
        for field in fields:
            if field.startswith(MACHINE_COLUMNS):
                columns = tuple(name.strip() for name in field[len(MACHINE_COLUMNS):].split(",") if name.strip())
        where = f"README.md line {fence + 1}"
        if body and body[0].startswith("$ "):
            command = body[0][2:].strip()
            if not command.startswith("tinygrad-np "):
                raise ReadmeConventionError(f"{where}: only `$ tinygrad-np ...` commands are run, got {body[0]!r}")
            found.append(OutputBlock(fence + 1, (fence + 2, closing), command, None, "\n".join(body[1:]), columns))
        elif PYTHON_ABOVE in fields:
            if last_python is None:
                raise ReadmeConventionError(f"{where}: says it is {PYTHON_ABOVE!r}, but no python block comes before")
            found.append(OutputBlock(fence + 1, (fence + 1, closing), None, last_python, "\n".join(body), columns))
        else:
            raise ReadmeConventionError(
                f"{where}: a ```text block must be a program's output: start it with `$ tinygrad-np ...`, or put "
                f"`<!-- {PYTHON_ABOVE} -->` before it; use a bare ``` fence for other text"
            )
    return found


@contextlib.contextmanager
def _in_temporary_folder() -> Iterator[Path]:
    """A fresh folder that links the repository's top-level entries: reads find examples/ as in a clone, and what a
    command writes (runs/) lands in the folder."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="tinygrad-np-readme-") as folder:
        for entry in ROOT.iterdir():
            if entry.name not in (".git", ".venv"):
                (Path(folder) / entry.name).symlink_to(entry)
        os.chdir(folder)
        try:
            yield Path(folder).resolve()
        finally:
            os.chdir(previous)


def run(block: OutputBlock) -> str:
    """What the block's command or python block prints now, stdout and stderr in the order they came."""
    printed = io.StringIO()
    with _in_temporary_folder() as folder, contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        if block.command is not None:
            from tinygrad_np.cli import main

            main(shlex.split(block.command)[1:])
        else:
            exec(compile(block.python, f"README.md, the python block above line {block.line}", "exec"),
                 {"__name__": "readme"})
    text = printed.getvalue()
    for prefix in (str(folder) + os.sep, str(ROOT) + os.sep):
        text = text.replace(prefix, "")
    return text.rstrip("\n")


def _mask_columns(lines: list[str], names: tuple[str, ...]) -> list[str]:
    """Numbers in the named columns of fixed-width tables become '#' (a table: header, a rule of dashes, rows)."""
    lines = list(lines)
    for index in range(1, len(lines)):
        if not _RULE.match(lines[index]):
            continue
        header, rule = lines[index - 1], lines[index]
        spans = [match.span() for match in re.finditer(r"-+", rule)]
        masked = [span for span in spans if header[span[0] : span[1]].strip() in names]
        gaps = [position for position, char in enumerate(rule) if char == " "]
        row = index + 1
        # A row has room at every gap between the columns; the first line that doesn't (or a blank one) ends the table.
        while row < len(lines) and lines[row].strip() and all(lines[row][gap : gap + 1] in ("", " ") for gap in gaps):
            text = lines[row]
            for start, stop in reversed(masked):
                text = text[:start] + _NUMBER.sub("#", text[start:stop]) + text[stop:]
            lines[row] = text
            row += 1
    return lines


def normalise(text: str, machine_columns: tuple[str, ...] = ()) -> list[str]:
    """The lines to compare: machine-dependent numbers masked, timings as <time>, runs of spaces and dashes as one."""
    lines = _mask_columns(text.rstrip("\n").split("\n"), machine_columns)
    normal = []
    for line in lines:
        line = _DURATION.sub("<time>", line)
        if _RULE.match(line.strip()):
            line = "-"
        normal.append(re.sub(r"[ \t]+", " ", line).strip())
    return normal


def update(readme: Path = README) -> list[OutputBlock]:
    """Rewrite each output block in `readme` that differs from what the program prints (after `normalise`)."""
    text = readme.read_text(encoding="utf-8")
    lines = text.split("\n")
    changed = []
    for block in reversed(output_blocks(text)):  # from the end, so earlier line numbers stay valid
        printed = run(block)
        if normalise(printed, block.machine_columns) != normalise(block.expected, block.machine_columns):
            start, stop = block.body
            lines[start:stop] = printed.split("\n")
            changed.append(block)
    if changed:
        from tinygrad_np.files import write_text_atomic

        write_text_atomic(readme, "\n".join(lines))
    return changed[::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", nargs="?", type=Path, default=README, help="default: the repository's README.md")
    args = parser.parse_args(argv)
    changed = update(args.readme)
    for block in changed:
        print(f"updated line {block.line}: {block.source}")
    print(f"{len(changed)} output block(s) rewritten in {args.readme}" if changed else "all outputs were up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
