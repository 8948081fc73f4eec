"""compare_model: autograd on a model vs the user's hand-written backward, optionally judged by numerical grads.

The model is a ``Sequential`` of ``Linear``, ``ReLU`` and ``Dropout`` (the tutorial's net and every `mlp`).
It is run layer by layer, on a deep copy (the caller's model and its ``.grad`` are left alone), so each
layer's output can be compared with the hand-written forward pass: ``Z_l`` is the l-th Linear's output,
``A_l`` the activation after its ReLU (and dropout), ``A_L = softmax(Z_L)``. A forward pass that differs
explains every gradient after it, so the forward table comes first.

The loss both sides differentiate is ``cross_entropy(logits, y)`` (mean over the batch; times m with
``reduction="sum"``) ``+ weight_decay / 2 * sum ||W||^2`` over weights (biases not decayed). Dropout layers
use the given keep-masks M as ``A * M / (1 - p)`` (inverted dropout); without masks they are skipped
(evaluation mode), and the hand-written code must then not drop either.

With ``numerical=True`` a third source judges: central differences of that loss on a float64 copy of the
model, evaluated through the model's forward ops only, so it shares no code with either backward. For
large parameters only ``numerical_entries`` entries are differenced: up to half where the two sides disagree
most, the rest at random (from ``seed``); the report says how many.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.compare.convention import (
    Convention,
    activation_to_convention,
    batch_to_convention,
    check_convention,
    gradient_names,
    linear_layers,
    parameter_names,
    to_convention,
)
from tinygrad_np.compare.report import FAIL, GradientReport, compare_gradients
from tinygrad_np.creation import as_generator
from tinygrad_np.gradcheck import numerical_grad
from tinygrad_np.tensor import Tensor, no_grad

ManualForward = Callable[[Mapping[str, np.ndarray], np.ndarray], Mapping[str, np.ndarray]]
ManualBackward = Callable[[Mapping[str, np.ndarray], np.ndarray, np.ndarray], Any]
# A ReLU input closer than this to 0 may cross the kink under a finite-difference step.
KINK_DISTANCE = 1e-4


def layer_plan(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """[(kind, layer)] with kind in linear/relu/dropout, or a clear error for anything else."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"compare_model needs an nn.Sequential of Linear/ReLU/Dropout layers, got "
                        f"{type(model).__name__}; build it with models.two_layer.two_layer() or models.mlp.mlp()")
    plan = []
    for index, layer in enumerate(model):
        kind = {nn.Linear: "linear", nn.ReLU: "relu", nn.Dropout: "dropout"}.get(type(layer))
        if kind is None:
            raise TypeError(f"layer {index} is {type(layer).__name__}; compare_model supports Linear, ReLU and "
                            "Dropout (the tutorial's net and MLPs)")
        plan.append((kind, layer))
    kinds = [kind for kind, _ in plan]
    if not kinds or kinds[0] != "linear" or kinds[-1] != "linear":
        raise TypeError(f"the Sequential must start and end with a Linear layer, got {kinds}")
    return plan


def _check_batch(model: nn.Sequential, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    first = next(layer for layer in model if isinstance(layer, nn.Linear))
    features = first.weight.shape[1]
    if x.ndim != 2 or x.shape[1] != features:
        hint = " (the tutorial's X is x.T: pass x as (m, features))" if x.ndim == 2 and x.shape[0] == features else ""
        raise ValueError(f"x must be (m, {features}), one row per example, got shape {x.shape}{hint}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must hold floats (e.g. images / 255), got dtype {x.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be (m,) = ({x.shape[0]},) integer class labels, got dtype {y.dtype} shape {y.shape}")
    classes = model[len(model) - 1].weight.shape[0]
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got min {y.min()}, max {y.max()}")
    if x.shape[0] == 0:
        raise ValueError("the batch is empty: pass at least one example")
    return x, y.astype(np.int64)


def _row_masks(
    plan: list[tuple[str, nn.Module]], masks: Sequence[np.ndarray] | None, convention: Convention, m: int
) -> list[np.ndarray] | None:
    """The keep-masks in row layout (m, units), one per Dropout layer, checked."""
    if masks is None:
        return None
    dropouts = [index for index, (kind, _) in enumerate(plan) if kind == "dropout"]
    if len(masks) != len(dropouts):
        raise ValueError(f"dropout_masks needs one mask per Dropout layer ({len(dropouts)}), got {len(masks)}")
    row = []
    for number, (index, mask) in enumerate(zip(dropouts, masks, strict=True), start=1):
        if plan[index][1].p >= 1:
            raise ValueError(f"Dropout layer {index} has p = {plan[index][1].p}: nothing is kept and the "
                             "1 / (1 - p) scale is infinite; use p < 1")
        units = next(layer.weight.shape[0] for kind, layer in reversed(plan[:index]) if kind == "linear")
        mask = np.asarray(mask, dtype=np.float64)
        mask = mask.T if convention == "tutorial" else mask
        if mask.shape != (m, units):
            wanted = (units, m) if convention == "tutorial" else (m, units)
            raise ValueError(f"dropout mask {number} must be {wanted} in the {convention!r} layout, got "
                             f"{np.shape(masks[number - 1])}")
        row.append(mask)
    return row


def _forward(
    plan: list[tuple[str, nn.Module]], x: Tensor, masks: list[np.ndarray] | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run the layers in order, recording Z_l after each Linear and A_l after its activation/dropout."""
    activations: dict[str, Tensor] = {}
    out, layer_number, dropout_number = x, 0, 0
    for kind, layer in plan:
        if kind == "linear":
            layer_number += 1
            out = layer(out)
            activations[f"Z{layer_number}"] = out
        elif kind == "relu":
            out = layer(out)
        elif masks is not None:  # dropout with the given keep-mask, inverted scaling as nn.Dropout does
            scale = masks[dropout_number] / (1.0 - layer.p)
            out = out * Tensor(scale.astype(out.data.dtype))
            dropout_number += 1
        if kind != "linear":
            activations[f"A{layer_number}"] = out
    return out, activations


def _loss(
    model: nn.Sequential, logits: Tensor, y: np.ndarray, weight_decay: float, reduction: str
) -> Tensor:
    """cross_entropy (mean, or times m for "sum") + weight_decay / 2 * sum of squared weights."""
    loss = nn.functional.cross_entropy(logits, y)
    if reduction == "sum":
        loss = loss * float(y.shape[0])
    if weight_decay:
        for name, parameter in model.named_parameters():
            if name.endswith(".weight"):
                loss = loss + (parameter * parameter).sum() * (weight_decay / 2)
    return loss


def _manual_mapping(result: Any, expected: list[str], what: str) -> dict[str, np.ndarray]:
    """The user's result as a dict: a mapping as is, or a tuple in the tutorial's order (dW1, db1, dW2, ...)."""
    if isinstance(result, Mapping):
        return {str(name): np.asarray(value) for name, value in result.items()}
    if isinstance(result, (tuple, list)) and len(result) == len(expected):
        return {name: np.asarray(value) for name, value in zip(expected, result, strict=True)}
    length = f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""
    raise TypeError(f"{what} must return a dict keyed {expected} (or a tuple in that order), got "
                    f"{type(result).__name__}{length}")


def _select_entries(
    size: int, limit: int | None, disagreement: np.ndarray | None, rng: np.random.Generator
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
    dropout_masks: Sequence[np.ndarray] | None = None,
    weight_decay: float = 0.0,
    reduction: str = "mean",
    entries: int | None = None,
    disagreement: Mapping[str, np.ndarray] | None = None,
    seed: int | np.random.Generator = 0,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Central differences of the loss on a float64 copy: {state name: grad (a masked array if sampled)}.

    Same loss as compare_model; `dropout_masks` here are in the row layout (m, units), one per Dropout layer.
    Also returns {state name: number of entries differenced}.
    """
    model64 = copy.deepcopy(model).double()  # float32 -> float64 is exact: the same function, finer steps
    plan = layer_plan(model64)
    x64, masks = Tensor(np.asarray(x, dtype=np.float64)), dropout_masks
    rng = as_generator(seed)
    grads, counts = {}, {}
    for name, parameter in model64.named_parameters():
        worst = None if disagreement is None else disagreement.get(name)
        chosen = _select_entries(parameter.data.size, entries, worst, rng)
        flat = parameter.data.reshape(-1)  # a view: writing into it moves the parameter

        def loss_at(values: Tensor, flat=flat, chosen=chosen) -> Tensor:
            flat[chosen] = values.data
            logits, _ = _forward(plan, x64, masks)
            return _loss(model64, logits, y, weight_decay, reduction)

        original = flat[chosen].copy()
        with no_grad():
            (values,) = numerical_grad(loss_at, [original])
        flat[chosen] = original
        grad = np.full(parameter.data.shape, np.nan)
        grad.reshape(-1)[chosen] = values
        grads[name] = np.ma.masked_invalid(grad) if chosen.size < grad.size else grad
        counts[name] = int(chosen.size)
    return grads, counts


def compare_model(
    model: nn.Sequential,
    manual_backward: ManualBackward,
    x: np.ndarray,
    y: np.ndarray,
    *,
    manual_forward: ManualForward | None = None,
    convention: Convention = "tutorial",
    numerical: bool = False,
    weight_decay: float = 0.0,
    dropout_masks: Sequence[np.ndarray] | None = None,
    reduction: str = "mean",
    names: Sequence[str] = ("autograd", "manual"),
    numerical_entries: int | None = 1000,
    seed: int | np.random.Generator = 0,
) -> GradientReport:
    """Autograd's gradients of the model's loss vs manual_backward(params, X, Y), per layer and parameter.

    In the "tutorial" convention manual_backward receives {"W1": (out, in), "b1": (out, 1), ...}, X = x.T
    (features, m) and Y (m,), and returns {"dW1", "db1", ...} (or the tuple (dW1, db1, dW2, db2, ...));
    manual_forward(params, X) returns {"Z1", "A1", ..., "AL"} as (units, m). In the "row" convention both
    use state-dict names and shapes and x as given. Parameters are in the model's dtype.
    """
    check_convention(convention)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' (the tutorial's 1/m in dW) or 'sum', got {reduction!r}")
    plan = layer_plan(model)
    x, y = _check_batch(model, x, y)
    masks = _row_masks(plan, dropout_masks, convention, x.shape[0])
    num_linear = len(linear_layers(model))
    to_state = gradient_names(model, convention)
    aliases = {name: state for name, state in to_state.items()} if convention == "tutorial" else {
        state: name for name, state in gradient_names(model, "tutorial").items()}
    dtype = model[0].weight.data.dtype

    # Autograd, on a copy so the caller's parameters and their accumulated .grad stay as they were.
    work = copy.deepcopy(model)
    for _, parameter in work.named_parameters():
        parameter.grad = None
    logits, activations = _forward(layer_plan(work), Tensor(x.astype(dtype)), masks)
    _loss(work, logits, y, weight_decay, reduction).backward()
    state_grads = {name: parameter.grad for name, parameter in work.named_parameters()}
    missing = [name for name, grad in state_grads.items() if grad is None]
    if missing:
        raise RuntimeError(f"autograd left no gradient for {missing}: is requires_grad off on those parameters?")
    autograd = {manual: to_convention(state, state_grads[state], convention) for manual, state in to_state.items()}

    # The hand-written side gets copies, in its own layout, so it can't disturb the model either.
    state = model.state_dict()
    params = {manual: to_convention(state_name, np.array(state[state_name], copy=True), convention)
              for manual, state_name in parameter_names(model, convention).items()}
    X = batch_to_convention(x.astype(dtype), convention).copy()
    manual = _manual_mapping(manual_backward(params, X, y.copy()), list(to_state), "manual_backward")

    reference, notes = None, []
    if numerical:
        disagreement = {}
        for manual_name, state_name in to_state.items():
            a, b = autograd[manual_name], manual.get(manual_name)
            if b is not None and b.shape == a.shape:
                gap = np.abs(a.astype(np.float64) - b.astype(np.float64))
                gap = np.where(np.isfinite(gap), gap, np.inf)  # NaN on one side is the worst disagreement
                disagreement[state_name] = gap.reshape(state_grads[state_name].shape)
        # The float64 copy sees exactly the inputs autograd saw (x rounded to the model's dtype, then widened).
        grads, counts = numerical_gradients(model, x.astype(dtype), y, dropout_masks=masks, weight_decay=weight_decay,
                                            reduction=reduction, entries=numerical_entries,
                                            disagreement=disagreement, seed=seed)
        reference = {manual_name: to_convention(state_name, grads[state_name], convention)
                     for manual_name, state_name in to_state.items()}
        sampled = [f"{manual_name} {counts[state_name]} of {grads[state_name].size}"
                   for manual_name, state_name in to_state.items() if counts[state_name] < grads[state_name].size]
        if sampled:
            notes.append(f"numerical gradients on a sample of entries (up to half where {names[0]} and "
                         f"{names[1]} differ most, the rest at random): {', '.join(sampled)}")
        closest = min((float(np.min(np.abs(z.data))) for key, z in activations.items()
                       if key.startswith("Z") and key != f"Z{num_linear}"), default=np.inf)
        if closest < KINK_DISTANCE:
            notes.append(f"a ReLU input is {closest:.1e} from its kink: numerical gradients of entries feeding it "
                         "can be off; a disagreement there blames no one")

    report = compare_gradients(autograd, manual, names, reference, reference_name="numerical", aliases=aliases)
    if manual_forward is not None:
        probabilities = logits.softmax(axis=-1)
        auto_activations = {key: activation_to_convention(value.data, convention)
                            for key, value in {**activations, f"A{num_linear}": probabilities}.items()}
        manual_activations = _manual_mapping(manual_forward(params, X.copy()), list(auto_activations),
                                             "manual_forward")
        report.forward = compare_gradients(auto_activations, manual_activations, names).gradients
        first_bad = next((item.name for item in report.forward if item.verdict == FAIL), None)
        if first_bad is not None:
            notes.insert(0, f"the forward pass differs first at {first_bad}: fix it before reading the gradients")
    report.notes.extend(notes)
    return report
