"""Effect tests for prepare options that had none (tests/EFFECTS.md): each moves one option and
measures what it is said to change."""

from collections import Counter

import pytest
from PIL import Image, JpegImagePlugin

from helpers.prepare import make_classes, run_prepare_on
from imgexp.prepare import checks as inspect


def test_prepare_ratios_set_the_split_shares(tmp_path):
    make_classes(tmp_path / "src", {"a": 20, "b": 20})

    def counts(*overrides) -> Counter:
        out = run_prepare_on(tmp_path / "src", tmp_path / str(len(overrides)), *overrides)
        return Counter((r["label"], r["split"]) for r in out.manifest)

    default = counts()  # 0.7 / 0.15 / 0.15 of 20 per class
    assert default[("a", "train")] == 14 and default[("a", "test")] == 3
    halves = counts("prepare.ratios=[0.5,0.5,0]")
    assert halves == {(c, s): 10 for c in "ab" for s in ("train", "val")}


def test_prepare_min_size_rejects_smaller_images(tmp_path):
    make_classes(tmp_path / "src", {"a": 3, "b": 3})
    Image.new("RGB", (10, 10), (200, 30, 30)).save(tmp_path / "src" / "b" / "small.png")
    default = run_prepare_on(tmp_path / "src", tmp_path / "default")
    assert "b/small.png" not in default.rejected
    strict = run_prepare_on(tmp_path / "src", tmp_path / "strict", "prepare.min_size=12")
    assert strict.rejected["b/small.png"].startswith("too small: 10x10 < prepare.min_size=12")


@pytest.mark.parametrize("full_decode,drafts", [("false", True), ("true", False)])
def test_prepare_full_decode_skips_the_dct_scaled_decode(tmp_path, monkeypatch, full_decode,
                                                          drafts):
    make_classes(tmp_path / "src", {"a": 2, "b": 2}, ext=".jpg")
    calls = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    monkeypatch.setattr(inspect, "default_workers", lambda: 1)  # checks in this process
    out = run_prepare_on(tmp_path / "src", tmp_path / "run", "prepare.workers=1",
                         f"prepare.full_decode={full_decode}")
    assert len(out.manifest) == 4
    assert bool(calls) is drafts
