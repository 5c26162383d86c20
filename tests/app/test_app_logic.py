"""The web app's logic without Streamlit: uploads, recognition rule, nearest images, the compare
threshold, the on-disk embedding cache and the gallery map."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.app import GALLERY_CLASSES, PER_CLASS, digit_png, make_gallery
from helpers.config import compose_config
from imgexp.app.gallery import gallery_map, label_of, load_gallery
from imgexp.app.pairs import best_threshold, calibrate_on_val, cosine, pair_similarities
from imgexp.app.recognise import embed_one, nearest, recognise, to_batch
from imgexp.app.run import PAGE_SCRIPT, streamlit_command
from imgexp.app.settings import AppSettings
from imgexp.app.uploads import BadUpload, decode_upload
from imgexp.data import load_rgb
from imgexp.errors import ImgexpError
from imgexp.features.extractor import FeatureExtractor
from imgexp.models import load_model
from imgexp.unknown import UNKNOWN, verdict


@pytest.fixture(scope="module")
def model(digits_ckpt):
    return load_model(digits_ckpt)


@pytest.fixture(scope="module")
def extractor(digits_ckpt):
    return FeatureExtractor.from_checkpoint(digits_ckpt, mode="embed", precision="fp32")


def png_bytes(size=(20, 20)) -> bytes:
    """Random pixels: PNG cannot compress them, so the file holds ~3 bytes per pixel."""
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()


# -- uploads ------------------------------------------------------------------------------------
def test_upload_decodes_like_training_data(digits_root):
    path = digit_png(digits_root, "3")
    pixels, display = decode_upload("x.png", path.read_bytes(), 16, max_upload_mb=1)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, load_rgb(path, 16))
    assert display.mode == "RGB"


@pytest.mark.parametrize(("name", "data", "limit_mb", "message"), [
    ("notes.txt", b"hello", 1, "not an image file"),
    ("big.png", png_bytes((40, 40)), 0.001, "uploads are limited to 0.001 MB"),
    ("empty.png", b"", 1, "is empty"),
    ("fake.png", b"\x89PNG but not really", 1, "cannot be used: not an image"),
    ("bomb.png", png_bytes((200, 200)), 1,
     "200x200 = 0.0 MP > IMGEXP_MAX_IMAGE_PIXELS=10000"),
], ids=["extension", "size", "empty", "garbage", "bomb"])
def test_bad_upload_says_why(name, data, limit_mb, message, monkeypatch):
    monkeypatch.setenv("IMGEXP_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(BadUpload, match=message.replace(".", r"\.")):
        decode_upload(name, data, 16, limit_mb)


# -- recognition --------------------------------------------------------------------------------
def test_verdict_is_the_predict_rule():
    names = ["a", "b", "c"]
    assert verdict(np.array([0.1, 0.7, 0.2]), names, 0.6) == "b"
    assert verdict(np.array([0.1, 0.6, 0.3]), names, 0.6) == "b"  # at the threshold: kept
    assert verdict(np.array([0.3, 0.59, 0.11]), names, 0.6) == UNKNOWN


def test_recognise_top5_matches_predict_proba(model, digits_root):
    pixels = load_rgb(digit_png(digits_root, "4"), 16)
    result = recognise(model, pixels, k=5, unknown_threshold=0.0)
    probabilities = model.predict_proba(to_batch([pixels]))[0].numpy()
    expected = np.argsort(-probabilities)[:5]
    assert [c for c, _ in result.top] == [model.class_names[i] for i in expected]
    np.testing.assert_allclose([p for _, p in result.top], probabilities[expected], rtol=1e-6)
    assert result.label == result.top[0][0] and result.confidence == result.top[0][1]
    assert recognise(model, pixels, unknown_threshold=1.01).label == UNKNOWN


def test_nearest_ranks_by_cosine_distance():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])
    found = nearest(np.array([1.0, 0.0]), gallery, k=2)
    assert [i for i, _ in found] == [0, 2]
    np.testing.assert_allclose([d for _, d in found], [0.0, 1 - np.sqrt(0.5)], atol=1e-9)


# -- compare threshold --------------------------------------------------------------------------
def test_best_threshold_maximises_balanced_accuracy():
    sims = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    same = np.array([True, True, False, True, False, False, False, False])
    value, acc = best_threshold(sims, same)
    # cutting between 0.6 and 0.5: all 3 same pairs found, 4 of 5 different pairs found
    assert value == pytest.approx(0.55)
    assert acc == pytest.approx((3 / 3 + 4 / 5) / 2)
    with pytest.raises(ImgexpError, match="same and of different"):
        best_threshold(sims, np.ones(8, bool))


def test_pair_similarities_cover_each_pair_once():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    sims, same = pair_similarities(emb, np.array(["a", "b", "a"]))
    np.testing.assert_allclose(sims, [0.0, np.sqrt(0.5), np.sqrt(0.5)])
    assert same.tolist() == [False, True, False]
    assert cosine(emb[0], emb[2]) == pytest.approx(np.sqrt(0.5))


def test_val_threshold_separates_digits_and_is_cached(model, extractor, tmp_path):
    threshold = calibrate_on_val(model, extractor, tmp_path)
    assert threshold.source == "val split"
    assert threshold.pairs == 270 * 269 // 2  # the digits' validation split: 270 images
    assert threshold.balanced_accuracy > 0.7  # chance is 0.5
    cached = list(tmp_path.glob("compare-thresholds/*.json"))
    assert len(cached) == 1
    cached[0].write_text(cached[0].read_text().replace(str(threshold.value), "0.123"))
    assert calibrate_on_val(model, extractor, tmp_path).value == 0.123


# -- embeddings cache and gallery ---------------------------------------------------------------
class Counting(torch.nn.Module):
    """Wraps the extractor's network, counting the images it embeds."""

    def __init__(self, network):
        super().__init__()
        self.network, self.images = network, 0

    def forward(self, images):
        self.images += len(images)
        return self.network(images)


def test_gallery_embeddings_come_from_the_cache_on_restart(model, digits_ckpt, digits_root,
                                                            tmp_path):
    root = make_gallery(digits_root, tmp_path / "gallery")
    extractor = FeatureExtractor.from_checkpoint(digits_ckpt, mode="embed", precision="fp32")
    extractor.network = counting = Counting(extractor.network)
    first = load_gallery(root, extractor, tmp_path / "cache")
    n = len(GALLERY_CLASSES) * PER_CLASS
    assert counting.images == first.computed == n
    # the vectors are the model's own embeddings (what queries are compared with)
    np.testing.assert_allclose(first.embeddings[0],
                               embed_one(model.embed, load_rgb(first.file(0), 16)), atol=1e-5)
    again = load_gallery(root, extractor, tmp_path / "cache")
    assert counting.images == n and again.computed == 0
    np.testing.assert_array_equal(again.embeddings, first.embeddings)


def test_gallery_skips_unreadable_files_and_maps_in_2d(extractor, digits_root, tmp_path):
    root = make_gallery(digits_root, tmp_path / "gallery")
    (root / "7" / "broken.png").write_bytes(b"not a png")
    gallery = load_gallery(root, extractor, tmp_path / "cache")
    n = len(GALLERY_CLASSES) * PER_CLASS
    assert len(gallery) == n and len(gallery.skipped) == 1 and "broken.png" in gallery.skipped[0]
    assert sorted(set(gallery.labels)) == list(GALLERY_CLASSES)
    points = gallery_map(gallery, max_points=5)
    assert len(points) == 5 and (points["source"] == "pca").all()
    assert points["image"].str.startswith("data:image/png;base64,").all()
    full = gallery_map(gallery)
    # PCA axes are ordered by variance
    assert full["x"].var() >= full["y"].var() > 0


def test_gallery_map_from_a_stage_csv(extractor, digits_root, tmp_path):
    root = make_gallery(digits_root, tmp_path / "gallery")
    gallery = load_gallery(root, extractor, tmp_path / "cache")
    csv = tmp_path / "map.csv"
    pd.DataFrame({"path": [str(root / p) for p in gallery.paths[:3]] + ["elsewhere/x.png"],
                  "pc1": [1.0, 2.0, 3.0, 4.0], "pc2": [0.0, 0.5, 1.0, 1.5]}).to_csv(csv)
    points = gallery_map(gallery, csv)
    assert points["path"].tolist() == gallery.paths[:3]
    assert points["x"].tolist() == [1.0, 2.0, 3.0] and (points["source"] == "map_csv").all()
    assert label_of("train/7/a.png") == "7" and label_of("7/a.png") == "7"
    assert label_of("a.png") == ""


# -- launcher -----------------------------------------------------------------------------------
def test_launcher_runs_streamlit_on_localhost_with_the_upload_limit(tmp_path):
    cfg = compose_config("app", ["ckpt_path=x.ckpt", "gallery=g", "port=9999",
                                 "max_upload_mb=3"], tmp_path)
    command = streamlit_command(cfg)
    assert command[1:5] == ["-m", "streamlit", "run", str(PAGE_SCRIPT)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.address"] == "localhost" and options["--server.port"] == "9999"
    assert options["--server.maxUploadSize"] == "3"
    assert cfg.unknown_threshold == 0.6 and cfg.compare_threshold is None


def test_launcher_bad_checkpoint_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "imgexp.app", f"ckpt_path={tmp_path}/no.ckpt",
                          f"gallery={tmp_path}", f"hydra.run.dir={tmp_path}/run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"error: checkpoint {tmp_path}/no.ckpt not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_settings_name_what_is_wrong():
    with pytest.raises(ImgexpError, match=r"unknown app setting\(s\) \['treshold'\]"):
        AppSettings.from_mapping({"ckpt_path": "a", "gallery": "g", "cache_dir": "c",
                                  "treshold": 0.5})
    with pytest.raises(ImgexpError, match="gallery is not set: imgexp-app ckpt_path="):
        AppSettings.from_mapping({"ckpt_path": "a", "gallery": None, "cache_dir": "c"})
