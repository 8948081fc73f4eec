"""Layouts: how hand-written code lays out the batch, the weights and the biases that a Sequential keeps its way.

The module keeps PyTorch's shapes: a batch ``x`` is (m, features), a Linear's weight is (out, in), its bias (n,).
Hand-written code comes in three common layouts, each a named `Layout`:

    ===========  =====================  ==========  =================  ===============================
    layout       X                      W           b                  who writes it
    ===========  =====================  ==========  =================  ===============================
    ``column``   (features, m) = x.T    (out, in)   (n, 1)             the tutorial, Andrew Ng, Nielsen
    ``torch``    (m, features)          (out, in)   (n,)               PyTorch's own state dict
    ``row``      (m, features)          (in, out)   (n,) or (1, n)     cs231n, most NumPy MLPs
    ===========  =====================  ==========  =================  ===============================

Activations Z_l, A_l follow X: (units, m) in the column layout, (m, units) otherwise. Anything else is a
per-parameter map, ``{"X": "column" | "row", "W1": "(in, out)", "b1": "(1, n)", ...}``. Given the code's own
parameters, `resolve_layout` detects the layout from their shapes where that is unambiguous and says so.

Parameters are named as the tutorial names them: W1, b1, ..., WL, bL for the Linear layers in order
(`parameter_names`). Hand-written code is compared exactly as written, in its layout: a gradient of the
wrong shape is reported, never reshaped away -- except a bias gradient that differs from its bias only by
axes of length 1 and broadcasts back to the bias's size ((1, n) for an (n,) bias in the row layout), which
updates the bias correctly and is compared as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare.layers import LAYER_KINDS

WEIGHT_FORMS = ("(out, in)", "(in, out)")
BIAS_FORMS = ("(n, 1)", "(n,)", "(1, n)")
BATCH_FORMS = ("column", "row")
# name: (batch, weight form, bias form); "tutorial" is the column layout's older name.
NAMED_LAYOUTS = {
    "column": ("column", "(out, in)", "(n, 1)"),
    "tutorial": ("column", "(out, in)", "(n, 1)"),
    "torch": ("row", "(out, in)", "(n,)"),
    "row": ("row", "(in, out)", "(n,)"),
}
LAYOUT_HELP = ("layout='column' (X = x.T, W (out, in), b (n, 1)), 'torch' (x, W (out, in), b (n,)), 'row' "
               "(x, W (in, out), b (n,) or (1, n)), or a per-parameter map such as {'X': 'row', 'W1': '(in, out)', "
               "'b1': '(1, n)', ...}")


def parameter_names(model: nn.Module) -> dict[str, str]:
    """{manual name: state-dict name}: W1 -> 0.weight, b1 -> 0.bias, W2 -> 2.weight, ... for each layer with
    weights (role "linear" in the layer table), in order."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential, got {type(model).__name__}")
    names, number = {}, 0
    for index, layer in enumerate(model):
        kind = LAYER_KINDS.get(type(layer))
        if kind is not None and kind.role == "linear":
            number += 1
            names[f"W{number}"] = f"{index}.weight"
            if layer.bias is not None:
                names[f"b{number}"] = f"{index}.bias"
    return names


@dataclass(frozen=True)
class Layout:
    """The batch's orientation and each parameter's form, e.g. column / {"W1": "(out, in)", "b1": "(n, 1)"}."""

    batch: str
    forms: Mapping[str, str]
    name: str = "custom"

    def describe(self) -> str:
        weights = sorted({form for key, form in self.forms.items() if key.startswith("W")})
        biases = sorted({form for key, form in self.forms.items() if key.startswith("b")})
        x = "X (features, m) = x.T" if self.batch == "column" else "X (m, features)"
        parts = [x, "W " + " / ".join(weights)] + (["b " + " / ".join(biases)] if biases else [])
        return f"{self.name}: {', '.join(parts)}" if self.name != "custom" else ", ".join(parts)

    def to_user(self, name: str, state: np.ndarray) -> np.ndarray:
        """A parameter (or its gradient) from the module's shape into this layout's."""
        form = self.forms[name]
        if form == "(in, out)":
            return state.T
        if form == "(n, 1)":
            return state[:, None]
        if form == "(1, n)":
            return state[None, :]
        return state

    def to_state(self, name: str, user: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """A parameter in this layout back in the module's shape (the caller has checked the shape)."""
        return np.ascontiguousarray((user.T if self.forms[name] == "(in, out)" else user).reshape(shape))

    def user_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.to_user(name, np.empty(shape)).shape

    def batch_to_user(self, x: np.ndarray) -> np.ndarray:
        """The batch (or an (m, units) activation) as the code holds it: transposed in the column layout."""
        return x.T if self.batch == "column" else x

    def batch_axis(self) -> int:
        return 1 if self.batch == "column" else 0


def named_layout(name: str, names: Mapping[str, str]) -> Layout:
    if name not in NAMED_LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; use {LAYOUT_HELP}")
    batch, weight, bias = NAMED_LAYOUTS[name]
    return Layout(batch, {key: weight if key.startswith("W") else bias for key in names},
                  "column" if name == "tutorial" else name)


def _detect_form(name: str, user_shape: tuple[int, ...], state_shape: tuple[int, ...]) -> str | None:
    """The form of one parameter from its shape; None where two forms fit (a square W, a bias of one unit)."""
    if name.startswith("W"):
        candidates = {form: state_shape if form == "(out, in)" else state_shape[::-1] for form in WEIGHT_FORMS}
    else:
        (n,) = state_shape
        candidates = {"(n, 1)": (n, 1), "(n,)": (n,), "(1, n)": (1, n)}
    fits = [form for form, shape in candidates.items() if shape == tuple(user_shape)]
    if not fits:
        wanted = " or ".join(str(shape) for shape in dict.fromkeys(candidates.values()))
        raise ValueError(f"your {name} has shape {tuple(user_shape)}, but the model's layer needs {wanted} "
                         f"(the module's {state_shape}); is the model built with the same layer sizes?")
    return fits[0] if len(fits) == 1 else None


def resolve_layout(
    layout: str | Mapping[str, str] | None,
    names: Mapping[str, str],
    state_shapes: Mapping[str, tuple[int, ...]],
    user_params: Mapping[str, np.ndarray] | None,
) -> tuple[Layout, str | None]:
    """The layout to hand the code its arrays in, and how it was found ("detected from ..."; None if given).

    Forms come from the code's own parameters where their shapes decide (always, if given), then from the
    named layout or the map; the batch's orientation from the biases ((n, 1): column), the map or the name.
    """
    shapes = {key: state_shapes[state] for key, state in names.items()}
    detected: dict[str, str | None] = {}
    if user_params is not None:
        missing = sorted(set(names) - set(user_params))
        if missing:
            raise ValueError(f"your parameters lack {', '.join(missing)} (have {', '.join(sorted(user_params))}); "
                             f"the model has {', '.join(names)}")
        detected = {key: _detect_form(key, np.shape(user_params[key]), shapes[key]) for key in names}

    if isinstance(layout, str):
        base = named_layout(layout, names)
        batch, forms = base.batch, dict(base.forms)
        for key, form in detected.items():
            if form is not None and form != forms[key] and not (key.startswith("b") and batch == "row"
                                                                  and form in ("(n,)", "(1, n)")):
                raise ValueError(f"layout={layout!r} has {key} as {forms[key]}, but yours is "
                                 f"{np.shape(user_params[key])} = {form}; drop layout= to use what your shapes say, "
                                 f"or pass a per-parameter map")
            forms[key] = form or forms[key]
        return Layout(batch, forms, _name_of(batch, forms)), None

    given = {}
    if isinstance(layout, Mapping):
        given = {_canonical(key): str(value).replace(" ", "").replace(",", ", ") for key, value in layout.items()}
        unknown = sorted(set(given) - set(names) - {"X"})
        if unknown:
            raise ValueError(f"the layout map names {', '.join(unknown)}, which the model doesn't have; keys are X "
                             f"and {', '.join(names)}")
        for key, form in given.items():
            allowed = BATCH_FORMS if key == "X" else WEIGHT_FORMS if key.startswith("W") else BIAS_FORMS
            if form not in allowed:
                raise ValueError(f"layout[{key!r}] must be one of {', '.join(allowed)}, got {layout[key]!r}")
    elif layout is not None:
        raise TypeError(f"layout must be a name or a per-parameter map; use {LAYOUT_HELP}")

    forms = {key: given.get(key) or detected.get(key) for key in names}
    # A square W fits both weight forms; it is taken like the other weights when they all agree (the tutorial's W2).
    weight_forms = {form for key, form in forms.items() if key.startswith("W") and form is not None}
    squares = [key for key, form in forms.items() if key.startswith("W") and form is None]
    if squares and len(weight_forms) == 1:
        forms.update(dict.fromkeys(squares, weight_forms.pop()))
    batch = given.get("X") or _batch_from_forms(forms)
    unknown = [key for key, form in forms.items() if form is None] + ([] if batch else ["X"])
    if unknown:
        why = (f"the shapes of your {', '.join(k for k in unknown if k != 'X')} fit two layouts"
               if user_params is not None and any(k != "X" for k in unknown) else
               "nothing says how X is laid out" if user_params is not None else
               "there are no parameters of yours to read it from (pass params= or a bound method of your network)")
        raise ValueError(f"can't tell the layout: {why}; pass {LAYOUT_HELP}")
    resolved = Layout(batch, forms, _name_of(batch, forms))
    note = None if isinstance(layout, Mapping) and len(given) == len(names) + 1 else \
        "detected from your parameters' shapes" + (
            f"; {', '.join(squares)} square, taken like the other weights" if squares else "")
    return resolved, note


def _batch_from_forms(forms: Mapping[str, str | None]) -> str | None:
    """column if the biases are columns (n, 1), row if (n,) or (1, n) or if a weight is (in, out); else unknown."""
    biases = {form for key, form in forms.items() if key.startswith("b") and form is not None}
    if biases == {"(n, 1)"}:
        return "column"
    if biases and "(n, 1)" not in biases:
        return "row"
    if not biases and "(in, out)" in forms.values():
        return "row"
    return None


def _name_of(batch: str, forms: Mapping[str, str]) -> str:
    for name in ("column", "torch", "row"):
        layout_batch, weight, bias = NAMED_LAYOUTS[name]
        biases_fit = all(form == bias or (name == "row" and form == "(1, n)")
                         for key, form in forms.items() if key.startswith("b"))
        if batch == layout_batch and biases_fit and all(
                form == weight for key, form in forms.items() if key.startswith("W")):
            return name
    return "custom"


def _canonical(key: str) -> str:
    if key.lower() == "x":
        return "X"
    return key[0].upper() + key[1:] if key[:1] in ("w", "W") else key[0].lower() + key[1:]


# ---- the module's parameters in a layout, and back ------------------------------------------------------


def _layout(model: nn.Module, layout: str | Layout) -> Layout:
    return layout if isinstance(layout, Layout) else named_layout(layout, parameter_names(model))


def model_params(model: nn.Module, layout: str | Layout = "column") -> dict[str, np.ndarray]:
    """Copies of the model's parameters in the layout: {"W1": 0.weight, "b1": 0.bias[:, None], ...} for column."""
    resolved, state = _layout(model, layout), model.state_dict()
    return {name: np.array(resolved.to_user(name, state[state_name]), copy=True)
            for name, state_name in parameter_names(model).items()}


def load_model_params(model: nn.Module, params: Mapping[str, Any], layout: str | Layout = "column") -> nn.Module:
    """Copy parameters given in the layout into the model (0.weight = W1, 0.bias = b1[:, 0], ... for column)."""
    resolved, state, names = _layout(model, layout), model.state_dict(), parameter_names(model)
    if set(params) != set(names):
        raise ValueError(f"expected exactly the parameters {sorted(names)}, got {sorted(params)}")
    new_state = {}
    for name, state_name in names.items():
        value = np.asarray(params[name])
        wanted = resolved.user_shape(name, state[state_name].shape)
        if value.shape != wanted:
            raise ValueError(f"{name} must have shape {wanted} ({resolved.describe()}) to load into {state_name}; "
                             f"got {value.shape}")
        new_state[state_name] = resolved.to_state(name, value, state[state_name].shape)
    model.load_state_dict(new_state)
    return model


def benign_bias_shape(gradient_shape: tuple[int, ...], bias_shape: tuple[int, ...]) -> bool:
    """A bias gradient that updates the bias correctly though its shape differs: (1, n) for (n,), or (n,) for (1, n).

    It must hold the same n values and broadcast against the bias without growing it: b - lr * db keeps
    b's values (a column (n, 1) against an (n,) gradient would broadcast to (n, n) and is not benign).
    """
    if gradient_shape == bias_shape or int(np.prod(gradient_shape)) != int(np.prod(bias_shape)):
        return False
    if tuple(d for d in gradient_shape if d != 1) != tuple(d for d in bias_shape if d != 1):
        return False
    try:
        grown = np.broadcast_shapes(gradient_shape, bias_shape)
    except ValueError:
        return False
    return int(np.prod(grown)) == int(np.prod(bias_shape))
