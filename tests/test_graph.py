"""Computation-graph pictures: DOT that Graphviz draws, well-formed Mermaid, counts that match the graph."""

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import require

import tinygrad_np.graph as graph_module
from tinygrad_np import Tensor, nn
from tinygrad_np.cli import main as tinygrad_np_main
from tinygrad_np.graph import GraphvizNotFoundError, capture, render_svg
from tinygrad_np.nn import functional as F
from tinygrad_np.serialization import save_model
from tinygrad_np.spec import model_from_spec
from tinygrad_np.tensor import iter_graph

SVG = "{http://www.w3.org/2000/svg}"


def expected_counts(root):
    tensors = list(iter_graph(root))
    return len(tensors), sum(len(t._ctx.inputs) for t in tensors if t._ctx is not None)


def svg_counts(svg_text):
    """Nodes and edges Graphviz actually drew."""
    root = ET.fromstring(svg_text)
    groups = [g.get("class") for g in root.iter(f"{SVG}g")]
    return groups.count("node"), groups.count("edge")


def parse_mermaid(text):
    """A strict reader for the subset of Mermaid we write; fails on anything else."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    nodes, edges, classes = {}, [], {}
    for line in lines[1:]:
        if m := re.fullmatch(r'  (n\d+)(\["|\(")([^"]*)("\]|"\))', line):
            assert {'["': '"]', '("': '")'}[m[2]] == m[4], line
            assert m[1] not in nodes, f"{m[1]} defined twice"
            nodes[m[1]] = m[3]
        elif m := re.fullmatch(r"  (n\d+) --> (n\d+)", line):
            edges.append((m[1], m[2]))
        elif m := re.fullmatch(r"  classDef (\w+) [\w:#,.\-]+", line):
            classes[m[1]] = True
        elif m := re.fullmatch(r"  class ((?:n\d+,)*n\d+) (\w+)", line):
            assert m[2] in classes, f"class {m[2]} used before classDef"
            assert all(n in nodes for n in m[1].split(",")), line
        else:
            raise AssertionError(f"not Mermaid we know: {line!r}")
    assert all(a in nodes and b in nodes for a, b in edges), "edge to an undefined node"
    return nodes, edges


def mlp_loss(seed=0):
    model = nn.Sequential(nn.Linear(6, 5, generator=seed), nn.Tanh(), nn.Linear(5, 3, generator=seed + 1))
    rng = np.random.default_rng(seed)
    x = Tensor(rng.random((4, 6)).astype(np.float32))
    return model, x, F.cross_entropy(model(x), rng.integers(0, 3, 4))


# ---- structure ------------------------------------------------------------------------------------------


def test_counts_match_the_graph_including_repeated_inputs():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = a * 3.0
    root = ((a + a) * b + b.exp()).sum()  # a used twice by one op; b by two ops (a diamond)
    graph = capture(root)
    assert (len(graph.nodes), len(graph.edges)) == expected_counts(root)
    by_id = {n.id: n for n in graph.nodes}
    add = next(n for n in graph.nodes if n.op == "Add" and n.tensor.shape == (2,) and
               [e for e in graph.edges if e[1] == n.id and by_id[e[0]].tensor is a])
    assert sum(1 for e in graph.edges if e[1] == add.id) == 2  # a -> (a + a) twice
    order = [n.id for n in graph.nodes]
    assert all(order.index(src) < order.index(dst) for src, dst in graph.edges)  # inputs before outputs
    assert graph.root == graph.nodes[-1].id


def test_a_long_chain_is_captured_without_recursion():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    root = y.sum()
    graph = capture(root)
    # x, 5000 constants, 5000 Muls, the Sum; two edges per Mul, one into the Sum
    assert (len(graph.nodes), len(graph.edges)) == expected_counts(root) == (10002, 10001)


def test_labels_show_op_names_shapes_and_parameter_names():
    model, x, loss = mlp_loss()
    graph = capture(loss, names=[("images", x), *model.named_parameters()])
    labels = {n.lines()[0]: n.lines()[1] for n in graph.nodes}
    assert labels["0.weight"] == "(5, 6) float32"
    assert labels["images"] == "(4, 6) float32"
    assert labels["Tanh"] == "(4, 5) float32"
    assert labels["CrossEntropy"] == "() float32"
    assert [n.kind for n in graph.nodes].count("parameter") == 4


def test_gradient_norms_appear_after_backward():
    model, _, loss = mlp_loss()
    graph = capture(loss, names=model.named_parameters(), retain_grads=True)
    assert not any("grad" in line for n in graph.nodes for line in n.lines())  # not known yet
    loss.backward()
    for node in graph.nodes:
        if node.tensor.requires_grad:
            assert node.lines()[-1] == f"grad norm {np.linalg.norm(node.tensor.grad):.3g}", node.lines()
        else:
            assert not any("grad" in line for line in node.lines())
    assert "grad norm 1" in graph.to_dot()  # d loss / d loss


def test_capturing_a_freed_graph_says_what_to_do():
    _, _, loss = mlp_loss()
    loss.backward()
    with pytest.raises(RuntimeError, match="capture it before calling backward"):
        capture(loss)
    _, _, loss = mlp_loss()
    loss.backward(retain_graph=True)
    assert len(capture(loss).nodes) == expected_counts(loss)[0]


def test_capture_takes_tensors_only():
    with pytest.raises(TypeError, match="takes a Tensor"):
        capture(np.zeros(3))


# ---- DOT and SVG ----------------------------------------------------------------------------------------


def test_dot_has_one_statement_per_node_and_edge():
    _, _, loss = mlp_loss()
    graph = capture(loss)
    dot = graph.to_dot()
    assert dot.startswith("digraph computation {") and dot.rstrip().endswith("}")
    assert len(re.findall(r"^  n\d+ \[label=", dot, re.M)) == len(graph.nodes)
    assert len(re.findall(r"^  n\d+ -> n\d+;$", dot, re.M)) == len(graph.edges) == expected_counts(loss)[1]


@pytest.fixture(scope="module")
def dot_program():
    require(shutil.which("dot") is not None, "Graphviz's dot is not installed (apt-get install graphviz)")


def test_graphviz_draws_every_node_and_edge(dot_program):
    model, x, loss = mlp_loss()
    graph = capture(loss, names=[('quoted "x" \\ name', x), *model.named_parameters()], retain_grads=True)
    counts = expected_counts(loss)  # before backward frees the graph
    loss.backward()
    svg = graph.to_svg()
    assert svg_counts(svg) == counts
    assert 'quoted "x" \\ name' in "".join(ET.fromstring(svg).itertext())
    # The DOT text itself parses: dot's canonical output round-trips it.
    canon = subprocess.run(["dot", "-Tcanon"], input=graph.to_dot(), capture_output=True, text=True, check=True)
    assert svg_counts(render_svg(canon.stdout)) == counts


def test_a_missing_graphviz_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    with pytest.raises(GraphvizNotFoundError, match="install graphviz"):
        render_svg("digraph { a -> b }")


def test_a_hung_graphviz_times_out(monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: "/usr/bin/dot")

    def hang(*args, timeout, **kwargs):
        raise subprocess.TimeoutExpired("dot", timeout)

    monkeypatch.setattr(graph_module.subprocess, "run", hang)
    with pytest.raises(RuntimeError, match="longer than 2 s"):
        render_svg("digraph { a -> b }", timeout=2)


def test_bad_dot_reports_graphviz_errors(dot_program):
    with pytest.raises(RuntimeError, match="dot failed"):
        render_svg("digraph { a -> }")


# ---- Mermaid --------------------------------------------------------------------------------------------


def test_mermaid_is_well_formed_and_matches_the_graph():
    model, x, loss = mlp_loss()
    graph = capture(loss, names=[('x "in" <b>', x), *model.named_parameters()], retain_grads=True)
    counts = expected_counts(loss)
    loss.backward()
    nodes, edges = parse_mermaid(graph.to_mermaid())
    assert (len(nodes), len(edges)) == counts
    assert nodes[graph.nodes[0].id].startswith("x #quot;in#quot; #lt;b#gt;")
    assert sorted(edges) == sorted(graph.edges)


# ---- `tinygrad-np graph` ----------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    return tinygrad_np_main(["graph", *argv])


def test_main_draws_the_tutorial_loss_graph(tmp_path, capsys):
    path = tmp_path / "loss.dot"
    assert main(["--output", str(path)]) == 0
    dot = path.read_text()
    # images, W1, b1 -> Linear -> ReLU -> (W2, b2) Linear -> CrossEntropy
    assert len(re.findall(r"^  n\d+ \[", dot, re.M)) == 9 and len(re.findall(r" -> ", dot)) == 8
    for name in ("0.weight", "2.bias", "images", "Linear", "ReLU", "CrossEntropy", "grad norm"):
        assert name in dot
    assert "9 nodes, 8 edges" in capsys.readouterr().err


def test_main_writes_mermaid_to_stdout(capsys):
    assert main(["--format", "mermaid", "--batch-size", "2", "--no-grad"]) == 0
    nodes, edges = parse_mermaid(capsys.readouterr().out)
    assert (len(nodes), len(edges)) == (9, 8)
    assert "(2, 784) float32" in " ".join(nodes.values())
    assert "grad norm" not in " ".join(nodes.values())


def test_main_svg_from_a_spec_and_from_a_saved_model(tmp_path, dot_program):
    spec = {"input_size": [28, 28], "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 16},
                                               {"type": "ReLU"}, {"type": "Dropout", "p": 0.5},
                                               {"type": "Linear", "out_features": 10}]}
    (tmp_path / "net.json").write_text(json.dumps(spec))
    assert main(["--model-spec", str(tmp_path / "net.json"), "--output", str(tmp_path / "spec.svg")]) == 0
    nodes, edges = svg_counts((tmp_path / "spec.svg").read_text())
    # flattened images (Flatten of a constant is a constant: no Reshape node), W, b, Linear, ReLU,
    # dropout mask, Mul, W, b, Linear, CrossEntropy
    assert (nodes, edges) == (11, 10)
    save_model(model_from_spec(spec), tmp_path / "net.npz")
    assert main(["--model-file", str(tmp_path / "net.npz"), "-o", str(tmp_path / "saved.svg")]) == 0
    assert svg_counts((tmp_path / "saved.svg").read_text()) == (11, 10)


def test_main_reports_errors_without_a_traceback(tmp_path, capsys, monkeypatch):
    assert main(["--model-file", str(tmp_path / "absent.npz")]) == 2
    assert "absent.npz does not exist" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text('input_size = 784\n[[layers]]\ntype = "Conv3d"\n')
    assert main(["--model-spec", str(tmp_path / "bad.toml")]) == 2
    assert "layers[0]: 'type' must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size" in capsys.readouterr().err
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)  # no Graphviz: our own layout draws it
    assert main(["--output", str(tmp_path / "g.svg")]) == 0
    assert "drawing the SVG with the built-in layout" in capsys.readouterr().err
    assert (tmp_path / "g.svg").read_text().startswith("<svg")
