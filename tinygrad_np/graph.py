"""Pictures of a computation graph: DOT (Graphviz) and Mermaid text, SVG through Graphviz's `dot` or our own
layout (`graph_svg`), and inline display in Jupyter (`_repr_svg_`: a captured graph as a cell's value).

One node per tensor (leaves: parameters and inputs; the rest: the op that made them), one edge per op input,
pointing the way data flows. Nodes show op or parameter name, shape, dtype and, once known, the gradient norm.

`backward()` frees the graph, so take the snapshot before it; `retain_grads=True` asks every intermediate
tensor to keep its gradient, and the norms are read when the picture is drawn, so they appear after
backward::

    loss = F.cross_entropy(model(x), y)
    graph = capture(loss, names=model.named_parameters(), retain_grads=True)
    loss.backward()
    print(graph.to_dot())  # now with |grad| on every node
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tinygrad_np.errors import UserError
from tinygrad_np.tensor import Tensor, iter_graph

DOT_TIMEOUT_S = 30.0


class GraphvizNotFoundError(UserError, RuntimeError):
    """Graphviz's `dot` program is not installed, so no SVG."""


@dataclass(frozen=True)
class Node:
    """One tensor of the graph: `op` is the Function that made it (None for a leaf), `name` a label for leaves."""

    id: str
    tensor: Tensor
    op: str | None
    name: str | None

    @property
    def kind(self) -> str:
        """"op", "parameter" (a leaf that requires grad) or "input" (a leaf that doesn't)."""
        if self.op is not None:
            return "op"
        return "parameter" if self.tensor.requires_grad else "input"

    def lines(self) -> list[str]:
        """The label, line by line: what it is, shape and dtype, gradient norm if there is a gradient."""
        tensor = self.tensor
        title = self.op or self.name or ("parameter" if tensor.requires_grad else "input")
        lines = [title if self.op is None or self.name is None else f"{self.name} = {self.op}"]
        lines.append(f"{tuple(tensor.shape)} {tensor.dtype}")
        if tensor.grad is not None:
            lines.append(f"grad norm {float(np.linalg.norm(tensor.grad)):.3g}")
        return lines


@dataclass(frozen=True)
class ComputationGraph:
    """A snapshot of a graph's structure; gradient norms are read from the tensors when it is drawn."""

    nodes: tuple[Node, ...]  # inputs before outputs
    edges: tuple[tuple[str, str], ...]  # (input node id, output node id), once per op input (a + a gives two)
    root: str

    def __repr__(self) -> str:
        ops = sum(1 for node in self.nodes if node.op is not None)
        root = next(node for node in self.nodes if node.id == self.root)
        return (f"<ComputationGraph of {root.lines()[0]}: {len(self.nodes)} tensors ({ops} made by ops), "
                f"{len(self.edges)} edges>")

    def to_dot(self) -> str:
        """Graphviz DOT text (`dot -Tsvg` draws it)."""
        styles = {
            "op": 'shape=box, style="rounded"',
            "parameter": 'shape=box, style="filled", fillcolor="#cfe2f3"',
            "input": 'shape=box, style="filled", fillcolor="#eeeeee"',
        }
        out = ["digraph computation {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
        for node in self.nodes:
            label = "\\n".join(_dot_escape(line) for line in node.lines())
            extra = ", peripheries=2" if node.id == self.root else ""
            out.append(f'  {node.id} [label="{label}", {styles[node.kind]}{extra}];')
        out += [f"  {a} -> {b};" for a, b in self.edges]
        out.append("}")
        return "\n".join(out) + "\n"

    def to_mermaid(self) -> str:
        """Mermaid flowchart text (renders in GitHub markdown, mermaid.live, ...)."""
        shapes = {"op": ('("', '")'), "parameter": ('["', '"]'), "input": ('["', '"]')}
        out = ["flowchart TB"]
        for node in self.nodes:
            left, right = shapes[node.kind]
            label = "<br/>".join(_mermaid_escape(line) for line in node.lines())
            out.append(f"  {node.id}{left}{label}{right}")
        out += [f"  {a} --> {b}" for a, b in self.edges]
        out += [
            "  classDef parameter fill:#cfe2f3,stroke:#333",
            "  classDef input fill:#eeeeee,stroke:#333",
            "  classDef root stroke-width:3px",
        ]
        for kind in ("parameter", "input"):
            ids = [node.id for node in self.nodes if node.kind == kind]
            if ids:
                out.append(f"  class {','.join(ids)} {kind}")
        out.append(f"  class {self.root} root")
        return "\n".join(out) + "\n"

    def to_svg(self, timeout: float = DOT_TIMEOUT_S) -> str:
        """SVG drawn by Graphviz's `dot` (raises GraphvizNotFoundError if it is not installed)."""
        return render_svg(self.to_dot(), timeout)

    def to_builtin_svg(self) -> str:
        """SVG from our own layered layout (`tinygrad_np.graph_svg`): needs nothing installed, same bytes every time."""
        from tinygrad_np import graph_svg

        return graph_svg.to_svg(self)

    def _repr_svg_(self) -> str:
        """What Jupyter shows for a captured graph: Graphviz's drawing when `dot` is installed, else our own."""
        if shutil.which("dot") is None:
            return self.to_builtin_svg()
        return self.to_svg()


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _mermaid_escape(text: str) -> str:
    # Inside a quoted Mermaid label only the quote itself and HTML's < > & need entity codes.
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def capture(
    root: Tensor,
    names: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
    retain_grads: bool = False,
) -> ComputationGraph:
    """Snapshot `root`'s graph (before backward frees it). `names` labels tensors, e.g.
    `model.named_parameters()`; `retain_grads` makes every intermediate keep its gradient for the picture."""
    if not isinstance(root, Tensor):
        raise TypeError(f"capture() takes a Tensor, got {type(root).__name__}")
    pairs = names.items() if isinstance(names, Mapping) else (names or ())
    label_of = {id(tensor): name for name, tensor in pairs}
    tensors = _reading_order(list(iter_graph(root)))
    ids = {id(t): f"n{i}" for i, t in enumerate(tensors)}
    nodes, edges = [], []
    for tensor in tensors:
        ctx = tensor._ctx
        if ctx is not None and ctx.released:
            raise RuntimeError(
                f"the graph was already freed by backward() (at {ctx.name}); capture it before calling "
                "backward(), or call backward(retain_graph=True)"
            )
        nodes.append(Node(ids[id(tensor)], tensor, ctx.name if ctx is not None else None, label_of.get(id(tensor))))
        if ctx is not None:
            edges += [(ids[id(parent)], ids[id(tensor)]) for parent in ctx.inputs]
            if retain_grads and tensor.requires_grad:
                tensor.retain_grad()
    return ComputationGraph(tuple(nodes), tuple(edges), ids[id(root)])


def _reading_order(tensors: list[Tensor]) -> list[Tensor]:
    """Still inputs before outputs, but each leaf just before its first op, in argument order, so the
    picture lays out x, W, b left to right as in the code."""
    placed: dict[int, Tensor] = {}
    for tensor in tensors:
        if tensor._ctx is None:
            continue  # placed with its first consumer
        for parent in tensor._ctx.inputs:
            if parent._ctx is None:
                placed.setdefault(id(parent), parent)
        placed[id(tensor)] = tensor
    return list(placed.values()) or tensors  # a lone leaf is its own graph


def render_svg(dot_text: str, timeout: float = DOT_TIMEOUT_S) -> str:
    """Run Graphviz's `dot -Tsvg` on DOT text, with a time limit."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizNotFoundError(
            "Graphviz's `dot` program is not installed, so no SVG (apt-get install graphviz, brew install "
            "graphviz, or https://graphviz.org/download/); --format dot or mermaid needs nothing extra"
        )
    try:
        result = subprocess.run(
            [program, "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Graphviz's dot took longer than {timeout:g} s (is the graph huge?)") from None
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz's dot failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout
