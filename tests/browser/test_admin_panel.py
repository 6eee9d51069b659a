"""The admin panel in a real browser: sign-in, live figures and the disconnect buttons."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_SECRET, ADMIN_USER, SECRET, sign_in
from tests.e2e.apiclient import ApiClient, WsListener
from tests.e2e.conftest import RunningServer
from tests.webhook_receiver import WebhookReceiver

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
    # a listener keeps alice present: without one she parts after presence_grace
    with WsListener.open(server.ws_url, conn_id):
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


def refreshed(page: Any) -> None:
    """Wait for the panel's next refresh (it counts them in body[data-loaded])."""
    loaded = page.locator("body").get_attribute("data-loaded")
    expect(page.locator("body")).not_to_have_attribute(
        "data-loaded", loaded or "", timeout=REFRESH_WAIT_MS
    )


def test_disconnect_asks_first_and_only_a_yes_closes_the_websocket(
    page: Any, server: RunningServer
) -> None:
    api = ApiClient(server.base_url, SECRET)
    conn_id = api.connect("carol", channels=["lobby"])
    other = api.connect("dave", channels=["lobby"])
    questions: list[str] = []
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    with WsListener.open(server.ws_url, conn_id) as ws, WsListener.open(server.ws_url, other):
        sign_in(page, server)
        button = page.locator(f"button[data-disconnect='{conn_id}']")
        expect(button).to_be_visible()

        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
        button.click()
        refreshed(page)

        assert len(questions) == 1 and f"carol's connection {conn_id}" in questions[0]
        assert not [url for url in sent if url.endswith("/admin/disconnect")]
        expect(page.locator(f"[data-conn-id='{conn_id}']")).to_be_visible()
        ws.sync()  # still open: the server answers its ping

        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
        button.click()

        assert ws.wait_closed(timeout=10) == 1000
        assert len(questions) == 2
        expect(page.locator(f"[data-conn-id='{conn_id}']")).to_have_count(0)
        expect(page.locator(f"[data-conn-id='{other}']")).to_be_visible()
        expect(page.locator("#status")).to_contain_text("Updated")


def test_the_history_is_a_table_of_time_user_text_and_marks(
    page: Any, server: RunningServer
) -> None:
    api = ApiClient(server.base_url, SECRET)
    erin = api.connect(
        "erin", channels=["lobby"], channel_configs={"lobby": {"store_history": True}}
    )
    hello, data, hidden = api.publish(
        {"channel": "lobby", "user": "bob", "message": {"text": "hello everyone"}},
        {"channel": "lobby", "user": "bob", "message": {"score": 3, "items": list(range(100))}},
        {"channel": "lobby", "user": "bob", "message": {"text": "psst"}, "exclude_users": ["zed"]},
    )
    api.ok(
        "/message",
        [{"uuid": hello["uuid"], "channel": "lobby", "message": {"text": "hi"}}],
        "PATCH",
    )
    # a listener keeps erin present (without one she parts after presence_grace)
    with WsListener.open(server.ws_url, erin):
        sign_in(page, server)

        page.click("button[data-channel=lobby]")
        detail = page.locator("#channel-detail")
        expect(detail).to_contain_text("1 user · 1 connection")
        detail.locator("summary", has_text="History").click()

        expect(detail.locator("summary", has_text="History")).to_have_text("History: 3 messages")
        table = detail.locator("table.history")
        expect(table.locator("th")).to_have_text(["Time", "User", "Message", "Notes"])
        edited = table.locator(f"tr[data-uuid='{hello['uuid']}'] td")
        expect(edited.nth(1)).to_have_text("bob")
        expect(edited.nth(2)).to_have_text("hi")
        expect(edited.nth(3)).to_have_text(
            re.compile(r"^edited \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
        )
        summary = table.locator(f"tr[data-uuid='{data['uuid']}'] td").nth(2)
        expect(summary).to_have_text(re.compile(r'^\{"score":3,"items":\[0,1,2,.*…$'))
        expect(table.locator(f"tr[data-uuid='{hidden['uuid']}'] td").nth(3)).to_have_text(
            "not to zed"
        )
        expect(detail.locator("pre")).to_have_count(1)  # the settings; no raw JSON per message
        assert table.evaluate("table => table.getBoundingClientRect().height") < 300


def test_counts_are_pluralised(page: Any, server: RunningServer) -> None:
    api = ApiClient(server.base_url, SECRET)
    config = {"store_history": True}
    one = api.connect("frank", channels=["solo", "pair"], channel_configs={"solo": config})
    two = api.connect("gina", channels=["pair"])
    api.publish({"channel": "solo", "user": "frank", "message": {"text": "alone"}})
    # listeners keep both present (without one a user parts after presence_grace)
    with WsListener.open(server.ws_url, one), WsListener.open(server.ws_url, two):
        sign_in(page, server)
        detail = page.locator("#channel-detail")

        page.click("button[data-channel=solo]")
        expect(detail).to_contain_text("· 1 user · 1 connection")
        expect(detail.locator("summary", has_text="History")).to_have_text("History: 1 message")
        expect(detail.locator("summary", has_text="Users")).to_have_text("Users: 1 user")
        page.click("button[data-channel=pair]")
        expect(detail).to_contain_text("· 2 users · 2 connections")
        expect(detail.locator("summary", has_text="History")).to_have_text("History: 0 messages")
        expect(detail.locator("summary", has_text="Users")).to_have_text("Users: 2 users")
        expect(page.locator(f"[data-conn-id='{one}']")).to_contain_text("· 1 listener ·")
        expect(page.locator("tr[data-user=gina]")).to_contain_text("· 1 listener ·")


PHONE = {"width": 390, "height": 844}


def test_disconnect_user_asks_first_then_closes_all_their_websockets_4003(
    page: Any, server: RunningServer
) -> None:
    api = ApiClient(server.base_url, SECRET)
    first, second = (api.connect("erin", channels=["lobby"]) for _ in range(2))
    other = api.connect("frank", channels=["lobby"])
    questions: list[str] = []
    with (
        WsListener.open(server.ws_url, first) as ws1,
        WsListener.open(server.ws_url, second) as ws2,
        WsListener.open(server.ws_url, other),
    ):
        sign_in(page, server)
        button = page.locator("button[data-disconnect-user='erin']")
        expect(button).to_be_visible()

        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
        button.click()
        refreshed(page)
        assert len(questions) == 1 and "Disconnect user erin?" in questions[0]
        ws1.sync()  # still open

        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
        button.click()

        for ws in (ws1, ws2):
            assert ws.wait_closed(timeout=10) == 4003
            assert ws.close_reason == "disconnected by an admin"
        expect(page.locator("tr[data-user=erin]")).to_have_count(0)
        expect(page.locator(f"[data-conn-id='{other}']")).to_be_visible()
        expect(page.locator("#status")).to_contain_text("Updated")


def test_the_panel_fits_a_phone_screen(page: Any, server: RunningServer) -> None:
    api = ApiClient(server.base_url, SECRET)
    conn_id = api.connect(
        "a-user-with-a-rather-long-name",
        channels=["a-channel-with-a-rather-long-name-too"],
        channel_configs={"a-channel-with-a-rather-long-name-too": {"store_history": True}},
        user_state={"mood": "x" * 80},
        state_public_keys=["mood"],
    )
    api.publish(
        {
            "channel": "a-channel-with-a-rather-long-name-too",
            "user": "a-user-with-a-rather-long-name",
            "message": {"text": "w" * 300},
        }
    )
    page.set_viewport_size(PHONE)
    sign_in(page, server)
    for control in ("#sign-out", "header nav a", "[data-figure=connections]"):
        expect(page.locator(control)).to_be_in_viewport()
    channel = page.locator("button[data-channel]")
    expect(channel).to_be_visible()
    channel.click()
    page.locator("#channel-detail summary", has_text="History").click()
    expect(page.locator("#channel-detail table.history tbody tr")).to_have_count(1)

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for control in (f"button[data-disconnect='{conn_id}']", "button[data-channel]"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]


def test_signing_out_ends_the_session(page: Any, server: RunningServer) -> None:
    sign_in(page, server)
    expect(page).to_have_url(server.base_url + "/admin")

    page.click("#sign-out")

    expect(page).to_have_url(server.base_url + "/admin/sign_in")
    page.goto(server.base_url + "/admin")
    expect(page).to_have_url(server.base_url + "/admin/sign_in")


def test_the_webhook_section_shows_the_queue_the_last_error_and_the_last_delivery(
    page: Any, start_server: Any
) -> None:
    receiver = WebhookReceiver(secret=SECRET).start()
    receiver.answer(500)
    try:
        server = start_server(
            settings={
                "secret": SECRET,
                "admin_user": ADMIN_USER,
                "admin_secret": ADMIN_SECRET,
                "webhook_url": receiver.url + "?token=hidden",
            }
        )
        api = ApiClient(server.base_url, SECRET)
        sign_in(page, server)
        section = page.locator("#webhooks-section")
        expect(section).to_be_visible()
        expect(page.locator("#webhooks-url")).to_have_text(receiver.url)
        expect(page.locator("#webhooks-sender")).to_contain_text("this node sends them")

        conn_id = api.connect("alice", channels=["lobby"])  # 3 events, refused by the receiver
        # a listener keeps alice present: no more events after presence_grace
        with WsListener.open(server.ws_url, conn_id):
            receiver.wait_for_requests(1)
            expect(page.locator("[data-webhook=queue]")).to_have_text(
                "3 of 100000", timeout=REFRESH_WAIT_MS
            )
            expect(page.locator("#webhooks-error")).to_contain_text(
                "status 500", timeout=REFRESH_WAIT_MS
            )
            expect(page.locator("[data-webhook=last-delivered]")).to_have_text("never")

            receiver.answer(204)  # the next retry (within 2 s) delivers them
            receiver.wait_for_events(lambda events: len(events) == 3)
            expect(page.locator("[data-webhook=queue]")).to_have_text(
                "0 of 100000", timeout=REFRESH_WAIT_MS
            )
            expect(page.locator("[data-webhook=sent]")).to_have_text("3")
            expect(page.locator("[data-webhook=last-delivered]")).not_to_have_text("never")
    finally:
        receiver.stop()


def test_the_webhook_section_is_hidden_while_webhooks_are_off(
    page: Any, server: RunningServer
) -> None:
    sign_in(page, server)
    expect(page.locator("#status")).to_contain_text("Updated")
    expect(page.locator("#webhooks-section")).to_be_hidden()
