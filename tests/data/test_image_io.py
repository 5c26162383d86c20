"""Decoding of every image mode and of the files real collections contain (data/image_io.py)."""

import io

import numpy as np
import pytest
from PIL import Image

from helpers.images import save_image
from imgexp.data import load_rgb
from imgexp.data.image_io import UnreadableImage, open_image


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_every_mode_decodes_to_rgb_uint8(tmp_path, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = Image.new(mode, (20, 10), 200 if mode not in ("P", "1") else 1)
    if mode == "I;16":
        img = Image.fromarray(np.full((10, 20), 40000, dtype=np.uint16))
    path = save_image(img, tmp_path / f"x.{fmt.lower()}", format=fmt)
    arr = load_rgb(path, size=8)
    assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8
    if mode == "I;16":  # scaled, not clipped to 255
        assert 150 < arr.mean() < 160


def test_palette_transparency_composites_on_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0] * 256)
    path = save_image(img, tmp_path / "t.png", transparency=0)
    assert load_rgb(path).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90
    path = save_image(img, tmp_path / "r.jpg", exif=exif.tobytes())
    assert open_image(path).size == (20, 40)


def test_big_jpeg_draft_decodes_near_target_size(tmp_path):
    path = save_image(Image.new("RGB", (2000, 1600), (1, 2, 3)), tmp_path / "big.jpg")
    img = open_image(path, size=200)
    assert 250 <= img.size[0] <= 500  # DCT scaling 1/4..1/8, never below the target
    assert load_rgb(path, size=200).shape == (200, 200, 3)


@pytest.mark.parametrize("content,reason", [
    (b"", "not an image"), (b"hello, I am text", "not an image")])
def test_unreadable_files_raise_with_reason(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=reason):
        load_rgb(path)


def test_truncated_jpeg_is_unreadable(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                    ).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UnreadableImage, match="cannot decode"):
        load_rgb(path)
