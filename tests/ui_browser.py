"""A headless Debian chromium for the memory browser's tests (tests/test_ui.py), driven by
selenium through /usr/bin/chromedriver: nothing is downloaded (Selenium Manager is never asked),
and the browser makes no connection of its own (no sync, updates or background requests).

Install the browser with scripts/provision-browser.sh. Without it the tests fail and say so,
unless ENGRAM_SKIP_BROWSER=1 (then they are skipped)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

__all__ = ["CHROMEDRIVER", "CHROMIUM", "Browser", "browser_session", "require_browser"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 15.0
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage",
    "--no-default-browser-check", "--metrics-recording-only", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--lang=en-US",
)  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("ENGRAM_UI_SCREENSHOTS") or ROOT / "tests" / "artifacts" / "ui")
DOC_SHOTS = ROOT / "docs" / "ui"
_NOT_YET = (
    ElementClickInterceptedException, ElementNotInteractableException, NoSuchElementException,
    StaleElementReferenceException,
)  # fmt: skip
_SETTLED = (  # the page of the current route is drawn and no request of it is in flight
    "const main = document.getElementById('main');"
    "return main.getAttribute('aria-busy') === 'false' && main.dataset.route === location.hash"
)


def require_browser() -> None:
    """Fail (naming the script that installs it) when chromium or chromedriver is missing;
    skip instead with ENGRAM_SKIP_BROWSER=1."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    if os.environ.get("ENGRAM_SKIP_BROWSER") == "1":
        pytest.skip(f"ENGRAM_SKIP_BROWSER=1 and {', '.join(missing)} missing")
    pytest.fail(
        f"{', '.join(missing)} missing: the browser tests need Debian's chromium and "
        "chromedriver; run scripts/provision-browser.sh (or set ENGRAM_SKIP_BROWSER=1 to skip)",
        pytrace=False,
    )


class Browser:
    """A chromium window on one server, with waits that fail with what the page showed."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")

    def open(self, hash_route: str = "#/users") -> None:
        url = f"{self.base_url}/ui/{hash_route}"
        if self.driver.current_url.startswith(f"{self.base_url}/ui/"):
            self.driver.execute_script("location.hash = arguments[0]", hash_route)
        else:
            self.driver.get(url)
        self.settled()

    def wait(self, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)
        except TimeoutException:
            shown = self.text()
            raise AssertionError(
                f"timed out waiting for {what}; the page shows:\n{shown}"
            ) from None

    def settled(self) -> None:
        """Wait until no request of the page is in flight."""
        self.wait(lambda d: d.execute_script(_SETTLED), "the page to settle")

    def find(self, css: str) -> WebElement:
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), css)

    def click(self, css: str) -> None:
        """Click the element, once it is there and can take the click (not covered by a
        closing dialog, not replaced by a redraw)."""

        def clicked(d: WebDriver) -> bool:
            try:
                d.find_element(By.CSS_SELECTOR, css).click()
            except _NOT_YET:
                return False
            return True

        self.wait(clicked, f"a click on {css}")

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def wait_text(self, css: str, expected: str) -> WebElement:
        def shown(d: WebDriver) -> WebElement | bool:
            found = d.find_elements(By.CSS_SELECTOR, css)
            return next((e for e in found if expected in e.text), False)

        return self.wait(shown, f"{expected!r} in {css}")

    def fill(self, css: str, value: str) -> None:
        box = self.find(css)
        box.clear()
        box.send_keys(value)

    def set_key(self, key: str | None) -> None:
        self.fill("#api-key", key or "")
        self.click("#key-form button[type=submit]")
        self.settled()

    def confirm(self, ok: bool) -> None:
        """Answer the page's confirmation dialog."""
        self.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"),
                  "the confirmation dialog")  # fmt: skip
        self.click("#confirm-ok" if ok else "#confirm-cancel")
        self.wait(lambda d: not d.execute_script("return document.getElementById('confirm').open"),
                  "the dialog to close")  # fmt: skip
        self.settled()

    def alert(self) -> str:
        box = self.wait(lambda d: d.find_element(By.ID, "alert").is_displayed() and
                        d.find_element(By.ID, "alert"), "an error message")  # fmt: skip
        return str(box.text)

    def emulate(self, width: int, height: int) -> None:
        """A viewport narrower than a headless window can be (a phone's)."""
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    def shot(self, name: str, *, doc: bool = False, top: bool = False) -> Path:
        """A screenshot under SHOTS (with ``top``, of the top of the page); with ``doc``, also
        in docs/ui/ when ENGRAM_UI_DOCS=1."""
        if top:
            self.driver.execute_script("window.scrollTo(0, 0)")
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        if doc and os.environ.get("ENGRAM_UI_DOCS") == "1":
            DOC_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOC_SHOTS / f"{name}.png")
        return path

    def console(self) -> list[str]:
        return [str(entry.get("message", "")) for entry in self.driver.get_log("browser")]


@contextmanager
def browser_session(base_url: str, width: int = 1280, height: int = 800) -> Iterator[Browser]:
    """A fresh chromium (its own profile directory) for the with-block."""
    require_browser()
    with tempfile.TemporaryDirectory(prefix="engram-ui-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(30)
            yield Browser(driver, base_url)
        finally:
            driver.quit()
