"""Headless Chromium for the admin's browser tests, and a live server for the app under test.

Chromium is Debian's `chromium` package driven through its `chromium-driver`
(chromedriver) by Selenium; scripts/test.sh installs both when missing. When
they cannot be found, `start_browser` raises with a message saying what to
install: the tests that need a browser then fail, they never skip.

Waiting for a page to react (a fetch answering, a redirect landing) uses
Selenium's explicit waits: they poll for a condition up to a limit and say
what was awaited when it never came; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import waitress.server

from hub.wsgi import AccessLog
from tests.servers import start_watchdog, stop_watchdog

WAIT_S = 20.0
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
)


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is missing; the message says how to install them."""


def find_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) paths from PATH, or BrowserUnavailable."""
    chromium = os.environ.get("HUB_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("HUB_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not path]
    if missing:
        raise BrowserUnavailable(
            f"the admin's browser tests need {' and '.join(missing)}: run scripts/test.sh (it installs them "
            f"with apt-get) or `apt-get install chromium chromium-driver`")
    assert chromium and driver
    return chromium, driver


class Browser:
    """One headless Chromium with a fresh profile; `close()` ends it and removes the profile."""

    def __init__(self) -> None:
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as exc:
            raise BrowserUnavailable("selenium is not installed: `pip install -e '.[test]'`") from exc
        chromium, driver = find_binaries()
        self.profile = tempfile.mkdtemp(prefix="hub-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        self.downloads = Path(self.profile) / "downloads"
        self.downloads.mkdir()
        options.add_experimental_option("prefs", {"download.default_directory": str(self.downloads),
                                                  "download.prompt_for_download": False})
        log = Path(self.profile) / "chromedriver.log"
        try:
            self.driver = webdriver.Chrome(service=Service(executable_path=driver, log_output=str(log)),
                                           options=options)
        except Exception as exc:
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            shutil.rmtree(self.profile, ignore_errors=True)
            raise BrowserUnavailable(f"Chromium did not start through chromedriver: {exc}\n{detail}") from exc
        self.driver.set_page_load_timeout(60)
        # Should this process die before close(): chromedriver, and every Chromium process of this profile.
        self._watchdog = start_watchdog(self.driver.service.process.pid, signal.SIGTERM, self.profile,
                                        marker=self.profile)

    # -- navigation and reading

    def open(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "body") -> str:
        """The visible text of the first match, waiting for it and reading again if a navigation replaced it."""
        from selenium.common.exceptions import WebDriverException

        found: list[str] = []

        def read() -> bool:
            try:
                found.append(str(self.find(css).text))
            except WebDriverException:  # not there yet, or stale
                return False
            return True

        self.wait(read, f"{css} to be on the page")
        return found[-1]

    def exists(self, css: str) -> bool:
        return bool(self.find_all(css))

    # -- acting

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def type(self, css: str, value: str) -> None:
        """Type at the end of a field, as a person would (fires input events key by key)."""
        self.find(css).send_keys(value)

    def click(self, css: str) -> None:
        """Click what `css` finds; a node the page redraws between finding and clicking it (a list of
        suggestions answering each typed letter) is found again, as a person's next click would."""
        from selenium.common.exceptions import StaleElementReferenceException

        def clicked() -> bool:
            try:
                self.find(css).click()
            except StaleElementReferenceException:
                return False
            return True

        self.wait(clicked, f"{css} to take a click")

    def select(self, css: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_value(value)

    def accept_confirm(self) -> None:
        """Answer OK to a confirm() dialog, once it is open."""
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT_S).until(ec.alert_is_present(), "no confirmation dialog opened")
        self.driver.switch_to.alert.accept()

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def wait(self, condition: Callable[[], Any], what: str) -> Any:
        """Poll until `condition()` is truthy; fail naming `what`, the address and the page's text if it never is."""
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.1,
                                 ignored_exceptions=(WebDriverException,)).until(lambda _d: condition())
        except TimeoutException:
            try:
                seen = self.driver.find_element("css selector", "body").text[:500]
            except WebDriverException:
                seen = "(unreadable)"
            raise AssertionError(f"waited for {what}; at {self.url} the page says: {seen}") from None

    def wait_text(self, css: str, needle: str) -> str:
        from selenium.common.exceptions import WebDriverException

        def found() -> str | None:
            try:
                text = " ".join(n.text for n in self.find_all(css))
            except WebDriverException:  # the page changed while being read (a navigation): look again
                return None
            return text if needle in text else None

        return str(self.wait(found, f"{needle!r} in {css}"))

    def downloaded(self, name: str) -> Path:
        """A file the browser saved, once it is complete."""
        path = self.downloads / name
        self.wait(lambda: path.exists() and not any(self.downloads.glob("*.crdownload")), f"the download {name}")
        return path

    def screenshot(self, path: str | Path) -> None:
        self.driver.save_screenshot(str(path))

    def clear_cookies(self) -> None:
        self.driver.delete_all_cookies()

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            stop_watchdog(self._watchdog)
            shutil.rmtree(self.profile, ignore_errors=True)


class LiveServer:
    """Serves a WSGI app on a free loopback port from a background thread, as `hub admin` does.

    The same production server (waitress) and access log as `hub admin`, so the
    browser tests exercise the configuration people run, not a development server.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self._server = waitress.server.create_server(AccessLog(app), host=host, port=0, threads=4,
                                                     clear_untrusted_proxy_headers=False)
        self.url = f"http://{host}:{self._server.effective_port}"
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="hub-admin-live", daemon=True)

    def _serve(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            # Stopping closes the sockets from the test's thread; a select() already waiting on them in
            # this one then fails on a closed descriptor. That is the stop itself, not a server error.
            if not self._stopping:
                raise

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Closing the listening socket and the open connections empties waitress's socket map,
        # which ends its loop; the task threads are told to stop too.
        self._stopping = True
        self._server.task_dispatcher.shutdown()
        for channel in list(self._server._map.values()):
            channel.close()
        self._thread.join(timeout=10)
