"""Manual vs automatic gradients: a report you can trust, and who is to blame when they disagree.

    from tinygrad_np.compare import compare_gradients, compare_model, assert_gradients_match

`compare_gradients(a, b)` compares two {name: array} mappings (optionally a third, independent `reference`
that decides blame); `compare_model(model, manual_backward, x, y)` runs autograd on a Sequential MLP, calls
hand-written backprop in the tutorial's column layout (or the module's row layout), compares the forward
pass layer by layer and, with `numerical=True`, judges both by central differences in float64.
Thresholds and metrics are documented in `tinygrad_np.compare.report`.
"""

from tinygrad_np.compare.convention import (
    CONVENTIONS,
    load_model_params,
    model_params,
    tutorial_adapter,
)
from tinygrad_np.compare.model import compare_model, numerical_gradients
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
    "CONVENTIONS",
    "FAIL",
    "NUMERICAL_THRESHOLDS",
    "PASS",
    "THRESHOLDS",
    "WARN",
    "ArrayComparison",
    "GradientReport",
    "Pair",
    "assert_gradients_match",
    "compare_arrays",
    "compare_gradients",
    "compare_model",
    "load_model_params",
    "model_params",
    "numerical_gradients",
    "tutorial_adapter",
]
