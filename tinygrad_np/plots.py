"""Pictures of training: loss and accuracy curves, a grid of predictions with the mistakes marked, and a
confusion matrix. Matplotlib (the `plot` extra) is imported lazily and used through `Figure` objects with
the Agg renderer, never through pyplot: no global state, no display needed, safe from threads. In a notebook
the figures these functions return display inline (they have `_repr_png_`); from the CLI they are saved.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.errors import import_extra
from tinygrad_np.files import write_atomic

DPI = 100
CURVES_SIZE = (10.0, 4.0)  # inches; with DPI fixed, a saved PNG is exactly 1000 x 400 pixels
GRID_COLUMNS = 10
CONFUSION_SIZE = (6.0, 5.5)
MISTAKE_COLOR = "#d62728"
CORRECT_COLOR = "#2ca02c"


@functools.cache
def _inline(figure_class: type) -> type:
    class InlineFigure(figure_class):
        """A Figure that Jupyter draws inline as PNG when it is a cell's value (IPython asks `_repr_png_`)."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=DPI)
            return buffer.getvalue()

    return InlineFigure


def _figure(size: tuple[float, float], layout: str | None = "constrained") -> Any:
    Figure = import_extra("matplotlib.figure", "plot", "plots").Figure
    return _inline(Figure)(figsize=size, dpi=DPI, layout=layout)


def save_figure(figure: Any, path: str | os.PathLike) -> Path:
    """Save as PNG at the figure's own size (no tight bbox, so the pixel size is predictable), atomically."""
    return write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=DPI))


# ---- training curves ------------------------------------------------------------------------------------


def plot_training_curves(history: Sequence[Mapping[str, Any]]) -> Any:
    """Loss and accuracy per epoch, train and test, from `[{"epoch": 1, "train_loss": .., ...}, ...]`."""
    if not isinstance(history, Sequence) or not history or not all(isinstance(h, Mapping) for h in history):
        raise ValueError("history must be a non-empty list of dicts, one per epoch: {'epoch': 1, 'train_loss': ...}")
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    figure = _figure(CURVES_SIZE)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    drawn = 0
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for split, style in (("train", "-o"), ("test", "--s")):
            key = f"{split}_{metric}"
            values = [h.get(key) for h in history]
            if all(v is None for v in values):
                continue
            points = [(e, float(v)) for e, v in zip(epochs, values, strict=True) if v is not None]
            axes.plot(*zip(*points, strict=True), style, label=split, markersize=4)
            drawn += 1
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(metric.capitalize())
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    if not drawn:
        raise ValueError(
            "history has none of train_loss, test_loss, train_accuracy, test_accuracy; nothing to plot"
        )
    extra = []
    if "lr" in history[0]:  # the schedule, faintly, on the loss plot's second axis
        lr_axes = loss_axes.twinx()
        extra = lr_axes.plot(epochs, [h.get("lr", np.nan) for h in history], ":", color="gray", label="lr (right)")
        lr_axes.set_ylabel("learning rate", color="gray")
    for axes, more in ((loss_axes, extra), (accuracy_axes, [])):
        if axes.lines:
            axes.legend(handles=[*axes.lines, *more])
    return figure


# ---- predictions --------------------------------------------------------------------------------------


def _images(images: Any, count: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 2 and images.shape[1] == 784:
        images = images.reshape(-1, 28, 28)
    if images.ndim == 4 and images.shape[1] == 1:  # a CNN's input: one channel
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, 28, 28), (N, 1, 28, 28) or (N, 784), got {images.shape}")
    if images.shape[0] != count:
        raise ValueError(f"got {images.shape[0]} images but {count} labels; pass one label per image")
    return images


def _labels_and_predictions(labels: Any, predictions: Any) -> tuple[np.ndarray, np.ndarray]:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    for name, array in (("labels", labels), ("predictions", predictions)):
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a 1-D array of integer classes, got {array.dtype} {array.shape}")
        if array.size and array.min() < 0:
            raise ValueError(f"{name} must be non-negative class indices, got {array.min()}")
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have the same length")
    if not labels.size:
        raise ValueError("no labels to plot")
    return labels, predictions


def plot_predictions(images: Any, labels: Any, predictions: Any, count: int = 50) -> Any:
    """A grid of `count` test images titled with their predictions; mistakes (up to half) first, in red."""
    labels, predictions = _labels_and_predictions(labels, predictions)
    images = _images(images, len(labels))
    wrong = np.flatnonzero(labels != predictions)
    right = np.flatnonzero(labels == predictions)
    count = min(count, len(labels))
    shown_wrong = wrong[: max(count // 2, count - len(right))]
    chosen = np.concatenate([shown_wrong, right[: count - len(shown_wrong)]])
    rows = -(-count // GRID_COLUMNS)
    height = rows * 1.15 + 0.5
    figure = _figure((GRID_COLUMNS * 1.0, height), layout=None)  # a fixed grid: the layout engine only costs time
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02 / height, top=1 - 0.55 / height, hspace=0.35, wspace=0.1)
    accuracy = float(np.mean(labels == predictions))
    figure.suptitle(
        f"{len(wrong)} mistakes in {len(labels)} ({accuracy:.1%} right). "
        "Each title is the prediction; mistakes, in red with the true label, come first"
    )
    grid = figure.subplots(rows, GRID_COLUMNS, squeeze=False)
    for cell, axes in enumerate(grid.flat):
        axes.set_xticks([])
        axes.set_yticks([])
        if cell >= len(chosen):
            axes.set_axis_off()
            continue
        i = chosen[cell]
        mistake = labels[i] != predictions[i]
        axes.imshow(images[i], cmap="gray_r", interpolation="nearest")
        color = MISTAKE_COLOR if mistake else CORRECT_COLOR
        title = f"{predictions[i]} (true {labels[i]})" if mistake else f"{predictions[i]}"
        axes.set_title(title, color=color, fontsize=9)
        for spine in axes.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3 if mistake else 1)
    return figure


# ---- confusion matrix -----------------------------------------------------------------------------------


def confusion_matrix(labels: Any, predictions: Any, num_classes: int | None = None) -> np.ndarray:
    """C[i, j] = how many examples of true class i were predicted as j."""
    labels, predictions = _labels_and_predictions(labels, predictions)
    if num_classes is None:
        num_classes = int(max(labels.max(), predictions.max())) + 1
    if max(labels.max(), predictions.max()) >= num_classes:
        raise ValueError(f"a class index is >= num_classes={num_classes}")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def plot_confusion_matrix(labels: Any, predictions: Any, num_classes: int | None = None) -> Any:
    """The confusion matrix as a heat map with the counts written in each cell."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    n = len(matrix)
    figure = _figure(CONFUSION_SIZE)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, label="examples")
    axes.set_xticks(range(n))
    axes.set_yticks(range(n))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix ({np.trace(matrix)} of {matrix.sum()} right)")
    threshold = matrix.max() / 2
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                          color="white" if matrix[i, j] > threshold else "black")
    return figure


# ---- everything at once ---------------------------------------------------------------------------------


def save_training_plots(
    history: Sequence[Mapping[str, Any]],
    images: Any,
    labels: Any,
    predictions: Any,
    out_dir: str | os.PathLike,
) -> dict[str, Path]:
    """Write training_curves.png, predictions.png and confusion_matrix.png into `out_dir` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "training_curves": plot_training_curves(history),
        "predictions": plot_predictions(images, labels, predictions),
        "confusion_matrix": plot_confusion_matrix(labels, predictions),
    }
    return {name: save_figure(figure, out_dir / f"{name}.png") for name, figure in figures.items()}
