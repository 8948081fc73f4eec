"""A computation graph drawn as SVG with no Graphviz: a small layered layout, top to bottom, deterministic.

Each tensor goes in a row (its layer): an op one row below its lowest input, a leaf one row above its first
consumer, so W and b sit beside the op that uses them. Within a row, ops follow the mean position of their
inputs (one top-down sweep, ties in reading order), which keeps a chain of layers straight, and leaves come
after them, as arguments do. Edges are cubic
curves from the bottom of an input to the top of the op, with an arrowhead; an op that takes the same tensor
twice (`a + a`) gets two curves, bowed apart. Boxes and text are sized from the label's characters, so the
same graph always gives the same bytes. Graphs of a few hundred nodes draw fine; past that use Graphviz.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinygrad_np.graph import ComputationGraph, Node

FONT_SIZE = 11
CHAR_WIDTH = 6.6  # px per character of 11 px Helvetica, generously: labels must fit their boxes
LINE_HEIGHT = 14
PADDING_X, PADDING_Y = 10, 6
GAP_X, GAP_Y = 24, 36  # between boxes in a row, between rows
MARGIN = 12
FILL = {"op": "#ffffff", "parameter": "#cfe2f3", "input": "#eeeeee"}


def _layers(graph: ComputationGraph) -> dict[str, int]:
    """Row of each node: ops below their lowest input, leaves just above their first consumer."""
    inputs: dict[str, list[str]] = defaultdict(list)
    consumers: dict[str, list[str]] = defaultdict(list)
    for source, target in graph.edges:
        inputs[target].append(source)
        consumers[source].append(target)
    layer: dict[str, int] = {}
    for node in graph.nodes:  # inputs come before outputs
        layer[node.id] = 1 + max((layer[i] for i in inputs[node.id]), default=-1)
    for node in graph.nodes:
        if node.op is None and consumers[node.id]:
            layer[node.id] = min(layer[c] for c in consumers[node.id]) - 1
    return layer


def _rows(graph: ComputationGraph, layer: dict[str, int]) -> list[list[Node]]:
    """Nodes by row; in a row, ops by the mean slot of their inputs, then leaves in reading order."""
    inputs: dict[str, list[str]] = defaultdict(list)
    for source, target in graph.edges:
        inputs[target].append(source)
    reading = {node.id: i for i, node in enumerate(graph.nodes)}
    by_row: dict[int, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        by_row[layer[node.id]].append(node)
    slot: dict[str, float] = {}

    def key(node: Node) -> tuple[int, float, int]:
        if node.op is None:  # leaves to the right of the ops in their row, as arguments follow: linear(A1, W2, b2)
            return (1, 0.0, reading[node.id])
        known = [slot[i] for i in inputs[node.id]]  # every input of an op sits in a row above
        return (0, sum(known) / len(known), reading[node.id])

    rows = []
    for row in sorted(by_row):
        ordered = sorted(by_row[row], key=key)
        for position, node in enumerate(ordered):
            slot[node.id] = position - (len(ordered) - 1) / 2  # centred, so rows of different widths line up
        rows.append(ordered)
    return rows


def _box(node: Node) -> tuple[float, float]:
    lines = node.lines()
    return (max(len(line) for line in lines) * CHAR_WIDTH + 2 * PADDING_X, len(lines) * LINE_HEIGHT + 2 * PADDING_Y)


def to_svg(graph: ComputationGraph) -> str:
    """The graph as a standalone SVG document: one `<g class="node">` per tensor, one `<g class="edge">` per
    op input (the same classes Graphviz uses)."""
    rows = _rows(graph, _layers(graph))
    sizes = {node.id: _box(node) for row in rows for node in row}
    inputs: dict[str, list[str]] = defaultdict(list)
    for source, target in graph.edges:
        inputs[target].append(source)
    placed: dict[str, tuple[float, float]] = {}  # x, y of each box's top left corner
    y = MARGIN
    for row in rows:
        row_height = max(sizes[n.id][1] for n in row)
        right = None  # right edge of the last box placed in this row
        for node in row:
            w, h = sizes[node.id]
            earliest = -math.inf if right is None else right + GAP_X
            if node.op is None:
                x = max(earliest, 0.0)
            else:  # under the middle of its inputs, if the row leaves room
                centres = [placed[i][0] + sizes[i][0] / 2 for i in inputs[node.id]]
                x = max(earliest, sum(centres) / len(centres) - w / 2)
            placed[node.id] = (x, y + (row_height - h) / 2)
            right = x + w
        y += row_height + GAP_Y
    shift = MARGIN - min(x for x, _ in placed.values())
    boxes = {i: (x + shift, y_, *sizes[i]) for i, (x, y_) in placed.items()}  # x, y, w, h
    width = max(x + w for x, _, w, _ in boxes.values()) + MARGIN
    height = y - GAP_Y + MARGIN

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="{FONT_SIZE}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    repeats: Counter[tuple[str, str]] = Counter(graph.edges)
    drawn: Counter[tuple[str, str]] = Counter()
    for source, target in graph.edges:
        sx, sy, sw, sh = boxes[source]
        tx, ty, tw, _ = boxes[target]
        bow = (drawn[(source, target)] - (repeats[(source, target)] - 1) / 2) * 16  # a + a: two visible curves
        drawn[(source, target)] += 1
        x1, y1, x2, y2 = sx + sw / 2, sy + sh, tx + tw / 2 + bow, ty
        bend = max((y2 - y1) / 2, GAP_Y / 2)
        out.append(
            f'<g class="edge"><title>{source}-&gt;{target}</title><path d="M {x1:.1f} {y1:.1f} C {x1 + bow:.1f} '
            f'{y1 + bend:.1f} {x2:.1f} {y2 - bend:.1f} {x2:.1f} {y2:.1f}" fill="none" stroke="#555" '
            'marker-end="url(#arrow)"/></g>'
        )
    for node in graph.nodes:
        x, y, w, h = boxes[node.id]
        radius = 8 if node.kind == "op" else 0
        lines = node.lines()
        parts = [f'<g class="node" id="{node.id}"><title>{escape(" | ".join(lines))}</title>']
        if node.id == graph.root:  # the root is ringed twice, as Graphviz's peripheries=2
            parts.append(f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="{w + 6:.1f}" height="{h + 6:.1f}" '
                         f'rx="{radius + 3}" fill="none" stroke="#333"/>')
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{radius}" '
                     f'fill="{FILL[node.kind]}" stroke="#333"/>')
        for i, line in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            parts.append(f'<text x="{x + w / 2:.1f}" y="{y + PADDING_Y + (i + 0.8) * LINE_HEIGHT:.1f}" '
                         f'text-anchor="middle"{weight}>{escape(line)}</text>')
        parts.append("</g>")
        out.append("".join(parts))
    out.append("</svg>")
    return "\n".join(out) + "\n"
