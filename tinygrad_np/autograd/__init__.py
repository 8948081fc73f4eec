"""Gradients as values: `grad` (torch.autograd.grad) and, in `functional`, Jacobians, Hessians and their products.

`grad(outputs, inputs)` returns d(outputs)/d(inputs) without touching any `.grad`. With `create_graph=True` the
backward pass is recorded, so what it returns can be differentiated again: a Hessian-vector product is
`grad((grad(loss, w, create_graph=True)[0] * v).sum(), w)`.
"""

from tinygrad_np.autograd import functional
from tinygrad_np.autograd.gradients import grad

__all__ = ["functional", "grad"]
