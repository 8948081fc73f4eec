"""What both sides differentiate: a loss, its reduction over the batch, an L2 term as written, and its sign.

Losses (``reduction="mean"`` / ``"sum"``), on the model's output ``a`` (m, k) and the labels or targets ``y``:

    ==================  =================================================  ==========================
    loss                mean                                               sum
    ==================  =================================================  ==========================
    ``cross_entropy``   -1/m sum_i log softmax(a_i)[y_i]   (a: logits)     times m
    ``nll``             -1/m sum_i a_i[y_i]                (a: log-probs)  times m
    ``mse``             1/(m k) sum_ik (a_ik - y_ik)^2     (PyTorch's)     sum_ik (a_ik - y_ik)^2
    ``quadratic``       1/m sum_i 1/2 ||a_i - y_i||^2      (Nielsen's)     sum_i 1/2 ||a_i - y_i||^2
    a callable          loss(output: Tensor, y) -> a scalar Tensor, reduced as it likes
    ==================  =================================================  ==========================

Integer labels become one-hot targets for ``mse`` and ``quadratic``. The L2 term is declared the way the
code writes it: as its gradient (``"lambd/m * W"``, ``"wd * W"``) or as the penalty (``"reg * sum(W**2)"``,
``"wd/2 * ||W||^2"``), in terms of ``m`` (the batch size), ``W`` and named constants; a plain number is
PyTorch's ``weight_decay`` (``wd/2 ||W||^2``). Either way it becomes ``c/2 ||W||^2`` on every Linear weight
(biases are not decayed), with gradient ``c W``. ``maximize=True`` is for code written for gradient ascent:
both sides then differentiate ``-(loss + L2)``, e.g. the log-likelihood.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinygrad_np.errors import UserError
from tinygrad_np.nn import functional as F
from tinygrad_np.tensor import Tensor

LOSSES = ("cross_entropy", "nll", "mse", "quadratic")
REDUCTIONS = ("mean", "sum")
LossCallable = Callable[[Tensor, np.ndarray], Tensor]


class ObjectiveError(UserError, ValueError):
    """A loss, reduction or L2 declaration that can't be read (`compare --loss/--reduction/--l2`, or the API's)."""


@dataclass(frozen=True)
class L2:
    """An L2 term as declared (`written`), and c in its gradient c * W (its penalty is c/2 ||W||^2)."""

    written: str
    coefficient: float

    def forms(self, m: int) -> str:
        """c in the forms people write, so a reader finds their own: lambd/m * W, reg * sum(W**2), wd/2 ||W||^2."""
        c = self.coefficient
        return f"l2='{c:.6g} * W', i.e. 'lambd/m * W' with lambd = {c * m:.6g} (m = {m}), " \
               f"'reg * sum(W**2)' with reg = {c / 2:.6g}, 'wd/2 * ||W||^2' with wd = {c:.6g}"


@dataclass(frozen=True)
class Objective:
    """loss (reduced over the batch) + c/2 sum ||W||^2, negated when maximized."""

    loss: str | LossCallable = "cross_entropy"
    reduction: str = "mean"
    l2: L2 | None = None
    maximize: bool = False

    @property
    def one_hot_targets(self) -> bool:
        """Whether integer labels are compared as one-hot targets (the squared losses)."""
        return self.loss in ("mse", "quadratic")

    def describe(self) -> str:
        name = getattr(self.loss, "__name__", "a callable loss") if callable(self.loss) else self.loss
        text = name if callable(self.loss) else f"{name} ({self.reduction})"
        if self.l2 is not None:
            text += f" + L2 '{self.l2.written}' (c = {self.l2.coefficient:.6g})"
        return f"-({text}), maximized" if self.maximize else text

    def __call__(self, output: Tensor, y: np.ndarray, target: np.ndarray | None, weights: list[Tensor]) -> Tensor:
        value = self._loss(output, y, target)
        if self.l2 is not None:
            for weight in weights:
                value = value + (weight * weight).sum() * (self.l2.coefficient / 2)
        return -value if self.maximize else value

    def _loss(self, output: Tensor, y: np.ndarray, target: np.ndarray | None) -> Tensor:
        if callable(self.loss):
            value = self.loss(output, y)
            if not isinstance(value, Tensor) or value.size != 1:
                raise TypeError(f"the loss callable must return a scalar Tensor (e.g. "
                                f"((output - target) ** 2).mean()), got {type(value).__name__}"
                                + (f" of shape {value.shape}" if isinstance(value, Tensor) else ""))
            return value.reshape(())
        # The library's losses take the mean; the other reductions are exact rescalings of it.
        m, k = output.shape
        if self.loss == "cross_entropy":
            return F.cross_entropy(output, y) * (m if self.reduction == "sum" else 1.0)
        if self.loss == "nll":
            return F.nll_loss(output, y) * (m if self.reduction == "sum" else 1.0)
        mean_square = F.mse_loss(output, target)
        if self.loss == "mse":
            return mean_square * (m * k if self.reduction == "sum" else 1.0)
        return mean_square * (k / 2 * (m if self.reduction == "sum" else 1.0))

    def alternatives(self) -> list[tuple[str, Objective]]:
        """Objectives a hand derivation often differentiates instead of the declared one, each with what differs."""
        out = [(f"maximize={not self.maximize} (the opposite sign)", replace(self, maximize=not self.maximize))]
        if self.l2 is not None:
            out.append(("no L2 term", replace(self, l2=None)))
        if not callable(self.loss):
            other = "sum" if self.reduction == "mean" else "mean"
            out.append((f"reduction='{other}'", replace(self, reduction=other)))
            losses = ("mse", "quadratic") if self.one_hot_targets else ()
            for loss in losses:
                for reduction in REDUCTIONS:
                    if (loss, reduction) not in ((self.loss, self.reduction), (self.loss, other)):
                        out.append((f"loss='{loss}', reduction='{reduction}'",
                                    replace(self, loss=loss, reduction=reduction)))
        return out


def make_objective(
    loss: str | LossCallable,
    reduction: str,
    l2: str | float | None,
    maximize: bool,
    constants: Mapping[str, Any],
    m: int,
) -> Objective:
    """Check the declaration and parse the L2 term; every mistake gets a message saying what is accepted."""
    if not callable(loss) and loss not in LOSSES:
        raise ObjectiveError(f"loss must be one of {', '.join(LOSSES)} or a callable loss(output, y) -> Tensor, "
                             f"got {loss!r}")
    if reduction not in REDUCTIONS:
        raise ObjectiveError(f"reduction must be 'mean' (the gradient of the batch mean, the 1/m in dW) or 'sum', "
                             f"got {reduction!r}")
    return Objective(loss, reduction, parse_l2(l2, constants, m), bool(maximize))


# ---- L2, as written ------------------------------------------------------------------------------------

_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "sum": np.sum, "square": np.square, "norm": np.linalg.norm, "abs": np.abs, "sqrt": np.sqrt,
}
_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_WEIGHT = re.compile(r"^(w|weights?|theta)_?\d*$", re.IGNORECASE)


def parse_l2(l2: str | float | None, constants: Mapping[str, Any], m: int) -> L2 | None:
    """An L2 declaration as its gradient coefficient c (dW += c W), from a number (wd) or an expression."""
    if l2 is None:
        return None
    if isinstance(l2, (int, float)) and not isinstance(l2, bool):
        if not math.isfinite(l2) or l2 < 0:
            raise ObjectiveError(
                f"l2 as a number is PyTorch's weight_decay wd (wd/2 ||W||^2) and must be >= 0, got {l2}")
        return L2(f"{l2:g}/2 * ||W||^2", float(l2)) if l2 else None
    if not isinstance(l2, str):
        raise TypeError(f"l2 must be an expression such as 'lambd/m * W' or a number, got {type(l2).__name__}")
    # ||W|| -> norm(W), and W^2 means a square here (in Python ^ is xor, binding looser than *)
    source = re.sub(r"\|\|\s*(\w+)\s*\|\|", r"norm(\1)", l2.strip()).replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise ObjectiveError(f"l2={l2!r} is not an expression; write it as the code does, e.g. 'lambd/m * W', "
                             "'reg * np.sum(W**2)' or 'wd/2 * ||W||^2'") from None
    try:
        with np.errstate(all="ignore"):  # 'W / 0': inf, refused below as not finite
            values = [_evaluate(tree.body, l2, np.full((1, 1), w), constants, m) for w in (1.0, 2.0, 3.0)]
    except (ZeroDivisionError, OverflowError) as error:  # Python numbers: '1/0 * W', '10.0**400 * W'
        raise ObjectiveError(f"l2={l2!r} can't be computed with the given constants ({error})") from None
    totals = [float(np.sum(v)) for v in values]
    if not all(math.isfinite(t) for t in totals):
        raise ObjectiveError(f"l2={l2!r} is not finite with the given constants")
    c = totals[0]
    if np.allclose(totals, [c, 2 * c, 3 * c], rtol=1e-12, atol=0) and np.ndim(values[0]) > 0:
        coefficient = c  # the gradient's form: c * W
    elif np.allclose(totals, [c, 4 * c, 9 * c], rtol=1e-12, atol=0):
        coefficient = 2 * c  # the penalty's form: c * ||W||^2, whose gradient is 2c W
    else:
        raise ObjectiveError(f"l2={l2!r} is neither a gradient term linear in W ('lambd/m * W') nor a penalty "
                             "quadratic in W ('reg * sum(W**2)')")
    if coefficient < 0:
        raise ObjectiveError(f"l2={l2!r} has a negative coefficient ({coefficient:g}); for gradient ascent declare the "
                             "penalty as for descent and maximize=True")
    return L2(l2, coefficient) if coefficient else None


def _evaluate(node: ast.AST, written: str, W: np.ndarray, constants: Mapping[str, Any], m: int) -> Any:
    """Evaluate the small arithmetic an L2 term is written in: numbers, W, m, constants, + - * / ** ^, sum/norm."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in constants:
                return float(constants[node.id])
            if node.id == "m":
                return float(m)
            if _WEIGHT.match(node.id):
                return W
            raise ObjectiveError(f"l2={written!r} uses {node.id!r}, which is not W, m or a given constant; give "
                                 f"its value in arguments (e.g. arguments={{{node.id!r}: 0.7}}, --arg {node.id}=0.7)")
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call) and not node.keywords:
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr == "sum" and not node.args:
                return np.sum(value(function.value))  # (W * W).sum()
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in _FUNCTIONS and len(node.args) == 1:
                return _FUNCTIONS[name](value(node.args[0]))
        raise ObjectiveError(f"l2={written!r}: can't read {ast.unparse(node)!r}; use numbers, W, m, constants, "
                             "+ - * / **, sum(), square(), norm() or ||W||")

    return value(node)
