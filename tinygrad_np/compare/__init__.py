"""Manual vs automatic gradients: a report you can trust, and who is to blame when they disagree.

    from tinygrad_np.compare import compare_gradients, compare_model, assert_gradients_match

`compare_gradients(a, b)` compares two {name: array} mappings (optionally a third, independent `reference`
that decides blame). `compare_model(model, backward, x, y)` runs autograd on a Sequential, calls hand-written
backprop by its arguments' names in its own layout (column, PyTorch row, or row with W (in, out)), compares
the forward pass layer by layer and, with `numerical=True`, judges both by central differences in float64;
when they disagree, its hints name the mistake only after reproducing the code's numbers with it.
Thresholds and metrics are documented in `tinygrad_np.compare.report`.
"""

from tinygrad_np.compare.binding import ManualCodeError
from tinygrad_np.compare.layers import LAYER_KINDS, LayerKind, Slip
from tinygrad_np.compare.layout import NAMED_LAYOUTS, Layout, load_model_params, model_params, parameter_names
from tinygrad_np.compare.model import compare_model, numerical_gradients
from tinygrad_np.compare.objective import LOSSES, Objective
from tinygrad_np.compare.report import (
    FAIL,
    NUMERICAL_THRESHOLDS,
    PASS,
    THRESHOLDS,
    WARN,
    ArrayComparison,
    GradientReport,
    Pair,
    assert_gradients_match,
    compare_arrays,
    compare_gradients,
)

__all__ = [
    "FAIL",
    "LAYER_KINDS",
    "LOSSES",
    "NAMED_LAYOUTS",
    "NUMERICAL_THRESHOLDS",
    "PASS",
    "THRESHOLDS",
    "WARN",
    "ArrayComparison",
    "GradientReport",
    "LayerKind",
    "Layout",
    "ManualCodeError",
    "Objective",
    "Pair",
    "Slip",
    "assert_gradients_match",
    "compare_arrays",
    "compare_gradients",
    "compare_model",
    "load_model_params",
    "model_params",
    "numerical_gradients",
    "parameter_names",
]
