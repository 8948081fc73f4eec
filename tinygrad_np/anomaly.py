"""detect_anomaly(): stop at the first NaN or Inf an op produces, in forward or backward, and say where.

While it is on, every `Function.apply` records the line of user code that created the op and checks that the
forward output is finite; `backward` checks every gradient an op hands to its inputs. The first non-finite value
raises `AnomalyError` naming the op, the phase, that line and the op's input shapes:

    Log produced nan (1 of 3 values) in forward at train.py:42 `loss = y.log().sum()`; input shapes: (3,)
    Sqrt produced inf (2 of 4 values) in backward (gradient for input 0) at train.py:17 `r = d.sqrt()`; ...

"User code" is the innermost frame outside the engine (tensor.py, ops.py, the other core modules, nn/ and
optim/): your script, or the models package, or the trainer; never the inside of a layer. Checking costs a pass
over every array and a stack walk per op, so it is off by default; when off, the engine pays one global check
per op and per backward node. The switch is process-wide, like PyTorch's `torch.autograd.detect_anomaly`.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np import tensor
from tinygrad_np.errors import UserError
from tinygrad_np.tensor import Function, Tensor

_PACKAGE = Path(__file__).resolve().parent
_ENGINE_FILES = {str(_PACKAGE / name) for name in ("tensor.py", "ops.py", "anomaly.py", "creation.py", "gradcheck.py")}
_ENGINE_DIRS = tuple(str(_PACKAGE / name) + os.sep for name in ("nn", "optim", "autograd"))
_is_engine_cache: dict[str, bool] = {}

Site = tuple[str, int]  # (file name, line number)


class AnomalyError(UserError, FloatingPointError):
    """An op produced NaN or Inf while `detect_anomaly()` was on. Attributes say which op, where and how."""

    def __init__(
        self,
        message: str,
        *,
        op: str,
        phase: str,
        site: Site | None,
        input_shapes: tuple[tuple[int, ...], ...],
        input_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.op, self.phase, self.site = op, phase, site
        self.input_shapes, self.input_index = input_shapes, input_index


class detect_anomaly(contextlib.ContextDecorator):  # noqa: N801  (PyTorch's name)
    """Check every op's output and gradients for NaN/Inf inside the block. Context manager or decorator.

    `detect_anomaly(False)` turns detection off inside the block, so a flag can be passed straight in
    (`with detect_anomaly(args.detect_anomaly): ...`).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self._previous = tensor._anomaly
        tensor._anomaly = _DETECTOR if self.enabled else None

    def __exit__(self, *exc: object) -> None:
        tensor._anomaly = self._previous


def is_anomaly_enabled() -> bool:
    return tensor._anomaly is not None


# ---- what the engine calls while detection is on --------------------------------------------------------


class _Detector:
    """The hooks `Function.apply` and `_backward` call; module state lives in `tensor._anomaly`."""

    @staticmethod
    def forward(ctx: Function, inputs: Sequence[Tensor], output: np.ndarray) -> None:
        ctx._anomaly_site = site = _user_site()
        if _is_finite(output):
            return
        bad = [f"input {i} held {_describe(t.data)}" for i, t in enumerate(inputs) if not _is_finite(t.data)]
        if bad:
            # Every op's output is checked, so a non-finite input came from outside the checked ops.
            note = f"{', '.join(bad)} already: it came from the data, a parameter, or code run before detect_anomaly()"
            if any(t.requires_grad and t._ctx is None and not _is_finite(t.data) for t in inputs):
                note += ("; a parameter is written outside the graph, by an optimizer step: look at its settings "
                         "(a learning rate too high, eps 0)")
        else:
            note = _finite_inputs_note(inputs)
        raise _error(ctx.name, "forward", output, site, inputs, None, note)

    @staticmethod
    def backward(ctx: Function, input_grads: Sequence[np.ndarray | None], upstream: np.ndarray) -> None:
        for index, grad in enumerate(input_grads):
            if grad is None or _is_finite(grad):
                continue
            note = "" if _is_finite(upstream) else f"the gradient flowing into it already held {_describe(upstream)}"
            raise _error(ctx.name, "backward", grad, getattr(ctx, "_anomaly_site", None), ctx.inputs, index, note)


_DETECTOR = _Detector()


def _is_finite(array: np.ndarray) -> bool:
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _describe(array: np.ndarray) -> str:
    """'nan (2 of 12 values)', 'inf (1 of 3 values)', '-inf ...', or 'nan and inf (5 of 12 values)'."""
    bad = ~np.isfinite(array)
    nan = np.isnan(array)
    kinds = []
    if nan.any():
        kinds.append("nan")
    infinite = array[bad & ~nan]
    if (infinite > 0).any():
        kinds.append("inf")
    if (infinite < 0).any():
        kinds.append("-inf")
    named = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"
    return f"{named} ({int(bad.sum())} of {array.size} values)"


def _finite_inputs_note(inputs: Sequence[Tensor]) -> str:
    """Finite inputs, non-finite output: an undefined value (log(-1)) or an overflow. An overflowing matrix product
    comes out as inf or as nan (inf - inf) depending on the BLAS kernel's order of additions, so the note gives the
    inputs' size, which is the same on every machine."""
    floats = [t.data for t in inputs if t.data.dtype.kind == "f" and t.data.size]
    largest = max((float(np.abs(array).max()) for array in floats), default=0.0)
    return f"every input was finite (largest magnitude {largest:.3g})"


def _error(
    op: str,
    phase: str,
    value: np.ndarray,
    site: Site | None,
    inputs: Sequence[Tensor],
    input_index: int | None,
    note: str,
) -> AnomalyError:
    shapes = tuple(t.shape for t in inputs)
    which = f" (gradient for input {input_index})" if input_index is not None else ""
    message = (
        f"{op} produced {_describe(value)} in {phase}{which} at {_format_site(site)}; "
        f"input shapes: {', '.join(str(s) for s in shapes)}"
    )
    if note:
        message += "; " + note
    return AnomalyError(message, op=op, phase=phase, site=site, input_shapes=shapes, input_index=input_index)


def _user_site() -> Site | None:
    """File and line of the innermost frame outside the engine: the line that created the op."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        internal = _is_engine_cache.get(filename)
        if internal is None:
            path = os.path.abspath(filename)
            internal = _is_engine_cache[filename] = path in _ENGINE_FILES or path.startswith(_ENGINE_DIRS)
        if not internal:
            return filename, frame.f_lineno
        frame = frame.f_back
    return None


def _format_site(site: Site | None) -> str:
    if site is None:
        return "an unknown line (the op was created before detect_anomaly() was on)"
    filename, line = site
    with contextlib.suppress(ValueError):  # another drive on Windows: keep the absolute path
        relative = os.path.relpath(filename)
        if not relative.startswith(".."):
            filename = relative
    code = linecache.getline(site[0], line).strip()
    return f"{filename}:{line}" + (f" `{code}`" if code else "")
