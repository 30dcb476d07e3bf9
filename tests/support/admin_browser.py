"""The admin served live to headless Chromium: the browser, the server, and signing in through the form.

The fixtures are registered for every test module by tests/conftest.py.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from hub import queue
from tests.browser import Browser, LiveServer
from tests.support.admin import PASSWORD, AdminEnv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture
def live(admin_env: AdminEnv, browser: Browser) -> Iterator[str]:
    browser.driver.set_window_size(1280, 900)
    with LiveServer(admin_env.app) as server:
        browser.open(server.url + "/healthz")
        browser.clear_cookies()
        yield server.url
    queue.drain(timeout=120)


def sign_in(browser: Browser, base: str, role: str, path: str = "/") -> None:
    browser.clear_cookies()
    browser.open(base + path)
    assert "/login" in browser.url
    browser.fill("#email", f"{role}@shop.example")
    browser.fill("#password", PASSWORD)
    browser.click("form.stack button[type=submit]")
    browser.wait(lambda: "/login" not in browser.url and browser.exists(".who"), f"{role} to be signed in")
