"""/message: POST publishes, PATCH edits, DELETE deletes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from tests.functional.conftest import ApiClient

MESSAGE_RESPONSE_KEYS = {
    "pm_users",
    "exclude_users",
    "channel",
    "no_history",
    "uuid",
    "timestamp",
    "user",
    "message",
    "edited",
}


def _history(client: ApiClient, channel: str) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = client.info(channels=[channel])["channels"][channel]["history"]
    return history


def _history_channel(client: ApiClient, name: str = "room") -> None:
    client.post("/channel_config", {name: {"store_history": True}})


# ---------------------------------------------------------------------------------- POST


def test_publishing_answers_with_the_accepted_messages(client: ApiClient) -> None:
    _history_channel(client)

    body = client.publish({"user": "alice", "channel": "room", "message": {"text": "hi"}})

    assert len(body) == 1
    item = body[0]
    assert set(item) == MESSAGE_RESPONSE_KEYS
    assert item["channel"] == "room"
    assert item["user"] == "alice"
    assert item["message"] == {"text": "hi"}
    assert item["pm_users"] == []
    assert item["exclude_users"] == []
    assert item["no_history"] is False
    assert item["edited"] is None
    assert uuid.UUID(item["uuid"])
    timestamp = datetime.fromisoformat(item["timestamp"])
    assert timestamp.tzinfo is None


def test_publishing_keeps_the_uuid_the_caller_chose(client: ApiClient) -> None:
    _history_channel(client)
    chosen = str(uuid.uuid4())

    body = client.publish({"user": "alice", "channel": "room", "uuid": chosen})

    assert body[0]["uuid"] == chosen
    assert _history(client, "room")[0]["uuid"] == chosen


def test_publishing_converts_a_tz_aware_timestamp_to_naive_utc(client: ApiClient) -> None:
    _history_channel(client)

    body = client.publish(
        {"user": "alice", "channel": "room", "timestamp": "2024-05-01T12:30:00+02:00"}
    )

    assert body[0]["timestamp"] == "2024-05-01T10:30:00"
    assert _history(client, "room")[0]["timestamp"] == "2024-05-01T10:30:00"


def test_publishing_keeps_a_naive_timestamp_as_given(client: ApiClient) -> None:
    body = client.publish({"user": "alice", "channel": "room", "timestamp": "2024-05-01T12:30:00"})

    assert body[0]["timestamp"] == "2024-05-01T12:30:00"


def test_publishing_an_object_instead_of_a_list_is_refused(client: ApiClient) -> None:
    response = client.post("/message", {"user": "alice", "channel": "room"}, status=422)

    assert response.json == {"_schema": ["Invalid input type."]}


def test_publishing_drops_items_with_neither_channel_nor_pm_users(client: ApiClient) -> None:
    body = client.publish(
        {"user": "alice", "message": {"n": 1}},
        {"user": "alice", "channel": "room", "message": {"n": 2}},
        {"user": "alice", "pm_users": [], "message": {"n": 3}},
        {"user": "alice", "pm_users": ["bob"], "message": {"n": 4}},
    )

    assert [item["message"] for item in body] == [{"n": 2}, {"n": 4}]
    assert body[1]["channel"] is None
    assert body[1]["pm_users"] == ["bob"]


def test_publishing_an_empty_list_answers_an_empty_list(client: ApiClient) -> None:
    assert client.publish() == []


def test_publishing_without_message_leaves_the_key_out_of_history(client: ApiClient) -> None:
    _history_channel(client)

    client.publish({"user": "alice", "channel": "room"})

    assert "message" not in _history(client, "room")[0]


def test_publishing_to_an_unknown_channel_is_accepted_but_creates_nothing(
    client: ApiClient,
) -> None:
    body = client.publish({"user": "alice", "channel": "nowhere"})

    assert [item["channel"] for item in body] == ["nowhere"]
    assert client.post("/info").json["channels"] == {}


def test_published_messages_are_kept_in_history(client: ApiClient) -> None:
    _history_channel(client)

    client.publish(
        {"user": "alice", "channel": "room", "message": {"n": 1}},
        {"user": "bob", "channel": "room", "message": {"n": 2}},
    )

    assert [(m["user"], m["message"]) for m in _history(client, "room")] == [
        ("alice", {"n": 1}),
        ("bob", {"n": 2}),
    ]


def test_no_history_messages_are_not_kept(client: ApiClient) -> None:
    _history_channel(client)

    client.publish({"user": "alice", "channel": "room", "no_history": True})

    assert _history(client, "room") == []


def test_private_channel_messages_never_appear_in_history(client: ApiClient) -> None:
    """F4: messages with pm_users are not exposed through /info, /connect or /subscribe."""
    _history_channel(client)
    conn_id = client.connect("bob", channels=["room"])["conn_id"]

    body = client.publish(
        {"user": "alice", "channel": "room", "pm_users": ["bob"], "message": {"secret": 1}},
        {"user": "alice", "channel": "room", "message": {"public": 1}},
    )

    assert len(body) == 2
    assert [m["message"] for m in _history(client, "room")] == [{"public": 1}]
    connect = client.connect("carol", channels=["room"])
    assert [m["message"] for m in connect["channels_info"]["channels"]["room"]["history"]] == [
        {"public": 1}
    ]
    subscribe = client.post("/subscribe", {"conn_id": conn_id, "channels": ["room"]}).json
    room = subscribe["channels_info"]["channels"]["room"]
    assert [m["message"] for m in room["history"]] == [{"public": 1}]


def test_history_keeps_only_history_size_messages(client: ApiClient) -> None:
    client.post("/channel_config", {"room": {"store_history": True, "history_size": 2}})

    client.publish(*({"user": "a", "channel": "room", "message": {"n": n}} for n in range(4)))

    assert [m["message"]["n"] for m in _history(client, "room")] == [2, 3]


# ---------------------------------------------------------------------------------- PATCH


def test_editing_a_message_rewrites_its_history_entry(client: ApiClient) -> None:
    _history_channel(client)
    message_uuid = client.publish({"user": "alice", "channel": "room", "message": {"v": 1}})[0][
        "uuid"
    ]

    response = client.call(
        "PATCH",
        "/message",
        [{"uuid": message_uuid, "channel": "room", "message": {"v": 2}, "user": "editor"}],
    )

    assert len(response.json) == 1
    edit = response.json[0]
    assert edit["uuid"] == message_uuid
    assert edit["message"] == {"v": 2}
    assert datetime.fromisoformat(edit["edited"]).tzinfo is None
    assert "timestamp" not in edit
    [entry] = _history(client, "room")
    assert entry["message"] == {"v": 2}
    assert entry["user"] == "editor"
    assert entry["edited"] == edit["edited"]


def test_editing_with_an_explicit_edited_time_converts_it_to_utc(client: ApiClient) -> None:
    _history_channel(client)
    message_uuid = client.publish({"user": "alice", "channel": "room"})[0]["uuid"]

    response = client.call(
        "PATCH",
        "/message",
        [{"uuid": message_uuid, "channel": "room", "edited": "2024-01-01T00:00:00-05:00"}],
    )

    assert response.json[0]["edited"] == "2024-01-01T05:00:00"
    assert _history(client, "room")[0]["edited"] == "2024-01-01T05:00:00"


def test_editing_requires_a_uuid(client: ApiClient) -> None:
    response = client.call("PATCH", "/message", [{"channel": "room"}], status=422)

    assert response.json == {"0": {"uuid": ["Missing data for required field."]}}


# ---------------------------------------------------------------------------------- DELETE


def test_deleting_a_message_removes_it_from_history(client: ApiClient) -> None:
    _history_channel(client)
    first, second = client.publish(
        {"user": "alice", "channel": "room", "message": {"n": 1}},
        {"user": "alice", "channel": "room", "message": {"n": 2}},
    )

    response = client.call("DELETE", "/message", [{"uuid": first["uuid"], "channel": "room"}])

    assert response.json == [
        {
            "pm_users": [],
            "exclude_users": [],
            "channel": "room",
            "no_history": False,
            "uuid": first["uuid"],
        }
    ]
    assert [m["uuid"] for m in _history(client, "room")] == [second["uuid"]]


def test_deleting_nothing_answers_an_empty_list(client: ApiClient) -> None:
    assert client.call("DELETE", "/message", []).json == []


def test_deleting_requires_a_list(client: ApiClient) -> None:
    response = client.call("DELETE", "/message", {"uuid": str(uuid.uuid4())}, status=422)

    assert response.json == {"_schema": ["Invalid input type."]}


def test_a_large_batch_is_applied_whole_and_in_order(client: ApiClient) -> None:
    client.connect("alice", channels=["room"], channel_configs={"room": {"store_history": True}})
    batch = [{"channel": "room", "user": "bob", "message": {"i": i}} for i in range(1234)]

    accepted = client.post("/message", batch).json

    assert [item["message"]["i"] for item in accepted] == list(range(1234))


def test_a_large_batch_with_bad_items_names_each_by_its_index_and_applies_nothing(
    client: ApiClient,
) -> None:
    client.connect("alice", channels=["room"], channel_configs={"room": {"store_history": True}})
    batch: list[dict[str, Any]] = [
        {"channel": "room", "user": "bob", "message": {"i": i}} for i in range(600)
    ]
    batch[3]["user"] = 5
    batch[550]["timestamp"] = "9999-12-31T23:59:59-14:00"

    response = client.post("/message", batch, status=422)

    assert response.json == {
        "3": {"user": ["Not a valid string."]},
        "550": {"timestamp": ["Not a valid datetime."]},
    }
    assert client.info(channels=["room"])["channels"]["room"]["history"] == []
