"""What the page tests share: a headless Chromium driven by selenium (the ``browser``
fixture, registered by tests/viz/conftest.py) and readers of its console and network logs.

The browser tests need Debian's ``chromium`` + ``chromium-driver`` (or any Chrome and its
chromedriver on PATH; ``SCRATCHFORMER_CHROMIUM`` / ``SCRATCHFORMER_CHROMEDRIVER`` override
the paths) and ``selenium``; they are skipped where those are missing. No browser is
downloaded. The browser logs its console and its network activity (``requests(browser)``).
"""

import json
import os
import shutil

import pytest


def _browser_paths():
    chrome = os.environ.get("SCRATCHFORMER_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("SCRATCHFORMER_CHROMEDRIVER") or shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None)
    return chrome, driver


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chrome, driver = _browser_paths()
    if not chrome or not driver:
        pytest.skip("no chromium/chromedriver installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,900"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(driver))
    yield d
    d.quit()


def console_errors(browser) -> list:
    """The SEVERE console messages since the last call (errors, CSP violations)."""
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def requests(browser) -> list[str]:
    """The URLs the browser asked for since the last call (Network.requestWillBeSent)."""
    urls = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls
