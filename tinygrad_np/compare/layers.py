"""The layers compare_model understands: one table entry per kind, with how people get its derivative wrong.

Adding a layer kind is one entry in `LAYER_KINDS`: its role (a "linear" layer with a weight and a bias, whose
output is ``Z_l``; an elementwise "activation" whose output is ``A_l``; or "dropout"), its name on the command
line, the derivative as the hand-derived code should write it, and the usual slips. (A layer with weights
that are not a matrix, such as Conv2d, also needs its weights' forms in `layout.py`, which knows 2-D weights,
and a batch check for 4-D inputs in `model.py`.) A slip is a wrong derivative
f'(z) written as a function of ``z`` and ``a = f(z)``; `SlippedActivation` runs autograd with it, so a hint
can say "your gradients are exactly those of the missing ReLU mask" instead of guessing from patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tinygrad_np import nn
from tinygrad_np.tensor import Function, Tensor, no_grad

Derivative = Callable[[np.ndarray, np.ndarray, nn.Module], np.ndarray]


@dataclass(frozen=True)
class Slip:
    """A wrong derivative people write, as f'(z) from z, a = f(z) and the layer; `text` names it for layer {l}."""

    text: str
    derivative: Derivative


@dataclass(frozen=True)
class LayerKind:
    """How compare_model runs one kind of layer and names what goes wrong in its hand-derived backward."""

    name: str  # the --activation name
    role: Literal["linear", "activation", "dropout"]
    formula: str = ""  # the right derivative as hand-derived code writes it, for layer {l}
    slips: tuple[Slip, ...] = ()
    kink: bool = False  # f' jumps at z = 0: a finite difference across it is unreliable


def _ones(z: np.ndarray, a: np.ndarray, layer: nn.Module) -> np.ndarray:
    return np.ones_like(z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)) without overflow warnings


LAYER_KINDS: dict[type[nn.Module], LayerKind] = {
    nn.Linear: LayerKind("linear", "linear"),
    nn.ReLU: LayerKind("relu", "activation", "dZ{l} = dA{l} * (Z{l} > 0)", (
        Slip("a missing ReLU mask: the gradient flows where Z{l} <= 0", _ones),
        Slip("relu(Z{l}) used as ReLU's derivative", lambda z, a, layer: np.maximum(z, 0)),
    ), kink=True),
    nn.LeakyReLU: LayerKind("leaky_relu", "activation", "dZ{l} = dA{l} * where(Z{l} > 0, 1, negative_slope)", (
        Slip("a missing leaky-ReLU mask: slope 1 where Z{l} <= 0", _ones),
        Slip("slope 0 where Z{l} <= 0: ReLU's derivative, not leaky ReLU's", lambda z, a, layer: (z > 0) * 1.0),
    ), kink=True),
    nn.Tanh: LayerKind("tanh", "activation", "dZ{l} = dA{l} * (1 - A{l}**2)", (
        Slip("tanh's derivative left out: dZ{l} = dA{l}", _ones),
        Slip("1 - tanh instead of 1 - tanh^2 (dZ{l} = dA{l} * (1 - A{l}))", lambda z, a, layer: 1 - a),
        Slip("1 - Z{l}^2 instead of 1 - tanh(Z{l})^2: the derivative taken of Z, not of A",
             lambda z, a, layer: 1 - z * z),
    )),
    nn.Sigmoid: LayerKind("sigmoid", "activation", "dZ{l} = dA{l} * A{l} * (1 - A{l})", (
        Slip("sigmoid's derivative left out: dZ{l} = dA{l}", _ones),
        Slip("sigmoid' without the (1 - s): s instead of s (1 - s) (dZ{l} = dA{l} * A{l})",
             lambda z, a, layer: a),
        Slip("sigmoid'(A{l}) instead of sigmoid'(Z{l}): the derivative applied to the activation",
             lambda z, a, layer: _sigmoid(a) * (1 - _sigmoid(a))),
    )),
    nn.Softmax: LayerKind("softmax", "activation"),
    nn.LogSoftmax: LayerKind("log_softmax", "activation"),
    nn.Dropout: LayerKind("dropout", "dropout"),
}
ACTIVATIONS: dict[str, type[nn.Module]] = {
    kind.name: layer for layer, kind in LAYER_KINDS.items() if kind.role == "activation"
}


@dataclass(frozen=True)
class Step:
    """One layer of the plan: its index in the Sequential, the layer, its kind, and the l of Z_l / A_l it feeds."""

    index: int
    layer: nn.Module
    kind: LayerKind
    number: int


def supported() -> str:
    return ", ".join(layer.__name__ for layer in LAYER_KINDS)


def layer_plan(model: nn.Module) -> list[Step]:
    """The Sequential's layers with their kinds, or a clear error for anything compare_model can't run."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"compare_model needs an nn.Sequential of {supported()} layers, got {type(model).__name__}")
    plan, number = [], 0
    for index, layer in enumerate(model):
        kind = LAYER_KINDS.get(type(layer))
        if kind is None:
            raise TypeError(f"layer {index} is {type(layer).__name__}; compare_model supports {supported()}")
        if kind.role == "linear":
            number += 1
        elif number == 0:
            raise TypeError(f"the Sequential must start with a Linear layer, got {type(layer).__name__} first")
        plan.append(Step(index, layer, kind, number))
    if number == 0:
        raise TypeError("the Sequential has no Linear layer: nothing to compare")
    return plan


def describe(model: nn.Sequential) -> str:
    """Linear(784, 16) -> Tanh -> Linear(16, 10) -> Sigmoid"""
    return " -> ".join(f"Linear({layer.in_features}, {layer.out_features})" if isinstance(layer, nn.Linear)
                       else type(layer).__name__ for layer in model)


def linear_steps(plan: Sequence[Step]) -> list[Step]:
    return [step for step in plan if step.kind.role == "linear"]


def activation_steps(plan: Sequence[Step]) -> list[Step]:
    return [step for step in plan if step.kind.role == "activation"]


class SlippedActivation(Function):
    """y = layer(x) unchanged;  dx = g * slip(x, y): autograd with one hand-derivation mistake, to name it"""

    def forward(self, x: np.ndarray, layer: nn.Module, slip: Slip) -> np.ndarray:
        with no_grad():
            y = layer(Tensor(x)).data
        self.x, self.y, self.layer, self.slip = x, y, layer, slip
        return y

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g * np.asarray(self.slip.derivative(self.x, self.y, self.layer), dtype=g.dtype)


def run(
    plan: Sequence[Step],
    x: Tensor,
    masks: Sequence[np.ndarray] | None = None,
    slips: Mapping[int, Slip] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run the layers in order: Z_l is the l-th Linear's output, A_l the output of the layers after it.

    Dropout layers multiply by the given keep-masks (row layout, one per Dropout) times 1 / (1 - p), as
    nn.Dropout does; without masks they are the identity (evaluation mode). `slips` ({plan position: Slip})
    gives those activations a wrong derivative.
    """
    activations: dict[str, Tensor] = {}
    out, dropout_number = x, 0
    for position, step in enumerate(plan):
        if step.kind.role == "dropout":
            if masks is not None:
                scale = masks[dropout_number] / (1.0 - step.layer.p)
                out = out * Tensor(scale.astype(out.data.dtype))
                dropout_number += 1
        elif slips and position in slips:
            out = SlippedActivation.apply(out, layer=step.layer, slip=slips[position])
        else:
            out = step.layer(out)
        activations[f"{'Z' if step.kind.role == 'linear' else 'A'}{step.number}"] = out
    return out, activations
