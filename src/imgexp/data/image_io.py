"""Decode any image file a user may have into an RGB uint8 array of about the needed size.

Handles grayscale, palette (with transparency), RGBA, CMYK, 16-bit and EXIF-rotated files; big
JPEGs are decoded with PIL's draft mode (DCT scaling), which is several times faster than a
full decode followed by a resize.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Decompression-bomb guard: Pillow warns at ~89 MP and raises at twice that; we raise with a
# clear message at a configurable limit instead.
DEFAULT_MAX_PIXELS = 178_956_970


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


def open_image(path: str | Path, size: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, fully decode and orient an image as RGB; raise UnreadableImage with the reason.

    `size`: the target side; JPEGs are then draft-decoded to the smallest scale >= size.
    """
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise UnreadableImage("file not found", "not found") from None
    except PermissionError:
        raise UnreadableImage("permission denied", "permission denied") from None
    except Image.DecompressionBombError:
        raise UnreadableImage("decompression bomb: too many pixels", "decompression bomb") from None
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise UnreadableImage(f"not an image ({type(exc).__name__})", "not an image") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise UnreadableImage(f"too many pixels: {w}x{h} > {max_pixels}",
                                  "decompression bomb")
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
