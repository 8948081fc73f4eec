"""What a notebook shows: Tensor's repr, a captured graph as SVG without Graphviz, plots inline."""

import importlib.util
import io
import sys

import numpy as np
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, nn

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
