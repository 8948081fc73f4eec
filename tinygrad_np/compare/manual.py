"""Your own file: load its forward, backward and init functions, and build the Sequential they implement.

    code = load_manual("my_net.py")                      # or "my_net.py:forward_prop,backward_prop"
    params = init_params(code, features=784, classes=10, hidden_sizes=[10])
    model, notes = model_for(code, params, x, layout=None, activation=None)
    compare_model(model, code.backward, x, y, manual_forward=code.forward, params=params)

Functions are found by the names people give them (`forward_prop`, `forward_propagation`, `forward`, ...), or
named after the path; a dotted name reaches into a module-level object (``my_net.py:net.forward,net.backward``).
The init function is called by its arguments' names too: ``n_x, n_h, n_y``, ``input_size, hidden_size,
output_size``, ``layer_dims``, ``sizes``, ``seed``. The hidden activation (and the output's) is read off the
forward pass when it returns Z1, A1, ...: A_l is compared with each activation of Z_l.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare import binding
from tinygrad_np.compare.layers import ACTIVATIONS
from tinygrad_np.compare.layout import parameter_names, resolve_layout
from tinygrad_np.files import describe_path
from tinygrad_np.spec import SpecSequential, model_from_spec
from tinygrad_np.tensor import Tensor, no_grad

FORWARD_NAMES = ("forward_prop", "forward_propagation", "forward", "forward_pass")
BACKWARD_NAMES = ("backward_prop", "backward_propagation", "backward", "backprop", "backward_pass", "gradients")
INIT_NAMES = ("init_params", "initialize_parameters", "init_parameters", "initialize_params", "init_weights",
              "init_network")
_SIZES = {  # init argument names (normalised) -> what they mean
    "nx": "features", "inputsize": "features", "nin": "features", "d": "features", "ninput": "features",
    "ny": "classes", "outputsize": "classes", "nout": "classes", "k": "classes", "numclasses": "classes",
    "nh": "hidden", "hiddensize": "hidden", "nhidden": "hidden", "m": "hidden", "h": "hidden",
    "layerdims": "sizes", "layersdims": "sizes", "sizes": "sizes", "layersizes": "sizes",
    "seed": "seed",
}


@dataclass
class ManualCode:
    """The user's module and the functions found in it (forward and init may be None)."""

    module: ModuleType
    path: Path
    backward: Callable[..., Any]
    forward: Callable[..., Any] | None
    init: Callable[..., Any] | None


def _attribute(module: ModuleType, dotted: str, path: Path) -> Any:
    value: Any = module
    for part in dotted.split("."):
        if not hasattr(value, part):
            names = sorted(name for name, item in vars(module).items() if callable(item) and not name.startswith("_"))
            raise binding.ManualCodeError(f"{path} has no {dotted!r}; it defines {', '.join(names) or 'no functions'}")
        value = getattr(value, part)
    if not callable(value):
        raise binding.ManualCodeError(f"{dotted!r} in {path} is a {type(value).__name__}, not a function")
    return value


def load_manual(spec: str | Path) -> ManualCode:
    """Import `path[:forward,backward]` (or `path[:backward]`) and find its functions."""
    text = str(spec)
    path_text, _, names = text.rpartition(":") if ":" in text and not Path(text).exists() else (text, "", "")
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        what = "is not a Python file" if path.is_file() else describe_path(path)
        raise binding.ManualCodeError(f"{path} {what}; give my_net.py or my_net.py:forward,backward")
    name = f"tinygrad_np_manual_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so that inspect can read its functions' sources
    try:
        module_spec.loader.exec_module(module)
    except SystemExit as exit_:  # sys.exit() or argparse at the top level: it would end compare without a word
        raise binding.ManualCodeError(f"importing {path} called exit({exit_.code!r}) (code at the top level of the "
                                      "file runs on import: put it under if __name__ == '__main__')") from None
    except Exception as error:
        raise binding.ManualCodeError(f"importing {path} raised {type(error).__name__}: {error} (code at the top "
                                      "level of the file runs on import: put training under if __name__ == "
                                      "'__main__')") from error
    chosen = [part.strip() for part in names.split(",")] if names else []
    if len(chosen) > 2 or any(not part for part in chosen):
        raise binding.ManualCodeError(f"after the ':' give backward or forward,backward, got {names!r}")

    def first(candidates: Sequence[str]) -> Callable[..., Any] | None:
        return next((getattr(module, c) for c in candidates if callable(getattr(module, c, None))), None)

    backward = _attribute(module, chosen[-1], path) if chosen else first(BACKWARD_NAMES)
    forward = _attribute(module, chosen[0], path) if len(chosen) == 2 else None if chosen else first(FORWARD_NAMES)
    if backward is None:
        raise binding.ManualCodeError(f"{path} has none of {', '.join(BACKWARD_NAMES)}; name the backward function: "
                                      f"{path}:forward_name,backward_name")
    return ManualCode(module, path, backward, forward, first(INIT_NAMES))


def init_params(code: ManualCode, features: int, classes: int, hidden_sizes: Sequence[int] | None, seed: int = 0
                ) -> Any:
    """Call the code's init function with the sizes its arguments ask for; None if it has none."""
    if code.init is None:
        return None
    values = {"features": features, "classes": classes, "seed": seed,
              "hidden": None if not hidden_sizes else hidden_sizes[0],
              "sizes": None if hidden_sizes is None else [features, *hidden_sizes, classes]}
    kwargs = {}
    for parameter in inspect.signature(code.init).parameters.values():
        meaning = _SIZES.get(binding.normalise(parameter.name))
        if meaning is None or values[meaning] is None:
            if parameter.default is parameter.empty:
                need = "--hidden-sizes" if meaning in ("hidden", "sizes") else "a name compare knows"
                raise binding.ManualCodeError(f"{code.init.__name__}() takes {parameter.name}, which needs {need} "
                                              "(or give the parameters some other way)")
            continue
        kwargs[parameter.name] = values[meaning]
    if hidden_sizes and len(hidden_sizes) > 1 and any(_SIZES.get(binding.normalise(k)) == "hidden" for k in kwargs):
        raise binding.ManualCodeError(f"{code.init.__name__}() takes one hidden size, but --hidden-sizes gives "
                                      f"{len(hidden_sizes)}")
    return binding.call(code.init, binding.Environment({}, kwargs), "init")


def layer_sizes(params: Mapping[str, np.ndarray], features: int) -> list[int]:
    """[features, n1, n2, ...] from the weights' shapes, each read as (out, in) or (in, out) by what it follows."""
    sizes = [features]
    for number in range(1, len([key for key in params if key.startswith("W")]) + 1):
        weight = np.shape(params.get(f"W{number}", ()))
        if len(weight) != 2 or sizes[-1] not in weight:
            raise binding.ManualCodeError(f"W{number} has shape {weight}, which doesn't take {sizes[-1]} inputs "
                                          f"(the layer before gives {sizes[-1]})")
        sizes.append(weight[0] if weight[1] == sizes[-1] else weight[1])
    return sizes


def build_model(sizes: Sequence[int], activation: str, output_activation: str | None = None,
                dtype: Any = np.float64, generator: int | np.random.Generator = 0) -> SpecSequential:
    """Linear -> activation -> ... -> Linear [-> output activation], with the named activations (He init): the
    spec of that network, built by `model_from_spec` like every network in the project."""
    for name in (activation, output_activation):
        if name is not None and name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    layers: list[dict[str, Any]] = []
    for index, size in enumerate(sizes[1:]):
        layers.append({"type": "Linear", "out_features": size})
        last = index == len(sizes) - 2
        if not last or output_activation is not None:
            layers.append({"type": ACTIVATIONS[output_activation if last else activation].__name__})
    spec = {"input_size": sizes[0], "init": "he", "dtype": np.dtype(dtype).name, "layers": layers}
    return model_from_spec(spec, generator)


def infer_activations(
    code: ManualCode, params: Mapping[str, np.ndarray], x: np.ndarray, sizes: Sequence[int],
    layout: str | Mapping[str, str] | None, arguments: Mapping[str, Any],
) -> dict[int, str | None]:
    """{layer number: activation name} read off the forward pass: the activation f with f(Z_l) == A_l.

    None for a layer whose A_l equals its Z_l (no activation); layers the forward doesn't name are left out.
    """
    if code.forward is None:
        return {}
    probe = build_model(sizes, "relu")  # the activation doesn't change a shape, nor do the values matter here
    names = parameter_names(probe)
    resolved, _ = resolve_layout(layout, names, {k: v.shape for k, v in probe.state_dict().items()}, params)
    user = {name: np.asarray(params[name], dtype=np.float64) for name in names}
    X = resolved.batch_to_user(np.asarray(x, dtype=np.float64))
    labels = np.zeros(len(x), dtype=np.int64)
    one_hot = resolved.batch_to_user(np.eye(sizes[-1])[labels])
    values = binding.call_values(user, X, labels, one_hot, len(x), None)
    environment = binding.Environment(values, dict(arguments))
    source = binding.Source.of(code.forward)
    found = binding.forward_activations(binding.read_forward(binding.call(code.forward, environment, "forward"),
                                                             source))
    out: dict[int, str | None] = {}
    for number in range(1, len(sizes)):
        z, a = found.get(f"Z{number}"), found.get(f"A{number}")
        if z is None or a is None or np.shape(z) != np.shape(a):
            continue
        rows_z, rows_a = resolved.batch_to_user(z), resolved.batch_to_user(a)  # the transpose is its own inverse
        if np.allclose(rows_a, rows_z, rtol=1e-6, atol=1e-9):
            out[number] = None
            continue
        for name, layer in ACTIVATIONS.items():
            with no_grad():
                expected = layer()(Tensor(np.asarray(rows_z, dtype=np.float64))).data
            if expected.shape == rows_a.shape and np.allclose(expected, rows_a, rtol=1e-6, atol=1e-9):
                out[number] = name
                break
    return out


def model_for(
    code: ManualCode,
    x: np.ndarray,
    *,
    classes: int = 10,
    hidden_sizes: Sequence[int] | None = None,
    layout: str | Mapping[str, str] | None = None,
    activation: str | None = None,
    output_activation: str | None = None,
    loss: Any = "cross_entropy",
    arguments: Mapping[str, Any] | None = None,
    seed: int = 0,
    dtype: Any = np.float64,
) -> tuple[nn.Sequential, dict[str, np.ndarray], list[str]]:
    """The Sequential the code implements, the code's own parameters, and notes on what was inferred.

    Sizes come from the code's parameters (its init function, or the object its backward method belongs to),
    else from `hidden_sizes`; activations from the forward pass where it names Z_l and A_l, else from
    `activation` / `output_activation`. With the cross-entropy loss the output layer is left as logits
    (the loss applies the softmax), with NLL it is a log_softmax.
    """
    from tinygrad_np.compare.layout import model_params

    arguments = dict(arguments or {})
    features, notes = x.shape[1], []
    raw = init_params(code, features, classes, hidden_sizes, seed)
    if raw is not None:
        notes.append(f"parameters: yours, from {code.init.__name__}()")
    else:
        raw, where = binding.owner_parameters(code.backward, code.forward)
        notes += [f"parameters: yours, from {where}"] if raw is not None else []
    if raw is not None:
        if isinstance(raw, Mapping):
            params = binding.as_parameters(raw, {})
        else:
            items = list(raw)
            params = binding.as_parameters(items, {f"{'Wb'[i % 2]}{i // 2 + 1}": None for i in range(len(items))})
        sizes = layer_sizes(params, features)
    else:
        if not hidden_sizes:
            raise binding.ManualCodeError(f"{code.path} has no init function ({', '.join(INIT_NAMES)}) to read the "
                                          "layer sizes from: give them with --hidden-sizes")
        sizes = [features, *hidden_sizes, classes]
        if layout is None:
            raise binding.ManualCodeError("without parameters of your own there is nothing to read the layout from: "
                                          "give --layout column, torch or row")
        probe = build_model(sizes, "relu", generator=seed)
        resolved, _ = resolve_layout(layout, parameter_names(probe),
                                     {key: value.shape for key, value in probe.state_dict().items()}, None)
        params = model_params(probe, resolved)
        notes.append(f"parameters: He init from seed {seed} (your code has no init function)")
    inferred = infer_activations(code, params, x, sizes, layout, arguments)
    hidden = {inferred[n] for n in range(1, len(sizes) - 1) if n in inferred}
    if activation is None:
        if len(hidden) != 1 or None in hidden or len(inferred) < len(sizes) - 2:
            raise binding.ManualCodeError("can't tell the hidden activation from your forward pass (it must return "
                                          "Z1, A1, ... by name); give it: --activation "
                                          + " | ".join(ACTIVATIONS))
        activation = hidden.pop()
        notes.append(f"hidden activation {activation}, read off your forward pass")
    last = len(sizes) - 1
    if output_activation is None:
        if loss == "cross_entropy":
            output_activation = None  # the loss applies the softmax; A_L = softmax(Z_L) in the forward table
        elif loss == "nll":
            output_activation = "log_softmax"
        elif last in inferred:
            output_activation = inferred[last]
            notes.append(f"output activation {output_activation or 'none'}, read off your forward pass")
        else:
            raise binding.ManualCodeError("can't tell the output activation from your forward pass (it must return "
                                          f"Z{last}, A{last} by name); give it: --output-activation "
                                          + " | ".join(ACTIVATIONS))
    model = build_model(sizes, activation, output_activation, dtype=dtype)
    return model, params, notes
