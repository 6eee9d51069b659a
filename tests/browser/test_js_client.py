"""The browser client (/static/channelstream.js) in headless Chromium against a real server.

The web app of these pages is played by the test: a small HTTP server on 127.0.0.1 serves
the page and relays its calls to channelstream with the Python client, recording what the page
sent. The pages import the client from the
channelstream server, cross-origin, as real pages do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from channelstream.client import ChannelstreamClient, ChannelstreamHTTPError
from tests.browser.contexts import BrowserContexts
from tests.browser.tcpproxy import TcpProxy
from tests.e2e.conftest import RunningServer

SECRET = "browser-js-client-secret"
WAIT_MS = 15_000
CHANNEL_CONFIG = {"notify_presence": True, "notify_state": True, "store_history": True}
SERVER_SETTINGS = {"secret": SECRET, "heartbeat_interval": 1}

# A page written for the 0.7 JS client (@channelstream/channelstream 0.1.x): only the calls,
# properties and callbacks of that client (reference §5.3). Only the import line changes.
LEGACY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>0.7 page</title></head>
<body>
<script type="module">
import {ChannelStreamConnection} from '__CHANNELSTREAM__/static/channelstream.js';

window.log = [];
const plain = (value) => value === undefined ? null : JSON.parse(JSON.stringify(value));
const record = (name) => (request, data) => window.log.push(
    {name: name, status: request ? request.status : null, data: plain(data)});

const connection = new ChannelStreamConnection();
connection.connectUrl = '__APP__/connect';
connection.disconnectUrl = '__APP__/disconnect';
connection.subscribeUrl = '__APP__/subscribe';
connection.unsubscribeUrl = '__APP__/unsubscribe';
connection.userStateUrl = '__APP__/user_state';
connection.messageUrl = '__APP__/message';
connection.messageEditUrl = '__APP__/message';
connection.messageDeleteUrl = '__APP__/message';
connection.websocketUrl = '__CHANNELSTREAM_WS__/ws';
connection.longPollUrl = '__CHANNELSTREAM__/listen';
connection.username = 'legacy-user';
connection.channels = ['pub_chan'];
connection.noWebsocket = __NO_WEBSOCKET__;
connection.listenMessageCallback = (messages) => {
    for (const message of messages) {
        window.log.push({name: 'frame', data: message});
    }
};
connection.listenOpenedCallback = () => window.log.push({name: 'opened'});
connection.listenCloseCallback = () => window.log.push({name: 'listenClose'});
connection.listenErrorCallback = () => window.log.push({name: 'listenError'});
connection.channelsChangedCallback = (channels) => window.log.push(
    {name: 'channels', data: plain(channels)});
connection.connectCallback = record('connect');
connection.connectErrorCallback = record('connectError');
connection.disconnectCallback = record('disconnect');
connection.messageCallback = record('message');
connection.messageErrorCallback = record('messageError');
connection.messageEditCallback = record('messageEdit');
connection.messageEditErrorCallback = record('messageEditError');
connection.messageDeleteCallback = record('messageDelete');
connection.messageDeleteErrorCallback = record('messageDeleteError');
connection.subscribeCallback = record('subscribe');
connection.subscribeErrorCallback = record('subscribeError');
connection.unsubscribeCallback = record('unsubscribe');
connection.unsubscribeErrorCallback = record('unsubscribeError');
connection.setUserStateCallback = record('setUserState');
connection.setUserStateErrorCallback = record('setUserStateError');
// the 0.7 demo's mutators: add to the connect body, a header, and change a DELETE body
connection.addMutator('connect', function (request) {
    request.body.state = {email: 'legacy@example.com', status: 'ready'};
});
connection.addMutator('message', (request) => {
    request.headers.push({name: 'X-Legacy', value: 'yes'});
});
connection.addMutator('messageDelete', (request) => { request.body.reason = 'mutated'; });
window.connection = connection;
connection.connect();
</script>
</body></html>
"""

# A page of the new client, for what it adds.
MODERN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>client</title></head>
<body>
<script type="module">
import {ChannelStreamConnection} from '__CHANNELSTREAM__/static/channelstream.js';
window.ChannelStreamConnection = ChannelStreamConnection;
window.log = [];
const connection = new ChannelStreamConnection();
connection.connectUrl = '__APP__/connect';
connection.subscribeUrl = '__APP__/subscribe';
connection.unsubscribeUrl = '__APP__/unsubscribe';
connection.messageUrl = '__APP__/message';
connection.websocketUrl = '__CHANNELSTREAM_WS__/ws';
connection.username = 'modern-user';
connection.channels = ['room'];
connection.increaseBounceIv = 100;
connection.maxBounceIv = 500;
connection.heartbeatInterval = 200;
Object.assign(connection, window.CLIENT_OPTIONS || {});
connection.listenMessageCallback = (messages) => {
    for (const message of messages) {
        window.log.push({name: 'frame', data: message});
    }
};
connection.connectionStateCallback = (state) => window.log.push({name: 'state', data: state});
connection.connectionClosedCallback = () => window.log.push({name: 'closed'});
connection.onGap = (channel, seq) => window.log.push({name: 'gap', data: {channel, seq}});
window.connection = connection;
connection.connect();
</script>
</body></html>
"""


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


class FakeWebApp:
    """The pages' web app, played by the test: a small HTTP server on 127.0.0.1 that serves
    the page and relays its calls to channelstream, recording them."""

    def __init__(self, client: ChannelstreamClient) -> None:
        self.client = client
        self.pages: dict[str, str] = {}
        self.calls: list[Call] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self) -> None:
                url = urlsplit(self.path)
                if self.command == "GET" and url.path in app.pages:
                    self.answer(200, "text/html", app.pages[url.path].encode())
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                call = Call(
                    self.command,
                    url.path,
                    parse_qs(url.query),
                    json.loads(raw) if raw else None,
                    {k.lower(): v for k, v in self.headers.items()},
                )
                app.calls.append(call)
                try:
                    status, result = 200, app.relay(call)
                except ChannelstreamHTTPError as error:
                    status, result = error.status, error.body
                self.answer(status, "application/json", json.dumps(result).encode())

            do_GET = do_POST = do_PATCH = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def calls_to(self, path: str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.path == path and method in (None, c.method)]

    def relay(self, call: Call) -> Any:
        body = call.body or {}
        if call.path == "/connect":
            channels = body.get("channels", [])
            return self.client.connect(
                body["username"],
                channels,
                fresh_user_state=body.get("state"),
                state_public_keys=["status"],
                channel_configs={name: CHANNEL_CONFIG for name in channels},
                info={"return_public_state": True},
                recover=body.get("recover"),
            )
        if call.path == "/subscribe":
            channels = body["channels"]
            return self.client.subscribe(
                body["conn_id"],
                channels,
                channel_configs={name: CHANNEL_CONFIG for name in channels},
            )
        if call.path == "/unsubscribe":
            return self.client.unsubscribe(body["conn_id"], body["channels"])
        if call.path == "/user_state":
            return self.client.user_state(body["username"], body["update_state"]["user_state"])
        if call.path == "/message" and call.method == "POST":
            return self.client.messages([{**body, "user": body.get("user", "legacy-user")}])
        if call.path == "/message" and call.method == "PATCH":
            return self.client.edit_messages([body])
        if call.path == "/message" and call.method == "DELETE":
            return self.client.delete_messages([{k: v for k, v in body.items() if k != "reason"}])
        if call.path == "/disconnect":
            return self.client.disconnect(body.get("conn_id") or call.query["conn_id"][0])
        raise AssertionError(f"unexpected call {call}")


@dataclass
class Setup:
    channelstream: RunningServer
    client: ChannelstreamClient
    start_server: Callable[..., RunningServer]
    contexts: BrowserContexts
    settings: dict[str, Any] = field(default_factory=lambda: dict(SERVER_SETTINGS))
    apps: list[FakeWebApp] = field(default_factory=list)

    def restart_channelstream(self) -> None:
        port = self.channelstream.port
        assert self.channelstream.stop() == 0
        self.channelstream = self.start_server(settings=self.settings, port=port)

    def open_page(self, template: str, init_script: str = "", **values: str) -> Any:
        """A page served by a fresh fake web app; returns (page, app)."""
        app = self.new_app()
        html = (
            template.replace("__CHANNELSTREAM_WS__", self.channelstream.ws_url[: -len("/ws")])
            .replace("__CHANNELSTREAM__", self.channelstream.base_url)
            .replace("__APP__", app.origin)
        )
        for key, value in values.items():
            html = html.replace(f"__{key}__", value)
        app.pages["/page.html"] = html
        page = self.contexts.new_page(init_script=init_script or None)
        page.goto(app.origin + "/page.html")
        return page, app

    def new_app(self) -> FakeWebApp:
        app = FakeWebApp(self.client)
        self.apps.append(app)
        return app


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """channelstream's settings (a test may parametrize it)."""
    return dict(SERVER_SETTINGS)


@pytest.fixture
def setup(
    browser: Any,
    start_server: Callable[..., RunningServer],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    server_settings: dict[str, Any],
) -> Iterator[Setup]:
    channelstream = start_server(settings=server_settings)
    contexts = BrowserContexts(browser, tmp_path)
    with ChannelstreamClient(channelstream.base_url, SECRET, timeout=5) as client:
        setup = Setup(channelstream, client, start_server, contexts, server_settings)
        yield setup
        report = getattr(request.node, "report_call", None)
        try:
            contexts.close(failed=report is None or report.failed)
        finally:
            for app in setup.apps:
                app.close()


def log_entries(page: Any, name: str) -> list[Any]:
    return list(page.evaluate("(name) => window.log.filter((e) => e.name === name)", name))


def wait_for_log(page: Any, condition: str) -> None:
    """Wait until `condition` (JS over `window.log`, e.g. `e.name === 'opened'`) holds for
    some entry."""
    page.wait_for_function(f"() => (window.log || []).some((e) => {condition})", timeout=WAIT_MS)


def wait_for_frame(page: Any, condition: str) -> dict[str, Any]:
    wait_for_log(page, f"e.name === 'frame' && (m => {condition})(e.data)")
    frames = [e["data"] for e in log_entries(page, "frame")]
    return frames


@pytest.mark.parametrize("no_websocket", ["false", "true"], ids=["websocket", "noWebsocket"])
def test_a_page_written_for_the_07_client_works_unchanged(setup, no_websocket):
    page, app = setup.open_page(LEGACY_PAGE, NO_WEBSOCKET=no_websocket)
    wait_for_log(page, "e.name === 'opened'")
    expected_transport = "websocket" if no_websocket == "false" else "sse"
    assert page.evaluate("connection.transport") == expected_transport
    assert page.evaluate("connection.connected") is True

    # connect: the 0.7 body, changed by the connect mutator; then channels and the callback
    (connect,) = app.calls_to("/connect")
    assert connect.method == "POST"
    assert connect.body == {
        "username": "legacy-user",
        "channels": ["pub_chan"],
        "state": {"email": "legacy@example.com", "status": "ready"},
    }
    conn_id = page.evaluate("connection.connectionId")
    (connected,) = log_entries(page, "connect")
    assert connected["status"] == 200
    assert connected["data"]["conn_id"] == conn_id
    assert log_entries(page, "channels")[0]["data"] == ["pub_chan"]

    # messages from elsewhere arrive through listenMessageCallback
    setup.client.message("someone", {"text": "from the server side"}, channel="pub_chan")
    wait_for_frame(page, "m.message && m.message.text === 'from the server side'")

    # subscribe / unsubscribe with the calculate* helpers
    page.evaluate("connection.subscribe(connection.calculateSubscribe(['pub_chan', 'second']))")
    wait_for_log(page, "e.name === 'subscribe'")
    assert app.calls_to("/subscribe")[0].body == {"channels": ["second"], "conn_id": conn_id}
    assert page.evaluate("connection.channels") == ["pub_chan", "second"]
    page.evaluate("connection.unsubscribe(connection.calculateUnsubscribe(['second', 'never']))")
    wait_for_log(page, "e.name === 'unsubscribe'")
    assert app.calls_to("/unsubscribe")[0].body == {"channels": ["second"], "conn_id": conn_id}
    assert page.evaluate("connection.channels") == ["pub_chan"]

    # user state: the 0.7 body, and the state change comes back through the listener
    page.evaluate("connection.updateUserState({user_state: {status: 'away'}})")
    wait_for_log(page, "e.name === 'setUserState'")
    assert app.calls_to("/user_state")[0].body == {
        "username": "legacy-user",
        "conn_id": conn_id,
        "update_state": {"user_state": {"status": "away"}},
    }
    wait_for_frame(page, "m.type === 'user_state_change' && m.message.state.status === 'away'")

    # message, edit and delete, with the mutators' header and body changes
    page.evaluate(
        "connection.message({channel: 'pub_chan', type: 'message',"
        " message: {text: 'legacy hello'}})"
    )
    wait_for_log(page, "e.name === 'message'")
    (posted,) = app.calls_to("/message", "POST")
    assert posted.headers.get("x-legacy") == "yes"
    frames = wait_for_frame(page, "m.type === 'message' && m.message.text === 'legacy hello'")
    uuid = next(f["uuid"] for f in frames if f.get("message") == {"text": "legacy hello"})
    page.evaluate(
        "(uuid) => connection.edit({uuid: uuid, channel: 'pub_chan',"
        " message: {text: 'legacy edited'}})",
        uuid,
    )
    wait_for_frame(page, f"m.type === 'message:edit' && m.uuid === '{uuid}'")
    assert app.calls_to("/message", "PATCH")[0].body["message"] == {"text": "legacy edited"}
    page.evaluate("(uuid) => connection.delete({uuid: uuid, channel: 'pub_chan'})", uuid)
    wait_for_frame(page, f"m.type === 'message:delete' && m.uuid === '{uuid}'")
    (deleted,) = app.calls_to("/message", "DELETE")
    assert deleted.body == {"uuid": uuid, "channel": "pub_chan", "reason": "mutated"}
    wait_for_log(page, "e.name === 'messageDelete'")
    # the edit's frame may arrive before its HTTP answer: wait for the answer too
    wait_for_log(page, "e.name === 'messageEdit'")
    assert log_entries(page, "messageEdit")[0]["status"] == 200

    # disconnect: POST to disconnectUrl?conn_id=... with the conn_id in the body too
    page.evaluate("connection.disconnect()")
    wait_for_log(page, "e.name === 'disconnect'")
    (disconnect,) = app.calls_to("/disconnect")
    assert disconnect.method == "POST"
    assert disconnect.query == {"conn_id": [conn_id]}
    assert disconnect.body == {"conn_id": conn_id}
    assert log_entries(page, "disconnect")[0]["data"] is True
    assert page.evaluate("connection.connected") is False
    assert setup.client.disconnect(conn_id) is False  # gone on the server

    # the 0.7 client fired listenOpenedCallback three times per poll; once is enough
    assert len(log_entries(page, "opened")) == 1
    errors = [e["name"] for e in page.evaluate("window.log") if e["name"].endswith("Error")]
    assert errors == []


def test_reconnect_back_off_doubles_with_jitter_up_to_its_cap(setup):
    page, _ = setup.open_page(MODERN_PAGE)
    delays = page.evaluate(
        """() => {
            const client = new window.ChannelStreamConnection();
            client.increaseBounceIv = 1000;
            client.maxBounceIv = 8000;
            const seen = [];
            for (const random of [0, 0.999, 0, 0.999, 0.5, 0]) {
                Math.random = () => random;
                const delay = client._nextDelay();
                seen.push([client._currentBounceIv, delay]);
            }
            return seen;
        }"""
    )
    ceilings = [ceiling for ceiling, _ in delays]
    assert ceilings == [1000, 2000, 4000, 8000, 8000, 8000]
    for ceiling, delay in delays:
        assert ceiling / 2 <= delay <= ceiling


def test_heartbeats_go_both_ways(setup):
    with_heartbeats = "window.CLIENT_OPTIONS = {heartbeatInterval: 200};"
    page = setup.contexts.new_page(init_script=with_heartbeats)
    app = setup.new_app()
    app.pages["/page.html"] = (
        MODERN_PAGE.replace("__CHANNELSTREAM_WS__", setup.channelstream.ws_url[: -len("/ws")])
        .replace("__CHANNELSTREAM__", setup.channelstream.base_url)
        .replace("__APP__", app.origin)
    )
    with page.expect_websocket(timeout=WAIT_MS) as opened:
        page.goto(app.origin + "/page.html")
    websocket = opened.value
    sent = websocket.wait_for_event(
        "framesent", lambda payload: payload == '{"type":"heartbeat"}', timeout=WAIT_MS
    )
    assert sent == '{"type":"heartbeat"}'
    received = websocket.wait_for_event(
        "framereceived", lambda payload: payload == "[]", timeout=WAIT_MS
    )
    assert received == "[]"
    # heartbeats are not handed to the page as messages
    assert log_entries(page, "frame") == []
    page.wait_for_function("connection._serverSendsHeartbeats === true", timeout=WAIT_MS)


def test_a_server_restart_makes_the_client_connect_anew_with_its_channels(setup):
    """4001 from the new server: a fresh connect() through the web app, asking for the
    channels joined since the first connect (resubscribe)."""
    setup.contexts.allow_network_errors()
    page, app = setup.open_page(MODERN_PAGE)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    page.evaluate("connection.subscribe(['extra'])")
    page.wait_for_function("connection.channels.includes('extra')", timeout=WAIT_MS)
    first_id = page.evaluate("connection.connectionId")

    setup.restart_channelstream()
    page.wait_for_function(
        f"connection.connectionId && connection.connectionId !== '{first_id}'"
        " && connection.state === 'connected'",
        timeout=WAIT_MS,
    )
    connects = app.calls_to("/connect")
    assert len(connects) >= 2
    assert sorted(connects[-1].body["channels"]) == ["extra", "room"]
    setup.client.message("server", {"text": "after the restart"}, channel="extra")
    wait_for_frame(page, "m.message && m.message.text === 'after the restart'")


def test_a_final_close_from_the_server_stops_the_client(setup):
    """/disconnect closes the websocket with 1000: the client stops, it does not reconnect."""
    page, app = setup.open_page(MODERN_PAGE)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    assert setup.client.disconnect(page.evaluate("connection.connectionId")) is True
    wait_for_log(page, "e.name === 'closed'")
    assert page.evaluate("connection.state") == "closed"
    assert page.evaluate("connection._retryTimer") is None
    assert page.evaluate("connection.websocket") is None
    assert len(app.calls_to("/connect")) == 1


def test_close_really_stops_even_while_reconnecting(setup):
    setup.contexts.allow_network_errors()
    page, app = setup.open_page(MODERN_PAGE)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    conn_id = page.evaluate("connection.connectionId")

    port = setup.channelstream.port
    assert setup.channelstream.stop() == 0
    wait_for_log(page, "e.name === 'state' && e.data === 'reconnecting'")
    page.evaluate("connection.close()")
    state = page.evaluate(
        """() => ({state: connection.state, connected: connection.connected,
                   retry: connection._retryTimer, heartbeat: connection._heartbeat ?? null,
                   watchdog: connection._watchdogTimer, websocket: connection.websocket,
                   source: connection._eventSource, poll: connection._ajaxListen})"""
    )
    assert state == {
        "state": "closed",
        "connected": False,
        "retry": None,
        "heartbeat": None,
        "watchdog": None,
        "websocket": None,
        "source": None,
        "poll": None,
    }
    # a server that comes back is not contacted again
    setup.channelstream = setup.start_server(settings=SERVER_SETTINGS, port=port)
    setup.client.message("server", {"text": "nobody listens"}, channel="room")
    assert len(app.calls_to("/connect")) == 1
    assert setup.client.disconnect(conn_id) is False  # the old server's connection is gone
    assert page.evaluate("connection.state") == "closed"


def test_when_the_server_falls_silent_the_watchdog_reconnects(setup):
    """A dead line (nothing comes through, nothing is closed): once the server's heartbeats
    stop for `heartbeatTimeout`, the client drops the socket and re-attaches."""
    setup.contexts.allow_network_errors()
    proxy = TcpProxy(setup.channelstream.port)
    try:
        options = {"websocketUrl": proxy.ws_url + "/ws", "heartbeatTimeout": 2500}
        page, _ = setup.open_page(
            MODERN_PAGE, init_script=f"window.CLIENT_OPTIONS = {json.dumps(options)};"
        )
        page.wait_for_function("connection._serverSendsHeartbeats === true", timeout=WAIT_MS)
        conn_id = page.evaluate("connection.connectionId")
        proxy.freeze()
        wait_for_log(page, "e.name === 'state' && e.data === 'reconnecting'")
        proxy.thaw()
        page.wait_for_function("connection.state === 'connected'", timeout=WAIT_MS)
        assert page.evaluate("connection.connectionId") == conn_id  # re-attached
        setup.client.message("server", {"text": "after the dead line"}, channel="room")
        wait_for_frame(page, "m.message && m.message.text === 'after the dead line'")
    finally:
        proxy.close()


# connections without a listener are collected after 2 s (presence parts after 1 s)
GC_SETTINGS = {**SERVER_SETTINGS, "gc_conns_after": 2, "presence_grace": 1}


def wait_until_collected(client: ChannelstreamClient, conn_id: str) -> None:
    """Wait (up to WAIT_MS) until channelstream no longer has the connection `conn_id`."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while conn_id in {c["conn_id"] for c in client.admin_info()["connections"]}:
        assert time.monotonic() < deadline, f"connection {conn_id} was not collected"
        time.sleep(0.1)


def highest_seq(page: Any) -> int:
    return max(f["seq"] for f in (e["data"] for e in log_entries(page, "frame")) if "seq" in f)


def test_a_gap_frame_calls_on_gap_and_catchup_replays_by_seq_are_dropped(setup):
    """What the client does with frames, fed to a client that is not connected."""
    page, _ = setup.open_page(MODERN_PAGE)
    seen = page.evaluate(
        """() => {
            const client = new window.ChannelStreamConnection();
            const delivered = [];
            const gaps = [];
            client.listenMessageCallback = (frames) => delivered.push(...frames);
            client.onGap = (channel, seq) => gaps.push([channel, seq]);
            client._receive([{type: 'message', channel: 'a', uuid: 'u1', seq: 4}]);
            client._receive([
                {type: 'gap', channel: 'a', seq: 4},
                {type: 'message', channel: 'a', uuid: 'u1', seq: 4, catchup: true},
                {type: 'presence', channel: 'a', seq: 5, catchup: true},
                {type: 'presence', channel: 'a', seq: 5, catchup: true},
                {type: 'message', channel: 'a', uuid: 'u2', seq: 9, catchup: true},
                {type: 'gap', channel: 'a', seq: 9},
                {type: 'gap', channel: 'b', seq: 2},
            ]);
            return {
                delivered: delivered.map((f) => [f.type, f.seq]),
                gaps: gaps,
                lastSeq: client.lastSeq,
            };
        }"""
    )
    # gap frames go to onGap only; catchup replays of a seq already delivered drop
    assert seen == {
        "delivered": [["message", 4], ["presence", 5], ["message", 9]],
        "gaps": [["a", 4], ["a", 9], ["b", 2]],
        "lastSeq": 9,
    }


def test_a_first_connect_keeps_the_position_the_server_answers(setup):
    """Before any frame arrives, the client's position is its connect answer's `seq`, so a
    recover then does not replay what was sent before the page connected."""
    setup.client.connect("earlier-user", ["room"])
    setup.client.message("server", {"text": "before the page"}, channel="room")
    position = setup.client.connect("probe", ["elsewhere"])["seq"]

    page, _app = setup.open_page(MODERN_PAGE)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")

    assert position > 0
    assert page.evaluate("connection.lastSeq") >= position


def test_connecting_anew_sends_recover_and_a_lost_epoch_calls_on_gap_per_channel(setup):
    """A restart of a memory-broker channelstream: 4001, the client connects anew through the
    web app with `recover` (its epoch and highest seq); the new server's state has another
    epoch, answers `recovered: false`, and the page hears of the loss on each channel."""
    setup.contexts.allow_network_errors()
    page, app = setup.open_page(MODERN_PAGE)
    wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
    page.evaluate("connection.subscribe(['extra'])")
    page.wait_for_function("connection.channels.includes('extra')", timeout=WAIT_MS)
    (first_connect,) = app.calls_to("/connect")
    assert "recover" not in first_connect.body  # nothing to recover yet
    epoch = page.evaluate("connection.epoch")
    assert isinstance(epoch, str) and epoch
    setup.client.message("server", {"text": "before the restart"}, channel="room")
    wait_for_frame(page, "m.message && m.message.text === 'before the restart'")
    position = highest_seq(page)
    assert page.evaluate("connection.lastSeq") == position
    first_id = page.evaluate("connection.connectionId")

    setup.restart_channelstream()
    page.wait_for_function(
        f"connection.connectionId && connection.connectionId !== '{first_id}'"
        " && connection.state === 'connected'",
        timeout=WAIT_MS,
    )
    recovering = app.calls_to("/connect")[-1]
    assert recovering.body["recover"] == {"epoch": epoch, "seq": position}
    wait_for_log(page, "e.name === 'gap' && e.data.channel === 'extra'")
    wait_for_log(page, "e.name === 'gap' && e.data.channel === null")
    # once per channel (the answer's, not again for the gap frames that follow it), and once
    # for the direct messages (their gap frame); the position in the new epoch: none
    gaps = [(e["data"]["channel"], e["data"]["seq"]) for e in log_entries(page, "gap")]
    assert sorted(gaps, key=str) == [("extra", 0), ("room", 0), (None, 0)]
    assert page.evaluate("connection.epoch") not in (None, epoch)
    assert not any(f.get("type") == "gap" for f in (e["data"] for e in log_entries(page, "frame")))


@pytest.mark.parametrize("server_settings", [GC_SETTINGS], ids=["gc-2s"])
def test_after_being_collected_the_client_recovers_what_it_missed(setup):
    """Away past gc_conns_after: 4001, connect anew with `recover`, and the frames sent
    meanwhile arrive as catchup on the new connection, each once; no gap."""
    setup.contexts.allow_network_errors()
    proxy = TcpProxy(setup.channelstream.port)
    try:
        options = {"websocketUrl": proxy.ws_url + "/ws"}
        page, app = setup.open_page(
            MODERN_PAGE, init_script=f"window.CLIENT_OPTIONS = {json.dumps(options)};"
        )
        wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
        setup.client.message("server", {"text": "seen"}, channel="room")
        wait_for_frame(page, "m.message && m.message.text === 'seen'")
        position = highest_seq(page)
        conn_id = page.evaluate("connection.connectionId")

        proxy.block()
        proxy.cut()
        wait_for_log(page, "e.name === 'state' && e.data === 'reconnecting'")
        setup.client.message("server", {"text": "missed 1"}, channel="room")
        wait_until_collected(setup.client, conn_id)
        setup.client.message("server", {"text": "missed 2"}, channel="room")
        setup.client.message("server", {"text": "missed dm"}, pm_users=["modern-user"])
        proxy.unblock()

        frames = wait_for_frame(page, "m.message && m.message.text === 'missed dm'")
        wait_for_frame(page, "m.message && m.message.text === 'missed 2'")
        assert page.evaluate("connection.connectionId") != conn_id
        assert app.calls_to("/connect")[-1].body["recover"]["seq"] == position
        texts = [
            f["message"]["text"]
            for f in (e["data"] for e in log_entries(page, "frame"))
            if f.get("type") == "message"
        ]
        assert texts == ["seen", "missed 1", "missed 2", "missed dm"]
        assert all(
            f.get("catchup")
            for f in frames
            if f.get("seq", 0) > position and f.get("type") == "message"
        )
        assert log_entries(page, "gap") == []
    finally:
        proxy.close()


@pytest.mark.parametrize("server_settings", [GC_SETTINGS], ids=["gc-2s"])
def test_more_missed_than_catchup_size_calls_on_gap_once_per_channel(setup):
    """Away past gc_conns_after while more frames than the channel's catchup_size were sent:
    the page hears of the gap on that channel (once), and gets the frames still held."""
    setup.contexts.allow_network_errors()
    proxy = TcpProxy(setup.channelstream.port)
    try:
        options = {"websocketUrl": proxy.ws_url + "/ws", "channels": ["room", "quiet"]}
        page, app = setup.open_page(
            MODERN_PAGE, init_script=f"window.CLIENT_OPTIONS = {json.dumps(options)};"
        )
        wait_for_log(page, "e.name === 'state' && e.data === 'connected'")
        setup.client.channel_config({"room": {"catchup_size": 2}})
        setup.client.message("server", {"text": "seen"}, channel="room")
        wait_for_frame(page, "m.message && m.message.text === 'seen'")
        position = highest_seq(page)
        conn_id = page.evaluate("connection.connectionId")

        proxy.block()
        proxy.cut()
        wait_for_log(page, "e.name === 'state' && e.data === 'reconnecting'")
        wait_until_collected(setup.client, conn_id)
        for index in range(5):
            setup.client.message("server", {"text": f"missed {index}"}, channel="room")
        proxy.unblock()

        wait_for_log(page, "e.name === 'gap'")
        wait_for_frame(page, "m.message && m.message.text === 'missed 4'")
        assert app.calls_to("/connect")[-1].body["recover"]["seq"] == position
        # `recovered: false`: once for each channel (the answer does not say which lost
        # frames), at the page's position; not again for the gap frame that follows
        gaps = sorted((e["data"]["channel"], e["data"]["seq"]) for e in log_entries(page, "gap"))
        assert gaps == [("quiet", position), ("room", position)]
        frames = [e["data"] for e in log_entries(page, "frame")]
        assert not any(f.get("type") == "gap" for f in frames)
        texts = [f["message"]["text"] for f in frames if f.get("type") == "message"]
        # what the channel still held of them (its presence frames count too), in order
        missed = [f"missed {index}" for index in range(5)]
        assert len(texts) >= 2
        assert texts == ["seen", *missed[-(len(texts) - 1) :]]
    finally:
        proxy.close()


# A page without websockets or EventSource listens by long polling; its poll URLs are kept.
LONG_POLL_ONLY = """
delete window.EventSource;
window.pollUrls = [];
const open = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    if (String(url).includes('/listen')) { window.pollUrls.push(String(url)); }
    return open.call(this, method, url, ...rest);
};
"""


def test_long_polls_carry_the_page_position_and_get_each_message_once(setup):
    page, _ = setup.open_page(LEGACY_PAGE, init_script=LONG_POLL_ONLY, NO_WEBSOCKET="true")
    wait_for_log(page, "e.name === 'opened'")
    assert page.evaluate("connection.transport") == "longpoll"
    epoch = page.evaluate("connection.epoch")

    for number in range(3):
        setup.client.message("someone", {"n": number}, channel="pub_chan")
        wait_for_frame(page, f"m.message && m.message.n === {number}")
    last_seq = page.evaluate("connection.lastSeq")
    page.wait_for_function(
        "(seq) => window.pollUrls.some((u) => u.endsWith('&seq=' + seq))", arg=last_seq
    )

    polls = [parse_qs(urlsplit(url).query) for url in page.evaluate("window.pollUrls")]
    assert all(poll["epoch"] == [epoch] for poll in polls)
    seqs = [int(poll["seq"][0]) for poll in polls]
    assert seqs == sorted(seqs) and seqs[-1] == last_seq
    frames = [entry["data"] for entry in log_entries(page, "frame")]
    numbers = [f["message"]["n"] for f in frames if "n" in (f.get("message") or {})]
    assert numbers == [0, 1, 2]  # each once
