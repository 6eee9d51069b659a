"""/connect, /subscribe and /unsubscribe over HTTP."""

from __future__ import annotations

import uuid

from tests.functional.conftest import (
    CHANNEL_INFO_KEYS,
    DEFAULT_SETTINGS,
    ApiClient,
    ClientFactory,
)

# ---------------------------------------------------------------------------------- /connect


def test_connect_answers_with_the_full_071_response_shape(client: ApiClient) -> None:
    body = client.connect(
        "alice",
        channels=["zeta", "alpha"],
        user_state={"color": "red", "age": 30},
        state_public_keys=["color"],
    )

    assert set(body) == {
        "conn_id",
        "state",
        "username",
        "public_state",
        "channels",
        "channels_info",
        "epoch",  # added in 0.8: the position's epoch, for recover
        "seq",  # added in 0.8: the position the connection starts from
    }
    assert uuid.UUID(body["conn_id"])
    assert body["username"] == "alice"
    assert body["state"] == {"color": "red", "age": 30}
    assert body["public_state"] == {"color": "red"}
    assert body["channels"] == ["alpha", "zeta"]
    info = body["channels_info"]
    assert set(info) == {"channels", "users"}
    assert set(info["channels"]) == {"alpha", "zeta"}
    alpha = info["channels"]["alpha"]
    assert set(alpha) == CHANNEL_INFO_KEYS
    assert alpha["name"] == "alpha"
    assert alpha["long_name"] is None
    assert alpha["users"] == ["alice"]
    assert alpha["total_users"] == 1
    assert alpha["total_connections"] == 1
    assert alpha["history"] == []
    assert info["users"] == [{"user": "alice", "state": {"color": "red", "age": 30}}]


def test_connect_creates_channels_with_the_default_settings(client: ApiClient) -> None:
    body = client.connect(channels=["room"])

    assert body["channels_info"]["channels"]["room"]["settings"] == DEFAULT_SETTINGS


def test_connect_timestamps_are_naive_utc_iso_strings(client: ApiClient) -> None:
    body = client.connect(channels=["room"])

    last_active = body["channels_info"]["channels"]["room"]["last_active"]
    assert "T" in last_active
    assert not last_active.endswith("Z")
    assert "+" not in last_active


def test_connect_uses_the_conn_id_the_caller_chose(client: ApiClient) -> None:
    conn_id = str(uuid.uuid4())

    assert client.connect(conn_id=conn_id)["conn_id"] == conn_id


def test_connect_without_channels_has_empty_channels_info(client: ApiClient) -> None:
    body = client.connect()

    assert body["channels"] == []
    assert body["channels_info"] == {"channels": {}, "users": []}


def test_connect_applies_fresh_user_state_only_to_a_new_user(client: ApiClient) -> None:
    first = client.connect(fresh_user_state={"points": 1})
    second = client.connect(fresh_user_state={"points": 99, "extra": True})

    assert first["state"] == {"points": 1}
    assert second["state"] == {"points": 1}


def test_connect_merges_user_state_on_every_call(client: ApiClient) -> None:
    client.connect(user_state={"a": 1, "b": 2})

    assert client.connect(user_state={"b": 3, "c": "x"})["state"] == {"a": 1, "b": 3, "c": "x"}


def test_connect_without_state_public_keys_makes_the_public_state_empty(
    client: ApiClient,
) -> None:
    client.connect(user_state={"a": 1}, state_public_keys=["a"])

    assert client.connect()["public_state"] == {}


def test_connect_applies_channel_configs_to_the_channels_it_creates(client: ApiClient) -> None:
    body = client.connect(
        channels=["configured"],
        channel_configs={"configured": {"notify_presence": True, "history_size": 3}},
    )

    settings = body["channels_info"]["channels"]["configured"]["settings"]
    assert settings == {**DEFAULT_SETTINGS, "notify_presence": True, "history_size": 3}


def test_connect_ignores_channel_configs_of_existing_channels(client: ApiClient) -> None:
    client.connect("alice", channels=["room"])

    body = client.connect("bob", channels=["room"], channel_configs={"room": {"history_size": 1}})

    assert body["channels_info"]["channels"]["room"]["settings"] == DEFAULT_SETTINGS


def test_connect_channels_info_honours_exclude_channels_and_ignores_info_channels(
    client: ApiClient,
) -> None:
    body = client.connect(
        channels=["a", "b", "c"], info={"exclude_channels": ["b"], "channels": ["a"]}
    )

    assert body["channels"] == ["a", "b", "c"]
    assert set(body["channels_info"]["channels"]) == {"a", "c"}


def test_connect_channels_info_without_users(client: ApiClient) -> None:
    body = client.connect(channels=["a"], info={"include_users": False})

    channel = body["channels_info"]["channels"]["a"]
    assert channel["users"] == []
    assert channel["total_users"] == 0
    assert body["channels_info"]["users"] == []


def test_connect_channels_info_with_public_state_only(client: ApiClient) -> None:
    body = client.connect(
        channels=["a"],
        user_state={"public": 1, "secret": 2},
        state_public_keys=["public"],
        info={"return_public_state": True},
    )

    assert body["channels_info"]["users"] == [{"user": "alice", "state": {"public": 1}}]


def test_connect_with_own_conn_id_updates_the_connection_in_place(client: ApiClient) -> None:
    """F3: same user, same conn_id: channels added and state merged, still one connection."""
    conn_id = client.connect("alice", channels=["a"], user_state={"x": 1})["conn_id"]

    again = client.connect("alice", conn_id=conn_id, channels=["b"], user_state={"y": 2})

    assert again["conn_id"] == conn_id
    assert again["state"] == {"x": 1, "y": 2}
    assert list(client.node.state.connections) == [conn_id]
    info = client.info(channels=["a", "b"])
    assert info["channels"]["a"]["total_connections"] == 1
    assert info["channels"]["b"]["total_connections"] == 1
    subscribed = client.post("/subscribe", {"conn_id": conn_id, "channels": ["c"]}).json
    assert subscribed["channels"] == ["a", "b", "c"]


def test_connect_with_another_users_conn_id_is_refused(client: ApiClient) -> None:
    """F3: a conn_id belongs to one user."""
    conn_id = client.connect("alice", channels=["a"])["conn_id"]

    response = client.post("/connect", {"username": "mallory", "conn_id": conn_id}, status=422)

    assert response.json == {"conn_id": ["Connection belongs to another user"]}
    assert client.node.state.connections[conn_id].username == "alice"


def test_connect_beyond_max_channels_per_connection_is_refused(make_client: ClientFactory) -> None:
    client = make_client(max_channels_per_connection=2)

    response = client.post("/connect", {"username": "a", "channels": ["1", "2", "3"]}, status=422)

    assert list(response.json) == ["channels"]
    assert client.node.state.connections == {}


def test_connect_beyond_max_connections_is_unavailable(make_client: ClientFactory) -> None:
    client = make_client(max_connections=1)
    conn_id = client.connect("alice")["conn_id"]

    response = client.post("/connect", {"username": "bob"}, status=503)

    assert response.content_type == "application/json"
    assert response.json["error"] == "unavailable"
    # updating the existing connection in place is not a new connection
    assert client.connect("alice", conn_id=conn_id, channels=["a"])["conn_id"] == conn_id


# ---------------------------------------------------------------------------------- /subscribe


def test_subscribe_lists_all_channels_and_the_newly_joined_ones(client: ApiClient) -> None:
    conn_id = client.connect(channels=["b"])["conn_id"]

    body = client.post("/subscribe", {"conn_id": conn_id, "channels": ["c", "b", "a"]}).json

    assert set(body) == {"channels", "channels_info", "subscribed_to"}
    assert body["channels"] == ["a", "b", "c"]
    assert body["subscribed_to"] == ["a", "c"]
    assert set(body["channels_info"]["channels"]) == {"a", "b", "c"}
    assert body["channels_info"]["users"] == [{"user": "alice", "state": {}}]


def test_subscribe_reads_conn_id_from_the_query_string(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    body = client.post("/subscribe", {"channels": ["a"]}, query=f"conn_id={conn_id}").json

    assert body["subscribed_to"] == ["a"]
    assert client.node.state.connections[conn_id].channels.keys() == {"a"}


def test_subscribe_applies_configs_of_new_channels_only(client: ApiClient) -> None:
    conn_id = client.connect(channels=["old"])["conn_id"]

    body = client.post(
        "/subscribe",
        {
            "conn_id": conn_id,
            "channels": ["old", "new"],
            "channel_configs": {"old": {"history_size": 1}, "new": {"store_history": True}},
        },
    ).json

    channels = body["channels_info"]["channels"]
    assert channels["old"]["settings"] == DEFAULT_SETTINGS
    assert channels["new"]["settings"] == {**DEFAULT_SETTINGS, "store_history": True}


def test_subscribe_to_an_unknown_connection_is_refused(client: ApiClient) -> None:
    response = client.post(
        "/subscribe", {"conn_id": str(uuid.uuid4()), "channels": ["a"]}, status=422
    )

    assert response.json == {"conn_id": ["Unknown connection"]}


def test_subscribe_requires_at_least_one_channel(client: ApiClient) -> None:
    conn_id = client.connect()["conn_id"]

    missing = client.post("/subscribe", {"conn_id": conn_id}, status=422)
    empty = client.post("/subscribe", {"conn_id": conn_id, "channels": []}, status=422)

    assert missing.json == {"channels": ["Missing data for required field."]}
    assert list(empty.json) == ["channels"]


def test_subscribe_beyond_max_channels_per_connection_is_refused(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_channels_per_connection=2)
    conn_id = client.connect(channels=["1", "2"])["conn_id"]

    response = client.post("/subscribe", {"conn_id": conn_id, "channels": ["3"]}, status=422)

    assert list(response.json) == ["channels"]
    assert sorted(client.node.state.connections[conn_id].channels) == ["1", "2"]


# ---------------------------------------------------------------------------------- /unsubscribe


def test_unsubscribe_lists_remaining_channels_and_the_ones_left(client: ApiClient) -> None:
    conn_id = client.connect(channels=["a", "b", "c"])["conn_id"]

    body = client.post("/unsubscribe", {"conn_id": conn_id, "channels": ["c", "a"]}).json

    assert set(body) == {"channels", "channels_info", "unsubscribed_from"}
    assert body["channels"] == ["b"]
    assert body["unsubscribed_from"] == ["a", "c"]
    assert set(body["channels_info"]["channels"]) == {"b"}


def test_unsubscribe_ignores_unknown_and_unjoined_channels(client: ApiClient) -> None:
    conn_id = client.connect(channels=["a"])["conn_id"]
    client.connect("bob", channels=["other"])

    body = client.post("/unsubscribe", {"conn_id": conn_id, "channels": ["nope", "other"]}).json

    assert body["channels"] == ["a"]
    assert body["unsubscribed_from"] == []


def test_unsubscribe_reads_conn_id_from_the_query_string(client: ApiClient) -> None:
    conn_id = client.connect(channels=["a"])["conn_id"]

    body = client.post("/unsubscribe", {"channels": ["a"]}, query=f"conn_id={conn_id}").json

    assert body["unsubscribed_from"] == ["a"]


def test_unsubscribe_from_an_unknown_connection_is_refused(client: ApiClient) -> None:
    response = client.post(
        "/unsubscribe", {"conn_id": str(uuid.uuid4()), "channels": ["a"]}, status=422
    )

    assert response.json == {"conn_id": ["Unknown connection"]}
