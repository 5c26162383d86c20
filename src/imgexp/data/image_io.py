"""Decode any image file a user may have into an RGB uint8 array of about the needed size.

Handles grayscale, palette (with transparency), RGBA, CMYK, 16-bit and EXIF-rotated files; big
JPEGs are decoded with PIL's draft mode (DCT scaling), which is several times faster than a
full decode followed by a resize.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgexp.errors import ImgexpError

# Decompression-bomb guard, one limit for every stage (train, eval, predict, select, audit,
# prepare, the app's uploads), checked from the header before any pixel is decoded. An
# environment variable rather than a config key: decoding happens in loader workers, prepare's
# checking processes and the app's Streamlit process, which all inherit the environment.
# 100 MP: a 10000x10000 photo passes; a 13000x13000 PNG of 20 KB (+830 MB when decoded) not.
MAX_PIXELS_ENV = "IMGEXP_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000
# Pillow's own guard would refuse at twice its threshold whatever the limit above says
Image.MAX_IMAGE_PIXELS = None


def max_image_pixels() -> int:
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ImgexpError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive whole number of pixels "
                          f"(the default is {DEFAULT_MAX_PIXELS})")
    return limit


class UnreadableImage(Exception):
    """The file cannot be decoded as an image; the message says why.

    `reason` is a short stable code ("truncated", "not an image", ...) that reports count by.
    """

    def __init__(self, message: str, reason: str = "cannot decode"):
        super().__init__(message)
        self.reason = reason


def decode_failure(exc: Exception) -> UnreadableImage:
    """Name why Pillow failed while decoding pixel data: a cut file or a corrupt one."""
    detail = f"cannot decode ({type(exc).__name__}: {exc})"
    if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
        return UnreadableImage(f"truncated: {detail}", "truncated")
    return UnreadableImage(f"corrupt: {detail}", "corrupt")


def check_pixels(width: int, height: int) -> None:
    """Refuse an image with more pixels than the limit, naming the limit and how to raise it."""
    limit = max_image_pixels()
    if width * height > limit:
        raise UnreadableImage(f"decompression bomb: {width}x{height} = "
                              f"{width * height / 1e6:.1f} MP > {MAX_PIXELS_ENV}={limit} "
                              "(raise it to decode this image)", "decompression bomb")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, compositing transparency on white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit integer images: scale to 8 bits rather than clip (a plain convert clips).
        arr = np.asarray(img, dtype=np.float64)
        hi = max(arr.max(), 1.0)
        scale = 65535.0 if hi > 255 else 255.0
        return Image.fromarray((arr / scale * 255.0).clip(0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def open_image(path: str | Path, size: int | None = None) -> Image.Image:
    """Open, fully decode and orient an image as RGB; raise UnreadableImage with the reason.

    `size`: the target side; JPEGs are then draft-decoded to the smallest scale >= size.
    """
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise UnreadableImage("file not found", "not found") from None
    except PermissionError:
        raise UnreadableImage("permission denied", "permission denied") from None
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise UnreadableImage(f"not an image ({type(exc).__name__})", "not an image") from None
    with img:
        check_pixels(*img.size)
        if size and img.format == "JPEG":
            # draft keeps the size >= the requested one in both dimensions
            img.draft("RGB", (size, size))
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
        except Exception as exc:
            raise decode_failure(exc) from None


def load_rgb(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode to an HxWx3 uint8 array, resized to size x size when `size` is given."""
    img = open_image(path, size=size)
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.array(img, dtype=np.uint8)  # writable: torch.from_numpy needs it
