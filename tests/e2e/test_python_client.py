"""`channelstream.client` against a real server (no mocked HTTP): one method per endpoint,
path-bound signatures, pooled connections, timeouts and typed errors (API.md §3)."""

import socket
import time
import uuid
from datetime import UTC, datetime

import pytest
from pyramid.config import Configurator

from channelstream.client import (
    ChannelstreamClient,
    ChannelstreamConnectionError,
    ChannelstreamError,
    ChannelstreamHTTPError,
    ChannelstreamTimeout,
    ForbiddenError,
    NotFoundError,
    SignatureError,
    UnavailableError,
    ValidationError,
    client_from_settings,
)
from tests.e2e.apiclient import WsListener, has_text, is_presence

SECRET = "e2e-client-secret"


@pytest.fixture(scope="module")
def server(start_module_server):
    """Only path-bound signatures are accepted here: the client must sign the path."""
    return start_module_server(settings={"secret": SECRET, "legacy_signatures": "false"})


@pytest.fixture
def client(server):
    with ChannelstreamClient(server.base_url, SECRET, timeout=5) as client:
        yield client


@pytest.fixture
def listen(server):
    opened = []

    def open_listener(conn_id):
        listener = WsListener.open(server.ws_url, conn_id)
        opened.append(listener)
        return listener

    yield open_listener
    for listener in opened:
        listener.close()


def test_connect_returns_the_connection_with_state_and_channels_info(client, names):
    alice, room = names("alice"), names("room")
    result = client.connect(
        alice,
        [room],
        fresh_user_state={"status": "ready", "email": "a@example.com"},
        state_public_keys=["status"],
        channel_configs={room: {"notify_presence": True, "store_history": True}},
        info={"return_public_state": True},
    )
    uuid.UUID(result["conn_id"])
    assert result["username"] == alice
    assert result["channels"] == [room]
    assert result["state"] == {"status": "ready", "email": "a@example.com"}
    assert result["public_state"] == {"status": "ready"}
    assert result["channels_info"]["channels"][room]["settings"]["notify_presence"] is True
    assert {"user": alice, "state": {"status": "ready"}} in result["channels_info"]["users"]


def test_connect_with_a_given_conn_id(client, names):
    conn_id = str(uuid.uuid4())
    assert client.connect(names("alice"), conn_id=conn_id)["conn_id"] == conn_id


def test_message_reaches_a_listener_and_returns_the_accepted_item(client, listen, names):
    room = names("room")
    ws = listen(client.connect(names("alice"), [room])["conn_id"])
    sent_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    accepted = client.message("bob", {"text": "hello"}, channel=room, timestamp=sent_at)
    assert accepted["user"] == "bob"
    assert accepted["timestamp"] == "2026-01-02T03:04:05"
    uuid.UUID(accepted["uuid"])
    frame = ws.wait_for(has_text("hello"))
    assert frame["uuid"] == accepted["uuid"]
    assert frame["channel"] == room


def test_direct_message_with_pm_users_and_no_channel(client, listen, names):
    alice, carol = names("alice"), names("carol")
    ws_alice = listen(client.connect(alice)["conn_id"])
    ws_carol = listen(client.connect(carol)["conn_id"])
    client.message("bob", {"text": "psst"}, pm_users=[alice])
    client.message("bob", {"text": "to carol"}, pm_users=[carol])
    assert ws_alice.wait_for(has_text("psst"))["channel"] is None
    ws_carol.wait_for(has_text("to carol"))
    assert not any(m.get("message") == {"text": "psst"} for m in ws_carol.messages)


def test_messages_edit_messages_and_delete_messages(client, listen, names):
    room = names("room")
    ws = listen(client.connect(names("alice"), [room])["conn_id"])
    first, second = client.messages(
        [
            {"channel": room, "user": "bob", "message": {"text": "one"}},
            {"channel": room, "user": "bob", "message": {"text": "two"}},
        ]
    )
    edited = client.edit_messages(
        [{"uuid": first["uuid"], "channel": room, "message": {"text": "one!"}}]
    )
    assert edited[0]["uuid"] == first["uuid"]
    client.edit_message(second["uuid"], {"text": "two!"}, channel=room)
    client.delete_messages([{"uuid": first["uuid"], "channel": room}])
    client.delete_message(second["uuid"], channel=room)
    seen = [
        ws.wait_for(lambda m: m["type"] == "message:edit" and m["uuid"] == first["uuid"]),
        ws.wait_for(lambda m: m["type"] == "message:edit" and m["uuid"] == second["uuid"]),
        ws.wait_for(lambda m: m["type"] == "message:delete" and m["uuid"] == first["uuid"]),
        ws.wait_for(lambda m: m["type"] == "message:delete" and m["uuid"] == second["uuid"]),
    ]
    assert seen[0]["message"] == {"text": "one!"}
    assert seen[1]["message"] == {"text": "two!"}


def test_subscribe_and_unsubscribe(client, names):
    a, b = names("a"), names("b")
    conn_id = client.connect(names("alice"), [a])["conn_id"]
    subscribed = client.subscribe(
        conn_id, [b], channel_configs={b: {"store_history": True}}, info={"include_users": True}
    )
    assert subscribed["channels"] == sorted([a, b])
    assert subscribed["subscribed_to"] == [b]
    assert subscribed["channels_info"]["channels"][b]["settings"]["store_history"] is True
    unsubscribed = client.unsubscribe(conn_id, [a])
    assert unsubscribed["channels"] == [b]
    assert unsubscribed["unsubscribed_from"] == [a]


def test_user_state_changes_and_notifies(client, listen, names):
    alice, room = names("alice"), names("room")
    conn_id = client.connect(
        alice, [room], state_public_keys=["status"], channel_configs={room: {"notify_state": True}}
    )["conn_id"]
    ws = listen(conn_id)
    result = client.user_state(alice, {"status": "away", "secret": 1})
    assert result["user_state"] == {"status": "away", "secret": 1}
    assert result["public_keys"] == ["status"]
    frame = ws.wait_for(lambda m: m["type"] == "user_state_change")
    assert frame["message"]["state"] == {"status": "away"}
    cleared = client.user_state(alice, state_public_keys=[])
    assert cleared["public_keys"] == []


def test_channel_config_and_info(client, names):
    room = names("room")
    configured = client.channel_config({room: {"store_history": True, "history_size": 3}})
    assert configured["channels"][room]["settings"]["history_size"] == 3
    client.connect(names("alice"), [room])
    for n in range(5):
        client.message("bob", {"n": n}, channel=room)
    info = client.info([room], include_history=True, include_users=True)
    assert [entry["message"] for entry in info["channels"][room]["history"]] == [
        {"n": 2},
        {"n": 3},
        {"n": 4},
    ]
    assert client.info([room], include_history=False)["channels"][room]["history"] == []


def test_disconnect_ends_the_connection(client, listen, names):
    room, alice = names("room"), names("alice")
    configs = {room: {"notify_presence": True}}
    watcher = listen(client.connect(names("bob"), [room], channel_configs=configs)["conn_id"])
    conn_id = client.connect(alice, [room])["conn_id"]
    assert client.disconnect(conn_id) is True
    assert client.disconnect(conn_id) is False
    watcher.wait_for(is_presence(alice, "parted"))


def test_validation_errors_carry_the_field_errors(client, names):
    with pytest.raises(ValidationError) as error:
        client.connect("")
    assert error.value.status == 422
    assert "username" in error.value.body
    with pytest.raises(ValidationError) as error:
        client.user_state(names("nobody"), {"a": 1})
    assert error.value.body == {"user": ["Unknown user"]}
    with pytest.raises(ValidationError) as error:
        client.subscribe(str(uuid.uuid4()), ["room"])
    assert error.value.body == {"conn_id": ["Unknown connection"]}


def test_wrong_secret_is_a_signature_error(server):
    client = ChannelstreamClient(server.base_url, "not-the-secret")
    with client, pytest.raises(SignatureError) as error:
        client.connect("alice")
    assert error.value.status == 401
    assert error.value.body == {"request": "Bad Signature"}
    assert isinstance(error.value, ChannelstreamHTTPError)
    assert isinstance(error.value, ChannelstreamError)


def test_the_signature_is_bound_to_the_path(server):
    """A token for another path is refused (legacy signatures are off on this server)."""
    with ChannelstreamClient(server.base_url, SECRET) as client:
        client.connect("alice")  # signed for /connect: accepted
        client._path_prefix = "/elsewhere"  # now signs /elsewhere/connect but calls /connect
        with pytest.raises(SignatureError):
            client.connect("alice")


def test_address_not_allowed_is_a_forbidden_error(start_server):
    server = start_server(settings={"secret": SECRET, "allow_posting_from": "10.1.2.3"})
    client = ChannelstreamClient(server.base_url, SECRET)
    with client, pytest.raises(ForbiddenError) as error:
        client.connect("alice")
    assert error.value.status == 403
    assert error.value.body["error"] == "forbidden"
    assert "not allowed" in error.value.message


def test_max_connections_is_an_unavailable_error(start_server):
    server = start_server(settings={"secret": SECRET, "max_connections": 1})
    with ChannelstreamClient(server.base_url, SECRET) as client:
        client.connect("alice")
        with pytest.raises(UnavailableError) as error:
            client.connect("bob")
    assert error.value.status == 503
    assert error.value.body["error"] == "unavailable"


def test_admin_info_is_the_admin_json(client, names):
    alice, room = names("alice"), names("room")
    conn_id = client.connect(alice, [room])["conn_id"]
    info = client.admin_info()
    assert room in info["channels"]
    assert any(c["conn_id"] == conn_id and c["user"] == alice for c in info["connections"])
    assert "uptime_seconds" in info


def test_an_unknown_endpoint_is_a_not_found_error(client):
    with pytest.raises(NotFoundError) as error:
        client.request("GET", "/no-such-endpoint")
    assert error.value.status == 404
    assert error.value.body["error"] == "not_found"


def test_no_server_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        client = ChannelstreamClient(f"http://127.0.0.1:{port}", SECRET, timeout=2)
        with client, pytest.raises(ChannelstreamConnectionError) as error:
            client.connect("alice")
    assert not isinstance(error.value, ChannelstreamTimeout)
    assert isinstance(error.value, ChannelstreamError)


def test_a_server_that_does_not_answer_is_a_timeout():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # accepts connections (in the backlog) but never answers
        port = sock.getsockname()[1]
        client = ChannelstreamClient(f"http://127.0.0.1:{port}", SECRET, timeout=0.5)
        with client, pytest.raises(ChannelstreamTimeout):
            client.info()


def test_connections_are_pooled(client, names):
    for _ in range(5):
        client.info()
        client.connect(names("alice"))
    pools = list(client._pool.pools._container.values())
    assert len(pools) == 1
    assert pools[0].num_connections == 1


def test_base_url_must_be_http():
    with pytest.raises(ValueError):
        ChannelstreamClient("ftp://example.com", SECRET)


def test_pyramid_includeme_adds_request_channelstream(server, names):
    config = Configurator(
        settings={"channelstream.url": server.base_url, "channelstream.secret": SECRET}
    )
    config.include("channelstream.client")
    app_client = config.registry.channelstream_client
    assert isinstance(app_client, ChannelstreamClient)
    assert app_client.base_url == server.base_url

    def view(request):
        return request.channelstream.connect(names("alice"), ["room"])

    config.add_route("join", "/join")
    config.add_view(view, route_name="join", renderer="json")
    from webtest import TestApp

    with app_client:
        response = TestApp(config.make_wsgi_app()).get("/join")
    uuid.UUID(response.json["conn_id"])


def test_settings_without_url_or_secret_fail_clearly():
    with pytest.raises(ValueError, match="channelstream.url"):
        client_from_settings({"channelstream.secret": "s"})
    timeout_client = client_from_settings(
        {
            "channelstream.url": "http://127.0.0.1:1",
            "channelstream.secret": "s",
            "channelstream.timeout": "2.5",
        }
    )
    assert timeout_client.timeout == 2.5


def test_pooled_keep_alive_connections_do_not_delay_a_graceful_stop(start_server):
    """The pool keeps its connection open between calls; SIGTERM must not wait for it."""
    server = start_server(settings={"secret": SECRET})
    with ChannelstreamClient(server.base_url, SECRET) as client:
        client.connect("alice")
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 5
