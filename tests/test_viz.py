"""viz: the recorded graph as DOT text, and rendering it with Graphviz."""
import shutil

import numpy as np
import pytest

from tinygrad_tf import Tensor, viz


def graph():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    w = Tensor(np.ones((3,), np.float32))
    return ((x.float() * w).sum(-1).exp()), x


def test_to_dot_names_ops_shapes_dtypes_and_grad():
    out, _ = graph()
    dot = viz.to_dot(out)
    assert dot.startswith("digraph tinygrad_tf {") and dot.rstrip().endswith("}")
    for op in ("Cast", "Mul", "Sum", "Exp"):
        assert f'label="{op}"' in dot
    assert "(2, 3) float64, requires_grad" in dot and "(2,) float32, requires_grad" in dot
    assert "(3,) float32" in dot and "(3,) float32, requires_grad" not in dot
    assert dot.count("->") == 9  # an edge out of each of the 4 ops, and 5 edges into them


def test_to_dot_of_a_deep_graph_does_not_recurse():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    assert viz.to_dot(y).count('label="Mul"') == 5000


def test_draw_without_graphviz_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out, _ = graph()
    with pytest.raises(RuntimeError, match="Graphviz's `dot` program, which is not installed"):
        viz.draw(out, tmp_path / "graph.svg")
    with pytest.raises(ValueError, match=r"must end in \.svg or \.png"):
        viz.draw(out, tmp_path / "graph.pdf")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_draw_renders_svg(tmp_path):
    out, _ = graph()
    path = viz.draw(out, tmp_path / "graph.svg")
    assert "<svg" in path.read_text()
