"""A real headless browser on the real server: Playwright for Python driving the system's
Chromium (Debian's `chromium` package; Playwright's own browser download is not used).

Fixtures:

- `server`: a channelstream process (secret SECRET, admin ADMIN_USER / ADMIN_SECRET).
- `browser`: one headless Chromium for the session.
- `page`: a fresh browser context and page (for `server`). At teardown it fails the test if
  the page asked for anything but 127.0.0.1 (every request and websocket is logged) or logged
  a console error (other than those the test put in `page_log.expected_errors`), and, when the
  test failed, saves a screenshot of each page of the context under the test's temporary
  folder.

Without a Chromium (or without Playwright) the tests are skipped with a message saying how to
enable them, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import RunningServer, start_server  # noqa: F401  (fixture)

SECRET = "browser-test-secret"
ADMIN_USER = "admin"
ADMIN_SECRET = "browser-admin-secret"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOW_TO_ENABLE = (
    "browser tests need Debian's Chromium (`apt-get install chromium`, as .ci/run does) and "
    "Playwright for Python (`pip install -e '.[test]'`); set CHANNELSTREAM_TEST_CHROMIUM to "
    "use another Chromium binary"
)
LOCAL_SCHEMES = {"data", "blob", "about"}
ACTION_TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    configured = os.environ.get("CHANNELSTREAM_TEST_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable(reason: str) -> None:
    message = f"{reason}: {HOW_TO_ENABLE}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run under CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item (for screenshots of failed tests)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        unavailable("no Chromium found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class PageLog:
    """What the pages of one browser context asked for and complained about."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    expected_errors: list[str] = field(default_factory=list)  # substrings a test expects

    def unexpected_errors(self) -> list[str]:
        return [
            error
            for error in self.console_errors
            if not any(expected in error for expected in self.expected_errors)
        ]

    def foreign_requests(self) -> list[str]:
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).hostname != "127.0.0.1"
        ]


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(
    browser: Any,
    server: RunningServer,
    page_log: PageLog,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Any]:
    # `server` first: the browser closes its connections before the server stops
    context = browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.on("request", lambda req: page_log.requests.append(req.url))
    page = context.new_page()
    page.on("websocket", lambda ws: page_log.requests.append(ws.url))
    page.on(
        "console",
        lambda msg: (
            page_log.console_errors.append(f"{msg.text} ({msg.location.get('url')})")
            if msg.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: page_log.console_errors.append(str(error)))
    yield page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        for index, open_page in enumerate(context.pages):
            path = tmp_path / f"screenshot-{index}.png"
            open_page.screenshot(path=str(path), full_page=True)
            print(f"screenshot of {open_page.url}: {path}")
    context.close()
    assert page_log.requests, "the browser made no request at all"
    assert page_log.foreign_requests() == [], "the pages asked for something off 127.0.0.1"
    assert page_log.unexpected_errors() == [], "the pages logged errors"


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> RunningServer:  # noqa: F811
    return start_server(
        settings={"secret": SECRET, "admin_user": ADMIN_USER, "admin_secret": ADMIN_SECRET}
    )


def sign_in(page: Any, server: RunningServer, password: str = ADMIN_SECRET) -> None:
    """Fill in and send the sign-in form."""
    page.goto(server.base_url + "/admin/sign_in")
    page.fill("#username", ADMIN_USER)
    page.fill("#password", password)
    page.click("button[type=submit]")
