"""The backward pass, written out: `explain(loss)` runs `loss.backward()` and prints every gradient it computes.

One line per backward step, in the order the engine takes them: the op whose backward ran, the equation (the
op's one-line docstring formula with the tensors' names put in: `g` becomes the gradient of the op's output),
the gradient's shape and its norm. A tensor that feeds several ops gets one line per contribution, written
`+=` after the first; a leaf's `.grad` is their sum.

Names: `names={"x": x, ...}` (or `[("x", x), ...]`, as `graph.capture` takes them) name any tensor; `model=`
names its parameters (`0.weight`), and for a Sequential of Linear, ReLU and Dropout layers (the tutorial's
network and every MLP) it uses the tutorial's names instead: the batch X, W1, b1, Z1 = the first Linear's
output, A1 = what the next Linear reads, ... The tape then ends with the tutorial's hand-derived formulas
(`dZ2 = A2 - Y`, `dW2 = dZ2 A1^T / m`, ...) and the steps of the tape that make up each one. Anything unnamed
is `t1, t2, ...` in the order it was computed; a scalar constant is its value.

The recording costs the engine nothing: each op's `backward` is wrapped on that op's instance only, for this
one call, so the numbers printed are the ones the engine computes and accumulates.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from tinygrad_np import nn, ops
from tinygrad_np.tensor import Function, Tensor, _sum_to_shape, iter_graph

Names = Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]

# "da = ...", "dW = ...", "dp[i, t_i] = ...", "da_i = ...": where each input's clause starts in a docstring.
_CLAUSE = re.compile(r"(?:^|,\s+)d([A-Za-z]\w*)(?:\[[^\]]*\])?\s+=")
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Step:
    """One gradient the engine computed: `op`'s backward sent `grad` to `input` (its `index`-th input)."""

    number: int
    op: str
    output: str  # name of the op's output, whose gradient came in
    input: str  # name of the tensor this gradient is for
    equation: str
    grad: np.ndarray  # a copy, already reduced to the input's shape
    accumulates: bool  # a second (or later) contribution to the same tensor's gradient
    tensor: Tensor = field(repr=False, compare=False)
    output_tensor: Tensor = field(repr=False, compare=False)

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.grad))


@dataclass(frozen=True)
class Formula:
    """A hand-derived formula and the tape's steps that compute it (the last one gives its value)."""

    text: str
    gradient_of: str
    steps: tuple[int, ...]


@dataclass
class Tape:
    """What `explain` prints: the names used, each backward step, and (for an MLP) the tutorial's formulas."""

    root: str
    value: float  # the loss
    legend: list[tuple[str, str]]  # (name, what it is)
    steps: list[Step]
    formulas: list[Formula]

    def steps_for(self, name: str) -> list[Step]:
        """Every contribution to `name`'s gradient, in order (their sum is the gradient)."""
        return [step for step in self.steps if step.input == name]

    def __str__(self) -> str:
        lines = [f"backward of {self.root} = {self.value:.4g}: one line per gradient the engine computes, in its order"]
        if self.legend:
            width = max(len(name) for name, _ in self.legend)
            lines += ["", "names:"] + [f"  {name:<{width}}  {what}" for name, what in self.legend]
        rows = [("step", "backward of", "gradient", "shape", "norm")]
        rows.append(("0", "(start)", f"d{self.root} = 1", str(()), "1"))
        rows += [(str(s.number), f"{s.op}Backward", s.equation, str(s.grad.shape), f"{s.norm:.4g}") for s in self.steps]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines.append("")
        for row in rows:
            cells = [row[0].rjust(widths[0]), *(cell.ljust(w) for cell, w in zip(row[1:4], widths[1:4], strict=True))]
            lines.append("  ".join([*cells, row[4].rjust(widths[4])]).rstrip())
        if self.formulas:
            width = max(len(f.text) for f in self.formulas)
            lines += [
                "",
                "the tutorial's formulas and the steps above that compute them (the tutorial's arrays are these",
                "transposed, X = x.T; and the loss here is the batch mean, so each dZ above already holds the 1/m):",
            ]
            for f in self.formulas:
                which = ("step " if len(f.steps) == 1 else "steps ") + ", ".join(map(str, f.steps))
                lines.append(f"  {f.text:<{width}}  {which}")
        return "\n".join(lines)


def explain(loss: Tensor, model: nn.Module | None = None, names: Names | None = None, file: TextIO | None = None
            ) -> None:
    """`loss.backward()`, printing every step (see the module docstring); leaves' `.grad` are filled as usual."""
    print(backward_tape(loss, model, names), file=file or sys.stdout)


def backward_tape(loss: Tensor, model: nn.Module | None = None, names: Names | None = None) -> Tape:
    """Run `loss.backward()` and record each gradient the engine computes, with its equation and its names."""
    if not isinstance(loss, Tensor):
        raise TypeError(f"explain() takes the Tensor to differentiate (the loss), got {type(loss).__name__}")
    if not loss.requires_grad:
        raise RuntimeError("explain(): the loss does not require grad, so there is no backward pass to show; "
                           "create the parameters with requires_grad=True (and don't compute it under no_grad())")
    if loss.size != 1:
        raise ValueError(f"explain() needs a single-element loss, got shape {loss.shape}; reduce it first (.mean())")
    tensors = list(iter_graph(loss))
    for tensor in tensors:
        if tensor._ctx is not None and tensor._ctx.released:
            raise RuntimeError(f"the graph was already freed by backward() (at {tensor._ctx.name}); call explain() "
                               "instead of backward(), or call backward(retain_graph=True) first")
    legend, name_of, tutorial = _names(loss, tensors, model, names)
    if type(loss._ctx) in (ops.CrossEntropy, ops.NLLLoss):  # their formulas use the labels t and the batch size m
        m = loss._ctx.inputs[0].shape[0]
        legend += [("t", f"the labels ({m},)"), ("m", f"the batch size, {m}")]

    recorded: list[tuple[Tensor, Function, tuple[Tensor, ...], tuple[bool, ...], list[np.ndarray | None]]] = []
    wrapped = []
    for tensor in tensors:
        ctx = tensor._ctx
        if ctx is None or not tensor.requires_grad:
            continue
        inputs, needs = ctx.inputs, ctx.needs_input_grad  # backward releases them

        def recording(g: np.ndarray, ctx=ctx, out=tensor, inputs=inputs, needs=needs, run=ctx.backward) -> Any:
            grads = run(g)
            as_tuple = grads if isinstance(grads, (tuple, list)) else (grads,)
            # Copies, reduced as the engine reduces them: it may later add into these very arrays.
            copies = [None if grad is None or not need else np.array(_reduced(grad, inp), dtype=inp.dtype)
                      for grad, inp, need in zip(as_tuple, inputs, needs, strict=False)]
            recorded.append((out, ctx, inputs, needs, copies))
            return grads

        ctx.backward = recording  # on this instance only: the class, and every other graph, are untouched
        wrapped.append(ctx)
    try:
        loss.backward()
    finally:
        for ctx in wrapped:
            ctx.__dict__.pop("backward", None)
    if wrapped and not recorded:
        raise RuntimeError("explain() saw no backward step: the engine no longer calls each op's backward through "
                           "the op instance (tinygrad_np.tensor._backward changed); explain needs updating")

    steps: list[Step] = []
    seen: set[int] = set()
    for out, ctx, inputs, _, copies in recorded:
        clauses = _clauses(type(ctx))
        for index, (inp, grad) in enumerate(zip(inputs, copies, strict=False)):
            if grad is None:
                continue
            accumulates = id(inp) in seen
            seen.add(id(inp))
            equation = _equation(ctx, clauses, index, inputs, out, name_of, accumulates)
            steps.append(Step(len(steps) + 1, ctx.name, name_of[id(out)], name_of[id(inp)], equation, grad,
                              accumulates, inp, out))
    formulas = _tutorial_formulas(model, tutorial, steps, loss) if tutorial is not None else []
    return Tape(name_of[id(loss)], float(loss.data.reshape(())), legend, steps, formulas)


def _reduced(grad: np.ndarray, inp: Tensor) -> np.ndarray:
    return grad if grad.shape == inp.shape else _sum_to_shape(grad, inp.shape)


# ---- equations from the ops' docstrings -------------------------------------------------------------------


@functools.cache
def _clauses(op: type) -> tuple[tuple[str, str], ...]:
    """((input symbol, clause), ...) from the docstring's first paragraph: "y = a * b;  da = g * b, db = g * a"."""
    paragraph = (op.__doc__ or "").strip().split("\n\n")[0]
    _, _, backward = " ".join(line.strip() for line in paragraph.splitlines()).partition(";")
    backward = re.split(r";\s", backward.strip())[0]  # "...; ties split g evenly": a remark, not a formula
    backward = re.sub(r"\s{2,}\(.*\)$", "", backward)  # "  (the subgradient at 0 is 0)": likewise
    starts = list(_CLAUSE.finditer(backward))
    clauses = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(backward)
        clauses.append((match[1], backward[match.start() : end].lstrip(", ").strip()))
    return tuple(clauses)


def _equation(
    ctx: Function,
    clauses: tuple[tuple[str, str], ...],
    index: int,
    inputs: tuple[Tensor, ...],
    out: Tensor,
    name_of: dict[int, str],
    accumulates: bool,
) -> str:
    """The clause for input `index` with names put in; `d<input> = <Op>.backward(d<output>)` if there is none."""
    variadic = len(clauses) == 1 and clauses[0][0].endswith("_i")
    if not clauses or (index >= len(clauses) and not variadic):
        text = f"d{name_of[id(inputs[index])]} = {ctx.name}.backward(d{name_of[id(out)]})"
    else:
        symbols = {symbol: name_of[id(inp)] for (symbol, _), inp in zip(clauses, inputs, strict=False)}
        if variadic:
            symbols = {clauses[0][0]: name_of[id(inputs[index])]}
        symbols.update({"g": f"d{name_of[id(out)]}", "y": name_of[id(out)]})

        def rename(word: re.Match) -> str:
            token = word[0]
            if token in symbols:
                return symbols[token]
            if token.startswith("d") and token[1:] in symbols and token[1:] not in ("g", "y"):
                return "d" + symbols[token[1:]]
            return token

        text = _WORD.sub(rename, clauses[0 if variadic else index][1])
    return text.replace(" = ", " += ", 1) if accumulates else text


# ---- names ------------------------------------------------------------------------------------------------


def _names(
    loss: Tensor, tensors: list[Tensor], model: nn.Module | None, names: Names | None
) -> tuple[list[tuple[str, str]], dict[int, str], list[tuple[nn.Linear, Tensor, Tensor, int]] | None]:
    """The legend, {id(tensor): name} for every tensor of the graph, and the tutorial's layers if they apply."""
    legend: list[tuple[str, str]] = []
    name_of: dict[int, str] = {}
    in_graph = {id(t) for t in tensors}
    tutorial = None
    if model is not None:
        tutorial = _tutorial_layers(model, tensors)
        if tutorial is not None:
            for number, (linear, z, x, index) in enumerate(tutorial, start=1):
                if number == 1 and x._ctx is None:
                    name_of[id(x)] = "X"
                    legend.append(("X", f"the batch {x.shape}"))
                elif number > 1:
                    name_of[id(x)] = f"A{number - 1}"
                    legend.append((f"A{number - 1}", f"output of layer {index - 1} "
                                                     f"({type(model[index - 1]).__name__}) {x.shape}"))
                prefix = str(index)
                for short, parameter, kind in (("W", linear.weight, "weight"), ("b", linear.bias, "bias")):
                    if parameter is not None and id(parameter) in in_graph:
                        name_of[id(parameter)] = f"{short}{number}"
                        legend.append((f"{short}{number}", f"{prefix}.{kind} {parameter.shape}"))
                name_of[id(z)] = f"Z{number}"
                legend.append((f"Z{number}", f"output of layer {index} (Linear) {z.shape}"))
        else:
            for name, parameter in model.named_parameters():
                if id(parameter) in in_graph:
                    name_of[id(parameter)] = name
            batch = _model_input(model, tensors)
            if batch is not None:
                name_of[id(batch)] = "X"
                legend.append(("X", f"the batch {batch.shape}"))
    if names is not None:
        pairs = names.items() if isinstance(names, Mapping) else names
        for name, tensor in pairs:
            if not isinstance(tensor, Tensor):
                raise TypeError(f"names: {name!r} names a {type(tensor).__name__}, not a Tensor")
            name_of[id(tensor)] = str(name)
    name_of.setdefault(id(loss), "loss")
    unnamed = 0
    for tensor in tensors:
        if id(tensor) in name_of:
            continue
        if tensor._ctx is None and not tensor.requires_grad and tensor.size == 1:
            name_of[id(tensor)] = f"{tensor.data.item():g}"
        else:
            unnamed += 1
            name_of[id(tensor)] = f"t{unnamed}"
            made = f"output of {tensor._ctx.name}" if tensor._ctx is not None else (
                "a leaf that requires grad" if tensor.requires_grad else "a constant")
            legend.append((f"t{unnamed}", f"{made} {tensor.shape}"))
    return legend, name_of, tutorial


def _model_input(model: nn.Module, tensors: list[Tensor]) -> Tensor | None:
    """The batch the model was given: the constant that enters an op together with the model's first parameter
    (its first layer's weight), if there is exactly one such."""
    first = next(iter(model.parameters()), None)
    found: dict[int, Tensor] = {}
    for tensor in tensors:
        ctx = tensor._ctx
        if ctx is not None and any(given is first for given in ctx.inputs):
            for given in ctx.inputs:
                if given._ctx is None and not given.requires_grad and given.ndim >= 1:
                    found[id(given)] = given
    return next(iter(found.values())) if len(found) == 1 else None


def _tutorial_layers(model: nn.Module, tensors: list[Tensor]) -> list[tuple[nn.Linear, Tensor, Tensor, int]] | None:
    """[(Linear, its output Z, its input, index in the Sequential)] if the tutorial's names fit, else None.

    They fit a Sequential of Linear layers with ReLU (and optionally Dropout) between them, each Linear applied
    once in this graph."""
    if not isinstance(model, nn.Sequential) or not len(model):
        return None
    layers = list(model)
    kinds = "".join({nn.Linear: "L", nn.ReLU: "R", nn.Dropout: "D"}.get(type(layer), "?") for layer in layers)
    if not re.fullmatch(r"L(RD?L)*", kinds):
        return None
    made_by: dict[int, list[Tensor]] = {}
    for tensor in tensors:
        ctx = tensor._ctx
        if type(ctx) is ops.Linear and len(ctx.inputs) >= 2:
            made_by.setdefault(id(ctx.inputs[1]), []).append(tensor)
    found = []
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            outputs = made_by.get(id(layer.weight), [])
            if len(outputs) != 1:
                return None
            found.append((layer, outputs[0], outputs[0]._ctx.inputs[0], index))
    return found


# ---- the tutorial's formulas ------------------------------------------------------------------------------


def _tutorial_formulas(
    model: nn.Module, layers: list[tuple[nn.Linear, Tensor, Tensor, int]], steps: list[Step], loss: Tensor
) -> list[Formula]:
    """dZ_L = A_L - Y; per layer dW_l = dZ_l A_{l-1}^T / m, db_l = sum(dZ_l) / m; dZ_{l-1} = W_l^T dZ_l * ...

    Each with the steps that compute it: those that send a gradient to its tensor, plus, walking back, those
    that made their incoming gradient, until a tensor the formulas name (a Z) or the loss."""
    if type(loss._ctx) is not ops.CrossEntropy or steps[0].tensor is not layers[-1][1]:
        return []  # another loss, or more than the cross-entropy on top: the formulas would not be these
    count = len(layers)
    formula_tensors = {id(z) for _, z, _, _ in layers} | {id(loss)}

    def made_of(tensor: Tensor) -> tuple[int, ...] | None:
        chosen, pending = set(), [tensor]
        while pending:
            target = pending.pop()
            contributions = [s for s in steps if s.tensor is target]
            if len(contributions) != 1:
                return None  # several contributions (weight decay, a tensor used twice): not the tutorial's sum
            chosen.add(contributions[0].number)
            if id(contributions[0].output_tensor) not in formula_tensors:
                pending.append(contributions[0].output_tensor)
        return tuple(sorted(chosen))

    formulas = []
    for number in range(count, 0, -1):
        linear, z, _, index = layers[number - 1]
        previous = "X" if number == 1 else f"A{number - 1}"
        if number == count:
            texts = [(f"dZ{number} = A{number} - Y", z)]
        else:
            dropout = any(isinstance(layer, nn.Dropout) and layer.training and layer.p > 0
                          for layer in list(model)[index + 1 : layers[number][3]])
            mask = f" * M{number} / (1 - p)" if dropout else ""
            texts = [(f"dZ{number} = W{number + 1}^T dZ{number + 1}{mask} * (Z{number} > 0)", z)]
        texts.append((f"dW{number} = dZ{number} {previous}^T / m", linear.weight))
        if linear.bias is not None:
            texts.append((f"db{number} = sum(dZ{number}) / m", linear.bias))
        for text, tensor in texts:
            made = made_of(tensor)
            if made is None:
                return []
            formulas.append(Formula(text, text.split(" = ")[0], made))
    return formulas
