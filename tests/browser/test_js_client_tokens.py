"""The browser client with connection tokens (`getToken`) in headless Chromium against a real
server: it connects with `?token=`, survives the token's expiry (4004) without losing a
message, and stops for good on 4003, calling `onDisconnected(reason)`."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from channelstream.client import ChannelstreamClient
from tests.browser.test_js_client import (  # noqa: F401  (fixtures)
    WAIT_MS,
    Call,
    FakeWebApp,
    log_entries,
    server_settings,
    setup,
    wait_for_frame,
    wait_for_log,
)

# PyJWT warns of HMAC keys under 32 bytes: the tokens' secret is longer.
TOKEN_SECRET = "browser-js-client-token-secret-32-bytes-or-more"
USER = "token-user"
CHANNEL = "room"
FIRST_TTL = 3  # seconds: the first token expires during the test
LATER_TTL = 300

TOKEN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>tokens</title></head>
<body>
<script type="module">
import {ChannelStreamConnection} from '__CHANNELSTREAM__/static/channelstream.js';
window.log = [];
const connection = new ChannelStreamConnection();
connection.websocketUrl = '__CHANNELSTREAM_WS__/ws';
connection.increaseBounceIv = 100;
connection.maxBounceIv = 500;
connection.getToken = async (recover) => {
    window.log.push({name: 'getToken', data: recover});
    const answer = await fetch('__APP__/token', {method: 'POST', body: JSON.stringify({recover})});
    return (await answer.json()).token;
};
connection.listenMessageCallback = (messages) => {
    for (const message of messages) {
        window.log.push({name: 'frame', data: message});
    }
};
connection.listenCloseCallback = (event, data) => window.log.push({name: 'close', data: data});
connection.connectionStateCallback = (state) => window.log.push({name: 'state', data: state});
connection.connectionClosedCallback = () => window.log.push({name: 'closed'});
connection.onDisconnected = (reason) => window.log.push({name: 'disconnected', data: reason});
window.connection = connection;
connection.connect();
</script>
</body></html>
"""


@pytest.fixture
def server_settings() -> dict[str, Any]:  # noqa: F811  (overrides the imported fixture)
    return {"secret": TOKEN_SECRET, "heartbeat_interval": 1}


class TokenWebApp(FakeWebApp):
    """A web app that hands out connection tokens; before answering the second token
    request it runs `on_second_token` (the test posts a message there: no listener is
    attached at that moment, so only `recover` can bring that message to the page)."""

    def __init__(self, client: ChannelstreamClient) -> None:
        super().__init__(client)
        self.tokens_given = 0
        self.on_second_token: Any = None
        self.lock = threading.Lock()

    def close(self) -> None:
        super().close()
        self.client.close()

    def relay(self, call: Call) -> Any:
        if call.path != "/token":
            return super().relay(call)
        recover = (call.body or {}).get("recover")
        with self.lock:
            self.tokens_given += 1
            given = self.tokens_given
        if given == 2 and self.on_second_token is not None:
            self.on_second_token()
        claims = {"recover": recover} if recover else {}
        ttl = FIRST_TTL if given == 1 else LATER_TTL
        return {"token": self.client.connection_token(USER, [CHANNEL], ttl=ttl, **claims)}


def open_token_page(setup: Any) -> tuple[Any, TokenWebApp]:  # noqa: F811
    client = ChannelstreamClient(setup.channelstream.base_url, TOKEN_SECRET, timeout=5)
    app = TokenWebApp(client)
    setup.apps.append(app)
    html = (
        TOKEN_PAGE.replace("__CHANNELSTREAM_WS__", setup.channelstream.ws_url[: -len("/ws")])
        .replace("__CHANNELSTREAM__", setup.channelstream.base_url)
        .replace("__APP__", app.origin)
    )
    app.pages["/page.html"] = html
    page = setup.contexts.new_page()
    page.goto(app.origin + "/page.html")
    return page, app


def has_text(text: str) -> str:
    return f"m.message && m.message.text === {json.dumps(text)}"


def test_get_token_survives_token_expiry_without_losing_a_message(setup):  # noqa: F811
    page, app = open_token_page(setup)
    client = app.client
    app.on_second_token = lambda: client.message("server", {"text": "during"}, channel=CHANNEL)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    assert page.evaluate("connection.transport") == "websocket"
    assert app.calls_to("/connect") == []  # a token: no /connect
    # the position frame names the connection, for the page's subscribe() and disconnect()
    page.wait_for_function("typeof connection.connectionId === 'string'", timeout=WAIT_MS)
    client.message("server", {"text": "before"}, channel=CHANNEL)
    wait_for_frame(page, has_text("before"))

    # the token expires: 4004, a fresh token with recover, and the message posted meanwhile
    wait_for_log(page, "e.name === 'close' && e.data.code === 4004")
    wait_for_frame(page, has_text("during"))
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    client.message("server", {"text": "after"}, channel=CHANNEL)
    frames = wait_for_frame(page, has_text("after"))

    texts = [f["message"]["text"] for f in frames if f.get("type") == "message"]
    assert texts == ["before", "during", "after"]  # each once, in order
    asked = [entry["data"] for entry in log_entries(page, "getToken")]
    assert asked[0] is None
    assert isinstance(asked[1]["epoch"], str) and asked[1]["epoch"]
    assert asked[1]["seq"] >= 1
    assert not any(f.get("type") == "position" for f in frames)  # kept from the page
    assert log_entries(page, "disconnected") == []


def test_4003_stops_the_client_and_calls_on_disconnected(setup):  # noqa: F811
    page, app = open_token_page(setup)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    assert app.client.user_disconnect([USER], reason="logged out") == {USER: 1}
    wait_for_log(page, "e.name === 'disconnected'")
    assert [e["data"] for e in log_entries(page, "disconnected")] == ["logged out"]
    assert page.evaluate("connection.state") == "closed"
    assert page.evaluate("connection._retryTimer") is None  # no reconnect scheduled
    assert page.evaluate("connection.websocket") is None
    assert app.tokens_given == 1
