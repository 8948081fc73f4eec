"""Declarative model specs: a Sequential from plain data (JSON or TOML), and back.

A spec names the input size and the layers; each layer's input size is inferred from the one before::

    {"input_size": 784, "seed": 0, "init": "he",
     "layers": [{"type": "Linear", "out_features": 128}, {"type": "ReLU"},
                {"type": "Dropout", "p": 0.1}, {"type": "Linear", "out_features": 10}]}

Top-level fields: `input_size` (int, or a list of ints for one example's shape, e.g. [28, 28] before a
Flatten), `layers` (required), `seed` (int; every Linear's init and every Dropout mask draw from it; default
0), `init` (a scheme of `nn.init.INITS`, he, xavier, tutorial or pytorch: the default for Linear and Conv2d
layers), `dtype` ("float32" or "float64").
Layer fields: Linear `out_features`, `bias` (true), `init`, `in_features` (optional, checked against the
inferred size); LeakyReLU `negative_slope` (0.01); Softmax and LogSoftmax `axis` (-1); Dropout `p` (0.5);
Flatten `start_dim` (1, counting the batch dimension, as in PyTorch); ReLU, Tanh and Sigmoid take none.
Convolutional layers take images, `input_size` [channels, height, width] (MNIST: [1, 28, 28]), and PyTorch's
arguments, each size an int or a [height, width] pair: Conv2d `out_channels`, `kernel_size` (both required),
`stride` (1), `padding` (0, or "valid" or "same"), `dilation` (1), `bias` (true), `init`, `in_channels`
(optional, checked); MaxPool2d `kernel_size`, `stride` (omitted or null: the kernel size), `padding` (0),
`dilation` (1),
`ceil_mode` (false); AvgPool2d the same without dilation, and `count_include_pad` (true) and `divisor_override`
(null); BatchNorm1d (over (C,) or (C, L)) and BatchNorm2d (over (C, H, W)) `eps` (1e-5), `momentum` (0.1, or
null for a plain average), `affine` (true), `track_running_stats` (true), `num_features` (optional, checked).
The top-level `init` is the default of every Linear and Conv2d.

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
from tinygrad_np.nn import functional as F
from tinygrad_np.nn.init import INITS
from tinygrad_np.ops_conv import output_size
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


def cnn_spec(
    channels: Sequence[int] = (16, 32),
    hidden_size: int = 128,
    num_classes: int = 10,
    *,
    kernel_size: int = 5,
    input_size: Sequence[int] = (1, 28, 28),
    init: str = "pytorch",
    seed: int | None = _DEFAULT_SEED,
    dtype: str = "float32",
) -> Spec:
    """LeNet's shape: per entry of `channels`, Conv2d(kernel_size) -> ReLU -> MaxPool2d(2); then Flatten ->
    Linear(hidden_size) -> ReLU -> Linear(num_classes). With the defaults, 28x28 -> 24 -> 12 -> 8 -> 4: 32 x 4 x 4."""
    layers: list[Spec] = []
    for out_channels in channels:
        layers += [{"type": "Conv2d", "out_channels": out_channels, "kernel_size": kernel_size}, {"type": "ReLU"},
                   {"type": "MaxPool2d", "kernel_size": 2}]
    layers += [{"type": "Flatten"}, {"type": "Linear", "out_features": hidden_size}, {"type": "ReLU"},
               {"type": "Linear", "out_features": num_classes}]
    return {"input_size": list(input_size), "init": init, "seed": seed, "dtype": dtype, "layers": layers}


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


def _pair_field(where: str, layer: Mapping[str, Any], field: str, default: Any, minimum: int) -> list[int]:
    """An int or a [height, width] pair of ints, each at least `minimum`, as the canonical [height, width]."""
    value = layer.get(field, default)
    pair = [value, value] if _is_int(value) else value
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_is_int(v) and v >= minimum for v in pair):
        raise SpecError(f"{where}: {field!r} must be an integer or a [height, width] pair of integers, each at "
                        f"least {minimum}, got {value!r}", field)
    return [int(pair[0]), int(pair[1])]


def _flag(where: str, layer: Mapping[str, Any], field: str, default: bool) -> bool:
    value = layer.get(field, default)
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {field!r} must be true or false, got {value!r}", field)
    return value


def _images(where: str, kind: str, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise SpecError(f"{where}: {kind} needs images (channels, height, width) per example, but the previous layer "
                        f"gives shape {shape}; set 'input_size' to e.g. [1, 28, 28]")
    return shape


def _geometry(where: str, check: Callable[[], Any]) -> Any:
    """F's own checks of a convolution's or pooling's geometry, as a SpecError naming the layer."""
    try:
        return check()
    except ValueError as err:
        raise SpecError(f"{where}: {err}") from None


def _spatial(shape: Shape, kernel: Sequence[int], stride: Sequence[int], pads: Any, dilation: Sequence[int]) -> Shape:
    return tuple(output_size(n, k, s, p, d) for n, k, s, p, d in zip(shape[1:], kernel, stride, pads, dilation,
                                                                      strict=True))


def _conv2d(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
    for required in ("out_channels", "kernel_size"):
        if required not in layer:
            raise SpecError(f"{where}: missing field {required!r}", required)
    channels = _images(where, "Conv2d", shape)[0]
    if "in_channels" in layer and layer["in_channels"] != channels:
        raise SpecError(f"{where}: 'in_channels' is {layer['in_channels']!r} but the previous layer gives {channels} "
                        "channels; drop 'in_channels' (it is inferred) or fix the sizes", "in_channels")
    out_channels = _positive_int(where, "out_channels", layer["out_channels"])
    kernel = _pair_field(where, layer, "kernel_size", None, 1)
    stride = _pair_field(where, layer, "stride", 1, 1)
    dilation = _pair_field(where, layer, "dilation", 1, 1)
    padding = layer.get("padding", 0)
    if not isinstance(padding, str):
        padding = _pair_field(where, layer, "padding", 0, 0)
    pads = _geometry(where, lambda: F.conv_padding("Conv2d", padding if isinstance(padding, str) else tuple(padding),
                                                   tuple(kernel), tuple(stride), tuple(dilation)))
    _geometry(where, lambda: F._check_windows("Conv2d", shape, kernel, pads, tuple(dilation)))
    fields = {"type": "Conv2d", "out_channels": out_channels, "kernel_size": kernel, "stride": stride,
              "padding": padding, "dilation": dilation, "bias": _flag(where, layer, "bias", True),
              "init": _choice(where, "init", layer.get("init", defaults["init"]), INITS)}
    module = None
    if rng is not None:
        module = nn.Conv2d(channels, out_channels, tuple(kernel), tuple(stride),
                           padding if isinstance(padding, str) else tuple(padding), tuple(dilation), fields["bias"],
                           init=fields["init"], generator=rng, dtype=defaults["dtype"])
    return fields, module, (out_channels, *_spatial(shape, kernel, stride, pads, dilation))


def _pool(kind: str) -> Callable[..., tuple[Spec, Any, Shape]]:
    """MaxPool2d or AvgPool2d: PyTorch's fields and defaults (stride null: the kernel size)."""

    def build(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
        if "kernel_size" not in layer:
            raise SpecError(f"{where}: missing field 'kernel_size'", "kernel_size")
        _images(where, kind, shape)
        kernel = _pair_field(where, layer, "kernel_size", None, 1)
        stride = kernel if layer.get("stride") is None else _pair_field(where, layer, "stride", None, 1)
        fields: Spec = {"type": kind, "kernel_size": kernel, "stride": stride,
                        "padding": _pair_field(where, layer, "padding", 0, 0)}
        if kind == "MaxPool2d":
            fields["dilation"] = _pair_field(where, layer, "dilation", 1, 1)
        fields["ceil_mode"] = _flag(where, layer, "ceil_mode", False)
        if kind == "AvgPool2d":
            fields["count_include_pad"] = _flag(where, layer, "count_include_pad", True)
            divisor = layer.get("divisor_override")
            if divisor is not None and (not _is_int(divisor) or divisor == 0):
                raise SpecError(f"{where}: 'divisor_override' must be a nonzero integer or null, got {divisor!r}",
                                "divisor_override")
            fields["divisor_override"] = divisor if divisor is None else int(divisor)
        dilation = tuple(fields.get("dilation", (1, 1)))
        geometry = (tuple(kernel), tuple(stride), tuple(fields["padding"]), dilation)
        _geometry(where, lambda: F._check_pool_padding(kind, geometry[0], geometry[2]))
        pads = _geometry(where, lambda: F._pool_padding(kind, shape, *geometry, fields["ceil_mode"]))
        module = None
        if rng is not None:
            options = {name: value for name, value in fields.items() if name != "type"}
            module = getattr(nn, kind)(**{name: tuple(v) if isinstance(v, list) else v for name, v in options.items()})
        return fields, module, (shape[0], *_spatial(shape, kernel, stride, pads, dilation))

    return build


def _batch_norm(kind: str, ranks: tuple[int, ...]) -> Callable[..., tuple[Spec, Any, Shape]]:
    """BatchNorm1d over (C,) or (C, L) per example, BatchNorm2d over (C, H, W): num_features is inferred."""

    def build(where: str, layer: Mapping[str, Any], shape: Shape, defaults: Spec, rng: Any) -> tuple[Spec, Any, Shape]:
        if len(shape) not in ranks:
            wanted = " or ".join({1: "(C,)", 2: "(C, L)", 3: "(C, H, W)"}[r] for r in ranks)
            raise SpecError(f"{where}: {kind} needs inputs of shape {wanted} per example, but the previous layer "
                            f"gives {shape}")
        if "num_features" in layer and layer["num_features"] != shape[0]:
            raise SpecError(f"{where}: 'num_features' is {layer['num_features']!r} but the previous layer gives "
                            f"{shape[0]} channels; drop 'num_features' (it is inferred) or fix the sizes",
                            "num_features")
        eps, momentum = layer.get("eps", 1e-5), layer.get("momentum", 0.1)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
            raise SpecError(f"{where}: 'eps' must be a finite number >= 0, got {eps!r}", "eps")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
                                     or not 0 <= momentum <= 1):
            raise SpecError(f"{where}: 'momentum' must be a number in [0, 1] or null (a plain average), got "
                            f"{momentum!r}", "momentum")
        fields = {"type": kind, "eps": float(eps), "momentum": None if momentum is None else float(momentum),
                  "affine": _flag(where, layer, "affine", True),
                  "track_running_stats": _flag(where, layer, "track_running_stats", True)}
        module = None
        if rng is not None:
            options = {name: value for name, value in fields.items() if name != "type"}
            module = getattr(nn, kind)(shape[0], **options, dtype=defaults["dtype"])
        return fields, module, shape

    return build


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
    "Conv2d": (_conv2d, ("type", "out_channels", "kernel_size", "stride", "padding", "dilation", "bias", "init",
                         "in_channels")),
    "MaxPool2d": (_pool("MaxPool2d"), ("type", "kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "AvgPool2d": (_pool("AvgPool2d"), ("type", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                       "divisor_override")),
    "BatchNorm1d": (_batch_norm("BatchNorm1d", (1, 2)), ("type", "eps", "momentum", "affine", "track_running_stats",
                                                         "num_features")),
    "BatchNorm2d": (_batch_norm("BatchNorm2d", (3,)), ("type", "eps", "momentum", "affine", "track_running_stats",
                                                       "num_features")),
}
LAYER_TYPES = tuple(_LAYERS)


def _layer_state(layer: Spec, shape: Shape, dtype: str) -> list[tuple[str, Shape, str]]:
    """(name, shape, dtype) of each parameter and then each buffer a canonical layer holds, in state_dict order."""
    kind = layer["type"]
    state: list[tuple[str, Shape, str]] = []
    if kind in ("Linear", "Conv2d"):
        out = layer["out_features"] if kind == "Linear" else layer["out_channels"]
        kernel = tuple(layer["kernel_size"]) if kind == "Conv2d" else ()
        state.append(("weight", (out, shape[-1] if kind == "Linear" else shape[0], *kernel), dtype))
        if layer["bias"]:
            state.append(("bias", (out,), dtype))
    elif kind.startswith("BatchNorm"):
        channels = (shape[0],)
        if layer["affine"]:
            state += [("weight", channels, dtype), ("bias", channels, dtype)]
        if layer["track_running_stats"]:
            state += [("running_mean", channels, dtype), ("running_var", channels, dtype),
                      ("num_batches_tracked", (), "int64")]
    return state


def _count_parameters(where: str, layer: Spec, shape: Shape, before: int, dtype: str) -> int:
    """The model's parameter count with this layer added; a SpecError naming the layer past MAX_PARAMETERS."""
    state = _layer_state(layer, shape, dtype)
    total = before + sum(math.prod(entry[1]) for entry in state)
    if total > MAX_PARAMETERS:
        weight = state[0][1]
        field = "out_features" if layer["type"] == "Linear" else "out_channels"
        shown = f"{weight[1]} x {weight[0]}" if layer["type"] == "Linear" else " x ".join(map(str, weight))
        size = total * np.dtype(dtype).itemsize
        raise SpecError(
            f"{where}: {field!r} {weight[0]} makes a {shown} weight, so the model would have {total:,} parameters "
            f"({size / 2**30:,.1f} GiB of {dtype}), more than the {MAX_PARAMETERS:,} allowed; use smaller layers",
            field,
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
        fields, module, out_shape = builder(where, layer, shape, defaults, None)  # checked and counted before built
        parameters = _count_parameters(where, fields, shape, parameters, defaults["dtype"])
        if rng is not None:
            module = builder(where, layer, shape, defaults, rng)[1]
        shape = out_shape
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


def state_shapes(spec: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every parameter's and buffer's (shape, dtype) by state-dict name ("0.weight", "1.running_mean"), in
    `state_dict()` order, without allocating the model."""
    inputs: list[Shape] = []
    canonical, _ = _walk(spec, build=False, input_shapes=inputs)
    return {f"{index}.{name}": (shape, dtype)
            for index, (layer, input_shape) in enumerate(zip(canonical["layers"], inputs, strict=True))
            for name, shape, dtype in _layer_state(layer, input_shape, canonical["dtype"])}


def parameter_shapes(spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every learned parameter's shape by state-dict name ("0.weight"), without allocating the model."""
    return {name: shape for name, (shape, _) in state_shapes(spec).items()
            if name.rsplit(".", 1)[1] in ("weight", "bias")}


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
    if isinstance(module, nn.Conv2d):
        return {"type": kind, "out_channels": module.out_channels, "kernel_size": list(module.kernel_size),
                "stride": list(module.stride), "dilation": list(module.dilation), "bias": module.bias is not None,
                "padding": module.padding if isinstance(module.padding, str) else list(module.padding),
                "init": module.init, "in_channels": module.in_channels}
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        fields = {"type": kind, "kernel_size": list(module.kernel_size), "stride": list(module.stride),
                  "padding": list(module.padding), "ceil_mode": module.ceil_mode}
        if isinstance(module, nn.MaxPool2d):
            return {**fields, "dilation": list(module.dilation)}
        return {**fields, "count_include_pad": module.count_include_pad, "divisor_override": module.divisor_override}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return {"type": kind, "eps": module.eps, "momentum": module.momentum, "affine": module.affine,
                "track_running_stats": module.track_running_stats, "num_features": module.num_features}
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
