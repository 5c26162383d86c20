"""imgexp-explain on the digits checkpoint: clusters get purer with depth, every file of the
report exists, and index.html opens offline with no missing resource (parsed, then in
headless Chromium when it is installed)."""

import logging
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.config import compose_config
from imgexp.errors import ImgexpError
from imgexp.explain.inputs import load_folder
from imgexp.explain.pipeline import run
from imgexp.models import load_model

DIGITS_LAYERS = ["backbone.features.3", "backbone.features.7", "backbone.neck", "head"]
SAMPLE = 200
OOD_IMAGES = 12


def explain_config(ckpt: Path, out: Path, overrides: list[str]):
    return compose_config("explain", [f"ckpt_path={ckpt}", *overrides], out)


@pytest.fixture(scope="module")
def ood_dir(tmp_path_factory) -> Path:
    """Colour noise and stripes: nothing like a handwritten digit."""
    folder = tmp_path_factory.mktemp("unseen")
    rng = np.random.default_rng(0)
    for i in range(OOD_IMAGES):
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        if i % 2:
            pixels[:, ::4] = (255, 0, 0)
        Image.fromarray(pixels).save(folder / f"noise_{i}.png")
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


@pytest.fixture(scope="module")
def explained(digits_ckpt, tmp_path_factory, ood_dir):
    out = tmp_path_factory.mktemp("explain")
    cfg = explain_config(digits_ckpt, out, [
        f"explain.max_images={SAMPLE}", "explain.k_max=12", f"explain.ood_dir={ood_dir}",
        "explain.attribution.n=2", "explain.attribution.lime_samples=100"])
    return out, run(cfg)


# -- the bars --------------------------------------------------------------------------------
def test_clusters_get_purer_with_depth(explained):
    out, summary = explained
    purity = pd.read_csv(out / "clustering" / "purity.csv").set_index("layer")
    assert list(purity.index) == DIGITS_LAYERS
    assert purity.loc["head", "purity_at_num_classes"] > purity.loc[
        "backbone.features.3", "purity_at_num_classes"] + 0.2
    assert purity.loc["head", "nmi"] > purity.loc["backbone.features.3", "nmi"]
    # a trained model separates its 10 classes at the head: auto-k finds about 10 clusters
    assert 8 <= purity.loc["head", "k"] <= 12 and purity.loc["head", "purity"] > 0.85
    assert summary["purity"][-1]["purity"] == purity.loc["head", "purity"]


def test_every_file_of_the_report_exists(explained):
    out, summary = explained
    expected = ["index.html", "plotly.min.js", "summary.json", "activations/images.csv",
                "clustering/purity.csv", "clustering/clusters.csv", "paths/paths.html",
                "paths/paths.csv", "paths/least_typical.csv", "ood/confidence.png",
                "ood/ood_predictions.csv"]
    for layer in DIGITS_LAYERS:
        expected += [f"activations/{layer}.npy", f"maps/{layer}.png", f"maps/{layer}.html",
                     f"maps/{layer}.csv", f"clustering/k_{layer}.png"]
    expected += [a["png"] for a in summary["attribution"]]
    missing = [name for name in expected if not (out / name).is_file()]
    assert not missing
    kinds = [a["kind"] for a in summary["attribution"]]
    assert kinds.count("correct") == 2
    assert kinds.count("misclassified") == min(2, round((1 - summary["accuracy"]) * summary["images"]))


def test_activations_are_pooled_per_layer_for_a_stratified_sample(explained, digits_ckpt):
    out, summary = explained
    images = pd.read_csv(out / "activations" / "images.csv")
    assert len(images) == summary["images"] <= SAMPLE
    counts = images["true"].value_counts()
    assert counts.max() - counts.min() <= 2  # the test split is balanced, so is the sample
    dims = {"backbone.features.3": 16, "backbone.features.7": 32, "backbone.neck": 128,
            "head": 10}
    for layer, dim in dims.items():
        assert np.load(out / "activations" / f"{layer}.npy").shape == (len(images), dim)
    # the head's activations are the logits: their argmax is the recorded prediction
    logits = np.load(out / "activations" / "head.npy")
    classes = load_model(digits_ckpt).class_names
    assert [classes[i] for i in logits.argmax(1)] == images["predicted"].astype(str).tolist()


def test_map_csv_holds_each_image_position(explained):
    out, summary = explained
    points = pd.read_csv(out / "maps" / "head.csv")
    assert len(points) == summary["images"]
    assert {"path", "x", "y", "true", "predicted", "cluster"} <= set(points.columns)
    assert points["x"].std() > 0 and points["y"].std() > 0
    assert points["path"].map(lambda p: Path(p).is_file()).all()


def test_paths_rank_the_least_typical_images(explained):
    out, _ = explained
    paths = pd.read_csv(out / "paths" / "paths.csv")
    assert paths["typicality"].between(0, 1).all()
    assert paths["typicality"].is_monotonic_increasing
    assert set(DIGITS_LAYERS) <= set(paths.columns)
    odd = pd.read_csv(out / "paths" / "least_typical.csv")
    assert odd["predicted"].value_counts().max() <= 5
    assert odd["typicality"].is_monotonic_increasing
    page = (out / "paths" / "paths.html").read_text()
    assert '"type":"parcats"' in page and page.count('"label":') >= len(DIGITS_LAYERS) + 2


def test_unseen_class_images_are_placed_and_scored(explained):
    out, summary = explained
    unseen = pd.read_csv(out / "ood" / "ood_predictions.csv")
    assert len(unseen) == OOD_IMAGES == summary["ood"]["images"]
    purity = pd.read_csv(out / "clustering" / "purity.csv").set_index("layer")
    for layer in DIGITS_LAYERS:
        assert unseen[layer].between(0, purity.loc[layer, "k"] - 1).all()
    assert 0.0 <= summary["ood"]["auroc_confidence"] <= 1.0
    assert "unseen class (OOD)" in (out / "maps" / "head.html").read_text()


# -- offline report --------------------------------------------------------------------------
class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def local_references(page: Path) -> list[Path]:
    """Every file a page references; fails on a remote (network) reference."""
    parser = _References()
    parser.feed(page.read_text(encoding="utf-8"))
    files = []
    for ref in parser.refs:
        url = urlparse(ref)
        assert url.scheme in ("", "file"), f"{page.name} needs the network for {ref}"
        if url.path:
            files.append((page.parent / unquote(url.path)).resolve())
    return files


def test_index_links_resolve_offline(explained):
    out, _ = explained
    index = out / "index.html"
    refs = local_references(index)
    pages = sorted({r for r in refs if r.suffix == ".html"})
    assert len(pages) == len(DIGITS_LAYERS) + 1  # every map and the paths diagram
    assert sum(r.suffix == ".png" for r in refs) >= 2 * len(DIGITS_LAYERS) + 5
    for page in pages:
        refs += local_references(page)
        assert re.search(r'<script[^>]+src="\.\./plotly\.min\.js"', page.read_text())
    assert not [r for r in refs if not r.is_file()]


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium "
                    "chromium-driver); the parsed-reference test still ran")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_index_opens_in_headless_chromium_with_nothing_missing(explained):
    out, _ = explained
    browser = _chromium()
    try:
        browser.get((out / "index.html").as_uri())
        broken = browser.execute_script(
            "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.src)")
        assert browser.execute_script("return document.images.length") >= 13
        assert not broken
        pages = sorted(set(browser.execute_script(
            "return [...document.links].map(a => a.href).filter(h => h.endsWith('.html'))")))
        assert len(pages) == len(DIGITS_LAYERS) + 1
        for page in pages:
            browser.get(page)
            assert browser.execute_script("return typeof Plotly !== 'undefined' && "
                                          "document.querySelectorAll('.plot-container').length")
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors
    finally:
        browser.quit()


# -- entry point and user errors -------------------------------------------------------------
def _entry_point(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """imgexp-explain ARGS, in this process (a subprocess would re-import torch & co)."""
    from imgexp.explain import run as explainer

    monkeypatch.setattr(sys, "argv", ["imgexp-explain", *args])
    try:
        explainer.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_layers_prints_module_names_with_defaults_starred(digits_ckpt, tmp_path,
                                                               monkeypatch, capsys):
    code, out, _ = _entry_point([f"ckpt_path={digits_ckpt}", "explain.list_layers=true",
                                 f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 0
    assert re.findall(r"^\* (\S+)", out, re.MULTILINE) == DIGITS_LAYERS
    assert "  head.fc  (Linear)" in out and "loss_fn" not in out


def test_missing_checkpoint_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    code, _, err = _entry_point([f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 1 and err.strip().count("\n") == 0 and "ckpt_path" in err


def test_unknown_layer_is_a_one_line_error(digits_ckpt, tmp_path):
    cfg = explain_config(digits_ckpt, tmp_path, ["explain.layers=[backbone.nope]"])
    with pytest.raises(ImgexpError, match="backbone.nope.*list_layers=true"):
        run(cfg)


def test_missing_ood_dir_names_the_key(tmp_path):
    with pytest.raises(ImgexpError, match="explain.ood_dir"):
        load_folder(tmp_path / "absent", 16, None, 0)


@pytest.mark.parametrize("switch", [True, False])
def test_explain_progress_switch(switch, digits_ckpt, tmp_path, caplog):
    cfg = explain_config(digits_ckpt, tmp_path, [
        "explain.max_images=40", "explain.k=3", "explain.attribution.n=1",
        "explain.attribution.lime_samples=16", "explain.attribution.superpixels=4",
        f"explain.progress={str(switch).lower()}"])
    with caplog.at_level(logging.INFO, logger="imgexp.progress"):
        run(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "imgexp.progress"]
    if switch:  # not a terminal here: log lines, the last one at 100%
        assert any(m.startswith("activations: 100% (") for m in lines), lines
        assert any(m.startswith("attribution: 100% (2/2 img)") for m in lines), lines
    else:
        assert lines == []
