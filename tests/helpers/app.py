"""Shared by the app tests: a small labelled gallery of digits and the app's settings file."""

import shutil
from pathlib import Path

from imgexp.app.settings import AppSettings, write_settings

GALLERY_CLASSES = ("0", "1", "7")
PER_CLASS = 4


def make_gallery(digits_root: Path, dest: Path) -> Path:
    """dest/<class>/<file>.png: the last PER_CLASS digits of a few classes (copies)."""
    for label in GALLERY_CLASSES:
        (dest / label).mkdir(parents=True)
        for src in sorted((digits_root / label).glob("*.png"))[-PER_CLASS:]:
            shutil.copy2(src, dest / label / src.name)
    return dest


def settings_file(tmp: Path, ckpt: Path, gallery: Path, name: str = "app_settings.json",
                  **overrides) -> Path:
    # fp32 unless asked: the tests compare the page with fp32 references at 1e-5
    overrides.setdefault("precision", "fp32")
    settings = AppSettings(ckpt_path=str(ckpt), gallery=str(gallery),
                           cache_dir=str(tmp / "cache"), **overrides)
    return write_settings(tmp / name, settings)


def digit_png(digits_root: Path, label: str) -> Path:
    """A digit image that is not in the gallery (the gallery takes the last files)."""
    return sorted((digits_root / label).glob("*.png"))[0]
