"""What a notebook shows: Tensor's repr, a captured graph as SVG without Graphviz, plots inline."""

import importlib.util
import io
import shutil
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import require
from test_graph import SVG, mlp_loss

import tinygrad_np as tg
import tinygrad_np.graph as graph_module
from tinygrad_np import Tensor, nn
from tinygrad_np.graph import capture
from tinygrad_np.tensor import iter_graph

# ---- Tensor.__repr__ --------------------------------------------------------------------------------------


def test_repr_shows_values_shape_dtype_and_the_backward_that_will_run():
    x = Tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "Tensor([1., 2.], shape=(2,), dtype=float32, requires_grad=True)"
    assert repr(x * 2.0) == "Tensor([2., 4.], shape=(2,), dtype=float32, grad_fn=<MulBackward>)"
    assert repr((x * 2.0).sum()) == "Tensor(6., shape=(), dtype=float32, grad_fn=<SumBackward>)"


def test_repr_of_tensors_outside_the_graph_has_neither_grad_fn_nor_requires_grad():
    x = Tensor(np.array([[1.5]]), requires_grad=True)
    with tg.no_grad():
        y = x * 2.0
    assert repr(y) == "Tensor([[3.]], shape=(1, 1), dtype=float64)"
    assert repr(x.detach()) == "Tensor([[1.5]], shape=(1, 1), dtype=float64)"
    assert repr(Tensor(np.zeros((0, 3)))) == "Tensor([], shape=(0, 3), dtype=float64)"
    assert repr(Tensor(np.arange(3))) == "Tensor([0, 1, 2], shape=(3,), dtype=int64)"


def test_repr_of_a_large_tensor_is_summarised_and_still_says_its_shape():
    text = repr(Tensor(np.zeros((100, 784), dtype=np.float32)))
    assert "..." in text and text.endswith("shape=(100, 784), dtype=float32)") and len(text) < 1000


def test_parameter_repr_reads_like_pytorchs():
    weight = nn.Linear(2, 1, generator=0).weight
    text = repr(weight)
    assert text.startswith("Parameter containing:\nTensor([[") and text.endswith("requires_grad=True)")


# ---- plots ------------------------------------------------------------------------------------------------


def test_a_plot_displays_inline_as_a_png_of_its_size_without_pyplot():
    require(importlib.util.find_spec("matplotlib") is not None, "matplotlib is not installed (extra `plot`)")
    require(importlib.util.find_spec("PIL") is not None, "Pillow is not installed (extra `image`)")
    from PIL import Image

    from tinygrad_np.plots import CURVES_SIZE, DPI, plot_training_curves

    history = [{"epoch": e, "train_loss": 1.0 / e, "test_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    png = plot_training_curves(history)._repr_png_()  # what IPython calls to show a cell's value
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (CURVES_SIZE[0] * DPI, CURVES_SIZE[1] * DPI)
    assert "matplotlib.pyplot" not in sys.modules  # no global figure state, no GUI backend chosen


# ---- a captured graph as SVG --------------------------------------------------------------------------------

def diamond():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = a * 3.0
    return ((a + a) * b + b.exp()).sum()  # a twice into one op; b into two ops


def drawn(svg_text):
    """{node id: (x, y, width, height, label text)} and [(source, target, path)] as the SVG draws them."""
    root = ET.fromstring(svg_text)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    nodes, edges = {}, []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            rect = group.findall(f"{SVG}rect")[-1]  # the root has an extra outer ring first
            box = tuple(float(rect.get(k)) for k in ("x", "y", "width", "height"))
            nodes[group.get("id")] = (*box, " | ".join(t.text for t in group.iter(f"{SVG}text")))
        elif group.get("class") == "edge":
            source, target = group.find(f"{SVG}title").text.split("->")
            edges.append((source, target, group.find(f"{SVG}path").get("d")))
    return root, nodes, edges


@pytest.mark.parametrize("make", [lambda: mlp_loss()[2], diamond], ids=["mlp", "diamond"])
def test_builtin_svg_has_one_node_per_tensor_and_one_edge_per_op_input(make):
    root = make()
    graph = capture(root)
    _, nodes, edges = drawn(graph.to_builtin_svg())
    assert set(nodes) == {node.id for node in graph.nodes}
    ops = [t for t in iter_graph(root) if t._ctx is not None]
    assert sum(1 for node in graph.nodes if node.op is not None) == len(ops)
    assert sorted((s, t) for s, t, _ in edges) == sorted(graph.edges)  # a + a: both edges drawn
    for node in graph.nodes:
        assert nodes[node.id][4].split(" | ")[0] == node.lines()[0]  # op or parameter name first


def test_builtin_svg_lays_out_top_to_bottom_without_overlaps_inside_the_picture():
    model, x, loss = mlp_loss()
    svg = capture(loss, names=[("x", x), *model.named_parameters()]).to_builtin_svg()
    root, nodes, edges = drawn(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    for x0, y0, w, h, _ in nodes.values():
        assert x0 >= 0 and x0 + w <= width and y0 >= 0 and y0 + h <= height
    boxes = list(nodes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
            assert apart, f"boxes overlap: {a[4]!r} and {b[4]!r}"
    for source, target, _ in edges:
        assert nodes[source][1] + nodes[source][3] < nodes[target][1]  # data flows down the page
    assert nodes[capture(loss).root][4].startswith("CrossEntropy")


def test_builtin_svg_is_the_same_bytes_every_time():
    assert capture(mlp_loss()[2]).to_builtin_svg() == capture(mlp_loss()[2]).to_builtin_svg()
    assert capture(diamond()).to_builtin_svg() == capture(diamond()).to_builtin_svg()


def test_builtin_svg_escapes_labels_and_draws_a_lone_leaf():
    x = Tensor(np.ones(3), requires_grad=True)
    _, nodes, edges = drawn(capture((x * 2.0).sum(), names={'<x & "y">': x}).to_builtin_svg())
    assert any(label.startswith('<x & "y">') for *_, label in nodes.values()) and len(edges) == 3
    _, nodes, edges = drawn(capture(Tensor(1.0, requires_grad=True)).to_builtin_svg())
    assert len(nodes) == 1 and not edges


def test_jupyter_gets_the_builtin_svg_without_graphviz(monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    graph = capture(mlp_loss()[2])
    assert graph._repr_svg_() == graph.to_builtin_svg()


def test_jupyter_gets_graphvizs_svg_when_dot_is_installed():
    require(shutil.which("dot") is not None, "Graphviz's dot is not installed (apt-get install graphviz)")
    graph = capture(mlp_loss()[2])
    root = ET.fromstring(graph._repr_svg_())
    groups = [g.get("class") for g in root.iter(f"{SVG}g")]
    assert groups.count("node") == len(graph.nodes) and groups.count("edge") == len(graph.edges)
    assert graph._repr_svg_() != graph.to_builtin_svg()


def test_a_captured_graph_prints_in_one_line():
    graph = capture(mlp_loss()[2])
    assert repr(graph) == "<ComputationGraph of CrossEntropy: 9 tensors (4 made by ops), 8 edges>"
