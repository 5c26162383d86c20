"""Turn an uploaded file into an image the model can take, or a message the user can act on.

Uploads are decoded from memory (never written to disk) by the same robust decoder as the
training data, with its decompression-bomb guard; a bad upload raises BadUpload, whose text
the page shows instead of a traceback.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from imgexp.data import UnreadableImage, load_rgb, open_image
from imgexp.data.splits import IMAGE_EXTENSIONS

DISPLAY_SIZE = 384


class BadUpload(Exception):
    """The upload cannot be used; the message says why and what to do."""


def check_upload(name: str, data: bytes, max_upload_mb: float) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise BadUpload(f"{name} is not an image file: upload one of "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))}")
    if len(data) > max_upload_mb * 1024 * 1024:
        raise BadUpload(f"{name} is {len(data) / 2**20:.1f} MB: uploads are limited to "
                        f"{max_upload_mb:g} MB (max_upload_mb=)")
    if not data:
        raise BadUpload(f"{name} is empty")


def decode_upload(name: str, data: bytes, image_size: int, max_upload_mb: float,
                  ) -> tuple[np.ndarray, Image.Image]:
    """(model input HxWx3 uint8 at image_size, display thumbnail) of an uploaded image."""
    check_upload(name, data, max_upload_mb)
    try:
        # open_image first: it enforces the pixel limit before any full decode
        display = open_image(io.BytesIO(data), size=DISPLAY_SIZE)
        # the model input is decoded exactly as the training data was (load_rgb)
        pixels = load_rgb(io.BytesIO(data), image_size)
    except UnreadableImage as exc:
        raise BadUpload(f"{name} cannot be used: {exc}") from None
    display.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE))
    return pixels, display
