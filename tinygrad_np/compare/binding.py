"""Call hand-written forward and backward functions by their arguments' names, and read back what they return.

Each argument is looked up by its name, ignoring case and underscores:

    ==================================================  ===============================================
    argument names                                      value
    ==================================================  ===============================================
    X, x, A0, inputs, images, X_batch                   the batch, in the code's layout
    Y, y, labels, targets, y_batch, y_true              the labels (m,), or one-hot targets for the
                                                        squared losses and with targets="one_hot"
    one_hot_Y, Y_onehot, onehot, T                      the one-hot targets, in the code's layout
    m, batch_size, n_samples, num_examples              the number of examples in this call
    W1, b1, w1, W_1, weight1, bias1                     that parameter, in the code's layout
    params, parameters                                  {"W1": ..., "b1": ..., ...}
    weights, biases                                     [W1, W2, ...], [b1, b2, ...]
    dropout_masks, masks, D1, D2                        the dropout keep-masks, in the code's layout
    whatever the forward function returned              by the name it returned it under (Z1, cache), and
                                                        as a whole as ``cache`` when its return line names nothing
    whatever is in arguments=                           as given (lambd, reg, learning_rate, ...)
    ==================================================  ===============================================

A method's object gets the parameters in its attributes of those names (``self.params``, ``self.weights``,
``self.W1``) for the call, and its own values back afterwards.

What comes back is read by name too. A dict by its keys: ``dW1``, ``dw1``, ``grad_W1`` and ``W1`` all name
W1's gradient; other keys (``dZ1``, ``dA0``) are set aside. A tuple by the names in the function's return
statement when its source can be read (``return dW2, db2, dW1, db1`` in any order, ``return loss, grads``,
``return nabla_b, nabla_w`` as lists), otherwise in the order dW1, db1, ..., dWL, dbL. A number among them is
the code's own loss, which the report checks against the declared one.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import re
import textwrap
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.errors import UserError


class ManualCodeError(UserError, ValueError):
    """The hand-written code raised, or can't be called or read: the message says where, and with what."""


def normalise(name: str) -> str:
    return name.lower().replace("_", "")


VOCABULARY: dict[str, frozenset[str]] = {
    "X": frozenset({"x", "a0", "input", "inputs", "images", "xbatch", "batchx", "xtrain"}),
    "Y": frozenset({"y", "labels", "label", "targets", "target", "ybatch", "batchy", "ytrue", "ytrain"}),
    "one_hot_Y": frozenset({"onehoty", "yonehot", "onehot", "onehotlabels", "onehottargets", "yhot", "t"}),
    "m": frozenset({"m", "batchsize", "nsamples", "numexamples", "nexamples", "numsamples"}),
    "params": frozenset({"params", "parameters"}),
    "weights": frozenset({"weights", "ws"}),
    "biases": frozenset({"biases", "bs"}),
    "dropout_masks": frozenset({"dropoutmasks", "masks", "keepmasks"}),
}
_CANONICAL = {word: key for key, words in VOCABULARY.items() for word in words}
_PARAMETER = re.compile(r"^(w|weight|weights|theta|b|bias|biases)(\d+)$")
_MASK = re.compile(r"^(d|mask|dropoutmask)(\d+)$")
_ACTIVATION = re.compile(r"^([zah])(\d+)$")
_GRADIENT_PREFIXES = ("grad", "nabla", "delta", "d")
_LOSS_NAMES = frozenset({"loss", "cost", "j", "l", "objective", "likelihood", "loglikelihood", "ll", "dataloss"})
_MISSING = object()


def parameter_name(name: str) -> str | None:
    """W1 / w_1 / weight1 -> "W1"; b1 / bias1 -> "b1"; anything else None."""
    match = _PARAMETER.match(normalise(name))
    if match is None:
        return None
    return ("b" if match.group(1).startswith("b") else "W") + str(int(match.group(2)))


def gradient_name(name: str) -> tuple[str, bool] | None:
    """(parameter, whether it had a gradient prefix): dW1 / grad_W1 / nabla_w1 -> ("W1", True), W1 -> ("W1", False)."""
    key = normalise(name)
    for prefix in _GRADIENT_PREFIXES:
        if key.startswith(prefix) and (found := parameter_name(key[len(prefix):])):
            return found, True
    found = parameter_name(key)
    return (found, False) if found else None


def activation_name(name: str) -> str | None:
    """Z1 / z_1 -> "Z1", A2 / a2 / h2 -> "A2"; anything else None."""
    match = _ACTIVATION.match(normalise(name))
    if match is None or int(match.group(2)) == 0:
        return None
    return f"{'Z' if match.group(1) == 'z' else 'A'}{int(match.group(2))}"


# ---- what a function's source says about its results -----------------------------------------------------


def _definition(function: Callable[..., Any]) -> ast.FunctionDef | None:
    while isinstance(function, functools.partial):
        function = function.func
    function = inspect.unwrap(getattr(function, "__func__", function))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None  # a lambda inside an expression, a builtin, code typed at a prompt
    node = tree.body[0] if tree.body else None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function body, not descending into functions, lambdas or classes defined inside it."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield child
            yield from _own_nodes(child)


def _names(node: ast.AST | None) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, (ast.Tuple, ast.List)) and all(isinstance(item, ast.Name) for item in node.elts):
        return tuple(item.id for item in node.elts)
    return None


@dataclass
class Source:
    """The names a function returns its results under, and the names its tuples were built from."""

    returns: tuple[str, ...] | None = None
    tuples: dict[str, tuple[str, ...]] = field(default_factory=dict)  # cache = (Z1, A1, W1, ...)

    @classmethod
    def of(cls, function: Callable[..., Any]) -> Source:
        node = _definition(function)
        if node is None:
            return cls()
        returns = {_names(item.value) for item in _own_nodes(node) if isinstance(item, ast.Return)}
        tuples = {}
        for item in _own_nodes(node):
            if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                names = _names(item.value)
                if names is not None and len(names) > 1:
                    tuples[item.targets[0].id] = names
        return cls(returns.pop() if len(returns) == 1 else None, tuples)


# ---- binding arguments -----------------------------------------------------------------------------------


@dataclass
class Environment:
    """What a call can be given: the canonical values (X, Y, m, W1, ...) and names as given (forward's, arguments)."""

    values: dict[str, Any]
    named: dict[str, Any] = field(default_factory=dict)

    def lookup(self, name: str) -> Any:
        if name in self.named:
            return self.named[name]
        key = normalise(name)
        for given, value in self.named.items():
            if normalise(given) == key:
                return value
        canonical = _CANONICAL.get(key) or parameter_name(key)
        if canonical is None and (mask := _MASK.match(key)):
            canonical = f"D{int(mask.group(2))}"
        return self.values.get(canonical, _MISSING) if canonical else _MISSING


def describe(value: Any) -> str:
    """A value as the error message shows it: arrays by shape, numbers as they are, containers by their items."""
    if isinstance(value, np.ndarray):
        return str(value.shape) if value.ndim else f"{value.item():.6g}"
    if isinstance(value, (bool, int, float, np.number)):
        return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {describe(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(describe(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return type(value).__name__


def _label(function: Callable[..., Any]) -> str:
    while isinstance(function, functools.partial):
        function = function.func
    return getattr(function, "__qualname__", None) or getattr(function, "__name__", None) or repr(function)


def _where(error: BaseException, function: Callable[..., Any]) -> str:
    """ ' at my_net.py:12 (dW1 = dZ1.dot(X))': the deepest line of the user's own file in the traceback."""
    while isinstance(function, functools.partial):
        function = function.func
    code = getattr(inspect.unwrap(getattr(function, "__func__", function)), "__code__", None)
    frames = traceback.extract_tb(error.__traceback__)
    here = str(Path(__file__).resolve().parent)
    ours = [frame for frame in frames if code is not None and frame.filename == code.co_filename]
    theirs = ours or [frame for frame in frames if not frame.filename.startswith(here)
                      and "site-packages" not in frame.filename and "/numpy/" not in frame.filename]
    if not theirs:
        return ""
    frame = theirs[-1]
    return f" at {Path(frame.filename).name}:{frame.lineno}" + (f" ({frame.line.strip()})" if frame.line else "")


@contextlib.contextmanager
def _attributes_bound(function: Callable[..., Any], environment: Environment) -> Iterator[list[str]]:
    """Give a method's object the parameters in its attributes (self.params, self.weights, self.W1), then restore."""
    owner = getattr(function, "__self__", None)
    if owner is None or inspect.isclass(owner) or not hasattr(owner, "__dict__"):
        yield []
        return
    saved, shown = {}, []
    for attribute, current in list(vars(owner).items()):
        key = normalise(attribute)
        replacement: Any = _MISSING
        if _CANONICAL.get(key) == "params" and isinstance(current, Mapping):
            params = environment.values["params"]
            replacement = {name: params.get(parameter_name(name) or "", value) for name, value in current.items()}
        elif _CANONICAL.get(key) in ("weights", "biases") and isinstance(current, (list, tuple)):
            replacement = list(environment.values[_CANONICAL[key]])
        elif parameter_name(key) in environment.values:
            replacement = environment.values[parameter_name(key)]
        if replacement is not _MISSING:
            saved[attribute] = current
            setattr(owner, attribute, replacement)
            shown.append(f"self.{attribute}={describe(replacement)}")
    try:
        yield shown
    finally:
        for attribute, value in saved.items():
            setattr(owner, attribute, value)


def call(function: Callable[..., Any], environment: Environment, role: str) -> Any:
    """function(**what its argument names ask for); its own errors come back as a ManualCodeError saying so."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise ManualCodeError(f"the {role} function {_label(function)} has no signature to bind by name; "
                              "wrap it in a def naming its arguments") from None
    args, kwargs, missing = [], {}, []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = environment.lookup(parameter.name)
        if value is _MISSING:
            if parameter.default is parameter.empty:
                missing.append(parameter.name)
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[parameter.name] = value
    layers = [name for name in missing if parameter_name(name)]
    if layers:
        have = [name for name in environment.values if parameter_name(name) == name]
        raise ManualCodeError(f"{role} function {_label(function)}{signature} takes {', '.join(layers)}, but the model "
                              f"has only {', '.join(have)}: build it with the layers your code has (--hidden-sizes)")
    if missing:
        given = sorted(set(environment.named))
        raise ManualCodeError(
            f"{role} function {_label(function)}{signature} takes {', '.join(missing)}, which can't be bound by name: "
            "compare passes X, Y, one_hot_Y, m, W1, b1, ..., params, weights, biases"
            + (f", what forward returned ({', '.join(given)})" if given else "")
            + "; give anything else its value in arguments={...} (--arg NAME=VALUE)")
    with _attributes_bound(function, environment) as attributes:
        try:
            return function(*args, **kwargs)
        except ManualCodeError:
            raise
        except Exception as error:
            passed = ", ".join([*(describe(value) for value in args),
                                *(f"{name}={describe(value)}" for name, value in kwargs.items()), *attributes])
            raise ManualCodeError(f"your {role} function {_label(function)} raised {type(error).__name__}: "
                                  f"{error}{_where(error, function)}; it was called with {passed}") from error


# ---- reading results -------------------------------------------------------------------------------------


def read_forward(result: Any, source: Source) -> dict[str, Any]:
    """Everything the forward function returned, by name (a tuple without readable names: Z1, A1, Z2, A2, ...)."""
    if isinstance(result, Mapping):
        named = {str(key): value for key, value in result.items()}
    elif isinstance(result, (tuple, list)):
        labels = source.returns
        if labels is not None and len(labels) == len(result):
            named = dict(zip(labels, result, strict=True))
        elif len(result) % 2 == 0 and all(isinstance(item, np.ndarray) for item in result):
            named = {f"{'ZA'[i % 2]}{i // 2 + 1}": item for i, item in enumerate(result)}
        else:
            named = {}
    else:
        named = {source.returns[0]: result} if source.returns is not None and len(source.returns) == 1 else {}
    if source.returns is None:
        named.setdefault("cache", result)  # what backward(..., cache) means when the return line names nothing
    for label, value in list(named.items()):  # what a returned dict or a tuple named in the source holds
        if isinstance(value, Mapping):
            for key, item in value.items():
                named.setdefault(str(key), item)
        elif isinstance(value, (tuple, list)) and len(source.tuples.get(label, ())) == len(value):
            for key, item in zip(source.tuples[label], value, strict=True):
                named.setdefault(key, item)
    return named


def forward_activations(named: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays among the forward's results named like activations: {"Z1": ..., "A1": ..., ...}."""
    found = {}
    for key, value in named.items():
        if (name := activation_name(key)) is not None and isinstance(value, np.ndarray):
            found.setdefault(name, value)
    return found


@dataclass
class Gradients:
    """The gradients read from a backward function's result, its own loss value, and what was set aside."""

    grads: dict[str, np.ndarray] = field(default_factory=dict)
    prefixed: set[str] = field(default_factory=set)
    loss: float | None = None
    ignored: list[str] = field(default_factory=list)

    def put(self, label: str, value: Any, names: Sequence[str], sizes: Mapping[str, int]) -> None:
        found = gradient_name(label)
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.put(str(key), item, names, sizes)
        elif found is not None and found[0] in names:
            name, prefixed = found
            if prefixed or name not in self.prefixed:  # dW1 beats W1 when a dict holds both
                self.grads[name] = np.asarray(value)
                self.prefixed |= {name} if prefixed else set()
        elif isinstance(value, (list, tuple)) and (kind := _list_kind(label)) is not None:
            for number, item in enumerate(value, start=1):
                if f"{kind}{number}" in names:
                    self.grads[f"{kind}{number}"] = np.asarray(item)
        elif _is_number(value) and (normalise(label) in _LOSS_NAMES or not label):
            self.loss = float(np.asarray(value))
        else:
            self.ignored.append(label)


def _list_kind(label: str) -> str | None:
    key = normalise(label)
    for prefix in (*_GRADIENT_PREFIXES, ""):
        rest = key[len(prefix):] if key.startswith(prefix) else None
        if rest in ("w", "weights", "ws"):
            return "W"
        if rest in ("b", "biases", "bs"):
            return "b"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) or (isinstance(value, np.ndarray) and value.ndim == 0)


def read_gradients(result: Any, source: Source, names: Sequence[str], sizes: Mapping[str, int],
                   role: str = "backward") -> Gradients:
    """The parameter gradients in a backward function's result; a clear error when none can be found in it."""
    out = Gradients()
    if isinstance(result, Mapping):
        out.put("", result, names, sizes)
    elif isinstance(result, (tuple, list)):
        labels = source.returns
        if labels is not None and len(labels) == len(result):
            for label, value in zip(labels, result, strict=True):
                out.put(label, value, names, sizes)
        else:
            _read_positionally(list(result), out, names, sizes)
    elif source.returns is not None and len(source.returns) == 1:
        out.put(source.returns[0], result, names, sizes)
    if not out.grads:
        raise ManualCodeError(
            f"the {role} function returned {describe(result)}, with no gradients in it that compare can name; "
            f"return a dict keyed {', '.join(f'd{n}' for n in names)}, a tuple in that order, or (loss, grads)")
    return out


def _read_positionally(values: list[Any], out: Gradients, names: Sequence[str], sizes: Mapping[str, int]) -> None:
    """A tuple whose names can't be read: dW1, db1, ... in order, (loss, grads), or two lists told apart by size."""
    if len(values) == len(names) and not any(isinstance(v, (Mapping, list, tuple)) for v in values):
        # A number among them is a gradient summed to a scalar (np.sum(dZ)), which the table will show.
        out.grads.update({name: np.asarray(value) for name, value in zip(names, values, strict=True)})
        return
    if len(values) == 2 and all(isinstance(v, (list, tuple)) for v in values):
        weight_sizes = [sizes[name] for name in names if name.startswith("W")]
        first_is_weights = [np.size(item) for item in values[0]] == weight_sizes
        for label, group in zip(("nabla_w", "nabla_b") if first_is_weights else ("nabla_b", "nabla_w"), values,
                                strict=True):
            out.put(label, group, names, sizes)
        return
    for value in values:
        if isinstance(value, Mapping) or _is_number(value):
            out.put("", value, names, sizes)


# ---- the hand-written side, whole -----------------------------------------------------------------------


def as_parameters(params: Any, names: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The code's own parameters as {"W1": ..., "b1": ...}: from a dict keyed W1/w1/..., or a tuple W1, b1, W2, ..."""
    if isinstance(params, Mapping):
        found = {parameter_name(str(key)): np.asarray(value) for key, value in params.items()}
        return {key: value for key, value in found.items() if key is not None}
    if isinstance(params, (tuple, list)) and len(params) == len(names):
        return {name: np.asarray(value) for name, value in zip(names, params, strict=True)}
    raise TypeError(f"params must be a dict keyed {', '.join(names)} or a tuple in that order, got "
                    f"{describe(params)}")


def owner_parameters(*functions: Callable[..., Any] | None) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The parameters held by the object a method belongs to (self.params, self.weights/self.biases, self.W1)."""
    for function in functions:
        owner = getattr(function, "__self__", None)
        if owner is None or not hasattr(owner, "__dict__"):
            continue
        found, where = {}, []
        for attribute, value in vars(owner).items():
            kind = _CANONICAL.get(normalise(attribute))
            if kind == "params" and isinstance(value, Mapping):
                found.update(as_parameters(value, {}))
            elif kind in ("weights", "biases") and isinstance(value, (list, tuple)):
                found.update({f"{'W' if kind == 'weights' else 'b'}{i}": np.asarray(v)
                              for i, v in enumerate(value, start=1)})
            elif (name := parameter_name(attribute)) is not None and isinstance(value, np.ndarray):
                found[name] = value
            else:
                continue
            where.append(f"self.{attribute}")
        if found:
            return found, f"{type(owner).__name__} ({', '.join(where)})"
    return None, None


class HandWritten:
    """The hand-written forward and backward, called by argument name, once per batch or once per example."""

    def __init__(self, forward: Callable[..., Any] | None, backward: Callable[..., Any],
                 arguments: Mapping[str, Any]) -> None:
        self.forward, self.backward, self.arguments = forward, backward, dict(arguments)
        self.forward_source = Source.of(forward) if forward is not None else None
        self.backward_source = Source.of(backward)

    def __call__(self, values: dict[str, Any], names: list[str], sizes: dict[str, int]
                 ) -> tuple[dict[str, np.ndarray], Gradients]:
        environment = Environment(values, dict(self.arguments))
        activations: dict[str, np.ndarray] = {}
        if self.forward is not None:
            named = read_forward(call(self.forward, environment, "forward"), self.forward_source)
            owner = getattr(self.forward, "__self__", None)
            if owner is not None and hasattr(owner, "__dict__"):  # forward kept them on self (self.z1, self.a1)
                for attribute, value in vars(owner).items():
                    if activation_name(attribute) and isinstance(value, np.ndarray):
                        named.setdefault(attribute, value)
            activations = forward_activations(named)
            environment.named = {**named, **self.arguments}
        result = call(self.backward, environment, "backward")
        return activations, read_gradients(result, self.backward_source, names, sizes)


def call_values(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, one_hot: np.ndarray, m: int,
            masks: list[np.ndarray] | None) -> dict[str, Any]:
    """What a call can be given, as fresh copies: the code may write into its arguments."""
    params = {name: value.copy() for name, value in params.items()}
    values: dict[str, Any] = {"X": X.copy(), "Y": Y.copy(), "one_hot_Y": one_hot.copy(), "m": m, "params": params,
                              "weights": [params[n] for n in params if n.startswith("W")],
                              "biases": [params[n] for n in params if n.startswith("b")], **params}
    if masks is not None:
        values["dropout_masks"] = [mask.copy() for mask in masks]
        values.update({f"D{i}": mask for i, mask in enumerate(values["dropout_masks"], start=1)})
    return values
