"""MNIST-style preprocessing: any picture of a digit -> 28x28, 20 px box, centre of mass at MNIST's centre."""

import gzip
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tinygrad_np.preprocess import (
    BBOX_THRESHOLD,
    MNIST_CENTER,
    BlankImageError,
    center_of_mass,
    image_file_to_mnist,
    ink_image,
    load_image,
    to_mnist,
)


def ring(height: int, width: int, center: tuple[float, float], radius: float, thickness: float) -> np.ndarray:
    """A white ring ("0") on black, 0..255."""
    rows, cols = np.indices((height, width))
    distance = np.hypot(rows - center[0], cols - center[1])
    return np.where(np.abs(distance - radius) <= thickness / 2, 255.0, 0.0)


def bar(height: int, width: int, top: int, left: int, bar_height: int, bar_width: int) -> np.ndarray:
    """A white upright bar ("1") on black, 0..255."""
    image = np.zeros((height, width))
    image[top : top + bar_height, left : left + bar_width] = 255.0
    return image


def bbox_sides(image: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def assert_mnist_like(out: np.ndarray) -> None:
    """28x28 float32 in [0, 1], longer side of the ink box 20, centre of mass within 0.5 px of (14, 14)."""
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert max(bbox_sides(out > 0)) == 20
    com = center_of_mass(out)
    # Whole-pixel shifts, as MNIST did: at most half a pixel off, in (row, col) 0-based indices.
    assert abs(com[0] - MNIST_CENTER[0]) <= 0.5 + 1e-9 and abs(com[1] - MNIST_CENTER[1]) <= 0.5 + 1e-9, com


@pytest.mark.parametrize(
    "image",
    [
        bar(300, 17, top=40, left=5, bar_height=200, bar_width=6),  # tall and thin
        ring(17, 300, center=(8, 220), radius=6, thickness=2),  # wide and short, digit off to the right
        ring(1000, 1000, center=(300, 650), radius=200, thickness=40),
        bar(1000, 1000, top=100, left=100, bar_height=700, bar_width=90),
        ring(28, 28, center=(14, 14), radius=9, thickness=2.5),
        bar(5, 5, top=1, left=2, bar_height=3, bar_width=1),  # tiny: upscaled to 20 px
    ],
    ids=["bar-300x17", "ring-17x300", "ring-1000x1000", "bar-1000x1000", "ring-28x28", "bar-5x5"],
)
def test_odd_sizes_come_out_mnist_like(image):
    assert_mnist_like(to_mnist(image))
    assert_mnist_like(to_mnist(255 - image))  # dark on light


@given(
    height=st.integers(24, 200),
    width=st.integers(24, 200),
    position=st.tuples(st.floats(0.3, 0.7), st.floats(0.3, 0.7)),
    size=st.floats(0.15, 0.3),
    dark_on_light=st.booleans(),
)
def test_rings_anywhere_come_out_mnist_like(height, width, position, size, dark_on_light):
    radius = size * min(height, width)
    image = ring(height, width, (position[0] * height, position[1] * width), radius, max(2.0, radius / 4))
    assert_mnist_like(to_mnist(255 - image if dark_on_light else image))


def test_bar_keeps_its_aspect_ratio():
    # 200 x 40 (5:1) becomes 20 x 4.
    out = to_mnist(bar(400, 300, top=100, left=50, bar_height=200, bar_width=40))
    assert bbox_sides(out > 0.5) == (20, 4)


def test_polarity_is_detected_from_the_background():
    image = ring(120, 90, center=(60, 45), radius=30, thickness=8)
    light = to_mnist(image)
    np.testing.assert_allclose(to_mnist(255 - image), light, atol=1e-6)
    np.testing.assert_allclose(to_mnist(255 - image, ink="dark"), light, atol=1e-6)
    # Grey pencil (70) on grey paper (200): same digit, full contrast.
    paper = np.where(image > 0, 70.0, 200.0)
    np.testing.assert_allclose(to_mnist(paper), light, atol=1e-6)
    # Forcing the wrong polarity finds nothing brighter than the paper.
    with pytest.raises(BlankImageError, match="no ink"):
        to_mnist(paper, ink="light")


def test_ink_image_maps_background_to_0_and_strongest_stroke_to_1():
    paper = np.full((30, 30), 230.0)
    paper[10:20, 14:16] = 30.0
    paper[10:20, 16] = 130.0  # a half-strength edge
    ink = ink_image(paper)
    assert ink[0, 0] == 0 and ink[15, 14] == 1
    assert ink[15, 16] == pytest.approx(0.5)


def test_mnist_images_pass_through_nearly_unchanged(mnist_dir):
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:1000]
    originals = images / 255.0
    # The convention we copy, checked on the data: MNIST's centre of mass is within 0.5 px of (14, 14).
    for original in originals:
        com = center_of_mass(original)
        assert abs(com[0] - 14) <= 0.5 and abs(com[1] - 14) <= 0.5
    outputs = np.stack([to_mnist(image) for image in images])
    # Unchanged up to rescaling the brightest pixel to 1 and cropping ink fainter than the bbox threshold;
    # a few images move by one pixel when that crop nudges their centre of mass across a half pixel.
    max_diff = np.abs(outputs - originals).reshape(len(images), -1).max(axis=1)
    assert (max_diff <= BBOX_THRESHOLD + 1 / 255).mean() >= 0.99
    assert (max_diff <= 1 / 255 + 1e-6).mean() >= 0.9
    for output in outputs:
        assert_mnist_like(output)


def test_lopsided_digit_stays_inside_the_field():
    # A "T" with a heavy top: centring its centre of mass would push the stem's foot out of the frame,
    # so the shift is clamped and all the ink stays.
    image = np.zeros((100, 100))
    image[10:30, 10:90] = 255  # heavy bar
    image[30:90, 47:53] = 255  # thin stem
    out = to_mnist(image)
    assert out[27].max() > 0.5  # stem reaches the bottom row
    assert out[:8].max() == 0  # the box sits as low as it can: rows 8..27
    assert center_of_mass(out)[0] < MNIST_CENTER[0] - 0.5


def test_blank_images_are_refused_with_a_clear_error():
    for blank in (np.zeros((28, 28)), np.full((50, 40), 255.0), np.full((9, 9), 128.0)):
        with pytest.raises(BlankImageError, match="no ink"):
            to_mnist(blank)
    faint = np.zeros((28, 28))
    faint[10, 10] = 10  # 4% of full scale: noise, not a digit
    with pytest.raises(BlankImageError, match="no ink"):
        to_mnist(faint)
    unit_scale = ring(28, 28, (14, 14), 8, 2) / 255  # a 0..1 image: tell the user to scale it
    with pytest.raises(BlankImageError, match="multiply by 255"):
        to_mnist(unit_scale)
    assert issubclass(BlankImageError, ValueError)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((28, 28, 3)), "2-D grayscale"),
        (np.zeros((0, 5)), "non-empty"),
        (np.array([[np.nan, 0.0], [0.0, 255.0]]), "NaN or infinite"),
        (np.array([[300.0, 0.0], [0.0, 0.0]]), r"0\.\.255"),
        (np.array([[-1.0, 0.0], [0.0, 255.0]]), r"0\.\.255"),
        (np.array([["a", "b"]]), "real numbers"),
    ],
)
def test_bad_arrays_get_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        to_mnist(bad)


def test_unknown_ink_mode_is_refused():
    with pytest.raises(ValueError, match="ink must be"):
        to_mnist(ring(28, 28, (14, 14), 8, 2), ink="white")


# --- files ---------------------------------------------------------------------------------------------


def test_png_round_trips_through_pillow(tmp_path):
    image = ring(60, 50, center=(30, 25), radius=18, thickness=5)
    path = tmp_path / "ring.png"
    Image.fromarray(image.astype(np.uint8)).save(path)
    loaded = load_image(path)
    assert loaded.dtype == np.float32 and loaded.shape == (60, 50)
    np.testing.assert_array_equal(loaded, image)
    np.testing.assert_array_equal(to_mnist(loaded), to_mnist(image))


def test_colour_jpeg_and_16_bit_png_load_as_gray(tmp_path):
    image = ring(60, 50, center=(30, 25), radius=18, thickness=5)
    rgb = np.stack([image, image, image], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ring.bmp")
    np.testing.assert_array_equal(load_image(tmp_path / "ring.bmp"), image)
    Image.fromarray((image * 257).astype(np.uint16)).save(tmp_path / "ring16.png")
    np.testing.assert_allclose(load_image(tmp_path / "ring16.png"), image, atol=1e-3)
    Image.fromarray(rgb).save(tmp_path / "ring.jpg", quality=95)
    np.testing.assert_allclose(load_image(tmp_path / "ring.jpg"), image, atol=60)  # JPEG is lossy at edges


def test_dark_strokes_on_a_transparent_sheet_are_put_on_white(tmp_path):
    # A typical drawing app export: black ink, alpha = coverage, transparent everywhere else.
    coverage = ring(60, 50, center=(30, 25), radius=18, thickness=5)
    rgba = np.zeros((60, 50, 4), np.uint8)
    rgba[..., 3] = coverage
    Image.fromarray(rgba).save(tmp_path / "drawing.png")
    loaded = load_image(tmp_path / "drawing.png")
    np.testing.assert_allclose(loaded, 255 - coverage, atol=1e-3)
    np.testing.assert_allclose(to_mnist(loaded), to_mnist(coverage), atol=1e-5)


def test_bad_files_get_a_clear_error_naming_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(ValueError, match=r"notes\.png: not an image"):
        load_image(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png: the file is empty"):
        load_image(empty)
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.png: the image data is truncated or corrupt"):
        load_image(truncated)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


def test_missing_pillow_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import ...` raise ImportError
    with pytest.raises(ImportError, match=r"pip install \"tinygrad-np\[image\]\""):
        load_image(tmp_path / "any.png")


def png_of_size(path, width: int, height: int):
    """A valid 1-bit PNG of any size, written by hand: a few KB even at 169 megapixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(bytes(1 + (width + 7) // 8) * height, 9)  # filter byte + packed bits, all black
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_a_picture_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import tinygrad_np.preprocess as preprocess

    monkeypatch.setattr(preprocess, "MAX_IMAGE_PIXELS", 10_000)
    assert load_image(png_of_size(tmp_path / "ok.png", 100, 100)).shape == (100, 100)
    decoded = []
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ValueError, match=r"big\.png: the picture is 101 x 100 pixels \(0 megapixels\)"):
        load_image(png_of_size(tmp_path / "big.png", 101, 100))
    assert decoded == []


def test_pillows_bomb_warning_never_reaches_the_user(tmp_path, recwarn):
    path = png_of_size(tmp_path / "13000.png", 13_000, 13_000)  # past Pillow's warning, below its error
    with pytest.raises(ValueError, match=r"13000 x 13000 pixels \(169 megapixels\), more than the 50"):
        load_image(path)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize(("size", "ink"), [((40, 30), 0), ((1, 1), 0), ((20, 20), 255)])
def test_a_blank_picture_file_is_named_in_the_error(tmp_path, size, ink):
    path = tmp_path / "my drawing.png"
    Image.fromarray(np.full(size, ink, np.uint8)).save(path)
    with pytest.raises(BlankImageError, match=r"my drawing\.png: no ink found"):
        image_file_to_mnist(path)


def test_image_file_to_mnist_is_to_mnist_of_load_image(tmp_path):
    image = ring(60, 50, center=(30, 25), radius=18, thickness=5)
    path = tmp_path / "ring.png"
    Image.fromarray(image.astype(np.uint8)).save(path)
    np.testing.assert_array_equal(image_file_to_mnist(path), to_mnist(load_image(path)))
    with pytest.raises(ValueError, match=r"ring\.png: ink must be"):
        image_file_to_mnist(path, ink="white")
