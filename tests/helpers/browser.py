"""Headless Chromium for the tests of the offline HTML reports (errors.html, report.html)."""

import shutil

import pytest


def headless_chromium():
    """A Selenium driver on the system's chromium + chromedriver (apt packages: browsers that a
    tool downloads itself cannot be fetched here); skips the test when either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("chromium/chromedriver not installed")
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)
