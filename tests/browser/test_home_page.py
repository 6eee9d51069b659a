"""`GET /` in a real browser: its links lead to the explorer (through sign-in and back), the
admin panel and /health, under the server's root and under an X-Script-Name prefix."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_SECRET, ADMIN_USER
from tests.browser.test_api_explorer import try_it_out
from tests.e2e.conftest import RunningServer


def fill_sign_in(page: Any) -> None:
    page.fill("#username", ADMIN_USER)
    page.fill("#password", ADMIN_SECRET)
    page.click("button[type=submit]")


def test_the_home_page_leads_to_the_explorer_through_sign_in_and_to_health(
    page: Any, server: RunningServer
) -> None:
    page.goto(server.base_url + "/")
    expect(page.locator("h1")).to_have_text("Channelstream")
    expect(page.locator("header")).to_have_css("background-color", "rgb(255, 255, 255)")

    page.click("#link-explorer")
    expect(page.locator("#password")).to_be_visible()
    fill_sign_in(page)

    expect(page).to_have_url(server.base_url + "/api-explorer")
    expect(page.locator("#operations-API-connect")).to_be_visible()
    page.goto(server.base_url + "/")
    page.click("#link-admin")
    expect(page).to_have_url(server.base_url + "/admin")
    expect(page.locator("#status")).to_contain_text("Updated")
    page.goto(server.base_url + "/")
    for link, answer in (("#link-health", {"status": "ok"}), ("#link-ready", {"status": "ready"})):
        # fetched, not opened: a JSON tab would ask for a /favicon.ico, which is a 404
        url = page.locator(link).evaluate("link => link.href")
        assert url == server.base_url + link.replace("#link-", "/")
        assert json.loads(page.request.get(url).text()) == answer


def test_under_a_script_name_every_step_keeps_the_prefix(page: Any, server: RunningServer) -> None:
    """Behind a proxy that mounts the server at /cs (X-Script-Name: /cs, as 0.7.1 read it)."""
    page.set_extra_http_headers({"X-Script-Name": "/cs"})
    prefixed = server.base_url + "/cs"
    page.goto(prefixed + "/")

    page.click("#link-explorer")
    expect(page).to_have_url(prefixed + "/admin/sign_in?came_from=%2Fcs%2Fapi-explorer")
    fill_sign_in(page)

    expect(page).to_have_url(prefixed + "/api-explorer")
    expect(page.locator("#operations-API-connect")).to_be_visible()
    with page.expect_request(lambda request: request.url.endswith("/health")) as sent:
        _, health = try_it_out(page, "Operations-health")  # the hidden Servers box's choice
    assert sent.value.url == prefixed + "/health" and health == {"status": "ok"}
    page.click(".explorer-bar nav a")
    expect(page).to_have_url(prefixed + "/admin")
    expect(page.locator("#status")).to_contain_text("Updated")
