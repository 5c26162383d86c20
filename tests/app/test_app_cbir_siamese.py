"""The web app on the two checkpoints issue 21 added: hand-made descriptors + k-NN head (no
parameters) on every page, and a Siamese (contrastive) embedding on the Compare page. Each page
is checked against what the model computes, not only that it rendered."""


import pytest
from streamlit.testing.v1 import AppTest

from helpers.app import GALLERY_CLASSES, PER_CLASS, make_gallery, settings_file, start_app
from helpers.app import open_page as open_app_page
from imgexp.app.pairs import calibrate_on_val, cosine
from imgexp.app.recognise import embed_one, recognise
from imgexp.data import load_rgb
from imgexp.features.extractor import FeatureExtractor
from imgexp.models import load_model

SIZE = 16  # both fixtures' image size


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, digits_root):
    return make_gallery(digits_root, tmp_path_factory.mktemp("app_cbir") / "gallery")


def start(tmp_path, ckpt, gallery, monkeypatch) -> AppTest:
    return start_app(settings_file(tmp_path, ckpt, gallery), monkeypatch)


def open_page(at: AppTest, page: str) -> AppTest:
    at = open_app_page(at, page)
    assert not at.error, at.error
    return at


def check_compare(at: AppTest, ckpt, gallery, tmp_path) -> float:
    """The Compare page's similarity and verdict for its default pair (first and last gallery
    images) equal the model's own cosine and the threshold chosen on its validation split."""
    open_page(at, "Compare")
    first, last = at.selectbox(key="compare-a-pick").value, at.selectbox(key="compare-b-pick").value
    assert first.split("/")[0] != last.split("/")[0]  # two classes
    model = load_model(ckpt)
    expected = cosine(embed_one(model.embed, load_rgb(gallery / first, SIZE)),
                      embed_one(model.embed, load_rgb(gallery / last, SIZE)))
    assert at.metric[0].label == "Cosine similarity"
    assert float(at.metric[0].value) == pytest.approx(expected, abs=1e-3)
    threshold = calibrate_on_val(model, FeatureExtractor.from_checkpoint(ckpt, precision="fp32"),
                                 tmp_path / "cache")  # the app's, read back from its cache
    verdict = at.success if expected >= threshold.value else at.warning
    assert verdict[0].value.startswith("Same class" if expected >= threshold.value
                                       else "Different classes")
    assert f"threshold {threshold.value:.3f}" in verdict[0].value
    return threshold.balanced_accuracy


def test_descriptor_checkpoint_on_every_page(cbir_ckpt, gallery, tmp_path, monkeypatch):
    at = start(tmp_path, cbir_ckpt, gallery, monkeypatch)
    # Recognise: a gallery pick is classified by the descriptors' k-NN vote, neighbours listed
    at.radio(key="recognise-source").set_value("Gallery").run()
    picked = at.selectbox(key="recognise-pick").value
    expected = recognise(load_model(cbir_ckpt), load_rgb(gallery / picked, SIZE))
    assert not at.exception and at.metric[0].value == expected.label
    assert at.dataframe[0].value["class"].tolist() == [c for c, _ in expected.top]
    assert at.subheader[0].value == "8 nearest gallery images"
    # Compare: cosine of the descriptor vectors, verdict against the val-split threshold
    assert check_compare(at, cbir_ckpt, gallery, tmp_path) > 0.6  # descriptors tell digits apart
    # Browse: every gallery image placed by a PCA of the descriptors
    open_page(at, "Browse")
    n = len(GALLERY_CLASSES) * PER_CLASS
    assert at.caption[0].value.startswith(f"{n} of {n} gallery images placed by a PCA")


@pytest.mark.slow  # trains the Siamese model (2 epochs)
def test_siamese_checkpoint_on_the_compare_page(siamese_run, gallery, tmp_path, monkeypatch):
    ckpt = siamese_run / "checkpoints" / "best.ckpt"
    assert load_model(ckpt).config["model"]["loss"]["_target_"].endswith("ContrastiveLoss")
    at = start(tmp_path, ckpt, gallery, monkeypatch)
    # the contrastive embedding separates same- from different-class validation pairs
    assert check_compare(at, ckpt, gallery, tmp_path) > 0.6
