"""Fixtures for the real-browser tests of the admin: Playwright driving Debian's chromium,
headless, against pytest-django's live server.

One browser for all the tests of this package, a fresh context (cookies, viewport) and page per
test. The browser is package-scoped rather than session-scoped on purpose: Playwright's sync
API marks an asyncio loop as running in the main thread for as long as it is started, which
would break every later async test (and Django's ORM) in the same session. Stopping it when
this package is done leaves the rest of the suite untouched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 10_000
CHROMIUM_NAMES = ("chromium", "chromium-browser")

expect.set_options(timeout=TIMEOUT_MS)


def chromium_path() -> str:
    """Debian's chromium (``SONIQ_CHROMIUM`` overrides). Missing, the tests fail: they are
    part of the suite, and ``scripts/test.sh`` installs the package."""
    explicit = os.environ.get("SONIQ_CHROMIUM")
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"SONIQ_CHROMIUM={explicit} is not an executable", pytrace=False)
        return explicit
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "the browser tests need Chromium, and none was found on the PATH "
        f"({', '.join(CHROMIUM_NAMES)}). Install it with `apt-get install chromium` "
        "(scripts/test.sh does so when it is missing) or point SONIQ_CHROMIUM at a binary.",
        pytrace=False,
    )


@pytest.fixture(scope="package")
def _async_unsafe_allowed() -> Iterator[None]:
    """While Playwright runs, the main thread has an asyncio loop marked as running (the sync
    API's dispatcher), so Django would refuse the ORM calls of the tests and of pytest-django's
    database fixtures there. Nothing runs on that loop while the test's own code does, so
    Django's documented escape hatch is safe here; it is lifted with the browser."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(_async_unsafe_allowed: None) -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()
