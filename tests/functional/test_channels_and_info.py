"""/channel_config and /info over HTTP."""

from __future__ import annotations

import pytest

from tests.functional.conftest import CHANNEL_INFO_KEYS, DEFAULT_SETTINGS, ApiClient

# ---------------------------------------------------------------------------------- /channel_config


def test_channel_config_creates_channels_and_describes_them(client: ApiClient) -> None:
    body = client.post(
        "/channel_config", {"news": {"store_history": True, "history_size": 5}, "chat": {}}
    ).json

    assert set(body) == {"channels", "users"}
    assert body["users"] == []
    assert set(body["channels"]) == {"news", "chat"}
    news = body["channels"]["news"]
    assert set(news) == CHANNEL_INFO_KEYS
    assert news["settings"] == {**DEFAULT_SETTINGS, "store_history": True, "history_size": 5}
    assert news["history"] == []
    assert news["users"] == []
    assert body["channels"]["chat"]["settings"] == DEFAULT_SETTINGS
    assert sorted(client.post("/info").json["channels"]) == ["chat", "news"]


def test_channel_config_on_an_existing_channel_changes_only_the_given_keys(
    client: ApiClient,
) -> None:
    """F2: merge, not reset."""
    client.post("/channel_config", {"room": {"notify_presence": True, "history_size": 3}})

    body = client.post("/channel_config", {"room": {"store_history": True}}).json

    assert body["channels"]["room"]["settings"] == {
        **DEFAULT_SETTINGS,
        "notify_presence": True,
        "history_size": 3,
        "store_history": True,
    }


def test_channel_config_on_a_channel_with_members_keeps_them(client: ApiClient) -> None:
    client.connect("alice", channels=["room"])

    client.post("/channel_config", {"room": {"notify_state": True}})

    info = client.info(channels=["room"])["channels"]["room"]
    assert info["users"] == ["alice"]
    assert info["settings"]["notify_state"] is True


def test_channel_config_with_one_invalid_entry_applies_nothing(client: ApiClient) -> None:
    response = client.post(
        "/channel_config",
        {"good": {"store_history": True}, "bad": {"history_size": -1}},
        status=422,
    )

    assert response.json == {"history_size": ["Must be at least 0."]}
    assert client.post("/info").json["channels"] == {}


def test_channel_config_with_an_empty_object_changes_nothing(client: ApiClient) -> None:
    assert client.post("/channel_config", {}).json == {"channels": {}, "users": []}


def test_channel_config_with_a_non_object_body_is_refused(client: ApiClient) -> None:
    bodies: tuple[object, ...] = ([{"room": {}}], "room", 3)
    for body in bodies:
        response = client.post("/channel_config", body, status=422)
        assert response.json == {"_schema": ["Invalid input type."]}


def test_channel_config_drops_unknown_keys(client: ApiClient) -> None:
    body = client.post("/channel_config", {"room": {"colour": "blue", "notify_state": True}}).json

    assert body["channels"]["room"]["settings"] == {**DEFAULT_SETTINGS, "notify_state": True}


# ---------------------------------------------------------------------------------- /info


def _populate(client: ApiClient) -> None:
    client.post("/channel_config", {"a": {"store_history": True}, "b": {"store_history": True}})
    client.connect(
        "alice", channels=["a", "b"], user_state={"k": 1, "p": 2}, state_public_keys=["p"]
    )
    client.connect("bob", channels=["b"])
    client.publish(
        {"user": "alice", "channel": "a", "message": {"text": "in a"}},
        {"user": "bob", "channel": "b", "message": {"text": "in b"}},
    )


def test_info_without_a_body_describes_everything(client: ApiClient) -> None:
    _populate(client)

    for method in ("GET", "POST"):
        body = client.call(method, "/info").json
        assert set(body) == {"channels", "users"}
        assert sorted(body["channels"]) == ["a", "b"]
        assert body["channels"]["b"]["users"] == ["alice", "bob"]
        assert body["channels"]["b"]["total_users"] == 2
        assert [m["message"] for m in body["channels"]["a"]["history"]] == [{"text": "in a"}]
        assert body["users"] == [
            {"user": "alice", "state": {"k": 1, "p": 2}},
            {"user": "bob", "state": {}},
        ]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_info_answers_any_method(client: ApiClient, method: str) -> None:
    _populate(client)

    assert client.call(method, "/info").json == client.post("/info").json


def test_info_history_entries_carry_their_delivery_fields(client: ApiClient) -> None:
    _populate(client)

    entry = client.post("/info").json["channels"]["a"]["history"][0]

    assert entry["type"] == "message"
    assert entry["catchup"] is False
    assert entry["user"] == "alice"
    assert entry["channel"] == "a"
    assert entry["pm_users"] == []
    assert entry["exclude_users"] == []
    assert entry["no_history"] is False
    assert entry["edited"] is None


def test_info_with_an_empty_object_requires_info(client: ApiClient) -> None:
    response = client.post("/info", {}, status=422)

    assert response.json == {"info": ["Missing data for required field."]}


def test_info_with_empty_resolution_describes_everything(client: ApiClient) -> None:
    _populate(client)

    assert client.info() == client.post("/info").json


def test_info_channels_picks_channels_and_skips_unknown_names(client: ApiClient) -> None:
    _populate(client)

    body = client.info(channels=["a", "unknown"])

    assert list(body["channels"]) == ["a"]
    assert body["users"] == [{"user": "alice", "state": {"k": 1, "p": 2}}]


def test_info_exclude_channels_leaves_them_out(client: ApiClient) -> None:
    _populate(client)

    assert list(client.info(exclude_channels=["a"])["channels"]) == ["b"]


def test_info_without_history(client: ApiClient) -> None:
    _populate(client)

    body = client.info(include_history=False)

    assert [c["history"] for c in body["channels"].values()] == [[], []]


def test_info_without_users(client: ApiClient) -> None:
    _populate(client)

    body = client.info(include_users=False)

    for channel in body["channels"].values():
        assert channel["users"] == []
        assert channel["total_users"] == 0
    assert body["users"] == []


def test_info_with_public_state_only(client: ApiClient) -> None:
    _populate(client)

    body = client.info(return_public_state=True)

    assert body["users"] == [{"user": "alice", "state": {"p": 2}}, {"user": "bob", "state": {}}]
