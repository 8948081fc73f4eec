"""Training plots: real PNGs of the promised size with something drawn in them; mistakes marked in red."""

import importlib.util
import os
import sys

import numpy as np
import pytest
from conftest import require
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np.data import load_offline_sample
from tinygrad_np.plots import (
    CONFUSION_SIZE,
    CURVES_SIZE,
    DPI,
    GRID_COLUMNS,
    MISTAKE_COLOR,
    confusion_matrix,
    plot_predictions,
    plot_training_curves,
    save_figure,
    save_training_plots,
)

HISTORY = [
    {"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 1 - 0.5 / e, "test_loss": 2.2 / e,
     "test_accuracy": 1 - 0.6 / e, "lr": 0.1 * 0.8**e}
    for e in range(1, 9)
]


@pytest.fixture(scope="module")
def Image():
    require(importlib.util.find_spec("matplotlib") is not None, "matplotlib is not installed (extra `plot`)")
    require(importlib.util.find_spec("PIL") is not None, "Pillow is not installed (extra `image`)")
    from PIL import Image

    return Image


@pytest.fixture(scope="module")
def test_digits():
    images, labels = load_offline_sample().arrays("test")
    rng = np.random.default_rng(0)
    # A classifier that is wrong on about 10% of the digits.
    predictions = np.where(rng.random(len(labels)) < 0.1, (labels + rng.integers(1, 10, len(labels))) % 10, labels)
    return images, labels, predictions


@pytest.fixture(scope="module")
def pngs(Image, test_digits, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("plots") / "nested" / "dir"
    paths = save_training_plots(HISTORY, *test_digits, out_dir)
    return out_dir, paths


def pixels(Image, path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def assert_real_picture(array, size):
    height, width, _ = array.shape
    assert (width, height) == size
    assert array.std() > 20, "nearly uniform: a blank picture?"
    colours = np.unique(array.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"only {len(colours)} distinct colours"
    white = np.all(array == 255, axis=2).mean()
    assert 0.3 < white < 0.995, f"{white:.1%} white"


def size_of(figsize):
    return round(figsize[0] * DPI), round(figsize[1] * DPI)


def test_three_pngs_are_written_into_a_created_folder(pngs):
    out_dir, paths = pngs
    assert sorted(os.listdir(out_dir)) == ["confusion_matrix.png", "predictions.png", "training_curves.png"]
    assert paths == {name: out_dir / f"{name}.png" for name in ("training_curves", "predictions", "confusion_matrix")}


def test_training_curves_png_is_a_real_picture(Image, pngs):
    assert_real_picture(pixels(Image, pngs[1]["training_curves"]), size_of(CURVES_SIZE))


def test_confusion_matrix_png_is_a_real_picture(Image, pngs):
    array = pixels(Image, pngs[1]["confusion_matrix"])
    assert_real_picture(array, size_of(CONFUSION_SIZE))
    # The heat map's dark blue diagonal (90% of each class) is there.
    dark_blue = (array[..., 2] > 80) & (array[..., 0] < 40) & (array[..., 1] < 80)
    assert dark_blue.sum() > 1000


def red_pixels(array):
    r, g, b = (int(MISTAKE_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    return int(np.sum(np.all(np.abs(array.astype(int) - (r, g, b)) < 30, axis=2)))


def test_predictions_png_marks_the_mistakes_in_red(Image, pngs, test_digits, tmp_path):
    rows = -(-50 // GRID_COLUMNS)
    array = pixels(Image, pngs[1]["predictions"])
    assert_real_picture(array, size_of((GRID_COLUMNS * 1.0, rows * 1.15 + 0.5)))
    assert red_pixels(array) > 2000  # 25 thick red frames
    images, labels, _ = test_digits
    perfect = save_figure(plot_predictions(images, labels, labels), tmp_path / "perfect.png")
    assert red_pixels(pixels(Image, perfect)) == 0


def test_images_may_be_flat_rows_or_28x28(Image, test_digits):
    images, labels, predictions = test_digits
    flat = plot_predictions(images[:20], labels[:20], predictions[:20], count=20)
    square = plot_predictions(images[:20].reshape(-1, 28, 28), labels[:20], predictions[:20], count=20)
    assert len(flat.axes) == len(square.axes) == 20


def test_a_cnns_input_and_predictions_plot_as_the_same_picture(Image, test_digits, tmp_path):
    """A CNN reads (N, 1, 28, 28): the plots take its input as it is and draw the digits they draw from (N, 28, 28)."""
    from cnn_helpers import small_cnn

    from tinygrad_np.train import predict_proba

    images, labels, _ = test_digits
    batch = images[:30].reshape(30, 1, 28, 28)
    predictions = predict_proba(small_cnn(), batch).argmax(axis=1)
    as_channels = save_figure(plot_predictions(batch, labels[:30], predictions, count=30), tmp_path / "cnn.png")
    as_squares = save_figure(plot_predictions(batch[:, 0], labels[:30], predictions, count=30), tmp_path / "sq.png")
    np.testing.assert_array_equal(pixels(Image, as_channels), pixels(Image, as_squares))
    assert red_pixels(pixels(Image, as_channels)) > 0  # an untrained CNN: mistakes, framed in red


def test_history_without_test_metrics_still_plots(Image, tmp_path):
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + e / 20} for e in range(1, 4)]
    path = save_figure(plot_training_curves(history), tmp_path / "curves.png")
    assert_real_picture(pixels(Image, path), size_of(CURVES_SIZE))
    assert os.listdir(tmp_path) == ["curves.png"]  # no temp file left behind


@pytest.mark.parametrize(
    ("history", "expected"),
    [([], "non-empty list"), ("loss", "non-empty list"), ([{"epoch": 1, "lr": 0.1}], "nothing to plot")],
)
def test_bad_histories_are_refused(Image, history, expected):
    with pytest.raises(ValueError, match=expected):
        plot_training_curves(history)


def test_bad_prediction_inputs_are_refused(Image):
    images, labels = np.zeros((4, 28, 28)), np.array([1, 2, 3, 4])
    with pytest.raises(ValueError, match="same length"):
        plot_predictions(images, labels, labels[:3])
    with pytest.raises(ValueError, match=r"got 3 images but 4 labels"):
        plot_predictions(images[:3], labels, labels)
    for wrong in (np.zeros((4, 10)), np.zeros((4, 3, 28, 28))):
        with pytest.raises(ValueError, match=r"\(N, 28, 28\), \(N, 1, 28, 28\) or \(N, 784\)"):
            plot_predictions(wrong, labels, labels)
    with pytest.raises(ValueError, match="integer classes"):
        plot_predictions(images, labels, labels.astype(float))


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=200))
def test_confusion_matrix_counts_every_pair(pairs):
    labels, predictions = (np.array(column) for column in zip(*pairs, strict=True))
    matrix = confusion_matrix(labels, predictions, 10)
    expected = np.zeros((10, 10), dtype=int)
    for true, predicted in pairs:
        expected[true, predicted] += 1
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_matrix_rejects_classes_out_of_range():
    with pytest.raises(ValueError, match="num_classes=3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_a_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import raise ImportError
    with pytest.raises(ImportError, match=r'pip install "tinygrad-np\[plot\]"'):
        plot_training_curves(HISTORY)
