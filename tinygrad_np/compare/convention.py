"""Conventions: how hand-written code lays out what the module keeps as state dict and row-major batches.

Two conventions, both fixed by the module's Linear layers (weight (out, in), bias (out,)):

* ``"tutorial"`` -- the MNIST-from-scratch tutorial's column layout. Parameters ``W1, b1, ..., WL, bL`` with
  ``W_l == state[f"{k}.weight"]`` (out, in) and ``b_l == state[f"{k}.bias"][:, None]`` (out, 1), k the index
  of the l-th Linear; the batch ``X == x.T`` is (features, m); labels ``Y`` (m,); gradients come back as
  ``dW1, db1, ...`` in the same shapes; activations ``Z_l, A_l`` are (units, m).
* ``"row"`` -- the module's own layout: parameters and gradients keyed by state-dict name ("0.weight",
  "0.bias", ...) with the module's shapes; ``x`` (m, features); activations ``Z_l, A_l`` are (m, units).

Either way the hand-written code is compared exactly as written: its arrays are compared in *its* layout,
so a bias gradient of the wrong shape shows up as a shape mismatch instead of being silently reshaped.
The 1/m is where the tutorial puts it by default (``reduction="mean"``: the gradient of the mean loss);
code that differentiates the summed loss declares ``reduction="sum"`` and autograd differentiates that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

from tinygrad_np import nn

Convention = Literal["tutorial", "row"]
CONVENTIONS = ("tutorial", "row")


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'tutorial' (W1, b1 columns, X = x.T) or 'row' (state-dict names, "
                         f"x as given), got {convention!r}")


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(state-dict prefix, layer) of each Linear in a Sequential, in order: [("0", Linear), ("2", Linear)]."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential of Linear/ReLU/Dropout layers, got {type(model).__name__}")
    return [(str(index), layer) for index, layer in enumerate(model) if isinstance(layer, nn.Linear)]


def parameter_names(model: nn.Module, convention: Convention) -> dict[str, str]:
    """{manual parameter name: state-dict name}: W1 -> 0.weight, b1 -> 0.bias, ... (identity for "row")."""
    names = {}
    for layer, (prefix, linear) in enumerate(linear_layers(model), start=1):
        for kind, short in (("weight", "W"), ("bias", "b")):
            if getattr(linear, kind) is not None:
                state_name = f"{prefix}.{kind}"
                names[f"{short}{layer}" if convention == "tutorial" else state_name] = state_name
    return names


def gradient_names(model: nn.Module, convention: Convention) -> dict[str, str]:
    """{manual gradient name: state-dict name}: dW1 -> 0.weight, db1 -> 0.bias, ... (identity for "row")."""
    return {(f"d{name}" if convention == "tutorial" else name): state_name
            for name, state_name in parameter_names(model, convention).items()}


def to_convention(state_name: str, array: np.ndarray, convention: Convention) -> np.ndarray:
    """A parameter (or its gradient) in the convention's layout: a bias becomes a column (n, 1) for "tutorial"."""
    if convention == "tutorial" and state_name.endswith(".bias"):
        return array[:, None]
    return array


def model_params(model: nn.Module, convention: Convention = "tutorial") -> dict[str, np.ndarray]:
    """Copies of the model's parameters in the convention: {"W1": 0.weight, "b1": 0.bias[:, None], ...}."""
    check_convention(convention)
    state = model.state_dict()
    return {name: to_convention(state_name, state[state_name], convention)
            for name, state_name in parameter_names(model, convention).items()}


def load_model_params(
    model: nn.Module, params: Mapping[str, np.ndarray], convention: Convention = "tutorial"
) -> nn.Module:
    """Copy parameters given in the convention into the model (0.weight = W1, 0.bias = b1[:, 0], ...)."""
    check_convention(convention)
    state = model.state_dict()
    names = parameter_names(model, convention)
    if set(params) != set(names):
        raise ValueError(f"expected exactly the parameters {sorted(names)}, got {sorted(params)}")
    new_state = {}
    for name, state_name in names.items():
        value = np.asarray(params[name])
        wanted = to_convention(state_name, state[state_name], convention).shape
        if value.shape != wanted:
            raise ValueError(f"{name} must have shape {wanted} ({convention} layout) to load into {state_name}; "
                             f"got {value.shape}")
        new_state[state_name] = value.reshape(state[state_name].shape)
    model.load_state_dict(new_state)
    return model


def batch_to_convention(x: np.ndarray, convention: Convention) -> np.ndarray:
    """The batch as hand-written code takes it: X = x.T (features, m) for "tutorial", x itself for "row"."""
    return x.T if convention == "tutorial" else x


def activation_to_convention(activation: np.ndarray, convention: Convention) -> np.ndarray:
    """An (m, units) activation in the convention's layout: (units, m) for "tutorial"."""
    return activation.T if convention == "tutorial" else activation


def tutorial_adapter(
    forward_prop: Callable[..., tuple[np.ndarray, ...]],
    backward_prop: Callable[..., tuple[np.ndarray, ...]],
) -> tuple[Callable[..., dict[str, np.ndarray]], Callable[..., dict[str, np.ndarray]]]:
    """Wrap the tutorial's own two functions, unchanged, into compare_model's (manual_forward, manual_backward).

    forward_prop(W1, b1, W2, b2, X) -> Z1, A1, Z2, A2 and
    backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y) -> dW1, db1, dW2, db2 are the tutorial's signatures.
    """

    def manual_forward(params: Mapping[str, np.ndarray], X: np.ndarray) -> dict[str, np.ndarray]:
        outputs = forward_prop(params["W1"], params["b1"], params["W2"], params["b2"], X)
        return dict(zip(("Z1", "A1", "Z2", "A2"), _four(outputs, "forward_prop", "Z1, A1, Z2, A2"), strict=True))

    def manual_backward(params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
        W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
        Z1, A1, Z2, A2 = _four(forward_prop(W1, b1, W2, b2, X), "forward_prop", "Z1, A1, Z2, A2")
        grads = backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
        return dict(zip(("dW1", "db1", "dW2", "db2"), _four(grads, "backward_prop", "dW1, db1, dW2, db2"),
                        strict=True))

    return manual_forward, manual_backward


def _four(values: object, function: str, expected: str) -> tuple:
    if not isinstance(values, (tuple, list)) or len(values) != 4:
        raise TypeError(f"{function} must return the tutorial's four arrays ({expected}), got {type(values).__name__}"
                        + (f" of length {len(values)}" if isinstance(values, (tuple, list)) else ""))
    return tuple(values)
