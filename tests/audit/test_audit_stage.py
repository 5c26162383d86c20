"""imgexp-audit end to end on a tiny split folder with planted findings: a near copy across
splits (a leak), a chain of copies (one group), an exact copy, a dark and a flat image, an
unreadable file and a mislabelled image. The source tree must be byte-identical afterwards."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from helpers.browser import headless_chromium
from helpers.config import compose_config
from helpers.prepare import fingerprint, jpeg_copy, smooth_image
from imgexp.audit import pixels
from imgexp.audit.pipeline import run_audit
from imgexp.errors import ImgexpError

CLASSES = ("cat", "dog")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit_src")
    for s, split in enumerate(("train", "val", "test")):  # every split fixed by its folder
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(8 if split == "train" else 2):
                smooth_image(1000 * s + 100 * c + i, (48, 48)).save(
                    root / split / name / f"{i}.png")
    original = Image.open(root / "train/cat/0.png")
    jpeg_copy(original, 1.5, 70).save(root / "test/cat/leak.jpg")           # leak train -> test
    first = jpeg_copy(Image.open(root / "train/dog/1.png"), 0.9, 90)
    first.save(root / "train/dog/copy1.jpg")
    ImageEnhance.Brightness(first).enhance(1.15).save(root / "train/dog/copy2.png")  # a chain
    shutil.copyfile(root / "train/cat/2.png", root / "train/cat/exact.png")
    # an image of its own, darkened: a darkened copy of a set image is a near-duplicate too
    ImageEnhance.Brightness(smooth_image(9999, (48, 48))).enhance(0.15).save(
        root / "train/cat/dark.png")
    Image.new("RGB", (48, 48), (150, 110, 70)).save(root / "train/dog/flat.png")
    (root / "train/dog/broken.png").write_bytes(b"not an image")
    return root


def run(root, out, *overrides):
    before = fingerprint(root)
    cfg = compose_config("audit", [f"data.root={root}", f"audit.cache_dir={out}/cache",
                                   *overrides], out / "run")
    summary = run_audit(cfg)
    assert fingerprint(root) == before, "the source tree changed"
    return summary, out / "run"


@pytest.fixture(scope="module")
def audited(source, tmp_path_factory):
    return run(source, tmp_path_factory.mktemp("audit_out"))


def read(run_dir, name):
    return pd.read_csv(run_dir / f"{name}.csv", keep_default_na=False, dtype=str)


def pairs_of(frame):
    return {frozenset((r.path_a, r.path_b)): r for r in frame.itertuples()}


def test_near_copies_exact_copies_chains_and_leaks_are_found(audited):
    summary, run_dir = audited
    dup = pairs_of(read(run_dir, "near_duplicates"))
    leak = frozenset(("train/cat/0.png", "test/cat/leak.jpg"))
    assert dup[leak].kind == "near" and float(dup[leak].distance) <= 0.006
    assert dup[frozenset(("train/cat/2.png", "train/cat/exact.png"))].kind == "exact"
    chain = [r for k, r in dup.items() if k & {"train/dog/1.png", "train/dog/copy1.jpg",
                                                "train/dog/copy2.png"}]
    assert len(chain) >= 2 and len({r.group for r in chain}) == 1  # one group for the chain
    assert len(dup) == 4 + (len(chain) == 3), sorted(map(sorted, dup))  # nothing else
    leaks = pairs_of(read(run_dir, "leaks"))
    assert set(leaks) == {leak} and summary["leaks"] == 1


def test_poor_images_and_unreadable_files_are_listed(audited):
    summary, run_dir = audited
    quality = read(run_dir, "quality")
    assert set(zip(quality.path, quality.issue, strict=True)) == {("train/cat/dark.png", "dark"),
                                                     ("train/dog/flat.png", "low_information")}
    assert list(read(run_dir, "unreadable").path) == ["train/dog/broken.png"]
    assert summary["unreadable"] == 1 and summary["audited"] == summary["images"] - 1


def test_review_sheet_lists_every_flagged_image_with_an_empty_decision(audited):
    summary, run_dir = audited
    review = read(run_dir, "review")
    flagged = set(read(run_dir, "quality").path) | set(read(run_dir, "label_issues").path)
    dup = read(run_dir, "near_duplicates")
    flagged |= set(dup.path_a) | set(dup.path_b)
    assert set(review.path) == flagged and (review.decision == "").all()
    assert json.loads((run_dir / "summary.json").read_text())["review_rows"] == len(review)


def test_thresholds_have_an_effect(source, tmp_path):
    summary, run_dir = run(source, tmp_path, "audit.near_dup_threshold=0",
                           "audit.quality.dark_below=0", "audit.quality.low_information_below=0",
                           "audit.quality.blurry_fraction=0")
    kinds = set(read(run_dir, "near_duplicates").kind)
    assert kinds == {"exact"} and summary["leaks"] == 0
    assert read(run_dir, "quality").empty


def test_a_second_audit_reads_pixels_from_the_cache(source, tmp_path, monkeypatch):
    run(source, tmp_path)
    def decode_only_the_broken(path):  # unreadable files are tried again: they may be fixed
        assert path.name == "broken.png", f"decoded {path} again"

    monkeypatch.setattr(pixels, "describe", decode_only_the_broken)
    summary, run_dir = run(source, tmp_path, "audit.report_thumbnails=1")
    assert summary["near_duplicates"]["pairs"] >= 4
    page = (run_dir / "report.html").read_text()
    assert page.count('class="pair"') == 2  # one near-duplicate and one leak: the limit holds


def test_one_class_skips_the_label_checks_with_a_note(tmp_path):
    (tmp_path / "src" / "only").mkdir(parents=True)
    for i in range(6):
        smooth_image(i, (40, 40)).save(tmp_path / "src" / "only" / f"{i}.png")
    summary, run_dir = run(tmp_path / "src", tmp_path)
    assert summary["label_issues"]["check"] is None
    assert "skipped" in summary["label_issues"]["note"]
    assert read(run_dir, "label_issues").empty and (run_dir / "report.html").exists()


def test_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ImgexpError, match="no class folders"):
        run(tmp_path / "src", tmp_path)


def test_a_checkpoint_of_other_classes_is_a_clear_error(source, tmp_path):
    import torch

    ckpt = tmp_path / "other.ckpt"
    torch.save({"imgexp": {"class_names": ["car", "bus"], "config": {"model": {}}},
                "state_dict": {}}, ckpt)
    with pytest.raises(ImgexpError, match=r"trained on classes \['car', 'bus'\], not on"):
        run(source, tmp_path, f"audit.ckpt_path={ckpt}")


def test_the_pixel_row_survives_a_turned_jpeg(tmp_path):
    """The size is the one shown (EXIF orientation applied), from the header."""
    img = Image.fromarray(np.zeros((20, 60, 3), np.uint8))
    exif = Image.Exif()
    exif[pixels.ORIENTATION] = 6
    img.save(tmp_path / "turned.jpg", exif=exif)
    row = pixels.describe(tmp_path / "turned.jpg")
    assert (pixels.stat(row[None], "width")[0], pixels.stat(row[None], "height")[0]) == (20, 60)


def test_report_html_in_headless_chromium_shows_every_finding(audited):
    summary, run_dir = audited
    driver = headless_chromium()
    try:
        driver.get((run_dir / "report.html").as_uri())
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || !i.naturalWidth)"
            ".map(i => i.alt)")
        n_images = driver.execute_script("return document.images.length")
        counts = driver.execute_script(
            "return Array.from(document.querySelectorAll('#counts tr[data-finding]'))"
            ".map(r => [r.dataset.finding, +r.children[1].textContent,"
            " r.querySelector('a').getAttribute('href')])")
        pairs = driver.execute_script(
            "return document.querySelectorAll('#near_duplicates .pair').length")
        leak_pairs = driver.execute_script("return document.querySelectorAll('#leaks .pair')"
                                           ".length")
        bars = driver.execute_script("return document.querySelectorAll('#classes .bar').length")
        links = driver.execute_script(
            "return Array.from(document.links).map(a => a.getAttribute('href'))")
    finally:
        driver.quit()
    assert n_images > 0 and broken == []
    for finding, count, href in counts:
        assert (run_dir / href).is_file() and count == len(read(run_dir, finding))
    assert pairs == summary["near_duplicates"]["pairs"] and leak_pairs == summary["leaks"]
    assert bars == len(CLASSES)
    # every CSV the audit writes is linked from the page (correlations.csv was not)
    assert {p.name for p in run_dir.glob("*.csv")} <= set(links)


def test_a_checkpoint_s_embeddings_feed_the_label_check(digits_root, digits_ckpt, tmp_path):
    for label in sorted(p.name for p in digits_root.iterdir() if p.is_dir()):
        (tmp_path / "src" / label).mkdir(parents=True)
        for path in sorted((digits_root / label).glob("*.png"))[:6]:
            shutil.copyfile(path, tmp_path / "src" / label / path.name)
    summary, _ = run(tmp_path / "src", tmp_path, f"audit.ckpt_path={digits_ckpt}",
                     "audit.device=cpu")
    assert "features: checkpoint" in summary["label_issues"]["check"]
    identities = {p.read_text() for p in (tmp_path / "cache").glob("*/*/identity.txt")}
    assert any(i.startswith("ckpt=") for i in identities), identities
