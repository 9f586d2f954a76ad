"""A real headless browser for page tests: Debian's `chromium`, driven through its
`chromedriver` by Selenium (nothing downloads a browser of its own).

Outside CI a missing browser skips the tests with the reason; in CI
(THANKLY_TEST_REQUIRE_SERVICES=1, which `.ci/run` sets after installing Chromium) it fails
them: the browser tests never pass by not running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = (
    "Chromium and its driver not found: `apt-get install chromium chromium-driver` "
    "(.ci/run installs them)"
)
PHONE = (390, 844)
LAPTOP = (1280, 800)


def require_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    if os.environ.get("THANKLY_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(MISSING + " (THANKLY_TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(MISSING)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium session (a selenium WebDriver)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's own sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--lang=en-GB",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def set_width(driver: WebDriver, size: tuple[int, int]) -> None:
    """Lay the page out at exactly `size` CSS pixels, as a phone or a laptop would."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
