"""Users as a whole against a real server (API.md §4.3): `POST /user_disconnect` closes every
websocket and SSE stream of the user with 4003 and the reason, presence parts, another user is
untouched; `channel_namespaces` from the environment, and its refusal at start."""

from __future__ import annotations

from typing import Any

import pytest

from channelstream.client import ChannelstreamClient
from tests.e2e.apiclient import ApiClient, WsListener, has_text, is_presence
from tests.e2e.sseclient import SseListener

SECRET = "e2e-user-disconnect-secret"


@pytest.fixture(scope="module")
def server(start_module_server: Any) -> Any:
    return start_module_server(settings={"secret": SECRET, "heartbeat_interval": 1})


def test_every_listener_of_the_user_closes_4003_with_the_reason(server: Any, names: Any) -> None:
    api = ApiClient(server.base_url, SECRET)
    room, alice, carol = names("room"), names("alice"), names("carol")
    carol_ws = WsListener.open(server.ws_url, api.connect(carol, [room], notify_presence=True))
    first = WsListener.open(server.ws_url, api.connect(alice, [room]))
    second = WsListener.open(server.ws_url, api.connect(alice, [room]))
    sse = SseListener.open(server.base_url, api.connect(alice, [room]))
    with carol_ws, first, second, sse:
        sse.next_event()  # a heartbeat: the stream is attached
        carol_ws.wait_for(is_presence(alice, "joined"))

        client = ChannelstreamClient(server.base_url, SECRET)
        try:
            counts = client.user_disconnect([alice, names("nobody")], reason="logged out")
        finally:
            client.close()

        assert counts == {alice: 3, names("nobody"): 0}
        for ws in (first, second):
            assert ws.wait_closed() == 4003
            assert ws.close_reason == "logged out"
        event = sse.next_event()
        while event is not None and event.event != "close":
            event = sse.next_event()
        assert event is not None and event.data == "4003\nlogged out"
        assert sse.next_event() is None
        carol_ws.wait_for(is_presence(alice, "parted"))
        api.publish({"channel": room, "user": "x", "message": {"text": "still here"}})
        carol_ws.wait_for(has_text("still here"))
        assert api.info()["channels"][room]["users"] == [carol]


CHAT_NAMESPACE = '{"chat": {"notify_presence": true, "store_history": true, "history_size": 50}}'


def test_channel_namespaces_from_the_environment(start_server: Any, names: Any) -> None:
    server = start_server(
        settings={"secret": SECRET}, env={"CHANNELSTREAM_CHANNEL_NAMESPACES": CHAT_NAMESPACE}
    )
    api = ApiClient(server.base_url, SECRET)
    room = f"chat:{names('room')}"
    api.connect(names("alice"), [room], channel_configs={room: {"history_size": 7}})

    settings = api.ok("/info", {"info": {"channels": [room]}})["channels"][room]["settings"]

    assert (settings["notify_presence"], settings["store_history"]) == (True, True)
    assert settings["history_size"] == 7  # the request's key wins


def test_a_bad_namespace_stops_the_start_with_one_line(run_console_script: Any) -> None:
    result = run_console_script(
        "channelstream", env={"CHANNELSTREAM_CHANNEL_NAMESPACES": '{"chat": {"colour": 1}}'}
    )

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "'channel_namespaces' from environment variable CHANNELSTREAM_CHANNEL_NAMESPACES" in (
        line
    )
    assert "colour" in line
