"""Declarative model specs: a Sequential from plain data (JSON or TOML), and back.

A spec names the input size and the layers; each layer's input size is inferred from the one before::

    {"input_size": 784, "seed": 0, "init": "he",
     "layers": [{"type": "Linear", "out_features": 128}, {"type": "ReLU"},
                {"type": "Dropout", "p": 0.1}, {"type": "Linear", "out_features": 10}]}

Top-level fields: `input_size` (int, or a list of ints for one example's shape, e.g. [28, 28] before a
Flatten), `layers` (required), `seed` (int; every Linear's init and every Dropout mask draw from it; default
0), `init` (a scheme of `nn.init.INITS`, he, xavier or tutorial: the default for Linear layers), `dtype`
("float32" or "float64").
Layer fields: Linear `out_features`, `bias` (true), `init`, `in_features` (optional, checked against the
inferred size); LeakyReLU `negative_slope` (0.01); Softmax and LogSoftmax `axis` (-1); Dropout `p` (0.5);
Flatten `start_dim` (1, counting the batch dimension, as in PyTorch); ReLU, Tanh and Sigmoid take none.

`normalize_spec` fills in every default and drops what is inferred, giving the canonical form;
`spec_from_model(model_from_spec(spec)) == normalize_spec(spec)`, and the canonical form is a fixed point.

Every network in the project is built here: `mlp_spec` declares an MLP (the tutorial's 784-10-10 network is
`mlp_spec(784, [10], 10)`), recipes and command-line options produce specs, and `model_from_spec` builds them.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.creation import as_generator
from tinygrad_np.errors import MissingFileError, UserError
from tinygrad_np.files import describe_path, named_os_error
from tinygrad_np.nn.init import INITS
from tinygrad_np.tensor import Seed

Spec = dict[str, Any]

DTYPES = ("float32", "float64")
_TOP_LEVEL = ("input_size", "layers", "seed", "init", "dtype")
_DEFAULT_SEED = 0
# The most parameters a spec may declare: 100 million is 400 MB of float32 weights (1.6 GB with gradients and
# Adam's moments), far past any MLP that trains in NumPy, and it stops a typo or a tampered model file from asking
# for terabytes before anything is allocated.
MAX_PARAMETERS = 100_000_000
MAX_SPEC_FILE_BYTES = 2**20  # a spec is a few hundred bytes; a bigger file is not one



class SpecError(UserError, ValueError):
    """A model spec that can't be built; the message names the field (and layer index) at fault.

    `field` is that field's name ("out_features", "p", "seed", ...), or None when no single field is at fault.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def mlp_spec(
    input_size: int | list[int],
    hidden_sizes: Sequence[int],
    num_classes: int,
    *,
    dropout: float = 0.0,
    init: str = "he",
    seed: int | None = _DEFAULT_SEED,
    dtype: str = "float32",
) -> Spec:
    """Linear(input_size, h1) -> ReLU [-> Dropout(dropout)] -> ... -> Linear(h_last, num_classes): the spec."""
    layers: list[Spec] = []
    for size in hidden_sizes:
        layers += [{"type": "Linear", "out_features": size}, {"type": "ReLU"}]
        if dropout:
            layers.append({"type": "Dropout", "p": dropout})
    layers.append({"type": "Linear", "out_features": num_classes})
    return {"input_size": input_size, "init": init, "seed": seed, "dtype": dtype, "layers": layers}


# The tutorial's 784-10-10 network.
TUTORIAL_SPEC: Spec = mlp_spec(784, [10], 10)


# ---- field checks ---------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(where: str, field: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise SpecError(f"{where}: {field!r} must be a positive integer, got {value!r}", field)
    return int(value)


def _choice(where: str, field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(f"{where}: {field!r} must be one of {', '.join(map(repr, choices))}, got {value!r}", field)
    return value


def _did_you_mean(word: Any, choices: tuple[str, ...]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _unknown_fields(where: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            hint = _did_you_mean(key, allowed)
            raise SpecError(f"{where}: unknown field {key!r}{hint}; allowed fields: {', '.join(allowed)}", key)


# ---- layers: canonical fields, the module each builds, and the per-example shape it gives -----------------
#
# Each builder takes (where, layer fields, per-example input shape, spec defaults, rng) and returns
# (canonical fields, module, output shape). Shapes leave out the batch dimension.

Shape = tuple[int, ...]


def _linear(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
    if "out_features" not in layer:
        raise SpecError(f"{where}: missing field 'out_features' (the layer's output size)", "out_features")
    out_features = _positive_int(where, "out_features", layer["out_features"])
    if not shape:
        raise SpecError(f"{where}: Linear needs an input with at least one dimension")
    in_features = shape[-1]
    if "in_features" in layer and layer["in_features"] != in_features:
        raise SpecError(
            f"{where}: 'in_features' is {layer['in_features']!r} but the previous layer gives {in_features} "
            "features; drop 'in_features' (it is inferred) or fix the sizes",
            "in_features",
        )
    bias = layer.get("bias", True)
    if not isinstance(bias, bool):
        raise SpecError(f"{where}: 'bias' must be true or false, got {bias!r}", "bias")
    init = _choice(where, "init", layer.get("init", defaults["init"]), INITS)
    fields = {"type": "Linear", "out_features": out_features, "bias": bias, "init": init}
    module = None
    if rng is not None:
        module = nn.Linear(in_features, out_features, bias, init=init, generator=rng, dtype=defaults["dtype"])
    return fields, module, (*shape[:-1], out_features)


def _axis_layer(kind: str, cls: type) -> Callable[..., tuple[Spec, Any, Shape]]:
    def build(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
        axis = layer.get("axis", -1)
        rank = len(shape) + 1  # with the batch dimension
        if not _is_int(axis) or not -rank <= axis < rank:
            raise SpecError(f"{where}: 'axis' must be an integer in [{-rank}, {rank - 1}] here, got {axis!r}", "axis")
        return {"type": kind, "axis": int(axis)}, (cls(int(axis)) if rng is not None else None), shape

    return build


def _plain_layer(kind: str, cls: type) -> Callable[..., tuple[Spec, Any, Shape]]:
    def build(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
        return {"type": kind}, (cls() if rng is not None else None), shape

    return build


def _leaky_relu(
    where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any
) -> tuple[Spec, Any, Shape]:
    slope = layer.get("negative_slope", 0.01)
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not math.isfinite(slope):
        raise SpecError(f"{where}: 'negative_slope' (the slope below 0) must be a finite number, got {slope!r}",
                        "negative_slope")
    module = nn.LeakyReLU(float(slope)) if rng is not None else None
    return {"type": "LeakyReLU", "negative_slope": float(slope)}, module, shape


def _dropout(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
    p = layer.get("p", 0.5)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise SpecError(f"{where}: 'p' (the probability of zeroing a unit) must be a number in [0, 1), got {p!r}", "p")
    return {"type": "Dropout", "p": float(p)}, (nn.Dropout(float(p), rng) if rng is not None else None), shape


def _flatten(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
    start_dim = layer.get("start_dim", 1)
    if not _is_int(start_dim) or not 1 <= start_dim <= max(len(shape), 1):
        raise SpecError(
            f"{where}: 'start_dim' must be an integer in [1, {max(len(shape), 1)}] for an input of shape "
            f"(batch, {', '.join(map(str, shape))}), got {start_dim!r}",
            "start_dim",
        )
    start_dim = int(start_dim)
    kept = shape[: start_dim - 1]
    flat = math.prod(shape[start_dim - 1 :])
    module = nn.Flatten(start_dim) if rng is not None else None
    return {"type": "Flatten", "start_dim": start_dim}, module, (*kept, flat)


_LAYERS: dict[str, tuple[Callable[..., tuple[Spec, Any, Shape]], tuple[str, ...]]] = {
    "Linear": (_linear, ("type", "out_features", "bias", "init", "in_features")),
    "ReLU": (_plain_layer("ReLU", nn.ReLU), ("type",)),
    "LeakyReLU": (_leaky_relu, ("type", "negative_slope")),
    "Tanh": (_plain_layer("Tanh", nn.Tanh), ("type",)),
    "Sigmoid": (_plain_layer("Sigmoid", nn.Sigmoid), ("type",)),
    "Softmax": (_axis_layer("Softmax", nn.Softmax), ("type", "axis")),
    "LogSoftmax": (_axis_layer("LogSoftmax", nn.LogSoftmax), ("type", "axis")),
    "Dropout": (_dropout, ("type", "p")),
    "Flatten": (_flatten, ("type", "start_dim")),
}
LAYER_TYPES = tuple(_LAYERS)


def _count_parameters(where: str, layer: Mapping[str, Any], shape: Shape, before: int, dtype: str) -> int:
    """The model's parameter count with this Linear added; a SpecError naming the layer past MAX_PARAMETERS."""
    out_features = _positive_int(where, "out_features", layer["out_features"])
    in_features = shape[-1] if shape else 1
    total = before + in_features * out_features + (out_features if layer.get("bias", True) is True else 0)
    if total > MAX_PARAMETERS:
        size = total * np.dtype(dtype).itemsize
        raise SpecError(
            f"{where}: 'out_features' {out_features} makes a {in_features} x {out_features} weight, so the model "
            f"would have {total:,} parameters ({size / 2**30:,.1f} GiB of {dtype}), more than the "
            f"{MAX_PARAMETERS:,} allowed; use smaller layers",
            "out_features",
        )
    return total


def _input_shape(value: Any) -> Shape:
    if _is_int(value):
        return (_positive_int("spec", "input_size", value),)
    if isinstance(value, (list, tuple)) and value and all(_is_int(v) and v >= 1 for v in value):
        return tuple(int(v) for v in value)
    raise SpecError(
        f"spec: 'input_size' must be a positive integer or a non-empty list of them (one example's shape, "
        f"e.g. 784 or [28, 28]), got {value!r}",
        "input_size",
    )


def _walk(
    spec: Any, build: bool, input_shapes: list[Shape] | None = None, generator: np.random.Generator | None = None
) -> tuple[Spec, list[Any]]:
    """Validate `spec`; return its canonical form and (if build) the layers' modules, drawn from `generator`
    if given, else from the spec's seed.

    `input_shapes`, if given, receives each layer's input shape (without the batch dimension)."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"a model spec must be a mapping (a JSON object or TOML table), got {type(spec).__name__}")
    _unknown_fields("spec", spec, _TOP_LEVEL)
    if "input_size" not in spec:
        raise SpecError("spec: missing field 'input_size' (the size of one input example, e.g. 784)", "input_size")
    shape = _input_shape(spec["input_size"])
    input_size: int | list[int] = shape[0] if _is_int(spec["input_size"]) else list(shape)
    seed = spec.get("seed", _DEFAULT_SEED)
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise SpecError(f"spec: 'seed' must be a non-negative integer, got {seed!r}", "seed")
    defaults = {
        "init": _choice("spec", "init", spec.get("init", "he"), INITS),
        "dtype": _choice("spec", "dtype", spec.get("dtype", "float32"), DTYPES),
    }
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError(f"spec: 'layers' must be a non-empty list of layer tables, got {layers!r}", "layers")
    rng = (generator if generator is not None else as_generator(seed)) if build else None
    canonical_layers, modules = [], []
    parameters = 0
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        if not isinstance(layer, Mapping):
            raise SpecError(f"{where}: a layer must be a mapping with a 'type', got {layer!r}")
        kind = layer.get("type")
        if not isinstance(kind, str) or kind not in _LAYERS:
            hint = _did_you_mean(kind, LAYER_TYPES)
            raise SpecError(f"{where}: 'type' must be one of {', '.join(LAYER_TYPES)}, got {kind!r}{hint}", "type")
        builder, allowed = _LAYERS[kind]
        where = f"{where} ({kind})"
        _unknown_fields(where, layer, allowed)
        if input_shapes is not None:
            input_shapes.append(shape)
        if kind == "Linear" and "out_features" in layer:
            parameters = _count_parameters(where, layer, shape, parameters, defaults["dtype"])
        fields, module, shape = builder(where, layer, shape, defaults, rng)
        canonical_layers.append(fields)
        modules.append(module)
    canonical = {
        "input_size": input_size,
        "dtype": defaults["dtype"],
        "seed": None if seed is None else int(seed),
        "layers": canonical_layers,
    }
    return canonical, modules


def normalize_spec(spec: Mapping[str, Any]) -> Spec:
    """The canonical form: every default filled in, `init` moved into each Linear, inferred sizes dropped."""
    return _walk(spec, build=False)[0]


def parameter_shapes(spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape by state-dict name ("0.weight"), without allocating the model."""
    inputs: list[Shape] = []
    canonical, _ = _walk(spec, build=False, input_shapes=inputs)
    shapes = {}
    for index, (layer, shape) in enumerate(zip(canonical["layers"], inputs, strict=True)):
        if layer["type"] == "Linear":
            shapes[f"{index}.weight"] = (layer["out_features"], shape[-1])
            if layer["bias"]:
                shapes[f"{index}.bias"] = (layer["out_features"],)
    return shapes


class SpecSequential(nn.Sequential):
    """The Sequential `model_from_spec` builds: its layers, and what only the spec knows about them.

    `input_size` is one example's shape (784, or [28, 28] before a Flatten), `seed` the seed the weights were
    drawn from (None when they came from a Generator), `dtype` the spec's dtype; `spec_from_model` reads them.
    """

    def __init__(self, *layers: nn.Module, input_size: int | list[int], seed: int | None, dtype: str) -> None:
        super().__init__(*layers)
        self.input_size = input_size
        self.seed = seed
        self.dtype = dtype


def model_from_spec(spec: Mapping[str, Any], seed: Seed = None) -> SpecSequential:
    """Build the Sequential a spec describes (raises SpecError naming the layer index and field at fault).

    `seed`, when given, replaces the spec's own (e.g. a command line's --seed); it may be a Generator, which
    the layers then draw from in order (and the model records seed None).
    """
    generator = None
    if isinstance(seed, np.random.Generator):
        generator, seed = seed, None
    if seed is not None:
        spec = {**spec, "seed": seed} if isinstance(spec, Mapping) else spec
    canonical, modules = _walk(spec, build=True, generator=generator)
    return SpecSequential(
        *modules,
        input_size=canonical["input_size"],
        seed=None if generator is not None else canonical["seed"],
        dtype=canonical["dtype"],
    )


# ---- model -> spec --------------------------------------------------------------------------------------


def _layer_fields(index: int, module: nn.Module) -> Spec:
    kind = type(module).__name__
    if type(module) is not getattr(nn, kind, None) or kind not in _LAYERS:
        raise SpecError(
            f"layers[{index}]: {kind} can't be written as a spec; specs hold the nn layers "
            f"{', '.join(LAYER_TYPES)} in an nn.Sequential"
        )
    if isinstance(module, nn.Linear):
        return {"type": kind, "out_features": module.out_features, "bias": module.bias is not None,
                "init": module.init, "in_features": module.in_features}
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return {"type": kind, "axis": module.axis}
    if isinstance(module, nn.LeakyReLU):
        return {"type": kind, "negative_slope": module.negative_slope}
    if isinstance(module, nn.Dropout):
        return {"type": kind, "p": module.p}
    if isinstance(module, nn.Flatten):
        return {"type": kind, "start_dim": module.start_dim}
    return {"type": kind}


def spec_from_model(model: nn.Module, input_size: int | list[int] | None = None) -> Spec:
    """The canonical spec of a Sequential of nn layers (the architecture; the weights are not part of it).

    `input_size` defaults to what `model_from_spec` recorded, else the first Linear's `in_features` (which
    only works when no Flatten comes before it: then pass `input_size`).
    """
    if not isinstance(model, nn.Sequential):
        raise SpecError(f"only nn.Sequential models can be written as a spec, got {type(model).__name__}")
    layers = [_layer_fields(i, module) for i, module in enumerate(model)]
    built = model if isinstance(model, SpecSequential) else None
    if input_size is None and built is not None:
        input_size = built.input_size
    if input_size is None:
        for layer in layers:
            if layer["type"] == "Flatten":
                break
            if layer["type"] == "Linear":
                input_size = layer["in_features"]
                break
    if input_size is None:
        raise SpecError(
            "can't infer the model's input size (no Linear before the first Flatten); "
            "pass input_size=, e.g. [28, 28]"
        )
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) > 1:
        raise SpecError(f"the model mixes parameter dtypes {sorted(map(str, dtypes))}; cast it with .astype() first")
    dtype = str(dtypes.pop()) if dtypes else built.dtype if built is not None else "float32"
    seed = built.seed if built is not None else None
    return normalize_spec({"input_size": input_size, "dtype": dtype, "seed": seed, "layers": layers})


# ---- files ----------------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike) -> Spec:
    """Read a spec from a .json or .toml file and return its canonical form (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model spec {path} {describe_path(path)}; expected a .json or .toml file")
    suffix = path.suffix.lower()
    try:
        if suffix not in (".json", ".toml"):
            raise SpecError(f"{path}: a model spec must be a .json or .toml file, got {suffix or 'no suffix'!r}")
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_SPEC_FILE_BYTES + 1)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # Python's message names the file
        except OSError as err:
            raise named_os_error(err, path, "read") from err
        if len(data) > MAX_SPEC_FILE_BYTES:
            raise SpecError(f"{path}: more than {MAX_SPEC_FILE_BYTES:,} bytes; a model spec is a short text file")
        text = data.decode("utf-8")
        raw = json.loads(text) if suffix == ".json" else tomllib.loads(text)
        return normalize_spec(raw)
    except RecursionError:  # both parsers recurse once per level of [ or {
        raise SpecError(f"{path}: nested too deeply to be a model spec (lists or tables inside one another)") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: not valid JSON: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text: {err}") from None
    except SpecError as err:
        message = str(err)
        raise SpecError(message if message.startswith(str(path)) else f"{path}: {message}") from None
