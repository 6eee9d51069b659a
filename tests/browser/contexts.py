"""Several browser contexts in one test (several users, each with their own cookies).

    contexts = BrowserContexts(browser, tmp_path)
    page = contexts.new_page(init_script="...")
    ...
    contexts.close(test_failed)   # screenshots if it failed, then the checks below

At close it fails the test if a page asked for anything off 127.0.0.1 or logged a console
error (except those matching `allowed_errors`, e.g. refused connections in a test that kills
them on purpose).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCAL_SCHEMES = {"data", "blob", "about"}
ACTION_TIMEOUT_MS = 15_000
# what Chromium logs when a server or a connection is down
NETWORK_ERRORS = (
    r"WebSocket connection to .* failed",
    r"Failed to load resource: net::ERR_",
    r"net::ERR_",
)


class BrowserContexts:
    def __init__(self, browser: Any, tmp_path: Path) -> None:
        self.browser = browser
        self.tmp_path = tmp_path
        self.contexts: list[Any] = []
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.allowed_errors: list[str] = []

    def allow_network_errors(self) -> None:
        """This test drops connections on purpose: Chromium's network errors are expected."""
        self.allowed_errors.extend(NETWORK_ERRORS)

    def new_page(self, init_script: str | None = None) -> Any:
        context = self.browser.new_context()
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.on("request", lambda req: self.requests.append(req.url))
        if init_script:
            context.add_init_script(init_script)
        self.contexts.append(context)
        page = context.new_page()
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda error: self.console_errors.append(f"page error: {error}"))
        return page

    def unexpected_errors(self) -> list[str]:
        return [
            error
            for error in self.console_errors
            if not any(re.search(pattern, error) for pattern in self.allowed_errors)
        ]

    def close(self, failed: bool) -> None:
        if failed:
            print("console errors:", *self.console_errors[:20], sep="\n  ")
            for c_index, context in enumerate(self.contexts):
                for p_index, page in enumerate(context.pages):
                    path = self.tmp_path / f"screenshot-{c_index}-{p_index}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(f"screenshot of {page.url}: {path}")
        for context in self.contexts:
            context.close()
        if failed:
            return
        foreign = [
            url
            for url in self.requests
            if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).hostname != "127.0.0.1"
        ]
        assert foreign == [], "the pages asked for something off 127.0.0.1"
        errors = self.unexpected_errors()
        assert errors == [], f"the pages logged errors: {errors[:10]}"
