"""What a notebook shows: Tensor's repr, a captured graph as SVG without Graphviz, plots inline."""

import numpy as np

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
