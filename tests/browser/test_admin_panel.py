"""The admin panel in a real browser: sign-in, live figures and the disconnect button."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import SECRET, sign_in
from tests.e2e.apiclient import ApiClient, WsListener
from tests.e2e.conftest import RunningServer

REFRESH_WAIT_MS = 15_000  # the panel refreshes every 5 s


def test_wrong_credentials_keep_the_form_and_the_right_ones_open_the_panel(
    page: Any, server: RunningServer
) -> None:
    sign_in(page, server, password="wrong")
    expect(page.locator("#sign-in-error")).to_have_text("Wrong user name or password.")
    assert page.url.endswith("/admin/sign_in")

    sign_in(page, server)

    expect(page).to_have_url(server.base_url + "/admin")
    expect(page.locator("[data-figure=uptime]")).to_have_text(re.compile(r"^0:0\d:\d\d$"))
    expect(page.locator("[data-figure=connections]")).to_have_text("0")
    expect(page.locator("#no-users")).to_be_visible()


def test_the_panel_needs_a_session(page: Any, server: RunningServer) -> None:
    page.goto(server.base_url + "/admin")

    expect(page).to_have_url(server.base_url + "/admin/sign_in")
    expect(page.locator("#password")).to_be_visible()


def test_a_connection_made_through_the_api_appears_with_its_channels_and_state(
    page: Any, server: RunningServer
) -> None:
    api = ApiClient(server.base_url, SECRET)
    sign_in(page, server)
    expect(page.locator("#status")).to_contain_text("Updated")

    conn_id = api.connect(
        "alice",
        channels=["lobby"],
        user_state={"mood": "curious", "hidden": "x"},
        state_public_keys=["mood"],
    )
    api.publish({"channel": "lobby", "user": "bob", "message": {"text": "hello"}})

    row = page.locator(f"[data-conn-id='{conn_id}']")
    expect(row).to_be_visible(timeout=REFRESH_WAIT_MS)
    expect(row).to_contain_text("lobby")
    user = page.locator("tr[data-user=alice]")
    expect(user).to_contain_text('"mood": "curious"')
    expect(user).not_to_contain_text("hidden")
    expect(page.locator("[data-figure=connections]")).to_have_text("1")
    expect(page.locator("[data-figure=messages-in]")).to_have_text("1")
    page.click("button[data-channel=lobby]")
    detail = page.locator("#channel-detail")
    expect(detail).to_contain_text("Channel lobby")
    expect(detail).to_contain_text('"notify_presence": false')


def test_the_disconnect_button_closes_the_connections_websocket(
    page: Any, server: RunningServer
) -> None:
    api = ApiClient(server.base_url, SECRET)
    conn_id = api.connect("carol", channels=["lobby"])
    other = api.connect("dave", channels=["lobby"])
    with WsListener.open(server.ws_url, conn_id) as ws, WsListener.open(server.ws_url, other):
        sign_in(page, server)
        button = page.locator(f"button[data-disconnect='{conn_id}']")
        expect(button).to_be_visible()

        button.click()

        assert ws.wait_closed(timeout=10) == 1000
        expect(page.locator(f"[data-conn-id='{conn_id}']")).to_have_count(0)
        expect(page.locator(f"[data-conn-id='{other}']")).to_be_visible()
        expect(page.locator("#status")).to_contain_text("Updated")


def test_signing_out_ends_the_session(page: Any, server: RunningServer) -> None:
    sign_in(page, server)
    expect(page).to_have_url(server.base_url + "/admin")

    page.click("#sign-out")

    expect(page).to_have_url(server.base_url + "/admin/sign_in")
    page.goto(server.base_url + "/admin")
    expect(page).to_have_url(server.base_url + "/admin/sign_in")
