"""`max_connections_per_user` over HTTP: 429 with the limit's name, decided by the core."""

from __future__ import annotations

from tests.functional.conftest import ApiClient, ClientFactory


def test_one_connection_over_the_limit_is_429_naming_it(make_client: ClientFactory) -> None:
    client: ApiClient = make_client(max_connections_per_user=2)
    first = client.connect("alice")["conn_id"]
    client.connect("alice")

    refused = client.post("/connect", {"username": "alice"}, status=429)

    assert refused.json["limit"] == "max_connections_per_user"
    assert refused.json["error"] == "too_many_requests"
    assert len(client.node.state.users["alice"].connections) == 2
    # the same conn_id again is an update, not a new connection; other users are free
    client.post("/connect", {"username": "alice", "conn_id": first, "channels": ["x"]})
    client.connect("bob")


NAMESPACES = '{"chat": {"notify_presence": true, "store_history": true, "history_size": 50}}'


def test_a_channel_namespace_gives_new_channels_their_settings(
    make_client: ClientFactory,
) -> None:
    client: ApiClient = make_client(channel_namespaces=NAMESPACES)

    client.connect(
        "alice",
        channels=["chat:lobby", "chat:quiet", "other"],
        channel_configs={"chat:quiet": {"history_size": 5}},
    )
    client.post("/channel_config", {"chat:made": {"notify_state": True}})

    channels = client.info()["channels"]
    assert channels["chat:lobby"]["settings"] == {
        **channels["other"]["settings"],
        "notify_presence": True,
        "store_history": True,
        "history_size": 50,
    }
    assert channels["chat:quiet"]["settings"]["history_size"] == 5
    assert channels["chat:quiet"]["settings"]["notify_presence"] is True
    assert channels["other"]["settings"]["store_history"] is False
    made = channels["chat:made"]["settings"]
    assert (made["notify_state"], made["history_size"]) == (True, 50)
