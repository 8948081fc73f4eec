"""compare_network: autograd beside a hand-derived forward and backward written in the module's own shapes.

`compare_model` reads hand-written MLP code in any layout and diagnoses its slips. A network whose hand-derived
code keeps PyTorch's shapes (a CNN's images (m, C, H, W), weights (O, C, KH, KW)) needs none of that: its code
names its parameters (W1 = "0.weight", ...) and the layers whose outputs it computes (Z1 = layer 0's output,
...), and both sides run on the same batch and weights. The forward table compares each named layer output;
the gradients are those of the mean cross-entropy. With ``numerical=True``, central differences of the loss
in float64, through the model's forward ops only, judge both (on a sample of entries per parameter).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare.model import KINK_DISTANCE
from tinygrad_np.compare.report import GradientReport, compare_gradients
from tinygrad_np.creation import as_generator
from tinygrad_np.gradcheck import numerical_grad
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor, no_grad

HandForward = Callable[[Mapping[str, np.ndarray], np.ndarray], Mapping[str, np.ndarray]]
HandBackward = Callable[[Mapping[str, np.ndarray], np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


def _layer_outputs(model: nn.Sequential, x: Tensor) -> list[Tensor]:
    """The input, then every layer's output in order."""
    outputs = [x]
    for layer in model:
        outputs.append(layer(outputs[-1]))
    return outputs


def _closest_kink(model: nn.Sequential, outputs: list[Tensor]) -> float:
    """How close the batch comes to a point where the loss has no derivative: a ReLU's input at 0, or two different
    values of a max-pooling window (2-D windows that tile the input) that nearly tie."""
    closest = np.inf
    for layer, inputs in zip(model, outputs, strict=False):
        data = inputs.data
        if isinstance(layer, nn.ReLU) and data.size:
            closest = min(closest, float(np.abs(data).min()))
        elif isinstance(layer, nn.MaxPool2d) and layer.stride == layer.kernel_size and layer.padding == (0, 0) \
                and layer.dilation == (1, 1):
            (kh, kw), (n, c, h, w) = layer.kernel_size, data.shape
            tiles = data[:, :, : h - h % kh, : w - w % kw].reshape(n, c, h // kh, kh, w // kw, kw)
            ranked = np.sort(tiles.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // kh, w // kw, kh * kw), axis=-1)
            gaps = ranked[..., -1] - ranked[..., -2] if kh * kw > 1 else np.empty(0)
            gaps = gaps[gaps > 0]  # an exact tie that both values keep under a step (blank pixels) is no kink
            closest = min(closest, float(gaps.min(initial=np.inf)))
    return closest


def _numerical(model: nn.Sequential, x: np.ndarray, y: np.ndarray, entries: int | None,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Central differences of the mean cross-entropy on a float64 copy: {state name: grad}, masked where an
    entry was not differenced (at most `entries` per parameter, chosen at random)."""
    model64 = copy.deepcopy(model).double()
    x64 = Tensor(np.asarray(x, dtype=np.float64))
    grads = {}
    for name, parameter in model64.named_parameters():
        parameter.data = np.ascontiguousarray(parameter.data)
        flat = parameter.data.reshape(-1)  # a view: writing into it moves the parameter
        chosen = np.arange(flat.size) if entries is None or flat.size <= entries else np.sort(
            rng.choice(flat.size, entries, replace=False))

        def loss_at(values: Tensor, flat: np.ndarray = flat, chosen: np.ndarray = chosen) -> Tensor:
            flat[chosen] = values.data
            return F.cross_entropy(model64(x64), y)

        original = flat[chosen].copy()
        with no_grad():
            (values,) = numerical_grad(loss_at, [original])
        flat[chosen] = original
        grad = np.full(parameter.shape, np.nan)
        grad.reshape(-1)[chosen] = values
        grads[name] = np.ma.masked_invalid(grad) if chosen.size < flat.size else grad
    return grads


def compare_network(
    model: nn.Sequential,
    forward: HandForward,
    backward: HandBackward,
    x: np.ndarray,
    y: np.ndarray,
    *,
    parameters: Mapping[str, str],
    layers: Mapping[str, int],
    numerical: bool = False,
    numerical_entries: int | None = 1000,
    seed: int | np.random.Generator = 0,
    names: tuple[str, str] = ("autograd", "manual"),
) -> GradientReport:
    """Autograd vs `forward(params, X)` and `backward(params, X, Y)` (Y: integer labels) on the model's weights.

    `parameters` maps the code's names to state-dict names ({"W1": "0.weight", ...}); `layers` maps the names of
    the layer outputs its forward returns to their index in the Sequential ({"Z1": 0, "A1": 1, ...}). The code's
    gradients are named "d" + its parameter names. The caller's model and its gradients are left alone.
    """
    work = copy.deepcopy(model)
    x, y = np.asarray(x), np.asarray(y)
    state = work.state_dict()
    params = {name: state[state_name] for name, state_name in parameters.items()}
    for parameter in work.parameters():
        parameter.grad = None
    every = _layer_outputs(work, Tensor(x))
    outputs = {name: every[index + 1] for name, index in layers.items()}
    loss = F.cross_entropy(every[-1], y)
    loss.backward()
    own = dict(work.named_parameters())
    autograd = {f"d{name}": own[state_name].grad for name, state_name in parameters.items()}
    manual = {name: np.asarray(value) for name, value in backward(params, x, y).items()}
    reference = None
    if numerical:
        grads = _numerical(work, x, y, numerical_entries, as_generator(seed))
        reference = {f"d{name}": grads[state_name] for name, state_name in parameters.items()}
    report = compare_gradients(autograd, manual, names, reference, reference_name="numerical",
                               aliases={f"d{name}": state_name for name, state_name in parameters.items()})
    hand_outputs = forward(params, x)
    shared = [name for name in outputs if name in hand_outputs]
    report.forward = compare_gradients({name: outputs[name].data for name in shared},
                                       {name: np.asarray(hand_outputs[name]) for name in shared}, names).gradients
    report.context = [f"loss: mean cross-entropy over the batch of {len(x)}, value {float(loss.data):.6g}",
                      f"model: {_describe(work)}"]
    if numerical and numerical_entries is not None:
        report.notes.append(f"numerical gradients on at most {numerical_entries} entries per parameter, at random")
    closest = _closest_kink(work, every) if numerical else np.inf
    if closest < KINK_DISTANCE:
        report.notes.append(f"a ReLU's input or a max-pooling near-tie is {closest:.1e} from its kink: numerical "
                            "gradients of entries feeding it can be off; a disagreement there blames no one")
    return report


def _describe(model: nn.Sequential) -> str:
    """Conv2d(1, 16, 5) -> ReLU -> MaxPool2d(2) -> ... -> Linear(128, 10)"""
    parts: list[Any] = []
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            parts.append(f"Conv2d({layer.in_channels}, {layer.out_channels}, {'x'.join(map(str, layer.kernel_size))})")
        elif isinstance(layer, nn.MaxPool2d):
            parts.append(f"MaxPool2d({'x'.join(map(str, layer.kernel_size))})")
        elif isinstance(layer, nn.Linear):
            parts.append(f"Linear({layer.in_features}, {layer.out_features})")
        else:
            parts.append(type(layer).__name__)
    return " -> ".join(parts)
