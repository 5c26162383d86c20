"""Each quality check finds its planted image, and each threshold switches its check off."""

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from helpers.config import compose_config
from helpers.prepare import smooth_image
from imgexp.audit.pixels import describe
from imgexp.audit.quality import quality_issues

PLANTED = {
    "overexposed": lambda: Image.new("RGB", (64, 64), (252, 252, 252)),
    "tiny": lambda: smooth_image(1, (10, 10)),
    "odd_aspect": lambda: smooth_image(2, (64, 16)),
    "grayscale": lambda: smooth_image(3, (64, 64), "L"),
    "blurry": lambda: smooth_image(4, (64, 64)),  # smooth, among sharp noise pictures
}
# the option that switches each check off
OFF = {"overexposed": "overexposed_fraction=1", "tiny": "tiny_fraction=0",
       "odd_aspect": "max_aspect=100", "grayscale": "colour_set_share_gray=0",
       "blurry": "blurry_fraction=0"}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    paths = []
    for i in range(20):  # a clean, sharp colour set: noise photos of 64x64
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(40, 215, (64, 64, 3), dtype=np.uint8)).save(
            path := folder / f"clean{i}.png")
        paths.append(path)
    for kind, make in PLANTED.items():
        make().save(path := folder / f"{kind}.png")
        paths.append(path)
    return np.stack([describe(p) for p in paths])


def flagged(rows, *overrides):
    q = compose_config("audit", ["data.root=unused", *overrides], ".").audit.quality
    return {(i - 20, issue) for i, issue, _ in quality_issues(rows, OmegaConf.create(q))}


def test_each_planted_defect_is_found_and_the_clean_set_is_not_flagged(rows):
    found = flagged(rows)
    assert all(i >= 0 for i, _ in found), found  # no clean image flagged
    for k, kind in enumerate(PLANTED):
        assert (k, kind) in found, (kind, found)


@pytest.mark.parametrize("kind", list(OFF))
def test_each_threshold_switches_its_check_off(rows, kind):
    assert kind in {issue for _, issue in flagged(rows)}
    assert kind not in {issue for _, issue in flagged(rows, f"audit.quality.{OFF[kind]}")}


def test_a_dark_colour_photo_is_dark_not_also_grayscale(tmp_path):
    # at 5% brightness a colour photo has too little colour left: it was counted twice
    rng = np.random.default_rng(0)
    paths = []
    for i in range(20):
        Image.fromarray(rng.integers(40, 215, (64, 64, 3), dtype=np.uint8)).save(
            path := tmp_path / f"clean{i}.png")
        paths.append(path)
    dark = (rng.integers(40, 215, (64, 64, 3)) * 0.01).astype(np.uint8)  # channels within 2
    Image.fromarray(dark).save(path := tmp_path / "dark.png")
    paths.append(path)
    issues = {issue for i, issue in flagged(np.stack([describe(p) for p in paths])) if i == 0}
    assert issues == {"dark"}


def test_tiny_below_flags_an_absolute_size_the_relative_rule_misses(tmp_path):
    """12 px among 64 px images: within tiny_fraction=0.1 of the median (6.4 px), so only the
    absolute rule (tiny_below) can flag it."""
    paths = []
    for i in range(10):
        smooth_image(i, (64, 64)).save(path := tmp_path / f"clean{i}.png")
        paths.append(path)
    smooth_image(99, (12, 12)).save(path := tmp_path / "small.png")
    paths.append(path)
    rows = np.stack([describe(p) for p in paths])
    relative = "audit.quality.tiny_fraction=0.1"
    assert (-10, "tiny") in flagged(rows, relative, "audit.quality.tiny_below=16")
    assert (-10, "tiny") not in flagged(rows, relative, "audit.quality.tiny_below=8")
