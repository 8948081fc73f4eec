"""Compare two (or three) sets of named arrays and say, per array, whether they agree and who is wrong.

Per array the report gives the shape, ``max|a-b|``, the largest elementwise relative difference, the
*scaled error* ``max|a-b| / max(max|a|, max|b|)``, the cosine similarity, the norm ratio ``|a| / |b|``, the
worst element's index with both values there, a verdict and, when a third, independent source (a numerical
gradient) is given, which side is to blame.

Verdicts come from the scaled error, thresholded by the *less precise* dtype of the two arrays:

    =========  ==================  ==================
    dtype      PASS if error <=    WARN if error <=    (else FAIL)
    =========  ==================  ==================
    float64    1e-9                1e-6
    float32    1e-4                1e-2
    float16    1e-2                1e-1
    =========  ==================  ==================

Against a numerical (central-difference) gradient the thresholds are at least PASS 1e-6 / WARN 1e-3, the
accuracy a float64 central difference reaches (truncation ~h^2, rounding ~eps/h).

The scaled error, not the elementwise relative difference, decides: an element that is zero up to rounding
on one side and 1e-20 on the other has a relative difference of 100% and means nothing. The elementwise
figure is still shown, ignoring differences below max(eps64, PASS threshold / 1000) * scale, because a
large one next to a small scaled error points at a few tiny elements. Different shapes, a name on one side
only, or NaN/inf on either side are a FAIL, never an exception. `GradientReport.passed` is True when no
array FAILs (a WARN passes: rounding near cancellation can honestly reach it); `assert_gradients_match`
refuses WARN too unless told `allow_warn=True`.

Blame, with a reference: when a and b disagree (FAIL), the side that also disagrees with the reference while
the other agrees with it is blamed; if both or neither agree with the reference, the blame is "unclear".
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tinygrad_np.jsondata import to_json_data

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
_ORDER = {PASS: 0, WARN: 1, FAIL: 2}

# (PASS if scaled error <= first, WARN if <= second, else FAIL), by the less precise dtype compared.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-6),
    "float32": (1e-4, 1e-2),
    "float16": (1e-2, 1e-1),
}
# Floor for comparisons against a float64 central difference: it is accurate to about 1e-7..1e-8 relative.
NUMERICAL_THRESHOLDS = (1e-6, 1e-3)


def thresholds_for(*arrays: np.ndarray, numerical: bool = False) -> tuple[float, float]:
    """The (pass, warn) scaled-error thresholds for the least precise floating dtype among `arrays`."""
    eps = max((np.finfo(a.dtype).eps for a in arrays if np.issubdtype(a.dtype, np.floating)), default=0.0)
    name = "float16" if eps >= np.finfo(np.float16).eps else "float32" if eps >= np.finfo(np.float32).eps else "float64"
    passing, warning = THRESHOLDS[name]
    if numerical:
        passing, warning = max(passing, NUMERICAL_THRESHOLDS[0]), max(warning, NUMERICAL_THRESHOLDS[1])
    return passing, warning


@dataclass
class Pair:
    """Agreement of one array between two sources: the metrics, the verdict, and a hint at what went wrong."""

    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    verdict: str
    error: float = math.nan  # max|a-b| / max(max|a|, max|b|); decides the verdict
    max_abs_diff: float = math.nan
    max_rel_diff: float = math.nan
    cosine: float = math.nan  # <a, b> / (|a| |b|); nan when one side is all zeros
    norm_ratio: float = math.nan  # |a| / |b|
    worst_index: tuple[int, ...] | None = None
    worst_a: float = math.nan
    worst_b: float = math.nan
    thresholds: tuple[float, float] = (math.nan, math.nan)
    compared: int | None = None  # how many elements were compared (fewer than the size if one side is masked)
    note: str = ""


def compare_arrays(
    a: np.ndarray | None, b: np.ndarray | None, *, numerical: bool = False, labels: Sequence[str] = ("a", "b")
) -> Pair:
    """All metrics for one array pair; None on a side means the name is missing there."""
    if a is None and b is None:
        return Pair(None, None, PASS, note="")  # absent on both sides: they agree
    if a is None or b is None:
        present, absent = (labels[1], labels[0]) if a is None else (labels[0], labels[1])
        return Pair(None if a is None else np.shape(a), None if b is None else np.shape(b), FAIL,
                    note=f"only in {present}, missing in {absent}")
    a, b = np.asanyarray(a), np.asanyarray(b)
    thresholds = thresholds_for(a, b, numerical=numerical)
    if a.shape != b.shape:
        return Pair(a.shape, b.shape, FAIL, thresholds=thresholds, note=_shape_hint(a, b, labels))
    pair = Pair(a.shape, b.shape, PASS, thresholds=thresholds)
    # A masked entry (a sampled numerical gradient leaves most unmasked ones out) is compared as 0 == 0.
    unchecked = np.ma.getmaskarray(a) | np.ma.getmaskarray(b)
    a64 = np.where(unchecked, 0.0, np.ma.getdata(a).astype(np.float64))
    b64 = np.where(unchecked, 0.0, np.ma.getdata(b).astype(np.float64))
    pair.compared = int(a.size - np.count_nonzero(unchecked))
    finite_a, finite_b = np.isfinite(a64).all(), np.isfinite(b64).all()
    if not (finite_a and finite_b):
        bad = [side for side, ok in zip(labels, (finite_a, finite_b), strict=True) if not ok]
        pair.verdict = FAIL
        pair.note = f"NaN/inf in {' and '.join(bad)} (overflow? e.g. exp without the max shift)"
        where = ~(np.isfinite(a64) & np.isfinite(b64))
        pair.worst_index = tuple(int(i) for i in np.argwhere(where)[0]) if a.ndim else ()
        pair.worst_a, pair.worst_b = float(a64[pair.worst_index]), float(b64[pair.worst_index])
        return pair
    if a.size == 0:
        pair.error = pair.max_abs_diff = pair.max_rel_diff = 0.0
        return pair
    diff = np.abs(a64 - b64)
    scale = max(float(np.max(np.abs(a64))), float(np.max(np.abs(b64))))
    flat = int(np.argmax(diff))
    pair.worst_index = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    pair.worst_a, pair.worst_b = float(a64.flat[flat]), float(b64.flat[flat])
    pair.max_abs_diff = float(diff.flat[flat])
    pair.error = pair.max_abs_diff / scale if scale > 0 else 0.0
    # Differences at the rounding level of the tensor's scale say nothing about an element's relative error.
    floor = max(np.finfo(np.float64).eps, thresholds_for(a, b)[0] * 1e-3) * scale
    denominator = np.maximum(np.maximum(np.abs(a64), np.abs(b64)), floor)
    pair.max_rel_diff = float(np.max(np.where(diff > floor, diff / np.where(denominator > 0, denominator, 1), 0)))
    norm_a, norm_b = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
    if norm_a > 0 and norm_b > 0:
        pair.cosine = float(np.dot(a64.ravel(), b64.ravel()) / (norm_a * norm_b))
    pair.norm_ratio = 1.0 if norm_a == norm_b == 0 else norm_a / norm_b if norm_b > 0 else math.inf
    passing, warning = thresholds
    pair.verdict = PASS if pair.error <= passing else WARN if pair.error <= warning else FAIL
    if pair.verdict == FAIL:
        pair.note = _value_hint(a64, b64, pair, warning, labels)
    return pair


def _shape_hint(a: np.ndarray, b: np.ndarray, labels: Sequence[str]) -> str:
    """Name the usual hand-derivation mistakes behind a shape mismatch."""
    text = f"{labels[0]} has shape {a.shape}, {labels[1]} {b.shape}"
    column = a.ndim == 2 and a.shape[1] == 1
    if a.size == b.size and np.squeeze(a).shape == np.squeeze(b).shape and a.size > 1:
        return text + ": a bias as a vector (n,) on one side and a column (n, 1) on the other? pick one layout"
    if a.ndim == 2 and b.shape == a.shape[::-1]:
        return text + ": transposed? (dW = dZ A_prev^T has the shape of W)"
    if column and b.size == 1:
        return text + ": summed over all axes? (db = sum(dZ, axis=1, keepdims=True) / m)"
    if column and b.ndim >= 1 and b.shape[0] != a.shape[0]:
        return text + ": bias summed over the wrong axis? (sum over the batch axis, keep the units)"
    return text


def _value_hint(a: np.ndarray, b: np.ndarray, pair: Pair, warning: float, labels: Sequence[str]) -> str:
    """Name the usual mistakes behind equal shapes and unequal values: a sign, a constant factor, a transpose."""
    la, lb = labels
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    if np.max(np.abs(a + b)) <= warning * scale:
        return f"{lb} == -{la}: a sign error"
    if np.isfinite(pair.norm_ratio) and pair.norm_ratio > 0 and pair.cosine > 1 - 1e-9:
        ratio = pair.norm_ratio
        if np.max(np.abs(a - ratio * b)) <= warning * scale:
            return f"{la} == {ratio:.6g} * {lb}: a constant factor (a missing or extra 1/m?)"
    if a.ndim == 2 and a.shape[0] == a.shape[1] and np.max(np.abs(a - b.T)) <= warning * scale:
        return f"{lb} == {la}^T: transposed (dW = dZ A_prev^T)"
    return ""


def _blame(ab: Pair, a_ref: Pair, b_ref: Pair, names: Sequence[str]) -> str:
    """Which source is wrong: the one that also disagrees with the reference while the other agrees."""
    if ab.verdict != FAIL:
        return ""
    a_ok, b_ok = a_ref.verdict != FAIL, b_ref.verdict != FAIL
    if a_ok and not b_ok:
        return names[1]
    if b_ok and not a_ok:
        return names[0]
    return "unclear"


@dataclass
class ArrayComparison:
    """One named array (a gradient or an activation) across the sources."""

    name: str
    pair: Pair
    alias: str = ""  # the other convention's name, e.g. "0.weight" beside "W1"
    reference_a: Pair | None = None  # first source vs the reference
    reference_b: Pair | None = None  # second source vs the reference
    blame: str = ""

    @property
    def verdict(self) -> str:
        return self.pair.verdict

    @property
    def label(self) -> str:
        return f"{self.name} [{self.alias}]" if self.alias else self.name


@dataclass
class GradientReport:
    """Per-array comparisons of gradients (and, from compare_model, forward activations) between sources."""

    names: tuple[str, str]
    gradients: list[ArrayComparison]
    forward: list[ArrayComparison] = field(default_factory=list)
    reference: str | None = None
    notes: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # what was compared: the loss, the layout, ...

    @property
    def passed(self) -> bool:
        """True when nothing FAILs (WARN still passes: rounding near cancellation can reach it honestly)."""
        return all(item.verdict != FAIL for item in self.forward + self.gradients)

    @property
    def verdict(self) -> str:
        """The worst verdict over every array compared."""
        return max((item.verdict for item in self.forward + self.gradients), key=_ORDER.__getitem__, default=PASS)

    @property
    def failed(self) -> list[str]:
        """Names of the gradients that FAIL."""
        return [item.name for item in self.gradients if item.verdict == FAIL]

    @property
    def blamed(self) -> dict[str, str]:
        """{gradient name: blamed source} for every gradient with a blame."""
        return {item.name: item.blame for item in self.gradients if item.blame}

    def __getitem__(self, name: str) -> ArrayComparison:
        for item in self.gradients + self.forward:
            if name in (item.name, item.alias):
                return item
        raise KeyError(f"no array named {name!r}; have {[item.name for item in self.gradients + self.forward]}")

    def format(self) -> str:
        """The aligned text table a reader sees: forward first (a wrong forward explains wrong gradients)."""
        a_name, b_name = self.names
        lines = [f"{a_name} vs {b_name}" + (f", reference: {self.reference}" if self.reference else ""),
                 *self.context]
        if self.forward:
            lines += ["", "forward (per layer):", *_table(self.forward, self.names, reference=None)]
        lines += ["", "gradients:", *_table(self.gradients, self.names, reference=self.reference)]
        notes = [f"{item.label}: {item.pair.note}" for item in self.forward + self.gradients if item.pair.note]
        lines += ["", *notes] if notes else []
        lines += [f"note: {note}" for note in self.notes]
        thresholds = ", ".join(f"{name} {p:g}/{w:g}" for name, (p, w) in THRESHOLDS.items())
        lines += [
            "",
            f"error = max|a-b| / max(|a|,|b|); PASS/WARN thresholds by dtype: {thresholds}"
            + (f"; vs {self.reference} at least {NUMERICAL_THRESHOLDS[0]:g}/{NUMERICAL_THRESHOLDS[1]:g}"
               if self.reference else ""),
            f"result: {self.verdict}" + (f" (blame: {', '.join(f'{k} -> {v}' for k, v in self.blamed.items())})"
                                         if self.blamed else ""),
        ]
        return "\n".join(lines)

    __str__ = format

    def _repr_html_(self) -> str:
        """The report as Jupyter shows it: the same tables in HTML, verdicts coloured, with the blame column."""
        a_name, b_name = self.names
        title = f"{a_name} vs {b_name}" + (f", reference: {self.reference}" if self.reference else "")
        parts = [f"<div><p><b>{html.escape(title)}</b></p>"]
        parts += [f"<p>{html.escape(line)}</p>" for line in self.context]
        if self.forward:
            parts += ["<p>forward (per layer):</p>", _html_table(self.forward, self.names, None)]
        parts += ["<p>gradients:</p>", _html_table(self.gradients, self.names, self.reference)]
        notes = [f"{item.label}: {item.pair.note}" for item in self.forward + self.gradients if item.pair.note]
        notes += [f"note: {note}" for note in self.notes]
        if notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>")
        background, colour = VERDICT_COLOURS[self.verdict]
        blame = f" (blame: {', '.join(f'{k} -> {v}' for k, v in self.blamed.items())})" if self.blamed else ""
        parts.append(f'<p>result: <span style="background: {background}; color: {colour}; font-weight: bold">'
                     f"{self.verdict}</span>{html.escape(blame)}</p></div>")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite floats become the strings "nan", "inf", "-inf"."""
        def item_dict(item: ArrayComparison) -> dict[str, Any]:
            out = {"name": item.name, "alias": item.alias, "verdict": item.verdict, **asdict(item.pair)}
            if item.reference_a is not None:
                out["vs_reference"] = {self.names[0]: asdict(item.reference_a), self.names[1]: asdict(item.reference_b)}
                out["blame"] = item.blame
            return out

        return to_json_data({
            "names": list(self.names),
            "reference": self.reference,
            "passed": self.passed,
            "verdict": self.verdict,
            "blame": self.blamed,
            "forward": [item_dict(item) for item in self.forward],
            "gradients": [item_dict(item) for item in self.gradients],
            "context": self.context,
            "notes": self.notes,
            "thresholds": {**{k: list(v) for k, v in THRESHOLDS.items()}, "numerical": list(NUMERICAL_THRESHOLDS)},
        })

    def to_json(self, indent: int | None = 2) -> str:
        """to_dict() as standard JSON (no NaN literals)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.{digits}e}"
    return f"{value:.{digits + 1}g}"


def _shape(pair: Pair) -> str:
    def one(shape):
        return "missing" if shape is None else "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

    return one(pair.shape_a) if pair.shape_a == pair.shape_b else f"{one(pair.shape_a)} vs {one(pair.shape_b)}"


_NUMERIC_COLUMNS = {2, 3, 4, 5, 6, 8, 9}


def _cells(items: Sequence[ArrayComparison], names: Sequence[str], reference: str | None
           ) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as strings, for the text table and the HTML one alike."""
    headers = ["name", "shape", "error", "max|a-b|", "max rel", "cosine", "|a|/|b|", "worst at",
               names[0], names[1], "verdict"]
    if reference:
        headers += [f"{names[0]} vs {reference}", f"{names[1]} vs {reference}", "blame"]
    rows = []
    for item in items:
        pair = item.pair
        row = [item.label, _shape(pair), _number(pair.error), _number(pair.max_abs_diff), _number(pair.max_rel_diff),
               "-" if math.isnan(pair.cosine) else f"{pair.cosine:.6f}", _number(pair.norm_ratio),
               "-" if pair.worst_index is None else str(pair.worst_index), _number(pair.worst_a, 5),
               _number(pair.worst_b, 5), pair.verdict]
        if reference:
            for side in (item.reference_a, item.reference_b):
                row.append("-" if side is None else f"{side.verdict} {_number(side.error, 1)}")
            row.append(item.blame or "-")
        rows.append(row)
    return headers, rows


def _table(items: Sequence[ArrayComparison], names: Sequence[str], reference: str | None) -> list[str]:
    headers, rows = _cells(items, names, reference)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells):
        return "  ".join(str(cell).rjust(width) if col in _NUMERIC_COLUMNS else str(cell).ljust(width)
                         for col, (cell, width) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)]


# Background and text colours of a verdict in the HTML report (a verdict cell also starts a reference cell).
VERDICT_COLOURS = {PASS: ("#d9f2d9", "#1e6b1e"), WARN: ("#fff1c2", "#7a5a00"), FAIL: ("#f9d0d0", "#9b1c1c")}


def _html_cell(tag: str, text: str, column: int) -> str:
    style = ["text-align: right"] if column in _NUMERIC_COLUMNS else ["text-align: left"]
    verdict = text.split(" ")[0]
    if tag == "td" and column in (10, 11, 12) and verdict in VERDICT_COLOURS:  # the verdict and vs-reference cells
        background, colour = VERDICT_COLOURS[verdict]
        style += [f"background: {background}", f"color: {colour}", "font-weight: bold"]
    return f'<{tag} style="{"; ".join(style)}">{html.escape(text)}</{tag}>'


def _html_table(items: Sequence[ArrayComparison], names: Sequence[str], reference: str | None) -> str:
    headers, rows = _cells(items, names, reference)
    head = "".join(_html_cell("th", header, column) for column, header in enumerate(headers))
    body = "".join("<tr>" + "".join(_html_cell("td", cell, column) for column, cell in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def compare_gradients(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    names: Sequence[str] = ("autograd", "manual"),
    reference: Mapping[str, np.ndarray] | None = None,
    *,
    reference_name: str = "numerical",
    aliases: Mapping[str, str] | None = None,
) -> GradientReport:
    """Compare every name in `a` or `b`; with `reference` (e.g. numerical gradients) also blame the wrong side."""
    if len(names) != 2:
        raise ValueError(f"names must be two labels, one per source, e.g. ('autograd', 'manual'); got {names!r}")
    for label, mapping in (("a", a), ("b", b), ("reference", reference)):
        if mapping is not None and not isinstance(mapping, Mapping):
            raise TypeError(f"{label} must be a mapping of name -> array (e.g. dict(model.named_parameters()) "
                            f"grads), got {type(mapping).__name__}")
    ordered = list(a) + [name for name in b if name not in a]
    items = []
    for name in ordered:
        pair = compare_arrays(a.get(name), b.get(name), labels=names)
        item = ArrayComparison(name, pair, alias=(aliases or {}).get(name, ""))
        if reference is not None:
            ref = reference.get(name)
            item.reference_a = compare_arrays(a.get(name), ref, numerical=True, labels=(names[0], reference_name))
            item.reference_b = compare_arrays(b.get(name), ref, numerical=True, labels=(names[1], reference_name))
            item.blame = _blame(pair, item.reference_a, item.reference_b, names)
        items.append(item)
    return GradientReport(tuple(names), items, reference=reference_name if reference is not None else None)


def assert_gradients_match(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    names: Sequence[str] = ("autograd", "manual"),
    reference: Mapping[str, np.ndarray] | None = None,
    *,
    allow_warn: bool = False,
) -> GradientReport:
    """For pytest: raise AssertionError with the readable table unless every gradient PASSes (or WARNs, if allowed)."""
    report = compare_gradients(a, b, names, reference)
    if not report.passed or (not allow_warn and report.verdict == WARN):
        raise AssertionError("gradients differ:\n" + report.format())
    return report
