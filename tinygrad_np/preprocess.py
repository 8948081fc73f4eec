"""Turn any picture of a digit into a 28x28 image the way MNIST was made.

MNIST's recipe (LeCun, Cortes, Burges): the digit was size-normalised to fit a 20x20 box keeping its aspect
ratio (anti-aliasing makes grey levels), then placed in a 28x28 field so that its centre of mass sits at the
centre.  "The centre", measured on the data: every one of the 10,000 test images has its centre of mass within
half a pixel of (14, 14) in 0-based (row, column) pixel indices -- not (13.5, 13.5) -- because the digit was
moved by whole pixels.  We use the same convention, exported as ``MNIST_CENTER``.

Pillow is an optional extra (``pip install "tinygrad-np[image]"``); it is imported only when needed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from tinygrad_np.errors import MissingFileError, OutOfMemoryError, UserError, import_extra

MNIST_SIZE = 28
MNIST_BOX = 20  # the longer side of the digit after size normalisation
MNIST_CENTER = (14.0, 14.0)  # (row, col) of the centre of mass, 0-based pixel indices (see module docstring)
MIN_CONTRAST = 0.1  # ink must differ from the background by >= 10% of 0..255, or the image counts as blank
BBOX_THRESHOLD = 0.05  # ink fainter than 5% (noise, paper grain) does not stretch the bounding box
# The largest picture load_image decodes: 50 megapixels covers phone photos (12 to 50 MP) and costs about 1 GB
# while it is turned into grayscale floats; a bigger one is refused from its header, before decoding.
MAX_IMAGE_PIXELS = 50_000_000

Ink = Literal["auto", "light", "dark"]


class BlankImageError(UserError, ValueError):
    """The image has no ink to recognise (an empty canvas, a uniform photo)."""


class ImageFileError(UserError, ValueError):
    """A file that can't be read as a picture: empty, truncated, too large, not an image, unreadable."""


def _pillow():  # -> (Image, ImageOps, UnidentifiedImageError), imported lazily
    PIL = import_extra("PIL", "image", "reading image files")
    from PIL import Image, ImageOps

    return Image, ImageOps, PIL.UnidentifiedImageError


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as 2-D float32 grayscale in 0..255 (alpha flattened, EXIF rotation applied).

    A picture of more than MAX_IMAGE_PIXELS is refused from its header, before it is decoded."""
    Image, ImageOps, UnidentifiedImageError = _pillow()
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ImageFileError(f"{path}: the file is empty, not an image")
    try:
        with warnings.catch_warnings():
            # Pillow prints a warning for pictures between its own limit and twice that; ours is lower, and the
            # check below refuses them in one clean line instead. Open reads the header only.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageFileError(
                    f"{path}: the picture is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), more "
                    f"than the {MAX_IMAGE_PIXELS / 1e6:.0f} this reads; scale it down first"
                )
            img.load()  # decode now, so a truncated file fails here and not later
            img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
            return _to_gray(img)
    except UnidentifiedImageError as exc:
        raise ImageFileError(f"{path}: not an image file Pillow can read (PNG, JPEG, BMP, GIF, ...)") from exc
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit: refused by open itself
        raise ImageFileError(
            f"{path}: the picture is too large to read safely ({exc}); scale it down below "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
        ) from None
    except (OSError, SyntaxError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise MissingFileError(f"{path}: {exc.strerror}") from exc
        if isinstance(exc, PermissionError | IsADirectoryError):
            raise ImageFileError(f"{path}: {exc.strerror}") from exc
        # Pillow reports truncated or corrupt data as OSError (and a few decoders as SyntaxError).
        raise ImageFileError(f"{path}: the image data is truncated or corrupt ({exc})") from exc
    except MemoryError:
        raise OutOfMemoryError(f"not enough memory to decode {path}; scale the picture down") from None


def image_file_to_mnist(path: str | os.PathLike[str], ink: Ink = "auto") -> np.ndarray:
    """`to_mnist(load_image(path), ink)`, with the file named in every error (a blank picture included)."""
    gray = load_image(path)
    try:
        return to_mnist(gray, ink)
    except ValueError as exc:  # BlankImageError keeps its class, so callers can still tell it apart
        raise type(exc)(f"{path}: {exc}") from None


def _to_gray(img) -> np.ndarray:  # img: a PIL.Image.Image
    """Luminance in 0..255; transparent pixels become a background that contrasts with the ink."""
    if img.mode.startswith(("I", "F")):  # 16/32-bit grayscale: rescale 0..65535 to 0..255
        gray = np.asarray(img, dtype=np.float32)
        return gray * np.float32(255 / 65535) if img.mode.startswith("I;16") or gray.max() > 255 else gray
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if not has_alpha:
        return np.asarray(img.convert("L"), dtype=np.float32)
    rgba = img.convert("RGBA")
    gray = np.asarray(rgba.convert("L"), dtype=np.float32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
    if alpha.sum() == 0:
        return np.zeros_like(gray)
    # Drawn digits are often dark strokes on a transparent sheet: put them on white (and light strokes
    # on black), otherwise flattening onto black would erase dark ink.
    ink_is_dark = float((gray * alpha).sum() / alpha.sum()) < 128
    background = np.float32(255 if ink_is_dark else 0)
    return alpha * gray + (1 - alpha) * background


def ink_image(gray: np.ndarray, ink: Ink = "auto") -> np.ndarray:
    """Ink in [0, 1] (1 = strongest stroke, 0 = background) from grayscale in 0..255.

    The background level is the median of the border pixels. ``ink="auto"`` decides the polarity from it:
    a background nearer the brightest value means dark ink on light paper, which is inverted.
    ``ink="light"`` / ``"dark"`` force the polarity (a canvas that sends ink as high values uses "light").
    """
    gray = _check_gray(gray)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    lo, hi = float(gray.min()), float(gray.max())
    if ink == "auto":
        ink = "dark" if background - lo > hi - background else "light"
    elif ink not in ("light", "dark"):
        raise ValueError(f"ink must be 'auto', 'light' or 'dark', got {ink!r}")
    strokes = background - gray if ink == "dark" else gray - background
    peak = float(strokes.max())
    if peak < MIN_CONTRAST * 255:
        hint = " (values look like 0..1: multiply by 255)" if 0 < hi <= 1 else ""
        raise BlankImageError(
            f"no ink found: the strongest {ink} stroke is {max(peak, 0):.1f} grey levels from the background "
            f"({background:.0f}), fewer than the {MIN_CONTRAST * 255:.1f} needed{hint}; draw or load a digit"
        )
    return np.clip(strokes / peak, 0, 1).astype(np.float32)


def _check_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2 or 0 in gray.shape:
        raise ValueError(
            f"expected a non-empty 2-D grayscale image (height, width), got shape {gray.shape}; "
            "convert colour images to grayscale first (load_image does)"
        )
    if not np.issubdtype(gray.dtype, np.number) or np.issubdtype(gray.dtype, np.complexfloating):
        raise ValueError(f"expected real numbers in 0..255, got dtype {gray.dtype}")
    gray = gray.astype(np.float64)
    if not np.isfinite(gray).all():
        raise ValueError("the image contains NaN or infinite values")
    if gray.min() < 0 or gray.max() > 255:
        raise ValueError(f"pixel values must lie in 0..255, got {gray.min():g}..{gray.max():g}")
    return gray


def to_mnist(gray: np.ndarray, ink: Ink = "auto") -> np.ndarray:
    """A (28, 28) float32 image in [0, 1], white digit on black, made the way MNIST was made.

    Steps:
      1. polarity and normalisation (``ink_image``): ink in [0, 1], background 0;
      2. crop to the ink's bounding box (pixels above ``BBOX_THRESHOLD``);
      3. resize so the longer side is 20 px, keeping the aspect ratio (Pillow's anti-aliased Lanczos);
      4. paste into a 28x28 field, shifted by whole pixels so the centre of mass lands within half a
         pixel of ``MNIST_CENTER`` = (14, 14); the shift is clamped so no ink leaves the field, which
         only bites for very lopsided shapes.

    Accepts any size, including an image that is already 28x28 MNIST (which comes back nearly unchanged).
    Raises ``BlankImageError`` (a ValueError) when there is no ink.
    """
    Image, _, _ = _pillow()
    strokes = ink_image(gray, ink)
    rows = np.flatnonzero((strokes > BBOX_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((strokes > BBOX_THRESHOLD).any(axis=0))
    digit = strokes[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = digit.shape
    scale = MNIST_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow wants (width, height)
    # Lanczos rings slightly below 0 and above 1 next to sharp edges; clip back to the ink range.
    digit = np.asarray(Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    digit = np.clip(digit, 0, 1)

    top = _whole_pixel_offset(digit.sum(axis=1), MNIST_CENTER[0])
    left = _whole_pixel_offset(digit.sum(axis=0), MNIST_CENTER[1])
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    out[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return out


def _whole_pixel_offset(profile: np.ndarray, center: float) -> int:
    """Offset o placing the profile's centre of mass c at o + c ≈ center, rounded, kept inside the field."""
    com = float(profile @ np.arange(len(profile)) / profile.sum())
    offset = int(np.floor(center - com + 0.5))
    return min(max(offset, 0), MNIST_SIZE - len(profile))


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, col) = Σ p·(i, j) / Σ p, in 0-based pixel indices, the convention of ``MNIST_CENTER``."""
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    rows, cols = np.indices(image.shape)
    return float((image * rows).sum() / total), float((image * cols).sum() / total)
