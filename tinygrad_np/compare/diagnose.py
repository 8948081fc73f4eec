"""Hints that check before they accuse: each names a mistake only after reproducing the user's numbers with it.

When a gradient FAILs, compare_model asks, in this order:

1. Is the declared objective what the code differentiates? The gradients of the usual alternatives (the
   opposite sign, no L2 term, the other reduction, the other squared loss) are computed by autograd; if the
   code's gradients are exactly one of them, that is said once, for the whole report, instead of blaming
   every parameter.
2. Per parameter, with the shapes equal: manual == -autograd (a sign error), manual == k * autograd (a
   missing or extra 1/m when k is m or 1/m), manual == autograd^T (a square dW transposed), manual -
   autograd == c * W (an L2 term that differs, with c in the forms people write it), and finally the
   usual slips in each activation's derivative (`tinygrad_np.compare.layers`), each run through autograd
   and named only if it reproduces the code's gradient: the ReLU mask missing where Z <= 0, 1 - tanh for
   1 - tanh^2, s for s (1 - s), ...
3. With the shapes different: the shape the formula gives in the code's own layout (dW = dZ A_prev^T in the
   column layout, A_prev^T dZ in the row layout; db summed over the batch axis, which is 1 in the column
   layout and 0 in the row layout), and what the code's shape says it did instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tinygrad_np.compare.layers import Slip, Step
from tinygrad_np.compare.layout import Layout
from tinygrad_np.compare.objective import L2, Objective
from tinygrad_np.compare.report import FAIL, GradientReport, compare_arrays, thresholds_for

Variant = Callable[..., dict[str, np.ndarray]]


@dataclass
class Case:
    """What the hints may use: the layout, the plan, the objective, m, both sides' gradients (in the code's
    layout, keyed W1, b1, ...), the weights, and autograd's gradients for another objective or a slip."""

    layout: Layout
    plan: Sequence[Step]
    objective: Objective
    m: int
    autograd: dict[str, np.ndarray]
    manual: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    variant: Variant
    names: tuple[str, ...] = ("autograd", "manual")
    per_example: bool = False


def _agrees(a: np.ndarray, b: np.ndarray) -> bool:
    return compare_arrays(a, b).verdict != FAIL


def diagnose(report: GradientReport, case: Case) -> None:
    """Replace the generic notes of FAILing gradients with checked ones, and say if the objective is what differs."""
    failing = [item for item in report.gradients if item.verdict == FAIL and item.name[1:] in case.autograd]
    if not failing:
        return
    shared = [name for name in case.autograd if name in case.manual]
    if len(shared) == len(case.autograd) and all(
            case.manual[name].shape == case.autograd[name].shape for name in shared):
        for change, alternative in case.objective.alternatives():
            grads = case.variant(alternative)
            if all(_agrees(grads[name], case.manual[name]) for name in shared):
                report.notes.insert(0, _objective_note(change, alternative, case))
                for item in failing:
                    item.pair.note = f"equals the gradient with {change}: the declared objective differs, " \
                                     "not this gradient alone (see the note below)"
                return
    unexplained = []
    for item in failing:
        name = item.name[1:]
        a, b = case.autograd[name], case.manual.get(name)
        if b is None:
            continue
        note = _shape_hint(name, a.shape, b.shape, case) if a.shape != b.shape else _value_hint(name, a, b, case)
        if note:
            item.pair.note = note
        elif a.shape == b.shape:
            unexplained.append(item)
    if unexplained:
        _name_slip(unexplained, case)


def _name_slip(items: list, case: Case) -> None:
    """The one activation slip that reproduces the most of these gradients and changes none the code has right."""
    right = [name for name in case.manual if name in case.autograd and _agrees(case.autograd[name], case.manual[name])]
    best, explained = None, []
    for slips, step in _slip_candidates(case.plan):
        grads = case.variant(slips=slips)
        if not all(_agrees(grads[name], case.manual[name]) for name in right):
            continue
        fits = [item for item in items if not _agrees(grads[item.name[1:]], case.autograd[item.name[1:]])
                and _agrees(grads[item.name[1:]], case.manual[item.name[1:]])]
        if len(fits) > len(explained):
            best, explained = (slips, step), fits
    if best is not None:
        slips, step = best
        note = _slip_text(next(iter(slips.values())), step, everywhere=len(slips) > 1)
        for item in explained:
            item.pair.note = note


def _objective_note(change: str, alternative: Objective, case: Case) -> str:
    declared = case.objective
    if alternative.maximize != declared.maximize:
        return ("every manual gradient has the opposite sign of the declared objective's: a sign error (e.g. "
                "dZ = Y - A instead of A - Y), or code written for gradient "
                f"{'ascent' if alternative.maximize else 'descent'} (declare maximize={alternative.maximize})")
    if alternative.l2 is None and declared.l2 is not None:
        return (f"every manual gradient equals the declared loss's without the L2 term '{declared.l2.written}': "
                "the L2 term is missing from your gradients, or was declared by mistake")
    if alternative.reduction != declared.reduction and alternative.loss == declared.loss:
        what = "the summed loss (no 1/m): a missing 1/m, or code for" if alternative.reduction == "sum" else \
            "the mean loss (with 1/m): an extra 1/m, or code for"
        return f"every manual gradient is that of {what} reduction='{alternative.reduction}' (declared: " \
               f"'{declared.reduction}')"
    return (f"every manual gradient is that of {change} (declared: {declared.describe()}): declare the loss your "
            "code differentiates")


# ---- equal shapes ---------------------------------------------------------------------------------------


def _value_hint(name: str, a: np.ndarray, b: np.ndarray, case: Case) -> str:
    la, lb = case.names
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scale = max(float(np.max(np.abs(a64), initial=0)), float(np.max(np.abs(b64), initial=0)))
    tolerance = thresholds_for(a, b)[1] * scale
    if scale == 0 or not (np.isfinite(a64).all() and np.isfinite(b64).all()):
        return ""
    weight = case.weights.get(name)
    declared = 0.0 if case.objective.l2 is None or weight is None else case.objective.l2.coefficient
    declared = -declared if case.objective.maximize else declared
    # The part of each gradient that is not the declared L2 term: a data term scaled by m hides under c W.
    data_a = a64 - declared * weight if declared else a64
    data_b = b64 - declared * weight if declared else b64
    for x, y in ((a64, b64), (data_a, data_b)):
        if np.max(np.abs(x + y)) <= tolerance and np.max(np.abs(x)) > tolerance:
            return f"{lb} == -{la}: a sign error"
    norm = float(np.vdot(data_a, data_a))
    if norm > 0:
        k = float(np.vdot(data_a, data_b)) / norm
        if abs(k - 1) > 1e-6 and np.max(np.abs(data_b - k * data_a)) <= tolerance:
            return _factor_text(k, case.m, la, lb)
    if a.ndim == 2 and a.shape[0] == a.shape[1] and np.max(np.abs(b64 - a64.T)) <= tolerance:
        return f"{lb} == {la}^T: transposed ({_weight_formula(case.layout, name)})"
    if weight is not None:
        w = weight.astype(np.float64)
        c = float(np.vdot(b64 - a64, w) / np.vdot(w, w)) if np.any(w) else 0.0
        if abs(c) > 0 and np.max(np.abs(b64 - a64 - c * w)) <= tolerance:
            return _l2_text(c, case)
    return ""


def _slip_candidates(plan: Sequence[Step]) -> list[tuple[dict[int, Slip], Step]]:
    """Each slip at each layer alone, then at every layer of its kind at once (a helper function used twice)."""
    candidates: list[tuple[dict[int, Slip], Step]] = []
    kinds: dict[str, list[tuple[int, Step]]] = {}
    for position, step in enumerate(plan):
        kinds.setdefault(step.kind.name, []).append((position, step))
    for layers in kinds.values():
        for slip in layers[0][1].kind.slips:  # layers of one kind share the kind, so its slips
            candidates += [({position: slip}, step) for position, step in layers]
            if len(layers) > 1:
                candidates.append(({position: slip for position, _ in layers}, layers[0][1]))
    return candidates


def _factor_text(k: float, m: int, la: str, lb: str) -> str:
    if m > 1 and abs(k / m - 1) <= 1e-3:
        return f"{lb} == m * {la} (m = {m}): a missing 1/m"
    if m > 1 and abs(k * m - 1) <= 1e-3:
        return f"{lb} == {la} / m (m = {m}): an extra 1/m"
    return f"{la} == {1 / k:.6g} * {lb}: a constant factor (a missing or extra 1/m, a 2 from the square?)"


def _l2_text(c: float, case: Case) -> str:
    declared = case.objective.l2
    if declared is not None and abs(c + declared.coefficient * (-1 if case.objective.maximize else 1)) <= \
            1e-6 * declared.coefficient:
        return f"an L2 term differs (c = {c:.6g}): the declared '{declared.written}' is missing from this gradient"
    described = L2("", abs(c)).forms(case.m)
    where = "declared: none" if declared is None else f"declared: '{declared.written}', c = {declared.coefficient:.6g}"
    return f"an L2 term differs (c = {c:.6g}): {case.names[1]} - {case.names[0]} = c * W ({where}); as written: " \
           f"{described}"


def _slip_text(slip: Slip, step: Step, everywhere: bool = False) -> str:
    number = "_l" if everywhere else step.number
    where = f"every {step.kind.name} layer" if everywhere else f"layer {number}, {step.kind.name}"
    return f"{slip.text.format(l=number)} ({where}; the right one: {step.kind.formula.format(l=number)})"


# ---- different shapes -----------------------------------------------------------------------------------


def _weight_formula(layout: Layout, name: str) -> str:
    number = name[1:]
    previous = "X" if number == "1" else f"A{int(number) - 1}"
    product = {
        ("column", "(out, in)"): f"dZ{number} {previous}^T",
        ("column", "(in, out)"): f"{previous} dZ{number}^T",
        ("row", "(out, in)"): f"dZ{number}^T {previous}",
        ("row", "(in, out)"): f"{previous}^T dZ{number}",
    }[(layout.batch, layout.forms[name])]
    return f"d{name} = {product} / m has {name}'s shape {layout.forms[name]}"


def _bias_formula(layout: Layout, name: str) -> str:
    number, form = name[1:], layout.forms[name]
    axis = layout.batch_axis()
    keep = ", keepdims=True" if form in ("(n, 1)", "(1, n)") else ""
    return f"d{name} = sum(dZ{number}, axis={axis}{keep}) / m, summed over the batch axis"


def _shape_hint(name: str, expected: tuple[int, ...], got: tuple[int, ...], case: Case) -> str:
    la, lb = case.names
    text = f"{la} has shape {expected}, {lb} {got}"
    layout = case.layout
    if name.startswith("W"):
        if got == expected[::-1]:
            return f"{text}: transposed? ({_weight_formula(layout, name)})"
        return f"{text} ({_weight_formula(layout, name)})"
    units, size = int(np.prod(expected)), int(np.prod(got))
    formula = _bias_formula(layout, name)
    if size == 1 and units > 1 and case.per_example:
        return f"{text}: bias summed over the wrong axis, the units (one example's batch axis has length 1) " \
               f"({formula})"
    if size == 1 and units > 1:
        return f"{text}: summed over all axes? ({formula})"
    if case.m in got and units not in got:
        return f"{text}: bias summed over the wrong axis, the units instead of the batch ({formula})"
    if size == units:
        return f"{text}: the bias is {expected} here; against it {got} broadcasts b - lr * d{name} to " \
               f"{np.broadcast_shapes(expected, got) if _broadcasts(expected, got) else 'an error'} ({formula})"
    return f"{text} ({formula})"


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True
