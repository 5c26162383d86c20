"""Shared by the app tests: a small labelled gallery of digits and the app's settings file."""

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from imgexp.app.settings import ENV_VAR, AppSettings, write_settings

PAGE_SCRIPT = Path(__file__).parents[2] / "src" / "imgexp" / "app" / "streamlit_app.py"

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


def start_app(settings: Path, monkeypatch) -> AppTest:
    """The app's page script run once in Streamlit's test harness, on `settings`."""
    monkeypatch.setenv(ENV_VAR, str(settings))
    at = AppTest.from_file(str(PAGE_SCRIPT), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio[0].set_value(page).run()
    assert not at.exception, at.exception
    assert at.title[0].value == page
    return at
