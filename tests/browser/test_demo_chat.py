"""The chat demo (examples/chat) in headless Chromium, with channelstream and the demo web app
as real processes: several users in their own browser contexts, presence, messages, edits,
deletes, direct messages, reconnecting after a restart or a killed connection, recovering
what was missed after being collected (or reloading a channel's history on a gap), and the
server-sent events and long-poll fallbacks of the browser client (static/channelstream.js).
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from channelstream.client import ChannelstreamClient
from tests.browser.contexts import BrowserContexts
from tests.browser.tcpproxy import TcpProxy
from tests.e2e.conftest import REPO_ROOT, RunningServer

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI, saying how to install it
    expect = None

SECRET = "browser-demo-secret"
DEMO_DIR = REPO_ROOT / "examples" / "chat"
WAIT_MS = 15_000
# fast reconnects for tests (the defaults start at about 1-2 s and double up to a minute)
FAST = {"increaseBounceIv": 100, "maxBounceIv": 1000}
NO_WEBSOCKET = "Object.defineProperty(window, 'WebSocket', {value: undefined, configurable: true});"
NO_EVENTSOURCE = (
    "Object.defineProperty(window, 'EventSource', {value: undefined, configurable: true});"
)


def demo_ini(channelstream_port: int) -> str:
    return textwrap.dedent(
        f"""\
        [app:main]
        use = call:chat_demo:main
        channelstream.url = http://127.0.0.1:{channelstream_port}
        channelstream.secret = {SECRET}
        channelstream.timeout = 5
        chat.channels = lobby, random
        chat.session_secret = browser-demo-session-secret

        [server:main]
        use = egg:channelstream
        host = 127.0.0.1
        port = {{port}}
        """
    )


@dataclass
class ChatDemo:
    channelstream: RunningServer
    demo: RunningServer
    start_server: Callable[..., RunningServer]
    settings: dict[str, Any]

    def restart_channelstream(self) -> None:
        """Stop channelstream (SIGTERM) and start a fresh one on the same port: every
        connection and channel it had is gone."""
        port = self.channelstream.port
        assert self.channelstream.stop() == 0
        self.channelstream = self.start_server(settings=self.settings, port=port)

    def client(self) -> ChannelstreamClient:
        """A signed client of channelstream (close it)."""
        return ChannelstreamClient(self.channelstream.base_url, SECRET, timeout=5)


@pytest.fixture
def channelstream_settings() -> dict[str, Any]:
    """channelstream's settings (a test may parametrize it)."""
    return {"secret": SECRET}


@pytest.fixture
def chat(
    start_server: Callable[..., RunningServer], channelstream_settings: dict[str, Any]
) -> ChatDemo:
    channelstream = start_server(settings=channelstream_settings)
    demo = start_server(
        ini_text=demo_ini(channelstream.port),
        command="pserve",
        env={"PYTHONPATH": str(DEMO_DIR)},
    )
    return ChatDemo(channelstream, demo, start_server, channelstream_settings)


@pytest.fixture
def contexts(
    browser: Any, chat: ChatDemo, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Browser contexts, closed before the servers stop (`chat` is set up first)."""
    opened = BrowserContexts(browser, tmp_path)
    yield opened
    report = getattr(request.node, "report_call", None)
    opened.close(failed=report is None or report.failed)


@pytest.fixture
def proxies() -> Iterator[Callable[[int], TcpProxy]]:
    opened: list[TcpProxy] = []

    def open_proxy(port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        opened.append(proxy)
        return proxy

    yield open_proxy
    for proxy in opened:
        proxy.close()


def sign_in(
    contexts: BrowserContexts,
    chat: ChatDemo,
    name: str,
    options: dict[str, Any] | None = None,
    init_script: str = "",
) -> Any:
    """A new browser context signed in to the demo as `name`, connected to channelstream."""
    script = f"window.CHAT_DEMO_OPTIONS = {json.dumps({**FAST, **(options or {})})};"
    page = contexts.new_page(init_script=script + init_script)
    page.goto(chat.demo.base_url + "/")
    page.fill("#username", name)
    page.click("button[type=submit]")
    expect(page.locator("#me")).to_have_text(name)
    indicator = page.locator("#connection")
    expect(indicator).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    return page


def names(*bases: str) -> list[str]:
    suffix = uuid.uuid4().hex[:6]
    return [f"{base}-{suffix}" for base in bases]


def presence(page: Any, user: str) -> Any:
    return page.locator(f'#presence li[data-user="{user}"]')


def channel_message(page: Any, user: str, text: str) -> Any:
    return page.locator(f'#messages li[data-user="{user}"]', has_text=text)


def send(page: Any, text: str) -> None:
    page.fill("#message-text", text)
    page.press("#message-text", "Enter")


def edit(page: Any, message: Any, text: str) -> None:
    """Edit one's own message through the page's edit form."""
    item = page.locator(f'li[data-uuid="{message.get_attribute("data-uuid")}"]')
    item.locator(".edit").click()
    item.locator(".edit-text").fill(text)
    item.locator(".save").click()


def connection_id(page: Any) -> str:
    return str(page.evaluate("window.chatConnection.connectionId"))


def demo_calls(page: Any, path: str) -> list[str]:
    """The bodies the page posts to the demo's `path` from now on (a list that fills up)."""
    bodies: list[str] = []
    page.on(
        "request",
        lambda request: (
            bodies.append(request.post_data or "")
            if request.method == "POST" and request.url.endswith(path)
            else None
        ),
    )
    return bodies


def wait_until_collected(chat: ChatDemo, conn_id: str) -> None:
    """Wait (up to WAIT_MS) until channelstream no longer has the connection `conn_id`."""
    deadline = time.monotonic() + WAIT_MS / 1000
    with chat.client() as client:
        while conn_id in {c["conn_id"] for c in client.admin_info()["connections"]}:
            assert time.monotonic() < deadline, f"connection {conn_id} was not collected"
            time.sleep(0.1)


def test_two_users_see_each_other_with_their_status(contexts, chat):
    alice_name, bob_name = names("alice", "bob")
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(contexts, chat, bob_name)
    expect(presence(alice, bob_name)).to_have_attribute("data-status", "available", timeout=WAIT_MS)
    expect(presence(bob, alice_name)).to_have_attribute("data-status", "available")
    expect(presence(bob, bob_name)).to_be_visible()
    bob.select_option("#status", "away")
    expect(presence(alice, bob_name)).to_have_attribute("data-status", "away", timeout=WAIT_MS)
    expect(presence(alice, bob_name).locator(".status")).to_have_text("away")
    expect(alice.locator("#connection")).to_have_text("connected (websocket)")


def test_a_message_its_edit_and_its_delete_reach_the_other_user(contexts, chat):
    alice_name, bob_name = names("alice", "bob")
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(contexts, chat, bob_name)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)

    send(alice, "hello bob")
    on_bob = channel_message(bob, alice_name, "hello bob")
    expect(on_bob).to_be_visible(timeout=WAIT_MS)
    expect(on_bob.locator(".edit")).to_have_count(0)  # only the author may change it

    edit(alice, channel_message(alice, alice_name, "hello bob"), "hello bob, edited")
    edited = bob.locator(f'#messages li[data-user="{alice_name}"]')
    expect(edited.locator(".text")).to_have_text("hello bob, edited", timeout=WAIT_MS)
    expect(edited.locator(".edited")).to_be_visible()

    channel_message(alice, alice_name, "hello bob, edited").locator(".delete").click()
    expect(bob.locator(f'#messages li[data-user="{alice_name}"]')).to_have_count(0, timeout=WAIT_MS)
    expect(alice.locator(f'#messages li[data-user="{alice_name}"]')).to_have_count(0)


def test_a_direct_message_reaches_only_its_recipient(contexts, chat):
    alice_name, bob_name, carol_name = names("alice", "bob", "carol")
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(contexts, chat, bob_name)
    carol = sign_in(contexts, chat, carol_name)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    expect(presence(alice, carol_name)).to_be_visible(timeout=WAIT_MS)

    alice.select_option("#dm-to", bob_name)
    alice.fill("#dm-text", "just for you, bob")
    alice.press("#dm-text", "Enter")
    received = bob.locator("#direct-messages li", has_text="just for you, bob")
    expect(received).to_be_visible(timeout=WAIT_MS)
    expect(received).to_have_attribute("data-peer", alice_name)
    expect(alice.locator("#direct-messages li", has_text="just for you, bob")).to_contain_text(
        f"to {bob_name}"
    )
    # carol gets what alice says next in the channel, so she would have had the DM by now
    send(alice, "now for everyone")
    expect(channel_message(carol, alice_name, "now for everyone")).to_be_visible(timeout=WAIT_MS)
    expect(carol.locator("#direct-messages li")).to_have_count(0)
    expect(carol.locator("body")).not_to_contain_text("just for you, bob")


def alice_and_bob_behind_a_proxy(
    contexts: Any, chat: Any, proxies: Any
) -> tuple[str, str, Any, Any, Any]:
    """Alice and Bob signed in, Bob's websocket and long polls through a proxy the test can
    cut: (alice_name, bob_name, alice_page, bob_page, proxy)."""
    contexts.allow_network_errors()
    alice_name, bob_name = names("alice", "bob")
    proxy = proxies(chat.channelstream.port)
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(
        contexts,
        chat,
        bob_name,
        {"websocketUrl": proxy.ws_url + "/ws", "longPollUrl": proxy.http_url + "/listen"},
    )
    return alice_name, bob_name, alice, bob, proxy


def cut_off(page: Any, proxy: Any) -> None:
    """Cut the page's line (new connections refused too) and wait until it notices."""
    proxy.block()
    proxy.cut()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "connected")


def test_after_a_server_restart_the_client_reconnects_and_shows_what_was_sent_meanwhile(
    contexts, chat, proxies
):
    """Bob reaches channelstream through a proxy that is blocked while it restarts: alice
    reconnects first and writes; when bob gets through, the new server does not know his
    connection (4001), so his client connects anew through the web app with `recover`; the
    new server's state has another epoch (`recovered: false`), so the page reloads the
    channel's history (/demo/history), which shows him what alice wrote."""
    alice_name, bob_name, alice, bob, proxy = alice_and_bob_behind_a_proxy(contexts, chat, proxies)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    old_alice, old_bob = connection_id(alice), connection_id(bob)
    history_calls = demo_calls(bob, "/demo/history")

    proxy.block()
    proxy.cut()
    chat.restart_channelstream()
    alice.wait_for_function(
        f"chatConnection.connectionId !== {json.dumps(old_alice)}"
        " && chatConnection.state === 'connected'",
        timeout=WAIT_MS,
    )
    expect(bob.locator("#connection")).not_to_have_attribute("data-state", "connected")
    send(alice, "sent while bob was away")
    expect(channel_message(alice, alice_name, "sent while bob was away")).to_be_visible(
        timeout=WAIT_MS
    )

    proxy.unblock()
    expect(channel_message(bob, alice_name, "sent while bob was away")).to_be_visible(
        timeout=WAIT_MS
    )
    expect(bob.locator("#connection")).to_have_attribute("data-state", "connected")
    assert connection_id(bob) != old_bob
    assert [json.loads(body)["channel"] for body in history_calls] == ["lobby"]
    # the direct messages' gap: no history holds them, the page says some may be missing
    expect(bob.locator("#dm-gap")).to_be_visible()
    send(bob, "bob is back")
    expect(channel_message(alice, bob_name, "bob is back")).to_be_visible(timeout=WAIT_MS)


def test_after_a_killed_connection_the_client_reattaches_and_catches_up(contexts, chat, proxies):
    """The connection is cut while channelstream keeps running: the client re-attaches with
    the same conn_id and the server replays what was sent meanwhile (catchup)."""
    alice_name, bob_name, alice, bob, proxy = alice_and_bob_behind_a_proxy(contexts, chat, proxies)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    old_bob = connection_id(bob)

    proxy.block()
    proxy.cut()
    expect(bob.locator("#connection")).to_have_attribute(
        "data-state", "reconnecting", timeout=WAIT_MS
    )
    send(alice, "sent while the line was cut")
    expect(channel_message(alice, alice_name, "sent while the line was cut")).to_be_visible(
        timeout=WAIT_MS
    )
    proxy.unblock()
    expect(channel_message(bob, alice_name, "sent while the line was cut")).to_be_visible(
        timeout=WAIT_MS
    )
    expect(bob.locator("#connection")).to_have_attribute("data-state", "connected")
    assert connection_id(bob) == old_bob  # re-attached: no new connection
    assert proxy.connections_made >= 2


@pytest.mark.parametrize(
    ("disabled", "transport"),
    [(NO_WEBSOCKET, "sse"), (NO_WEBSOCKET + NO_EVENTSOURCE, "longpoll")],
    ids=["sse", "long-poll"],
)
def test_without_websocket_the_page_falls_back_and_still_delivers(
    contexts, chat, disabled, transport
):
    alice_name, bob_name = names("alice", "bob")
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(contexts, chat, bob_name, init_script=disabled)
    expect(bob.locator("#connection")).to_have_text(f"connected ({transport})")
    assert bob.evaluate("typeof window.WebSocket") == "undefined"
    expect(presence(bob, alice_name)).to_be_visible(timeout=WAIT_MS)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)

    send(alice, f"to bob over {transport}")
    expect(channel_message(bob, alice_name, f"to bob over {transport}")).to_be_visible(
        timeout=WAIT_MS
    )
    edit(alice, channel_message(alice, alice_name, f"to bob over {transport}"), "edited")
    expect(bob.locator(f'#messages li[data-user="{alice_name}"] .text')).to_have_text(
        "edited", timeout=WAIT_MS
    )
    send(bob, f"from bob over {transport}")
    expect(channel_message(alice, bob_name, f"from bob over {transport}")).to_be_visible(
        timeout=WAIT_MS
    )


def own_item(page: Any, user: str, text: str) -> Any:
    """The list item of one's own channel message, found by its text once and then by uuid
    (its text changes while it is edited)."""
    message = channel_message(page, user, text)
    expect(message).to_be_visible(timeout=WAIT_MS)
    return page.locator(f'#messages li[data-uuid="{message.get_attribute("data-uuid")}"]')


def test_a_second_click_on_edit_keeps_the_open_edit(contexts, chat):
    """It used to throw `Cannot read properties of null` (the page's console errors fail
    the test when the contexts close)."""
    (alice_name,) = names("alice")
    alice = sign_in(contexts, chat, alice_name)
    send(alice, "typo here")
    item = own_item(alice, alice_name, "typo here")

    item.locator(".edit").click()
    item.locator(".edit-text").fill("draft")
    item.locator(".edit").click()

    expect(item.locator(".edit-text")).to_have_value("draft")
    expect(item.locator(".edit-text")).to_be_focused()
    item.locator(".save").click()
    expect(item.locator(".text")).to_have_text("draft", timeout=WAIT_MS)
    assert contexts.unexpected_errors() == []


def test_new_messages_show_while_an_edit_is_open_and_the_draft_stays(contexts, chat):
    alice_name, bob_name = names("alice", "bob")
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(contexts, chat, bob_name)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    send(alice, "first version")
    item = own_item(alice, alice_name, "first version")
    item.locator(".edit").click()
    item.locator(".edit-text").fill("second vers")

    send(bob, "news from bob")
    send(bob, "more news from bob")

    expect(channel_message(alice, bob_name, "more news from bob")).to_be_visible(timeout=WAIT_MS)
    expect(channel_message(alice, bob_name, "news from bob")).to_have_count(2)  # both match
    expect(item.locator(".edit-text")).to_have_value("second vers")
    alice.keyboard.type("ion")  # the caret and focus stayed in the draft
    expect(item.locator(".edit-text")).to_have_value("second version")
    item.locator(".save").click()
    on_bob = bob.locator(f'#messages li[data-user="{alice_name}"]')
    expect(on_bob.locator(".text")).to_have_text("second version", timeout=WAIT_MS)


def test_saving_an_unchanged_edit_sends_nothing_and_marks_nothing(contexts, chat):
    alice_name, bob_name = names("alice", "bob")
    alice = sign_in(contexts, chat, alice_name)
    bob = sign_in(contexts, chat, bob_name)
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    edits: list[str] = []
    alice.on(
        "request", lambda request: edits.append(request.url) if request.method == "PATCH" else None
    )
    send(alice, "already right")
    item = own_item(alice, alice_name, "already right")
    expect(channel_message(bob, alice_name, "already right")).to_be_visible(timeout=WAIT_MS)

    item.locator(".edit").click()
    item.locator(".save").click()
    send(alice, "sent after the save")  # bob gets this after any edit the save had sent

    expect(channel_message(bob, alice_name, "sent after the save")).to_be_visible(timeout=WAIT_MS)
    assert edits == []
    expect(item.locator(".edit-text")).to_have_count(0)
    for page in (alice, bob):
        expect(channel_message(page, alice_name, "already right").locator(".edited")).to_have_count(
            0
        )


def test_the_sign_in_page_looks_like_the_chat(contexts, chat):
    contexts.allowed_errors.append(r"status of 400 \(Bad Request\)")  # the refused name
    page = contexts.new_page()
    page.goto(chat.demo.base_url + "/")
    sign_in_header = page.locator("header")
    expect(sign_in_header.locator("h1")).to_have_text("Channelstream chat")
    header_style = sign_in_header.evaluate(
        "header => [getComputedStyle(header).backgroundColor, getComputedStyle(header).color]"
    )
    card = page.locator(".card", has=page.locator("#username"))
    expect(card).to_have_css("background-color", "rgb(255, 255, 255)")
    page.fill("#username", "not a name!")
    page.evaluate("document.querySelector('form').noValidate = true")
    page.click("button[type=submit]")
    expect(card.locator(".error")).to_be_visible()  # the error shows in the same card

    page.fill("#username", names("alice")[0])
    page.click("button[type=submit]")
    chat_header = page.locator("header")
    expect(page.locator("#me")).to_be_visible()
    assert (
        chat_header.evaluate(
            "header => [getComputedStyle(header).backgroundColor, getComputedStyle(header).color]"
        )
        == header_style
    )


# connections without a listener are collected after 2 s; presence parts after 1 s
GC_SETTINGS = {"secret": SECRET, "gc_conns_after": 2, "presence_grace": 1}


def texts(page: Any) -> Any:
    return page.locator("#messages li .text")


@pytest.mark.parametrize("channelstream_settings", [GC_SETTINGS], ids=["gc-2s"])
def test_away_past_the_gc_time_the_page_recovers_everything_sent_meanwhile(contexts, chat, proxies):
    """Bob's line is cut until channelstream has collected his connection: his client
    connects anew with `recover`, and what was said meanwhile (a direct message too, which
    no channel history holds) arrives as catchup, once each, in order, without a reload."""
    alice_name, bob_name, alice, bob, proxy = alice_and_bob_behind_a_proxy(contexts, chat, proxies)
    connects = demo_calls(bob, "/demo/connect")
    history_calls = demo_calls(bob, "/demo/history")
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    send(alice, "before the cut")
    expect(channel_message(bob, alice_name, "before the cut")).to_be_visible(timeout=WAIT_MS)
    epoch = bob.evaluate("chatConnection.epoch")
    old_bob = connection_id(bob)

    cut_off(bob, proxy)
    send(alice, "while bob was away")
    expect(channel_message(alice, alice_name, "while bob was away")).to_be_visible(timeout=WAIT_MS)
    expect(presence(alice, bob_name)).to_have_count(0, timeout=WAIT_MS)  # parted
    wait_until_collected(chat, old_bob)
    send(alice, "after bob was collected")
    expect(channel_message(alice, alice_name, "after bob was collected")).to_be_visible(
        timeout=WAIT_MS
    )
    with chat.client() as client:
        client.message(alice_name, {"text": "a direct word"}, pm_users=[alice_name, bob_name])

    proxy.unblock()
    expect(bob.locator("#direct-messages li", has_text="a direct word")).to_be_visible(
        timeout=WAIT_MS
    )
    expect(texts(bob)).to_have_text(
        ["before the cut", "while bob was away", "after bob was collected"], timeout=WAIT_MS
    )
    expect(bob.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)  # joined again
    assert connection_id(bob) != old_bob
    recover = json.loads(connects[-1])["recover"]
    assert recover["epoch"] == epoch
    assert isinstance(recover["seq"], int) and recover["seq"] > 0
    assert history_calls == []  # all of it came as catchup: no reload
    expect(bob.locator("#dm-gap")).to_be_hidden()
    expect(bob.locator("#direct-messages li")).to_have_count(1)


@pytest.mark.parametrize("channelstream_settings", [GC_SETTINGS], ids=["gc-2s"])
def test_away_past_the_catchup_size_the_page_reloads_the_channel_on_the_gap(
    contexts, chat, proxies
):
    """The lobby keeps 3 frames for catchup; more are sent while bob is away (past the GC
    time), and a message he saw is deleted and another edited meanwhile: the gap makes his
    page reload the lobby from the demo's /demo/history, so he sees every message once, in
    order, as they are now."""
    alice_name, bob_name, alice, bob, proxy = alice_and_bob_behind_a_proxy(contexts, chat, proxies)
    history_calls = demo_calls(bob, "/demo/history")
    with chat.client() as client:
        client.channel_config({"lobby": {"catchup_size": 3}})
    expect(presence(alice, bob_name)).to_be_visible(timeout=WAIT_MS)
    send(alice, "soon deleted")
    # posted one after the other (two requests in flight could reach channelstream either way)
    expect(channel_message(alice, alice_name, "soon deleted")).to_be_visible(timeout=WAIT_MS)
    send(alice, "soon edited")
    expect(texts(bob)).to_have_text(["soon deleted", "soon edited"], timeout=WAIT_MS)
    old_bob = connection_id(bob)

    cut_off(bob, proxy)
    wait_until_collected(chat, old_bob)
    channel_message(alice, alice_name, "soon deleted").locator(".delete").click()
    expect(channel_message(alice, alice_name, "soon deleted")).to_have_count(0, timeout=WAIT_MS)
    edit(alice, channel_message(alice, alice_name, "soon edited"), "edited meanwhile")
    expect(texts(alice)).to_have_text(["edited meanwhile"], timeout=WAIT_MS)
    missed = [f"missed {index}" for index in range(6)]
    for text in missed:
        send(alice, text)
        expect(channel_message(alice, alice_name, text)).to_be_visible(timeout=WAIT_MS)

    proxy.unblock()
    expect(texts(bob)).to_have_text(["edited meanwhile", *missed], timeout=WAIT_MS)
    expect(bob.locator("#connection")).to_have_attribute("data-state", "connected")
    assert connection_id(bob) != old_bob
    assert [json.loads(body)["channel"] for body in history_calls] == ["lobby"]
    send(alice, "after the reload")
    expect(texts(bob)).to_have_text(
        ["edited meanwhile", *missed, "after the reload"], timeout=WAIT_MS
    )
