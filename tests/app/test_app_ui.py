"""The web app's pages through Streamlit's AppTest, and one end-to-end run of imgexp-app in
headless Chromium."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from helpers.app import (
    GALLERY_CLASSES,
    PAGE_SCRIPT,
    PER_CLASS,
    digit_png,
    make_gallery,
    open_page,
    settings_file,
    start_app,
)
from imgexp.app.pairs import calibrate_on_val, cosine
from imgexp.app.recognise import embed_one, recognise
from imgexp.app.settings import ENV_VAR
from imgexp.data import load_rgb
from imgexp.features.extractor import FeatureExtractor
from imgexp.models import load_model

SIZE = 16  # the digits_ckpt fixture's image size


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory, digits_root, digits_ckpt) -> Path:
    root = tmp_path_factory.mktemp("app")
    make_gallery(digits_root, root / "gallery")
    settings_file(root, digits_ckpt, root / "gallery")
    return root


@pytest.fixture(scope="module")
def model(digits_ckpt):
    return load_model(digits_ckpt)


@pytest.fixture
def app(app_dir, monkeypatch) -> AppTest:
    return start_app(app_dir / "app_settings.json", monkeypatch)


def test_recognise_upload_shows_top5(app, model, digits_root):
    path = digit_png(digits_root, "7")
    app.file_uploader(key="recognise-upload").upload(path.name, path.read_bytes(), "image/png")
    app.run()
    assert not app.exception and not app.error
    expected = recognise(model, load_rgb(path, SIZE), k=5, unknown_threshold=0.6)
    assert app.metric[0].label == "Prediction" and app.metric[0].value == expected.label
    top = app.dataframe[0].value
    assert top["class"].tolist() == [c for c, _ in expected.top]
    np.testing.assert_allclose(top["probability"], [p for _, p in expected.top], rtol=1e-5)
    # the 8 nearest of the 12 gallery images are listed with class and distance
    assert app.subheader[0].value == "8 nearest gallery images"


def test_gallery_pick_below_the_threshold_is_unknown(app_dir, digits_ckpt, model, monkeypatch):
    strict = settings_file(app_dir, digits_ckpt, app_dir / "gallery", "strict.json",
                           unknown_threshold=1.01)  # no probability reaches it
    monkeypatch.setenv(ENV_VAR, str(strict))
    at = AppTest.from_file(str(PAGE_SCRIPT), default_timeout=120).run()
    at.radio(key="recognise-source").set_value("Gallery").run()
    picked = at.selectbox(key="recognise-pick").value
    assert not at.exception and picked == "0/" + sorted((app_dir / "gallery" / "0").iterdir())[0].name
    expected = recognise(model, load_rgb(app_dir / "gallery" / picked, SIZE))
    assert at.metric[0].value == "_unknown"
    assert at.warning[0].value.startswith(f"Top class {expected.top[0][0]} has probability "
                                          f"{expected.confidence:.2f}, below "
                                          "unknown_threshold=1.01")


def test_bad_upload_shows_a_message_not_a_traceback(app):
    app.file_uploader(key="recognise-upload").upload("scan.png", b"\x89PNG truncated", "image/png")
    app.run()
    assert not app.exception
    assert [e.value for e in app.error] == ["scan.png cannot be used: not an image "
                                            "(UnidentifiedImageError)"]
    assert not app.metric


def test_compare_shows_similarity_and_verdict(app, app_dir, model, digits_ckpt, digits_root):
    open_page(app, "Compare")
    # defaults: the first and the last gallery images
    gallery = sorted(p.relative_to(app_dir / "gallery").as_posix()
                     for p in (app_dir / "gallery").rglob("*.png"))
    assert app.selectbox(key="compare-a-pick").value == gallery[0]
    assert app.selectbox(key="compare-b-pick").value == gallery[-1]
    upload = digit_png(digits_root, "0")
    app.radio(key="compare-a-source").set_value("Upload").run()
    app.file_uploader(key="compare-a-upload").upload(upload.name, upload.read_bytes(),
                                                     "image/png")
    app.run()
    assert not app.exception and not app.error
    expected = cosine(embed_one(model.embed, load_rgb(upload, SIZE)),
                      embed_one(model.embed, load_rgb(app_dir / "gallery" / gallery[-1], SIZE)))
    assert app.metric[0].label == "Cosine similarity"
    assert float(app.metric[0].value) == pytest.approx(expected, abs=1e-3)
    extractor = FeatureExtractor.from_checkpoint(digits_ckpt, precision="fp32")
    threshold = calibrate_on_val(model, extractor, app_dir / "cache")  # the app's, cached
    verdict = app.success if expected >= threshold.value else app.warning
    assert verdict[0].value.startswith("Same class" if expected >= threshold.value
                                       else "Different classes")
    assert f"threshold {threshold.value:.3f}" in verdict[0].value


def test_browse_maps_the_gallery_with_image_tooltips(app):
    open_page(app, "Browse")
    n = len(GALLERY_CLASSES) * PER_CLASS
    assert app.caption[0].value.startswith(f"{n} of {n} gallery images placed by a PCA")
    chart = app.get("vega_lite_chart")[0].proto
    spec = json.loads(chart.spec)
    assert spec["encoding"]["tooltip"][0]["field"] == "image"
    assert spec["mark"]["type"] == "circle"


def test_without_settings_the_page_says_how_to_start(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    at = AppTest.from_file(str(PAGE_SCRIPT), default_timeout=60).run()
    assert not at.exception
    assert "start it with imgexp-app ckpt_path=" in at.error[0].value


# -- end to end, in a real browser ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"imgexp-app exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"imgexp-app did not answer on {url} within {timeout}s")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while listed
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="lists processes in /proc")
def test_sigterm_stops_the_server_and_frees_its_port(tmp_path, app_dir, digits_ckpt):
    """A service manager or scheduler stops imgexp-app with SIGTERM to its pid alone: the
    Streamlit server it started must not stay behind on the port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgexp.app", f"ckpt_path={digits_ckpt}",
         f"gallery={app_dir / 'gallery'}", "host=127.0.0.1", f"port={port}",
         f"cache_dir={app_dir / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        server = children(process.pid)
        assert server
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert not [pid for pid in server if Path(f"/proc/{pid}").exists()]
        with socket.socket() as s:  # nothing listens on the port (TIME_WAIT aside)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever a failure left behind
            os.killpg(process.pid, signal.SIGKILL)


def chromium_driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1200",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian chromium + chromium-driver (.ci/run installs them)")
def test_browser_upload_shows_top1(tmp_path, app_dir, digits_ckpt, model, digits_root):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    url = f"http://localhost:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "imgexp.app", f"ckpt_path={digits_ckpt}",
         f"gallery={app_dir / 'gallery'}", f"port={port}", f"cache_dir={app_dir / 'cache'}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    driver = None
    try:
        wait_until_healthy(url, process)
        driver = chromium_driver(tmp_path / "chromium-profile")
        driver.get(url)
        wait = WebDriverWait(driver, 90)
        uploader = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, "[data-testid='stFileUploaderDropzoneInput']")))
        image = digit_png(digits_root, "3")
        uploader.send_keys(str(image))
        value = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "[data-testid='stMetricValue']")))
        expected = recognise(model, load_rgb(image, SIZE)).label
        assert value.text == expected
        # the script's last output, then every picture loaded: the screenshot shows the page
        wait.until(ec.presence_of_element_located(
            (By.XPATH, "//*[contains(text(), '8 nearest gallery images')]")))
        wait.until(lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
            "return imgs.length === 9 && imgs.every(i => i.complete && i.naturalWidth > 0);"))
        time.sleep(1)  # the bars are drawn on a canvas after the table mounts
        assert driver.save_screenshot(str(tmp_path / "recognise.png"))
        assert (tmp_path / "recognise.png").stat().st_size > 10_000
        # Browse: hovering a point of the map shows that gallery image
        driver.find_element(By.XPATH, "//label[.//p[text()='Browse']]").click()
        points = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "g.mark-symbol.role-mark path"))
        assert len(points) == len(GALLERY_CLASSES) * PER_CLASS
        ActionChains(driver).move_to_element(points[0]).perform()
        tooltip = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "#vg-tooltip-element img")))
        assert tooltip.get_attribute("src").startswith("data:image/png;base64,")
        assert driver.save_screenshot(str(tmp_path / "browse.png"))
        assert json.loads((tmp_path / "run" / "app_settings.json").read_text())["gallery"] \
            == str(app_dir / "gallery")
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
