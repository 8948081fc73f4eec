"""compare_model: autograd on a model vs the user's hand-written backward, optionally judged by numerical grads.

The model is a ``Sequential`` of the layers in `tinygrad_np.compare.layers` (Linear and the activations,
Dropout). It is run layer by layer on a deep copy (the caller's model and its ``.grad`` are left alone), so
each layer's output can be compared with the hand-written forward pass: ``Z_l`` is the l-th Linear's output,
``A_l`` the output of the layers after it; with the cross-entropy loss on logits, ``A_L = softmax(Z_L)``.
A forward pass that differs explains every gradient after it, so the forward table comes first.

Both sides differentiate the declared objective (`tinygrad_np.compare.objective`): a loss reduced over the
batch, an L2 term as the code writes it, and a sign. Dropout layers use the given keep-masks M as
``A * M / (1 - p)``; without masks they are skipped (evaluation mode). The hand-written functions are called
by their arguments' names (`tinygrad_np.compare.binding`) with arrays in their layout
(`tinygrad_np.compare.layout`), at the code's own parameter values when those are given.

With ``numerical=True`` a third source judges: central differences of the objective on a float64 copy of the
model, evaluated through the model's forward ops only, so it shares no code with either backward. For
large parameters only ``numerical_entries`` entries are differenced: up to half where the two sides disagree
most, the rest at random (from ``seed``); the report says how many.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare import binding
from tinygrad_np.compare.diagnose import Case, diagnose
from tinygrad_np.compare.layers import Slip, Step, activation_steps, layer_plan, linear_steps, run
from tinygrad_np.compare.layout import Layout, benign_bias_shape, load_model_params, parameter_names, resolve_layout
from tinygrad_np.compare.objective import LossCallable, Objective, make_objective
from tinygrad_np.compare.report import FAIL, GradientReport, compare_arrays, compare_gradients
from tinygrad_np.creation import as_generator
from tinygrad_np.gradcheck import numerical_grad
from tinygrad_np.tensor import Tensor, no_grad

# A kink input (ReLU at 0) closer than this may be crossed by a finite-difference step.
KINK_DISTANCE = 1e-4


# ---- the batch and the targets ---------------------------------------------------------------------------


def _check_batch(plan: list[Step], x: Any, y: Any, objective: Objective) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    features = linear_steps(plan)[0].layer.in_features
    if x.ndim != 2 or x.shape[1] != features:
        hint = " (the column layout's X is x.T: pass x as (m, features))" if x.ndim == 2 and x.shape[0] == features \
            else ""
        raise ValueError(f"x must be (m, {features}), one row per example, got shape {x.shape}{hint}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must hold floats (e.g. images / 255), got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("the batch is empty: pass at least one example")
    m, classes = x.shape[0], linear_steps(plan)[-1].layer.out_features
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and y.shape[0] == m:
        if y.min() < 0 or y.max() >= classes:
            raise ValueError(f"labels must lie in [0, {classes}), got min {y.min()}, max {y.max()}")
        return x, y.astype(np.int64)
    if y.shape == (m, classes) and np.issubdtype(y.dtype, np.floating) and \
            (objective.one_hot_targets or callable(objective.loss)):
        return x, y
    wanted = f"(m,) = ({m},) integer class labels" + (
        f", or ({m}, {classes}) float targets" if objective.one_hot_targets or callable(objective.loss) else "")
    raise ValueError(f"y must be {wanted}, got dtype {y.dtype} shape {y.shape}")


def _target_rows(y: np.ndarray, classes: int, dtype: np.dtype) -> np.ndarray:
    """(m, classes) targets: one-hot rows for labels, float targets as given."""
    if y.ndim == 2:
        return y.astype(dtype)
    rows = np.zeros((y.size, classes), dtype=dtype)
    rows[np.arange(y.size), y] = 1
    return rows


def _row_masks(plan: list[Step], masks: Sequence[np.ndarray] | None, layout: Layout, m: int
               ) -> list[np.ndarray] | None:
    """The keep-masks in row layout (m, units), one per Dropout layer, checked."""
    if masks is None:
        return None
    dropouts = [index for index, step in enumerate(plan) if step.kind.role == "dropout"]
    if len(masks) != len(dropouts):
        raise ValueError(f"dropout_masks needs one mask per Dropout layer ({len(dropouts)}), got {len(masks)}")
    row = []
    for number, (index, mask) in enumerate(zip(dropouts, masks, strict=True), start=1):
        if plan[index].layer.p >= 1:
            raise ValueError(f"Dropout layer {plan[index].index} has p = {plan[index].layer.p}: nothing is kept and "
                             "the 1 / (1 - p) scale is infinite; use p < 1")
        units = next(step.layer.out_features for step in reversed(plan[:index]) if step.kind.role == "linear")
        mask = layout.batch_to_user(np.asarray(mask, dtype=np.float64))  # the layout's own transpose undoes it
        if mask.shape != (m, units):
            raise ValueError(f"dropout mask {number} must be {layout.batch_to_user(np.empty((m, units))).shape} in "
                             f"the {layout.batch} layout, got {np.shape(masks[number - 1])}")
        row.append(mask)
    return row


# ---- autograd and the numerical referee -------------------------------------------------------------------


def _weights(plan: list[Step]) -> list[Tensor]:
    return [step.layer.weight for step in linear_steps(plan)]


def _autograd(
    work: nn.Sequential,
    x: np.ndarray,
    y: np.ndarray,
    target: np.ndarray,
    objective: Objective,
    masks: list[np.ndarray] | None,
    slips: Mapping[int, Slip] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Tensor], Tensor, float]:
    """{state name: grad}, the activations, the output and the objective's value, from one forward/backward."""
    plan = layer_plan(work)
    for _, parameter in work.named_parameters():
        parameter.grad = None
    output, activations = run(plan, Tensor(x), masks, slips)
    value = objective(output, y, target, _weights(plan))
    value.backward()
    grads = {name: parameter.grad for name, parameter in work.named_parameters()}
    missing = [name for name, grad in grads.items() if grad is None]
    if missing:
        raise RuntimeError(f"autograd left no gradient for {missing}: is requires_grad off on those parameters?")
    return grads, activations, output, float(value.data)


def _select_entries(size: int, limit: int | None, disagreement: np.ndarray | None, rng: np.random.Generator
                    ) -> np.ndarray:
    """Flat indices to difference: all of them, or the worst disagreements and a random rest."""
    if limit is None or size <= limit:
        return np.arange(size)
    chosen = np.array([], dtype=np.int64)
    if disagreement is not None:
        order = np.argsort(disagreement.ravel(), kind="stable")[::-1]
        chosen = order[disagreement.ravel()[order] > 0][: limit // 2]  # ties at 0 say nothing: sample those
    rest = np.setdiff1d(np.arange(size), chosen)
    return np.sort(np.concatenate([chosen, rng.choice(rest, size=limit - chosen.size, replace=False)]))


def numerical_gradients(
    model: nn.Sequential,
    x: np.ndarray,
    y: np.ndarray,
    *,
    objective: Objective | None = None,
    dropout_masks: Sequence[np.ndarray] | None = None,
    entries: int | None = None,
    disagreement: Mapping[str, np.ndarray] | None = None,
    seed: int | np.random.Generator = 0,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Central differences of the objective on a float64 copy: {state name: grad (a masked array if sampled)}.

    The objective defaults to the mean cross-entropy; `dropout_masks` here are in the row layout (m, units),
    one per Dropout layer. Also returns {state name: number of entries differenced}.
    """
    objective = objective or Objective()
    model64 = copy.deepcopy(model).double()  # float32 -> float64 is exact: the same function, finer steps
    plan = layer_plan(model64)
    x64 = Tensor(np.asarray(x, dtype=np.float64))
    target = _target_rows(y, linear_steps(plan)[-1].layer.out_features, np.float64)
    rng = as_generator(seed)
    grads, counts = {}, {}
    for name, parameter in model64.named_parameters():
        worst = None if disagreement is None else disagreement.get(name)
        chosen = _select_entries(parameter.data.size, entries, worst, rng)
        parameter.data = np.ascontiguousarray(parameter.data)  # so that reshape(-1) is a view, never a copy
        flat = parameter.data.reshape(-1)  # writing into it moves the parameter

        def objective_at(values: Tensor, flat=flat, chosen=chosen) -> Tensor:
            flat[chosen] = values.data
            output, _ = run(plan, x64, dropout_masks)
            return objective(output, y, target, _weights(plan))

        original = flat[chosen].copy()
        with no_grad():
            (values,) = numerical_grad(objective_at, [original])
        flat[chosen] = original
        grad = np.full(parameter.data.shape, np.nan)
        grad.reshape(-1)[chosen] = values
        grads[name] = np.ma.masked_invalid(grad) if chosen.size < grad.size else grad
        counts[name] = int(chosen.size)
    return grads, counts


def _take(array: np.ndarray, index: int, axis: int) -> np.ndarray:
    """Example `index` along the batch axis, keeping the axis (a column stays a column)."""
    return np.take(array, [index], axis=axis) if array.ndim > axis else array[index:index + 1]


def _hand_written(
    code: binding.HandWritten, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, one_hot: np.ndarray,
    masks: list[np.ndarray] | None, axis: int, per_example: bool, reduction: str, sizes: dict[str, int],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float | None, list[str]]:
    """The code's gradients, its forward activations, its own loss and what it returned besides: from one call
    on the batch, or one call per example with the gradients (and losses) summed or averaged."""
    m, order = X.shape[axis], list(sizes)
    if not per_example:
        activations, read = code(binding.call_values(params, X, Y, one_hot, m, masks), order, sizes)
        return read.grads, activations, read.loss, read.ignored
    grads: dict[str, np.ndarray] = {}
    pieces: dict[str, list[np.ndarray]] = {}
    loss: float | None = 0.0
    for i in range(m):
        example = binding.call_values(params, _take(X, i, axis), _take(Y, i, axis) if Y.ndim == 2 else Y[i:i + 1],
                                      _take(one_hot, i, axis), 1,
                                      None if masks is None else [_take(mask, i, axis) for mask in masks])
        activations, read = code(example, order, sizes)
        for name, grad in read.grads.items():
            if name in grads and grads[name].shape != grad.shape:
                raise binding.ManualCodeError(f"the per-example gradient of {name} has shape {grad.shape} for "
                                              f"example {i} but {grads[name].shape} before")
            grads[name] = grads.get(name, 0) + grad.astype(np.result_type(grad, np.float64))
        for name, activation in activations.items():
            pieces.setdefault(name, []).append(activation)
        loss = None if read.loss is None or loss is None else loss + read.loss
    if reduction == "mean":
        grads = {name: grad / m for name, grad in grads.items()}
        loss = None if loss is None else loss / m
    activations = {name: np.concatenate(parts, axis=axis) for name, parts in pieces.items()
                   if all(np.ndim(part) == 2 and np.shape(part)[axis] == 1 for part in parts)}
    return grads, activations, loss, read.ignored


# ---- compare_model ---------------------------------------------------------------------------------------


def compare_model(
    model: nn.Sequential,
    manual_backward: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    manual_forward: Callable[..., Any] | None = None,
    layout: str | Mapping[str, str] | None = None,
    params: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
    loss: str | LossCallable = "cross_entropy",
    reduction: str = "mean",
    l2: str | float | None = None,
    arguments: Mapping[str, Any] | None = None,
    targets: Literal["labels", "one_hot"] | None = None,
    per_example: bool = False,
    maximize: bool = False,
    dropout_masks: Sequence[np.ndarray] | None = None,
    numerical: bool = False,
    numerical_entries: int | None = 1000,
    seed: int | np.random.Generator = 0,
    names: Sequence[str] = ("autograd", "manual"),
) -> GradientReport:
    """Autograd's gradients of the model's objective vs the hand-written backward, per layer and parameter.

    `manual_backward` (and `manual_forward`, whose results it may take by name) are called by their
    arguments' names with arrays in the code's `layout` ("column", "torch", "row" or a per-parameter map;
    detected from the code's own parameters when None). `params` are those parameters (a dict or a tuple
    W1, b1, ...); a method of an object that holds them (``net.backprop``) brings its own. The objective is
    `loss` reduced by `reduction`, plus the `l2` term as the code writes it (``"lambd/m * W"``) with the
    values of its names in `arguments`, negated with `maximize` (gradient ascent). `targets` says whether Y
    is given as labels or one-hot (default: one-hot for the squared losses). With `per_example` the code
    sees one example at a time and the per-example gradients are summed or averaged as `reduction` says.
    """
    arguments = dict(arguments or {})
    if targets not in (None, "labels", "one_hot"):
        raise ValueError(f"targets must be 'labels' or 'one_hot' (how Y is handed to your code), got {targets!r}")
    plan = layer_plan(model)
    m = np.shape(x)[0] if np.ndim(x) else 0
    objective = make_objective(loss, reduction, l2, maximize, arguments, m)
    x, y = _check_batch(plan, x, y, objective)
    param_names = parameter_names(model)
    state_shapes = {name: value.shape for name, value in model.state_dict().items()}

    context, first, notes = [f"loss: {objective.describe()}"], [], []
    user_params, source = (binding.as_parameters(params, param_names), "params=") if params is not None else \
        binding.owner_parameters(manual_backward, manual_forward)
    layout_, detected = resolve_layout(layout, param_names, state_shapes, user_params)
    context.append(f"layout: {layout_.describe()}" + (f" ({detected})" if detected else ""))

    # Autograd on a copy, so the caller's parameters and their accumulated .grad stay as they were; at the
    # code's own parameter values (and in their float dtype) when it brought them.
    work = copy.deepcopy(model)
    dtype = np.dtype(model[linear_steps(plan)[0].index].weight.dtype)
    if user_params is not None:
        floats = [value.dtype for value in user_params.values() if np.issubdtype(value.dtype, np.floating)]
        dtype = np.result_type(*floats) if floats else dtype
        work.astype(dtype)
        load_model_params(work, {name: user_params[name] for name in param_names}, layout_)
        context.append(f"parameters: yours, from {source}")
    else:
        work.astype(dtype)
    plan_work = layer_plan(work)
    classes = linear_steps(plan)[-1].layer.out_features
    masks = _row_masks(plan, dropout_masks, layout_, x.shape[0])
    xd, target = x.astype(dtype), _target_rows(y, classes, dtype)
    state_grads, activations, output, value = _autograd(work, xd, y, target, objective, masks)
    autograd = {name: layout_.to_user(name, state_grads[state]) for name, state in param_names.items()}

    # The hand-written side, in its layout.
    state = work.state_dict()
    params_user = {name: layout_.to_user(name, state[state_name]) for name, state_name in param_names.items()}
    X, one_hot = layout_.batch_to_user(xd), layout_.batch_to_user(target)
    one_hot_wanted = targets == "one_hot" or (targets is None and (objective.one_hot_targets or y.ndim == 2))
    Y = one_hot if one_hot_wanted else y
    user_masks = None if masks is None else [layout_.batch_to_user(mask.astype(dtype)) for mask in masks]
    manual_code = binding.HandWritten(manual_forward, manual_backward, arguments)
    manual, manual_activations, own_loss, ignored = _hand_written(
        manual_code, params_user, X, Y, one_hot, user_masks, layout_.batch_axis(), per_example, reduction,
        {name: int(np.prod(state_shapes[state])) for name, state in param_names.items()})
    if per_example:
        combined = "averaged" if reduction == "mean" else "summed"
        context.append(f"per example: {x.shape[0]} calls, the gradients {combined}")

    # A bias gradient of shape (1, n) for an (n,) bias (or the reverse) updates the bias correctly.
    reshaped = []
    for name, grad in list(manual.items()):
        wanted = autograd[name].shape
        if name.startswith("b") and benign_bias_shape(grad.shape, wanted):
            manual[name] = grad.reshape(wanted)
            reshaped.append(f"d{name} {grad.shape}")
    if reshaped:
        notes.append(f"bias gradients shaped differently from their biases but updating them the same: "
                     f"{', '.join(reshaped)}; compared as the biases' shapes")
    if ignored:
        notes.append(f"set aside from your backward's result (not parameter gradients): {', '.join(ignored)}")
    if own_loss is not None:
        close = compare_arrays(np.float64(value), np.float64(own_loss)).verdict != FAIL
        notes.append(f"your code's own loss {own_loss:.10g} {'equals' if close else 'differs from'} the declared "
                     f"objective's {value:.10g}" + ("" if close else ": is the declared loss what your code computes?"))

    autograd_named = {f"d{name}": grad for name, grad in autograd.items()}
    manual_named = {f"d{name}": grad for name, grad in manual.items()}
    aliases = {f"d{name}": state_name for name, state_name in param_names.items()}
    reference = None
    if numerical:
        disagreement = {}
        for name, state_name in param_names.items():
            b = manual.get(name)
            if b is not None and b.shape == autograd[name].shape:
                gap = np.abs(autograd[name].astype(np.float64) - b.astype(np.float64))
                gap = np.where(np.isfinite(gap), gap, np.inf)  # NaN on one side is the worst disagreement
                disagreement[state_name] = layout_.to_state(name, gap, state_shapes[state_name])
        grads, counts = numerical_gradients(work, xd, y, objective=objective, dropout_masks=masks,
                                            entries=numerical_entries, disagreement=disagreement, seed=seed)
        reference = {f"d{name}": _masked_to_user(layout_, name, grads[state_name])
                     for name, state_name in param_names.items()}
        sampled = [f"d{name} {counts[state_name]} of {grads[state_name].size}" for name, state_name in
                   param_names.items() if counts[state_name] < grads[state_name].size]
        if sampled:
            notes.append(f"numerical gradients on a sample of entries (up to half where {names[0]} and "
                         f"{names[1]} differ most, the rest at random): {', '.join(sampled)}")
        kinks = [f"Z{step.number}" for step in activation_steps(plan_work) if step.kind.kink]
        closest = min((float(np.min(np.abs(activations[key].data))) for key in kinks), default=np.inf)
        if closest < KINK_DISTANCE:
            notes.append(f"an activation's input is {closest:.1e} from its kink: numerical gradients of entries "
                         "feeding it can be off; a disagreement there blames no one")

    report = compare_gradients(autograd_named, manual_named, names, reference, reference_name="numerical",
                               aliases=aliases)
    report.context = context

    if manual_forward is not None:
        auto_activations = {key: layout_.batch_to_user(tensor.data) for key, tensor in activations.items()}
        last = f"A{len(linear_steps(plan))}"
        if last not in auto_activations and objective.loss == "cross_entropy":  # the softmax inside the loss
            auto_activations[last] = layout_.batch_to_user(output.softmax(axis=-1).data)
        report.forward = _forward_table(auto_activations, manual_activations, names)
        first_bad = next((item.name for item in report.forward if item.verdict == FAIL), None)
        if first_bad is not None:
            first.append(f"the forward pass differs first at {first_bad}: fix it before reading the gradients")
        if not report.forward:
            notes.append("your forward function returned no arrays named Z1, A1, ...: no forward table")

    variants: dict[str, dict[str, np.ndarray]] = {}

    def variant(alternative: Objective | None = None, slips: Mapping[int, Slip] | None = None
                ) -> dict[str, np.ndarray]:
        key = repr((alternative, None if slips is None else sorted((k, v.text) for k, v in slips.items())))
        if key not in variants:
            grads, *_ = _autograd(work, xd, y, target, alternative or objective, masks, slips)
            variants[key] = {name: layout_.to_user(name, grads[state]) for name, state in param_names.items()}
        return variants[key]

    diagnose(report, Case(layout=layout_, plan=plan_work, objective=objective, m=x.shape[0], autograd=autograd,
                          manual=manual, weights={name: p for name, p in params_user.items() if name.startswith("W")},
                          variant=variant, names=tuple(names), per_example=per_example))
    report.notes = first + report.notes + notes
    return report


def _forward_table(autograd: dict[str, np.ndarray], manual: dict[str, np.ndarray], names: Sequence[str]) -> list:
    """Z_l and A_l that both sides have, compared in the code's layout."""
    shared = [key for key in autograd if key in manual]
    if not shared:
        return []
    return compare_gradients({key: autograd[key] for key in shared}, {key: manual[key] for key in shared},
                             names).gradients


def _masked_to_user(layout: Layout, name: str, grad: np.ndarray) -> np.ndarray:
    converted = layout.to_user(name, np.ma.getdata(grad))
    if np.ma.isMaskedArray(grad):
        return np.ma.masked_array(converted, mask=layout.to_user(name, np.ma.getmaskarray(grad)))
    return converted
